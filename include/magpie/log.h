/*
 * log: levels and the one place that writes log lines (stderr).
 *
 * The level is the only process-wide mutable state here; it is an atomic so the `verbosity`
 * command can change it from any worker while others read it.
 */
#ifndef MAGPIE_LOG_H
#define MAGPIE_LOG_H

enum mp_log_level {
    MP_LOG_ERROR = -1, /* always written */
    MP_LOG_INFO = 0,   /* start-up line, shutdown */
    MP_LOG_CONN = 1,   /* -v: connection events */
    MP_LOG_CMD = 2,    /* -vv: every command */
};

void mp_log_set_level(int level);
int mp_log_level(void);
/* True when messages of this level are written: test it before building an expensive line. */
int mp_log_enabled(enum mp_log_level level);
void mp_log(enum mp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
