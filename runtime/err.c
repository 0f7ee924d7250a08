/* err.c: names and texts of error codes, and filling eddy_err without allocating. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *eddy_err_name(int code)
{
    switch (code) {
    case EDDY_OK:
        return "EDDY_OK";
#define EDDY_ERR_NAME_(name, text)                                                                 \
    case EDDY_##name:                                                                              \
        return #name;
        EDDY_ERR_MAP(EDDY_ERR_NAME_)
#undef EDDY_ERR_NAME_
    default:
        return "EUNKNOWN";
    }
}

const char *eddy_err_text(int code)
{
    switch (code) {
    case EDDY_OK:
        return "success";
#define EDDY_ERR_TEXT_(name, text)                                                                 \
    case EDDY_##name:                                                                              \
        return text;
        EDDY_ERR_MAP(EDDY_ERR_TEXT_)
#undef EDDY_ERR_TEXT_
    default:
        return "unknown error";
    }
}

void eddy_err_clear(eddy_err *err)
{
    /* Field by field: an eddy_err is over a kilobyte and is cleared on hot paths. */
    if (!err)
        return;
    err->code = EDDY_OK;
    err->msg[0] = err->file[0] = err->node_id[0] = err->node_type[0] = err->tab[0] = '\0';
    err->line = err->column = 0;
}

int eddy_err_set(eddy_err *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

static void copy_field(char *dst, size_t size, const char *src)
{
    if (src)
        snprintf(dst, size, "%s", src);
}

void eddy_err_at_node(eddy_err *err, const char *node_id, const char *node_type, const char *tab)
{
    if (!err)
        return;
    copy_field(err->node_id, sizeof(err->node_id), node_id);
    copy_field(err->node_type, sizeof(err->node_type), node_type);
    copy_field(err->tab, sizeof(err->tab), tab);
}

void eddy_err_at_file(eddy_err *err, const char *file, int line, int column)
{
    if (!err)
        return;
    copy_field(err->file, sizeof(err->file), file);
    err->line = line;
    err->column = column;
}

void eddy_err_format(const eddy_err *err, char *buf, size_t size)
{
    size_t used = 0;
#define EDDY_APPEND_(...)                                                                          \
    do {                                                                                           \
        if (used < size) {                                                                         \
            int n_ = snprintf(buf + used, size - used, __VA_ARGS__);                               \
            used += n_ > 0 ? (size_t)n_ : 0;                                                       \
        }                                                                                          \
    } while (0)
    if (size == 0)
        return;
    buf[0] = '\0';
    if (err->file[0]) {
        EDDY_APPEND_("%s", err->file);
        if (err->line > 0)
            EDDY_APPEND_(":%d", err->line);
        if (err->column > 0)
            EDDY_APPEND_(":%d", err->column);
        EDDY_APPEND_(": ");
    }
    if (err->node_id[0]) {
        EDDY_APPEND_("node %s", err->node_id);
        if (err->node_type[0])
            EDDY_APPEND_(" (%s)", err->node_type);
        if (err->tab[0])
            EDDY_APPEND_(" on tab %s", err->tab);
        EDDY_APPEND_(": ");
    }
    EDDY_APPEND_("%s", err->msg[0] ? err->msg : eddy_err_text(err->code));
#undef EDDY_APPEND_
}
