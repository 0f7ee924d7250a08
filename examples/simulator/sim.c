/* sim.c: the part of the example simulators that is not about devices (see sim.h). */
#include "sim.h"

#include <ctype.h>
#include <getopt.h>
#include <math.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIM_MAX_KINDS 8

/* The run: owned by sim_main's stack frame. */
typedef struct sim_run {
    const sim_scenario *sc;
    sim_opts o;
    void *devices;
    struct mosquitto *mosq;
    int64_t start;  /* wall clock at the start, ms */
    long published; /* publishes the broker completed (PUBACK for QoS 1) */
    long sent;      /* messages handed to libmosquitto */
    long commands;  /* commands received */
    long answered;  /* commands answered */
    long kinds[SIM_MAX_KINDS];
    char filter[96]; /* <app>/+/actuator/+/set */
} sim_run;

static volatile sig_atomic_t stopping;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

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

/* Simulated time: the start, then 'time_scale' simulated ms per wall ms. */
static int64_t sim_now(const sim_run *r)
{
    return r->start + (int64_t)((double)(wall_ms() - r->start) * r->o.time_scale);
}

double sim_random(void)
{
    /* xorshift64*: small, fast and repeatable from a seed; not for cryptography. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dULL) >> 11) / 9007199254740992.0;
}

double sim_gauss(void)
{
    double u1 = sim_random(), u2 = sim_random();
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int sim_device_number(const char *id)
{
    const char *dash = strrchr(id, '-');
    const char *digits = dash ? dash + 1 : id;
    if (!*digits)
        return 0;
    for (const char *p = digits; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    return atoi(digits);
}

/* ---- options ---- */

static void usage(const char *name)
{
    fprintf(stderr,
            "usage: %s [--host H] [--port P] [--devices N] [--rate R] [--qos 0|1|2] "
            "[--count C]\n"
            "       [--time-scale S] [--ignore-commands F] [--seed N] [--no-faults]\n"
            "  --rate R             messages per second per device (default 1)\n"
            "  --count C            stop after C messages in all (default: run until ^C)\n"
            "  --time-scale S       simulated time runs S times faster than the clock\n"
            "  --ignore-commands F  leave this fraction (0..1) of commands unanswered\n"
            "  --no-faults          no message is bad on purpose\n",
            name);
}

static int parse_opts(int argc, char **argv, const char *name, sim_opts *o)
{
    static const struct option longopts[] = {{"host", required_argument, NULL, 'h'},
                                             {"port", required_argument, NULL, 'p'},
                                             {"devices", required_argument, NULL, 'd'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"qos", required_argument, NULL, 'q'},
                                             {"count", required_argument, NULL, 'c'},
                                             {"time-scale", required_argument, NULL, 't'},
                                             {"ignore-commands", required_argument, NULL, 'i'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"no-faults", no_argument, NULL, 'f'},
                                             {NULL, 0, NULL, 0}};
    *o = (sim_opts){"127.0.0.1", 1883, 5, 1.0, 1, 0, 1.0, 0.0, 0, 1};
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
        case 't':
            o->time_scale = atof(optarg);
            break;
        case 'i':
            o->ignore = atof(optarg);
            break;
        case 'f':
            o->faults = 0;
            break;
        case 's':
            o->seed = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            usage(name);
            return -1;
        }
    }
    if (optind < argc || o->port < 1 || o->port > 65535 || o->devices < 1 || o->devices > 999 ||
        !(o->rate > 0) || o->qos < 0 || o->qos > 2 || o->count < 0 || !(o->time_scale > 0) ||
        !(o->ignore >= 0 && o->ignore <= 1)) {
        usage(name);
        return -1;
    }
    return 0;
}

/* ---- commands ---- */

/* Splits "<app>/<device>/actuator/<actuator>/set" into its ids (in 'buf'). */
static int command_ids(const char *topic, char *buf, size_t size, const char **device,
                       const char **actuator)
{
    if (strlen(topic) >= size)
        return -1;
    strcpy(buf, topic);
    char *level[6];
    int n = 0;
    for (char *p = buf, *save = NULL; n < 6 && (p = strtok_r(p, "/", &save)); p = NULL)
        level[n++] = p;
    if (n != 5 || strcmp(level[2], "actuator") != 0 || strcmp(level[4], "set") != 0)
        return -1;
    *device = level[1];
    *actuator = level[3];
    return 0;
}

/* The answer to a command: on the command's topic with "state" for "set", carrying the
 * same correlation id. */
static void answer(sim_run *r, const char *topic, json_t *cmd, const char *state)
{
    char reply_topic[160];
    size_t n = strlen(topic);
    snprintf(reply_topic, sizeof(reply_topic), "%.*sstate", (int)(n - 3), topic);
    json_t *reply =
        json_pack("{s:O?,s:O?,s:O?,s:I}", "correlationId", json_object_get(cmd, "correlationId"),
                  "command", json_object_get(cmd, "command"), "value",
                  json_object_get(cmd, "value"), "time", (json_int_t)sim_now(r));
    if (reply && *state)
        json_object_set_new(reply, "state", json_string(state));
    char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    json_decref(reply);
    if (!text)
        return;
    int rc =
        mosquitto_publish(r->mosq, NULL, reply_topic, (int)strlen(text), text, r->o.qos, false);
    free(text);
    if (rc == MOSQ_ERR_SUCCESS)
        r->answered++;
    else
        fprintf(stderr, "%s: answer on %s: %s\n", r->sc->name, reply_topic, mosquitto_strerror(rc));
}

static void on_message(struct mosquitto *mosq, void *data, const struct mosquitto_message *m)
{
    (void)mosq;
    sim_run *r = data;
    char buf[160];
    sim_command c = {0};
    if (command_ids(m->topic, buf, sizeof(buf), &c.device, &c.actuator) != 0)
        return;
    r->commands++;
    json_error_t jerr;
    json_t *cmd = json_loadb(m->payload, (size_t)m->payloadlen, 0, &jerr);
    if (!json_is_object(cmd)) {
        fprintf(stderr, "%s: a command on %s is not a JSON object; ignored\n", r->sc->name,
                m->topic);
        json_decref(cmd);
        return;
    }
    const char *command = json_string_value(json_object_get(cmd, "command"));
    c.command = command ? command : "";
    c.value = json_object_get(cmd, "value");
    const char *corr = json_string_value(json_object_get(cmd, "correlationId"));
    c.correlation_id = corr ? corr : "";
    char state[64] = "";
    bool ignored = r->o.ignore > 0 && sim_random() < r->o.ignore;
    if (!ignored && r->sc->command(r->devices, &c, sim_now(r), state, sizeof(state)) == 0)
        answer(r, m->topic, cmd, state);
    json_decref(cmd);
}

static void on_publish(struct mosquitto *mosq, void *data, int mid)
{
    (void)mosq;
    (void)mid;
    ((sim_run *)data)->published++;
}

static void on_connect(struct mosquitto *mosq, void *data, int rc)
{
    sim_run *r = data;
    if (rc != 0)
        return;
    int sub = mosquitto_subscribe(mosq, NULL, r->filter, r->o.qos);
    if (sub != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "%s: subscribe %s: %s\n", r->sc->name, r->filter, mosquitto_strerror(sub));
}

/* ---- the run ---- */

/* Lets libmosquitto read, write and answer until the wall clock reaches 'due'. */
static void pump_until(sim_run *r, int64_t due)
{
    for (;;) {
        int64_t wait = due - wall_ms();
        int rc = mosquitto_loop(r->mosq, wait > 0 ? (int)(wait < 100 ? wait : 100) : 0, 1);
        if (rc != MOSQ_ERR_SUCCESS && !stopping) {
            fprintf(stderr, "%s: connection: %s; reconnecting\n", r->sc->name,
                    mosquitto_strerror(rc));
            struct timespec pause = {0, 200000000L};
            nanosleep(&pause, NULL);
            mosquitto_reconnect(r->mosq);
        }
        if (wait <= 0 || stopping)
            return;
    }
}

static void publish_one(sim_run *r, int device, long seq)
{
    sim_message m = {.len = 0};
    r->sc->next(r->devices, device, seq, sim_now(r), &m);
    if (m.len <= 0)
        return;
    int rc = mosquitto_publish(r->mosq, NULL, m.topic, m.len, m.payload, r->o.qos, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "%s: publish: %s\n", r->sc->name, mosquitto_strerror(rc));
        return;
    }
    r->sent++;
    if (m.kind >= 0 && m.kind < SIM_MAX_KINDS)
        r->kinds[m.kind]++;
    if (r->o.count && r->sent >= r->o.count)
        stopping = 1;
}

static void play(sim_run *r)
{
    double interval_ms = 1000.0 / (r->o.rate * r->o.devices); /* one device after another */
    for (long seq = 0; !stopping; seq++) {
        for (int d = 1; d <= r->o.devices && !stopping; d++) {
            publish_one(r, d, seq);
            pump_until(r, r->start + (int64_t)((double)(seq * r->o.devices + d) * interval_ms));
        }
    }
    /* With --count, every message (and answer) leaves before the DISCONNECT (up to 10 s). */
    int64_t give_up = wall_ms() + 10000;
    while (r->o.count && r->o.qos > 0 && r->published < r->sent + r->answered &&
           wall_ms() < give_up)
        mosquitto_loop(r->mosq, 50, 1);
}

static void print_summary(const sim_run *r)
{
    printf("{\"published\":%ld,\"commands\":%ld,\"answered\":%ld,\"kinds\":{", r->sent, r->commands,
           r->answered);
    for (int k = 0; k < r->sc->kinds && k < SIM_MAX_KINDS; k++)
        printf("%s\"%s\":%ld", k ? "," : "", r->sc->kind_names[k], r->kinds[k]);
    printf("}}\n");
    fflush(stdout);
}

int sim_main(int argc, char **argv, const sim_scenario *sc)
{
    sim_run r = {.sc = sc};
    if (parse_opts(argc, argv, sc->name, &r.o) != 0)
        return 2;
    r.start = wall_ms();
    rng_state ^= r.o.seed ? r.o.seed : (uint64_t)r.start;
    snprintf(r.filter, sizeof(r.filter), "%s/+/actuator/+/set", sc->app);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    r.devices = sc->create(&r.o);
    if (!r.devices) {
        fprintf(stderr, "%s: out of memory\n", sc->name);
        return 1;
    }
    mosquitto_lib_init();
    r.mosq = mosquitto_new(NULL, true, &r);
    if (r.mosq) {
        mosquitto_connect_callback_set(r.mosq, on_connect);
        mosquitto_message_callback_set(r.mosq, on_message);
        mosquitto_publish_callback_set(r.mosq, on_publish);
    }
    int status = 0;
    if (!r.mosq || mosquitto_connect(r.mosq, r.o.host, r.o.port, 30) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "%s: cannot connect to %s:%d\n", sc->name, r.o.host, r.o.port);
        status = 1;
    } else {
        fprintf(stderr,
                "%s: %d device(s), %.2f message(s)/s each, QoS %d, time x%g, to %s:%d; "
                "answering commands on %s\n",
                sc->name, r.o.devices, r.o.rate, r.o.qos, r.o.time_scale, r.o.host, r.o.port,
                r.filter);
        play(&r);
        print_summary(&r);
        mosquitto_disconnect(r.mosq);
        mosquitto_loop(r.mosq, 100, 1);
    }
    mosquitto_destroy(r.mosq);
    mosquitto_lib_cleanup();
    sc->destroy(r.devices);
    return status;
}
