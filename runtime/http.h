/* http.h: eddy's HTTP and websocket server (libwebsockets on eddy's libuv loop). It knows
 * nothing of flows or the editor: the admin module (admin.h) registers routes and static
 * folders here and publishes on the /comms websocket through eddy_comms_publish.
 *
 * Threads: everything here runs on the loop thread. Handlers must not block and must not
 * run the loop themselves (no eddy_engine_stop inside a handler): work that needs the loop
 * to turn answers later (EDDY_HTTP_LATER) once the loop has done it. */
#ifndef EDDY_HTTP_H
#define EDDY_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "loop.h"

typedef struct eddy_http eddy_http;
typedef struct eddy_http_req eddy_http_req;

typedef struct eddy_http_opts {
    const char *listen;     /* address to bind; NULL = "127.0.0.1" */
    int port;               /* 0 = any free port (see eddy_http_port) */
    size_t max_body;        /* bigger request bodies get 413; 0 = 5 MiB (Node-RED's apiMaxLength) */
    const char *comms_path; /* websocket path; NULL = "/comms" */
    int heartbeat_ms;       /* idle time before a "hb" frame; 0 = 15000 */
    int batch_ms;           /* comms frames gather messages this long; 0 = 50 */
} eddy_http_opts;

/* Ownership: new, free with eddy_http_free. Listens at once; NULL with 'err' naming the
 * address and port when it cannot (port in use, bad address). Borrows 'loop'. */
eddy_http *eddy_http_new(eddy_loop *loop, const eddy_http_opts *opts, eddy_err *err);
/* Closes every connection (pending requests are dropped) and frees. Runs the loop until
 * libwebsockets' handles are closed, so call it outside loop callbacks. Accepts NULL. */
void eddy_http_free(eddy_http *http);
/* The port actually bound (useful with port 0). */
int eddy_http_port(const eddy_http *http);

/* ---- routes ---- */

/* What a handler returns: it has replied, or it will reply later with eddy_http_reply*. */
#define EDDY_HTTP_DONE  0
#define EDDY_HTTP_LATER 1
typedef int (*eddy_http_handler)(eddy_http_req *req, void *data);

/* Route flags. */
#define EDDY_HTTP_PUBLIC 0x01u /* reachable without a token when auth is on */
#define EDDY_HTTP_WRITE  0x02u /* changes something: with auth on, the token must allow writing */

/* Adds a route. 'method' is "GET", "POST", "PUT", "DELETE" or "*". 'pattern' is a path
 * without the leading slash: "flows" matches exactly that; "inject/\*" (written without
 * the backslash, which only keeps this comment valid C) matches "inject/" followed by
 * anything (eddy_http_req_rest gives the part after the slash); "" matches the root "/".
 * Routes are tried in the order added; the first match wins. A path that matches no
 * route and no static folder gets 404. EDDY_OK or EDDY_ENOMEM. */
int eddy_http_route(eddy_http *http, const char *method, const char *pattern, unsigned flags,
                    eddy_http_handler handler, void *data);

/* Serves files under 'dir' at 'url_prefix' ("red/" serves dir/main.js as /red/main.js; ""
 * serves at the root, after routes). If 'file.gz' exists beside 'file' and the client
 * accepts gzip, the .gz is sent with Content-Encoding: gzip. Content-Type from the
 * extension. 'max_age' seconds go into Cache-Control (0 = no-cache). Paths with ".." or
 * NUL are refused (400). Static folders are public. EDDY_OK or EDDY_ENOMEM. */
int eddy_http_static(eddy_http *http, const char *url_prefix, const char *dir, int max_age);

/* ---- requests (valid until replied; a request whose client went away stays valid until
 * it is replied to, and the reply is then discarded) ---- */

const char *eddy_http_req_method(const eddy_http_req *req);
/* The decoded path without the leading slash and without the query: "flows". */
const char *eddy_http_req_path(const eddy_http_req *req);
/* For a "x/\*" route, what follows "x/" (decoded); "" otherwise. */
const char *eddy_http_req_rest(const eddy_http_req *req);
/* A header by its name (case-insensitive, "accept", "content-type", "authorization",
 * "node-red-deployment-type", "node-red-api-version"), or NULL. */
const char *eddy_http_req_header(const eddy_http_req *req, const char *name);
/* A query or form-encoded body parameter (decoded), or NULL. For repeated keys ("nodes[]")
 * use eddy_http_req_params. Borrowed from the request. */
const char *eddy_http_req_param(const eddy_http_req *req, const char *name);
/* Every value of a repeated parameter, in order: returns the count and sets *values to
 * an array borrowed from the request. */
int eddy_http_req_params(const eddy_http_req *req, const char *name, const char *const **values);
/* The request body (NUL-terminated after 'len' bytes) and its length; "" and 0 if none. */
const char *eddy_http_req_body(const eddy_http_req *req, size_t *len);

/* ---- replies: exactly one per request ---- */

/* Copies 'body'. 'content_type' NULL = "application/octet-stream". */
void eddy_http_reply(eddy_http_req *req, int status, const char *content_type, const void *body,
                     size_t len);
/* Takes 'body' (may be NULL for an empty 204/200); application/json; charset=utf-8. */
void eddy_http_reply_json(eddy_http_req *req, int status, json_t *body);
/* {"code": code, "message": formatted} with 'status' (Node-RED's error shape). */
void eddy_http_reply_error(eddy_http_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Adds a response header to the coming reply ("Cache-Control", "no-store"). Call before
 * the reply. EDDY_OK or EDDY_ENOMEM. */
int eddy_http_add_header(eddy_http_req *req, const char *name, const char *value);

/* ---- authentication ---- */

/* What a token allows: 'check' answers one of these. */
#define EDDY_HTTP_AUTH_NONE  0 /* unknown or expired */
#define EDDY_HTTP_AUTH_READ  1 /* read-only (Node-RED's permission "read") */
#define EDDY_HTTP_AUTH_WRITE 2 /* everything ("*") */

/* When set, every route without EDDY_HTTP_PUBLIC needs "Authorization: Bearer <token>"
 * that 'check' accepts, and routes with EDDY_HTTP_WRITE a token that allows writing (else
 * 401 with {"code":"unauthorized"}, as Node-RED answers both); a /comms client must send
 * {"auth":"<token>"} first (answered {"auth":"ok"} or {"auth":"fail"}; nothing is
 * delivered to it before "ok"). NULL switches it off. */
typedef int (*eddy_http_token_check)(const char *token, void *data);
void eddy_http_set_auth(eddy_http *http, eddy_http_token_check check, void *data);

/* ---- /comms: publish/subscribe for the editor ---- */

/* Publishes 'data' (taken) on 'topic' to every client subscribed to a matching pattern
 * ("+" one level, a trailing "/#" any suffix, "#" everything). With 'retain' the message
 * replaces the topic's retained one and is sent to later subscribers when they subscribe;
 * retaining NULL data (or an empty object for "status/..." topics is up to the caller)
 * removes it. Messages are batched per client into JSON array frames (at most 50 per frame,
 * every batch_ms). A client that does not read is dropped once 1000 frames wait for it.
 * EDDY_OK or EDDY_ENOMEM. */
int eddy_comms_publish(eddy_http *http, const char *topic, json_t *data, bool retain);
/* Drops retained messages whose topic starts with 'prefix' ("status/"). */
void eddy_comms_forget(eddy_http *http, const char *prefix);
/* Connected /comms clients (tests, status). */
int eddy_comms_clients(const eddy_http *http);

#endif
