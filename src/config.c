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
     * about 2% on average, against up to 25% and about 11%; 171 classes instead of 42. The
     * smallest chunk, 32 bytes of key + value + flags plus the header, is 64 bytes. */
    cfg->factor = 1.04;
    cfg->min_chunk = 32;
    cfg->backlog = 1024;
    cfg->lru_maintainer = true;
    cfg->hotkeys = true;
    cfg->slab_automove = 1;
    cfg->lru_crawler = true;
    for (int i = 0; i < MP_LISTEN_MAX; i++)
        cfg->listen_port[i] = -1;
    cfg->listen_arg = cfg->listen[0];
    /* memcached's TLS defaults, but for the output buffer (see ssl_wbuf_size in the man page) */
    cfg->tls.keyformat = 1; /* SSL_FILETYPE_PEM */
    cfg->tls.min_version = 2;
    cfg->tls.wbuf_size = 64 * 1024;
    cfg->tls.handshake_timeout = 10;
    cfg->warm_rate = MP_WARM_RATE_DEFAULT;
    cfg->warm_timeout = MP_WARM_TIMEOUT_DEFAULT;
}

const char *mp_config_tls_version_name(int min_version)
{
    static const char *const names[] = {"tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"};
    return min_version >= 0 && min_version <= 3 ? names[min_version] : "unknown";
}

int mp_config_tls_verify_flags(enum mp_tls_verify v)
{
    /* SSL_VERIFY_PEER 1, SSL_VERIFY_FAIL_IF_NO_PEER_CERT 2, SSL_VERIFY_CLIENT_ONCE 4 */
    static const int flags[] = {0, 1, 1 | 2, 1 | 2 | 4};
    return flags[v];
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
                 "  -l, --listen=ADDR[,ADDR]  addresses to listen on (default 127.0.0.1); each may be\n"
                 "                            HOST, HOST:PORT, [IPV6]:PORT or * (every address), and\n"
                 "                            with -Z notls:ADDR for a listener without TLS\n"
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
                 "                            and for -Z: ssl_chain_cert=FILE, ssl_key=FILE, ssl_ca_cert=FILE,\n"
                 "                            ssl_verify_mode=0|1|2|3 (none, request, require, once),\n"
                 "                            ssl_ciphers=LIST, ssl_min_version=0|1|2|3 (TLS 1.0..1.3,\n"
                 "                            default 2), ssl_keyformat=1|2 (PEM, DER), ssl_wbuf_size=KB,\n"
                 "                            ssl_session_cache, ssl_handshake_timeout=SECONDS (10)\n"
                 "  -A, --enable-shutdown     let the `shutdown` command stop the server\n"
                 "  -Z, --enable-ssl          TLS on every TCP listener but notls: ones\n"
                 "  -Y, --auth-file=FILE      ASCII authentication: user:password lines; a connection\n"
                 "                            must send `set <any> <any> <any> <n>` with \"user password\"\n"
                 "                            as its value before any other command\n"
                 "  -v, --verbose             log connection events; -vv also every command\n"
                 "      --warm-from=HOST:PORT copy the items of a running Magpie or memcached (1.5.19 and\n"
                 "                            later) at HOST:PORT while serving (see warm_rate)\n"
                 "      --metrics=HOST:PORT   serve Prometheus metrics at http://HOST:PORT/metrics\n"
                 "                            (:PORT: every IPv4 address; default off)\n"
                 "      --health [TARGET]     probe a running server with `version`; exit 0 if it answers.\n"
                 "                            TARGET: HOST:PORT, HOST, :PORT or a unix socket path\n"
                 "                            (default: the -l address and -p port); with -Z over TLS\n"
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

/* One -l address as memcached reads it: an optional "notls:" prefix, then HOST, HOST:PORT,
 * [IPV6] or [IPV6]:PORT; an IPv6 address without brackets has no port. Rewrites tok in place. */
static int parse_address(struct mp_config *cfg, char *tok, char *err, size_t errlen)
{
    int i = cfg->nlisten;
    if (strncmp(tok, "notls:", 6) == 0) {
        cfg->listen_notls[i] = true;
        tok += 6;
    }
    char *host = tok, *colon;
    if (*tok == '[') {
        char *close = strchr(tok, ']');
        if (!close)
            return fail(err, errlen, "-l: invalid IPv6 address: %s", tok);
        *close = '\0';
        host = tok + 1;
        colon = close[1] == ':' ? close + 1 : NULL;
        if (!colon && close[1] != '\0')
            return fail(err, errlen, "-l: invalid IPv6 address: %s", tok);
    } else {
        colon = strchr(tok, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL; /* a bare IPv6 address */
    }
    if (colon) {
        long port;
        *colon = '\0';
        if (!parse_long(colon + 1, 0, 65535, &port))
            return fail(err, errlen, "-l: invalid port number: \"%s\"", colon + 1);
        cfg->listen_port[i] = (int)port;
    }
    if (*host == '\0')
        return fail(err, errlen, "%s", "-l: an address is empty");
    cfg->listen[cfg->nlisten++] = host;
    return 0;
}

/* Each -l adds its addresses to those of the ones before, as in memcached, which also skips one
 * that is part of the list already. */
static int parse_listen(struct mp_config *cfg, const char *arg, char *err, size_t errlen)
{
    size_t have = strlen(cfg->listen_all);
    if (have && strstr(cfg->listen_all, arg))
        return 0;
    if (have + 1 + strlen(arg) >= sizeof(cfg->listen_all))
        return fail(err, errlen, "-l: address list too long: %s", arg);
    snprintf(cfg->listen_all + have, sizeof(cfg->listen_all) - have, "%s%s", have ? "," : "", arg);
    strcpy(cfg->listen_buf, cfg->listen_all);
    cfg->listen_arg = cfg->listen_all;
    cfg->nlisten = 0;
    for (int i = 0; i < MP_LISTEN_MAX; i++) {
        cfg->listen_port[i] = -1;
        cfg->listen_notls[i] = false;
    }
    for (char *save = NULL, *tok = strtok_r(cfg->listen_buf, ",;", &save); tok; tok = strtok_r(NULL, ",;", &save)) {
        if (cfg->nlisten == MP_LISTEN_MAX)
            return fail(err, errlen, "-l: at most 8 addresses: %s", cfg->listen_all);
        if (parse_address(cfg, tok, err, errlen) != 0)
            return -1;
    }
    if (cfg->nlisten == 0)
        return fail(err, errlen, "-l: no address in '%s'", arg);
    return 0;
}

/* A copy of an -o value that lives as long as the config. */
static const char *keep(struct mp_config *cfg, const char *val)
{
    size_t n = strlen(val) + 1;
    if (n > sizeof(cfg->ext_buf) - cfg->ext_used)
        return NULL;
    char *p = cfg->ext_buf + cfg->ext_used;
    memcpy(p, val, n);
    cfg->ext_used += n;
    return p;
}

/* The ssl_* options of -o, memcached's names and values. 1 when opt is not one of them. */
static int parse_tls_option(struct mp_config *cfg, const char *opt, const char *val, char *err, size_t errlen)
{
    static const char *const paths[] = {"ssl_chain_cert", "ssl_key", "ssl_ca_cert", "ssl_ciphers"};
    const char **dest[] = {&cfg->tls.chain_cert, &cfg->tls.key, &cfg->tls.ca_cert, &cfg->tls.ciphers};
    struct mp_tls_config *t = &cfg->tls;
    long n;
    if (strncmp(opt, "ssl_", 4) != 0)
        return 1;
    t->options_seen = true;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (strcmp(opt, paths[i]) != 0)
            continue;
        if (!val || !*val)
            return fail(err, errlen, "Missing %s argument", opt);
        if (!(*dest[i] = keep(cfg, val)))
            return fail(err, errlen, "-o: options too long: %s", opt);
        return 0;
    }
    if (strcmp(opt, "ssl_verify_mode") == 0) {
        if (!val || !parse_long(val, 0, 3, &n))
            return fail(err, errlen, "%s", "Invalid ssl_verify_mode: 0 (none), 1 (request), 2 (require) or 3 (once)");
        t->verify = (enum mp_tls_verify)n;
    } else if (strcmp(opt, "ssl_min_version") == 0) {
        if (!val || !parse_long(val, 0, 3, &n))
            return fail(err, errlen, "%s", "Invalid ssl_min_version: 0, 1, 2 or 3 (TLS 1.0, 1.1, 1.2, 1.3)");
        t->min_version = (int)n;
    } else if (strcmp(opt, "ssl_keyformat") == 0) {
        if (!val || !parse_long(val, 1, 2, &n))
            return fail(err, errlen, "%s", "Invalid ssl_keyformat: 1 (PEM) or 2 (DER)");
        t->keyformat = (int)n;
    } else if (strcmp(opt, "ssl_wbuf_size") == 0) {
        if (!val || !parse_long(val, 4, 1024, &n))
            return fail(err, errlen, "%s", "Invalid ssl_wbuf_size: kilobytes, from 4 to 1024");
        t->wbuf_size = (unsigned)n * 1024;
    } else if (strcmp(opt, "ssl_handshake_timeout") == 0) {
        if (!val || !parse_long(val, 1, 3600, &n))
            return fail(err, errlen, "%s", "Invalid ssl_handshake_timeout: seconds, from 1 to 3600");
        t->handshake_timeout = (int)n;
    } else if (strcmp(opt, "ssl_session_cache") == 0) {
        t->session_cache = true;
    } else if (strcmp(opt, "ssl_kernel_tls") == 0) {
        return fail(err, errlen, "%s", "ssl_kernel_tls: not supported (Magpie encrypts in user space)");
    } else {
        return fail(err, errlen, "Illegal suboption \"%s\"", opt);
    }
    return 0;
}

static int parse_extended(struct mp_config *cfg, const char *arg, char *err, size_t errlen)
{
    char buf[4096];
    if (strlen(arg) >= sizeof(buf))
        return fail(err, errlen, "-o: option list too long: %s", arg);
    strcpy(buf, arg);
    for (char *save = NULL, *opt = strtok_r(buf, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        char *val = strchr(opt, '=');
        if (val)
            *val++ = '\0';
        long n;
        int rc = parse_tls_option(cfg, opt, val, err, errlen);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
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
    {"enable-ssl", no_argument, NULL, 'Z'},
    {"auth-file", required_argument, NULL, 'Y'},
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
        cfg->protocol_set = true;
        return 0;
    case 'u': cfg->user = arg; return 0;
    case 'e':
        if (arg[0] == '\0')
            return fail(err, errlen, "%s", "-e: needs a file path");
        cfg->memory_file = arg;
        return 0;
    case 'Z': cfg->tls.enabled = true; return 0;
    case 'Y': cfg->auth_file = arg; return 0;
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

/* -Z and -Y against the rest, as memcached checks them. */
static int check_security(struct mp_config *cfg, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->nlisten; i++)
        if (cfg->listen_notls[i] && !cfg->tls.enabled)
            return fail(err, errlen, "%s", "'notls' option is valid only when SSL is enabled");
    if (cfg->tls.enabled && cfg->port == 0 && !cfg->health)
        return fail(err, errlen, "%s", "You cannot enable SSL without a TCP port.");
    if (cfg->tls.enabled && !cfg->tls.chain_cert && !cfg->health)
        return fail(err, errlen, "%s", "-Z needs a certificate: -o ssl_chain_cert=FILE[,ssl_key=FILE]");
    if (cfg->tls.enabled && cfg->tls.verify >= MP_TLS_VERIFY_REQUIRE && !cfg->tls.ca_cert && !cfg->health)
        return fail(err, errlen, "%s", "ssl_verify_mode=2 or 3 needs -o ssl_ca_cert=FILE to check clients against");
    if (cfg->auth_file) {
        /* memcached: authentication tokens are a text-protocol command */
        if (cfg->protocol_set && cfg->protocol != MP_PROTOCOL_ASCII)
            return fail(err, errlen, "%s",
                        "You cannot allow the BINARY protocol while using ascii authentication tokens.");
        cfg->protocol = MP_PROTOCOL_ASCII;
    }
    return 0;
}

int mp_config_parse(struct mp_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":p:l:s:a:t:c:m:I:f:n:b:B:U:u:e:o:vAVhZY:", long_options, NULL)) != -1) {
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
    return check_security(cfg, err, errlen);
}
