/* events_cli.c: `eddy events stats|tail|read|export|import|check|rebuild --data DIR` and the
 * store for `eddy run` (see events_cli.h). Reading commands open the store read-only, so they can
 * run beside a running eddy. Export and import use the NDJSON form of store.h; a progress
 * line (count, rate, ETA) goes to stderr only when stderr is a terminal. */
#include "events_cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "mem.h"
#include "readmodel.h"

#define DEFAULT_DATA      "eddy-data"
#define PROGRESS_EVERY_MS 100
#define REBUILD_POLL_MS   50   /* how often rebuild looks whether the model is done */
#define REBUILD_SHOW_MS   1000 /* how often it prints how far it got */
#define MAX_NODE_DIRS     16

static const char usage_events[] =
    "Usage: eddy events COMMAND [--data DIR] [options]\n"
    "\n"
    "Reads and writes the event store in DIR/events.mdb (DIR defaults to ./eddy-data).\n"
    "Reading commands open it read-only and may run while eddy runs.\n"
    "\n"
    "Commands:\n"
    "  stats               events, streams, dead letters, checkpoints, time span, file size\n"
    "  tail [-n N]         the last N events (default 10); --follow keeps printing new ones\n"
    "  read [RANGE]        events in a range, one per line: position, event time,\n"
    "                      stream@version, type, id, body (--json: NDJSON as export)\n"
    "  export [RANGE]      events as NDJSON (one object per line: position, stream,\n"
    "                      version, type, id, time, ingestTime, data); -o FILE or stdout\n"
    "  import [FILE]       appends the events of an export (FILE or stdin) with their\n"
    "                      streams, versions, ids and times; events already there are\n"
    "                      skipped; into an empty store positions stay the same\n"
    "  check               reads every record and index entry, in a child process so that\n"
    "                      even damage LMDB cannot survive is reported, not a crash\n"
    "  rebuild --model NAME [--flow FLOWS.json] [--nodes DIR]\n"
    "                      rebuilds read model NAME (a state node) from the whole log:\n"
    "                      loads the flow file (default DIR/flows.json, the deployed\n"
    "                      flows), runs only the state node whose model is NAME, has it\n"
    "                      clear the model and fold every event again, prints \"rebuilt N\n"
    "                      of M events\" to stderr every second and a summary at the end.\n"
    "                      Stop eddy first: the store has no lock of its own, LMDB only\n"
    "                      serializes the writers of both processes, so the file stays\n"
    "                      sound but a running eddy would keep folding into the model\n"
    "                      while it is rebuilt and may undo it. Interrupted, the model\n"
    "                      stays marked and is rebuilt again when its node next starts\n"
    "\n"
    "RANGE (all optional; bounds are inclusive):\n"
    "  --stream S          one stream, in version order\n"
    "  --from P --to P     positions\n"
    "  --from-version V --to-version V   versions (with --stream)\n"
    "  --from-time T --to-time T         event time, ms or ISO 8601 (2024-01-01T10:00Z);\n"
    "                      with --stream in event time order, else a scan of the log\n"
    "\n"
    "Options:\n"
    "  --data DIR          data folder (default ./eddy-data)\n"
    "  -n N                tail: how many (default 10)\n"
    "  --follow            tail: wait for new events until interrupted\n"
    "  --json              read, tail: NDJSON lines instead of the table\n"
    "  -o FILE             export: write to FILE instead of stdout\n"
    "  --fsync POLICY      import, rebuild: always (default), interval[:MS], never\n"
    "  --flow FILE         rebuild: the flow file holding the state node\n"
    "  --model NAME        rebuild: the model (the state node's model property)\n"
    "  --nodes DIR         rebuild: also load the Lua node types in DIR (as eddy run)\n";

int eddy_events_help(void)
{
    fputs(usage_events, stdout);
    return 0;
}

/* ---- options ---- */

typedef struct ev_opts {
    const char *cmd;
    const char *data;
    const char *out;   /* -o */
    const char *input; /* import FILE */
    const char *fsync;
    long tail_n;
    bool follow, json;
    eddy_store_query q;
    const char *from_time, *to_time;
    bool has_from_version, has_to_version;
    const char *flow;  /* rebuild --flow */
    const char *model; /* rebuild --model */
    const char *node_dirs[MAX_NODE_DIRS];
    int node_dir_count;
} ev_opts;

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || *s == '-' || !*s)
        return false;
    *out = v;
    return true;
}

static bool parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || !*s)
        return false;
    *out = v;
    return true;
}

static int bad_value(const char *opt, const char *value, const char *want)
{
    fprintf(stderr, "eddy events: %s needs %s, not '%s'\n", opt, want, value);
    return 2;
}

static int parse_ev_opts(int argc, char **argv, ev_opts *o)
{
    enum {
        O_STREAM = 256,
        O_FROM,
        O_TO,
        O_FROM_VERSION,
        O_TO_VERSION,
        O_FROM_TIME,
        O_TO_TIME,
        O_FOLLOW,
        O_JSON,
        O_FSYNC,
        O_FLOW,
        O_MODEL,
        O_NODES
    };
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"stream", required_argument, NULL, O_STREAM},
        {"from", required_argument, NULL, O_FROM},
        {"to", required_argument, NULL, O_TO},
        {"from-version", required_argument, NULL, O_FROM_VERSION},
        {"to-version", required_argument, NULL, O_TO_VERSION},
        {"from-time", required_argument, NULL, O_FROM_TIME},
        {"to-time", required_argument, NULL, O_TO_TIME},
        {"follow", no_argument, NULL, O_FOLLOW},
        {"json", no_argument, NULL, O_JSON},
        {"fsync", required_argument, NULL, O_FSYNC},
        {"flow", required_argument, NULL, O_FLOW},
        {"model", required_argument, NULL, O_MODEL},
        {"nodes", required_argument, NULL, O_NODES},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    o->data = DEFAULT_DATA;
    o->tail_n = 10;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:n:o:fh", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->data = optarg;
            break;
        case 'n': {
            uint64_t n;
            if (!parse_u64(optarg, &n) || n == 0 || n > 100000000)
                return bad_value("-n", optarg, "a count from 1");
            o->tail_n = (long)n;
            break;
        }
        case 'o':
            o->out = optarg;
            break;
        case 'f':
        case O_FOLLOW:
            o->follow = true;
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_FSYNC:
            o->fsync = optarg;
            break;
        case O_FLOW:
            o->flow = optarg;
            break;
        case O_MODEL:
            o->model = optarg;
            break;
        case O_NODES:
            if (o->node_dir_count == MAX_NODE_DIRS) {
                fprintf(stderr, "eddy events: at most %d --nodes folders\n", MAX_NODE_DIRS);
                return 2;
            }
            o->node_dirs[o->node_dir_count++] = optarg;
            break;
        case O_STREAM:
            o->q.stream = optarg;
            break;
        case O_FROM:
            if (!parse_u64(optarg, &o->q.from_position))
                return bad_value("--from", optarg, "a position");
            break;
        case O_TO:
            if (!parse_u64(optarg, &o->q.to_position))
                return bad_value("--to", optarg, "a position");
            break;
        case O_FROM_VERSION:
            if (!parse_i64(optarg, &o->q.from_version) || o->q.from_version < 0)
                return bad_value("--from-version", optarg, "a version");
            o->has_from_version = true;
            break;
        case O_TO_VERSION:
            if (!parse_i64(optarg, &o->q.to_version) || o->q.to_version < 0)
                return bad_value("--to-version", optarg, "a version");
            o->has_to_version = true;
            break;
        case O_FROM_TIME:
            if (eddy_store_parse_time(optarg, &o->q.from_time) != EDDY_OK)
                return bad_value("--from-time", optarg, "a time (ms or ISO 8601)");
            o->from_time = optarg;
            break;
        case O_TO_TIME:
            if (eddy_store_parse_time(optarg, &o->q.to_time) != EDDY_OK)
                return bad_value("--to-time", optarg, "a time (ms or ISO 8601)");
            o->to_time = optarg;
            break;
        case 'h':
            fputs(usage_events, stdout);
            return 1;
        default:
            fputs(usage_events, stderr);
            return 2;
        }
    }
    if (strcmp(o->cmd, "import") == 0 && optind < argc)
        o->input = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "eddy events %s: unexpected argument '%s'\n", o->cmd, argv[optind]);
        return 2;
    }
    bool rebuild = strcmp(o->cmd, "rebuild") == 0;
    if (rebuild != (o->model != NULL) || (!rebuild && (o->flow || o->node_dir_count))) {
        fprintf(stderr, "eddy events: %s\n",
                rebuild ? "rebuild needs --model NAME"
                        : "--model, --flow and --nodes are for rebuild only");
        return 2;
    }
    if ((o->has_from_version || o->has_to_version) && !o->q.stream) {
        fprintf(stderr, "eddy events: --from-version and --to-version need --stream\n");
        return 2;
    }
    if (o->has_from_version || o->has_to_version) {
        o->q.has_version = true;
        if (!o->has_to_version)
            o->q.to_version = INT64_MAX;
    }
    if (o->from_time || o->to_time) {
        o->q.has_time = true;
        if (!o->from_time)
            o->q.from_time = INT64_MIN;
        if (!o->to_time)
            o->q.to_time = INT64_MAX;
        o->q.by_time = o->q.stream != NULL;
    }
    return 0;
}

static eddy_store *open_ro(const ev_opts *o)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_store_opts so = {.read_only = true};
    eddy_store *st = eddy_store_open(o->data, &so, &err);
    if (!st)
        fprintf(stderr, "eddy events: %s\n", err.msg);
    return st;
}

/* ---- the guard's channel (see run_guarded) ---- */

static int guard_fd = -1; /* the child's end of the pipe to the parent; -1 outside a guard */

/* Tells the parent how far the command got ('done' of 'total' records). */
static void guard_note(uint64_t done, uint64_t total)
{
    uint64_t v[2] = {done, total};
    if (guard_fd >= 0 && write(guard_fd, v, sizeof(v)) < 0)
        guard_fd = -1; /* the parent is gone */
}

/* ---- progress on a terminal ---- */

typedef struct progress {
    bool on;             /* stderr is a terminal */
    const char *verb;    /* "exported" */
    int64_t start, last; /* ms */
} progress;

static int64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void progress_start(progress *p, const char *verb)
{
    p->on = isatty(STDERR_FILENO);
    p->verb = verb;
    p->start = p->last = mono();
}

/* 'done' of 'total' units (0 total: unknown); 'events' counted so far. */
static void progress_show(progress *p, uint64_t done, uint64_t total, uint64_t events, bool end)
{
    if (!p->on)
        return;
    int64_t now = mono();
    if (!end && now - p->last < PROGRESS_EVERY_MS)
        return;
    p->last = now;
    double secs = (double)(now - p->start) / 1000.0;
    double rate = secs > 0 ? (double)events / secs : 0;
    char bar[32] = "";
    char eta[32] = "";
    if (total > 0) {
        double f = done >= total ? 1.0 : (double)done / (double)total;
        int fill = (int)(f * 20);
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[20] = '\0';
        if (f > 0 && !end) {
            double left = secs / f - secs;
            snprintf(eta, sizeof(eta), " ETA %.0fs", left);
        }
        fprintf(stderr, "\r[%s] %3.0f%% %llu events %s, %.0f/s%s   ", bar, f * 100,
                (unsigned long long)events, p->verb, rate, eta);
    } else {
        fprintf(stderr, "\r%llu events %s, %.0f/s   ", (unsigned long long)events, p->verb, rate);
    }
    if (end)
        fputc('\n', stderr);
    fflush(stderr);
}

/* ---- printing ---- */

static void print_table_row(FILE *out, const eddy_store_record *rec)
{
    char t[32];
    fprintf(out, "%8llu  %s  %s@%lld  %s  %s  %.*s\n", (unsigned long long)rec->position,
            eddy_store_format_time(rec->time, t), rec->stream, (long long)rec->version, rec->type,
            rec->id, (int)rec->data_len, rec->data);
}

static int print_record(FILE *out, const eddy_store_record *rec, bool json)
{
    if (!json) {
        print_table_row(out, rec);
        return 0;
    }
    size_t len;
    char *line = eddy_store_record_ndjson(rec, &len);
    if (!line) {
        fprintf(stderr, "eddy events: out of memory\n");
        return 1;
    }
    fwrite(line, 1, len, out);
    eddy_free(line);
    return 0;
}

/* How many events a query will give, when that is known cheaply (0 = unknown). */
static uint64_t expected_count(eddy_store *st, const eddy_store_query *q)
{
    if (q->has_time)
        return 0;
    uint64_t last = eddy_store_last_position(st);
    if (!q->stream) {
        uint64_t from = q->from_position ? q->from_position : 1;
        uint64_t to = q->to_position && q->to_position < last ? q->to_position : last;
        return to >= from ? to - from + 1 : 0;
    }
    int64_t ver;
    if (q->from_position || q->to_position ||
        eddy_store_stream_version(st, q->stream, &ver, NULL) != EDDY_OK)
        return 0;
    int64_t from = q->has_version ? q->from_version : 0;
    int64_t to = q->has_version && q->to_version < ver ? q->to_version : ver;
    return to >= from ? (uint64_t)(to - from + 1) : 0;
}

/* Prints every event of 'q'; with 'prog', shows progress. */
static int dump(eddy_store *st, const eddy_store_query *q, FILE *out, bool json, progress *prog,
                uint64_t *count)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_store_iter *it = eddy_store_iter_open(st, q, &err);
    if (!it) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        return 1;
    }
    uint64_t total = prog ? expected_count(st, q) : 0;
    eddy_store_record rec;
    int rc;
    int status = 0;
    while ((rc = eddy_store_iter_next(it, &rec, &err)) == 1) {
        if (print_record(out, &rec, json) != 0) {
            status = 1;
            break;
        }
        (*count)++;
        if (*count % 1024 == 0)
            guard_note(rec.position, total);
        if (prog)
            progress_show(prog, *count, total, *count, false);
    }
    if (rc < 0) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        status = 1;
    }
    eddy_store_iter_close(it);
    if (ferror(out)) {
        fprintf(stderr, "eddy events: writing failed: %s\n", strerror(errno));
        status = 1;
    }
    return status;
}

/* ---- commands ---- */

static int cmd_stats(const ev_opts *o)
{
    eddy_store *st = open_ro(o);
    if (!st)
        return 1;
    eddy_store_stats s;
    eddy_err err;
    eddy_err_clear(&err);
    if (eddy_store_get_stats(st, &s, &err) != EDDY_OK) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        eddy_store_close(st);
        return 1;
    }
    char t1[32], t2[32];
    printf("store:        %s (record format %d)\n", eddy_store_path(st), s.format);
    printf("events:       %llu (last position %llu)\n", (unsigned long long)s.events,
           (unsigned long long)s.last_position);
    printf("streams:      %llu\n", (unsigned long long)s.streams);
    printf("dead letters: %llu\n", (unsigned long long)s.deadletters);
    printf("checkpoints:  %llu\n", (unsigned long long)s.checkpoints);
    if (s.events) {
        printf("first ingest: %s\n", eddy_store_format_time(s.first_ingest, t1));
        printf("last ingest:  %s\n", eddy_store_format_time(s.last_ingest, t2));
    }
    printf("file:         %.1f MiB (map %.0f GiB)\n", (double)s.file_bytes / 1048576.0,
           (double)s.map_bytes / 1073741824.0);
    eddy_store_close(st);
    return 0;
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
    interrupted = 1;
}

static int cmd_tail(ev_opts *o)
{
    eddy_store *st = open_ro(o);
    if (!st)
        return 1;
    eddy_store_query q = {.stream = o->q.stream};
    if (q.stream) {
        int64_t ver;
        eddy_err err;
        if (eddy_store_stream_version(st, q.stream, &ver, &err) == EDDY_OK && ver + 1 > o->tail_n) {
            q.has_version = true;
            q.from_version = ver + 1 - o->tail_n;
            q.to_version = INT64_MAX;
        }
    } else {
        uint64_t last = eddy_store_last_position(st);
        q.from_position = last > (uint64_t)o->tail_n ? last - (uint64_t)o->tail_n + 1 : 1;
    }
    eddy_err err;
    eddy_err_clear(&err);
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    if (!it) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        eddy_store_close(st);
        return 1;
    }
    if (o->follow) {
        struct sigaction sa = {.sa_handler = on_sigint};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    int status = 0;
    for (;;) {
        eddy_store_record rec;
        int rc;
        while ((rc = eddy_store_iter_next(it, &rec, &err)) == 1)
            if (print_record(stdout, &rec, o->json) != 0)
                break;
        if (rc < 0) {
            fprintf(stderr, "eddy events: %s\n", err.msg);
            status = 1;
            break;
        }
        fflush(stdout);
        if (!o->follow || interrupted)
            break;
        eddy_store_iter_pause(it);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        if (interrupted)
            break;
    }
    eddy_store_iter_close(it);
    eddy_store_close(st);
    return status;
}

static int cmd_read(const ev_opts *o, bool export)
{
    eddy_store *st = open_ro(o);
    if (!st)
        return 1;
    FILE *out = stdout;
    if (o->out && !(out = fopen(o->out, "w"))) {
        fprintf(stderr, "eddy events: cannot write %s: %s\n", o->out, strerror(errno));
        eddy_store_close(st);
        return 1;
    }
    progress prog;
    progress_start(&prog, "exported");
    uint64_t count = 0;
    int status = dump(st, &o->q, out, export || o->json, export ? &prog : NULL, &count);
    if (export)
        progress_show(&prog, count, count, count, true);
    if (out != stdout && fclose(out) != 0 && status == 0) {
        fprintf(stderr, "eddy events: writing %s failed: %s\n", o->out, strerror(errno));
        status = 1;
    }
    eddy_store_close(st);
    return status;
}

static int cmd_import(const ev_opts *o)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_store_opts so = {0};
    if (o->fsync && eddy_store_sync_parse(o->fsync, &so, &err) != EDDY_OK) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        return 2;
    }
    FILE *in = stdin;
    const char *name = o->input && strcmp(o->input, "-") != 0 ? o->input : "stdin";
    if (o->input && strcmp(o->input, "-") != 0) {
        if (!(in = fopen(o->input, "r"))) {
            fprintf(stderr, "eddy events: cannot read %s: %s\n", o->input, strerror(errno));
            return 1;
        }
    }
    struct stat sb;
    uint64_t size = fstat(fileno(in), &sb) == 0 && S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
    eddy_store *st = eddy_store_open(o->data, &so, &err);
    if (!st) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        if (in != stdin)
            fclose(in);
        return 1;
    }
    progress prog;
    progress_start(&prog, "imported");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0, imported = 0, existing = 0, renumbered = 0, bytes = 0;
    int status = 0;
    while ((n = getline(&line, &cap, in)) > 0) {
        lineno++;
        bytes += (uint64_t)n;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n == 0)
            continue;
        eddy_store_import_result r;
        eddy_err_clear(&err);
        if (eddy_store_import_line(st, line, (size_t)n, &r, &err) != EDDY_OK) {
            progress_show(&prog, bytes, size, imported, true);
            fprintf(stderr, "%s:%llu: %s\n", name, (unsigned long long)lineno, err.msg);
            status = 1;
            break;
        }
        if (r.existing)
            existing++;
        else
            imported++;
        renumbered += r.renumbered;
        progress_show(&prog, bytes, size, imported + existing, false);
    }
    free(line); /* getline's buffer comes from libc */
    if (status == 0 && ferror(in)) {
        fprintf(stderr, "eddy events: reading %s failed: %s\n", name, strerror(errno));
        status = 1;
    }
    if (in != stdin)
        fclose(in);
    /* What was imported before a bad line is kept: each line is one complete event. */
    if (eddy_store_commit(st, &err) != EDDY_OK) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        status = 1;
    } else {
        if (status == 0)
            progress_show(&prog, bytes, size, imported + existing, true);
        fprintf(stderr, "%llu events imported, %llu already there, %llu at new positions\n",
                (unsigned long long)imported, (unsigned long long)existing,
                (unsigned long long)renumbered);
    }
    eddy_store_close(st);
    return status;
}

/* ---- check ---- */

static void check_report(uint64_t done, uint64_t total, void *data)
{
    guard_note(done, total);
    progress_show(data, done, total, done, false);
}

static int cmd_check(const ev_opts *o)
{
    eddy_store *st = open_ro(o);
    if (!st)
        return 1;
    progress prog;
    progress_start(&prog, "checked");
    eddy_err err;
    eddy_err_clear(&err);
    int rc = eddy_store_verify(st, check_report, &prog, &err);
    if (rc != EDDY_OK)
        fprintf(stderr, "eddy events: %s: %s\n", eddy_store_path(st), err.msg);
    else
        printf("%s: ok\n", eddy_store_path(st));
    eddy_store_close(st);
    return rc == EDDY_OK ? 0 : 1;
}

/* ---- rebuild ----
 *
 * Runs the flow file's state node for the model alone (every other node disabled) on a
 * real loop, sends it the "rebuild" command and runs the loop until the model says it is
 * no longer rebuilding (runtime/readmodel.h). */

typedef struct rebuild_run {
    eddy_loop *loop;
    const char *model;
    int64_t start, shown; /* loop ms */
    uint64_t done, total; /* the last progress read */
    bool failed;
    char error[512]; /* the first error the node reported */
} rebuild_run;

static void rebuild_uncaught(void *data, eddy_node *node, const char *text)
{
    rebuild_run *r = data;
    if (!r->failed)
        snprintf(r->error, sizeof(r->error), "%s", text);
    r->failed = true;
}

static void rebuild_show(rebuild_run *r)
{
    fprintf(stderr, "rebuilt %llu of %llu events (%.0f%%)\n", (unsigned long long)r->done,
            (unsigned long long)r->total,
            r->total ? 100.0 * (double)r->done / (double)r->total : 100.0);
}

static int64_t rebuild_poll(eddy_loop *loop, eddy_timer *timer, void *data)
{
    rebuild_run *r = data;
    bool busy = eddy_readmodel_progress(r->model, &r->done, &r->total);
    int64_t now = eddy_loop_now(loop);
    if (!busy) {
        eddy_loop_stop(loop);
        return EDDY_TIMER_STOP;
    }
    if (now - r->shown >= REBUILD_SHOW_MS) {
        r->shown = now;
        rebuild_show(r);
    }
    return REBUILD_POLL_MS;
}

/* The index of the one state node of 'flow' with model 'name'; -1 after saying why. */
static int find_model_node(const eddy_flow *flow, const char *file, const char *name)
{
    int found = -1, count = 0;
    char ids[256] = "", models[256] = "";
    for (int i = 0; i < flow->node_count; i++) {
        const eddy_flow_node *fn = &flow->nodes[i];
        if (!fn->ntype || strcmp(fn->ntype->name, "state") != 0)
            continue;
        const char *m = json_string_value(json_object_get(fn->config, "model"));
        m = m ? m : "";
        size_t used = strlen(models);
        snprintf(models + used, sizeof(models) - used, "%s'%s'", used ? ", " : "", m);
        if (strcmp(m, name) != 0)
            continue;
        used = strlen(ids);
        snprintf(ids + used, sizeof(ids) - used, "%s%s", used ? ", " : "", fn->id);
        found = i;
        count++;
    }
    if (count == 0)
        fprintf(stderr, "eddy events: %s has no state node with model '%s'%s%s%s\n", file, name,
                *models ? " (its models: " : "", models, *models ? ")" : "");
    else if (count > 1)
        fprintf(stderr,
                "eddy events: %s has %d state nodes with model '%s' (nodes %s); a model "
                "belongs to one node\n",
                file, count, name, ids);
    else if (flow->nodes[found].disabled)
        fprintf(stderr, "eddy events: %s: the state node %s of model '%s' is disabled\n", file,
                flow->nodes[found].id, name);
    return count == 1 && !flow->nodes[found].disabled ? found : -1;
}

static void print_problems(eddy_problems *problems, const char *file)
{
    eddy_problems_print(problems, stderr);
    fprintf(stderr, "eddy events: %s: %d problem%s\n", file, problems->count,
            problems->count == 1 ? "" : "s");
    eddy_problems_clear(problems);
}

/* Runs the rebuild with the store, registry and flow ready ('flow' taken). */
static int rebuild_in(const ev_opts *o, const char *file, eddy_store *st, eddy_loop *loop,
                      const eddy_registry *reg, eddy_flow *flow)
{
    int idx = find_model_node(flow, file, o->model);
    if (idx < 0) {
        eddy_flow_free(flow);
        return 1;
    }
    for (int i = 0; i < flow->node_count; i++)
        flow->nodes[i].disabled = i != idx;
    char id[256];
    snprintf(id, sizeof(id), "%s", flow->nodes[idx].id);
    eddy_err err;
    eddy_err_clear(&err);
    eddy_engine_opts eo = {.store = st};
    eddy_engine *engine = eddy_engine_new(loop, reg, &eo, &err);
    if (!engine) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        eddy_flow_free(flow);
        return 1;
    }
    rebuild_run r = {.loop = loop, .model = o->model, .start = eddy_loop_now(loop)};
    r.shown = r.start;
    eddy_engine_hooks hooks = {.on_uncaught = rebuild_uncaught, .data = &r};
    eddy_engine_set_hooks(engine, &hooks);
    eddy_problems problems = {0};
    int status = 1;
    if (eddy_engine_start(engine, flow, &problems) != EDDY_OK) {
        print_problems(&problems, file);
        goto out;
    }
    eddy_node *node = eddy_engine_find(engine, id);
    r.total = eddy_store_last_position(st);
    fprintf(stderr, "rebuilding model '%s' (node %s of %s) from %s: %llu events in the log\n",
            o->model, id, file, eddy_store_path(st), (unsigned long long)r.total);
    if (!node || eddy_node_command(node, "rebuild", NULL, &err) != EDDY_OK) {
        fprintf(stderr, "eddy events: model '%s': %s\n", o->model,
                node ? err.msg : "its node did not start");
        goto out;
    }
    if (!eddy_timer_start(loop, 0, rebuild_poll, &r, NULL)) {
        fprintf(stderr, "eddy events: out of memory\n");
        goto out;
    }
    eddy_loop_run(loop);
    rebuild_show(&r);
    json_t *model = eddy_readmodel_query(o->model, NULL, 0, &err);
    if (r.failed || !model) {
        fprintf(stderr, "eddy events: rebuilding model '%s' failed: %s\n", o->model,
                r.failed ? r.error : err.msg);
    } else {
        double secs = (double)(eddy_loop_now(loop) - r.start) / 1000.0;
        printf("model '%s' rebuilt: %llu events read, %llu keys, at position %llu, in %.1f s\n",
               o->model, (unsigned long long)r.done,
               (unsigned long long)json_integer_value(json_object_get(model, "count")),
               (unsigned long long)json_integer_value(json_object_get(model, "position")), secs);
        status = 0;
    }
    json_decref(model);
out:
    eddy_engine_free(engine); /* stops the node; a cut-short rebuild stays marked */
    return status;
}

static int cmd_rebuild(const ev_opts *o, eddy_events_registry_fn make_registry)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_store_opts so = {0};
    if (o->fsync && eddy_store_sync_parse(o->fsync, &so, &err) != EDDY_OK) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        return 2;
    }
    char deployed[4096], mdb[4096];
    snprintf(deployed, sizeof(deployed), "%s/flows.json", o->data);
    snprintf(mdb, sizeof(mdb), "%s/%s", o->data, EDDY_STORE_FILE);
    const char *file = o->flow ? o->flow : deployed;
    struct stat sb;
    if (!o->flow && stat(deployed, &sb) != 0) {
        fprintf(stderr, "eddy events: no --flow given and %s (the deployed flows) is missing\n",
                deployed);
        return 1;
    }
    if (stat(mdb, &sb) != 0) { /* opening would create an empty store */
        fprintf(stderr, "eddy events: no event store in %s (%s: %s)\n", o->data, mdb,
                strerror(errno));
        return 1;
    }
    eddy_registry *reg = make_registry(o->node_dirs, o->node_dir_count);
    if (!reg)
        return 1;
    eddy_problems problems = {0};
    eddy_flow *flow = eddy_flow_load_file(file, reg, &problems);
    if (!flow) {
        print_problems(&problems, file);
        eddy_registry_free(reg);
        return 1;
    }
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_REAL, &err);
    eddy_store *st = loop ? eddy_store_open(o->data, &so, &err) : NULL;
    int status = 1;
    if (!st || eddy_store_attach(st, loop, &err) != EDDY_OK) {
        fprintf(stderr, "eddy events: %s\n", err.msg);
        eddy_flow_free(flow);
    } else {
        status = rebuild_in(o, file, st, loop, reg, flow);
    }
    eddy_store_close(st); /* commits what is pending */
    eddy_loop_free(loop);
    eddy_registry_free(reg);
    return status;
}

/* ---- the guard: every command runs in a child, so that a fault is a message ----
 *
 * LMDB trusts its pages; a damaged B-tree page can make it fault. The parent waits for
 * the child and turns a fault into "the file is damaged", with the last position the
 * child reported through guard_note. */

static int run_command(ev_opts *o)
{
    if (strcmp(o->cmd, "stats") == 0)
        return cmd_stats(o);
    if (strcmp(o->cmd, "tail") == 0)
        return cmd_tail(o);
    if (strcmp(o->cmd, "read") == 0)
        return cmd_read(o, false);
    if (strcmp(o->cmd, "export") == 0)
        return cmd_read(o, true);
    if (strcmp(o->cmd, "import") == 0)
        return cmd_import(o);
    return cmd_check(o);
}

static int run_guarded(ev_opts *o)
{
    int fds[2];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) != 0)
        return run_command(o); /* no guard, but still the command */
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return run_command(o);
    }
    if (pid == 0) {
        close(fds[0]);
        guard_fd = fds[1];
        int rc = run_command(o);
        fflush(stdout);
        fflush(stderr);
        _exit(rc); /* the child's end; the parent returns the status */
    }
    close(fds[1]);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_term;
    sigaction(SIGINT, &ign, &old_int); /* the child decides what an interrupt means */
    sigaction(SIGTERM, &ign, &old_term);
    uint64_t v[2], last[2] = {0, 0};
    ssize_t n;
    while ((n = read(fds[0], v, sizeof(v))) == (ssize_t)sizeof(v) || (n < 0 && errno == EINTR))
        if (n > 0)
            memcpy(last, v, sizeof(v));
    close(fds[0]);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (WIFEXITED(ws))
        return WEXITSTATUS(ws);
    int sig = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
    if (sig == SIGINT || sig == SIGTERM || sig == SIGPIPE)
        return 128 + sig;
    fprintf(stderr,
            "eddy events: %s/%s is damaged: reading it crashed (%s) after %llu of %llu "
            "records; export what can be read (eddy events export --to POSITION) and restore "
            "from a backup\n",
            o->data, EDDY_STORE_FILE, strsignal(sig), (unsigned long long)last[0],
            (unsigned long long)last[1]);
    return 1;
}

int eddy_events_main(int argc, char **argv, eddy_events_registry_fn make_registry)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage_events, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    ev_opts o = {.cmd = argv[1]};
    static const char *const known[] = {"stats",  "tail",  "read",   "export",
                                        "import", "check", "rebuild"};
    bool ok = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ok |= strcmp(o.cmd, known[i]) == 0;
    if (!ok) {
        fprintf(stderr, "eddy events: unknown command '%s'\n\n%s", o.cmd, usage_events);
        return 2;
    }
    int rc = parse_ev_opts(argc - 1, argv + 1, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (strcmp(o.cmd, "rebuild") == 0) /* writes: its own errors, no guard child */
        return cmd_rebuild(&o, make_registry);
    return run_guarded(&o);
}

/* ---- eddy run ---- */

int eddy_events_open_for_flow(const eddy_flow *flow, const char *data_dir, const char *fsync,
                              eddy_loop *loop, eddy_store **out)
{
    *out = NULL;
    eddy_err err;
    eddy_err_clear(&err);
    eddy_store_opts so = {0};
    if (fsync && eddy_store_sync_parse(fsync, &so, &err) != EDDY_OK) {
        fprintf(stderr, "eddy: --fsync: %s\n", err.msg);
        return 1;
    }
    bool needed = false;
    for (int i = 0; i < flow->node_count && !needed; i++)
        needed = flow->nodes[i].ntype && (flow->nodes[i].ntype->flags & EDDY_NODE_STORE) &&
                 !flow->nodes[i].disabled;
    if (!needed)
        return 0;
    eddy_store *st = eddy_store_open(data_dir, &so, &err);
    if (!st) {
        fprintf(stderr, "eddy: %s\n", err.msg);
        return 1;
    }
    if (eddy_store_attach(st, loop, &err) != EDDY_OK) {
        fprintf(stderr, "eddy: %s\n", err.msg);
        eddy_store_close(st);
        return 1;
    }
    *out = st;
    return 0;
}
