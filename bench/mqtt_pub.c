/* mqtt_pub.c: the publisher of the MQTT benchmark (bench/mqtt.sh). It plays 100 glasshouse
 * devices on one connection and publishes their readings as fast as the broker takes them,
 * then an end marker, and waits until the subscriber under test says it has seen the marker.
 *
 * The subscriber (bench_mqtt_count, or the flow bench/flows/mqtt-json.json run by eddy or
 * Node-RED) subscribes to glasshouse/# and answers a message on glasshouse/end by
 * publishing its payload to bench/done. Two modes:
 *
 *   probe  publishes {"end":"probe"} every 100 ms until the answer comes back: the
 *          subscriber is connected and subscribed. Nothing is measured.
 *   run    publishes MESSAGES readings on glasshouse/<device>/reading, round robin over
 *          DEVICES devices, then {"end":"run"} once every reading has left (QoS 0: written
 *          to the socket; QoS 1: acknowledged by the broker), so the marker is behind all of
 *          them in the broker's queue to the subscriber. Prints key=value figures: the wall
 *          time from the first publish to the answer, and this process's own CPU time.
 *
 * At most WINDOW readings are outstanding (QoS 1: unacknowledged, which is also the
 * in-flight limit given to libmosquitto; QoS 0: not yet written). libmosquitto scans its
 * whole outgoing list on every PUBACK, so a bigger window costs the publisher more than it
 * gains. With -r RATE the readings leave at RATE per second (reading i is due at i / RATE
 * seconds after the first) instead of as fast as possible, and the socket has TCP_NODELAY
 * (no Nagle delay: latency is measured).
 *
 * Window results (bench/glasshouse.sh): with -s FILTER the publisher also subscribes to
 * FILTER, where the flow under test publishes one message per closed window of LENGTH ms
 * (-l, default 1000) per device: a JSON object with at least "key" (the device id),
 * "end" (ms), "count" (readings in the window) and "closedBy" at its top level. After the
 * answer to the end marker, run waits until the windows have counted every reading it
 * published (they close on a later reading of their device, or an idle timeout after the
 * last one), and prints the number of windows and of readings in them. Readings the flow
 * turns away (late for their window) are expected back on bench/done, and counted. It also
 * measures, for every window closed by a later reading ("closedBy":"watermark"), the latency from
 * the publish of that reading (the first of the device with a time at or after the
 * window's end) to the window's result arriving here, and prints its median, 99th
 * percentile and maximum in ms.
 *
 * Event ids are scattered over the id space, as random ids are; with -o they start with
 * the time in ms, as UUIDv7 ids do (the event store's id index then takes appends at its
 * end instead of inserts all over it).
 *
 * Usage: bench_mqtt_pub [-h HOST] -p PORT [-q QOS] [-n MESSAGES] [-d DEVICES] [-w WINDOW]
 * [-r RATE] [-s FILTER] [-l LENGTH] [-o] probe|run */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <mosquitto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define END_TOPIC  "glasshouse/end"
#define DONE_TOPIC "bench/done"
#define OPEN_RING  16 /* window starts remembered per device */

/* When a device's reading with a time in a new window was published. */
typedef struct opened {
    long long window; /* window number: event time / length */
    double at;        /* monotonic seconds */
} opened;

typedef struct pub_state {
    long completed;      /* readings written (QoS 0) or acknowledged (QoS 1) */
    bool connected;      /* CONNACK accepted */
    int subscribed;      /* SUBACKs received */
    const char *results; /* filter of the window results; NULL: none */
    char answer[64];     /* payload of the last message on bench/done */
    bool answered;       /* 'answer' is new */

    /* window results */
    int devices;
    long long length;  /* window length, ms */
    opened *open;      /* OPEN_RING per device */
    long windows;      /* results received */
    long long counted; /* sum of their counts */
    long unreadable;   /* results without key, end or count */
    long rejected;     /* readings the flow sent back on bench/done instead */
    double *latency;   /* ms, one per window closed by a later reading */
    size_t nlatency, caplatency;
} pub_state;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void on_connect(struct mosquitto *mosq, void *data, int rc)
{
    pub_state *s = data;
    if (rc != 0) {
        fprintf(stderr, "bench_mqtt_pub: connection refused: %s\n", mosquitto_connack_string(rc));
        return;
    }
    s->connected = true;
    mosquitto_subscribe(mosq, NULL, DONE_TOPIC, 1);
    if (s->results)
        mosquitto_subscribe(mosq, NULL, s->results, 1);
}

static void on_subscribe(struct mosquitto *mosq, void *data, int mid, int count, const int *granted)
{
    (void)mosq, (void)mid, (void)count, (void)granted;
    ((pub_state *)data)->subscribed++;
}

static void on_publish(struct mosquitto *mosq, void *data, int mid)
{
    (void)mosq;
    (void)mid;
    ((pub_state *)data)->completed++;
}

/* The value of member 'name' of the top-level object of the JSON text 'p', or NULL. */
static const char *top_member(const char *p, const char *name)
{
    size_t n = strlen(name);
    int depth = 0;
    for (; *p; p++) {
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (*p == '"') {
            const char *str = ++p;
            while (*p && *p != '"')
                p += p[0] == '\\' && p[1] ? 2 : 1;
            if (!*p)
                return NULL;
            const char *v = p + 1;
            while (*v == ' ')
                v++;
            if (depth == 1 && *v == ':' && (size_t)(p - str) == n && memcmp(str, name, n) == 0) {
                for (v++; *v == ' ';)
                    v++;
                return v;
            }
        }
    }
    return NULL;
}

/* A window result: counts it and, if a later reading closed it, takes its latency. */
static void on_result(pub_state *s, const char *text, double now)
{
    const char *key = top_member(text, "key"), *end = top_member(text, "end");
    const char *count = top_member(text, "count"), *by = top_member(text, "closedBy");
    int device;
    if (!key || !end || !count || sscanf(key, "\"gh-%d\"", &device) != 1) {
        s->unreadable++;
        return;
    }
    s->windows++;
    s->counted += atol(count);
    long long window = atoll(end) / s->length;
    if (!by || strncmp(by, "\"watermark\"", 11) != 0 || device < 0 || device >= s->devices)
        return;
    opened *o = &s->open[(size_t)device * OPEN_RING + (size_t)(window % OPEN_RING)];
    if (o->window != window)
        return; /* not published by this run */
    if (s->nlatency == s->caplatency) {
        size_t cap = s->caplatency ? 2 * s->caplatency : 1024;
        double *p = realloc(s->latency, cap * sizeof(*p));
        if (!p)
            return;
        s->latency = p;
        s->caplatency = cap;
    }
    s->latency[s->nlatency++] = (now - o->at) * 1e3;
}

static void on_message(struct mosquitto *mosq, void *data, const struct mosquitto_message *m)
{
    (void)mosq;
    pub_state *s = data;
    if (strcmp(m->topic, DONE_TOPIC) != 0) {
        char text[4096];
        if (m->payloadlen >= (int)sizeof(text)) {
            s->unreadable++;
            return;
        }
        memcpy(text, m->payload, (size_t)m->payloadlen);
        text[m->payloadlen] = '\0';
        on_result(s, text, now_s());
        return;
    }
    if (s->results && m->payloadlen > 0 &&
        memmem(m->payload, (size_t)m->payloadlen, "\"deviceId\"", 10)) {
        s->rejected++; /* a reading the flow turned away (a late one) */
        return;
    }
    snprintf(s->answer, sizeof(s->answer), "%.*s", m->payloadlen, (const char *)m->payload);
    s->answered = true;
}

/* One network round: reads and writes what is ready, waiting up to 'timeout_ms'. */
static int pump(struct mosquitto *mosq, int timeout_ms)
{
    int rc = mosquitto_loop(mosq, timeout_ms, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench_mqtt_pub: connection lost: %s\n", mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

/* Waits until the subscriber answers with a payload containing 'word'. */
static int wait_answer(struct mosquitto *mosq, pub_state *s, const char *word, double deadline)
{
    while (!(s->answered && strstr(s->answer, word))) {
        if (now_s() > deadline) {
            fprintf(stderr, "bench_mqtt_pub: no answer on " DONE_TOPIC " in time\n");
            return -1;
        }
        if (pump(mosq, 100) != 0)
            return -1;
    }
    return 0;
}

static bool ordered_ids; /* -o: event ids in time order (UUIDv7's layout), else scattered */

/* The event id of reading 'seq': unique per process ('salt' differs between runs), either
 * scattered over the id space as random ids are or, with -o, starting with the time in ms
 * as UUIDv7 ids do, so that ids sort in the order they were made. */
static void event_id(char *buf, size_t size, long seq, int device, unsigned salt, long long ts)
{
    if (ordered_ids)
        snprintf(buf, size, "%08llx-%04llx-7e11-8b00-%04x%08lx", (unsigned long long)ts >> 16,
                 (unsigned long long)ts & 0xffffu, salt & 0xffffu,
                 (unsigned long)seq & 0xffffffffUL);
    else
        snprintf(buf, size, "%08lx-%04x-4e11-8b00-%04x%08lx",
                 (unsigned long)(seq * 2654435761u) & 0xffffffffUL, (unsigned)device,
                 salt & 0xffffu, (unsigned long)seq & 0xffffffffUL);
}

/* A reading as a device would send it, about 170 bytes; '*ts' is its time (ms since the
 * epoch). */
static int reading(char *buf, size_t size, long seq, int device, unsigned salt, long long *ts)
{
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    *ts = (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    char id[64];
    event_id(id, sizeof(id), seq, device, salt, *ts);
    return snprintf(buf, size,
                    "{\"eventId\":\"%s\",\"deviceId\":\"gh-%03d\","
                    "\"sensorId\":\"gh-%03d-th%d\",\"ts\":%lld,\"temperature\":%.2f,"
                    "\"humidity\":%.1f,\"quality\":\"%s\"}",
                    id, device, device, (int)(seq % 3) + 1, *ts,
                    18.0 + (double)((seq * 7 + device) % 1000) / 100.0,
                    55.0 + (double)((seq * 13 + device) % 300) / 10.0,
                    seq % 97 == 0 ? "degraded" : "good");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of the sorted 'v' (nearest rank). */
static double quantile(const double *v, size_t n, double q)
{
    size_t rank = (size_t)ceil(q * (double)n);
    return v[rank > 0 ? rank - 1 : 0];
}

static int run(struct mosquitto *mosq, pub_state *s, int qos, long messages, int devices,
               long window, double rate)
{
    char topic[64], payload[320];
    long published = 0;
    size_t bytes = 0;
    unsigned salt = (unsigned)time(NULL) ^ ((unsigned)getpid() << 8);
    double cpu0 = cpu_s(), t0 = now_s();
    while (s->completed < messages) {
        /* paced: the reading due next, and how long until then */
        double wait = rate > 0 ? t0 + (double)published / rate - now_s() : 0;
        while (published < messages && published - s->completed < window && wait <= 0) {
            int device = (int)(published % devices);
            snprintf(topic, sizeof(topic), "glasshouse/gh-%03d/reading", device);
            long long ts;
            int len = reading(payload, sizeof(payload), published, device, salt, &ts);
            opened *o = &s->open[(size_t)device * OPEN_RING + (size_t)(ts / s->length % OPEN_RING)];
            if (o->window != ts / s->length)
                *o = (opened){ts / s->length, now_s()};
            bytes += (size_t)len;
            int rc = mosquitto_publish(mosq, NULL, topic, len, payload, qos, false);
            if (rc != MOSQ_ERR_SUCCESS) {
                fprintf(stderr, "bench_mqtt_pub: publish: %s\n", mosquitto_strerror(rc));
                return -1;
            }
            published++;
            if (rate > 0)
                wait = t0 + (double)published / rate - now_s();
        }
        /* Do not sleep while there is more to publish and room for it. */
        bool room = published < messages && published - s->completed < window;
        int timeout = !room ? 10 : wait > 0 ? (int)ceil(wait * 1e3) : 0;
        if (pump(mosq, timeout < 10 ? timeout : 10) != 0)
            return -1;
    }
    double t_sent = now_s();
    const char *marker = "{\"end\":\"run\"}";
    s->answered = false;
    if (mosquitto_publish(mosq, NULL, END_TOPIC, (int)strlen(marker), marker, qos, false) !=
        MOSQ_ERR_SUCCESS)
        return -1;
    if (wait_answer(mosq, s, "run", t0 + 600) != 0)
        return -1;
    double t_done = now_s();
    double cpu = cpu_s() - cpu0;
    printf("messages=%ld qos=%d devices=%d avg_bytes=%.0f publish_s=%.3f wall_s=%.3f "
           "pub_rate=%.0f pub_cpu_s=%.3f",
           messages, qos, devices, (double)bytes / (double)messages, t_sent - t0, t_done - t0,
           (double)messages / (t_sent - t0), cpu);
    if (!s->results) {
        printf("\n");
        return 0;
    }
    /* the last windows close on their idle timeout, after the last reading */
    while (s->counted + s->rejected < messages && now_s() < t_done + 60)
        if (pump(mosq, 100) != 0)
            return -1;
    pump(mosq, 200); /* one more round: anything beyond the count is an error */
    printf(" windows=%ld window_readings=%lld rejected=%ld unreadable=%ld latency_n=%zu",
           s->windows, s->counted, s->rejected, s->unreadable, s->nlatency);
    if (s->nlatency > 0) {
        qsort(s->latency, s->nlatency, sizeof(double), cmp_double);
        printf(" latency_p50_ms=%.2f latency_p99_ms=%.2f latency_max_ms=%.2f",
               quantile(s->latency, s->nlatency, 0.5), quantile(s->latency, s->nlatency, 0.99),
               s->latency[s->nlatency - 1]);
    }
    printf("\n");
    if (s->counted + s->rejected != messages || s->unreadable != 0) {
        fprintf(stderr,
                "bench_mqtt_pub: the windows counted %lld of %ld readings, %ld came back "
                "rejected (%ld results unreadable)\n",
                s->counted, messages, s->rejected, s->unreadable);
        return -1;
    }
    return 0;
}

static int probe(struct mosquitto *mosq, pub_state *s, int qos)
{
    const char *marker = "{\"end\":\"probe\"}";
    double deadline = now_s() + 60;
    while (!(s->answered && strstr(s->answer, "probe"))) {
        if (now_s() > deadline) {
            fprintf(stderr, "bench_mqtt_pub: the subscriber does not answer\n");
            return -1;
        }
        mosquitto_publish(mosq, NULL, END_TOPIC, (int)strlen(marker), marker, qos, false);
        double next = now_s() + 0.1;
        while (!(s->answered && strstr(s->answer, "probe")) && now_s() < next)
            if (pump(mosq, 20) != 0)
                return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, qos = 0, devices = 100, opt;
    long messages = 200000, window = 500;
    double rate = 0;
    const char *results = NULL;
    long long length = 1000;
    while ((opt = getopt(argc, argv, "h:p:q:n:d:w:r:s:l:o")) != -1) {
        switch (opt) {
        case 'o':
            ordered_ids = true;
            break;
        case 'h':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'q':
            qos = atoi(optarg);
            break;
        case 'n':
            messages = atol(optarg);
            break;
        case 'd':
            devices = atoi(optarg);
            break;
        case 'w':
            window = atol(optarg);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 's':
            results = optarg;
            break;
        case 'l':
            length = atoll(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (optind != argc - 1 || port <= 0 || (qos != 0 && qos != 1) || messages <= 0 ||
        devices <= 0 || window <= 0 || rate < 0 || length <= 0)
        goto usage;
    const char *mode = argv[optind];
    if (strcmp(mode, "probe") != 0 && strcmp(mode, "run") != 0)
        goto usage;

    mosquitto_lib_init();
    pub_state s = {.results = results, .devices = devices, .length = length};
    s.open = calloc((size_t)devices * OPEN_RING, sizeof(opened));
    if (!s.open) {
        perror("bench_mqtt_pub: calloc");
        return 1;
    }
    for (size_t i = 0; i < (size_t)devices * OPEN_RING; i++)
        s.open[i].window = -1;
    struct mosquitto *mosq = mosquitto_new(NULL, true, &s);
    if (!mosq) {
        perror("bench_mqtt_pub: mosquitto_new");
        return 1;
    }
    mosquitto_int_option(mosq, MOSQ_OPT_SEND_MAXIMUM, (int)(window < 65535 ? window : 65535));
    /* paced runs measure latency: no Nagle delay on this side */
    if (rate > 0)
        mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(mosq, on_connect);
    mosquitto_subscribe_callback_set(mosq, on_subscribe);
    mosquitto_publish_callback_set(mosq, on_publish);
    mosquitto_message_callback_set(mosq, on_message);
    int rc = mosquitto_connect(mosq, host, port, 60);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench_mqtt_pub: connect to %s:%d: %s\n", host, port,
                mosquitto_strerror(rc));
        return 1;
    }
    double deadline = now_s() + 10;
    int subscriptions = results ? 2 : 1;
    while (s.subscribed < subscriptions && now_s() < deadline)
        if (pump(mosq, 100) != 0)
            return 1;
    if (s.subscribed < subscriptions) {
        fprintf(stderr, "bench_mqtt_pub: no SUBACK from %s:%d\n", host, port);
        return 1;
    }
    rc = strcmp(mode, "probe") == 0 ? probe(mosq, &s, qos)
                                    : run(mosq, &s, qos, messages, devices, window, rate);
    mosquitto_disconnect(mosq);
    mosquitto_loop(mosq, 100, 1);
    mosquitto_destroy(mosq);
    mosquitto_lib_cleanup();
    free(s.open);
    free(s.latency);
    return rc == 0 ? 0 : 1;
usage:
    fprintf(stderr, "usage: bench_mqtt_pub [-h HOST] -p PORT [-q 0|1] [-n MESSAGES] "
                    "[-d DEVICES] [-w WINDOW] [-r RATE] [-s FILTER] [-l LENGTH] [-o] probe|run\n");
    return 2;
}
