/* config: see include/magpie/config.h */
#include "magpie/config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "magpie/hotkeys.h"
#include "magpie/warm.h"

#define KIB ((size_t)1024)
#define MIB (KIB * KIB)

void mp_config_defaults(struct mp_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->port = 11211;
    cfg->listen[0] = "127.0.0.1";
    cfg->nlisten = 1;
    cfg->unix_mask = 0700;
    cfg->threads = 4;
    cfg->maxconns = 1024;
    cfg->mem_limit = 64 * MIB;
    cfg->item_max = 1 * MIB;
    /* memcached grows its classes by 1.25 from 96-byte chunks. Magpie's 25-byte header leaves
     * room for finer classes: 1.04 (and at least 8 bytes a step) wastes at most 4% of a chunk,
     * about 2% on average, against up to 25% and about 11%; 212 classes instead of 42. The
     * smallest chunk, 32 bytes of key + value + flags plus the header, is 64 bytes. */
    cfg->factor = 1.04;
    cfg->min_chunk = 32;
    cfg->backlog = 1024;
    cfg->lru_maintainer = true;
    cfg->hotkeys = true;
    cfg->slab_automove = 1;
    cfg->lru_crawler = true;
    cfg->warm_rate = MP_WARM_RATE_DEFAULT;
    cfg->warm_timeout = MP_WARM_TIMEOUT_DEFAULT;
}

const char *mp_config_protocol_name(enum mp_protocol p)
{
    return p == MP_PROTOCOL_ASCII ? "ascii" : p == MP_PROTOCOL_BINARY ? "binary" : "auto-negotiate";
}

void mp_config_usage(FILE *out)
{
    fprintf(out, "magpie " MP_VERSION ": a multithreaded cache server speaking the memcached protocols\n"
                 "usage: magpie [options]\n"
                 "  -p, --port=NUM            TCP port to listen on (default 11211; 0 turns TCP off)\n"
                 "  -l, --listen=ADDR[,ADDR]  addresses to listen on (default 127.0.0.1)\n"
                 "  -s, --unix-socket=PATH    also listen on a unix socket\n"
                 "  -a, --unix-mask=MASK      permissions of the unix socket, octal (default 0700)\n"
                 "  -t, --threads=NUM         worker threads (default 4)\n"
                 "  -c, --conn-limit=NUM      maximum simultaneous connections (default 1024)\n"
                 "  -m, --memory-limit=MB     item memory in MiB (default 64); k, m or g suffix allowed\n"
                 "  -I, --max-item-size=SIZE  largest item in bytes, or with a k, m or g suffix (default 1m;\n"
                 "                            1k..1024m)\n"
                 "  -f, --slab-growth-factor=F  chunk size growth factor (default 1.04)\n"
                 "  -n, --slab-min-size=BYTES minimum space for key, value and flags (default 32)\n"
                 "  -b, --listen-backlog=NUM  listen backlog (default 1024)\n"
                 "  -B, --protocol=NAME       ascii, binary or auto (default auto: binary when a\n"
                 "                            connection's first byte is 0x80)\n"
                 "  -U, --udp-port=NUM        UDP port; only 0 (off) is supported\n"
                 "  -u, --user=NAME           drop root privileges to this user\n"
                 "  -e, --memory-file=PATH    keep the cache across restarts: load PATH at start, write it\n"
                 "                            on SIGTERM, SIGINT and SIGUSR1 (see snapshot_interval)\n"
                 "  -o, --extended=OPTS       comma list: idle_timeout=SECONDS, slab_reassign,\n"
                 "                            slab_automove=0|1|2, lru_maintainer, no_lru_maintainer,\n"
                 "                            lru_crawler, no_lru_crawler, no_hotkeys, hotkeys_metrics[=K],\n"
                 "                            snapshot_interval=SECONDS (with -e: also write it this often),\n"
                 "                            warm_rate=KEYS (a second; default 50000, 0: no bound),\n"
                 "                            warm_timeout=SECONDS (default 10)\n"
                 "  -A, --enable-shutdown     let the `shutdown` command stop the server\n"
                 "  -v, --verbose             log connection events; -vv also every command\n"
                 "      --warm-from=HOST:PORT copy the items of a running Magpie or memcached (1.5.19 and\n"
                 "                            later) at HOST:PORT while serving (see warm_rate)\n"
                 "      --metrics=HOST:PORT   serve Prometheus metrics at http://HOST:PORT/metrics\n"
                 "                            (:PORT: every IPv4 address; default off)\n"
                 "      --health [TARGET]     probe a running server with `version`; exit 0 if it answers.\n"
                 "                            TARGET: HOST:PORT, HOST, :PORT or a unix socket path\n"
                 "                            (default: the -l address and -p port)\n"
                 "  -V, --version             print the version and exit\n"
                 "  -h, --help                print this help and exit\n");
}

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
    snprintf(err, errlen, fmt, arg);
    return -1;
}

/* A whole decimal number in [min, max]. */
static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* A size with an optional k, m or g suffix; `unit` is the multiplier when there is none. */
static bool parse_size(const char *s, size_t unit, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return false;
    size_t mult = unit;
    if (*end != '\0') {
        switch (*end) {
        case 'k':
        case 'K': mult = KIB; break;
        case 'm':
        case 'M': mult = MIB; break;
        case 'g':
        case 'G': mult = MIB * KIB; break;
        default: return false;
        }
        if (end[1] != '\0')
            return false;
    }
    if (v > SIZE_MAX / mult)
        return false;
    *out = (size_t)v * mult;
    return true;
}

static int parse_listen(struct mp_config *cfg, const char *arg, char *err, size_t errlen)
{
    if (strlen(arg) >= sizeof(cfg->listen_buf))
        return fail(err, errlen, "-l: address list too long: %s", arg);
    strcpy(cfg->listen_buf, arg);
    cfg->nlisten = 0;
    for (char *save = NULL, *tok = strtok_r(cfg->listen_buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (cfg->nlisten == MP_LISTEN_MAX)
            return fail(err, errlen, "-l: at most 8 addresses: %s", arg);
        cfg->listen[cfg->nlisten++] = tok;
    }
    if (cfg->nlisten == 0)
        return fail(err, errlen, "-l: no address in '%s'", arg);
    return 0;
}

static int parse_extended(struct mp_config *cfg, const char *arg, char *err, size_t errlen)
{
    char buf[256];
    if (strlen(arg) >= sizeof(buf))
        return fail(err, errlen, "-o: option list too long: %s", arg);
    strcpy(buf, arg);
    for (char *save = NULL, *opt = strtok_r(buf, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        char *val = strchr(opt, '=');
        if (val)
            *val++ = '\0';
        long n;
        if (strcmp(opt, "idle_timeout") == 0) {
            if (!val || !parse_long(val, 0, INT_MAX, &n))
                return fail(err, errlen, "-o idle_timeout needs a number of seconds: %s", arg);
            cfg->idle_timeout = (int)n;
        } else if (strcmp(opt, "slab_automove") == 0) {
            if (!val || !parse_long(val, 0, 2, &n))
                return fail(err, errlen, "-o slab_automove takes 0, 1 or 2: %s", arg);
            cfg->lru_maintainer = cfg->lru_maintainer || n > 0;
            cfg->slab_automove = (int)n;
        } else if (strcmp(opt, "snapshot_interval") == 0) {
            if (!val || !parse_long(val, 0, 86400 * 365, &n))
                return fail(err, errlen, "-o snapshot_interval needs a number of seconds: %s", arg);
            cfg->snapshot_interval = (int)n;
        } else if (strcmp(opt, "warm_rate") == 0) {
            if (!val || !parse_long(val, 0, 100000000, &n))
                return fail(err, errlen, "-o warm_rate needs a number of keys a second: %s", arg);
            cfg->warm_rate = (int)n;
        } else if (strcmp(opt, "warm_timeout") == 0) {
            if (!val || !parse_long(val, 1, 3600, &n))
                return fail(err, errlen, "-o warm_timeout needs a number of seconds from 1 to 3600: %s", arg);
            cfg->warm_timeout = (int)n;
        } else if (strcmp(opt, "slab_reassign") == 0 || strcmp(opt, "lru_maintainer") == 0) {
            cfg->lru_maintainer = true;
        } else if (strcmp(opt, "lru_crawler") == 0) {
            cfg->lru_maintainer = true;
            cfg->lru_crawler = true;
        } else if (strcmp(opt, "no_lru_maintainer") == 0) {
            cfg->lru_maintainer = false;
        } else if (strcmp(opt, "no_hotkeys") == 0) {
            cfg->hotkeys = false;
        } else if (strcmp(opt, "hotkeys_metrics") == 0) {
            if (!val)
                n = MP_HOTKEYS_DEFAULT;
            else if (!parse_long(val, 1, MP_HOTKEYS_MAX, &n))
                return fail(err, errlen, "-o hotkeys_metrics takes a number of keys from 1 to 100: %s", arg);
            cfg->hotkeys_metrics = (int)n;
        } else if (strcmp(opt, "no_lru_crawler") == 0) {
            cfg->lru_crawler = false;
        } else {
            return fail(err, errlen, "Illegal suboption \"%s\"", opt);
        }
    }
    return 0;
}

enum { OPT_HEALTH = 1000, OPT_METRICS, OPT_WARM_FROM };

static const struct option long_options[] = {
    {"port", required_argument, NULL, 'p'},
    {"listen", required_argument, NULL, 'l'},
    {"unix-socket", required_argument, NULL, 's'},
    {"unix-mask", required_argument, NULL, 'a'},
    {"threads", required_argument, NULL, 't'},
    {"conn-limit", required_argument, NULL, 'c'},
    {"memory-limit", required_argument, NULL, 'm'},
    {"max-item-size", required_argument, NULL, 'I'},
    {"slab-growth-factor", required_argument, NULL, 'f'},
    {"slab-min-size", required_argument, NULL, 'n'},
    {"listen-backlog", required_argument, NULL, 'b'},
    {"protocol", required_argument, NULL, 'B'},
    {"udp-port", required_argument, NULL, 'U'},
    {"user", required_argument, NULL, 'u'},
    {"extended", required_argument, NULL, 'o'},
    {"memory-file", required_argument, NULL, 'e'},
    {"verbose", no_argument, NULL, 'v'},
    {"enable-shutdown", no_argument, NULL, 'A'},
    {"health", optional_argument, NULL, OPT_HEALTH},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"warm-from", required_argument, NULL, OPT_WARM_FROM},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_one(struct mp_config *cfg, int opt, const char *arg, char *err, size_t errlen)
{
    long n;
    char *end;
    switch (opt) {
    case 'p':
        if (!parse_long(arg, 0, 65535, &n))
            return fail(err, errlen, "-p: not a port number: %s", arg);
        cfg->port = (int)n;
        return 0;
    case 'U':
        if (!parse_long(arg, 0, 65535, &n))
            return fail(err, errlen, "-U: not a port number: %s", arg);
        if (n != 0)
            return fail(err, errlen, "-U %s: UDP is not supported; use -U 0", arg);
        return 0;
    case 'l': return parse_listen(cfg, arg, err, errlen);
    case 's':
        if (strlen(arg) >= 108)
            return fail(err, errlen, "-s: unix socket path too long: %s", arg);
        cfg->unix_path = arg;
        return 0;
    case 'a':
        errno = 0;
        n = strtol(arg, &end, 8);
        if (errno || end == arg || *end || n < 0 || n > 0777)
            return fail(err, errlen, "-a: not an octal permission mask: %s", arg);
        cfg->unix_mask = (int)n;
        return 0;
    case 't':
        if (!parse_long(arg, 1, 256, &n))
            return fail(err, errlen, "-t: threads must be a number from 1 to 256: %s", arg);
        cfg->threads = (int)n;
        return 0;
    case 'c':
        if (!parse_long(arg, 1, 1000000, &n))
            return fail(err, errlen, "-c: not a connection count: %s", arg);
        cfg->maxconns = (int)n;
        return 0;
    case 'm':
        if (!parse_size(arg, MIB, &cfg->mem_limit) || cfg->mem_limit == 0)
            return fail(err, errlen, "-m: not a memory size: %s", arg);
        return 0;
    case 'I':
        if (!parse_size(arg, 1, &cfg->item_max))
            return fail(err, errlen, "-I: not an item size: %s", arg);
        if (cfg->item_max < KIB)
            return fail(err, errlen, "-I %s: item size must be at least 1k", arg);
        if (cfg->item_max > 1024 * MIB)
            return fail(err, errlen, "-I %s: item size cannot be over 1024m", arg);
        return 0;
    case 'f':
        errno = 0;
        cfg->factor = strtod(arg, &end);
        if (errno || end == arg || *end || !(cfg->factor > 1.0) || cfg->factor > 8.0)
            return fail(err, errlen, "-f: factor must be over 1.0 and at most 8: %s", arg);
        return 0;
    case 'n':
        if (!parse_long(arg, 1, 1048576, &n))
            return fail(err, errlen, "-n: not a size in bytes: %s", arg);
        cfg->min_chunk = (size_t)n;
        return 0;
    case 'b':
        if (!parse_long(arg, 1, INT_MAX, &n))
            return fail(err, errlen, "-b: not a backlog length: %s", arg);
        cfg->backlog = (int)n;
        return 0;
    case 'B':
        if (strcmp(arg, "auto") == 0)
            cfg->protocol = MP_PROTOCOL_AUTO;
        else if (strcmp(arg, "ascii") == 0)
            cfg->protocol = MP_PROTOCOL_ASCII;
        else if (strcmp(arg, "binary") == 0)
            cfg->protocol = MP_PROTOCOL_BINARY;
        else
            return fail(err, errlen, "-B %s: should be one of auto, binary, or ascii", arg);
        return 0;
    case 'u': cfg->user = arg; return 0;
    case 'e':
        if (arg[0] == '\0')
            return fail(err, errlen, "%s", "-e: needs a file path");
        cfg->memory_file = arg;
        return 0;
    case 'o': return parse_extended(cfg, arg, err, errlen);
    case 'v': cfg->verbose++; return 0;
    case 'A': cfg->shutdown_enabled = true; return 0;
    case OPT_HEALTH: cfg->health = arg ? arg : ""; return 0;
    case OPT_METRICS:
        if (!strchr(arg, ':'))
            return fail(err, errlen, "--metrics: not HOST:PORT: %s", arg);
        cfg->metrics = arg;
        return 0;
    case OPT_WARM_FROM: /* its shape is checked by the server (mp_warm_split_peer) */ cfg->warm_from = arg; return 0;
    case 'V': cfg->show_version = true; return 0;
    case 'h': cfg->show_help = true; return 0;
    default: return fail(err, errlen, "%s", "unknown option; see magpie -h");
    }
}

int mp_config_parse(struct mp_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":p:l:s:a:t:c:m:I:f:n:b:B:U:u:e:o:vAVh", long_options, NULL)) != -1) {
        if (opt == '?') {
            char o[3] = {'-', (char)optopt, '\0'};
            if (optopt == 0)
                return fail(err, errlen, "unknown option: %s; see magpie -h", argv[optind - 1]);
            return fail(err, errlen, "unknown option: %s; see magpie -h", o);
        }
        if (opt == ':') {
            char o[3] = {'-', (char)optopt, '\0'};
            return fail(err, errlen, "option %s needs a value; see magpie -h", optopt ? o : argv[optind - 1]);
        }
        if (parse_one(cfg, opt, optarg, err, errlen) != 0)
            return -1;
    }
    /* `--health HOST:PORT` as well as `--health=HOST:PORT` */
    if (cfg->health && cfg->health[0] == '\0' && optind == argc - 1)
        cfg->health = argv[optind++];
    if (optind < argc)
        return fail(err, errlen, "unexpected argument: %s; see magpie -h", argv[optind]);
    if (cfg->item_max > cfg->mem_limit / 2)
        return fail(err, errlen, "%s", "Cannot set item size limit higher than 1/2 of memory max.");
    if (cfg->hotkeys_metrics && !cfg->metrics)
        return fail(err, errlen, "%s", "-o hotkeys_metrics needs --metrics");
    if (cfg->hotkeys_metrics && !cfg->hotkeys)
        return fail(err, errlen, "%s", "-o hotkeys_metrics needs hot keys: drop -o no_hotkeys");
    if (cfg->snapshot_interval && !cfg->memory_file)
        return fail(err, errlen, "%s", "-o snapshot_interval needs -e PATH, the file to write");
    if (cfg->port == 0 && !cfg->unix_path && !cfg->health && !cfg->show_help && !cfg->show_version)
        return fail(err, errlen, "%s", "nothing to listen on: -p 0 and no -s");
    return 0;
}
