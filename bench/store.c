/* store.c: the event store's throughput, side by side with bare LMDB doing the same writes.
 *
 * Appends: EVENTS events of about 200 bytes of JSON each, spread over 100 streams, one
 * append call per event (as the event-store node makes them), committed every BATCH events
 * (1, 10, 100, 1000), for each fsync policy (always, interval at 1000 ms, never). The floor
 * is a bare LMDB program in the same run writing the same four entries per event (record,
 * id, stream+version, stream+time) with the same environment flags, and nothing else: no
 * idempotency or version checks, no JSON validation. A second floor writes the record only.
 *
 * Replay: a raw scan of the store (iterator, every record decoded) and the event-replay
 * node emitting every event into a flow that ends in a counting sink, on one core.
 *
 * Usage: bench_store [EVENTS] [DIR] [replay]   (default 200000 events; DIR default $TMPDIR
 * or /tmp, on a real disk for the fsync figures to mean anything; "replay": only fill a
 * store and replay it; "replay-store": DIR is a store, replay it; "eddy:POLICY:BATCH" or
 * "bare:POLICY:BATCH": that one append configuration). */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "mem.h"
#include "registry.h"
#include "store.h"

#define STREAMS 100

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_store: %s: %s\n", what, why);
    exit(1);
}

static void rm_store(const char dir[1024])
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/events.mdb", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/events.mdb-lock", dir);
    unlink(path);
    rmdir(dir);
}

/* The body of event 'i': about 200 bytes of JSON. */
static int make_body(char *buf, size_t size, long i)
{
    return snprintf(buf, size,
                    "{\"device\":\"dev-%03ld\",\"seq\":%ld,\"temperature\":%.2f,\"humidity\":%.1f,"
                    "\"battery\":%d,\"firmware\":\"1.4.2\",\"site\":\"glasshouse-north\","
                    "\"tags\":[\"zone-a\",\"row-%ld\"],\"ok\":true,\"note\":\"%016lx\"}",
                    i % STREAMS, i, 18.0 + (double)(i % 100) / 10.0, 40.0 + (double)(i % 50),
                    (int)(100 - i % 100), i % 12, (unsigned long)i * 2654435761u);
}

/* The events, made before any clock starts: body, id and stream of each. */
typedef struct input {
    char body[256];
    char id[24];
    char stream[16];
    int len, ilen, slen;
} input;

static input *inputs;

static void make_inputs(long n)
{
    inputs = calloc((size_t)n, sizeof(*inputs));
    if (!inputs)
        die("inputs", "out of memory");
    for (long i = 0; i < n; i++) {
        inputs[i].len = make_body(inputs[i].body, sizeof(inputs[i].body), i);
        inputs[i].ilen = snprintf(inputs[i].id, sizeof(inputs[i].id), "evt-%ld", i);
        inputs[i].slen =
            snprintf(inputs[i].stream, sizeof(inputs[i].stream), "dev-%03ld", i % STREAMS);
    }
}

/* ---- eddy ---- */

static double eddy_appends(const char *dir, const char *policy, long n, long batch)
{
    eddy_err err;
    eddy_store_opts opts = {0};
    eddy_store_sync_parse(policy, &opts, &err);
    eddy_store *st = eddy_store_open(dir, &opts, &err);
    if (!st)
        die("open", err.msg);
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        const input *in = &inputs[i];
        eddy_store_event ev = {.type = "reading",
                               .id = in->id,
                               .time = 1704067200000 + i,
                               .data = in->body,
                               .data_len = (size_t)in->len};
        if (eddy_store_append(st, in->stream, EDDY_STORE_ANY, &ev, 1, NULL, &err) != EDDY_OK ||
            ev.outcome != EDDY_STORE_WRITTEN)
            die("append", err.msg);
        if ((i + 1) % batch == 0 && eddy_store_commit(st, &err) != EDDY_OK)
            die("commit", err.msg);
    }
    eddy_store_commit(st, &err);
    double t = now_s() - t0;
    eddy_store_close(st);
    return (double)n / t;
}

/* ---- bare LMDB: the same four entries per event (or the record only) ---- */

static void be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

#define CHECK_MDB(call)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_)                                                                                   \
            die(#call, mdb_strerror(rc_));                                                         \
    } while (0)

static double bare_appends(const char dir[1024], const char *policy, long n, long batch,
                           bool record_only)
{
    char path[1100];
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/events.mdb", dir);
    MDB_env *env;
    CHECK_MDB(mdb_env_create(&env));
    mdb_env_set_maxdbs(env, 8);
    mdb_env_set_mapsize(env, (size_t)16 << 30);
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
    bool interval = strncmp(policy, "interval", 8) == 0;
    if (strcmp(policy, "always") != 0)
        flags |= MDB_NOSYNC;
    CHECK_MDB(mdb_env_open(env, path, flags, 0644));
    MDB_txn *txn;
    MDB_dbi events, ids, streams, times;
    CHECK_MDB(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK_MDB(mdb_dbi_open(txn, "events", MDB_CREATE, &events));
    CHECK_MDB(mdb_dbi_open(txn, "ids", MDB_CREATE, &ids));
    CHECK_MDB(mdb_dbi_open(txn, "streams", MDB_CREATE, &streams));
    CHECK_MDB(mdb_dbi_open(txn, "times", MDB_CREATE, &times));
    CHECK_MDB(mdb_txn_commit(txn));
    unsigned char rec[512], pk[8], kb[64];
    int64_t version[STREAMS] = {0};
    double t0 = now_s(), last_sync = t0;
    CHECK_MDB(mdb_txn_begin(env, NULL, 0, &txn));
    for (long i = 0; i < n; i++) {
        const input *in = &inputs[i];
        const char *body = in->body, *id = in->id, *stream = in->stream;
        int len = in->len, ilen = in->ilen, slen = in->slen;
        /* a record as eddy lays it out: header, then the strings and the body */
        size_t rlen = 36 + (size_t)slen + 1 + 8 + (size_t)ilen + 1 + (size_t)len + 1;
        memset(rec, 0, 36);
        rec[0] = 1;
        memcpy(rec + 36, stream, (size_t)slen + 1);
        memcpy(rec + 36 + slen + 1, "reading", 8);
        memcpy(rec + 36 + slen + 9, id, (size_t)ilen + 1);
        memcpy(rec + 36 + slen + 9 + ilen + 1, body, (size_t)len + 1);
        be64(pk, (uint64_t)i + 1);
        MDB_val k = {8, pk}, v = {rlen, rec};
        CHECK_MDB(mdb_put(txn, events, &k, &v, MDB_APPEND));
        if (!record_only) {
            k = (MDB_val){(size_t)ilen, (void *)id};
            v = (MDB_val){8, pk};
            CHECK_MDB(mdb_put(txn, ids, &k, &v, MDB_NOOVERWRITE));
            memcpy(kb, stream, (size_t)slen + 1);
            be64(kb + slen + 1, (uint64_t)version[i % STREAMS]++);
            k = (MDB_val){(size_t)slen + 9, kb};
            CHECK_MDB(mdb_put(txn, streams, &k, &v, MDB_NOOVERWRITE));
            be64(kb + slen + 1, (uint64_t)(1704067200000 + i) ^ 0x8000000000000000u);
            be64(kb + slen + 9, (uint64_t)i + 1);
            k = (MDB_val){(size_t)slen + 17, kb};
            v = (MDB_val){0, pk};
            CHECK_MDB(mdb_put(txn, times, &k, &v, 0));
        }
        if ((i + 1) % batch == 0) {
            CHECK_MDB(mdb_txn_commit(txn));
            if (interval && now_s() - last_sync >= 1.0) {
                mdb_env_sync(env, 1);
                last_sync = now_s();
            }
            CHECK_MDB(mdb_txn_begin(env, NULL, 0, &txn));
        }
    }
    CHECK_MDB(mdb_txn_commit(txn));
    double t = now_s() - t0;
    mdb_env_sync(env, 1);
    mdb_env_close(env);
    return (double)n / t;
}

/* ---- replay ---- */

static double raw_scan(const char *dir, long *count)
{
    eddy_err err;
    eddy_store_opts ro = {.read_only = true};
    eddy_store *st = eddy_store_open(dir, &ro, &err);
    if (!st)
        die("open", err.msg);
    eddy_store_query q = {0};
    double t0 = now_s();
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    size_t bytes = 0;
    *count = 0;
    while (eddy_store_iter_next(it, &rec, &err) == 1) {
        bytes += rec.data_len;
        (*count)++;
    }
    double t = now_s() - t0;
    eddy_store_iter_close(it);
    eddy_store_close(st);
    if (!bytes)
        die("scan", "read nothing");
    return (double)*count / t;
}

static long sunk;
static void sink_input(eddy_node *node, void *state, json_t *msg)
{
    sunk++;
    json_decref(msg);
}
static const eddy_node_type sink_type = {
    .name = "bench sink", .inputs = 1, .outputs = 0, .input = sink_input};

static double flow_replay(const char *dir, double *cpu_rate)
{
    eddy_err err;
    eddy_store *st = eddy_store_open(dir, NULL, &err);
    if (!st)
        die("open", err.msg);
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, &err);
    eddy_registry *reg = eddy_registry_new(&err);
    eddy_registry_add_builtin(reg, &err);
    eddy_registry_add(reg, &sink_type, &err);
    eddy_store_attach(st, loop, &err);
    eddy_engine_opts opts = {.store = st};
    eddy_engine *engine = eddy_engine_new(loop, reg, &opts, &err);
    static const char flow_text[] =
        "[{\"id\":\"t\",\"type\":\"tab\"},"
        "{\"id\":\"r\",\"type\":\"event-replay\",\"z\":\"t\",\"wires\":[[\"k\"],[]]},"
        "{\"id\":\"k\",\"type\":\"bench sink\",\"z\":\"t\"}]";
    eddy_problems problems = {0};
    eddy_flow *flow = eddy_flow_load(flow_text, strlen(flow_text), "replay", reg, &problems);
    if (!flow || eddy_engine_start(engine, flow, &problems) != EDDY_OK) {
        eddy_problems_print(&problems, stderr);
        exit(1);
    }
    sunk = 0;
    double t0 = now_s(), c0 = cpu_s();
    eddy_engine_inject(engine, eddy_engine_find(engine, "r"), eddy_msg_new());
    eddy_loop_settle(loop);
    double t = now_s() - t0, c = cpu_s() - c0;
    eddy_engine_stop(engine);
    eddy_engine_free(engine);
    eddy_store_detach(st);
    eddy_store_close(st);
    eddy_loop_free(loop);
    eddy_registry_free(reg);
    *cpu_rate = (double)sunk / c;
    return (double)sunk / t;
}

int main(int argc, char **argv)
{
    long total = argc > 1 ? atol(argv[1]) : 200000;
    const char *base = argc > 2 ? argv[2] : getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    eddy_mem_install();
    eddy_log_set_level(EDDY_LOG_WARN);
    make_inputs(total > 0 ? total : 1);
    char dir[1024];
    if (snprintf(dir, sizeof(dir), "%s/eddy-bench-store-%d", base, (int)getpid()) >= 1000)
        die(base, "folder name too long");

    bool replay_only = argc > 3 && strcmp(argv[3], "replay") == 0;
    if (argc > 3 && (strncmp(argv[3], "eddy:", 5) == 0 || strncmp(argv[3], "bare:", 5) == 0)) {
        /* one configuration, e.g. eddy:never:1000 (profiling) */
        char policy[32];
        long batch = 1;
        if (sscanf(argv[3] + 5, "%31[^:]:%ld", policy, &batch) != 2 || batch < 1)
            die(argv[3], "expected eddy:POLICY:BATCH or bare:POLICY:BATCH");
        rm_store(dir);
        double r = argv[3][0] == 'e' ? eddy_appends(dir, policy, total, batch)
                                     : bare_appends(dir, policy, total, batch, false);
        printf("%s: %.0f ev/s\n", argv[3], r);
        rm_store(dir);
        return 0;
    }
    if (argc > 3 && strcmp(argv[3], "replay-store") == 0) {
        /* DIR is a store already: replay it only (profiling) */
        long count;
        double cpu_rate, scan = raw_scan(argv[2], &count);
        double flow = flow_replay(argv[2], &cpu_rate);
        printf("replay of %ld events: raw scan %.0f ev/s; event-replay -> sink %.0f ev/s "
               "(%.0f per CPU second)\n",
               count, scan, flow, cpu_rate);
        return 0;
    }
    static const char *const policies[] = {"always", "interval", "never"};
    static const long batches[] = {1, 10, 100, 1000};
    char body[256];
    printf("appends: %ld events of %d bytes, 100 streams, one append per event\n", total,
           make_body(body, sizeof(body), 12345));
    printf("%-9s %6s %9s %12s %12s %6s %12s\n", "policy", "batch", "events", "eddy ev/s",
           "bare ev/s", "ratio", "bare 1 put");
    if (replay_only) {
        rm_store(dir);
        eddy_appends(dir, "never", total, 1000);
    }
    for (size_t p = 0; p < 3 && !replay_only; p++) {
        for (size_t b = 0; b < 4; b++) {
            long batch = batches[b];
            /* durable commits cost a fsync each: bound their number */
            long n = p == 0 && total > batch * 2000 ? batch * 2000 : total;
            rm_store(dir);
            double bare = bare_appends(dir, policies[p], n, batch, false);
            rm_store(dir);
            double bare1 = bare_appends(dir, policies[p], n, batch, true);
            rm_store(dir);
            double eddy = eddy_appends(dir, policies[p], n, batch);
            printf("%-9s %6ld %9ld %12.0f %12.0f %6.2f %12.0f\n", policies[p], batch, n, eddy, bare,
                   eddy / bare, bare1);
            fflush(stdout);
        }
    }
    /* the last store (never, batch 1000) has 'total' events: replay it */
    long count;
    double scan = raw_scan(dir, &count);
    double cpu_rate;
    double flow = flow_replay(dir, &cpu_rate);
    printf("replay of %ld events: raw scan %.0f ev/s; event-replay -> sink %.0f ev/s "
           "(%.0f per CPU second)\n",
           count, scan, flow, cpu_rate);
    rm_store(dir);
    return 0;
}
