/* http_test.c: the HTTP and /comms server on real sockets on 127.0.0.1 (port 0). The test
 * is its own client: a raw HTTP/1.1 client and a minimal websocket client (handshake,
 * masked frames) on non-blocking sockets, stepping eddy's loop (uv_run NOWAIT) while they
 * wait. Every test ends by freeing the server and checking that no libuv handle of it is
 * left on the loop. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "harness.h"
#include "http.h"
#include "log.h"
#include "loop.h"

#define WAIT_TURNS 20000 /* loop turns (with 0.5 ms pauses) before a wait is a failure */

static eddy_loop *loop;
static eddy_http *http;
static int base_handles;

/* ---- loop and server ---- */

static void count_handle(uv_handle_t *h, void *arg)
{
    (void)h;
    (*(int *)arg)++;
}

static int uv_handles(void)
{
    int n = 0;
    uv_walk(eddy_loop_uv(loop), count_handle, &n);
    return n;
}

static void turn(void)
{
    eddy_loop_run_once(loop);
    usleep(500);
}

static void start(const eddy_http_opts *opts)
{
    eddy_err err;
    eddy_err_clear(&err);
    loop = eddy_loop_new(EDDY_CLOCK_REAL, &err);
    CHECK(loop);
    base_handles = uv_handles();
    http = eddy_http_new(loop, opts, &err);
    if (!http)
        CHECK_FAIL_("eddy_http_new: %s", err.msg);
    CHECK(eddy_http_port(http) > 0);
}

static void stop(void)
{
    eddy_http_free(http);
    http = NULL;
    CHECK_INT_EQ(uv_handles(), base_handles); /* nothing of lws left on the loop */
    CHECK_INT_EQ(eddy_loop_timer_count(loop), 0);
    eddy_loop_free(loop);
    loop = NULL;
}

/* ---- a raw HTTP/1.1 client ---- */

static int tcp_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)eddy_http_port(http))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_INT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Sends everything, turning the loop while the socket is full. */
static void send_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    int turns = 0;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            CHECK(++turns < WAIT_TURNS);
            turn();
        } else {
            CHECK_FAIL_("send: %s", strerror(errno));
        }
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* Reads exactly 'n' bytes; false if the peer closed first. */
static bool recv_exact(int fd, void *buf, size_t n)
{
    char *p = buf;
    int turns = 0;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r == 0) {
            return false;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (++turns >= WAIT_TURNS)
                CHECK_FAIL_("timed out waiting for the server");
            turn();
        } else {
            return false;
        }
    }
    return true;
}

typedef struct resp {
    int status;
    char head[8192]; /* status line and headers, lower-cased names kept as sent */
    char *body;      /* NUL-terminated, eddy_free */
    size_t len;
} resp;

static const char *resp_header(const resp *r, const char *name)
{
    static char value[1024];
    char key[128];
    static char lower[sizeof(r->head)];
    snprintf(key, sizeof(key), "\r\n%s:", name);
    for (size_t i = 0; i < sizeof(lower); i++)
        lower[i] = (char)tolower((unsigned char)r->head[i]);
    for (char *k = key; *k; k++)
        *k = (char)tolower((unsigned char)*k);
    const char *l = strstr(lower, key);
    if (!l)
        return NULL;
    const char *p = r->head + (l - lower) + strlen(key);
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, "\r");
    snprintf(value, sizeof(value), "%.*s", (int)n, p);
    return value;
}

/* Reads one response (Content-Length bodies only, as eddy sends). */
static bool read_resp(int fd, resp *r)
{
    memset(r, 0, sizeof(*r));
    size_t n = 0;
    while (n < 4 || memcmp(r->head + n - 4, "\r\n\r\n", 4) != 0) {
        CHECK(n < sizeof(r->head) - 1);
        if (!recv_exact(fd, r->head + n, 1))
            return false;
        n++;
    }
    r->head[n] = '\0';
    CHECK(sscanf(r->head, "HTTP/1.1 %d", &r->status) == 1);
    const char *cl = resp_header(r, "content-length");
    r->len = cl ? strtoul(cl, NULL, 10) : 0;
    r->body = eddy_malloc(r->len + 1);
    CHECK(r->body);
    if (r->len && !recv_exact(fd, r->body, r->len))
        CHECK_FAIL_("connection closed inside a body");
    r->body[r->len] = '\0';
    return true;
}

/* One request on a new connection; 'extra' is more header lines ("X: y\r\n"). */
static void request(resp *r, const char *method, const char *target, const char *extra,
                    const char *body)
{
    int fd = tcp_connect();
    char head[4096];
    snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s", method, target,
             extra ? extra : "");
    send_str(fd, head);
    if (body) {
        char cl[64];
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n\r\n", strlen(body));
        send_str(fd, cl);
        send_str(fd, body);
    } else {
        send_str(fd, "\r\n");
    }
    CHECK(read_resp(fd, r));
    close(fd);
}

static void resp_free(resp *r)
{
    eddy_free(r->body);
    r->body = NULL;
}

/* ---- a minimal websocket client ---- */

static int ws_connect(const char *path)
{
    int fd = tcp_connect();
    char req[512];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
             path);
    send_str(fd, req);
    resp r;
    if (!read_resp(fd, &r)) {
        close(fd); /* lws closes a refused upgrade without an answer */
        return -1;
    }
    int status = r.status;
    resp_free(&r);
    if (status != 101) {
        close(fd);
        return -status;
    }
    return fd;
}

static void ws_send(int fd, const char *text)
{
    size_t n = strlen(text);
    unsigned char hdr[8], mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t h = 0;
    hdr[h++] = 0x81;
    if (n < 126) {
        hdr[h++] = (unsigned char)(0x80 | n);
    } else {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (unsigned char)(n >> 8);
        hdr[h++] = (unsigned char)n;
    }
    send_all(fd, hdr, h);
    send_all(fd, mask, 4);
    unsigned char *p = eddy_malloc(n);
    CHECK(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)text[i] ^ mask[i % 4];
    send_all(fd, p, n);
    eddy_free(p);
}

/* The next text frame (new, eddy_free), or NULL when the server closed. */
static char *ws_recv(int fd)
{
    for (;;) {
        unsigned char h[2];
        if (!recv_exact(fd, h, 2))
            return NULL;
        uint64_t n = h[1] & 0x7f;
        if (n == 126) {
            unsigned char e[2];
            CHECK(recv_exact(fd, e, 2));
            n = (uint64_t)e[0] << 8 | e[1];
        } else if (n == 127) {
            unsigned char e[8];
            CHECK(recv_exact(fd, e, 8));
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | e[i];
        }
        char *p = eddy_malloc(n + 1);
        CHECK(p);
        if (n && !recv_exact(fd, p, n)) {
            eddy_free(p);
            return NULL;
        }
        p[n] = '\0';
        int op = h[0] & 0x0f;
        if (op == 0x1)
            return p;
        eddy_free(p);
        if (op == 0x8)
            return NULL;
    }
}

static json_t *ws_recv_json(int fd)
{
    char *text = ws_recv(fd);
    if (!text)
        CHECK_FAIL_("the server closed the websocket");
    json_t *v = json_loads(text, 0, NULL);
    if (!v)
        CHECK_FAIL_("frame is not JSON: %s", text);
    eddy_free(text);
    return v;
}

/* Waits for the next frame and checks it is one message on 'topic'; returns its data. */
static char *ws_expect_text(int fd)
{
    json_t *v = ws_recv_json(fd);
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    return s;
}

/* ---- handlers ---- */

static int h_text(eddy_http_req *req, void *data)
{
    eddy_http_reply(req, 200, "text/plain", data, strlen(data));
    return EDDY_HTTP_DONE;
}

static int h_echo(eddy_http_req *req, void *data)
{
    (void)data;
    size_t len;
    const char *body = eddy_http_req_body(req, &len);
    const char *const *nodes;
    int n = eddy_http_req_params(req, "nodes[]", &nodes);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_string(nodes[i]));
    const char *a = eddy_http_req_param(req, "a");
    const char *c = eddy_http_req_param(req, "c");
    const char *plus = eddy_http_req_param(req, "plus");
    const char *api = eddy_http_req_header(req, "Node-RED-API-Version");
    const char *accept = eddy_http_req_header(req, "accept");
    const char *custom = eddy_http_req_header(req, "x-custom");
    json_t *out = json_pack("{s:s,s:s,s:s,s:s%,s:o,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?}", "method",
                            eddy_http_req_method(req), "path", eddy_http_req_path(req), "rest",
                            eddy_http_req_rest(req), "body", body, len, "nodes", arr, "a", a, "c",
                            c, "plus", plus, "api", api, "accept", accept, "custom", custom);
    CHECK(out);
    eddy_http_add_header(req, "X-Reply", "yes");
    eddy_http_reply_json(req, 200, out);
    return EDDY_HTTP_DONE;
}

static int64_t later_fire(eddy_loop *l, eddy_timer *t, void *data)
{
    eddy_http_reply_error(data, 202, "later", "answered from a timer");
    return EDDY_TIMER_STOP;
}

static int h_later(eddy_http_req *req, void *data)
{
    CHECK(eddy_timer_start(loop, 0, later_fire, req, NULL));
    return EDDY_HTTP_LATER;
}

static eddy_http_req *held;
static int h_hold(eddy_http_req *req, void *data)
{
    held = req;
    return EDDY_HTTP_LATER;
}

static char *big;
static size_t big_len;
static int h_big(eddy_http_req *req, void *data)
{
    eddy_http_reply(req, 200, "application/octet-stream", big, big_len);
    return EDDY_HTTP_DONE;
}

/* "tok" may do everything, "ro" only read. */
static int check_token(const char *token, void *data)
{
    if (strcmp(token, data) == 0)
        return EDDY_HTTP_AUTH_WRITE;
    return strcmp(token, "ro") == 0 ? EDDY_HTTP_AUTH_READ : EDDY_HTTP_AUTH_NONE;
}

static void add_routes(void)
{
    CHECK_INT_EQ(eddy_http_route(http, "GET", "", 0, h_text, "root"), EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "GET", "flows", 0, h_text, "flows"), EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "POST", "flows", EDDY_HTTP_WRITE, h_text, "deploy"),
                 EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "*", "echo/*", 0, h_echo, NULL), EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "*", "echo", 0, h_echo, NULL), EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "GET", "first/*", 0, h_text, "first"), EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "GET", "first/x", 0, h_text, "second"), EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "GET", "later", 0, h_later, NULL), EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "GET", "hold", 0, h_hold, NULL), EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "GET", "big", 0, h_big, NULL), EDDY_OK);
    CHECK_INT_EQ(eddy_http_route(http, "GET", "open", EDDY_HTTP_PUBLIC, h_text, "open"), EDDY_OK);
}

/* ---- tests: HTTP ---- */

static void test_routes_and_404(void)
{
    start(NULL);
    add_routes();
    resp r;
    request(&r, "GET", "/", NULL, NULL);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, "root");
    CHECK_STR_EQ(resp_header(&r, "content-type"), "text/plain");
    resp_free(&r);
    request(&r, "GET", "/flows", NULL, NULL);
    CHECK_STR_EQ(r.body, "flows");
    resp_free(&r);
    request(&r, "POST", "/flows", NULL, "{}");
    CHECK_STR_EQ(r.body, "deploy");
    resp_free(&r);
    request(&r, "GET", "/first/x", NULL, NULL); /* the first match wins */
    CHECK_STR_EQ(r.body, "first");
    resp_free(&r);
    request(&r, "GET", "/echo/a%20b/c", NULL, NULL);
    CHECK_INT_EQ(r.status, 200);
    CHECK_CONTAINS(r.body, "\"rest\":\"a b/c\"");
    CHECK_CONTAINS(r.body, "\"path\":\"echo/a b/c\"");
    CHECK_STR_EQ(resp_header(&r, "x-reply"), "yes");
    CHECK_STR_EQ(resp_header(&r, "content-type"), "application/json; charset=utf-8");
    resp_free(&r);
    request(&r, "GET", "/nothing/here", NULL, NULL);
    CHECK_INT_EQ(r.status, 404);
    CHECK_CONTAINS(r.body, "\"code\":\"not_found\"");
    resp_free(&r);
    request(&r, "DELETE", "/flows", NULL, NULL); /* method does not match */
    CHECK_INT_EQ(r.status, 404);
    resp_free(&r);
    request(&r, "GET", "/flowsx", NULL, NULL);
    CHECK_INT_EQ(r.status, 404);
    resp_free(&r);
    stop();
}

static void test_params_and_headers(void)
{
    start(NULL);
    add_routes();
    resp r;
    request(&r, "GET", "/echo?a=1&nodes[]=x&nodes[]=y%20z&c=p%26q&plus=a+b",
            "Node-RED-API-Version: v2\r\nAccept: application/json\r\nX-Custom: yes\r\n", NULL);
    CHECK_INT_EQ(r.status, 200);
    json_t *v = json_loads(r.body, 0, NULL);
    CHECK(v);
    CHECK_STR_EQ(json_string_value(json_object_get(v, "a")), "1");
    CHECK_STR_EQ(json_string_value(json_object_get(v, "c")), "p&q");
    CHECK_STR_EQ(json_string_value(json_object_get(v, "plus")), "a b");
    json_t *nodes = json_object_get(v, "nodes");
    CHECK_INT_EQ(json_array_size(nodes), 2);
    CHECK_STR_EQ(json_string_value(json_array_get(nodes, 0)), "x");
    CHECK_STR_EQ(json_string_value(json_array_get(nodes, 1)), "y z");
    CHECK_STR_EQ(json_string_value(json_object_get(v, "api")), "v2");
    CHECK_STR_EQ(json_string_value(json_object_get(v, "accept")), "application/json");
    CHECK_STR_EQ(json_string_value(json_object_get(v, "custom")), "yes");
    CHECK_STR_EQ(json_string_value(json_object_get(v, "method")), "GET");
    json_decref(v);
    resp_free(&r);

    /* A form body, as the debug sidebar posts it. */
    request(&r, "POST", "/echo",
            "Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n",
            "nodes%5B%5D=n1&nodes%5B%5D=n%2F2&a=v+w");
    v = json_loads(r.body, 0, NULL);
    CHECK(v);
    nodes = json_object_get(v, "nodes");
    CHECK_INT_EQ(json_array_size(nodes), 2);
    CHECK_STR_EQ(json_string_value(json_array_get(nodes, 0)), "n1");
    CHECK_STR_EQ(json_string_value(json_array_get(nodes, 1)), "n/2");
    CHECK_STR_EQ(json_string_value(json_object_get(v, "a")), "v w");
    CHECK_STR_EQ(json_string_value(json_object_get(v, "method")), "POST");
    json_decref(v);
    resp_free(&r);
    stop();
}

static void test_body_and_413(void)
{
    eddy_http_opts opts = {.max_body = 1024};
    start(&opts);
    add_routes();
    resp r;
    request(&r, "PUT", "/echo", "Content-Type: application/json\r\n", "{\"x\":[1,2,3]}");
    CHECK_INT_EQ(r.status, 200);
    CHECK_CONTAINS(r.body, "\"body\":\"{\\\"x\\\":[1,2,3]}\"");
    CHECK_CONTAINS(r.body, "\"method\":\"PUT\"");
    resp_free(&r);

    /* Over the limit: 413 in Node-RED's error shape, and the connection still works. */
    int fd = tcp_connect();
    size_t n = 200000;
    char *body = eddy_malloc(n);
    CHECK(body);
    memset(body, 'x', n);
    char head[256];
    snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n",
             n);
    send_str(fd, head);
    send_all(fd, body, n);
    eddy_free(body);
    CHECK(read_resp(fd, &r));
    CHECK_INT_EQ(r.status, 413);
    CHECK_CONTAINS(r.body, "\"code\":\"payload_too_large\"");
    CHECK_CONTAINS(r.body, "\"message\":");
    resp_free(&r);
    send_str(fd, "GET /flows HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(read_resp(fd, &r));
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, "flows");
    resp_free(&r);
    close(fd);
    stop();
}

static void test_keep_alive(void)
{
    start(NULL);
    add_routes();
    int fd = tcp_connect();
    resp r;
    for (int i = 0; i < 5; i++) {
        send_str(fd, i % 2 ? "GET /flows HTTP/1.1\r\nHost: h\r\n\r\n"
                           : "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
        CHECK(read_resp(fd, &r));
        CHECK_INT_EQ(r.status, 200);
        if (i % 2)
            CHECK_STR_EQ(r.body, "flows");
        else
            CHECK_CONTAINS(r.body, "\"body\":\"hi\"");
        resp_free(&r);
    }
    /* A deferred reply and a 404 on the same connection too. */
    send_str(fd, "GET /later HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(read_resp(fd, &r));
    CHECK_INT_EQ(r.status, 202);
    resp_free(&r);
    send_str(fd, "GET /none HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(read_resp(fd, &r));
    CHECK_INT_EQ(r.status, 404);
    resp_free(&r);
    close(fd);
    stop();
}

static void test_later_from_timer(void)
{
    start(NULL);
    add_routes();
    resp r;
    request(&r, "GET", "/later", NULL, NULL);
    CHECK_INT_EQ(r.status, 202);
    CHECK_CONTAINS(r.body, "\"code\":\"later\"");
    CHECK_CONTAINS(r.body, "answered from a timer");
    resp_free(&r);
    stop();
}

static void test_client_gone_before_later_reply(void)
{
    start(NULL);
    add_routes();
    held = NULL;
    int fd = tcp_connect();
    send_str(fd, "GET /hold?a=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    for (int i = 0; !held && i < WAIT_TURNS; i++)
        turn();
    CHECK(held);
    close(fd);
    for (int i = 0; i < 200; i++) /* lws sees the close */
        turn();
    /* Still valid: its accessors work, and the reply is discarded. */
    CHECK_STR_EQ(eddy_http_req_path(held), "hold");
    CHECK_STR_EQ(eddy_http_req_param(held, "a"), "1");
    eddy_http_reply_error(held, 200, "ok", "nobody listens");
    held = NULL;
    resp r;
    request(&r, "GET", "/flows", NULL, NULL);
    CHECK_STR_EQ(r.body, "flows");
    resp_free(&r);

    /* A request still held when the server is freed is dropped with it. */
    fd = tcp_connect();
    send_str(fd, "GET /hold HTTP/1.1\r\nHost: h\r\n\r\n");
    for (int i = 0; !held && i < WAIT_TURNS; i++)
        turn();
    CHECK(held);
    held = NULL;
    stop();
    close(fd);
}

static void test_big_reply(void)
{
    start(NULL);
    add_routes();
    big_len = 3 * 1024 * 1024 + 17;
    big = eddy_malloc(big_len);
    CHECK(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)(i * 7 + i / 1000);
    int fd = tcp_connect();
    resp r;
    for (int k = 0; k < 2; k++) { /* twice on one connection */
        send_str(fd, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
        CHECK(read_resp(fd, &r));
        CHECK_INT_EQ(r.status, 200);
        CHECK_INT_EQ(r.len, big_len);
        CHECK(memcmp(r.body, big, big_len) == 0);
        resp_free(&r);
    }
    close(fd);
    eddy_free(big);
    big = NULL;
    stop();
}

static void write_file(const char *dir, const char *name, const void *data, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK_INT_EQ(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_static_files(void)
{
    char *dir = eddy_test_tmpdir();
    CHECK(dir);
    char pub[1024], sub[1100];
    snprintf(pub, sizeof(pub), "%s/public", dir);
    CHECK_INT_EQ(mkdir(pub, 0755), 0);
    snprintf(sub, sizeof(sub), "%s/red", pub);
    CHECK_INT_EQ(mkdir(sub, 0755), 0);
    write_file(dir, "secret.txt", "SECRET", 6);
    write_file(pub, "red/main.js", "var x = 1;", 10);
    write_file(pub, "red/main.js.gz", "GZBYTES", 7);
    write_file(pub, "style.css", "a{}", 3);
    write_file(pub, "logo.svg", "<svg/>", 6);
    write_file(pub, "i.png", "PNG", 3);
    write_file(pub, "f.woff2", "W2", 2);
    write_file(pub, "f.woff", "W1", 2);
    write_file(pub, "f.ttf", "TT", 2);
    write_file(pub, "favicon.ico", "ICO", 3);
    write_file(pub, "keymap.json", "{}", 2);
    write_file(pub, "main.js.map", "{}", 2);
    write_file(pub, "index.html", "<html>", 6);
    write_file(pub, "blob.xyz", "??", 2);
    size_t n = 2 * 1024 * 1024 + 5;
    char *bigf = eddy_malloc(n);
    CHECK(bigf);
    for (size_t i = 0; i < n; i++)
        bigf[i] = (char)(i % 251);
    write_file(pub, "big.bin", bigf, n);

    start(NULL);
    add_routes();
    CHECK_INT_EQ(eddy_http_static(http, "vendor/", pub, 3600), EDDY_OK);
    CHECK_INT_EQ(eddy_http_static(http, "", pub, 0), EDDY_OK);
    resp r;
    request(&r, "GET", "/vendor/red/main.js", NULL, NULL);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, "var x = 1;");
    CHECK_STR_EQ(resp_header(&r, "content-type"), "application/javascript; charset=utf-8");
    CHECK_STR_EQ(resp_header(&r, "cache-control"), "public, max-age=3600");
    CHECK(resp_header(&r, "content-encoding") == NULL);
    resp_free(&r);
    request(&r, "GET", "/vendor/red/main.js?v=123", "Accept-Encoding: gzip, deflate, br\r\n", NULL);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, "GZBYTES");
    CHECK_STR_EQ(resp_header(&r, "content-encoding"), "gzip");
    CHECK_STR_EQ(resp_header(&r, "content-type"), "application/javascript; charset=utf-8");
    resp_free(&r);
    request(&r, "GET", "/style.css", "Accept-Encoding: gzip\r\n", NULL); /* no .gz beside it */
    CHECK_STR_EQ(r.body, "a{}");
    CHECK(resp_header(&r, "content-encoding") == NULL);
    CHECK_STR_EQ(resp_header(&r, "content-type"), "text/css; charset=utf-8");
    CHECK_STR_EQ(resp_header(&r, "cache-control"), "no-cache");
    resp_free(&r);
    static const char *const types[][2] = {{"/logo.svg", "image/svg+xml"},
                                           {"/i.png", "image/png"},
                                           {"/f.woff2", "font/woff2"},
                                           {"/f.woff", "font/woff"},
                                           {"/f.ttf", "font/ttf"},
                                           {"/favicon.ico", "image/x-icon"},
                                           {"/keymap.json", "application/json; charset=utf-8"},
                                           {"/main.js.map", "application/json; charset=utf-8"},
                                           {"/index.html", "text/html; charset=utf-8"},
                                           {"/blob.xyz", "application/octet-stream"}};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        request(&r, "GET", types[i][0], NULL, NULL);
        CHECK_INT_EQ(r.status, 200);
        CHECK_STR_EQ(resp_header(&r, "content-type"), types[i][1]);
        resp_free(&r);
    }
    /* HEAD: the headers of the file without its body, and the connection goes on. */
    int fd = tcp_connect();
    send_str(fd, "HEAD /style.css HTTP/1.1\r\nHost: h\r\n\r\n");
    memset(&r, 0, sizeof(r));
    size_t hn = 0;
    while (hn < 4 || memcmp(r.head + hn - 4, "\r\n\r\n", 4) != 0) {
        CHECK(recv_exact(fd, r.head + hn, 1));
        hn++;
    }
    CHECK(strncmp(r.head, "HTTP/1.1 200", 12) == 0);
    CHECK_STR_EQ(resp_header(&r, "content-length"), "3");
    send_str(fd, "GET /style.css HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(read_resp(fd, &r));
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, "a{}");
    resp_free(&r);
    close(fd);
    /* Routes come before the root static folder. */
    request(&r, "GET", "/flows", NULL, NULL);
    CHECK_STR_EQ(r.body, "flows");
    resp_free(&r);
    /* A file of a few MB arrives whole. */
    request(&r, "GET", "/big.bin", NULL, NULL);
    CHECK_INT_EQ(r.len, n);
    CHECK(memcmp(r.body, bigf, n) == 0);
    resp_free(&r);
    eddy_free(bigf);
    /* Unknown files and folders fall through to 404; nothing outside the folder is served. */
    request(&r, "GET", "/vendor/nope.js", NULL, NULL);
    CHECK_INT_EQ(r.status, 404);
    resp_free(&r);
    request(&r, "GET", "/vendor/red", NULL, NULL);
    CHECK_INT_EQ(r.status, 404);
    resp_free(&r);
    static const char *const escapes[] = {"/vendor/../secret.txt", "/../secret.txt",
                                          "/vendor/%2e%2e/secret.txt", "/red/..%2f..%2fsecret.txt",
                                          "/vendor/red/../../secret.txt"};
    for (size_t i = 0; i < sizeof(escapes) / sizeof(escapes[0]); i++) {
        request(&r, "GET", escapes[i], NULL, NULL);
        if (r.status != 400 && r.status != 404)
            CHECK_FAIL_("%s: status %d", escapes[i], r.status);
        CHECK(strstr(r.body, "SECRET") == NULL);
        resp_free(&r);
    }
    stop();
    eddy_test_rmdir(dir);
}

static void test_auth_routes(void)
{
    start(NULL);
    add_routes();
    eddy_http_set_auth(http, check_token, "tok");
    resp r;
    request(&r, "GET", "/flows", NULL, NULL);
    CHECK_INT_EQ(r.status, 401);
    CHECK_CONTAINS(r.body, "\"code\":\"unauthorized\"");
    CHECK_CONTAINS(r.body, "\"message\":");
    resp_free(&r);
    request(&r, "GET", "/flows", "Authorization: Bearer nope\r\n", NULL);
    CHECK_INT_EQ(r.status, 401);
    resp_free(&r);
    request(&r, "GET", "/flows", "Authorization: Bearer tok\r\n", NULL);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, "flows");
    resp_free(&r);
    request(&r, "GET", "/open", NULL, NULL);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    /* a read-only token reads, and is refused where a route writes */
    request(&r, "GET", "/flows", "Authorization: Bearer ro\r\n", NULL);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    request(&r, "POST", "/flows", "Authorization: Bearer ro\r\n", "[]");
    CHECK_INT_EQ(r.status, 401);
    CHECK_CONTAINS(r.body, "read-only");
    resp_free(&r);
    request(&r, "POST", "/flows", "Authorization: Bearer tok\r\n", "[]");
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, "deploy");
    resp_free(&r);
    eddy_http_set_auth(http, NULL, NULL);
    request(&r, "GET", "/flows", NULL, NULL);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    stop();
}

static void test_listen_errors(void)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_loop *manual = eddy_loop_new(EDDY_CLOCK_MANUAL, &err);
    CHECK(manual);
    CHECK(eddy_http_new(manual, NULL, &err) == NULL);
    CHECK_CONTAINS(err.msg, "real-clock");
    eddy_loop_free(manual);

    start(NULL);
    eddy_http_opts opts = {.port = eddy_http_port(http)};
    eddy_log_level lvl = eddy_log_get_level();
    eddy_log_set_level(EDDY_LOG_OFF); /* lws reports the failed bind itself */
    eddy_err_clear(&err);
    eddy_http *again = eddy_http_new(loop, &opts, &err);
    eddy_log_set_level(lvl);
    CHECK(again == NULL);
    char port[16];
    snprintf(port, sizeof(port), "%d", opts.port);
    CHECK_CONTAINS(err.msg, port);
    opts = (eddy_http_opts){.listen = "256.1.1.1"};
    eddy_log_set_level(EDDY_LOG_OFF);
    again = eddy_http_new(loop, &opts, &err);
    eddy_log_set_level(lvl);
    CHECK(again == NULL);
    CHECK_CONTAINS(err.msg, "256.1.1.1");
    opts = (eddy_http_opts){.listen = "192.0.2.1"}; /* TEST-NET: not this machine's */
    again = eddy_http_new(loop, &opts, &err);
    CHECK(again == NULL);
    CHECK_CONTAINS(err.msg, "192.0.2.1");
    stop();
}

/* ---- tests: /comms ---- */

static void test_comms_path_and_subscribe(void)
{
    eddy_http_opts opts = {.batch_ms = 5};
    start(&opts);
    CHECK(ws_connect("/other") < 0); /* only the comms path upgrades */
    int fd = ws_connect("/comms");
    CHECK(fd >= 0);
    for (int i = 0; eddy_comms_clients(http) < 1 && i < WAIT_TURNS; i++)
        turn();
    CHECK_INT_EQ(eddy_comms_clients(http), 1);
    ws_send(fd, "{\"subscribe\":\"status/#\"}");
    ws_send(fd, "{\"subscribe\":\"notification/+/x\"}");
    ws_send(fd, "{\"subscribe\":\"debug\"}");
    /* The subscribes are in once a retained message on one of them comes back. */
    CHECK_INT_EQ(eddy_comms_publish(http, "end", json_string("r"), true), EDDY_OK);
    ws_send(fd, "{\"subscribe\":\"end\"}");
    char *s = ws_expect_text(fd);
    CHECK_STR_EQ(s, "[{\"data\":\"r\",\"topic\":\"end\"}]");
    eddy_free(s);
    eddy_comms_publish(http, "end", NULL, true);

    /* Each publish below either matches (and shows in order) or must not arrive. */
    eddy_comms_publish(http, "status/n1", json_pack("{s:s}", "fill", "red"), false);
    eddy_comms_publish(http, "status", json_integer(1), false);             /* "a/#" matches "a" */
    eddy_comms_publish(http, "statusx/n1", json_integer(2), false);         /* no */
    eddy_comms_publish(http, "notification/a/x", json_integer(3), false);   /* + */
    eddy_comms_publish(http, "notification/a/b/x", json_integer(4), false); /* + is one level */
    eddy_comms_publish(http, "notification//x", json_integer(5), false);    /* + is not empty */
    eddy_comms_publish(http, "debug", json_integer(6), false);
    eddy_comms_publish(http, "debug/x", json_integer(7), false); /* exact topic only */
    eddy_comms_publish(http, "status/a/b/c", NULL, false);
    s = ws_expect_text(fd);
    CHECK_STR_EQ(s, "[{\"data\":{\"fill\":\"red\"},\"topic\":\"status/n1\"},{\"data\":1,\"topic\":"
                    "\"status\"},{\"data\":3,\"topic\":\"notification/a/x\"},{\"data\":6,"
                    "\"topic\":\"debug\"},{\"data\":null,\"topic\":\"status/a/b/c\"}]");
    eddy_free(s);
    close(fd);
    for (int i = 0; eddy_comms_clients(http) > 0 && i < WAIT_TURNS; i++)
        turn();
    CHECK_INT_EQ(eddy_comms_clients(http), 0);
    stop();
}

static void test_comms_hash_and_retained(void)
{
    eddy_http_opts opts = {.batch_ms = 5};
    start(&opts);
    eddy_comms_publish(http, "status/a", json_pack("{s:s}", "text", "one"), true);
    eddy_comms_publish(http, "status/b", json_pack("{s:s}", "text", "two"), true);
    eddy_comms_publish(http, "status/b", json_pack("{s:s}", "text", "three"), true); /* replaces */
    eddy_comms_publish(http, "status/c", json_pack("{s:s}", "text", "gone"), true);
    eddy_comms_publish(http, "status/c", NULL, true); /* removes */
    eddy_comms_publish(http, "notification/runtime-state", json_pack("{s:s}", "state", "start"),
                       true);
    eddy_comms_publish(http, "debug", json_integer(1), false); /* not retained */
    int fd = ws_connect("/comms");
    CHECK(fd >= 0);
    ws_send(fd, "{\"subscribe\":\"status/#\"}");
    json_t *v = ws_recv_json(fd);
    CHECK(json_is_array(v));
    CHECK_INT_EQ(json_array_size(v), 2);
    bool seen_a = false, seen_b = false;
    for (size_t i = 0; i < 2; i++) {
        json_t *m = json_array_get(v, i);
        const char *topic = json_string_value(json_object_get(m, "topic"));
        const char *text = json_string_value(json_object_get(json_object_get(m, "data"), "text"));
        CHECK(topic && text);
        if (strcmp(topic, "status/a") == 0)
            seen_a = strcmp(text, "one") == 0;
        if (strcmp(topic, "status/b") == 0)
            seen_b = strcmp(text, "three") == 0;
    }
    CHECK(seen_a && seen_b);
    json_decref(v);
    /* "#" gets everything retained at once. */
    ws_send(fd, "{\"subscribe\":\"#\"}");
    v = ws_recv_json(fd);
    CHECK_INT_EQ(json_array_size(v), 3);
    json_decref(v);
    /* forget drops retained messages by prefix. */
    eddy_comms_forget(http, "status/");
    ws_send(fd, "{\"subscribe\":\"notification/#\"}");
    v = ws_recv_json(fd);
    CHECK_INT_EQ(json_array_size(v), 1);
    json_decref(v);
    ws_send(fd, "{\"subscribe\":\"status/#\"}");
    ws_send(fd, "{\"subscribe\":\"notification/#\"}"); /* replays again: the only retained one */
    v = ws_recv_json(fd);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(v, 0), "topic")),
                 "notification/runtime-state");
    json_decref(v);
    close(fd);
    stop();
}

static void test_comms_batching(void)
{
    eddy_http_opts opts = {.batch_ms = 20};
    start(&opts);
    int fd = ws_connect("/comms");
    ws_send(fd, "{\"subscribe\":\"debug\"}");
    eddy_comms_publish(http, "sync", json_true(), true);
    ws_send(fd, "{\"subscribe\":\"sync\"}");
    json_decref(ws_recv_json(fd)); /* both subscribes are in */
    const int total = 237;
    for (int i = 0; i < total; i++)
        CHECK_INT_EQ(eddy_comms_publish(http, "debug", json_integer(i), false), EDDY_OK);
    int got = 0, frames = 0;
    while (got < total) {
        json_t *v = ws_recv_json(fd);
        CHECK(json_is_array(v));
        size_t n = json_array_size(v);
        CHECK(n >= 1 && n <= 50);
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(v, i);
            CHECK_STR_EQ(json_string_value(json_object_get(m, "topic")), "debug");
            CHECK_INT_EQ(json_integer_value(json_object_get(m, "data")), got); /* in order */
            got++;
        }
        frames++;
        json_decref(v);
    }
    CHECK_INT_EQ(got, total);
    CHECK_INT_EQ(frames, 5); /* 50+50+50+50+37: all were published before the batch ran */
    close(fd);
    stop();
}

static void test_comms_heartbeat(void)
{
    eddy_http_opts opts = {.batch_ms = 5, .heartbeat_ms = 30};
    start(&opts);
    int fd = ws_connect("/comms");
    for (int k = 0; k < 2; k++) {
        json_t *v = ws_recv_json(fd);
        CHECK_INT_EQ(json_array_size(v), 1);
        json_t *m = json_array_get(v, 0);
        CHECK_STR_EQ(json_string_value(json_object_get(m, "topic")), "hb");
        CHECK(json_integer_value(json_object_get(m, "data")) > 1600000000000LL); /* wall ms */
        json_decref(v);
    }
    close(fd);
    stop();
}

static void test_comms_malformed_frames(void)
{
    eddy_http_opts opts = {.batch_ms = 5};
    start(&opts);
    int fd = ws_connect("/comms");
    ws_send(fd, "not json");
    ws_send(fd, "[1,2,3]");
    ws_send(fd, "{\"subscribe\":42}");
    ws_send(fd, "{\"topic\":\"multiplayer/x\",\"data\":{}}");
    ws_send(fd, "{\"subscribe\":");
    ws_send(fd, "\"just a string\"");
    ws_send(fd, "");
    /* A long frame (two-byte length) that is fine. */
    char sub[400];
    snprintf(sub, sizeof(sub), "{\"subscribe\":\"x\",\"pad\":\"%0300d\"}", 0);
    ws_send(fd, sub);
    eddy_comms_publish(http, "x", json_string("still here"), true);
    ws_send(fd, "{\"subscribe\":\"x\"}");
    char *s = ws_expect_text(fd);
    CHECK_STR_EQ(s, "[{\"data\":\"still here\",\"topic\":\"x\"}]");
    eddy_free(s);
    CHECK_INT_EQ(eddy_comms_clients(http), 1);
    close(fd);
    stop();
}

static void test_comms_auth(void)
{
    eddy_http_opts opts = {.batch_ms = 5};
    start(&opts);
    eddy_http_set_auth(http, check_token, "tok");
    eddy_comms_publish(http, "status/a", json_string("retained"), true);

    /* A wrong token: {"auth":"fail"}, then the server closes. */
    int fd = ws_connect("/comms");
    ws_send(fd, "{\"subscribe\":\"status/#\"}"); /* before auth: ignored */
    ws_send(fd, "{\"auth\":\"bad\"}");
    char *s = ws_expect_text(fd);
    CHECK_STR_EQ(s, "{\"auth\":\"fail\"}");
    eddy_free(s);
    CHECK(ws_recv(fd) == NULL);
    close(fd);

    /* Nothing before "ok"; subscribes after it work. */
    fd = ws_connect("/comms");
    ws_send(fd, "{\"subscribe\":\"status/#\"}");
    for (int i = 0; eddy_comms_clients(http) < 1 && i < WAIT_TURNS; i++)
        turn();
    eddy_comms_publish(http, "status/b", json_string("live before auth"), false);
    for (int i = 0; i < 40; i++) /* let the batch timer pass */
        turn();
    ws_send(fd, "{\"auth\":\"tok\"}");
    s = ws_expect_text(fd);
    CHECK_STR_EQ(s, "{\"auth\":\"ok\"}");
    eddy_free(s);
    ws_send(fd, "{\"subscribe\":\"status/#\"}");
    s = ws_expect_text(fd);
    CHECK_STR_EQ(s, "[{\"data\":\"retained\",\"topic\":\"status/a\"}]");
    eddy_free(s);
    close(fd);

    /* Without auth a client holding a token is still answered "ok". */
    eddy_http_set_auth(http, NULL, NULL);
    fd = ws_connect("/comms");
    ws_send(fd, "{\"auth\":\"anything\"}");
    s = ws_expect_text(fd);
    CHECK_STR_EQ(s, "{\"auth\":\"ok\"}");
    eddy_free(s);
    close(fd);
    stop();
}

static void test_comms_slow_client_dropped(void)
{
    eddy_http_opts opts = {.batch_ms = 5};
    start(&opts);
    int fd = ws_connect("/comms");
    ws_send(fd, "{\"subscribe\":\"#\"}");
    eddy_comms_publish(http, "sync", json_true(), true);
    ws_send(fd, "{\"subscribe\":\"sync\"}");
    json_decref(ws_recv_json(fd));
    /* 1000 frames of 50 in one batch: the client is dropped, the server goes on. */
    for (int i = 0; i < 1000 * 50 + 1; i++)
        eddy_comms_publish(http, "debug", json_integer(i), false);
    for (int i = 0; eddy_comms_clients(http) > 0 && i < WAIT_TURNS; i++)
        turn();
    CHECK_INT_EQ(eddy_comms_clients(http), 0);
    close(fd);
    /* The server still serves others. */
    fd = ws_connect("/comms");
    CHECK(fd >= 0);
    ws_send(fd, "{\"subscribe\":\"sync\"}");
    json_decref(ws_recv_json(fd));
    close(fd);
    stop();
}

static void test_free_with_open_connections(void)
{
    start(NULL);
    add_routes();
    int a = tcp_connect();
    send_str(a, "GET /flows HTTP/1.1\r\nHost: h\r\n\r\n");
    resp r;
    CHECK(read_resp(a, &r));
    resp_free(&r);
    int b = ws_connect("/comms");
    ws_send(b, "{\"subscribe\":\"#\"}");
    eddy_comms_publish(http, "debug", json_integer(1), false); /* pending in a batch */
    int c = tcp_connect();
    send_str(c,
             "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nhalf"); /* body half */
    for (int i = 0; i < 50; i++)
        turn();
    stop(); /* closes everything, leaves nothing */
    close(a);
    close(b);
    close(c);
}

static const check_test tests[] = {
    {"routes_and_404", test_routes_and_404},
    {"params_and_headers", test_params_and_headers},
    {"body_and_413", test_body_and_413},
    {"keep_alive", test_keep_alive},
    {"later_from_timer", test_later_from_timer},
    {"client_gone_before_later_reply", test_client_gone_before_later_reply},
    {"big_reply", test_big_reply},
    {"static_files", test_static_files},
    {"auth_routes", test_auth_routes},
    {"listen_errors", test_listen_errors},
    {"comms_path_and_subscribe", test_comms_path_and_subscribe},
    {"comms_hash_and_retained", test_comms_hash_and_retained},
    {"comms_batching", test_comms_batching},
    {"comms_heartbeat", test_comms_heartbeat},
    {"comms_malformed_frames", test_comms_malformed_frames},
    {"comms_auth", test_comms_auth},
    {"comms_slow_client_dropped", test_comms_slow_client_dropped},
    {"free_with_open_connections", test_free_with_open_connections},
    {NULL, NULL}};

CHECK_MAIN(tests)
