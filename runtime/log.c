/* log.c: formats one line per record with a timestamp and level, to stderr or a hook. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static eddy_log_level log_level = EDDY_LOG_INFO;
static eddy_log_hook log_hook;
static void *log_hook_data;

static const char *const level_names[] = {"trace", "debug", "info", "warn", "error", "off"};

void eddy_log_set_level(eddy_log_level level)
{
    log_level = level;
}

eddy_log_level eddy_log_get_level(void)
{
    return log_level;
}

void eddy_log_set_hook(eddy_log_hook hook, void *data)
{
    log_hook = hook;
    log_hook_data = data;
}

int eddy_log_level_parse(const char *name)
{
    for (int i = 0; i <= EDDY_LOG_OFF; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void eddy_logv(eddy_log_level level, const char *fmt, va_list ap)
{
    if (level < log_level || level >= EDDY_LOG_OFF)
        return;
    char line[2048];
    vsnprintf(line, sizeof(line), fmt, ap);
    if (log_hook) {
        log_hook(level, line, log_hook_data);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            level_names[level], line);
}

void eddy_log(eddy_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    eddy_logv(level, fmt, ap);
    va_end(ap);
}
