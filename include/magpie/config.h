/*
 * config: the server's options, parsed from memcached-compatible flags.
 *
 * Owns the option table and its parsing. Nothing else: the config is filled once in main and is
 * read-only after the server starts, so any thread may read it without a lock. Modules receive
 * the fields they need at setup rather than the whole struct wherever that is practical.
 */
#ifndef MAGPIE_CONFIG_H
#define MAGPIE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MP_VERSION "1.0.0"
/* What `version` and `stats version` report: the memcached release whose protocols Magpie
 * reproduces, exactly as it spells it, since clients parse it to decide what the server
 * understands (some read a suffix as the version). Magpie's own is `stats magpie_version`. */
#define MP_PROTO_VERSION "1.6.18"

/* Exit codes: 0 clean shutdown, 1 run-time failure (cannot bind, cannot allocate),
 * 64 (EX_USAGE) for a bad command line. */
enum { MP_EXIT_OK = 0, MP_EXIT_FAILURE = 1, MP_EXIT_USAGE = 64 };

#define MP_LISTEN_MAX 8

/* -B: the protocol connections speak; auto (memcached's default) goes by a connection's first
 * byte, 0x80 for binary. */
enum mp_protocol { MP_PROTOCOL_AUTO, MP_PROTOCOL_ASCII, MP_PROTOCOL_BINARY };

/* -o ssl_verify_mode: memcached's 0..3, what a TLS listener asks of a client's certificate. */
enum mp_tls_verify {
    MP_TLS_VERIFY_NONE,    /* 0: no client certificate asked for */
    MP_TLS_VERIFY_REQUEST, /* 1: asked for, checked against ssl_ca_cert if one is sent */
    MP_TLS_VERIFY_REQUIRE, /* 2: required and checked: mutual TLS */
    MP_TLS_VERIFY_ONCE,    /* 3: as 2, not asked again on renegotiation (which Magpie refuses) */
};

/* The TLS settings, memcached's -Z and -o ssl_*. Paths point into the config's own storage. */
struct mp_tls_config {
    bool enabled;              /* -Z */
    const char *chain_cert;    /* ssl_chain_cert: the server's certificate chain, PEM */
    const char *key;           /* ssl_key: its private key (default: in the chain file) */
    const char *ca_cert;       /* ssl_ca_cert: CAs whose client certificates are accepted */
    const char *ciphers;       /* ssl_ciphers: an OpenSSL cipher list for TLS 1.2 and older */
    enum mp_tls_verify verify; /* ssl_verify_mode */
    int keyformat;             /* ssl_keyformat: 1 PEM (default) or 2 DER, OpenSSL's numbers */
    int min_version;           /* ssl_min_version: 0..3 for TLS 1.0..1.3; default 2 (1.2) */
    unsigned wbuf_size;        /* ssl_wbuf_size, bytes: the most plaintext one TLS write takes */
    bool session_cache;        /* ssl_session_cache: resume sessions from a server-side cache */
    int handshake_timeout;     /* ssl_handshake_timeout=N (Magpie's): seconds to finish one */
    bool options_seen;         /* some ssl_* option was given (with or without -Z) */
};

struct mp_config {
    int port;                         /* -p, TCP port; 0 turns TCP off */
    char *listen[MP_LISTEN_MAX];      /* -l, the addresses ("*" for every one) */
    int listen_port[MP_LISTEN_MAX];   /* each one's port from "HOST:PORT", or 0 for -p's */
    bool listen_notls[MP_LISTEN_MAX]; /* "notls:HOST[:PORT]": plain TCP even with -Z */
    const char *listen_arg;           /* the -l flags joined by "," (`stats settings` inter) */
    int nlisten;
    const char *unix_path;     /* -s, unix socket path; NULL for none */
    int unix_mask;             /* -a, permissions of the unix socket (octal) */
    int threads;               /* -t */
    int maxconns;              /* -c */
    size_t mem_limit;          /* -m, bytes */
    size_t item_max;           /* -I, bytes */
    double factor;             /* -f */
    size_t min_chunk;          /* -n, minimum space for key + value + flags */
    int verbose;               /* -v / -vv */
    int udp_port;              /* -U: only 0 is accepted */
    int idle_timeout;          /* -o idle_timeout=N, seconds; 0 = never */
    int backlog;               /* -b */
    enum mp_protocol protocol; /* -B */
    bool protocol_set;         /* -B was given (-Y makes the default ascii, and refuses others) */
    bool lru_maintainer;       /* background reclaim and rebalance thread */
    int slab_automove;         /* -o slab_automove=0|1|2 (the start value; `slabs automove` changes it) */
    bool lru_crawler;          /* -o no_lru_crawler turns the reclaim pass and metadump off */
    bool shutdown_enabled;     /* -A: the `shutdown` command stops the server */
    const char *user;          /* -u, drop root privileges to this user */
    const char *health;        /* --health [HOST:PORT]: probe mode, not a server */
    const char *metrics;       /* --metrics HOST:PORT: the Prometheus endpoint; NULL for none */
    bool hotkeys;              /* count hot keys (on; -o no_hotkeys turns it off) */
    int hotkeys_metrics;       /* -o hotkeys_metrics[=K]: hot keys on the metrics page; 0 for none */
    struct mp_tls_config tls;  /* -Z and -o ssl_* */
    const char *auth_file;     /* -Y: user:password lines; NULL for no authentication */

    /* Restarting with the cache (snapshot.h) */
    const char *memory_file; /* -e, the snapshot file; NULL for none */
    int snapshot_interval;   /* -o snapshot_interval=N, seconds between snapshots while serving; 0 = none */
    const char *warm_from;   /* --warm-from HOST:PORT: copy a peer's items while serving (warm.h); NULL for none */
    int warm_rate;           /* -o warm_rate=N, keys asked of the peer per second; 0 = no bound */
    int warm_timeout;        /* -o warm_timeout=N, seconds to connect to the peer, and without an answer */

    bool show_help;
    bool show_version;
    char listen_buf[256]; /* storage the listen[] pointers refer to */
    char listen_all[256]; /* every -l given, joined (memcached adds a second -l to the first) */
    char ext_buf[4096];   /* storage for the values of -o options (paths, cipher lists) */
    size_t ext_used;
};

/* memcached's name of an ssl_min_version (`stats settings`): "tlsv1.0" .. "tlsv1.3". */
const char *mp_config_tls_version_name(int min_version);
/* memcached's ssl_verify_mode as `stats settings` shows it: OpenSSL's flags (0, 1, 3, 7). */
int mp_config_tls_verify_flags(enum mp_tls_verify v);

/* Fill cfg with the defaults (memcached's, but for the growth factor: see config.c). */
void mp_config_defaults(struct mp_config *cfg);

/* Parse argv into cfg. On error writes a message to err (size errlen) and returns -1;
 * returns 0 on success. */
int mp_config_parse(struct mp_config *cfg, int argc, char **argv, char *err, size_t errlen);

/* memcached's name for a protocol setting (`stats settings` binding_protocol). */
const char *mp_config_protocol_name(enum mp_protocol p);

/* The usage text printed by -h. */
void mp_config_usage(FILE *out);

#endif
