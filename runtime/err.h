/* err.h: eddy's error value. Every call that can fail returns an int code (EDDY_OK or a
 * negative EDDY_E*) and fills an optional 'eddy_err *err' with a message and, when known,
 * where the problem is: file, line, column, node id, node type and tab. Setting an error
 * never allocates, so out-of-memory can be reported. */
#ifndef EDDY_ERR_H
#define EDDY_ERR_H

#include <stddef.h>

/* X(name, default text). Expanded into the enum, eddy_err_name() and eddy_err_text(). */
#define EDDY_ERR_MAP(X)                                                                            \
    X(ENOMEM, "out of memory")                                                                     \
    X(EINVAL, "invalid argument")                                                                  \
    X(EPARSE, "parse error")                                                                       \
    X(ENOTFOUND, "not found")                                                                      \
    X(ECONFLICT, "version conflict")                                                               \
    X(EDUPLICATE, "duplicate")                                                                     \
    X(EFULL, "queue full")                                                                         \
    X(EIO, "input/output error")                                                                   \
    X(ESCRIPT, "script error")                                                                     \
    X(EBUDGET, "budget exceeded")                                                                  \
    X(ETIMEOUT, "timed out")                                                                       \
    X(EUNSUPPORTED, "not supported")                                                               \
    X(EINTERNAL, "internal error")

enum eddy_err_code {
    EDDY_OK = 0,
    EDDY_ERR_FIRST_ = -100,
#define EDDY_ERR_ENUM_(name, text) EDDY_##name,
    EDDY_ERR_MAP(EDDY_ERR_ENUM_)
#undef EDDY_ERR_ENUM_
};

#define EDDY_ERR_MSG_MAX 512
#define EDDY_ERR_ID_MAX  96

typedef struct eddy_err {
    int code;                        /* EDDY_OK when no error was set */
    char msg[EDDY_ERR_MSG_MAX];      /* what went wrong, without the location */
    char file[256];                  /* "" when not about a file */
    int line;                        /* 1-based; 0 when unknown */
    int column;                      /* 1-based; 0 when unknown */
    char node_id[EDDY_ERR_ID_MAX];   /* "" when not about a node */
    char node_type[EDDY_ERR_ID_MAX]; /* "" when unknown */
    char tab[EDDY_ERR_ID_MAX];       /* tab (or subflow) id; "" when unknown */
} eddy_err;

/* Symbolic name of 'code' ("EINVAL"); "EDDY_OK" for 0 and "EUNKNOWN" otherwise. */
const char *eddy_err_name(int code);
/* Default text of 'code'. */
const char *eddy_err_text(int code);

/* Clears 'err' (may be NULL). */
void eddy_err_clear(eddy_err *err);
/* Sets code and message (printf format) on 'err' (may be NULL); keeps any location already
 * set. Returns 'code' so callers can write 'return eddy_err_set(err, EDDY_EINVAL, ...)'. */
int eddy_err_set(eddy_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fills the node location fields; NULL arguments leave a field unchanged. */
void eddy_err_at_node(eddy_err *err, const char *node_id, const char *node_type, const char *tab);
/* Fills the file location; line/column 0 mean unknown. */
void eddy_err_at_file(eddy_err *err, const char *file, int line, int column);
/* Writes "file:line:col: node <id> (<type>) on tab <tab>: message" into 'buf'. */
void eddy_err_format(const eddy_err *err, char *buf, size_t size);

#endif
