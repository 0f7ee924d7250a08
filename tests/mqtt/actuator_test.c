/* actuator_test.c: the actuator node against a real mosquitto on 127.0.0.1 and a simulated
 * device (a test client that answers commands on the state topic): acknowledgement with
 * latency, retries then timeout, skipUnchanged, and the command events in a real store. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "harness.h"
#include "loop.h"
#include "store.h"
#include "test_broker.h"

static test_broker broker;
static json_t *got; /* helper id -> messages */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void collect(eddy_harness *h)
{
    static const char *helpers[] = {"ok", "late", NULL};
    for (int i = 0; helpers[i]; i++) {
        json_t *msgs = eddy_harness_take(h, helpers[i]);
        json_t *list = json_object_get(got, helpers[i]);
        if (!list)
            json_object_set_new(got, helpers[i], list = json_array());
        json_array_extend(list, msgs);
        json_decref(msgs);
    }
    json_decref(eddy_harness_take_events(h));
}

static size_t count(const char *helper)
{
    return json_array_size(json_object_get(got, helper));
}

/* The simulated device: answers each command it has received (once) unless 'mute'. */
typedef struct device {
    test_client *c;
    bool mute;
    size_t commands; /* commands received */
} device;

static void device_step(device *d)
{
    json_t *msgs = test_client_take(d->c, true);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        d->commands++;
        if (d->mute)
            continue;
        json_t *cmd = json_loads(json_string_value(json_object_get(m, "payload")), 0, NULL);
        char topic[256];
        snprintf(topic, sizeof(topic), "gh/%s/actuator/%s/state",
                 json_string_value(json_object_get(cmd, "deviceId")),
                 json_string_value(json_object_get(cmd, "actuatorId")));
        json_t *reply =
            json_pack("{s:O,s:O}", "correlationId", json_object_get(cmd, "correlationId"), "state",
                      json_object_get(cmd, "value"));
        char *text = json_dumps(reply, JSON_COMPACT);
        test_client_publish(d->c, topic, text, strlen(text), 1, false);
        eddy_free(text);
        json_decref(reply);
        json_decref(cmd);
    }
    json_decref(msgs);
}

/* Runs eddy's loop and the device for up to 'ms' or until 'helper' has 'n' messages. */
static bool pump(eddy_harness *h, device *d, int ms, const char *helper, size_t n)
{
    int64_t until = now_ms() + ms;
    while (now_ms() < until) {
        eddy_loop_run_once(eddy_harness_loop(h));
        collect(h);
        if (d)
            device_step(d);
        if (helper && count(helper) >= n)
            return true;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    return helper == NULL;
}

static char flow[4096];

static eddy_harness *start(eddy_store *st, const char *extra)
{
    snprintf(flow, sizeof(flow),
             "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\"},"
             "{\"id\":\"a1\",\"type\":\"actuator\",\"broker\":\"b\",\"topic\":"
             "\"gh/{deviceId}/actuator/{actuatorId}/set\",\"stateTopic\":"
             "\"gh/{deviceId}/actuator/{actuatorId}/state\"%s,\"wires\":[[\"ok\"],[\"late\"]]},"
             "{\"id\":\"ok\",\"type\":\"helper\"},{\"id\":\"late\",\"type\":\"helper\"}]",
             broker.port, extra);
    eddy_problems problems = {0};
    eddy_harness_opts opts = {.real_clock = true, .store = st};
    eddy_harness *h = eddy_harness_new(flow, &opts, &problems);
    if (!h)
        eddy_problems_print(&problems, stderr);
    eddy_problems_clear(&problems);
    pump(h, NULL, 300, NULL, 0); /* connect and subscribe */
    return h;
}

static json_t *command(const char *dev, const char *act, const char *value)
{
    return json_pack("{s:{s:s,s:s,s:s}}", "payload", "deviceId", dev, "actuatorId", act, "value",
                     value);
}

/* Types of the events in stream 'stream', in order, as "A,B,C". */
static void stream_types(eddy_store *st, const char *stream, char *out, size_t cap)
{
    eddy_store_query q = {.stream = stream};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, NULL);
    eddy_store_record rec;
    out[0] = '\0';
    while (it && eddy_store_iter_next(it, &rec, NULL) == 1)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", *out ? "," : "", rec.type);
    eddy_store_iter_close(it);
}

static void test_acknowledged(void)
{
    json_decref(got);
    got = json_object();
    char *dir = eddy_test_tmpdir();
    eddy_store *st = eddy_store_open(dir, NULL, NULL);
    CHECK(st);
    device d = {.c = test_client_new(broker.port, "device-ack", false)};
    CHECK(d.c);
    CHECK_INT_EQ(test_client_subscribe(d.c, "gh/+/actuator/+/set", 1), 0);
    eddy_harness *h = start(st, "");
    CHECK(h);
    CHECK_INT_EQ(eddy_harness_send(h, "a1", command("gh-1", "vent", "open")), 0);
    CHECK(pump(h, &d, 5000, "ok", 1));
    json_t *p = json_object_get(json_array_get(json_object_get(got, "ok"), 0), "payload");
    CHECK_STR_EQ(json_string_value(json_object_get(p, "value")), "open");
    CHECK_INT_EQ(json_integer_value(json_object_get(p, "tries")), 1);
    CHECK(json_is_integer(json_object_get(p, "latencyMs")));
    CHECK(json_integer_value(json_object_get(p, "latencyMs")) >= 0);
    CHECK_INT_EQ(strlen(json_string_value(json_object_get(p, "correlationId"))), 36);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(p, "reply"), "state")), "open");
    CHECK_INT_EQ(count("late"), 0);
    CHECK_INT_EQ(d.commands, 1);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
    char types[256];
    stream_types(st, "actuator-gh-1", types, sizeof(types));
    CHECK_STR_EQ(types, "ActuatorCommand,ActuatorAcknowledged");
    test_client_free(d.c);
    eddy_store_close(st);
    eddy_test_rmdir(dir);
}

static void test_retry_then_timeout(void)
{
    json_decref(got);
    got = json_object();
    char *dir = eddy_test_tmpdir();
    eddy_store *st = eddy_store_open(dir, NULL, NULL);
    CHECK(st);
    device d = {.c = test_client_new(broker.port, "device-mute", false), .mute = true};
    CHECK(d.c);
    CHECK_INT_EQ(test_client_subscribe(d.c, "gh/+/actuator/+/set", 1), 0);
    eddy_harness *h = start(st, ",\"timeoutMs\":200,\"retries\":2");
    CHECK(h);
    CHECK_INT_EQ(eddy_harness_send(h, "a1", command("gh-2", "heater", "on")), 0);
    CHECK(pump(h, &d, 5000, "late", 1));
    pump(h, &d, 200, NULL, 0);
    CHECK_INT_EQ(d.commands, 3); /* the first try and two retries, same correlation id */
    json_t *p = json_object_get(json_array_get(json_object_get(got, "late"), 0), "payload");
    CHECK(json_is_true(json_object_get(p, "timedOut")));
    CHECK_INT_EQ(json_integer_value(json_object_get(p, "tries")), 3);
    CHECK_INT_EQ(count("ok"), 0);
    char types[256];
    stream_types(st, "actuator-gh-2", types, sizeof(types));
    CHECK_STR_EQ(types, "ActuatorCommand,ActuatorTimedOut");
    /* a device that answers on the second try: acknowledged with tries 2 */
    d.mute = true;
    d.commands = 0;
    CHECK_INT_EQ(eddy_harness_send(h, "a1", command("gh-2", "heater", "off")), 0);
    int64_t until = now_ms() + 5000;
    while (d.commands < 1 && now_ms() < until)
        pump(h, &d, 10, NULL, 0);
    d.mute = false; /* answers the retry */
    CHECK(pump(h, &d, 5000, "ok", 1));
    p = json_object_get(json_array_get(json_object_get(got, "ok"), 0), "payload");
    CHECK_INT_EQ(json_integer_value(json_object_get(p, "tries")), 2);
    CHECK(json_integer_value(json_object_get(p, "latencyMs")) >= 200);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
    test_client_free(d.c);
    eddy_store_close(st);
    eddy_test_rmdir(dir);
}

static void test_skip_unchanged_and_restart(void)
{
    json_decref(got);
    got = json_object();
    char *dir = eddy_test_tmpdir();
    eddy_store *st = eddy_store_open(dir, NULL, NULL);
    CHECK(st);
    device d = {.c = test_client_new(broker.port, "device-skip", false)};
    CHECK(d.c);
    CHECK_INT_EQ(test_client_subscribe(d.c, "gh/+/actuator/+/set", 1), 0);
    eddy_harness *h = start(st, ",\"skipUnchanged\":true");
    CHECK(h);
    CHECK_INT_EQ(eddy_harness_send(h, "a1", command("gh-3", "vent", "open")), 0);
    CHECK(pump(h, &d, 5000, "ok", 1));
    CHECK_INT_EQ(eddy_harness_send(h, "a1", command("gh-3", "vent", "open")), 0);
    CHECK(pump(h, &d, 5000, "ok", 2));
    json_t *m = json_array_get(json_object_get(got, "ok"), 1);
    CHECK(json_is_true(json_object_get(m, "skipped")));
    CHECK_INT_EQ(d.commands, 1); /* the second was not sent */
    CHECK_INT_EQ(eddy_harness_free(h), 0);

    /* the acknowledged state survives a restart; a pending command too */
    d.mute = true;
    h = start(st, ",\"skipUnchanged\":true,\"timeoutMs\":300,\"retries\":1");
    CHECK(h);
    CHECK_INT_EQ(eddy_harness_send(h, "a1", command("gh-3", "vent", "open")), 0);
    CHECK(pump(h, &d, 3000, "ok", 3));
    CHECK(json_is_true(json_object_get(json_array_get(json_object_get(got, "ok"), 2), "skipped")));
    CHECK_INT_EQ(eddy_harness_send(h, "a1", command("gh-3", "vent", "closed")), 0);
    int64_t until = now_ms() + 5000;
    while (d.commands < 2 && now_ms() < until)
        pump(h, &d, 10, NULL, 0);
    CHECK_INT_EQ(d.commands, 2);
    CHECK_INT_EQ(eddy_harness_free(h), 0); /* stopped with the command pending */
    d.mute = false;
    h = start(st, ",\"skipUnchanged\":true,\"timeoutMs\":300,\"retries\":1");
    CHECK(h);
    CHECK(pump(h, &d, 5000, "ok", 4)); /* resumed: published again, answered */
    json_t *p = json_object_get(json_array_get(json_object_get(got, "ok"), 3), "payload");
    CHECK_STR_EQ(json_string_value(json_object_get(p, "value")), "closed");
    CHECK_INT_EQ(json_integer_value(json_object_get(p, "tries")), 2);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
    test_client_free(d.c);
    eddy_store_close(st);
    eddy_test_rmdir(dir);
}

static const check_test tests[] = {{"acknowledged", test_acknowledged},
                                   {"retry_then_timeout", test_retry_then_timeout},
                                   {"skip_unchanged_and_restart", test_skip_unchanged_and_restart},
                                   {NULL, NULL}};

int main(int argc, char **argv)
{
    if (test_broker_start(&broker, NULL) != 0)
        return 1;
    int rc = check_main(tests, argc, argv);
    test_broker_stop(&broker, SIGTERM);
    json_decref(got);
    return rc;
}
