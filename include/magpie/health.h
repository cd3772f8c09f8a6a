/*
 * health: `magpie --health [HOST:PORT]`, a probe for container health checks.
 *
 * Connects, sends `version`, and succeeds when a "VERSION " line comes back within two seconds; with
 * -B binary (a server that speaks only the binary protocol) the binary VERSION request, and a
 * successful reply to it. With -Z it speaks TLS (to TCP targets), without verifying the server,
 * presenting -o ssl_chain_cert and ssl_key if given; a server with -Y answers a connection that
 * has not authenticated "CLIENT_ERROR unauthenticated", which counts as alive too.
 * It is the image's HEALTHCHECK, so it must work where there is no shell and no client tool.
 */
#ifndef MAGPIE_HEALTH_H
#define MAGPIE_HEALTH_H

#include <stdbool.h>

#include "magpie/config.h"

/* target: "HOST:PORT", "HOST", ":PORT", a unix socket path (starting with '/'), or "" for
 * default_host:default_port. Returns 0 when the server answered, 1 otherwise (with a message on
 * stderr). tls: the -Z settings, or NULL to speak plain TCP. */
int mp_health_probe(const char *target, const char *default_host, int default_port, bool binary,
                    const struct mp_tls_config *tls);

#endif
