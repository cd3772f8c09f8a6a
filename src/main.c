/* main: parse the flags, start the server, wait for it to stop. */
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "magpie/config.h"
#include "magpie/health.h"
#include "magpie/log.h"
#include "magpie/server.h"

/* -u: give up root after the listeners are bound, as memcached does. */
static int drop_privileges(const char *user)
{
    if (!user || getuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        fprintf(stderr, "magpie: unknown user %s\n", user);
        return -1;
    }
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "magpie: cannot become user %s\n", user);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct mp_config cfg;
    char err[256];
    mp_config_defaults(&cfg);
    if (mp_config_parse(&cfg, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "magpie: %s\n", err);
        return MP_EXIT_USAGE;
    }
    if (cfg.show_help) {
        mp_config_usage(stdout);
        return MP_EXIT_OK;
    }
    if (cfg.show_version) {
        printf("magpie %s\n", MP_VERSION);
        return MP_EXIT_OK;
    }
    if (cfg.health)
        return mp_health_probe(cfg.health, cfg.listen[0],
                               cfg.listen_port[0] >= 0 ? cfg.listen_port[0]
                               : cfg.port              ? cfg.port
                                                       : 11211,
                               cfg.protocol == MP_PROTOCOL_BINARY, cfg.tls.enabled ? &cfg.tls : NULL);

    /* A peer that goes away mid-write must not kill the server. */
    signal(SIGPIPE, SIG_IGN);
    mp_log_set_level(cfg.verbose);
    static struct mp_server srv;
    int rc = mp_server_setup(&srv, &cfg, err, sizeof(err));
    if (rc != 0) {
        mp_log(MP_LOG_ERROR, "%s", err);
        mp_server_teardown(&srv);
        return rc;
    }
    if (drop_privileges(cfg.user) != 0) {
        mp_server_teardown(&srv);
        return MP_EXIT_FAILURE;
    }
    rc = mp_server_run(&srv);
    mp_server_teardown(&srv);
    mp_log(MP_LOG_INFO, "stopped");
    return rc;
}
