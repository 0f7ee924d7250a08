/* store_crash_test.c: kill -9 at random moments. A child process appends events with known
 * ids ("id-N") on a real event loop, as eddy does: appends join the group, the store's
 * before-sleep hook commits, and the loop's flush hook (where MQTT writes its acks) writes
 * the acknowledged ids to a file. The parent SIGKILLs it after a random delay, then opens
 * the store and checks that it opens cleanly, that its indexes agree with its log, and that
 * every acknowledged id is stored exactly once. The next child starts a little before the
 * last acknowledged id, so redelivery of acknowledged events is exercised too. Rounds cycle
 * through the three fsync policies: none may lose an acknowledged event when the process
 * (not the machine) dies. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "loop.h"
#include "store.h"

#define ROUNDS  24
#define MAX_IDS 2000000

static const char *const policies[] = {"always", "interval:20", "never"};

/* ---- the child ---- */

typedef struct appender {
    eddy_store *st;
    int ack_fd;
    long next;           /* next id to append */
    unsigned seed;       /* batch sizes */
    char acked[1 << 16]; /* ids committed, waiting for the flush hook */
    size_t acked_len;
} appender;

typedef struct batch {
    appender *a;
    long first, count;
} batch;

static void on_committed(eddy_store *st, int status, const char *error, void *data)
{
    batch *b = data;
    appender *a = b->a;
    if (status == EDDY_OK) {
        for (long i = 0; i < b->count; i++) {
            if (a->acked_len + 32 > sizeof(a->acked))
                break; /* the flush hook writes before this could fill */
            a->acked_len += (size_t)snprintf(
                a->acked + a->acked_len, sizeof(a->acked) - a->acked_len, "%ld\n", b->first + i);
        }
    }
    free(b);
}

/* Acks leave here, as MQTT's do: only when the loop is settled after the commit. */
static void on_flush(eddy_loop *loop, void *data)
{
    appender *a = data;
    if (a->acked_len && write(a->ack_fd, a->acked, a->acked_len) != (ssize_t)a->acked_len)
        _exit(4);
    a->acked_len = 0;
}

static int64_t append_tick(eddy_loop *loop, eddy_timer *t, void *data)
{
    appender *a = data;
    long n = 1 + (long)(rand_r(&a->seed) % 40);
    eddy_store_event ev[40];
    char ids[40][24], body[40][96];
    for (long i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "id-%ld", a->next + i);
        int len = snprintf(body[i], sizeof(body[i]), "{\"n\":%ld,\"pad\":\"%040ld\"}", a->next + i,
                           a->next + i);
        ev[i] = (eddy_store_event){.type = "tick",
                                   .id = ids[i],
                                   .time = EDDY_STORE_TIME_NONE,
                                   .data = body[i],
                                   .data_len = (size_t)len};
    }
    eddy_err err;
    /* ANY: ids stored before (redelivery) come back EXISTING and are acked again. A batch
     * that is stored only in its first part is refused as a whole (as KurrentDB does):
     * then it goes one event at a time. */
    if (eddy_store_append(a->st, "ticks", EDDY_STORE_ANY, ev, (size_t)n, NULL, &err) != EDDY_OK) {
        for (long i = 0; i < n; i++)
            if (eddy_store_append(a->st, "ticks", EDDY_STORE_ANY, &ev[i], 1, NULL, &err) != EDDY_OK)
                _exit(5);
    }
    batch *b = malloc(sizeof(*b));
    if (!b)
        _exit(6);
    *b = (batch){a, a->next, n};
    if (eddy_store_when_committed(a->st, on_committed, b, &err) != EDDY_OK)
        _exit(7);
    a->next += n;
    return a->next >= MAX_IDS ? EDDY_TIMER_STOP : 0;
}

static void child(const char *dir, const char *ack_path, long start, const char *policy,
                  unsigned seed)
{
    eddy_err err;
    eddy_store_opts opts = {0};
    if (eddy_store_sync_parse(policy, &opts, &err) != EDDY_OK)
        _exit(2);
    eddy_store *st = eddy_store_open(dir, &opts, &err);
    if (!st) {
        fprintf(stderr, "child: %s\n", err.msg);
        _exit(2);
    }
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_REAL, &err);
    static appender a;
    a = (appender){.st = st, .next = start, .seed = seed};
    a.ack_fd = open(ack_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (!loop || a.ack_fd < 0 || eddy_store_attach(st, loop, &err) != EDDY_OK ||
        eddy_loop_add_flush(loop, on_flush, &a) != EDDY_OK ||
        !eddy_timer_start(loop, 0, append_tick, &a, NULL))
        _exit(3);
    eddy_loop_run(loop); /* until killed */
    _exit(0);
}

/* ---- the parent ---- */

/* Reads the ack file: marks acked[n] for each complete line. Returns the highest id. */
static long read_acks(const char *path, unsigned char *acked)
{
    FILE *f = fopen(path, "r");
    long max = -1;
    if (!f)
        return max;
    char line[64];
    while (fgets(line, sizeof(line), f)) {
        if (!strchr(line, '\n'))
            break; /* a line cut by the kill: not an ack the parent may count on */
        long n = strtol(line, NULL, 10);
        if (n >= 0 && n < MAX_IDS) {
            acked[n] = 1;
            if (n > max)
                max = n;
        }
    }
    fclose(f);
    return max;
}

static void test_sigkill_loses_no_acknowledged_append(void)
{
    char *dir = eddy_test_tmpdir();
    CHECK(dir);
    char ack_path[1024];
    snprintf(ack_path, sizeof(ack_path), "%s/acks", dir);
    unsigned char *acked = calloc(MAX_IDS, 1);
    unsigned char *seen = calloc(MAX_IDS, 1);
    CHECK(acked && seen);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    printf("seed %u\n", seed);
    long start = 0, total_acked = 0;
    for (int round = 0; round < ROUNDS; round++) {
        const char *policy = policies[round % 3];
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            child(dir, ack_path, start, policy, seed + (unsigned)round);
        struct timespec ts = {0, (long)(5 + rand_r(&seed) % 60) * 1000000L};
        nanosleep(&ts, NULL);
        CHECK_INT_EQ(kill(pid, SIGKILL), 0);
        int ws;
        CHECK_INT_EQ(waitpid(pid, &ws, 0), pid);
        if (!WIFSIGNALED(ws) || WTERMSIG(ws) != SIGKILL)
            CHECK_FAIL_("round %d: the appender ended on its own (status %d)", round, ws);

        /* the store opens cleanly and its indexes agree with its log */
        eddy_err err;
        eddy_err_clear(&err);
        eddy_store *st = eddy_store_open(dir, NULL, &err);
        if (!st)
            CHECK_FAIL_("round %d (%s): reopening failed: %s", round, policy, err.msg);
        if (eddy_store_verify(st, NULL, NULL, &err) != EDDY_OK)
            CHECK_FAIL_("round %d (%s): %s", round, policy, err.msg);

        /* every acknowledged id is there exactly once */
        memset(seen, 0, MAX_IDS);
        eddy_store_query q = {0};
        eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
        CHECK(it);
        eddy_store_record rec;
        long stored = 0;
        while (eddy_store_iter_next(it, &rec, &err) == 1) {
            long n = strtol(rec.id + 3, NULL, 10);
            CHECK(n >= 0 && n < MAX_IDS);
            if (seen[n])
                CHECK_FAIL_("round %d: id-%ld is stored twice", round, n);
            seen[n] = 1;
            stored++;
        }
        eddy_store_iter_close(it);
        long max = read_acks(ack_path, acked);
        long n_acked = 0;
        for (long n = 0; n <= max; n++) {
            if (acked[n] && !seen[n])
                CHECK_FAIL_("round %d (%s): acknowledged id-%ld is missing", round, policy, n);
            n_acked += acked[n];
        }
        total_acked = n_acked;
        eddy_store_close(st);
        printf("round %2d %-11s stored %ld, acknowledged %ld\n", round, policy, stored, n_acked);
        /* the next appender redelivers the last few acknowledged ids, then goes on */
        start = max >= 20 ? max - 20 : 0;
    }
    CHECK(total_acked > 100); /* the appender got somewhere between kills */
    free(acked);
    free(seen);
    eddy_test_rmdir(dir);
}

static const check_test tests[] = {
    {"sigkill_loses_no_acknowledged_append", test_sigkill_loses_no_acknowledged_append},
    {NULL, NULL}};

CHECK_MAIN(tests)
