/* store_test.c: the event store on real LMDB files in a fresh folder per test. Append
 * semantics as a table of KurrentDB's client test sequences (and eddy's deliberate
 * differences), replay order, time ranges, dead letters, group commit with waiters and
 * loop holds, checkpoints, reopening, damaged files and the NDJSON round trip. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "store.h"

#define CHECK_OK(call)                                                                             \
    do {                                                                                           \
        eddy_err e_;                                                                               \
        eddy_err_clear(&e_);                                                                       \
        int rc_ = (call);                                                                          \
        if (rc_ != EDDY_OK)                                                                        \
            CHECK_FAIL_("%s: %s (%s)", #call, eddy_err_name(rc_), e_.msg);                         \
    } while (0)

static char *dir;
static eddy_store *st;

static eddy_store *open_store(const eddy_store_opts *opts)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_store *s = eddy_store_open(dir, opts, &err);
    if (!s)
        CHECK_FAIL_("eddy_store_open: %s", err.msg);
    return s;
}

static void setup(void)
{
    dir = eddy_test_tmpdir();
    CHECK(dir);
    st = open_store(NULL);
}

static void teardown(void)
{
    eddy_store_close(st);
    st = NULL;
    eddy_test_rmdir(dir);
    dir = NULL;
}

/* Appends one event per id in the comma-separated 'ids' ("-" = a generated id) to
 * 'stream' as one batch. Returns the call's code; outcomes in 'ev'. */
static int append_ids(const char *stream, const char *ids, int64_t expected, eddy_store_event *ev,
                      size_t *n, eddy_err *err)
{
    static char idbuf[16][32];
    size_t count = 0;
    const char *p = ids;
    while (*p && count < 16) {
        size_t len = strcspn(p, ",");
        snprintf(idbuf[count], sizeof(idbuf[count]), "%.*s", (int)len, p);
        memset(&ev[count], 0, sizeof(ev[count]));
        ev[count].type = "test";
        ev[count].id = strcmp(idbuf[count], "-") == 0 ? NULL : idbuf[count];
        ev[count].time = EDDY_STORE_TIME_NONE;
        ev[count].data = "{\"v\":1}";
        ev[count].data_len = 7;
        count++;
        p += len;
        if (*p == ',')
            p++;
    }
    *n = count;
    eddy_err_clear(err);
    return eddy_store_append(st, stream, expected, ev, count, NULL, err);
}

static uint64_t count_events(const char *stream)
{
    eddy_store_query q = {.stream = stream};
    eddy_err err;
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    CHECK(it);
    eddy_store_record rec;
    uint64_t n = 0;
    int rc;
    while ((rc = eddy_store_iter_next(it, &rec, &err)) == 1)
        n++;
    CHECK_INT_EQ(rc, 0);
    eddy_store_iter_close(it);
    return n;
}

/* ---- append semantics, table-driven ---- */

#define ANY    EDDY_STORE_ANY
#define NOS    EDDY_STORE_NO_STREAM
#define EXISTS EDDY_STORE_STREAM_EXISTS
#define W      EDDY_STORE_WRITTEN
#define X      EDDY_STORE_EXISTING
#define R      EDDY_STORE_REFUSED

typedef struct append_step {
    const char *ids;    /* comma-separated ids of one batch; "-" for a generated id */
    int64_t expected;   /* expected version */
    int rc;             /* code the append returns */
    int outcome;        /* outcome of every event of the batch */
    const char *stream; /* NULL: "s" */
} append_step;

typedef struct append_case {
    const char *name; /* KurrentDB's test name where it has one */
    append_step steps[8];
    int64_t version; /* of stream "s" at the end */
    uint64_t events; /* events in stream "s" at the end */
} append_case;

/* Six events a0..a5 written one by one with expected versions -1..4. */
#define SIX_EVENTS                                                                                 \
    {"a0", NOS, EDDY_OK, W, NULL}, {"a1", 0, EDDY_OK, W, NULL}, {"a2", 1, EDDY_OK, W, NULL},       \
        {"a3", 2, EDDY_OK, W, NULL}, {"a4", 3, EDDY_OK, W, NULL},                                  \
    {                                                                                              \
        "a5", 4, EDDY_OK, W, NULL                                                                  \
    }

static const append_case append_cases[] = {
    {"sequence_0em1_1e0_2e1_3e2_4e3_5e4_0em1_idempotent",
     {SIX_EVENTS, {"a0", NOS, EDDY_OK, X, NULL}},
     5,
     6},
    {"sequence_0em1_1e0_2e1_3e2_4e3_4e4_0any_idempotent",
     {SIX_EVENTS, {"a0", ANY, EDDY_OK, X, NULL}},
     5,
     6},
    /* KurrentDB stores a0 again (non idempotent); eddy's ids are unique: reported. */
    {"sequence_0em1_1e0_2e1_3e2_4e3_5e4_0e5_stored_once",
     {SIX_EVENTS, {"a0", 5, EDDY_OK, X, NULL}},
     5,
     6},
    {"sequence_0em1_1e0_2e1_3e2_4e3_5e4_0e6_wev",
     {SIX_EVENTS, {"a0", 6, EDDY_ECONFLICT, R, NULL}},
     5,
     6},
    {"sequence_0em1_1e0_2e1_3e2_4e3_5e4_0e4_wev",
     {SIX_EVENTS, {"a0", 4, EDDY_ECONFLICT, R, NULL}},
     5,
     6},
    /* KurrentDB: non idempotent (two events); eddy: stored once. */
    {"sequence_0em1_0e0_stored_once",
     {{"a0", NOS, EDDY_OK, W, NULL}, {"a0", 0, EDDY_OK, X, NULL}},
     0,
     1},
    {"sequence_0em1_0any_idempotent",
     {{"a0", NOS, EDDY_OK, W, NULL}, {"a0", ANY, EDDY_OK, X, NULL}},
     0,
     1},
    {"sequence_0em1_0em1_idempotent",
     {{"a0", NOS, EDDY_OK, W, NULL}, {"a0", NOS, EDDY_OK, X, NULL}},
     0,
     1},
    {"sequence_0em1_1e0_2e1_1any_1any_idempotent",
     {{"a0", NOS, EDDY_OK, W, NULL},
      {"a1", 0, EDDY_OK, W, NULL},
      {"a2", 1, EDDY_OK, W, NULL},
      {"a1", ANY, EDDY_OK, X, NULL},
      {"a1", ANY, EDDY_OK, X, NULL}},
     2,
     3},
    {"sequence_S_0em1_1em1_E_S_0em1_E_idempotent",
     {{"a0,a1", NOS, EDDY_OK, W, NULL}, {"a0", NOS, EDDY_OK, X, NULL}},
     1,
     2},
    {"sequence_S_0em1_1em1_E_S_0any_E_idempotent",
     {{"a0,a1", NOS, EDDY_OK, W, NULL}, {"a0", ANY, EDDY_OK, X, NULL}},
     1,
     2},
    {"sequence_S_0em1_1em1_E_S_1e0_E_idempotent",
     {{"a0,a1", NOS, EDDY_OK, W, NULL}, {"a1", 0, EDDY_OK, X, NULL}},
     1,
     2},
    {"sequence_S_0em1_1em1_E_S_1any_E_idempotent",
     {{"a0,a1", NOS, EDDY_OK, W, NULL}, {"a1", ANY, EDDY_OK, X, NULL}},
     1,
     2},
    {"sequence_S_0em1_1em1_E_S_0em1_1em1_2em1_E_idempotancy_fail",
     {{"a0,a1", NOS, EDDY_OK, W, NULL}, {"a0,a1,a2", NOS, EDDY_ECONFLICT, R, NULL}},
     1,
     2},
    /* The whole batch again, with each kind of expected version. */
    {"batch_repeated_with_any_is_idempotent",
     {{"a0,a1,a2", NOS, EDDY_OK, W, NULL}, {"a0,a1,a2", ANY, EDDY_OK, X, NULL}},
     2,
     3},
    {"batch_repeated_with_exact_is_idempotent",
     {{"a0", NOS, EDDY_OK, W, NULL},
      {"a1,a2", 0, EDDY_OK, W, NULL},
      {"a1,a2", 0, EDDY_OK, X, NULL}},
     2,
     3},
    /* Expected versions on their own. */
    {"no_stream_refused_once_the_stream_exists",
     {{"a0", NOS, EDDY_OK, W, NULL}, {"b0", NOS, EDDY_ECONFLICT, R, NULL}},
     0,
     1},
    {"stream_exists_refused_on_a_new_stream",
     {{"a0", EXISTS, EDDY_ECONFLICT, R, NULL},
      {"a0", ANY, EDDY_OK, W, NULL},
      {"a1", EXISTS, EDDY_OK, W, NULL}},
     1,
     2},
    {"exact_version_must_be_the_current_one",
     {{"a0", NOS, EDDY_OK, W, NULL},
      {"a1", 1, EDDY_ECONFLICT, R, NULL},
      {"a1", 0, EDDY_OK, W, NULL},
      {"a2", 0, EDDY_ECONFLICT, R, NULL}},
     1,
     2},
    {"generated_ids_are_never_duplicates",
     {{"-", ANY, EDDY_OK, W, NULL}, {"-,-", ANY, EDDY_OK, W, NULL}, {"-", 2, EDDY_OK, W, NULL}},
     3,
     4},
    /* Partial overlaps. */
    {"any_with_the_leading_part_stored_is_refused",
     {{"a0,a1", NOS, EDDY_OK, W, NULL}, {"a1,a2", ANY, EDDY_ECONFLICT, R, NULL}},
     1,
     2},
    {"any_with_a_stored_id_after_a_new_one_is_refused",
     {{"a0,a1", NOS, EDDY_OK, W, NULL}, {"a2,a0", ANY, EDDY_EDUPLICATE, R, NULL}},
     1,
     2},
    {"exact_past_the_end_is_refused",
     {{"a0,a1", NOS, EDDY_OK, W, NULL}, {"a1,a2", 0, EDDY_ECONFLICT, R, NULL}},
     1,
     2},
    {"exact_current_with_part_stored_is_refused",
     {{"a0,a1", NOS, EDDY_OK, W, NULL}, {"a2,a0", 1, EDDY_EDUPLICATE, R, NULL}},
     1,
     2},
    {"id_of_another_stream_is_refused",
     {{"o0", ANY, EDDY_OK, W, "other"}, {"o0", ANY, EDDY_EDUPLICATE, R, NULL}},
     -1,
     0},
    {"same_id_twice_in_one_batch_is_refused", {{"a0,a0", ANY, EDDY_EDUPLICATE, R, NULL}}, -1, 0},
    {"invalid_expected_version", {{"a0", -3, EDDY_EINVAL, 0, NULL}}, -1, 0},
};

static void run_append_case(const append_case *c)
{
    for (int i = 0; i < 8 && c->steps[i].ids; i++) {
        const append_step *s = &c->steps[i];
        eddy_store_event ev[16];
        size_t n;
        eddy_err err;
        int rc = append_ids(s->stream ? s->stream : "s", s->ids, s->expected, ev, &n, &err);
        if (rc != s->rc)
            CHECK_FAIL_("case %s step %d (%s): got %s, want %s (%s)", c->name, i + 1, s->ids,
                        eddy_err_name(rc), eddy_err_name(s->rc), err.msg);
        for (size_t k = 0; k < n; k++)
            if (ev[k].outcome != s->outcome)
                CHECK_FAIL_("case %s step %d event %zu: outcome %d, want %d", c->name, i + 1, k,
                            ev[k].outcome, s->outcome);
        /* Half of the steps commit on their own: results must not depend on grouping. */
        if (i % 2)
            CHECK_OK(eddy_store_commit(st, &e_));
    }
    CHECK_OK(eddy_store_commit(st, &e_));
    int64_t version;
    CHECK_OK(eddy_store_stream_version(st, "s", &version, &e_));
    if (version != c->version || count_events("s") != c->events)
        CHECK_FAIL_("case %s: stream s at version %lld with %llu events, want %lld and %llu",
                    c->name, (long long)version, (unsigned long long)count_events("s"),
                    (long long)c->version, (unsigned long long)c->events);
}

static void test_append_semantics(void)
{
    for (size_t i = 0; i < sizeof(append_cases) / sizeof(append_cases[0]); i++) {
        setup();
        run_append_case(&append_cases[i]);
        teardown();
    }
}

static void test_existing_reports_stored_position(void)
{
    setup();
    eddy_store_event ev[16];
    size_t n;
    eddy_err err;
    CHECK_INT_EQ(append_ids("x", "x0", ANY, ev, &n, &err), EDDY_OK);
    CHECK_INT_EQ(append_ids("s", "a0,a1", ANY, ev, &n, &err), EDDY_OK);
    CHECK_INT_EQ(ev[1].position, 3);
    CHECK_INT_EQ(ev[1].version, 1);
    CHECK_OK(eddy_store_commit(st, &e_));
    CHECK_INT_EQ(append_ids("s", "a1", ANY, ev, &n, &err), EDDY_OK);
    CHECK_INT_EQ(ev[0].outcome, X);
    CHECK_INT_EQ(ev[0].position, 3);
    CHECK_INT_EQ(ev[0].version, 1);
    /* a conflict says where the stream is */
    eddy_store_result res;
    ev[0] =
        (eddy_store_event){.id = "a9", .time = EDDY_STORE_TIME_NONE, .data = "1", .data_len = 1};
    CHECK_INT_EQ(eddy_store_append(st, "s", 7, ev, 1, &res, &err), EDDY_ECONFLICT);
    CHECK_INT_EQ(res.current_version, 1);
    CHECK_CONTAINS(err.msg, "stream 's' is at version 1, expected 7");
    teardown();
}

/* ---- order, ranges and time ---- */

static void append_one(const char *stream, const char *id, int64_t time, const char *data)
{
    eddy_store_event ev = {
        .type = "reading", .id = id, .time = time, .data = data, .data_len = strlen(data)};
    eddy_err err;
    eddy_err_clear(&err);
    int rc = eddy_store_append(st, stream, ANY, &ev, 1, NULL, &err);
    if (rc != EDDY_OK || ev.outcome != W)
        CHECK_FAIL_("append %s to %s: %s (%s)", id, stream, eddy_err_name(rc), err.msg);
}

static void test_replay_order_equals_append_order(void)
{
    setup();
    static const char *streams[] = {"dev-1", "dev-2", "dev-3"};
    char id[32], data[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "e%d", i);
        snprintf(data, sizeof(data), "{\"i\":%d}", i);
        append_one(streams[(i * 7) % 3], id, 1000 + i, data);
        if (i % 250 == 0)
            CHECK_OK(eddy_store_commit(st, &e_));
    }
    CHECK_OK(eddy_store_commit(st, &e_));
    CHECK_INT_EQ(eddy_store_last_position(st), 3000);

    eddy_err err;
    eddy_store_query q = {0};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    int i = 0;
    while (eddy_store_iter_next(it, &rec, &err) == 1) {
        snprintf(id, sizeof(id), "e%d", i);
        CHECK_INT_EQ(rec.position, i + 1);
        CHECK_STR_EQ(rec.id, id);
        CHECK_STR_EQ(rec.stream, streams[(i * 7) % 3]);
        if (i == 1500)
            eddy_store_iter_pause(it); /* resuming continues after the last one read */
        i++;
    }
    CHECK_INT_EQ(i, 3000);
    eddy_store_iter_close(it);

    /* one stream, versions in order */
    q = (eddy_store_query){.stream = "dev-2"};
    it = eddy_store_iter_open(st, &q, &err);
    int64_t v = 0;
    uint64_t last = 0;
    while (eddy_store_iter_next(it, &rec, &err) == 1) {
        CHECK_INT_EQ(rec.version, v++);
        CHECK(rec.position > last);
        last = rec.position;
        CHECK_STR_EQ(rec.stream, "dev-2");
    }
    CHECK_INT_EQ(v, 1000);
    eddy_store_iter_close(it);

    /* a position range and a version range */
    q = (eddy_store_query){.from_position = 10, .to_position = 19};
    it = eddy_store_iter_open(st, &q, &err);
    i = 0;
    while (eddy_store_iter_next(it, &rec, &err) == 1)
        CHECK_INT_EQ(rec.position, 10 + i++);
    CHECK_INT_EQ(i, 10);
    eddy_store_iter_close(it);
    q = (eddy_store_query){
        .stream = "dev-1", .has_version = true, .from_version = 5, .to_version = 7};
    it = eddy_store_iter_open(st, &q, &err);
    i = 0;
    while (eddy_store_iter_next(it, &rec, &err) == 1)
        CHECK_INT_EQ(rec.version, 5 + i++);
    CHECK_INT_EQ(i, 3);
    eddy_store_iter_close(it);
    teardown();
}

static void test_time_range_by_event_time(void)
{
    setup();
    /* event times out of order, two streams */
    static const int64_t times[] = {500, 100, 300, 200, 400, 300};
    char id[16];
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof(id), "t%d", i);
        append_one("meter", id, times[i], "{}");
        snprintf(id, sizeof(id), "u%d", i);
        append_one("other", id, times[i] + 1, "{}");
    }
    CHECK_OK(eddy_store_commit(st, &e_));
    eddy_err err;
    eddy_store_query q = {
        .stream = "meter", .by_time = true, .has_time = true, .from_time = 200, .to_time = 400};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    static const char *want[] = {"t3", "t2", "t5", "t4"}; /* 200, 300, 300 (later), 400 */
    int n = 0;
    while (eddy_store_iter_next(it, &rec, &err) == 1) {
        CHECK(n < 4);
        CHECK_STR_EQ(rec.id, want[n]);
        n++;
    }
    CHECK_INT_EQ(n, 4);
    eddy_store_iter_close(it);
    /* time filter over $all keeps append order */
    q = (eddy_store_query){.has_time = true, .from_time = 300, .to_time = 300};
    it = eddy_store_iter_open(st, &q, &err);
    static const char *want_all[] = {"t2", "t5"};
    n = 0;
    while (eddy_store_iter_next(it, &rec, &err) == 1) {
        CHECK(n < 2);
        CHECK_STR_EQ(rec.id, want_all[n]);
        n++;
    }
    CHECK_INT_EQ(n, 2);
    eddy_store_iter_close(it);
    /* by time needs a stream */
    q = (eddy_store_query){.by_time = true};
    CHECK(!eddy_store_iter_open(st, &q, &err));
    CHECK_INT_EQ(err.code, EDDY_EINVAL);
    teardown();
}

static void test_iterator_picks_up_new_commits(void)
{
    setup();
    append_one("s", "a", EDDY_STORE_TIME_NONE, "1");
    CHECK_OK(eddy_store_commit(st, &e_));
    eddy_err err;
    eddy_store_query q = {.stream = "s"};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 0);
    append_one("s", "b", EDDY_STORE_TIME_NONE, "2");
    append_one("t", "c", EDDY_STORE_TIME_NONE, "3");
    eddy_store_iter_pause(it);
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 0); /* not committed yet */
    CHECK_OK(eddy_store_commit(st, &e_));
    eddy_store_iter_pause(it);
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_STR_EQ(rec.id, "b");
    CHECK_STR_EQ(rec.data, "2");
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 0);
    eddy_store_iter_close(it);
    teardown();
}

/* ---- dead letters ---- */

static json_t *deadletter_at(uint64_t position)
{
    eddy_err err;
    eddy_store_query q = {.from_position = position, .to_position = position};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_STR_EQ(rec.stream, EDDY_STORE_DEADLETTER_STREAM);
    CHECK_STR_EQ(rec.type, "deadletter");
    json_t *body = json_loads(rec.data, 0, NULL);
    eddy_store_iter_close(it);
    CHECK(body);
    return body;
}

typedef struct dl_case {
    const char *name;
    const char *stream;
    const char *type;
    const char *data;
    size_t len;
    const char *reason;
    const char *original; /* as text; NULL when base64 */
} dl_case;

static const dl_case dl_cases[] = {
    {"invalid_json", "s", "t", "{\"a\":", 5, "body is not valid JSON", "{\"a\":"},
    {"trailing_garbage", "s", "t", "{} x", 4, "body is not valid JSON", "{} x"},
    {"missing_stream", NULL, "t", "{}", 2, "missing stream", "{}"},
    {"empty_stream", "", "t", "{}", 2, "missing stream", "{}"},
    {"reserved_stream", "$mine", "t", "{}", 2, "stream names starting with $ are reserved", "{}"},
    {"too_big", "s", "t", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]", 52,
     "body over the size limit", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,2"},
    {"binary", "s", "t", "\xff\x00\x01", 3, "body is not valid JSON", NULL},
    {"nul_escape", "s", "t", "\"a\\u0000\"", 9, "body is not valid JSON", "\"a\\u0000\""},
    {"lone_surrogate", "s", "t", "\"\\ud800\"", 8, "body is not valid JSON", "\"\\ud800\""},
    {"number_overflow", "s", "t", "1e999", 5, "body is not valid JSON", "1e999"},
    {"type_not_utf8", "s", "\xc0\xaf", "{}", 2, "event type is not valid UTF-8", "{}"},
};

static void test_dead_letters(void)
{
    eddy_store_opts opts = {.max_body = 50};
    for (size_t i = 0; i < sizeof(dl_cases) / sizeof(dl_cases[0]); i++) {
        const dl_case *c = &dl_cases[i];
        dir = eddy_test_tmpdir();
        st = open_store(&opts);
        eddy_store_event ev[2] = {{.type = c->type,
                                   .id = "bad-1",
                                   .time = EDDY_STORE_TIME_NONE,
                                   .data = c->data,
                                   .data_len = c->len},
                                  {.id = "good-1", .time = 5, .data = "true", .data_len = 4}};
        eddy_store_result res;
        eddy_err err;
        eddy_err_clear(&err);
        int rc = eddy_store_append(st, c->stream, ANY, ev, 2, &res, &err);
        if (rc != EDDY_OK || ev[0].outcome != EDDY_STORE_DEADLETTERED)
            CHECK_FAIL_("case %s: %s, outcome %d", c->name, eddy_err_name(rc), ev[0].outcome);
        CHECK_STR_EQ(ev[0].reason, c->reason);
        CHECK_INT_EQ(res.deadlettered, c->stream && *c->stream && c->stream[0] != '$' ? 1 : 2);
        CHECK_OK(eddy_store_commit(st, &e_));
        json_t *body = deadletter_at(ev[0].position);
        CHECK_STR_EQ(json_string_value(json_object_get(body, "reason")), c->reason);
        CHECK_INT_EQ(json_integer_value(json_object_get(body, "size")), (long long)c->len);
        if (c->original)
            CHECK_STR_EQ(json_string_value(json_object_get(body, "original")), c->original);
        else
            CHECK_STR_EQ(json_string_value(json_object_get(body, "originalBase64")), "/wAB");
        json_decref(body);
        /* the good event of the batch is stored unless the stream itself is bad */
        if (res.deadlettered == 1) {
            CHECK_INT_EQ(ev[1].outcome, W);
            CHECK_INT_EQ(ev[1].version, 0);
        }
        eddy_store_stats stats;
        CHECK_OK(eddy_store_get_stats(st, &stats, &e_));
        CHECK_INT_EQ(stats.deadletters, res.deadlettered);
        teardown();
    }
}

static void test_white_space_is_stored_minified(void)
{
    setup();
    append_one("s", "m", EDDY_STORE_TIME_NONE, " { \"a b\" : [ 1 , \"x \\\" y\" ] }\n");
    CHECK_OK(eddy_store_commit(st, &e_));
    eddy_err err;
    eddy_store_query q = {0};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_STR_EQ(rec.data, "{\"a b\":[1,\"x \\\" y\"]}");
    CHECK_INT_EQ(rec.data_len, strlen(rec.data));
    eddy_store_iter_close(it);
    teardown();
}

/* ---- groups, waiters, holds ---- */

static int called, last_status;
static void on_commit(eddy_store *s, int status, const char *error, void *data)
{
    called++;
    last_status = status;
    /* what was appended is visible to readers by now */
    uint64_t pos;
    eddy_err err;
    if (data)
        CHECK_INT_EQ(eddy_store_find_id(s, data, &pos, &err), EDDY_OK);
}

static uint64_t heard;
static void on_listen(eddy_store *s, uint64_t last, void *data)
{
    heard = last;
}

static void test_group_commit_runs_waiters_after_commit(void)
{
    setup();
    eddy_err err;
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, &err);
    CHECK_OK(eddy_store_attach(st, loop, &e_));
    CHECK_OK(eddy_store_listen(st, on_listen, NULL, &e_));
    called = 0;
    heard = 0;
    append_one("s", "g1", EDDY_STORE_TIME_NONE, "1");
    CHECK_OK(eddy_store_when_committed(st, on_commit, "g1", &e_));
    append_one("s", "g2", EDDY_STORE_TIME_NONE, "2");
    CHECK_OK(eddy_store_when_committed(st, on_commit, "g2", &e_));
    CHECK(eddy_store_pending(st));
    CHECK(!eddy_loop_settled(loop)); /* acks must wait */
    uint64_t pos;
    CHECK_INT_EQ(eddy_store_find_id(st, "g1", &pos, &err), EDDY_ENOTFOUND); /* not yet */
    CHECK_INT_EQ(called, 0);
    eddy_loop_settle(loop); /* the before-sleep hook commits */
    CHECK_INT_EQ(called, 2);
    CHECK_INT_EQ(last_status, EDDY_OK);
    CHECK_INT_EQ(heard, 2);
    CHECK(eddy_loop_settled(loop));
    CHECK(!eddy_store_pending(st));
    /* a waiter with nothing pending runs at the next commit point */
    CHECK_OK(eddy_store_when_committed(st, on_commit, NULL, &e_));
    CHECK(!eddy_loop_settled(loop));
    eddy_loop_settle(loop);
    CHECK_INT_EQ(called, 3);
    CHECK(eddy_loop_settled(loop));
    /* cancelled waiters are not called and give their hold back */
    append_one("s", "g3", EDDY_STORE_TIME_NONE, "3");
    CHECK_OK(eddy_store_when_committed(st, on_commit, "g3", &e_));
    eddy_store_cancel_waiters(st, on_commit, "g3");
    CHECK(eddy_loop_settled(loop));
    eddy_loop_settle(loop);
    CHECK_INT_EQ(called, 3);
    CHECK_INT_EQ(heard, 3);
    eddy_store_unlisten(st, on_listen, NULL);
    eddy_store_detach(st);
    eddy_loop_free(loop);
    teardown();
}

static void test_full_group_commits_early(void)
{
    dir = eddy_test_tmpdir();
    eddy_store_opts opts = {.group_max = 10};
    st = open_store(&opts);
    called = 0;
    char id[16];
    for (int i = 0; i < 25; i++) {
        snprintf(id, sizeof(id), "f%d", i);
        append_one("s", id, EDDY_STORE_TIME_NONE, "0");
        if (i == 0)
            CHECK_OK(eddy_store_when_committed(st, on_commit, NULL, &e_));
    }
    CHECK_INT_EQ(eddy_store_last_position(st), 20); /* two full groups committed */
    CHECK_INT_EQ(called, 0);                        /* but waiters wait for notify */
    CHECK_OK(eddy_store_commit(st, &e_));
    CHECK_INT_EQ(called, 1);
    CHECK_INT_EQ(eddy_store_last_position(st), 25);
    teardown();
}

/* A source with input left: each turn appends one event and says more is waiting, for
 * 'turns' turns, then says nothing. */
typedef struct busy_source {
    int turns, done;
} busy_source;

static bool busy_turn(eddy_loop *loop, void *data)
{
    busy_source *b = data;
    if (b->done == b->turns)
        return false;
    char id[16];
    snprintf(id, sizeof(id), "b%d", b->done++);
    append_one("s", id, EDDY_STORE_TIME_NONE, "0");
    eddy_loop_note_input_left(loop);
    return false;
}

/* Commits made while a busy source appends 'turns' events, one per loop turn. */
static uint64_t commits_for_burst(int64_t linger_ms, int turns)
{
    dir = eddy_test_tmpdir();
    eddy_store_opts opts = {.group_linger_ms = linger_ms};
    st = open_store(&opts);
    eddy_err err;
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, &err);
    CHECK_OK(eddy_store_attach(st, loop, &e_));
    busy_source b = {turns, 0};
    eddy_loop_set_work(loop, busy_turn, &b);
    called = 0;
    append_one("s", "first", EDDY_STORE_TIME_NONE, "0");
    CHECK_OK(eddy_store_when_committed(st, on_commit, "first", &e_));
    while (b.done < turns) { /* as a readable socket brings the next turn */
        eddy_loop_work_pending(loop);
        eddy_loop_settle(loop);
    }
    CHECK_INT_EQ(called, 1);
    CHECK(!eddy_store_pending(st));
    CHECK_INT_EQ(eddy_store_last_position(st), (uint64_t)turns + 1);
    eddy_store_stats stats;
    CHECK_OK(eddy_store_get_stats(st, &stats, &e_));
    eddy_store_detach(st);
    eddy_loop_free(loop);
    teardown();
    return stats.commits;
}

/* While a source says input is waiting, the group stays open across turns: one commit
 * for the burst. Without lingering, each turn commits its own group. (The manual clock
 * stands still during a settle, so the linger time never runs out here.) */
static void test_group_lingers_while_input_waits(void)
{
    CHECK_INT_EQ(commits_for_burst(0, 20), 1);
    CHECK_INT_EQ(commits_for_burst(-1, 20), 20);
}

static void test_sync_policies(void)
{
    static const char *policies[] = {"always", "interval:5", "never"};
    for (int i = 0; i < 3; i++) {
        eddy_store_opts opts = {0};
        CHECK_OK(eddy_store_sync_parse(policies[i], &opts, &e_));
        dir = eddy_test_tmpdir();
        st = open_store(&opts);
        eddy_err err;
        eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, &err);
        CHECK_OK(eddy_store_attach(st, loop, &e_));
        append_one("s", "p1", EDDY_STORE_TIME_NONE, "1");
        eddy_loop_settle(loop);
        append_one("s", "p2", EDDY_STORE_TIME_NONE, "2");
        eddy_loop_advance(loop, 10); /* the interval policy's timer fsyncs */
        eddy_store_stats stats;
        CHECK_OK(eddy_store_get_stats(st, &stats, &e_));
        CHECK_INT_EQ(stats.commits, 2);
        CHECK_INT_EQ(stats.syncs, i == 0 ? 2 : i == 1 ? 1 : 0);
        CHECK_INT_EQ(eddy_loop_timer_count(loop), 0);
        eddy_store_detach(st);
        eddy_loop_free(loop);
        eddy_store_close(st);
        st = open_store(&opts); /* everything is there after reopening */
        CHECK_INT_EQ(count_events("s"), 2);
        teardown();
    }
    eddy_store_opts opts;
    eddy_err err;
    CHECK_INT_EQ(eddy_store_sync_parse("sometimes", &opts, &err), EDDY_EINVAL);
    CHECK_INT_EQ(eddy_store_sync_parse("interval:0", &opts, &err), EDDY_EINVAL);
}

/* ---- checkpoints, reopening ---- */

static void test_checkpoints_persist(void)
{
    setup();
    eddy_store_checkpoint cp = {41, 7};
    eddy_err err;
    CHECK_INT_EQ(eddy_store_checkpoint_get(st, "sub", &cp, &err), EDDY_ENOTFOUND);
    cp = (eddy_store_checkpoint){41, 7};
    CHECK_OK(eddy_store_checkpoint_set(st, "sub", &cp, &e_));
    eddy_store_checkpoint got = {0};
    CHECK_OK(eddy_store_checkpoint_get(st, "sub", &got, &e_)); /* seen inside the group */
    CHECK_INT_EQ(got.position, 41);
    eddy_store_close(st);
    st = open_store(NULL);
    got = (eddy_store_checkpoint){0};
    CHECK_OK(eddy_store_checkpoint_get(st, "sub", &got, &e_));
    CHECK_INT_EQ(got.position, 41);
    CHECK_INT_EQ(got.version, 7);
    eddy_store_stats stats;
    CHECK_OK(eddy_store_get_stats(st, &stats, &e_));
    CHECK_INT_EQ(stats.checkpoints, 1);
    teardown();
}

/* Collects "key=value;" of an owner's records, in key order. */
static int collect_state(const char *key, size_t key_len, const void *value, size_t len, void *data)
{
    char *out = data;
    size_t n = strlen(out);
    snprintf(out + n, 512 - n, "%.*s=%.*s;", (int)key_len, key, (int)len, (const char *)value);
    return 0;
}

static void test_node_state(void)
{
    setup();
    eddy_err err;
    CHECK_OK(eddy_store_state_put(st, "n1", "b", 1, "{\"v\":2}", 7, &e_));
    CHECK_OK(eddy_store_state_put(st, "n1", "a", 1, "1", 1, &e_));
    CHECK_OK(eddy_store_state_put(st, "n1", "", 0, "empty", 5, &e_));
    CHECK_OK(eddy_store_state_put(st, "n10", "a", 1, "other", 5, &e_)); /* a longer owner */
    CHECK_OK(eddy_store_state_put(st, "n1", "a", 1, "3", 1, &e_));      /* replaces */
    char got[512] = "";
    CHECK_OK(eddy_store_state_scan(st, "n1", collect_state, got, &e_)); /* inside the group */
    CHECK_STR_EQ(got, "=empty;a=3;b={\"v\":2};");
    /* durable with the group's commit, across a reopen */
    eddy_store_close(st);
    st = open_store(NULL);
    got[0] = 0;
    CHECK_OK(eddy_store_state_scan(st, "n1", collect_state, got, &e_));
    CHECK_STR_EQ(got, "=empty;a=3;b={\"v\":2};");
    CHECK_OK(eddy_store_state_del(st, "n1", "a", 1, &e_));
    CHECK_OK(eddy_store_state_del(st, "n1", "zz", 2, &e_)); /* none: fine */
    CHECK_OK(eddy_store_commit(st, &e_));
    got[0] = 0;
    CHECK_OK(eddy_store_state_scan(st, "n1", collect_state, got, &e_));
    CHECK_STR_EQ(got, "=empty;b={\"v\":2};");
    CHECK_OK(eddy_store_state_clear(st, "n1", &e_));
    CHECK_OK(eddy_store_commit(st, &e_));
    got[0] = 0;
    CHECK_OK(eddy_store_state_scan(st, "n1", collect_state, got, &e_));
    CHECK_STR_EQ(got, "");
    CHECK_OK(eddy_store_state_scan(st, "n10", collect_state, got, &e_)); /* untouched */
    CHECK_STR_EQ(got, "a=other;");
    /* bad names */
    CHECK_INT_EQ(eddy_store_state_put(st, "", "a", 1, "1", 1, &err), EDDY_EINVAL);
    char big[EDDY_STORE_STATE_KEY_MAX + 1];
    memset(big, 'k', sizeof(big));
    CHECK_INT_EQ(eddy_store_state_put(st, "n1", big, sizeof(big), "1", 1, &err), EDDY_EINVAL);
    CHECK_INT_EQ(eddy_store_state_put(st, "n1", "a\0b", 3, "1", 1, &err), EDDY_EINVAL);
    CHECK_OK(eddy_store_state_put(st, "n1", big, EDDY_STORE_STATE_KEY_MAX, "1", 1, &e_));
    /* node state is not a checkpoint and not an event */
    CHECK_OK(eddy_store_commit(st, &e_));
    eddy_store_stats stats;
    CHECK_OK(eddy_store_get_stats(st, &stats, &e_));
    CHECK_INT_EQ(stats.checkpoints, 0);
    CHECK_INT_EQ(stats.events, 0);
    teardown();
}

/* A before-commit hook: writes how many commits it has seen as node state ("n1", "c"). */
static int hook_runs;
static void count_commits(eddy_store *s, void *data)
{
    (void)data;
    char text[16];
    int n = snprintf(text, sizeof(text), "%d", ++hook_runs);
    CHECK_OK(eddy_store_state_put(s, "n1", "c", 1, text, (size_t)n, &e_));
}

/* Hooks run once per commit, inside the group (their writes commit with it), and an opened
 * group commits at the next commit point though nothing was appended. */
static void test_before_commit_hooks(void)
{
    setup();
    eddy_err err;
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, &err);
    CHECK_OK(eddy_store_attach(st, loop, &e_));
    CHECK_OK(eddy_store_add_before_commit(st, count_commits, NULL, &e_));
    hook_runs = 0;
    append_one("s", "h1", EDDY_STORE_TIME_NONE, "1");
    append_one("s", "h2", EDDY_STORE_TIME_NONE, "2");
    CHECK_INT_EQ(hook_runs, 0);
    eddy_loop_settle(loop);
    CHECK_INT_EQ(hook_runs, 1);
    eddy_loop_settle(loop); /* nothing open: no commit, no hook */
    CHECK_INT_EQ(hook_runs, 1);
    CHECK_OK(eddy_store_open_group(st, &e_));
    CHECK(eddy_store_pending(st));
    eddy_loop_settle(loop);
    CHECK_INT_EQ(hook_runs, 2);
    CHECK(!eddy_store_pending(st));
    eddy_store_remove_before_commit(st, count_commits, NULL);
    append_one("s", "h3", EDDY_STORE_TIME_NONE, "3");
    eddy_loop_settle(loop);
    CHECK_INT_EQ(hook_runs, 2);
    eddy_store_detach(st);
    eddy_loop_free(loop);
    eddy_store_close(st); /* what the hooks wrote was committed */
    st = open_store(NULL);
    char got[64] = "";
    CHECK_OK(eddy_store_state_scan(st, "n1", collect_state, got, &e_));
    CHECK_STR_EQ(got, "c=2;");
    teardown();
}

static void test_reopen_continues_positions(void)
{
    setup();
    append_one("a", "r1", 10, "{\"x\":1}");
    append_one("b", "r2", 20, "[2]");
    eddy_store_close(st);
    st = open_store(NULL);
    CHECK_INT_EQ(eddy_store_last_position(st), 2);
    append_one("a", "r3", 30, "3");
    CHECK_OK(eddy_store_commit(st, &e_));
    int64_t v;
    CHECK_OK(eddy_store_stream_version(st, "a", &v, &e_));
    CHECK_INT_EQ(v, 1);
    uint64_t pos;
    CHECK_OK(eddy_store_find_id(st, "r3", &pos, &e_));
    CHECK_INT_EQ(pos, 3);
    eddy_store_stats stats;
    CHECK_OK(eddy_store_get_stats(st, &stats, &e_));
    CHECK_INT_EQ(stats.events, 3);
    CHECK_INT_EQ(stats.streams, 2);
    CHECK_INT_EQ(stats.last_position, 3);
    eddy_store_close(st);
    /* read-only open sees the same */
    eddy_store_opts ro = {.read_only = true};
    st = open_store(&ro);
    CHECK_INT_EQ(count_events("a"), 2);
    eddy_err err;
    eddy_store_event ev = {.data = "1", .data_len = 1, .time = EDDY_STORE_TIME_NONE};
    CHECK_INT_EQ(eddy_store_append(st, "a", ANY, &ev, 1, NULL, &err), EDDY_EINVAL);
    teardown();
}

/* Another process (eddy events import) appends while this one has the store open: this
 * one's next append must go after the other's events, with the right stream version. */
static void test_another_writer_in_between(void)
{
    setup();
    append_one("s", "mine-1", EDDY_STORE_TIME_NONE, "1");
    CHECK_OK(eddy_store_commit(st, &e_));
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        eddy_err err;
        eddy_store *other = eddy_store_open(dir, NULL, &err);
        if (!other)
            _exit(2);
        char id[16];
        for (int i = 0; i < 3; i++) {
            snprintf(id, sizeof(id), "theirs-%d", i);
            eddy_store_event ev = {
                .id = id, .time = EDDY_STORE_TIME_NONE, .data = "2", .data_len = 1};
            if (eddy_store_append(other, "s", EDDY_STORE_ANY, &ev, 1, NULL, &err) != EDDY_OK)
                _exit(3);
        }
        eddy_store_close(other);
        _exit(0);
    }
    int ws;
    CHECK_INT_EQ(waitpid(pid, &ws, 0), pid);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    eddy_store_event ev = {
        .id = "mine-2", .time = EDDY_STORE_TIME_NONE, .data = "3", .data_len = 1};
    eddy_err err;
    CHECK_INT_EQ(eddy_store_append(st, "s", 3, &ev, 1, NULL, &err), EDDY_OK);
    CHECK_INT_EQ(ev.position, 5);
    CHECK_INT_EQ(ev.version, 4);
    CHECK_OK(eddy_store_commit(st, &e_));
    CHECK_INT_EQ(eddy_store_last_position(st), 5);
    CHECK_OK(eddy_store_verify(st, NULL, NULL, &e_));
    teardown();
}

/* ---- damaged files ---- */

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK_INT_EQ(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void expect_open_error(const char *what)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_store *s = eddy_store_open(dir, NULL, &err);
    if (s) {
        eddy_store_close(s);
        CHECK_FAIL_("opened a damaged store (%s)", what);
    }
    CHECK_INT_EQ(err.code, EDDY_EIO);
    CHECK_CONTAINS(err.msg, what);
}

static void test_damaged_files_are_reported(void)
{
    char path[1024];
    /* not an LMDB file at all */
    dir = eddy_test_tmpdir();
    snprintf(path, sizeof(path), "%s/%s", dir, EDDY_STORE_FILE);
    char junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 131 + 7);
    write_file(path, junk, sizeof(junk));
    expect_open_error("is not an eddy event store, or is damaged");
    eddy_test_rmdir(dir);

    /* a real store, cut short */
    setup();
    char id[16], data[300];
    memset(data, 0, sizeof(data));
    snprintf(data, sizeof(data), "\"%0250d\"", 0);
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof(id), "d%d", i);
        append_one("s", id, EDDY_STORE_TIME_NONE, data);
    }
    eddy_store_close(st);
    st = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, EDDY_STORE_FILE);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    CHECK(truncate(path, sb.st_size / 2) == 0);
    expect_open_error("is damaged");
    CHECK(truncate(path, 100) == 0);
    expect_open_error("is not an eddy event store, or is damaged");
    eddy_test_rmdir(dir);

    /* the last record overwritten in place: found at open */
    setup();
    append_one("s", "only", EDDY_STORE_TIME_NONE, "\"MARKER-MARKER\"");
    eddy_store_close(st);
    st = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, EDDY_STORE_FILE);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    static char buf[1 << 16];
    ssize_t n = read(fd, buf, sizeof(buf));
    CHECK(n > 0);
    char *m = NULL;
    for (ssize_t i = 0; i + 13 <= n && !m; i++)
        if (memcmp(buf + i, "MARKER-MARKER", 13) == 0)
            m = buf + i;
    CHECK(m);
    /* the record starts 36 bytes plus "s", "reading" and "only" (each with its NUL) before
     * its data, which starts with a quote */
    char *rec = m - 1 - (36 + 2 + 8 + 5);
    CHECK_INT_EQ(rec[0], EDDY_STORE_FORMAT);
    rec[0] = 9; /* a record format nobody knows */
    CHECK(pwrite(fd, buf, (size_t)n, 0) == n);
    close(fd);
    expect_open_error("the last record is bad (unknown record format)");
    eddy_test_rmdir(dir);
    dir = NULL;
}

/* ---- NDJSON ---- */

static void test_ndjson_round_trip_is_exact(void)
{
    setup();
    append_one("dev-\"1\"", "n1", -5, "{\"t\":21.5,\"s\":\"\\u00e9\\n\"}");
    append_one("dev-2", "n2", 1704067200123, "[1,2,{\"a\":null}]");
    eddy_store_event bad = {.data = "nope", .data_len = 4, .time = EDDY_STORE_TIME_NONE};
    eddy_err err;
    CHECK_OK(eddy_store_append(st, "dev-2", ANY, &bad, 1, NULL, &e_));
    CHECK_OK(eddy_store_commit(st, &e_));

    char *dir2 = eddy_test_tmpdir();
    eddy_store *st2 = eddy_store_open(dir2, NULL, &err);
    CHECK(st2);
    eddy_store_query q = {0};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    char all[4096] = "";
    while (eddy_store_iter_next(it, &rec, &err) == 1) {
        size_t len;
        char *line = eddy_store_record_ndjson(&rec, &len);
        strcat(all, line);
        eddy_store_import_result r;
        CHECK_OK(eddy_store_import_line(st2, line, len - 1, &r, &e_));
        CHECK(!r.existing && !r.renumbered);
        /* importing the same line again stores nothing */
        CHECK_OK(eddy_store_import_line(st2, line, len - 1, &r, &e_));
        CHECK(r.existing);
        eddy_free(line);
    }
    eddy_store_iter_close(it);
    CHECK_OK(eddy_store_commit(st2, &e_));
    CHECK_CONTAINS(all, "\"stream\":\"dev-\\\"1\\\"\"");
    CHECK_CONTAINS(all, "\"time\":-5,");
    CHECK_CONTAINS(all, "\"data\":{\"t\":21.5,\"s\":\"\\u00e9\\n\"}}\n");
    CHECK_CONTAINS(all, "\"stream\":\"$deadletter\"");

    /* export of the copy is byte for byte the same */
    it = eddy_store_iter_open(st2, &q, &err);
    char all2[4096] = "";
    while (eddy_store_iter_next(it, &rec, &err) == 1) {
        size_t len;
        char *line = eddy_store_record_ndjson(&rec, &len);
        strcat(all2, line);
        eddy_free(line);
    }
    eddy_store_iter_close(it);
    CHECK_STR_EQ(all2, all);

    /* bad lines name what is wrong */
    eddy_store_import_result r;
    static const char *bad_lines[][2] = {
        {"{\"position\":1}", "no \"version\""},
        {"not json", "not a JSON object"},
        {"{\"position\":1,\"version\":\"x\",\"time\":1,\"ingestTime\":1,\"stream\":\"s\",\"type\":"
         "\"t\",\"id\":\"i\",\"data\":1}",
         "\"version\" is not an integer"},
        {"{\"position\":1,\"version\":0,\"time\":1,\"ingestTime\":1,\"stream\":\"s\",\"type\":"
         "\"t\",\"id\":\"i\"}",
         "no \"data\""},
        {"{\"position\":9,\"version\":5,\"time\":1,\"ingestTime\":1,\"stream\":\"dev-2\",\"type\":"
         "\"t\",\"id\":\"new\",\"data\":1}",
         "stream 'dev-2' is at version 0, expected 4"},
    };
    for (size_t i = 0; i < sizeof(bad_lines) / sizeof(bad_lines[0]); i++) {
        eddy_err_clear(&err);
        CHECK(eddy_store_import_line(st2, bad_lines[i][0], strlen(bad_lines[i][0]), &r, &err) !=
              EDDY_OK);
        CHECK_CONTAINS(err.msg, bad_lines[i][1]);
    }
    eddy_store_close(st2);
    eddy_test_rmdir(dir2);
    teardown();
}

/* The fast body decoder gives what eddy_json_loadb gives, byte for byte when printed. */
static void test_record_json_matches_the_parser(void)
{
    static const char *bodies[] = {
        "{}",
        "[]",
        "\"\"",
        "0",
        "-0",
        "-0.0",
        "7",
        "-42",
        "123456789012345",
        "1234567890123456",
        "9007199254740993",
        "12345678901234567890",
        "0.1",
        "-2.5",
        "22.50",
        "123456789012345.5",
        "1e3",
        "1E-7",
        "1.7976931348623157e308",
        "5e-324",
        "2.2250738585072014e-308",
        "true",
        "false",
        "null",
        "\"plain ascii text that is long enough\"",
        "\"caf\u00e9 \\n \\\" \\/\"",
        "\"\\ud83d\\ude00 and \xf0\x9f\x98\x80 and \xc3\xa9\"",
        "{\"a\":1,\"a\":2}",
        "{\"k\\u00e9y\":{\"nested\":[1,[2,[3,{\"x\":null}]]]},\"t\":\"\\t\"}",
        "[1.5,-0.25,100,1e21,3.14159,0.30000000000000004]"};
    setup();
    char id[16];
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        snprintf(id, sizeof(id), "j%zu", i);
        append_one("s", id, EDDY_STORE_TIME_NONE, bodies[i]);
    }
    CHECK_OK(eddy_store_commit(st, &e_));
    eddy_err err;
    eddy_store_query q = {0};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    size_t n = 0;
    while (eddy_store_iter_next(it, &rec, &err) == 1) {
        json_t *fast = eddy_store_record_json(&rec, &err);
        json_t *slow = eddy_json_loadb(rec.data, rec.data_len, &err);
        CHECK(fast && slow);
        char *a = eddy_json_dumps(fast, 0), *b = eddy_json_dumps(slow, 0);
        if (strcmp(a, b) != 0 || json_typeof(fast) != json_typeof(slow))
            CHECK_FAIL_("body %s: fast %s, parser %s", rec.data, a, b);
        eddy_free(a);
        eddy_free(b);
        json_decref(fast);
        json_decref(slow);
        n++;
    }
    CHECK_INT_EQ(n, sizeof(bodies) / sizeof(bodies[0]));
    eddy_store_iter_close(it);
    /* a damaged body is an error, not a value */
    rec.data = "{\"a\":";
    rec.data_len = 5;
    CHECK(!eddy_store_record_json(&rec, &err));
    CHECK_INT_EQ(err.code, EDDY_EIO);
    teardown();
}

static void test_open_errors(void)
{
    eddy_err err;
    eddy_store_opts ro = {.read_only = true};
    char *d = eddy_test_tmpdir();
    eddy_store *s = eddy_store_open(d, &ro, &err);
    CHECK(!s);
    CHECK_CONTAINS(err.msg, "no event store in");
    eddy_test_rmdir(d);
}

static const check_test tests[] = {
    {"append_semantics", test_append_semantics},
    {"existing_reports_stored_position", test_existing_reports_stored_position},
    {"replay_order_equals_append_order", test_replay_order_equals_append_order},
    {"time_range_by_event_time", test_time_range_by_event_time},
    {"iterator_picks_up_new_commits", test_iterator_picks_up_new_commits},
    {"dead_letters", test_dead_letters},
    {"white_space_is_stored_minified", test_white_space_is_stored_minified},
    {"group_commit_runs_waiters_after_commit", test_group_commit_runs_waiters_after_commit},
    {"full_group_commits_early", test_full_group_commits_early},
    {"group_lingers_while_input_waits", test_group_lingers_while_input_waits},
    {"before_commit_hooks", test_before_commit_hooks},
    {"sync_policies", test_sync_policies},
    {"checkpoints_persist", test_checkpoints_persist},
    {"node_state", test_node_state},
    {"reopen_continues_positions", test_reopen_continues_positions},
    {"another_writer_in_between", test_another_writer_in_between},
    {"damaged_files_are_reported", test_damaged_files_are_reported},
    {"ndjson_round_trip_is_exact", test_ndjson_round_trip_is_exact},
    {"record_json_matches_the_parser", test_record_json_matches_the_parser},
    {"open_errors", test_open_errors},
    {NULL, NULL}};

CHECK_MAIN(tests)
