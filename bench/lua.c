/* lua.c: the cost of a `lua` node against a native `switch` doing the same threshold test
 * (`payload.temperature > 30`), in one run. Each message ({_msgid, topic, payload:
 * {temperature, humidity}}, half of them over the threshold) is made by the benchmark and
 * queued to the node under test, whose output goes to a counting sink; another run sends
 * the same messages straight to the sink, and its cost is subtracted to give the node's
 * own. A second `lua` node does the same test but also marks the message it passes
 * (`msg.alert = true`), so it is not read-only (runtime/lua_inspect.h) and its result is
 * converted back. The four run in interleaved rounds and each one's best round is reported.
 * Usage: bench_lua [MESSAGES [NODE]] (default 500,000 per round; NODE runs only that node,
 * lua, lua-write, switch or sink, once, for profiling). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "registry.h"

static long received;

static void sink_input(eddy_node *node, void *state, json_t *msg)
{
    received++;
    json_decref(msg);
}

static const eddy_node_type sink_type = {
    .name = "bench sink", .inputs = 1, .outputs = 0, .input = sink_input};

static const char flow_text[] =
    "[{\"id\":\"t\",\"type\":\"tab\"},"
    "{\"id\":\"lua\",\"type\":\"lua\",\"z\":\"t\",\"outputs\":1,"
    "\"func\":\"if msg.payload.temperature > 30 then return msg end\",\"wires\":[[\"sink\"]]},"
    "{\"id\":\"lua-write\",\"type\":\"lua\",\"z\":\"t\",\"outputs\":1,"
    "\"func\":\"if msg.payload.temperature > 30 then msg.alert = true return msg end\","
    "\"wires\":[[\"sink\"]]},"
    "{\"id\":\"switch\",\"type\":\"switch\",\"z\":\"t\",\"property\":\"payload.temperature\","
    "\"propertyType\":\"msg\",\"rules\":[{\"t\":\"gt\",\"v\":\"30\",\"vt\":\"num\"}],"
    "\"checkall\":\"true\",\"outputs\":1,\"wires\":[[\"sink\"]]},"
    "{\"id\":\"sink\",\"type\":\"bench sink\",\"z\":\"t\"}]";

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A reading as a source would make it: a copy of a template with a fresh id and value. */
static json_t *reading(const json_t *template, long i)
{
    json_t *msg = json_deep_copy(template);
    char id[17];
    eddy_msg_new_id(id);
    json_object_set_new(msg, "_msgid", json_string(id));
    json_object_set_new(json_object_get(msg, "payload"), "temperature",
                        json_real((i & 1) ? 31.5 : 24.0 + (double)(i % 5)));
    return msg;
}

/* CPU seconds to push 'total' messages through 'node'. */
static double run(eddy_engine *engine, eddy_loop *loop, const char *node_id, long total)
{
    static const char text[] = "{\"topic\":\"glasshouse/1/climate\",\"payload\":"
                               "{\"temperature\":20.5,\"humidity\":60}}";
    json_t *template = eddy_json_loadb(text, sizeof(text) - 1, NULL);
    eddy_node *node = eddy_engine_find(engine, node_id);
    const long batch = 1000; /* well under the queue bound */
    double start = cpu_seconds();
    for (long sent = 0; sent < total; sent += batch) {
        for (long i = 0; i < batch; i++)
            eddy_engine_inject(engine, node, reading(template, sent + i));
        eddy_loop_settle(loop);
    }
    double secs = cpu_seconds() - start;
    json_decref(template);
    return secs;
}

int main(int argc, char **argv)
{
    long total = argc > 1 ? atol(argv[1]) : 500000;
    int rounds = 5;
    eddy_mem_install();
    eddy_log_set_level(EDDY_LOG_WARN);
    eddy_err err;
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, &err);
    eddy_registry *reg = eddy_registry_new(&err);
    eddy_registry_add_builtin(reg, &err);
    eddy_registry_add(reg, &sink_type, &err);
    eddy_engine *engine = eddy_engine_new(loop, reg, NULL, &err);
    eddy_problems problems = {0};
    eddy_flow *flow = eddy_flow_load(flow_text, strlen(flow_text), "bench-lua", reg, &problems);
    if (!flow || eddy_engine_start(engine, flow, &problems) != EDDY_OK) {
        eddy_problems_print(&problems, stderr);
        return 1;
    }
    run(engine, loop, "lua", total / 10); /* warm up caches and allocators */
    run(engine, loop, "switch", total / 10);
    if (argc > 2) { /* profiling one node: bench_lua N lua|switch|sink */
        run(engine, loop, argv[2], total);
        eddy_engine_free(engine);
        eddy_loop_free(loop);
        eddy_registry_free(reg);
        return 0;
    }
    /* Interleaved rounds; each variant's best round counts (other processes on the
     * machine only ever add time). */
    enum { VARIANTS = 4 };
    const char *names[VARIANTS] = {"sink", "switch", "lua", "lua-write"};
    double best[VARIANTS] = {1e30, 1e30, 1e30, 1e30};
    long passed[VARIANTS] = {0, 0, 0, 0};
    for (int round = 0; round < rounds; round++) {
        for (int v = 0; v < VARIANTS; v++) {
            received = 0;
            double t = run(engine, loop, names[v], total);
            if (t < best[v])
                best[v] = t;
            passed[v] = received;
        }
    }
    double per[VARIANTS];
    for (int v = 0; v < VARIANTS; v++)
        per[v] = best[v] * 1e6 / (double)total;
    printf("messages: %ld per round, best of %d rounds\n", total, rounds);
    printf("baseline (copy a message, queue it, sink it): %.3f us/msg\n", per[0]);
    printf("switch: %8.0f msg/s  %.3f us/msg end to end, %.3f us/msg its own  (%ld passed)\n",
           1e6 / per[1], per[1], per[1] - per[0], passed[1]);
    printf("lua:    %8.0f msg/s  %.3f us/msg end to end, %.3f us/msg its own  (%ld passed)\n",
           1e6 / per[2], per[2], per[2] - per[0], passed[2]);
    printf("lua-write: %5.0f msg/s  %.3f us/msg end to end, %.3f us/msg its own  (%ld passed)\n",
           1e6 / per[3], per[3], per[3] - per[0], passed[3]);
    printf("lua rate / switch rate: %.2f end to end, %.2f own cost\n", per[1] / per[2],
           (per[1] - per[0]) / (per[2] - per[0]));
    eddy_engine_free(engine);
    eddy_loop_free(loop);
    eddy_registry_free(reg);
    eddy_mem_release_cache();
    return passed[0] == total && passed[1] == passed[2] && passed[2] == passed[3] ? 0 : 1;
}
