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
 * gains. Usage: bench_mqtt_pub [-h HOST] -p PORT [-q QOS] [-n MESSAGES] [-d DEVICES]
 * [-w WINDOW] probe|run */
#include <errno.h>
#include <getopt.h>
#include <mosquitto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define END_TOPIC  "glasshouse/end"
#define DONE_TOPIC "bench/done"

typedef struct pub_state {
    long completed;  /* readings written (QoS 0) or acknowledged (QoS 1) */
    bool connected;  /* CONNACK accepted */
    bool subscribed; /* SUBACK for bench/done received */
    char answer[64]; /* payload of the last message on bench/done */
    bool answered;   /* 'answer' is new */
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
}

static void on_subscribe(struct mosquitto *mosq, void *data, int mid, int count, const int *granted)
{
    (void)mosq, (void)mid, (void)count, (void)granted;
    ((pub_state *)data)->subscribed = true;
}

static void on_publish(struct mosquitto *mosq, void *data, int mid)
{
    (void)mosq;
    (void)mid;
    ((pub_state *)data)->completed++;
}

static void on_message(struct mosquitto *mosq, void *data, const struct mosquitto_message *m)
{
    (void)mosq;
    pub_state *s = data;
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

/* A reading as a device would send it, about 170 bytes. */
static int reading(char *buf, size_t size, long seq, int device, struct timespec *wall)
{
    clock_gettime(CLOCK_REALTIME, wall);
    long long ts = (long long)wall->tv_sec * 1000 + wall->tv_nsec / 1000000;
    return snprintf(
        buf, size,
        "{\"eventId\":\"%08lx-%04x-4e11-8b00-%012lx\",\"deviceId\":\"gh-%03d\","
        "\"sensorId\":\"gh-%03d-th%d\",\"ts\":%lld,\"temperature\":%.2f,"
        "\"humidity\":%.1f,\"quality\":\"%s\"}",
        (unsigned long)(seq * 2654435761u) & 0xffffffffUL, (unsigned)device, (unsigned long)seq,
        device, device, (int)(seq % 3) + 1, ts, 18.0 + (double)((seq * 7 + device) % 1000) / 100.0,
        55.0 + (double)((seq * 13 + device) % 300) / 10.0, seq % 97 == 0 ? "degraded" : "good");
}

static int run(struct mosquitto *mosq, pub_state *s, int qos, long messages, int devices,
               long window)
{
    char topic[64], payload[320];
    struct timespec wall;
    long published = 0;
    size_t bytes = 0;
    double cpu0 = cpu_s(), t0 = now_s();
    while (s->completed < messages) {
        while (published < messages && published - s->completed < window) {
            int device = (int)(published % devices);
            snprintf(topic, sizeof(topic), "glasshouse/gh-%03d/reading", device);
            int len = reading(payload, sizeof(payload), published, device, &wall);
            bytes += (size_t)len;
            int rc = mosquitto_publish(mosq, NULL, topic, len, payload, qos, false);
            if (rc != MOSQ_ERR_SUCCESS) {
                fprintf(stderr, "bench_mqtt_pub: publish: %s\n", mosquitto_strerror(rc));
                return -1;
            }
            published++;
        }
        /* Do not sleep while there is more to publish and room for it. */
        bool room = published < messages && published - s->completed < window;
        if (pump(mosq, room ? 0 : 10) != 0)
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
           "pub_rate=%.0f pub_cpu_s=%.3f\n",
           messages, qos, devices, (double)bytes / (double)messages, t_sent - t0, t_done - t0,
           (double)messages / (t_sent - t0), cpu);
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
    while ((opt = getopt(argc, argv, "h:p:q:n:d:w:")) != -1) {
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
        case 'n':
            messages = atol(optarg);
            break;
        case 'd':
            devices = atoi(optarg);
            break;
        case 'w':
            window = atol(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (optind != argc - 1 || port <= 0 || (qos != 0 && qos != 1) || messages <= 0 ||
        devices <= 0 || window <= 0)
        goto usage;
    const char *mode = argv[optind];
    if (strcmp(mode, "probe") != 0 && strcmp(mode, "run") != 0)
        goto usage;

    mosquitto_lib_init();
    pub_state s = {0};
    struct mosquitto *mosq = mosquitto_new(NULL, true, &s);
    if (!mosq) {
        perror("bench_mqtt_pub: mosquitto_new");
        return 1;
    }
    mosquitto_int_option(mosq, MOSQ_OPT_SEND_MAXIMUM, (int)(window < 65535 ? window : 65535));
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
    while (!s.subscribed && now_s() < deadline)
        if (pump(mosq, 100) != 0)
            return 1;
    if (!s.subscribed) {
        fprintf(stderr, "bench_mqtt_pub: no SUBACK from %s:%d\n", host, port);
        return 1;
    }
    rc = strcmp(mode, "probe") == 0 ? probe(mosq, &s, qos)
                                    : run(mosq, &s, qos, messages, devices, window);
    mosquitto_disconnect(mosq);
    mosquitto_loop(mosq, 100, 1);
    mosquitto_destroy(mosq);
    mosquitto_lib_cleanup();
    return rc == 0 ? 0 : 1;
usage:
    fprintf(stderr, "usage: bench_mqtt_pub [-h HOST] -p PORT [-q 0|1] [-n MESSAGES] "
                    "[-d DEVICES] [-w WINDOW] probe|run\n");
    return 2;
}
