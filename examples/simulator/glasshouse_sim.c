/* glasshouse_sim.c: a device simulator for the glasshouse example. Each simulated device
 * publishes a climate reading as JSON to glasshouse/<deviceId>/reading:
 *
 *   {"eventId":"gh-003-1795449600000-42","deviceId":"gh-003","sensorId":"gh-003-climate",
 *    "ts":1795449600000,"temperature":24.31,"humidity":61.2,"quality":"good"}
 *
 * Temperatures follow a slow daily-like wave per device with noise, and now and then a
 * device runs hot (over 30 C) for a while, so the example flow has something to alert on.
 * Event ids are unique per run (device, start time, sequence), so a reading delivered twice
 * is recognisably the same event.
 *
 *   glasshouse-sim [--host H] [--port P] [--devices N] [--rate R] [--qos Q] [--count C]
 *
 * --rate is readings per second per device (may be fractional); --count stops after C
 * readings in all (0: run until interrupted). */
#include <getopt.h>
#include <math.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct sim_opts {
    const char *host;
    int port;
    int devices;
    double rate;
    int qos;
    long count;
} sim_opts;

static volatile sig_atomic_t stopping;
static volatile long published; /* completed publishes, counted by libmosquitto's thread */

static void on_publish(struct mosquitto *mosq, void *data, int mid)
{
    (void)mosq;
    (void)data;
    (void)mid;
    __atomic_add_fetch(&published, 1, __ATOMIC_RELAXED);
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(void)
{
    fprintf(stderr, "usage: glasshouse-sim [--host H] [--port P] [--devices N] [--rate R] "
                    "[--qos 0|1|2] [--count C]\n");
}

static int parse_opts(int argc, char **argv, sim_opts *o)
{
    static const struct option longopts[] = {{"host", required_argument, NULL, 'h'},
                                             {"port", required_argument, NULL, 'p'},
                                             {"devices", required_argument, NULL, 'd'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"qos", required_argument, NULL, 'q'},
                                             {"count", required_argument, NULL, 'c'},
                                             {NULL, 0, NULL, 0}};
    *o = (sim_opts){"127.0.0.1", 1883, 5, 1.0, 1, 0};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            o->host = optarg;
            break;
        case 'p':
            o->port = atoi(optarg);
            break;
        case 'd':
            o->devices = atoi(optarg);
            break;
        case 'r':
            o->rate = atof(optarg);
            break;
        case 'q':
            o->qos = atoi(optarg);
            break;
        case 'c':
            o->count = atol(optarg);
            break;
        default:
            usage();
            return -1;
        }
    }
    if (o->port < 1 || o->port > 65535 || o->devices < 1 || o->rate <= 0 || o->qos < 0 ||
        o->qos > 2 || o->count < 0) {
        usage();
        return -1;
    }
    return 0;
}

/* A reading of device 'd' at its 'seq'th sample. Deterministic per device, so runs are
 * comparable; one device in five has hot spells. */
static int format_reading(char *buf, size_t size, int d, long seq, int64_t start, int64_t ts)
{
    double phase = (double)seq / 600.0 + d * 0.7;
    double temperature = 22.0 + 4.0 * sin(phase) + 0.3 * sin(seq * 1.7 + d);
    if (d % 5 == 2 && fmod((double)seq, 300.0) < 60.0)
        temperature += 9.0; /* a hot spell */
    double humidity = 60.0 - 8.0 * sin(phase) + 0.5 * cos(seq * 1.3 + d);
    const char *quality = seq % 97 == 13 ? "suspect" : "good";
    return snprintf(buf, size,
                    "{\"eventId\":\"gh-%03d-%lld-%ld\",\"deviceId\":\"gh-%03d\",\"sensorId\":"
                    "\"gh-%03d-climate\",\"ts\":%lld,\"temperature\":%.2f,\"humidity\":%.1f,"
                    "\"quality\":\"%s\"}",
                    d, (long long)start, seq, d, d, (long long)ts, temperature, humidity, quality);
}

int main(int argc, char **argv)
{
    sim_opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    mosquitto_lib_init();
    struct mosquitto *mosq = mosquitto_new(NULL, true, NULL);
    if (mosq)
        mosquitto_publish_callback_set(mosq, on_publish);
    if (!mosq || mosquitto_connect(mosq, o.host, o.port, 30) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(mosq) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "glasshouse-sim: cannot connect to %s:%d\n", o.host, o.port);
        return 1;
    }
    fprintf(stderr, "glasshouse-sim: %d device(s), %.2f reading(s)/s each, QoS %d, to %s:%d\n",
            o.devices, o.rate, o.qos, o.host, o.port);
    int64_t start = wall_ms();
    long sent = 0;
    double interval_ms = 1000.0 / (o.rate * o.devices); /* one device after the other */
    for (long seq = 0; !stopping; seq++) {
        for (int d = 1; d <= o.devices && !stopping; d++) {
            char topic[64], payload[320];
            snprintf(topic, sizeof(topic), "glasshouse/gh-%03d/reading", d);
            int len = format_reading(payload, sizeof(payload), d, seq, start, wall_ms());
            int rc = mosquitto_publish(mosq, NULL, topic, len, payload, o.qos, false);
            if (rc != MOSQ_ERR_SUCCESS)
                fprintf(stderr, "glasshouse-sim: publish: %s\n", mosquitto_strerror(rc));
            if (o.count && ++sent >= o.count)
                stopping = 1;
            int64_t due = start + (int64_t)((double)(seq * o.devices + d) * interval_ms);
            int64_t wait = due - wall_ms();
            if (wait > 0) {
                struct timespec ts = {wait / 1000, (long)(wait % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
    } /* With --count, every reading leaves before the DISCONNECT (up to 10 s). */
    for (int i = 0; o.count && i < 1000 && __atomic_load_n(&published, __ATOMIC_RELAXED) < sent;
         i++) {
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    mosquitto_disconnect(mosq);
    mosquitto_loop_stop(mosq, false);
    mosquitto_destroy(mosq);
    mosquitto_lib_cleanup();
    return 0;
}
