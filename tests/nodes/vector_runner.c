/* vector_runner.c: runs the JSON test vectors of tests/nodes/cases (format in
 * tests/nodes/README.md). Usage: vector_runner FILE [CASE-NAME]. Prints one line per case
 * and a closing "N passed, N failed" line; exits 1 if any case failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "log.h"
#include "mem.h"
#include "store.h"

typedef struct run {
    const char *file, *case_name;
    char why[2048];
    /* what a restart step needs to start the flow again */
    const char *flow; /* the case's flow as text */
    eddy_harness_opts opts;
    char *data_dir; /* the case's data folder ("store": true); NULL = no store */
} run;

static int fail(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
    return -1;
}

static char *show(const json_t *v)
{
    return v ? eddy_json_dumps(v, 0) : eddy_strdup("(missing)");
}

/* true if 'actual' has everything 'expected' asks for (see README). */
static bool subset(const json_t *expected, const json_t *actual, char *path, size_t size)
{
    if (json_is_string(expected) && strcmp(json_string_value(expected), "$any") == 0)
        return actual != NULL;
    if (!actual)
        return false;
    if (json_is_object(expected)) {
        if (!json_is_object(actual))
            return false;
        const char *key;
        json_t *ev;
        json_object_foreach((json_t *)expected, key, ev)
        {
            json_t *av = json_object_get(actual, key);
            size_t len = strlen(path);
            snprintf(path + len, size - len, ".%s", key);
            if (json_is_string(ev) && strcmp(json_string_value(ev), "$absent") == 0) {
                if (av)
                    return false;
            } else if (!subset(ev, av, path, size)) {
                return false;
            }
            path[len] = '\0';
        }
        return true;
    }
    if (json_is_array(expected)) {
        if (!json_is_array(actual) || json_array_size(actual) != json_array_size(expected))
            return false;
        for (size_t i = 0; i < json_array_size(expected); i++) {
            size_t len = strlen(path);
            snprintf(path + len, size - len, "[%zu]", i);
            if (!subset(json_array_get(expected, i), json_array_get(actual, i), path, size))
                return false;
            path[len] = '\0';
        }
        return true;
    }
    return eddy_json_equal(expected, actual);
}

static int step_expect(run *r, eddy_harness *h, const json_t *step)
{
    const char *id = json_string_value(json_object_get(step, "expect"));
    const json_t *want = json_object_get(step, "msgs");
    json_t *got = eddy_harness_take(h, id);
    int rc = 0;
    if (json_array_size(got) != json_array_size(want)) {
        char *g = show(got);
        rc = fail(r, "helper %s: expected %zu message(s), got %zu: %s", id, json_array_size(want),
                  json_array_size(got), g);
        eddy_free(g);
    } else {
        for (size_t i = 0; i < json_array_size(want); i++) {
            char path[512] = "msg";
            if (!subset(json_array_get(want, i), json_array_get(got, i), path, sizeof(path))) {
                char *w = show(json_array_get(want, i)), *g = show(json_array_get(got, i));
                rc = fail(r, "helper %s message %zu differs at %s:\n  expected %s\n  actual   %s",
                          id, i, path, w, g);
                eddy_free(w);
                eddy_free(g);
                break;
            }
        }
    }
    json_decref(got);
    return rc;
}

static bool event_matches(const json_t *want, const json_t *ev)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)want, key, v)
    {
        if (strcmp(key, "text") == 0) {
            const char *t = json_string_value(json_object_get(ev, "text"));
            if (!t || !strstr(t, json_string_value(v)))
                return false;
        } else {
            char path[256] = "";
            if (!subset(v, json_object_get(ev, key), path, sizeof(path)))
                return false;
        }
    }
    return true;
}

static int step_events(run *r, eddy_harness *h, const json_t *step)
{
    const json_t *want = json_object_get(step, "expect_events");
    bool exact = json_is_true(json_object_get(step, "exact"));
    json_t *got = eddy_harness_take_events(h);
    /* Only kinds the expectation mentions count, unless exact. */
    json_t *kinds = json_object();
    size_t i;
    json_t *w;
    json_array_foreach(want, i, w)
        json_object_set_new(kinds,
                            json_string_value(json_object_get(w, "kind"))
                                ? json_string_value(json_object_get(w, "kind"))
                                : "",
                            json_true());
    json_t *relevant = json_array();
    json_t *ev;
    json_array_foreach(
        got, i,
        ev) if (exact || json_object_get(kinds, json_string_value(json_object_get(ev, "kind"))))
        json_array_append(relevant, ev);
    int rc = 0;
    size_t at = 0;
    json_array_foreach(want, i, w)
    {
        while (at < json_array_size(relevant) && !event_matches(w, json_array_get(relevant, at)))
            at++;
        if (at == json_array_size(relevant)) {
            char *ws = show(w), *gs = show(got);
            rc = fail(r, "expected event %s (in order) among %s", ws, gs);
            eddy_free(ws);
            eddy_free(gs);
            break;
        }
        at++;
    }
    if (rc == 0 && exact && json_array_size(relevant) != json_array_size(want)) {
        char *gs = show(got);
        rc = fail(r, "expected exactly %zu event(s), got %s", json_array_size(want), gs);
        eddy_free(gs);
    }
    json_decref(kinds);
    json_decref(relevant);
    json_decref(got);
    return rc;
}

static int step_context(run *r, eddy_harness *h, const json_t *step)
{
    const char *where = json_string_value(json_object_get(step, "context"));
    const char *key = json_string_value(json_object_get(step, "key"));
    const json_t *want = json_object_get(step, "equals");
    eddy_engine *e = eddy_harness_engine(h);
    json_t *got = NULL;
    if (strcmp(where, "global") == 0) {
        got = eddy_path_lookup(eddy_engine_global_context(e), key);
    } else {
        const char *node_id = strncmp(where, "node:", 5) == 0 ? where + 5 : NULL;
        eddy_node *n = NULL;
        if (node_id) {
            n = eddy_engine_find(e, node_id);
        } else { /* flow context of tab "t" (through any node on it) */
            const char *tab = strncmp(where, "flow:", 5) == 0 ? where + 5 : "t";
            const eddy_flow *f = eddy_engine_flow(e);
            for (int i = 0; f && i < f->node_count && !n; i++)
                if (f->nodes[i].tab && strcmp(f->nodes[i].tab, tab) == 0)
                    n = eddy_engine_find(e, f->nodes[i].id);
        }
        if (!n)
            return fail(r, "context step: no node for '%s'", where);
        got = eddy_node_context_get(n, node_id ? EDDY_CTX_NODE : EDDY_CTX_FLOW, key);
    }
    char path[256] = "";
    if (!subset(want, got, path, sizeof(path))) {
        char *w = show(want), *g = show(got);
        fail(r, "context %s %s: expected %s, got %s", where, key, w, g);
        eddy_free(w);
        eddy_free(g);
        return -1;
    }
    return 0;
}

static int state_entry(const char *key, size_t key_len, const void *value, size_t len, void *data)
{
    char k[EDDY_STORE_STATE_KEY_MAX + 1];
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    eddy_err err;
    json_t *v = eddy_json_loadb(value, len, &err);
    json_object_set_new(data, k, v ? v : json_stringn(value, len));
    return 0;
}

/* {"node_state": OWNER, "keys": [...], "equals": {...}}: the owner's node state records in
 * the case's store (committed or pending): exactly the keys listed, and each record a
 * superset of the one in 'equals' (parsed as JSON). */
static int step_node_state(run *r, const json_t *step)
{
    if (!r->opts.store)
        return fail(r, "node_state step: the case has no store (\"store\": true)");
    const char *owner = json_string_value(json_object_get(step, "node_state"));
    json_t *got = json_object();
    eddy_err err;
    int rc = 0;
    if (eddy_store_state_scan(r->opts.store, owner, state_entry, got, &err) != EDDY_OK)
        rc = fail(r, "node_state: %s", err.msg);
    const json_t *keys = json_object_get(step, "keys");
    if (rc == 0 && keys) {
        bool same = json_array_size(keys) == json_object_size(got);
        size_t i;
        json_t *k;
        json_array_foreach(keys, i, k) same &= json_object_get(got, json_string_value(k)) != NULL;
        if (!same) {
            char *w = show(keys), *g = show(got);
            rc = fail(r, "node state of %s: expected keys %s, got %s", owner, w, g);
            eddy_free(w);
            eddy_free(g);
        }
    }
    const json_t *want = json_object_get(step, "equals");
    char path[512] = "state";
    if (rc == 0 && want && !subset(want, got, path, sizeof(path))) {
        char *w = show(want), *g = show(got);
        rc = fail(r, "node state of %s differs at %s:\n  expected %s\n  actual   %s", owner, path,
                  w, g);
        eddy_free(w);
        eddy_free(g);
    }
    json_decref(got);
    return rc;
}

/* {"restart": true, "downtime": MS}: stops the flow (its nodes close, the store commits
 * and closes), reopens the store from its folder and starts the same flow on a fresh loop
 * whose wall clock goes on where the old one stopped, plus 'downtime'. */
static int step_restart(run *r, eddy_harness **h, const json_t *step)
{
    int64_t wall = eddy_loop_wall(eddy_harness_loop(*h)) +
                   json_integer_value(json_object_get(step, "downtime"));
    int leaked = eddy_harness_free(*h);
    *h = NULL;
    eddy_store_close(r->opts.store);
    r->opts.store = NULL;
    if (leaked)
        return fail(r, "%d timer(s) still alive after the flow stopped", leaked);
    eddy_err err;
    if (r->data_dir && !(r->opts.store = eddy_store_open(r->data_dir, NULL, &err)))
        return fail(r, "reopening the store: %s", err.msg);
    r->opts.wall_start = wall;
    eddy_problems problems = {0};
    *h = eddy_harness_new(r->flow, &r->opts, &problems);
    int rc = 0;
    if (!*h) {
        char line[1024] = "(no detail)";
        if (problems.count)
            eddy_err_format(&problems.items[0], line, sizeof(line));
        rc = fail(r, "the flow did not start again: %s", line);
    }
    eddy_problems_clear(&problems);
    return rc;
}

static int run_steps(run *r, eddy_harness **hp, const json_t *steps)
{
    size_t i;
    json_t *step;
    json_array_foreach(steps, i, step)
    {
        int rc = 0;
        eddy_harness *h = *hp;
        if (json_object_get(step, "restart")) {
            rc = step_restart(r, hp, step);
        } else if (json_object_get(step, "send")) {
            const char *id = json_string_value(json_object_get(step, "send"));
            json_t *msg = json_deep_copy(json_object_get(step, "msg"));
            if (!msg)
                msg = json_object();
            if (eddy_harness_send(h, id, msg) != EDDY_OK)
                rc = fail(r, "step %zu: no running node '%s'", i + 1, id);
            eddy_harness_settle(h);
        } else if (json_object_get(step, "advance")) {
            eddy_harness_advance(h, json_integer_value(json_object_get(step, "advance")));
        } else if (json_object_get(step, "expect")) {
            rc = step_expect(r, h, step);
        } else if (json_object_get(step, "expect_events")) {
            rc = step_events(r, h, step);
        } else if (json_object_get(step, "node_state")) {
            rc = step_node_state(r, step);
        } else if (json_object_get(step, "context")) {
            rc = step_context(r, h, step);
        } else {
            rc = fail(r, "step %zu: unknown step", i + 1);
        }
        if (rc) {
            char tmp[sizeof(r->why)];
            memcpy(tmp, r->why, sizeof(tmp));
            snprintf(r->why, sizeof(r->why), "step %zu: %.2000s", i + 1, tmp);
            return rc;
        }
    }
    return 0;
}

static int run_case(run *r, const json_t *c)
{
    char *flow = eddy_json_dumps(json_object_get(c, "flow"), 0);
    r->flow = flow;
    r->opts.wall_start = json_integer_value(json_object_get(c, "wall"));
    eddy_problems problems = {0};
    eddy_harness *h = NULL;
    int rc = 0;
    eddy_err err;
    if (json_is_true(json_object_get(c, "store"))) {
        r->data_dir = eddy_test_tmpdir();
        if (!r->data_dir || !(r->opts.store = eddy_store_open(r->data_dir, NULL, &err)))
            rc = fail(r, "cannot open a store in a fresh folder: %s",
                      r->data_dir ? err.msg : "no folder");
    }
    if (rc == 0)
        h = eddy_harness_new(flow, &r->opts, &problems);
    const char *load_error = json_string_value(json_object_get(c, "load_error"));
    if (rc != 0) {
        /* reported above */
    } else if (load_error) {
        bool found = false;
        for (int i = 0; i < problems.count; i++)
            found |= strstr(problems.items[i].msg, load_error) != NULL &&
                     problems.items[i].node_id[0] != '\0';
        if (h)
            rc = fail(r, "the flow loaded, but a problem containing '%s' was expected", load_error);
        else if (!found) {
            char line[1024] = "(none)";
            if (problems.count)
                eddy_err_format(&problems.items[0], line, sizeof(line));
            rc = fail(r, "expected a problem naming a node and containing '%s'; first was: %s",
                      load_error, line);
        }
    } else if (!h) {
        char line[1024] = "(no detail)";
        if (problems.count)
            eddy_err_format(&problems.items[0], line, sizeof(line));
        rc = fail(r, "the flow did not load: %s", line);
    } else {
        rc = run_steps(r, &h, json_object_get(c, "steps"));
    }
    int leaked = eddy_harness_free(h);
    if (rc == 0 && leaked)
        rc = fail(r, "%d timer(s) still alive after the flow stopped", leaked);
    eddy_store_close(r->opts.store);
    r->opts.store = NULL;
    eddy_test_rmdir(r->data_dir);
    r->data_dir = NULL;
    eddy_problems_clear(&problems);
    eddy_free(flow);
    return rc;
}

static void quiet_log(eddy_log_level level, const char *line, void *data)
{
    (void)level;
    (void)line;
    (void)data;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: vector_runner FILE [CASE-NAME]\n");
        return 2;
    }
    eddy_mem_install();
    if (!getenv("EDDY_TEST_LOG"))
        eddy_log_set_hook(quiet_log, NULL);
    eddy_err err;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", argv[1]);
        return 2;
    }
    static char text[4 << 20];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    json_t *doc = eddy_json_loadb(text, len, &err);
    if (!doc) {
        fprintf(stderr, "%s:%d:%d: %s\n", argv[1], err.line, err.column, err.msg);
        return 2;
    }
    int passed = 0, failed = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "cases"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        if (argc > 2 && (!name || strcmp(name, argv[2]) != 0))
            continue;
        run r = {.file = argv[1], .case_name = name};
        if (run_case(&r, c) == 0) {
            passed++;
            printf("ok   %s\n", name ? name : "(unnamed)");
        } else {
            failed++;
            printf("FAIL %s\n     %s\n", name ? name : "(unnamed)", r.why);
        }
    }
    json_decref(doc);
    if (passed + failed == 0) {
        fprintf(stderr, "no case ran\n");
        return 1;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
