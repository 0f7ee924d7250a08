/* log.h: one-line log records to stderr. Lines name their subject first, as in
 * "[node <id> (<type>) on <tab>] message". Tests can capture records with a hook. */
#ifndef EDDY_LOG_H
#define EDDY_LOG_H

#include <stdarg.h>

typedef enum eddy_log_level {
    EDDY_LOG_TRACE = 0,
    EDDY_LOG_DEBUG,
    EDDY_LOG_INFO,
    EDDY_LOG_WARN,
    EDDY_LOG_ERROR,
    EDDY_LOG_OFF
} eddy_log_level;

/* Called for each record at or above the level; 'line' is borrowed for the call. */
typedef void (*eddy_log_hook)(eddy_log_level level, const char *line, void *data);

void eddy_log_set_level(eddy_log_level level);
eddy_log_level eddy_log_get_level(void);
/* Replaces the stderr writer with 'hook' (NULL restores stderr). */
void eddy_log_set_hook(eddy_log_hook hook, void *data);
/* "trace".."error","off" to a level; returns -1 for an unknown name. */
int eddy_log_level_parse(const char *name);

void eddy_log(eddy_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void eddy_logv(eddy_log_level level, const char *fmt, va_list ap);

#endif
