/* event_store_mqtt_test.c: acks follow commits, end to end. A real mosquitto holds a
 * persistent session for eddy; a publisher sends readings at QoS 1, each with its own id;
 * eddy (a child process running `mqtt in -> event-store` on the real loop, as `eddy run`
 * does) is SIGKILLed at random moments and started again, 20 times, while the readings
 * flow. The broker forgets a reading only when eddy has acknowledged it, and eddy
 * acknowledges only after the commit; so at the end every reading the publisher got
 * through must be in the store, exactly once (redelivered ones are stored once thanks to
 * their ids), and the store must open and verify cleanly after each kill. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "log.h"
#include "store.h"
#include "test_broker.h"

#define READINGS 4000
#define KILLS    20

static test_broker broker;
static atomic_int published; /* readings the broker has acknowledged to the publisher */
static atomic_int publish_failed;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char flow_tmpl[] =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\","
    "\"clientid\":\"eddy-store-crash\",\"cleansession\":false},"
    "{\"id\":\"in\",\"type\":\"mqtt in\",\"topic\":\"dev/#\",\"qos\":\"1\","
    "\"datatype\":\"json\",\"broker\":\"b\",\"wires\":[[\"s\"]]},"
    "{\"id\":\"s\",\"type\":\"event-store\",\"stream\":\"topic\",\"eventType\":\"reading\","
    "\"eventId\":\"payload.id\",\"wires\":[[],[]]}]";

/* The eddy process: runs the flow until it is killed. */
static void run_eddy(const char *dir)
{
    eddy_log_set_level(EDDY_LOG_ERROR);
    eddy_err err;
    eddy_store *st = eddy_store_open(dir, NULL, &err);
    if (!st) {
        fprintf(stderr, "eddy child: %s\n", err.msg);
        _exit(2);
    }
    char flow[1024];
    snprintf(flow, sizeof(flow), flow_tmpl, broker.port);
    eddy_harness_opts opts = {.real_clock = true, .store = st};
    eddy_problems problems = {0};
    eddy_harness *h = eddy_harness_new(flow, &opts, &problems);
    if (!h) {
        eddy_problems_print(&problems, stderr);
        _exit(3);
    }
    eddy_loop_run(eddy_harness_loop(h));
    _exit(0);
}

static pid_t start_eddy(const char *dir)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0)
        run_eddy(dir);
    return pid;
}

static void kill_eddy(pid_t pid)
{
    kill(pid, SIGKILL);
    int ws;
    waitpid(pid, &ws, 0);
    if (!WIFSIGNALED(ws))
        CHECK_FAIL_("eddy ended on its own (status %d)", ws);
}

/* The publisher: every reading at QoS 1, a few at a time, while eddy lives and dies. */
static void *publisher(void *arg)
{
    test_client *pub = arg;
    for (int i = 0; i < READINGS; i++) {
        char payload[96], topic[32];
        int len = snprintf(payload, sizeof(payload), "{\"id\":\"m-%d\",\"t\":%d.5}", i, i % 40);
        snprintf(topic, sizeof(topic), "dev/%d", i % 7);
        if (test_client_publish(pub, topic, payload, (size_t)len, 1, false) != 0) {
            atomic_store(&publish_failed, 1);
            break;
        }
        atomic_store(&published, i + 1);
        if (i % 10 == 9)
            sleep_ms(5); /* spread the readings over the kills */
    }
    return NULL;
}

/* Opens the store (which must open and verify cleanly) and counts the readings in it;
 * fails on a reading stored twice. Returns how many distinct readings are stored. */
static long check_store(const char *dir, unsigned char *seen)
{
    eddy_err err;
    eddy_store_opts ro = {.read_only = true};
    eddy_store *st = eddy_store_open(dir, &ro, &err);
    if (!st)
        CHECK_FAIL_("the store does not open: %s", err.msg);
    if (eddy_store_verify(st, NULL, NULL, &err) != EDDY_OK)
        CHECK_FAIL_("the store does not verify: %s", err.msg);
    memset(seen, 0, READINGS);
    eddy_store_query q = {0};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    CHECK(it);
    eddy_store_record rec;
    long n = 0;
    while (eddy_store_iter_next(it, &rec, &err) == 1) {
        long i = strtol(rec.id + 2, NULL, 10);
        CHECK(strncmp(rec.id, "m-", 2) == 0 && i >= 0 && i < READINGS);
        if (seen[i])
            CHECK_FAIL_("reading %s is stored twice", rec.id);
        seen[i] = 1;
        n++;
    }
    eddy_store_iter_close(it);
    eddy_store_close(st);
    return n;
}

static void test_no_acknowledged_reading_is_lost(void)
{
    char *dir = eddy_test_tmpdir();
    CHECK(dir);
    unsigned char *seen = calloc(READINGS, 1);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    printf("seed %u\n", seed);
    /* The first run makes the broker keep eddy's session (and subscription) from now on. */
    pid_t pid = start_eddy(dir);
    sleep_ms(300);
    test_client *pub = test_client_new(broker.port, "publisher", false);
    CHECK(pub);
    pthread_t thread;
    CHECK_INT_EQ(pthread_create(&thread, NULL, publisher, pub), 0);
    for (int k = 0; k < KILLS; k++) {
        long delay = 30 + (long)(rand_r(&seed) % 150);
        sleep_ms(delay); /* eddy is taking readings in while the publisher sends */
        kill_eddy(pid);
        long stored = check_store(dir, seen);
        printf("kill %2d after %3ld ms: %d published, %ld stored\n", k + 1, delay,
               atomic_load(&published), stored);
        pid = start_eddy(dir);
    }
    pthread_join(thread, NULL);
    CHECK(!atomic_load(&publish_failed));
    CHECK_INT_EQ(atomic_load(&published), READINGS);
    /* Let the last eddy take in what the broker still holds. */
    long stored = 0;
    for (int i = 0; i < 200 && stored < READINGS; i++) {
        sleep_ms(100);
        stored = check_store(dir, seen);
    }
    kill_eddy(pid);
    stored = check_store(dir, seen);
    for (int i = 0; i < READINGS; i++)
        if (!seen[i])
            CHECK_FAIL_("reading m-%d was acknowledged by the broker but is not stored", i);
    CHECK_INT_EQ(stored, READINGS);
    test_client_free(pub);
    free(seen);
    eddy_test_rmdir(dir);
}

static const check_test tests[] = {
    {"no_acknowledged_reading_is_lost", test_no_acknowledged_reading_is_lost}, {NULL, NULL}};

int main(int argc, char **argv)
{
    if (test_broker_start(&broker, NULL) != 0)
        return 1;
    int rc = check_main(tests, argc, argv);
    test_broker_stop(&broker, SIGTERM);
    return rc;
}
