/* inject_cron.h: crontab schedules for the inject node (nodes/inject.c), private to it.
 * Reads the strings Node-RED's inject node accepts (its cron library, cronosjs): 5 fields
 * "minute hour day-of-month month day-of-week", or 6 with seconds first, each a list of
 * '*', 'a', 'a-b' (wrapping when a > b), '*' or 'a' or 'a-b' followed by '/step'; month
 * and day names (jan, mon); '?' for '*'; the @yearly/@monthly/@weekly/@daily/@midnight/
 * @hourly shorthands. Quartz extensions (L, W, #) and a year other than '*' are refused
 * as unsupported. Day of month and day of week combine as in cron: when both are
 * restricted a day matching either fires. Times are local time (the TZ environment). */
#ifndef EDDY_INJECT_CRON_H
#define EDDY_INJECT_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

typedef struct inject_cron {
    uint64_t seconds; /* bit n set: second n (0-59) matches */
    uint64_t minutes; /* bit n set: minute n (0-59) matches */
    uint32_t hours;   /* bit n set: hour n (0-23) matches */
    uint32_t mdays;   /* bit n set: day of month n (1-31) matches */
    uint32_t months;  /* bit n set: month n (1-12) matches */
    uint32_t wdays;   /* bit n set: weekday n (0 = Sunday .. 6) matches */
    bool every_day;   /* both day fields were unrestricted: mdays/wdays are not used */
} inject_cron;

/* Parses 'text' into 'cron'. Returns EDDY_OK; EDDY_EINVAL with a message naming the field
 * for bad syntax or values out of range; EDDY_EUNSUPPORTED for Quartz extensions. */
int inject_cron_parse(const char *text, inject_cron *cron, eddy_err *err);

/* The first matching time strictly after the second that holds 'after_ms' (wall clock,
 * milliseconds since the epoch), in milliseconds since the epoch; -1 if none in the next
 * eight years (e.g. "0 0 30 2 *"). */
int64_t inject_cron_next(const inject_cron *cron, int64_t after_ms);

#endif
