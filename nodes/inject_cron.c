/* inject_cron.c: parses crontab strings and finds their next firing time, for the inject
 * node only (see inject_cron.h for the accepted syntax). It knows nothing of timers: the
 * node asks for the next time and arms its own timer. */
#include "inject_cron.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- fields ---- */

enum { F_SEC, F_MIN, F_HOUR, F_MDAY, F_MONTH, F_WDAY, F_COUNT };

static const char *const field_name[F_COUNT] = {"second",       "minute", "hour",
                                                "day of month", "month",  "day of week"};
static const int field_first[F_COUNT] = {0, 0, 0, 1, 1, 0};
static const int field_last[F_COUNT] = {59, 59, 23, 31, 12, 6};

static const char *const month_names[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const wday_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const struct {
    const char *name;
    const char *expr;
} shorthands[] = {
    {"@yearly", "0 0 0 1 1 *"}, {"@annually", "0 0 0 1 1 *"}, {"@monthly", "0 0 0 1 * *"},
    {"@weekly", "0 0 0 * * 0"}, {"@daily", "0 0 0 * * *"},    {"@midnight", "0 0 0 * * *"},
    {"@hourly", "0 0 * * * *"},
};

/* Reads a number, or in the month and weekday fields a three-letter name. Advances 'p'. */
static bool read_value(const char **p, int field, int *out)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        while (isdigit((unsigned char)*s)) {
            v = v * 10 + (*s - '0');
            if (v > 100000) {
                return false;
            }
            s++;
        }
        *out = (int)v;
        *p = s;
        return true;
    }
    const char *const *names = field == F_MONTH ? month_names : field == F_WDAY ? wday_names : NULL;
    int count = field == F_MONTH ? 12 : 7;
    int base = field == F_MONTH ? 1 : 0;
    if (names) {
        for (int i = 0; i < count; i++) {
            if (strncmp(s, names[i], 3) == 0) {
                *out = base + i;
                *p = s + 3;
                return true;
            }
        }
    }
    return false;
}

/* Parses one comma-separated item into 'bits'. Sets '*any' when it is a bare '*'. */
static int parse_item_syntax(const char *item, int field, uint64_t *bits, bool *any, eddy_err *err)
{
    int first = field_first[field], last = field_last[field];
    int lo_limit = first, hi_limit = field == F_WDAY ? 7 : last; /* weekday 7 is Sunday */
    const char *p = item;
    bool has_range = false, has_end = false, has_step = false;
    int from = first, to = last, step = 1;

    if (strcmp(item, "?") == 0 && (field == F_MDAY || field == F_WDAY)) {
        p = "*";
    }
    if (*p == '*') {
        p++;
    } else {
        if (!read_value(&p, field, &from)) {
            return eddy_err_set(err, EDDY_EINVAL, "%s item '%s': expected a number, '*' or a range",
                                field_name[field], item);
        }
        has_range = true;
        if (*p == '-') {
            p++;
            if (!read_value(&p, field, &to)) {
                return eddy_err_set(err, EDDY_EINVAL, "%s item '%s': bad range end",
                                    field_name[field], item);
            }
            has_end = true;
        }
    }
    if (*p == '/') {
        p++;
        if (!isdigit((unsigned char)*p) || *p == '0') {
            return eddy_err_set(err, EDDY_EINVAL, "%s item '%s': step must be a number >= 1",
                                field_name[field], item);
        }
        long s = 0;
        while (isdigit((unsigned char)*p)) {
            s = s * 10 + (*p - '0');
            if (s > 100000) {
                break;
            }
            p++;
        }
        step = (int)s;
        has_step = true;
    }
    if (*p != '\0') {
        return eddy_err_set(err, EDDY_EINVAL, "%s item '%s': unexpected '%c'", field_name[field],
                            item, *p);
    }
    if (has_range) {
        if (from < lo_limit || from > hi_limit || (has_end && (to < lo_limit || to > hi_limit))) {
            return eddy_err_set(err, EDDY_EINVAL, "%s item '%s': value out of range %d-%d",
                                field_name[field], item, lo_limit, hi_limit);
        }
        if (!has_end) {
            to = has_step ? last : from; /* "a/n" runs from a to the end of the field */
        }
        if (field == F_WDAY) {
            from = from == 7 ? 0 : from;
            to = to == 7 ? 0 : to;
        }
    }
    *any = !has_range && step == 1;

    /* A range whose end is below its start wraps around the end of the field. */
    int span = last - first + 1;
    int length = to < from ? last - from + (to - first) + 1 : to - from;
    for (int i = 0; i <= length / step; i++) {
        int v = first + (from - first + step * i) % span;
        *bits |= (uint64_t)1 << v;
    }
    return EDDY_OK;
}

/* Quartz's L (last), W (weekday) and # (nth weekday) are recognised only to say that they
 * are not supported. */
static int parse_item(const char *item, int field, uint64_t *bits, bool *any, eddy_err *err)
{
    int rc = parse_item_syntax(item, field, bits, any, err);
    if (rc == EDDY_EINVAL && (field == F_MDAY || field == F_WDAY) && strpbrk(item, "lw#") != NULL) {
        return eddy_err_set(err, EDDY_EUNSUPPORTED,
                            "%s item '%s': the L, W and # extensions are not supported",
                            field_name[field], item);
    }
    return rc;
}

static int parse_field(const char *text, int field, uint64_t *bits, bool *all_any, bool *single,
                       eddy_err *err)
{
    char item[64];
    const char *s = text;
    int count = 0;
    *all_any = true;
    uint64_t restricted = 0;
    while (1) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len == 0 || len >= sizeof item) {
            return eddy_err_set(err, EDDY_EINVAL, "%s field '%s': empty or overlong item",
                                field_name[field], text);
        }
        memcpy(item, s, len);
        item[len] = '\0';
        uint64_t b = 0;
        bool any = false;
        int rc = parse_item(item, field, &b, &any, err);
        if (rc != EDDY_OK) {
            return rc;
        }
        *bits |= b;
        if (!any) {
            restricted |= b;
            *all_any = false;
        }
        count++;
        if (!comma) {
            break;
        }
        s = comma + 1;
    }
    *single = count == 1;
    /* In the day fields a bare '*' beside other items adds nothing (cronosjs). */
    if (field == F_MDAY || field == F_WDAY) {
        *bits = restricted;
    }
    return EDDY_OK;
}

/* ---- parsing ---- */

int inject_cron_parse(const char *text, inject_cron *cron, eddy_err *err)
{
    char buf[256];
    char *fields[8];
    int n = 0;

    memset(cron, 0, sizeof *cron);
    while (isspace((unsigned char)*text)) {
        text++;
    }
    size_t len = strlen(text);
    while (len > 0 && isspace((unsigned char)text[len - 1])) {
        len--;
    }
    if (len == 0) {
        return eddy_err_set(err, EDDY_EINVAL, "crontab is empty");
    }
    if (len >= sizeof buf) {
        return eddy_err_set(err, EDDY_EINVAL, "crontab is too long");
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] = (char)tolower((unsigned char)text[i]);
    }
    buf[len] = '\0';
    if (buf[0] == '@') {
        const char *expr = NULL;
        for (size_t i = 0; i < sizeof shorthands / sizeof shorthands[0]; i++) {
            if (strcmp(buf, shorthands[i].name) == 0) {
                expr = shorthands[i].expr;
            }
        }
        if (!expr) {
            return eddy_err_set(err, EDDY_EINVAL, "crontab '%s': unknown shorthand", buf);
        }
        snprintf(buf, sizeof buf, "%s", expr);
    }

    for (char *s = buf; *s;) {
        while (isspace((unsigned char)*s)) {
            *s++ = '\0';
        }
        if (!*s) {
            break;
        }
        if (n == 8) {
            n++;
            break;
        }
        fields[n++] = s;
        while (*s && !isspace((unsigned char)*s)) {
            s++;
        }
    }
    if (n < 5 || n > 7) {
        return eddy_err_set(err, EDDY_EINVAL,
                            "crontab '%.*s' has %d fields; expected 5 (minute hour day month "
                            "weekday), 6 (with seconds first) or 7 (with a year last)",
                            (int)len, text, n);
    }
    if (n == 7) {
        if (strcmp(fields[6], "*") != 0 && strcmp(fields[6], "?") != 0) {
            return eddy_err_set(err, EDDY_EUNSUPPORTED,
                                "crontab '%.*s': a year field is not "
                                "supported",
                                (int)len, text);
        }
        n = 6;
    }
    const char *f[F_COUNT];
    int off = n == 5 ? 1 : 0;
    f[F_SEC] = "0";
    for (int i = 0; i < n; i++) {
        f[i + off] = fields[i];
    }

    uint64_t bits[F_COUNT] = {0};
    bool all_any[F_COUNT], single[F_COUNT];
    for (int i = 0; i < F_COUNT; i++) {
        int rc = parse_field(f[i], i, &bits[i], &all_any[i], &single[i], err);
        if (rc != EDDY_OK) {
            char msg[EDDY_ERR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            return eddy_err_set(err, rc, "crontab '%.*s': %s", (int)len, text, msg);
        }
    }
    cron->seconds = bits[F_SEC];
    cron->minutes = bits[F_MIN];
    cron->hours = (uint32_t)bits[F_HOUR];
    cron->mdays = (uint32_t)bits[F_MDAY];
    cron->months = (uint32_t)bits[F_MONTH];
    cron->wdays = (uint32_t)bits[F_WDAY];
    cron->every_day = all_any[F_MDAY] && single[F_MDAY] && all_any[F_WDAY] && single[F_WDAY];
    return EDDY_OK;
}

/* ---- next firing time ---- */

static bool day_matches(const inject_cron *cron, const struct tm *tm)
{
    return cron->every_day || (cron->mdays >> tm->tm_mday & 1u) ||
           (cron->wdays >> tm->tm_wday & 1u);
}

int64_t inject_cron_next(const inject_cron *cron, int64_t after_ms)
{
    int64_t sec = after_ms >= 0 ? after_ms / 1000 : -((-after_ms + 999) / 1000);
    time_t t = (time_t)(sec + 1);
    time_t limit = t + (time_t)8 * 366 * 86400;
    struct tm tm;

    if (!localtime_r(&t, &tm)) {
        return -1;
    }
    /* Each step moves to the start of the next month, day, hour, minute or second that
     * could match; mktime normalises the fields (and daylight saving changes). */
    for (int guard = 0; guard < 1000000; guard++) {
        if (!(cron->months >> (tm.tm_mon + 1) & 1u)) {
            tm.tm_mon++;
            tm.tm_mday = 1;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        } else if (!day_matches(cron, &tm)) {
            tm.tm_mday++;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        } else if (!(cron->hours >> tm.tm_hour & 1u)) {
            tm.tm_hour++;
            tm.tm_min = tm.tm_sec = 0;
        } else if (!(cron->minutes >> tm.tm_min & 1u)) {
            tm.tm_min++;
            tm.tm_sec = 0;
        } else if (!(cron->seconds >> tm.tm_sec & 1u)) {
            tm.tm_sec++;
        } else {
            return (int64_t)t * 1000;
        }
        tm.tm_isdst = -1;
        time_t next = mktime(&tm);
        if (next == (time_t)-1) {
            return -1;
        }
        /* Going back an hour in autumn must not loop: always move forward. */
        t = next > t ? next : t + 1;
        if (t > limit || !localtime_r(&t, &tm)) {
            return -1;
        }
    }
    return -1;
}
