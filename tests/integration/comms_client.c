/* comms_client: a minimal /comms websocket client for the integration scripts.
 *
 *   comms_client [--token T] [--until TEXT] [--timeout S] PORT TOPIC...
 *
 * Connects to ws://127.0.0.1:PORT/comms (no subprotocol, as the editor), sends {"auth":T}
 * when a token is given, then {"subscribe":TOPIC} for each topic, and prints every message
 * it receives as one compact JSON line (each element of a [{topic,data},...] frame on its
 * own line; other frames, such as {"auth":"ok"}, as they are), flushed at once. Exits 0 when
 * a printed line contains TEXT (with --until) or when the server closes the connection
 * (without), 1 when S seconds (default 10) pass first, 2 on a protocol or connection error.
 *
 * A client's subscribes are handled in order, so a retained topic subscribed last tells the
 * script that the subscribes before it are in place. Test helper only: frames from the
 * server are trusted to be well formed text, up to 16 MiB. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME (16u << 20)

static int fd = -1;
static unsigned char *rx;
static size_t rx_len, rx_cap;
static int64_t deadline_ms;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(int code, const char *what)
{
    fprintf(stderr, "comms_client: %s\n", what);
    exit(code);
}

static void send_all(const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die(2, "send failed");
        p += w;
        n -= (size_t)w;
    }
}

/* Reads more bytes into rx; exits 1 at the deadline, 2 on an error. Returns false when
 * the server closed the connection. */
static bool fill(void)
{
    for (;;) {
        int64_t left = deadline_ms - now_ms();
        if (left <= 0)
            die(1, "timed out");
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die(2, "poll failed");
        if (r == 0)
            continue;
        if (rx_cap - rx_len < 65536) {
            rx_cap = rx_cap ? rx_cap * 2 : 131072;
            if (rx_cap > MAX_FRAME * 2)
                die(2, "frame too big");
            rx = realloc(rx, rx_cap);
            if (!rx)
                die(2, "out of memory");
        }
        ssize_t got = recv(fd, rx + rx_len, rx_cap - rx_len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            die(2, "recv failed");
        if (got == 0)
            return false;
        rx_len += (size_t)got;
        return true;
    }
}

static void consume(size_t n)
{
    memmove(rx, rx + n, rx_len - n);
    rx_len -= n;
}

/* Sends one masked client frame. */
static void send_frame(int opcode, const char *data, size_t n)
{
    unsigned char head[14];
    size_t h = 0;
    head[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        head[h++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        head[h++] = 0x80 | 126;
        head[h++] = (unsigned char)(n >> 8);
        head[h++] = (unsigned char)n;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            head[h++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(head + h, mask, 4);
    h += 4;
    send_all(head, h);
    char *masked = malloc(n ? n : 1);
    if (!masked)
        die(2, "out of memory");
    for (size_t i = 0; i < n; i++)
        masked[i] = (char)(data[i] ^ mask[i % 4]);
    send_all(masked, n);
    free(masked);
}

static void send_json(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!text)
        die(2, "out of memory");
    send_frame(1, text, strlen(text));
    free(text);
}

/* Prints a message line; true when it holds 'until'. */
static bool print_line(const json_t *v, const char *until)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        die(2, "out of memory");
    printf("%s\n", text);
    fflush(stdout);
    bool hit = until && strstr(text, until);
    free(text);
    return hit;
}

static void connect_comms(int port)
{
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        die(2, "cannot connect");
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /comms HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     port);
    send_all(req, (size_t)n);
    char *end;
    for (;;) {
        if (rx_len > 0 && (end = memmem(rx, rx_len, "\r\n\r\n", 4)))
            break;
        if (!fill())
            die(2, "closed during the handshake");
    }
    if (rx_len < 12 || memcmp(rx, "HTTP/1.1 101", 12) != 0)
        die(2, "the upgrade was refused");
    consume((size_t)(end + 4 - (char *)rx));
}

int main(int argc, char **argv)
{
    const char *token = NULL, *until = NULL;
    int timeout_s = 10, i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--token") == 0)
            token = argv[i + 1];
        else if (strcmp(argv[i], "--until") == 0)
            until = argv[i + 1];
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout_s = atoi(argv[i + 1]);
        else
            break;
    }
    if (i >= argc || atoi(argv[i]) <= 0) {
        fprintf(stderr,
                "usage: comms_client [--token T] [--until TEXT] [--timeout S] PORT TOPIC...\n");
        return 2;
    }
    deadline_ms = now_ms() + (int64_t)timeout_s * 1000;
    connect_comms(atoi(argv[i]));
    if (token)
        send_json(json_pack("{s:s}", "auth", token));
    for (int t = i + 1; t < argc; t++)
        send_json(json_pack("{s:s}", "subscribe", argv[t]));

    /* frames: text (possibly fragmented), ping, close */
    char *msg = NULL;
    size_t msg_len = 0;
    for (;;) {
        while (rx_len < 2)
            if (!fill())
                return until ? 1 : 0;
        size_t len = rx[1] & 0x7f, h = 2;
        if (len == 126) {
            while (rx_len < 4)
                if (!fill())
                    return until ? 1 : 0;
            len = (size_t)rx[2] << 8 | rx[3];
            h = 4;
        } else if (len == 127) {
            while (rx_len < 10)
                if (!fill())
                    return until ? 1 : 0;
            len = 0;
            for (int k = 2; k < 10; k++)
                len = len << 8 | rx[k];
            h = 10;
        }
        if (rx[1] & 0x80)
            die(2, "the server masked a frame");
        if (len > MAX_FRAME)
            die(2, "frame too big");
        while (rx_len < h + len)
            if (!fill())
                return until ? 1 : 0;
        bool fin = rx[0] & 0x80;
        int opcode = rx[0] & 0x0f;
        if (opcode == 8)
            return until ? 1 : 0;
        if (opcode == 9) {
            send_frame(10, (const char *)rx + h, len);
        } else if (opcode == 1 || opcode == 0) {
            msg = realloc(msg, msg_len + len + 1);
            if (!msg)
                die(2, "out of memory");
            memcpy(msg + msg_len, rx + h, len);
            msg_len += len;
            msg[msg_len] = 0;
        }
        consume(h + len);
        if (!fin || (opcode != 1 && opcode != 0))
            continue;
        json_error_t jerr;
        json_t *v = json_loadb(msg, msg_len, 0, &jerr);
        msg_len = 0;
        if (!v)
            die(2, "a frame is not JSON");
        bool hit = false;
        if (json_is_array(v)) {
            size_t k;
            json_t *m;
            json_array_foreach(v, k, m) hit = print_line(m, until) || hit;
        } else {
            hit = print_line(v, until);
        }
        json_decref(v);
        if (hit) {
            free(msg);
            free(rx);
            close(fd);
            return 0;
        }
    }
}
