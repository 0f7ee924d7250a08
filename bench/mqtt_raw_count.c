/* mqtt_raw_count.c: what an MQTT read path of eddy's own would cost (bench/mqtt.sh's "raw"
 * subscriber). It does what bench_mqtt_count does (subscribe to glasshouse/#, count
 * readings, answer glasshouse/end on bench/done, print received=N bytes=B on an end marker
 * whose payload contains "run") without libmosquitto: MQTT 3.1.1 over a plain socket, read
 * in chunks of up to 64 KiB, every whole packet in a chunk parsed in place, and the
 * chunk's PUBACKs sent in one write. It coalesces reads as eddy does under dense input
 * (COALESCE_BYTES, COALESCE_MS).
 *
 * libmosquitto 2.0 reads each packet with three or four read calls (the fixed header byte
 * by byte, then the rest) and writes each PUBACK on its own; the difference between this
 * program and bench_mqtt_count is what that costs per message, so it says how far eddy
 * could go below libmosquitto's floor. It is a measuring tool, not a client: no TLS, no
 * QoS 2, no reconnect, no session state.
 *
 * Usage: bench_mqtt_raw_count [-h HOST] -p PORT [-q 0|1] */
#define _GNU_SOURCE /* memmem, getaddrinfo */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FILTER      "glasshouse/#"
#define END_TOPIC   "glasshouse/end"
#define DONE_TOPIC  "bench/done"
#define CHUNK       65536
#define KEEPALIVE_S 60
/* Read coalescing as eddy's mqtt-broker node does it under dense input: the socket wakes
 * the loop once this much is waiting, and whatever is below it is read every ms. */
#define COALESCE_BYTES 16384
#define COALESCE_MS    1

enum { PKT_CONNACK = 2, PKT_PUBLISH = 3, PKT_PUBACK = 4, PKT_SUBACK = 9, PKT_PINGRESP = 13 };

/* bytes read but not yet parsed; grows past CHUNK only for a packet larger than it */
struct inbuf {
    unsigned char *data;
    size_t len, cap;
};

/* bytes to send at the end of the chunk being parsed */
struct outbuf {
    unsigned char *data;
    size_t len, cap;
};

static volatile sig_atomic_t stop;
static long received;
static long long received_bytes;
static uint16_t next_packet_id = 1;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void out_reserve(struct outbuf *o, size_t more)
{
    if (o->len + more <= o->cap)
        return;
    size_t cap = o->cap ? o->cap * 2 : 4096;
    while (cap < o->len + more)
        cap *= 2;
    o->data = realloc(o->data, cap);
    if (!o->data) {
        perror("bench_mqtt_raw_count: realloc");
        exit(1);
    }
    o->cap = cap;
}

static void out_put(struct outbuf *o, const void *bytes, size_t n)
{
    out_reserve(o, n);
    memcpy(o->data + o->len, bytes, n);
    o->len += n;
}

static void out_u16(struct outbuf *o, unsigned v)
{
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    out_put(o, b, 2);
}

static void out_string(struct outbuf *o, const char *s)
{
    size_t n = strlen(s);
    out_u16(o, (unsigned)n);
    out_put(o, s, n);
}

/* the fixed header: packet type and flags, then the remaining length as a varint */
static void out_header(struct outbuf *o, unsigned char first, size_t remaining)
{
    out_put(o, &first, 1);
    do {
        unsigned char b = remaining % 128;
        remaining /= 128;
        if (remaining)
            b |= 128;
        out_put(o, &b, 1);
    } while (remaining);
}

static int out_flush(int fd, struct outbuf *o)
{
    size_t done = 0;
    while (done < o->len) {
        ssize_t n = write(fd, o->data + done, o->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("bench_mqtt_raw_count: write");
            return -1;
        }
        done += (size_t)n;
    }
    o->len = 0;
    return 0;
}

static void queue_connect(struct outbuf *o)
{
    char id[32];
    snprintf(id, sizeof id, "bench-raw-%ld", (long)getpid());
    out_header(o, 0x10, 10 + 2 + strlen(id));
    out_string(o, "MQTT");
    unsigned char level_flags[2] = {4, 0x02}; /* 3.1.1, clean session */
    out_put(o, level_flags, 2);
    out_u16(o, KEEPALIVE_S);
    out_string(o, id);
}

static void queue_subscribe(struct outbuf *o, int qos)
{
    out_header(o, 0x82, 2 + 2 + strlen(FILTER) + 1);
    out_u16(o, next_packet_id++);
    out_string(o, FILTER);
    unsigned char q = (unsigned char)qos;
    out_put(o, &q, 1);
}

static void queue_publish_qos1(struct outbuf *o, const char *topic, const void *payload, size_t len)
{
    out_header(o, 0x32, 2 + strlen(topic) + 2 + len);
    out_string(o, topic);
    out_u16(o, next_packet_id++);
    if (next_packet_id == 0)
        next_packet_id = 1;
    out_put(o, payload, len);
}

/* A PUBLISH's variable header and payload (body, len bytes); queues its PUBACK. */
static int on_publish(unsigned char flags, const unsigned char *body, size_t len, struct outbuf *o)
{
    int qos = (flags >> 1) & 3;
    if (len < 2)
        return -1;
    size_t topic_len = (size_t)body[0] << 8 | body[1];
    size_t at = 2 + topic_len + (qos ? 2 : 0);
    if (at > len || qos > 1)
        return -1;
    const char *topic = (const char *)body + 2;
    const unsigned char *payload = body + at;
    size_t payload_len = len - at;
    if (qos == 1) {
        unsigned char ack[4] = {PKT_PUBACK << 4, 2, body[2 + topic_len], body[3 + topic_len]};
        out_put(o, ack, 4);
    }
    if (topic_len != strlen(END_TOPIC) || memcmp(topic, END_TOPIC, topic_len) != 0) {
        received++;
        received_bytes += (long long)payload_len;
        return 0;
    }
    queue_publish_qos1(o, DONE_TOPIC, payload, payload_len);
    if (memmem(payload, payload_len, "run", 3)) {
        printf("received=%ld bytes=%lld\n", received, received_bytes);
        fflush(stdout);
        received = 0;
        received_bytes = 0;
    }
    return 0;
}

/* Parses every whole packet at the front of in, queueing answers in out; keeps the rest.
 * Returns -1 on a malformed packet or a refused connection. */
static int parse_packets(struct inbuf *in, struct outbuf *o)
{
    size_t at = 0;
    for (;;) {
        size_t remaining = 0, shift = 0, header = 1;
        bool whole_length = false;
        while (at + header < in->len) {
            if (header == 5) /* four length bytes, the last still saying "more" */
                return -1;
            unsigned char b = in->data[at + header];
            remaining |= (size_t)(b & 127) << shift;
            shift += 7;
            header++;
            if (!(b & 128)) {
                whole_length = true;
                break;
            }
        }
        if (!whole_length)
            break;
        if (at + header + remaining > in->len) {
            if (header + remaining > in->cap) { /* a packet larger than the buffer */
                in->cap = header + remaining;
                in->data = realloc(in->data, in->cap);
                if (!in->data)
                    return -1;
            }
            break;
        }
        unsigned char first = in->data[at];
        const unsigned char *body = in->data + at + header;
        switch (first >> 4) {
        case PKT_PUBLISH:
            if (on_publish(first & 15, body, remaining, o) != 0)
                return -1;
            break;
        case PKT_CONNACK:
            if (remaining < 2 || body[1] != 0) {
                fprintf(stderr, "bench_mqtt_raw_count: connection refused (%d)\n",
                        remaining < 2 ? -1 : body[1]);
                return -1;
            }
            break;
        default: /* SUBACK, PUBACK of our answers, PINGRESP */
            break;
        }
        at += header + remaining;
    }
    memmove(in->data, in->data + at, in->len - at);
    in->len -= at;
    return 0;
}

static int connect_tcp(const char *host, int port)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, service, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "bench_mqtt_raw_count: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        fprintf(stderr, "bench_mqtt_raw_count: connect to %s:%d: %s\n", host, port,
                strerror(errno));
        return -1;
    }
    int lowat = COALESCE_BYTES; /* as eddy's mqtt-broker node under dense input */
    setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
    int one = 1; /* answers are batched here already; Nagle would only delay them */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, qos = 0, opt;
    while ((opt = getopt(argc, argv, "h:p:q:")) != -1) {
        switch (opt) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'q':
            qos = atoi(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (optind != argc || port <= 0 || qos < 0 || qos > 1)
        goto usage;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    int fd = connect_tcp(host, port);
    if (fd < 0)
        return 1;
    struct inbuf in = {.data = malloc(CHUNK), .cap = CHUNK};
    struct outbuf out = {0};
    if (!in.data)
        return 1;
    queue_connect(&out);
    queue_subscribe(&out, qos);
    if (out_flush(fd, &out) != 0)
        return 1;
    time_t last_sent = time(NULL);
    int status = 0;
    while (!stop) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, COALESCE_MS);
        if (n < 0 && errno != EINTR)
            break;
        ssize_t got = recv(fd, in.data + in.len, in.cap - in.len, MSG_DONTWAIT);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            got = 0;
        else if (got <= 0) {
            fprintf(stderr, "bench_mqtt_raw_count: connection lost\n");
            status = 1;
            break;
        }
        if (got > 0) {
            in.len += (size_t)got;
            if (parse_packets(&in, &out) != 0) {
                fprintf(stderr, "bench_mqtt_raw_count: bad packet from the broker\n");
                status = 1;
                break;
            }
        }
        if (time(NULL) - last_sent >= KEEPALIVE_S / 2) {
            unsigned char ping[2] = {0xc0, 0};
            out_put(&out, ping, 2);
        }
        if (out.len) {
            last_sent = time(NULL);
            if (out_flush(fd, &out) != 0) {
                status = 1;
                break;
            }
        }
    }
    unsigned char disconnect[2] = {0xe0, 0};
    out_put(&out, disconnect, 2);
    out_flush(fd, &out);
    close(fd);
    free(in.data);
    free(out.data);
    return status;
usage:
    fprintf(stderr, "usage: bench_mqtt_raw_count [-h HOST] -p PORT [-q 0|1]\n");
    return 2;
}
