/* chain.c: messages per second through inject -> change -> switch -> 10 x change -> sink on
 * one core, and eddy's peak RSS with that flow loaded. The inject node is triggered
 * through its input (as the editor's button does), so each message is created by inject
 * like a real one. Usage: bench_chain [MESSAGES] (default 2,000,000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "engine.h"
#include "log.h"
#include "mem.h"
#include "registry.h"

static long received;

static void sink_input(eddy_node *node, void *state, json_t *msg)
{
    received++;
    json_decref(msg);
}

static const eddy_node_type sink_type = {
    .name = "bench sink", .inputs = 1, .outputs = 0, .input = sink_input};

static char *chain_flow(void)
{
    static char buf[16384];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                          "[{\"id\":\"t\",\"type\":\"tab\"},"
                          "{\"id\":\"inj\",\"type\":\"inject\",\"z\":\"t\",\"props\":[{\"p\":"
                          "\"payload\"},{\"p\":\"topic\",\"vt\":\"str\"}],\"payload\":\"21.5\","
                          "\"payloadType\":\"num\",\"topic\":\"glasshouse/1/temp\",\"repeat\":"
                          "\"\",\"once\":false,\"wires\":[[\"c0\"]]},"
                          "{\"id\":\"c0\",\"type\":\"change\",\"z\":\"t\",\"rules\":[{\"t\":"
                          "\"set\",\"p\":\"unit\",\"pt\":\"msg\",\"to\":\"C\",\"tot\":\"str\"}],"
                          "\"wires\":[[\"sw\"]]},"
                          "{\"id\":\"sw\",\"type\":\"switch\",\"z\":\"t\",\"property\":\"payload\","
                          "\"propertyType\":\"msg\",\"rules\":[{\"t\":\"gt\",\"v\":\"10\",\"vt\":"
                          "\"num\"},{\"t\":\"else\"}],\"checkall\":\"false\",\"outputs\":2,"
                          "\"wires\":[[\"c1\"],[]]}");
    for (int i = 1; i <= 10; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                              ",{\"id\":\"c%d\",\"type\":\"change\",\"z\":\"t\",\"rules\":[{\"t\":"
                              "\"set\",\"p\":\"step%d\",\"pt\":\"msg\",\"to\":\"%d\",\"tot\":"
                              "\"num\"}],\"wires\":[[\"%s%d\"]]}",
                              i, i, i, i < 10 ? "c" : "sink", i < 10 ? i + 1 : 0);
    snprintf(buf + n, sizeof(buf) - n, ",{\"id\":\"sink0\",\"type\":\"bench sink\",\"z\":\"t\"}]");
    return buf;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long total = argc > 1 ? atol(argv[1]) : 2000000;
    eddy_mem_install();
    eddy_log_set_level(EDDY_LOG_WARN);
    eddy_err err;
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, &err);
    eddy_registry *reg = eddy_registry_new(&err);
    eddy_registry_add_builtin(reg, &err);
    eddy_registry_add(reg, &sink_type, &err);
    eddy_engine *engine = eddy_engine_new(loop, reg, NULL, &err);
    eddy_problems problems = {0};
    const char *text = chain_flow();
    eddy_flow *flow = eddy_flow_load(text, strlen(text), "chain", reg, &problems);
    if (!flow || eddy_engine_start(engine, flow, &problems) != EDDY_OK) {
        eddy_problems_print(&problems, stderr);
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss_loaded = ru.ru_maxrss;
    eddy_node *inject = eddy_engine_find(engine, "inj");
    double start = cpu_seconds();
    const long batch = 1000; /* stay well under the queue bound */
    for (long sent = 0; sent < total; sent += batch) {
        for (long i = 0; i < batch; i++)
            eddy_engine_inject(engine, inject, json_object());
        eddy_loop_settle(loop);
    }
    double secs = cpu_seconds() - start;
    getrusage(RUSAGE_SELF, &ru);
    printf("chain: %ld messages through 13 nodes in %.3f CPU s: %.0f msg/s, %.0f ns/msg\n",
           received, secs, (double)received / secs, secs * 1e9 / (double)received);
    printf("rss: %ld KiB with the flow loaded, %ld KiB peak\n", rss_loaded, ru.ru_maxrss);
    eddy_engine_free(engine);
    eddy_loop_free(loop);
    eddy_registry_free(reg);
    eddy_mem_release_cache();
    return received == total ? 0 : 1;
}
