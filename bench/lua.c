/* lua.c: the cost of a `lua` node against a native `switch` doing the same threshold test
 * (`payload.temperature > 30`), in one run. Each message ({_msgid, topic, payload:
 * {temperature, humidity}}, half of them over the threshold) is made by the benchmark and
 * queued to the node under test, whose output goes to a counting sink; a third run sends
 * the same messages straight to the sink, and its cost is subtracted to give the node's
 * own. Usage: bench_lua [MESSAGES [NODE]] (default 1,000,000; NODE runs only that node,
 * lua, switch or sink, for profiling). */
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

static json_t *reading(long i)
{
    json_t *msg = eddy_msg_new();
    json_object_set_new(msg, "topic", json_string("glasshouse/1/climate"));
    json_object_set_new(msg, "payload",
                        json_pack("{s:f,s:i}", "temperature",
                                  (i & 1) ? 31.5 : 24.0 + (double)(i % 5), "humidity", 60));
    return msg;
}

/* CPU seconds to push 'total' messages through 'node'. */
static double run(eddy_engine *engine, eddy_loop *loop, const char *node_id, long total)
{
    eddy_node *node = eddy_engine_find(engine, node_id);
    const long batch = 1000; /* well under the queue bound */
    double start = cpu_seconds();
    for (long sent = 0; sent < total; sent += batch) {
        for (long i = 0; i < batch; i++)
            eddy_engine_inject(engine, node, reading(sent + i));
        eddy_loop_settle(loop);
    }
    return cpu_seconds() - start;
}

int main(int argc, char **argv)
{
    long total = argc > 1 ? atol(argv[1]) : 1000000;
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
    received = 0;
    double base = run(engine, loop, "sink", total);
    long base_received = received;
    received = 0;
    double sw = run(engine, loop, "switch", total);
    long sw_received = received;
    received = 0;
    double lua = run(engine, loop, "lua", total);
    long lua_received = received;
    double sw_net = sw - base, lua_net = lua - base;
    printf("baseline (message made, queued, sunk): %.0f ns/msg\n", base * 1e9 / (double)total);
    printf("switch: %.0f msg/s, %.3f us/msg (%.3f us/msg of its own), %ld passed\n",
           (double)total / sw, sw * 1e6 / (double)total, sw_net * 1e6 / (double)total, sw_received);
    printf("lua:    %.0f msg/s, %.3f us/msg (%.3f us/msg of its own), %ld passed\n",
           (double)total / lua, lua * 1e6 / (double)total, lua_net * 1e6 / (double)total,
           lua_received);
    printf("lua/switch rate: %.2f (end to end), %.2f (own cost)\n", sw / lua, sw_net / lua_net);
    eddy_engine_free(engine);
    eddy_loop_free(loop);
    eddy_registry_free(reg);
    eddy_mem_release_cache();
    return base_received == total && sw_received == lua_received ? 0 : 1;
}
