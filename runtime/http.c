/* http.c: eddy's HTTP and websocket server on libwebsockets 4.1, which runs as a *foreign
 * loop* on eddy's libuv loop. One vhost, one protocol (index 0, so that the editor's
 * /comms upgrade, which names no subprotocol, binds to it) serving both plain HTTP and the
 * websocket. What the routes mean is the admin module's business; this file parses
 * requests, dispatches them in order, writes replies in chunks and runs /comms.
 *
 * Design notes:
 *   1. A request (eddy_http_req) is owned by this module from the moment its headers arrive
 *      until its reply has been written (or dropped). Its connection points to it while
 *      the client is there; if the client goes away before the reply, the request is
 *      marked orphaned and freed when the handler replies (the reply is discarded).
 *   2. Replies are never written from the handler: eddy_http_reply stores the response and
 *      asks for a writable callback. Headers go out first, then the body in CHUNK-sized
 *      writes, one per writable callback, so a big file never sits in one lws_write.
 *   3. A body bigger than max_body is read and discarded (never stored), then answered 413;
 *      reading it to the end keeps the connection usable (keep-alive). libwebsockets does
 *      not decode chunked request bodies, so a body without Content-Length is answered 411
 *      and the connection closed (its bytes must not be read as a next request).
 *   4. /comms: published messages wait per client in 'pending' until the batch timer cuts
 *      them into frames of at most COMMS_BATCH; frames wait in the client's queue until the
 *      socket is writable. A client with COMMS_MAX_FRAMES waiting is dropped.
 *   5. Teardown (eddy_http_free): lws_context_destroy starts closing every connection and
 *      lws' own uv handles; the loop is then turned until lws reports the context gone
 *      (info.pcontext cleared), so no handle of ours outlives eddy_http_free. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "mem.h"
#include "msg.h"

#define CHUNK             65536 /* bytes per body write */
#define COMMS_BATCH       50    /* messages per /comms frame (Node-RED's figure) */
#define COMMS_MAX_FRAMES  1000  /* frames waiting before a client is dropped */
#define COMMS_MAX_RX      65536 /* biggest client frame we accept, bytes */
#define HEADER_SPACE      4096  /* bytes for response headers */
#define DESTROY_TURNS_MAX 100000
#define WRITE_STALL_SECS  60 /* a reply that makes no progress this long is dropped */

/* ---- data ---- */

typedef struct route {
    char method[8];
    char *pattern; /* without the leading slash; a prefix pattern keeps its "x/" */
    bool prefix;
    unsigned flags;
    eddy_http_handler handler;
    void *data;
} route;

typedef struct static_dir {
    char *prefix; /* "red/" or "" */
    char *dir;
    int max_age; /* seconds; 0 = no-cache */
} static_dir;

typedef struct kv {
    char *name, *value;
} kv;

typedef struct param_cache {
    char *name;
    const char **values;
    int count;
} param_cache;

typedef struct out_header {
    char *name; /* with the trailing ':' */
    char *value;
} out_header;

struct eddy_http_req {
    eddy_http *http;
    struct lws *wsi; /* NULL once the client is gone */
    eddy_http_req *prev, *next;
    bool orphaned; /* client gone, waiting for the handler's reply */
    bool dispatched;
    bool replied;
    char method[8];
    char *path; /* decoded, without leading slash */
    const char *rest;
    kv *headers;
    int nheaders, capheaders;
    kv *params;
    int nparams, capparams;
    param_cache *pcache;
    int npcache;
    eddy_buf body;
    size_t body_expected; /* Content-Length */
    bool too_big;
    bool no_length; /* a body without Content-Length (chunked): 411, then close */
    /* the response */
    int status;
    char *ctype;
    out_header *out;
    int nout, capout;
    unsigned char *rbody; /* NULL when the body is a file */
    size_t rlen, roff;
    int fd; /* static file, -1 otherwise */
    bool headers_sent;
};

typedef struct frame {
    struct frame *next;
    size_t len;
    unsigned char bytes[]; /* LWS_PRE bytes, then the payload */
} frame;

typedef struct comms_client {
    eddy_http *http;
    struct lws *wsi;
    struct comms_client *prev, *next;
    bool authed;
    bool dead;            /* being dropped: no more frames */
    bool close_when_sent; /* after {"auth":"fail"} */
    char **subs;
    int nsubs, capsubs;
    json_t *pending; /* array of {"topic","data"} waiting for the batch timer */
    frame *head, *tail;
    int nframes;
    eddy_buf rx;       /* fragments of one client message */
    int64_t last_sent; /* loop ms when a frame was last queued */
} comms_client;

/* Per-connection user space (lws allocates and zeroes it). */
typedef struct conn {
    eddy_http_req *req;
    comms_client *client;
} conn;

struct eddy_http {
    eddy_loop *loop;
    uv_loop_t *uv;
    struct lws_context *ctx; /* lws clears it when the context is gone (info.pcontext) */
    struct lws_vhost *vhost;
    struct lws_protocols protocols[2];
    int port;
    size_t max_body;
    char *comms_path;
    int heartbeat_ms, batch_ms;
    route *routes;
    int nroutes, caproutes;
    static_dir *statics;
    int nstatics, capstatics;
    eddy_http_token_check check;
    void *check_data;
    eddy_http_req *reqs; /* every live request */
    comms_client *clients;
    int nclients;
    json_t *retained; /* topic -> data */
    eddy_timer *batch_timer, *hb_timer;
    unsigned char *wbuf; /* LWS_PRE + CHUNK, for writes */
    bool freeing;
};

static int lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);

/* ---- small helpers ---- */

/* Decodes %xx and '+' of a form-encoded piece into new memory (eddy_free). */
static char *form_decode(const char *s, size_t n)
{
    char *out = eddy_malloc(n + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[j++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && eddy_hex_digit(s[i + 1]) >= 0 &&
                   eddy_hex_digit(s[i + 2]) >= 0) {
            out[j++] = (char)(eddy_hex_digit(s[i + 1]) * 16 + eddy_hex_digit(s[i + 2]));
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

static void log_lws(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    eddy_log(level == LLL_ERR ? EDDY_LOG_ERROR : EDDY_LOG_WARN, "[http] lws: %.*s", (int)n, line);
}

/* ---- requests ---- */

static int kv_add(kv **arr, int *n, int *cap, char *name, char *value)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 16;
        kv *a = eddy_realloc(*arr, (size_t)c * sizeof(*a));
        if (!a)
            return EDDY_ENOMEM;
        *arr = a;
        *cap = c;
    }
    (*arr)[*n].name = name;
    (*arr)[*n].value = value;
    (*n)++;
    return EDDY_OK;
}

static int add_param(eddy_http_req *req, const char *s, size_t n)
{
    if (n == 0)
        return EDDY_OK;
    const char *eq = memchr(s, '=', n);
    size_t nlen = eq ? (size_t)(eq - s) : n;
    char *name = form_decode(s, nlen);
    char *value = eq ? form_decode(eq + 1, n - nlen - 1) : eddy_strdup("");
    if (!name || !value || kv_add(&req->params, &req->nparams, &req->capparams, name, value)) {
        eddy_free(name);
        eddy_free(value);
        return EDDY_ENOMEM;
    }
    return EDDY_OK;
}

/* Splits "a=1&b=2" (still encoded) into parameters. */
static int add_form(eddy_http_req *req, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '&')
            j++;
        if (add_param(req, s + i, j - i) != EDDY_OK)
            return EDDY_ENOMEM;
        i = j + 1;
    }
    return EDDY_OK;
}

static void req_unlink(eddy_http_req *req)
{
    eddy_http *http = req->http;
    if (req->prev)
        req->prev->next = req->next;
    else if (http->reqs == req)
        http->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void req_free(eddy_http_req *req)
{
    if (!req)
        return;
    req_unlink(req);
    eddy_free(req->path);
    for (int i = 0; i < req->nheaders; i++) {
        eddy_free(req->headers[i].name);
        eddy_free(req->headers[i].value);
    }
    eddy_free(req->headers);
    for (int i = 0; i < req->nparams; i++) {
        eddy_free(req->params[i].name);
        eddy_free(req->params[i].value);
    }
    eddy_free(req->params);
    for (int i = 0; i < req->npcache; i++) {
        eddy_free(req->pcache[i].name);
        eddy_free(req->pcache[i].values);
    }
    eddy_free(req->pcache);
    eddy_free(req->body.data);
    eddy_free(req->ctype);
    for (int i = 0; i < req->nout; i++) {
        eddy_free(req->out[i].name);
        eddy_free(req->out[i].value);
    }
    eddy_free(req->out);
    eddy_free(req->rbody);
    if (req->fd >= 0)
        close(req->fd);
    eddy_free(req);
}

static const char *const methods[][2] = {{"GET", NULL},    {"POST", NULL},  {"PUT", NULL},
                                         {"DELETE", NULL}, {"PATCH", NULL}, {"OPTIONS", NULL},
                                         {"HEAD", NULL}};

static const char *method_of(struct lws *wsi)
{
    static const enum lws_token_indexes tok[] = {
        WSI_TOKEN_GET_URI,   WSI_TOKEN_POST_URI,    WSI_TOKEN_PUT_URI, WSI_TOKEN_DELETE_URI,
        WSI_TOKEN_PATCH_URI, WSI_TOKEN_OPTIONS_URI, WSI_TOKEN_HEAD_URI};
    for (size_t i = 0; i < sizeof(tok) / sizeof(tok[0]); i++)
        if (lws_hdr_total_length(wsi, tok[i]) > 0)
            return methods[i][0];
    return NULL;
}

/* Copies one header value out of lws into the request under 'name' (lower case). */
static int copy_header(eddy_http_req *req, const char *name, int len, bool custom,
                       enum lws_token_indexes tok, const char *cname)
{
    char *value = eddy_malloc((size_t)len + 1);
    char *n = eddy_strdup(name);
    if (!value || !n)
        goto fail;
    int got = custom ? lws_hdr_custom_copy(req->wsi, value, len + 1, cname, (int)strlen(cname))
                     : lws_hdr_copy(req->wsi, value, len + 1, tok);
    if (got < 0)
        goto fail;
    value[got] = '\0';
    if (kv_add(&req->headers, &req->nheaders, &req->capheaders, n, value) != EDDY_OK)
        goto fail;
    return EDDY_OK;
fail:
    eddy_free(value);
    eddy_free(n);
    return EDDY_ENOMEM;
}

/* Headers lws does not know by token that the editor sends. */
static const char *const custom_headers[] = {"node-red-api-version", "node-red-deployment-type",
                                             NULL};

/* Takes what the request needs out of lws' header storage (which goes away with the
 * transaction or the client). */
static int req_capture(eddy_http_req *req, const char *uri)
{
    struct lws *wsi = req->wsi;
    while (*uri == '/')
        uri++;
    req->path = eddy_strdup(uri);
    if (!req->path)
        return EDDY_ENOMEM;
    req->rest = "";
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const char *s = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        int len = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        if (!s || len <= 0)
            continue;
        size_t sl = strlen(s);
        if (sl < 2 || s[0] == ':' || s[sl - 1] != ':')
            continue; /* a method, a pseudo-header or the URI arguments */
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(sl - 1), s);
        if (copy_header(req, name, len, false, (enum lws_token_indexes)t, NULL) != EDDY_OK)
            return EDDY_ENOMEM;
    }
    for (int i = 0; custom_headers[i]; i++) {
        char cname[64];
        snprintf(cname, sizeof(cname), "%s:", custom_headers[i]);
        int len = lws_hdr_custom_length(wsi, cname, (int)strlen(cname));
        if (len > 0 && copy_header(req, custom_headers[i], len, true, 0, cname) != EDDY_OK)
            return EDDY_ENOMEM;
    }
    /* lws has already decoded the arguments and split them at unencoded '&'. */
    char frag[4096];
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        char *eq = memchr(frag, '=', (size_t)n);
        size_t nlen = eq ? (size_t)(eq - frag) : (size_t)n;
        char *name = eddy_strndup(frag, nlen);
        char *value = eq ? eddy_strdup(eq + 1) : eddy_strdup("");
        if (!name || !value || kv_add(&req->params, &req->nparams, &req->capparams, name, value)) {
            eddy_free(name);
            eddy_free(value);
            return EDDY_ENOMEM;
        }
    }
    return EDDY_OK;
}

/* ---- replies ---- */

static void reply_store(eddy_http_req *req, int status, const char *content_type,
                        unsigned char *body, size_t len)
{
    if (req->replied) {
        eddy_log(EDDY_LOG_ERROR, "[http] %s /%s replied to twice; the second reply is dropped",
                 req->method, req->path ? req->path : "");
        eddy_free(body);
        return;
    }
    req->replied = true;
    if (req->orphaned || !req->wsi) {
        eddy_log(EDDY_LOG_DEBUG, "[http] %s /%s: client gone, reply %d discarded", req->method,
                 req->path, status);
        eddy_free(body);
        req_free(req);
        return;
    }
    req->status = status;
    req->ctype = eddy_strdup(content_type ? content_type : "application/octet-stream");
    req->rbody = body;
    req->rlen = len;
    lws_callback_on_writable(req->wsi);
}

void eddy_http_reply(eddy_http_req *req, int status, const char *content_type, const void *body,
                     size_t len)
{
    unsigned char *copy = NULL;
    if (len > 0) {
        copy = eddy_malloc(len);
        if (!copy) {
            eddy_log(EDDY_LOG_ERROR, "[http] out of memory copying a reply of %zu bytes", len);
            status = 500;
            len = 0;
            content_type = "text/plain";
        } else {
            memcpy(copy, body, len);
        }
    }
    reply_store(req, status, content_type, copy, len);
}

void eddy_http_reply_json(eddy_http_req *req, int status, json_t *body)
{
    char *text = NULL;
    size_t len = 0;
    if (body) {
        text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(body);
        if (!text) {
            eddy_http_reply(req, 500, "text/plain", "out of memory", 13);
            return;
        }
        len = strlen(text);
    }
    /* json_dumps allocates through eddy_malloc (eddy_mem_install), so the text is ours. */
    reply_store(req, status, "application/json; charset=utf-8", (unsigned char *)text, len);
}

void eddy_http_reply_error(eddy_http_req *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    eddy_http_reply_json(req, status, json_pack("{s:s,s:s}", "code", code, "message", msg));
}

int eddy_http_add_header(eddy_http_req *req, const char *name, const char *value)
{
    if (req->nout == req->capout) {
        int c = req->capout ? req->capout * 2 : 4;
        out_header *a = eddy_realloc(req->out, (size_t)c * sizeof(*a));
        if (!a)
            return EDDY_ENOMEM;
        req->out = a;
        req->capout = c;
    }
    size_t nl = strlen(name);
    char *n = eddy_malloc(nl + 2);
    char *v = eddy_strdup(value);
    if (!n || !v) {
        eddy_free(n);
        eddy_free(v);
        return EDDY_ENOMEM;
    }
    memcpy(n, name, nl);
    n[nl] = name[nl - 1] == ':' ? '\0' : ':';
    n[nl + 1] = '\0';
    req->out[req->nout].name = n;
    req->out[req->nout].value = v;
    req->nout++;
    return EDDY_OK;
}

/* ---- request accessors ---- */

const char *eddy_http_req_method(const eddy_http_req *req)
{
    return req->method;
}

const char *eddy_http_req_path(const eddy_http_req *req)
{
    return req->path;
}

const char *eddy_http_req_rest(const eddy_http_req *req)
{
    return req->rest;
}

const char *eddy_http_req_header(const eddy_http_req *req, const char *name)
{
    for (int i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    /* A header lws knows no token for, looked up while lws still holds the headers. */
    if (!req->wsi || req->replied)
        return NULL;
    char cname[128];
    int n = snprintf(cname, sizeof(cname), "%s:", name);
    if (n <= 0 || (size_t)n >= sizeof(cname))
        return NULL;
    for (char *p = cname; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    int len = lws_hdr_custom_length(req->wsi, cname, n);
    if (len <= 0)
        return NULL;
    eddy_http_req *r = (eddy_http_req *)req; /* a cache fill, not a visible change */
    char lname[128];
    snprintf(lname, sizeof(lname), "%.*s", n - 1, cname);
    if (copy_header(r, lname, len, true, 0, cname) != EDDY_OK)
        return NULL;
    return r->headers[r->nheaders - 1].value;
}

const char *eddy_http_req_param(const eddy_http_req *req, const char *name)
{
    for (int i = 0; i < req->nparams; i++)
        if (strcmp(req->params[i].name, name) == 0)
            return req->params[i].value;
    return NULL;
}

int eddy_http_req_params(const eddy_http_req *req, const char *name, const char *const **values)
{
    eddy_http_req *r = (eddy_http_req *)req; /* the cache is the request's own memory */
    *values = NULL;
    for (int i = 0; i < r->npcache; i++)
        if (strcmp(r->pcache[i].name, name) == 0) {
            *values = r->pcache[i].values;
            return r->pcache[i].count;
        }
    int count = 0;
    for (int i = 0; i < r->nparams; i++)
        count += strcmp(r->params[i].name, name) == 0;
    if (count == 0)
        return 0;
    param_cache *pc = eddy_realloc(r->pcache, (size_t)(r->npcache + 1) * sizeof(*pc));
    if (!pc)
        return 0;
    r->pcache = pc;
    const char **vals = eddy_malloc((size_t)count * sizeof(*vals));
    char *n = eddy_strdup(name);
    if (!vals || !n) {
        eddy_free(vals);
        eddy_free(n);
        return 0;
    }
    int k = 0;
    for (int i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].name, name) == 0)
            vals[k++] = r->params[i].value;
    pc[r->npcache].name = n;
    pc[r->npcache].values = vals;
    pc[r->npcache].count = count;
    r->npcache++;
    *values = vals;
    return count;
}

const char *eddy_http_req_body(const eddy_http_req *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

/* ---- routes and static files ---- */

int eddy_http_route(eddy_http *http, const char *method, const char *pattern, unsigned flags,
                    eddy_http_handler handler, void *data)
{
    if (http->nroutes == http->caproutes) {
        int c = http->caproutes ? http->caproutes * 2 : 16;
        route *a = eddy_realloc(http->routes, (size_t)c * sizeof(*a));
        if (!a)
            return EDDY_ENOMEM;
        http->routes = a;
        http->caproutes = c;
    }
    route *r = &http->routes[http->nroutes];
    memset(r, 0, sizeof(*r));
    size_t n = strlen(pattern);
    r->prefix = n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '/';
    r->pattern = eddy_strndup(pattern, r->prefix ? n - 1 : n); /* keeps the '/' */
    if (!r->pattern)
        return EDDY_ENOMEM;
    snprintf(r->method, sizeof(r->method), "%s", method);
    r->flags = flags;
    r->handler = handler;
    r->data = data;
    http->nroutes++;
    return EDDY_OK;
}

int eddy_http_static(eddy_http *http, const char *url_prefix, const char *dir, int max_age)
{
    if (http->nstatics == http->capstatics) {
        int c = http->capstatics ? http->capstatics * 2 : 8;
        static_dir *a = eddy_realloc(http->statics, (size_t)c * sizeof(*a));
        if (!a)
            return EDDY_ENOMEM;
        http->statics = a;
        http->capstatics = c;
    }
    static_dir *s = &http->statics[http->nstatics];
    s->prefix = eddy_strdup(url_prefix);
    s->dir = eddy_strdup(dir);
    s->max_age = max_age;
    if (!s->prefix || !s->dir) {
        eddy_free(s->prefix);
        eddy_free(s->dir);
        return EDDY_ENOMEM;
    }
    http->nstatics++;
    return EDDY_OK;
}

static const char *const mime_types[][2] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"js", "application/javascript; charset=utf-8"},
    {"mjs", "application/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"map", "application/json; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"eot", "application/vnd.ms-fontobject"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"wasm", "application/wasm"},
};

static const char *mime_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof(mime_types) / sizeof(mime_types[0]); i++)
            if (strcasecmp(dot + 1, mime_types[i][0]) == 0)
                return mime_types[i][1];
    return "application/octet-stream";
}

/* true when a path segment is "..", or the path holds a NUL or a backslash. */
static bool path_unsafe(const char *p)
{
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");
        if ((n == 2 && s[0] == '.' && s[1] == '.') || memchr(s, '\\', n))
            return true;
        s += n;
        if (*s == '/')
            s++;
    }
    return false;
}

static bool accepts_gzip(const eddy_http_req *req)
{
    const char *ae = eddy_http_req_header(req, "accept-encoding");
    return ae && strstr(ae, "gzip") != NULL;
}

static int open_regular(const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Serves 'req' from the static folders: true when answered (file or 400). */
static bool serve_static(eddy_http *http, eddy_http_req *req)
{
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
        return false;
    for (int i = 0; i < http->nstatics; i++) {
        const static_dir *s = &http->statics[i];
        size_t pl = strlen(s->prefix);
        if (strncmp(req->path, s->prefix, pl) != 0)
            continue;
        const char *rel = req->path + pl;
        if (path_unsafe(req->path)) {
            eddy_http_reply_error(req, 400, "bad_request", "path /%s is not allowed", req->path);
            return true;
        }
        if (*rel == '\0')
            continue;
        size_t n = strlen(s->dir) + strlen(rel) + 8;
        char *file = eddy_malloc(n);
        if (!file) {
            eddy_http_reply_error(req, 500, "server_error", "out of memory");
            return true;
        }
        struct stat st;
        int fd = -1;
        bool gz = false;
        if (accepts_gzip(req)) {
            snprintf(file, n, "%s/%s.gz", s->dir, rel);
            fd = open_regular(file, &st);
            gz = fd >= 0;
        }
        if (fd < 0) {
            snprintf(file, n, "%s/%s", s->dir, rel);
            fd = open_regular(file, &st);
        }
        eddy_free(file);
        if (fd < 0)
            continue;
        char cc[64];
        if (s->max_age > 0)
            snprintf(cc, sizeof(cc), "public, max-age=%d", s->max_age);
        else
            snprintf(cc, sizeof(cc), "no-cache");
        if (eddy_http_add_header(req, "Cache-Control", cc) != EDDY_OK ||
            (gz && (eddy_http_add_header(req, "Content-Encoding", "gzip") != EDDY_OK)) ||
            eddy_http_add_header(req, "Vary", "Accept-Encoding") != EDDY_OK) {
            close(fd);
            eddy_http_reply_error(req, 500, "server_error", "out of memory");
            return true;
        }
        req->fd = fd;
        reply_store(req, 200, mime_of(rel), NULL, (size_t)st.st_size);
        return true;
    }
    return false;
}

static bool route_matches(const route *r, const eddy_http_req *req, const char **rest)
{
    if (strcmp(r->method, "*") != 0 && strcmp(r->method, req->method) != 0)
        return false;
    if (r->prefix) {
        size_t n = strlen(r->pattern);
        if (strncmp(req->path, r->pattern, n) != 0)
            return false;
        *rest = req->path + n;
        return true;
    }
    *rest = "";
    return strcmp(req->path, r->pattern) == 0;
}

/* What the request's bearer token allows (EDDY_HTTP_AUTH_*). */
static int token_allows(eddy_http *http, const eddy_http_req *req)
{
    if (!http->check)
        return EDDY_HTTP_AUTH_WRITE;
    const char *a = eddy_http_req_header(req, "authorization");
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return EDDY_HTTP_AUTH_NONE;
    a += 7;
    while (*a == ' ')
        a++;
    return *a ? http->check(a, http->check_data) : EDDY_HTTP_AUTH_NONE;
}

/* Hands a complete request to its route, the static folders or a 404. */
static void dispatch(eddy_http *http, eddy_http_req *req)
{
    req->dispatched = true;
    /* lws arms a timeout for the whole transaction; a handler may take longer (LATER). */
    if (req->wsi)
        lws_set_timeout(req->wsi, NO_PENDING_TIMEOUT, 0);
    if (req->no_length) {
        eddy_http_reply_error(req, 411, "length_required",
                              "a request body needs a Content-Length (chunked bodies are not "
                              "supported)");
        return;
    }
    if (req->too_big) {
        eddy_http_reply_error(req, 413, "payload_too_large",
                              "request body over the limit of %zu bytes", http->max_body);
        return;
    }
    if (req->body.failed) {
        eddy_http_reply_error(req, 500, "server_error", "out of memory reading the request");
        return;
    }
    for (int i = 0; i < http->nroutes; i++) {
        const route *r = &http->routes[i];
        const char *rest;
        if (!route_matches(r, req, &rest))
            continue;
        if (!(r->flags & EDDY_HTTP_PUBLIC)) {
            int allows = token_allows(http, req);
            if (allows == EDDY_HTTP_AUTH_NONE) {
                eddy_http_reply_error(req, 401, "unauthorized", "a valid access token is required");
                return;
            }
            if ((r->flags & EDDY_HTTP_WRITE) && allows != EDDY_HTTP_AUTH_WRITE) {
                eddy_http_reply_error(req, 401, "unauthorized",
                                      "this user's permission is read-only");
                return;
            }
        }
        req->rest = rest;
        /* The form body is parsed on the way in so that handlers see one set of params. */
        const char *ct = eddy_http_req_header(req, "content-type");
        if (ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0 &&
            req->body.len > 0 && add_form(req, req->body.data, req->body.len) != EDDY_OK) {
            eddy_http_reply_error(req, 500, "server_error", "out of memory reading the form");
            return;
        }
        int rc = r->handler(req, r->data);
        if (rc == EDDY_HTTP_DONE && !req->replied) {
            eddy_log(EDDY_LOG_ERROR, "[http] %s /%s: handler returned without replying",
                     req->method, req->path);
            eddy_http_reply_error(req, 500, "server_error", "no reply");
        }
        return;
    }
    if (serve_static(http, req))
        return;
    if (path_unsafe(req->path)) {
        eddy_http_reply_error(req, 400, "bad_request", "path /%s is not allowed", req->path);
        return;
    }
    eddy_http_reply_error(req, 404, "not_found", "no route for %s /%s", req->method, req->path);
}

/* ---- writing replies ---- */

/* Writes headers, then one chunk per writable callback. Returns -1 to close. */
static int write_reply(eddy_http *http, conn *c, struct lws *wsi)
{
    eddy_http_req *req = c->req;
    if (!req || !req->replied)
        return 0;
    unsigned char *start = http->wbuf + LWS_PRE, *p = start, *end = start + HEADER_SPACE - 1;
    size_t total = req->rlen;
    if (!req->headers_sent) {
        bool head = strcmp(req->method, "HEAD") == 0;
        if (lws_add_http_common_headers(wsi, (unsigned)req->status, req->ctype, total, &p, end))
            return -1;
        for (int i = 0; i < req->nout; i++)
            if (lws_add_http_header_by_name(wsi, (const unsigned char *)req->out[i].name,
                                            (const unsigned char *)req->out[i].value,
                                            (int)strlen(req->out[i].value), &p, end))
                return -1;
        if (lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        req->headers_sent = true;
        if (head)
            req->roff = total;
        if (req->roff < total) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else if (req->roff < total) {
        size_t n = total - req->roff;
        if (n > CHUNK)
            n = CHUNK;
        if (req->rbody) {
            memcpy(start, req->rbody + req->roff, n);
        } else {
            ssize_t got = read(req->fd, start, n);
            if (got <= 0) {
                eddy_log(EDDY_LOG_WARN, "[http] GET /%s: file read failed: %s", req->path,
                         got < 0 ? strerror(errno) : "file shrank");
                return -1;
            }
            n = (size_t)got;
        }
        req->roff += n;
        bool last = req->roff >= total;
        /* A slow client may take long over a big body; it must only keep moving. */
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, WRITE_STALL_SECS);
        int w = lws_write(wsi, start, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        if (w < (int)n) {
            eddy_log(EDDY_LOG_DEBUG, "[http] %s /%s: write of %zu bytes gave %d; closing",
                     req->method, req->path, n, w);
            return -1;
        }
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    /* Done: the connection waits for the next request (keep-alive). */
    c->req = NULL;
    bool close_now = req->no_length;
    req_free(req);
    if (close_now || lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

/* ---- /comms ---- */

/* "+" is one level, a trailing "/#" any suffix (or none), "#" everything. */
static bool topic_matches(const char *pattern, const char *topic)
{
    if (strcmp(pattern, "#") == 0)
        return true;
    const char *p = pattern, *t = topic;
    for (;;) {
        if (p[0] == '#' && p[1] == '\0')
            return true;
        size_t pl = strcspn(p, "/"), tl = strcspn(t, "/");
        if (pl == 1 && p[0] == '+') {
            if (tl == 0)
                return false;
        } else if (pl != tl || strncmp(p, t, pl) != 0) {
            return false;
        }
        p += pl;
        t += tl;
        if (*p == '\0' && *t == '\0')
            return true;
        if (*p == '/' && p[1] == '#' && p[2] == '\0' && *t == '\0')
            return true; /* "a/#" matches "a" */
        if (*p != '/' || *t != '/')
            return false;
        p++;
        t++;
    }
}

static bool client_wants(const comms_client *cl, const char *topic)
{
    for (int i = 0; i < cl->nsubs; i++)
        if (topic_matches(cl->subs[i], topic))
            return true;
    return false;
}

static void client_free_frames(comms_client *cl)
{
    while (cl->head) {
        frame *f = cl->head;
        cl->head = f->next;
        eddy_free(f);
    }
    cl->tail = NULL;
    cl->nframes = 0;
}

/* Drops a client that cannot keep up or misbehaves; lws closes it on a later turn. */
static void client_drop(comms_client *cl, const char *why)
{
    if (cl->dead)
        return;
    eddy_log(EDDY_LOG_WARN, "[http] comms client dropped: %s", why);
    cl->dead = true;
    client_free_frames(cl);
    json_array_clear(cl->pending);
    if (cl->wsi)
        lws_set_timeout(cl->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Queues one text frame. Takes nothing; copies 'text'. */
static void client_queue(comms_client *cl, const char *text, size_t len)
{
    if (cl->dead)
        return;
    if (cl->nframes >= COMMS_MAX_FRAMES) {
        client_drop(cl, "1000 frames waiting");
        return;
    }
    frame *f = eddy_malloc(sizeof(*f) + LWS_PRE + len);
    if (!f) {
        client_drop(cl, "out of memory");
        return;
    }
    f->next = NULL;
    f->len = len;
    memcpy(f->bytes + LWS_PRE, text, len);
    if (cl->tail)
        cl->tail->next = f;
    else
        cl->head = f;
    cl->tail = f;
    cl->nframes++;
    cl->last_sent = eddy_loop_now(cl->http->loop);
    if (cl->wsi)
        lws_callback_on_writable(cl->wsi);
}

static void client_queue_json(comms_client *cl, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    if (!text) {
        client_drop(cl, "out of memory");
        return;
    }
    client_queue(cl, text, strlen(text));
    eddy_free(text);
}

/* Cuts the client's pending messages into frames of at most COMMS_BATCH. */
static void client_flush(comms_client *cl)
{
    size_t n = json_array_size(cl->pending);
    for (size_t i = 0; i < n && !cl->dead; i += COMMS_BATCH) {
        size_t m = n - i < COMMS_BATCH ? n - i : COMMS_BATCH;
        json_t *batch = json_array();
        if (!batch) {
            client_drop(cl, "out of memory");
            break;
        }
        for (size_t k = 0; k < m; k++)
            json_array_append(batch, json_array_get(cl->pending, i + k));
        client_queue_json(cl, batch);
        json_decref(batch);
    }
    json_array_clear(cl->pending);
}

static int64_t batch_fire(eddy_loop *loop, eddy_timer *timer, void *data)
{
    eddy_http *http = data;
    http->batch_timer = NULL;
    for (comms_client *cl = http->clients; cl; cl = cl->next)
        client_flush(cl);
    return EDDY_TIMER_STOP;
}

static int64_t heartbeat_fire(eddy_loop *loop, eddy_timer *timer, void *data)
{
    eddy_http *http = data;
    int64_t now = eddy_loop_now(loop), next = -1;
    for (comms_client *cl = http->clients; cl; cl = cl->next) {
        if (cl->dead || !cl->authed)
            continue;
        if (now - cl->last_sent >= http->heartbeat_ms) {
            char hb[64];
            int n = snprintf(hb, sizeof(hb), "[{\"topic\":\"hb\",\"data\":%lld}]",
                             (long long)eddy_loop_wall(loop));
            client_queue(cl, hb, (size_t)n);
        }
        int64_t due = cl->last_sent + http->heartbeat_ms - now;
        if (next < 0 || due < next)
            next = due;
    }
    if (next < 0) {
        http->hb_timer = NULL;
        return EDDY_TIMER_STOP;
    }
    return next > 0 ? next : 1;
}

static void heartbeat_arm(eddy_http *http)
{
    if (!http->hb_timer && !http->freeing)
        http->hb_timer =
            eddy_timer_start(http->loop, http->heartbeat_ms, heartbeat_fire, http, NULL);
}

/* Sends the retained messages matching 'pattern' now, in frames of COMMS_BATCH. */
static void client_replay(comms_client *cl, const char *pattern)
{
    eddy_http *http = cl->http;
    const char *topic;
    json_t *data;
    json_t *out = json_array();
    if (!out) {
        client_drop(cl, "out of memory");
        return;
    }
    json_object_foreach(http->retained, topic, data)
    {
        if (!topic_matches(pattern, topic))
            continue;
        json_array_append_new(out, json_pack("{s:s,s:O}", "topic", topic, "data", data));
        if (json_array_size(out) == COMMS_BATCH) {
            client_queue_json(cl, out);
            json_array_clear(out);
        }
    }
    if (json_array_size(out) > 0)
        client_queue_json(cl, out);
    json_decref(out);
}

static void client_subscribe(comms_client *cl, const char *pattern)
{
    for (int i = 0; i < cl->nsubs; i++)
        if (strcmp(cl->subs[i], pattern) == 0)
            goto replay;
    if (cl->nsubs == cl->capsubs) {
        int c = cl->capsubs ? cl->capsubs * 2 : 8;
        char **a = eddy_realloc(cl->subs, (size_t)c * sizeof(*a));
        if (!a) {
            client_drop(cl, "out of memory");
            return;
        }
        cl->subs = a;
        cl->capsubs = c;
    }
    cl->subs[cl->nsubs] = eddy_strdup(pattern);
    if (!cl->subs[cl->nsubs]) {
        client_drop(cl, "out of memory");
        return;
    }
    cl->nsubs++;
replay:
    /* Messages published before this subscribe but not yet batched stay in order. */
    client_flush(cl);
    client_replay(cl, pattern);
}

static void client_message(comms_client *cl, const char *text, size_t len)
{
    eddy_http *http = cl->http;
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, 0, &jerr);
    if (!msg || !json_is_object(msg)) {
        eddy_log(EDDY_LOG_DEBUG, "[http] comms: ignored a client frame that is not a JSON object");
        json_decref(msg);
        return;
    }
    json_t *auth = json_object_get(msg, "auth");
    json_t *sub = json_object_get(msg, "subscribe");
    if (auth) {
        bool ok = !http->check ||
                  (json_is_string(auth) &&
                   http->check(json_string_value(auth), http->check_data) != EDDY_HTTP_AUTH_NONE);
        const char *reply = ok ? "{\"auth\":\"ok\"}" : "{\"auth\":\"fail\"}";
        client_queue(cl, reply, strlen(reply));
        if (ok) {
            cl->authed = true;
        } else {
            cl->close_when_sent = true;
            eddy_log(EDDY_LOG_INFO, "[http] comms: a client failed authentication");
        }
    } else if (sub && json_is_string(sub)) {
        if (cl->authed)
            client_subscribe(cl, json_string_value(sub));
        else
            eddy_log(EDDY_LOG_DEBUG, "[http] comms: subscribe before auth ignored");
    }
    json_decref(msg);
}

static void client_free(comms_client *cl)
{
    eddy_http *http = cl->http;
    if (cl->prev)
        cl->prev->next = cl->next;
    else if (http->clients == cl)
        http->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    http->nclients--;
    client_free_frames(cl);
    for (int i = 0; i < cl->nsubs; i++)
        eddy_free(cl->subs[i]);
    eddy_free(cl->subs);
    json_decref(cl->pending);
    eddy_free(cl->rx.data);
    eddy_free(cl);
}

int eddy_comms_publish(eddy_http *http, const char *topic, json_t *data, bool retain)
{
    if (retain) {
        if (!data) {
            json_object_del(http->retained, topic);
            return EDDY_OK;
        }
        if (json_object_set(http->retained, topic, data) != 0) {
            json_decref(data);
            return EDDY_ENOMEM;
        }
    }
    json_t *m = json_pack("{s:s,s:o}", "topic", topic, "data", data ? data : json_null());
    if (!m)
        return EDDY_ENOMEM;
    bool any = false;
    for (comms_client *cl = http->clients; cl; cl = cl->next) {
        if (cl->dead || !cl->authed || !client_wants(cl, topic))
            continue;
        if (json_array_append(cl->pending, m) != 0) {
            client_drop(cl, "out of memory");
            continue;
        }
        any = true;
    }
    json_decref(m);
    if (any && !http->batch_timer && !http->freeing)
        http->batch_timer = eddy_timer_start(http->loop, http->batch_ms, batch_fire, http, NULL);
    return EDDY_OK;
}

void eddy_comms_forget(eddy_http *http, const char *prefix)
{
    size_t n = strlen(prefix);
    const char *topic;
    json_t *data;
    void *tmp;
    json_object_foreach_safe(http->retained, tmp, topic, data)
    {
        if (strncmp(topic, prefix, n) == 0)
            json_object_del(http->retained, topic);
    }
}

int eddy_comms_clients(const eddy_http *http)
{
    return http->nclients;
}

void eddy_http_set_auth(eddy_http *http, eddy_http_token_check check, void *data)
{
    http->check = check;
    http->check_data = data;
}

/* ---- the lws callback ---- */

static int on_ws(eddy_http *http, conn *c, struct lws *wsi, enum lws_callback_reasons reason,
                 void *in, size_t len)
{
    comms_client *cl = c->client;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        cl = eddy_calloc(1, sizeof(*cl));
        if (!cl || !(cl->pending = json_array())) {
            eddy_free(cl);
            return -1;
        }
        cl->http = http;
        cl->wsi = wsi;
        cl->authed = !http->check;
        cl->last_sent = eddy_loop_now(http->loop);
        cl->next = http->clients;
        if (http->clients)
            http->clients->prev = cl;
        http->clients = cl;
        http->nclients++;
        c->client = cl;
        heartbeat_arm(http);
        eddy_log(EDDY_LOG_DEBUG, "[http] comms client connected (%d)", http->nclients);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (!cl || cl->dead)
            return 0;
        if (cl->rx.len + len > COMMS_MAX_RX) {
            client_drop(cl, "client frame too big");
            return 0;
        }
        eddy_buf_add(&cl->rx, in, len);
        if (cl->rx.failed) {
            client_drop(cl, "out of memory");
            return 0;
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            client_message(cl, cl->rx.data ? cl->rx.data : "", cl->rx.len);
            cl->rx.len = 0;
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!cl || cl->dead)
            return -1;
        if (cl->head) {
            frame *f = cl->head;
            int n = lws_write(wsi, f->bytes + LWS_PRE, f->len, LWS_WRITE_TEXT);
            cl->head = f->next;
            if (!cl->head)
                cl->tail = NULL;
            cl->nframes--;
            eddy_free(f);
            if (n < 0)
                return -1;
            if (cl->head) {
                lws_callback_on_writable(wsi);
                return 0;
            }
        }
        if (cl->close_when_sent) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, NULL, 0);
            return -1;
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (cl) {
            c->client = NULL;
            client_free(cl);
            eddy_log(EDDY_LOG_DEBUG, "[http] comms client gone (%d)", http->nclients);
        }
        return 0;
    default:
        return 0;
    }
}

/* Starts a request: headers are in; a body may follow. */
static int on_http(eddy_http *http, conn *c, struct lws *wsi, const char *uri)
{
    if (c->req) { /* pipelining without waiting: lws should not do this, but be safe */
        eddy_log(EDDY_LOG_WARN, "[http] a request arrived before the previous one was answered");
        return -1;
    }
    const char *method = method_of(wsi);
    if (!method)
        return -1;
    eddy_http_req *req = eddy_calloc(1, sizeof(*req));
    if (!req)
        return -1;
    req->http = http;
    req->wsi = wsi;
    req->fd = -1;
    snprintf(req->method, sizeof(req->method), "%s", method);
    req->next = http->reqs;
    if (http->reqs)
        http->reqs->prev = req;
    http->reqs = req;
    c->req = req;
    if (req_capture(req, uri) != EDDY_OK) {
        eddy_http_reply_error(req, 500, "server_error", "out of memory reading the request");
        return 0;
    }
    const char *cl = eddy_http_req_header(req, "content-length");
    if (cl && *cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        req->body_expected = (size_t)n;
        if (n > http->max_body)
            req->too_big = true; /* read and discard it, then 413 */
    } else if (eddy_http_req_header(req, "transfer-encoding")) {
        req->no_length = true;
    }
    if (req->body_expected == 0)
        dispatch(http, req);
    return 0;
}

static int on_http_body(eddy_http *http, conn *c, const void *in, size_t len)
{
    eddy_http_req *req = c->req;
    if (!req || req->dispatched)
        return 0;
    if (req->too_big || req->body.len + len > http->max_body) {
        req->too_big = true;
        eddy_free(req->body.data);
        memset(&req->body, 0, sizeof(req->body));
        return 0;
    }
    eddy_buf_add(&req->body, in, len);
    return 0;
}

static void on_http_closed(conn *c)
{
    eddy_http_req *req = c->req;
    if (!req)
        return;
    c->req = NULL;
    req->wsi = NULL;
    if (req->dispatched && !req->replied)
        req->orphaned = true; /* its handler will reply; the reply frees it */
    else
        req_free(req);
}

static int lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    eddy_http *http = ctx ? lws_context_user(ctx) : NULL;
    conn *c = user;
    if (!http)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[256];
        int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
        if (n < 0 || strcmp(uri, http->comms_path) != 0) {
            eddy_log(EDDY_LOG_DEBUG, "[http] websocket upgrade refused for %s", n < 0 ? "?" : uri);
            return 1;
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLOSED:
        return c ? on_ws(http, c, wsi, reason, in, len) : 0;
    case LWS_CALLBACK_HTTP:
        return c ? on_http(http, c, wsi, in ? (const char *)in : "/") : -1;
    case LWS_CALLBACK_HTTP_BODY:
        return c ? on_http_body(http, c, in, len) : 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (c && c->req && !c->req->dispatched)
            dispatch(http, c->req);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return c ? write_reply(http, c, wsi) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (c)
            on_http_closed(c);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- life cycle ---- */

typedef struct handle_scan {
    const void *ctx;
    int count;
} handle_scan;

static void scan_handle(uv_handle_t *h, void *arg)
{
    handle_scan *scan = arg;
    scan->count += h->data == scan->ctx;
}

/* lws' own uv handles (its idle and timer) carry the context in 'data' until closed. */
static bool lws_handles_left(eddy_http *http, const void *ctx)
{
    handle_scan scan = {ctx, 0};
    uv_walk(http->uv, scan_handle, &scan);
    return scan.count > 0;
}

/* On a foreign libuv loop lws 4.1 destroys in stages: the first lws_context_destroy closes
 * every connection, and once the last one is closed, its own idle and timer handles; the
 * loop must turn for those closes to complete. lws does not finish by itself afterwards
 * (its close callback only does that for its own loop), so a second lws_context_destroy
 * frees the rest, which clears http->ctx through info.pcontext. */
static void destroy_context(eddy_http *http)
{
    const void *ctx = http->ctx;
    if (!ctx)
        return;
    lws_context_destroy(http->ctx);
    for (int i = 0; http->ctx && lws_handles_left(http, ctx) && i < DESTROY_TURNS_MAX; i++)
        uv_run(http->uv, UV_RUN_NOWAIT);
    if (http->ctx)
        lws_context_destroy(http->ctx);
    if (http->ctx)
        eddy_log(EDDY_LOG_ERROR, "[http] libwebsockets did not finish closing");
}

/* lws treats a listen address it cannot find as an interface that may come up later and
 * waits for it without an error; eddy wants the error now. */
static int check_address(const char *listen, eddy_err *err)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    int family;
    if (inet_pton(AF_INET, listen, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        family = AF_INET;
        len = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, listen, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        family = AF_INET6;
        len = sizeof(struct sockaddr_in6);
    } else {
        return eddy_err_set(err, EDDY_EINVAL, "cannot listen on %s: not an IP address", listen);
    }
    ss.ss_family = (sa_family_t)family;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return eddy_err_set(err, EDDY_EIO, "cannot listen on %s: %s", listen, strerror(errno));
    int rc = bind(fd, (struct sockaddr *)&ss, len);
    int e = errno;
    close(fd);
    if (rc != 0)
        return eddy_err_set(err, EDDY_EIO, "cannot listen on %s: %s", listen, strerror(e));
    return EDDY_OK;
}

eddy_http *eddy_http_new(eddy_loop *loop, const eddy_http_opts *opts, eddy_err *err)
{
    static const eddy_http_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    uv_loop_t *uv = eddy_loop_uv(loop);
    if (!uv) {
        eddy_err_set(err, EDDY_EUNSUPPORTED, "the HTTP server needs a real-clock loop");
        return NULL;
    }
    eddy_http *http = eddy_calloc(1, sizeof(*http));
    if (!http) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory starting the HTTP server");
        return NULL;
    }
    http->loop = loop;
    http->uv = uv;
    http->max_body = opts->max_body ? opts->max_body : 5 * 1024 * 1024;
    http->heartbeat_ms = opts->heartbeat_ms > 0 ? opts->heartbeat_ms : 15000;
    http->batch_ms = opts->batch_ms > 0 ? opts->batch_ms : 50;
    http->comms_path = eddy_strdup(opts->comms_path ? opts->comms_path : "/comms");
    http->retained = json_object();
    http->wbuf = eddy_malloc(LWS_PRE + CHUNK + HEADER_SPACE);
    if (!http->comms_path || !http->retained || !http->wbuf) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory starting the HTTP server");
        goto fail;
    }
    const char *listen = opts->listen ? opts->listen : "127.0.0.1";
    if (check_address(listen, err) != EDDY_OK)
        goto fail;

    lws_set_log_level(getenv("EDDY_LWS_DEBUG") ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO
                                               : LLL_ERR | LLL_WARN,
                      log_lws);

    http->protocols[0] = (struct lws_protocols){
        .name = "eddy",
        .callback = lws_callback,
        .per_session_data_size = sizeof(conn),
        .rx_buffer_size = 0,
    };
    void *foreign[1] = {uv};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.foreign_loops = foreign;
    info.pcontext = &http->ctx;
    info.user = http;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.max_http_header_data = 8192;
    info.timeout_secs = 30; /* handshakes and idle header reads */
    http->ctx = lws_create_context(&info);
    if (!http->ctx) {
        eddy_err_set(err, EDDY_EIO, "cannot start libwebsockets");
        goto fail;
    }

    memset(&info, 0, sizeof(info));
    info.options = strchr(listen, ':') ? 0 : LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = opts->port;
    info.iface = listen;
    info.protocols = http->protocols;
    info.vhost_name = "eddy";
    info.keepalive_timeout = 5;
    http->vhost = lws_create_vhost(http->ctx, &info);
    if (!http->vhost) {
        eddy_err_set(err, EDDY_EIO, "cannot listen on %s port %d (in use, or a bad address)",
                     listen, opts->port);
        goto fail;
    }
    http->port = lws_get_vhost_listen_port(http->vhost);
    if (http->port <= 0) {
        eddy_err_set(err, EDDY_EIO, "cannot listen on %s port %d", listen, opts->port);
        goto fail;
    }
    eddy_log(EDDY_LOG_INFO, "[http] listening on %s port %d", listen, http->port);
    return http;
fail:
    destroy_context(http);
    json_decref(http->retained);
    eddy_free(http->comms_path);
    eddy_free(http->wbuf);
    eddy_free(http);
    return NULL;
}

int eddy_http_port(const eddy_http *http)
{
    return http->port;
}

void eddy_http_free(eddy_http *http)
{
    if (!http)
        return;
    http->freeing = true;
    eddy_timer_stop(http->loop, http->batch_timer);
    eddy_timer_stop(http->loop, http->hb_timer);
    http->batch_timer = http->hb_timer = NULL;
    destroy_context(http);
    /* Connections are gone; requests still waiting for a handler's reply are dropped. */
    while (http->reqs)
        req_free(http->reqs);
    while (http->clients)
        client_free(http->clients);
    for (int i = 0; i < http->nroutes; i++)
        eddy_free(http->routes[i].pattern);
    eddy_free(http->routes);
    for (int i = 0; i < http->nstatics; i++) {
        eddy_free(http->statics[i].prefix);
        eddy_free(http->statics[i].dir);
    }
    eddy_free(http->statics);
    json_decref(http->retained);
    eddy_free(http->comms_path);
    eddy_free(http->wbuf);
    eddy_free(http);
}
