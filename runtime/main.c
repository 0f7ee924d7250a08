/* main.c: the eddy command line. `eddy run` loads a Node-RED flow file and runs it until
 * SIGINT/SIGTERM; `eddy check` validates without running; `eddy help` explains. This is
 * the only file allowed to exit the process. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "admin.h"
#include "engine.h"
#include "events_cli.h"
#include "flow.h"
#include "log.h"
#include "loop.h"
#include "lua_type.h"
#include "mem.h"
#include "registry.h"
#include "webdir.h"

#define DEFAULT_PORT  1880
#define MAX_NODE_DIRS 16

typedef struct cli_opts {
    const char *flow_file;
    const char *data_dir;
    int port;
    const char *log_level;
    const char *fsync;                    /* event store durability policy; NULL = always */
    const char *listen;                   /* editor address; NULL = 127.0.0.1 */
    const char *settings;                 /* settings file (adminAuth, credentialSecret) */
    bool no_editor;                       /* run without the editor and admin API */
    const char *node_dirs[MAX_NODE_DIRS]; /* --nodes, in order */
    int node_dir_count;
} cli_opts;

static const char usage_main[] =
    "eddy " EDDY_VERSION " - a dataflow runtime for Node-RED flows, in C\n"
    "\n"
    "Usage: eddy <command> [options]\n"
    "\n"
    "Commands:\n"
    "  run FLOWS.json    load a Node-RED flow file and run it until SIGINT/SIGTERM\n"
    "  check FLOWS.json  validate a flow file without running it; lists every problem\n"
    "  nodes             list the node types this eddy knows\n"
    "  events CMD        read, export, import and inspect the event store\n"
    "  help [COMMAND]    show help for a command\n"
    "\n"
    "Options:\n"
    "  -h, --help        show this help\n"
    "  -V, --version     print the version\n";

static const char usage_run[] =
    "Usage: eddy run [FLOWS.json] [--data DIR] [--port N] [--listen ADDR] [--settings FILE]\n"
    "                [--no-editor] [--log-level LEVEL] [--nodes DIR]\n"
    "\n"
    "Loads FLOWS.json (a Node-RED flow file, as exported by Node-RED), validates it and\n"
    "runs it on one event loop, with Node-RED's editor at http://127.0.0.1:1880/. Flows\n"
    "deployed from the editor are saved in DIR/flows.json and run from there on the next\n"
    "start (FLOWS.json is then only the seed for an empty data folder). SIGINT or SIGTERM\n"
    "stops it cleanly: queued messages are delivered, every node is closed, and eddy exits\n"
    "0. A flow that does not validate is not started; the problems are listed as by\n"
    "`eddy check` and eddy exits 1.\n"
    "\n"
    "  --data DIR        data folder (event store, deployed flows); default ./eddy-data;\n"
    "                    the event store is opened only for flows with event nodes\n"
    "  --fsync POLICY    event store durability: always (default), interval[:MS], never\n"
    "  --port N          editor and admin API port (default 1880; 0 = any free port)\n"
    "  --listen ADDR     editor address (default 127.0.0.1; 0.0.0.0 for every interface)\n"
    "  --settings FILE   JSON settings: adminAuth (login), credentialSecret, debugMaxLength\n"
    "  --no-editor       no editor and no admin API\n"
    "  --log-level L     trace, debug, info (default), warn, error or off\n"
    "  --nodes DIR       also load the Lua node types in DIR (a type's folder, or a folder\n"
    "                    of them); may be given several times\n";

static const char usage_nodes_dirs[] =
    "\n"
    "Lua node types shipped with eddy are loaded from $EDDY_LUA_NODES if set (empty: none),\n"
    "else from the folder configured at build time (the source tree's nodes/lua).\n";

static const char usage_check[] =
    "Usage: eddy check FLOWS.json [--nodes DIR]\n"
    "\n"
    "Validates FLOWS.json without running anything and exits 0 if it would run, 1 if not.\n"
    "Every problem is listed, one per line, as FILE:LINE: node ID (TYPE) on tab TAB: WHAT.\n"
    "Checked: JSON syntax (with line and column), node types (JavaScript function nodes\n"
    "are reported with the advice to use the lua node), wires to missing nodes, missing\n"
    "config nodes, property values, JSONata expressions (not supported by eddy).\n";

static const char usage_nodes[] = "Usage: eddy nodes [--nodes DIR]\n"
                                  "\n"
                                  "Lists every node type eddy can run, with its inputs, outputs\n"
                                  "and properties; Lua types name their file.\n";

static int print_help(const char *topic)
{
    if (!topic)
        fputs(usage_main, stdout);
    else if (strcmp(topic, "run") == 0)
        printf("%s%s", usage_run, usage_nodes_dirs);
    else if (strcmp(topic, "check") == 0)
        printf("%s%s", usage_check, usage_nodes_dirs);
    else if (strcmp(topic, "nodes") == 0)
        printf("%s%s", usage_nodes, usage_nodes_dirs);
    else if (strcmp(topic, "events") == 0)
        return eddy_events_help();
    else if (strcmp(topic, "help") == 0)
        puts("Usage: eddy help [COMMAND]");
    else {
        fprintf(stderr, "eddy: no help for '%s'; commands are run, check, nodes, help\n", topic);
        return 2;
    }
    return 0;
}

static int parse_opts(int argc, char **argv, cli_opts *o, const char *usage)
{
    static const struct option longopts[] = {{"data", required_argument, NULL, 'd'},
                                             {"port", required_argument, NULL, 'p'},
                                             {"log-level", required_argument, NULL, 'l'},
                                             {"fsync", required_argument, NULL, 'f'},
                                             {"nodes", required_argument, NULL, 'n'},
                                             {"listen", required_argument, NULL, 'L'},
                                             {"settings", required_argument, NULL, 's'},
                                             {"no-editor", no_argument, NULL, 'E'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:p:l:f:n:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'L':
            o->listen = optarg;
            break;
        case 's':
            o->settings = optarg;
            break;
        case 'E':
            o->no_editor = true;
            break;
        case 'n':
            if (o->node_dir_count == MAX_NODE_DIRS) {
                fprintf(stderr, "eddy: at most %d --nodes folders\n", MAX_NODE_DIRS);
                return 2;
            }
            o->node_dirs[o->node_dir_count++] = optarg;
            break;
        case 'd':
            o->data_dir = optarg;
            break;
        case 'p': {
            char *end;
            long port = strtol(optarg, &end, 10);
            if (*end || !*optarg || port < 0 || port > 65535) {
                fprintf(stderr, "eddy: --port needs a number from 0 to 65535, not '%s'\n", optarg);
                return 2;
            }
            o->port = (int)port;
            break;
        }
        case 'f':
            o->fsync = optarg;
            break;
        case 'l':
            if (eddy_log_level_parse(optarg) < 0) {
                fprintf(stderr, "eddy: unknown log level '%s'\n", optarg);
                return 2;
            }
            o->log_level = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 1;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (usage == usage_nodes) {
        if (optind != argc) {
            fprintf(stderr, "eddy: nodes takes no arguments\n%s", usage);
            return 2;
        }
    } else if (usage == usage_run && optind == argc) {
        o->flow_file = NULL; /* the editor's deployed flows, or an empty flow */
    } else if (optind != argc - 1) {
        fprintf(stderr, "eddy: expected one flow file\n%s", usage);
        return 2;
    } else {
        o->flow_file = argv[optind];
    }
    if (o->log_level)
        eddy_log_set_level((eddy_log_level)eddy_log_level_parse(o->log_level));
    return 0;
}

/* Native types, the Lua types shipped with eddy, then those of each --nodes folder. */
static eddy_registry *make_registry(const cli_opts *o)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_registry *reg = eddy_registry_new(&err);
    if (!reg || eddy_registry_add_builtin(reg, &err) != EDDY_OK) {
        fprintf(stderr, "eddy: %s\n", err.msg);
        eddy_registry_free(reg);
        return NULL;
    }
    eddy_problems problems = {0};
    const char *shipped = eddy_lua_types_dir();
    struct stat st;
    /* the folder baked in at build time may be gone (a copied binary): then only --nodes */
    if (*shipped && (getenv("EDDY_LUA_NODES") || stat(shipped, &st) == 0))
        eddy_lua_types_load(reg, shipped, &problems);
    for (int i = 0; i < o->node_dir_count; i++)
        eddy_lua_types_load(reg, o->node_dirs[i], &problems);
    if (problems.count == 0)
        return reg;
    eddy_problems_print(&problems, stderr);
    fprintf(stderr, "eddy: %d problem%s loading Lua node types\n", problems.count,
            problems.count == 1 ? "" : "s");
    eddy_problems_clear(&problems);
    eddy_registry_free(reg);
    return NULL;
}

/* For `eddy events rebuild` (events_cli.h). */
static eddy_registry *registry_for_events(const char *const *dirs, int count)
{
    cli_opts o = {0};
    for (int i = 0; i < count && i < MAX_NODE_DIRS; i++)
        o.node_dirs[o.node_dir_count++] = dirs[i];
    return make_registry(&o);
}

static int cmd_check(int argc, char **argv)
{
    cli_opts o = {0};
    int rc = parse_opts(argc, argv, &o, usage_check);
    if (rc)
        return rc == 1 ? 0 : rc;
    eddy_registry *reg = make_registry(&o);
    if (!reg)
        return 1;
    eddy_problems problems = {0};
    eddy_flow *flow = eddy_flow_load_file(o.flow_file, reg, &problems);
    if (flow) {
        printf("%s: ok (%d nodes)\n", o.flow_file, flow->node_count);
        eddy_flow_free(flow);
    } else {
        eddy_problems_print(&problems, stderr);
        fprintf(stderr, "%s: %d problem%s\n", o.flow_file, problems.count,
                problems.count == 1 ? "" : "s");
    }
    eddy_problems_clear(&problems);
    eddy_registry_free(reg);
    return flow ? 0 : 1;
}

static void on_signal(uv_signal_t *handle, int signum)
{
    eddy_log(EDDY_LOG_INFO, "[eddy] %s received, stopping",
             signum == SIGINT ? "SIGINT" : "SIGTERM");
    eddy_loop_stop(handle->data);
}

static int run_until_signal(eddy_loop *loop)
{
    uv_signal_t sigint, sigterm;
    uv_loop_t *uv = eddy_loop_uv(loop);
    uv_signal_init(uv, &sigint);
    uv_signal_init(uv, &sigterm);
    sigint.data = sigterm.data = loop;
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    eddy_loop_run(loop);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_run(uv, UV_RUN_NOWAIT);
    return 0;
}

/* Loads the flow file and starts it: `eddy run --no-editor`. */
static int start_without_editor(const cli_opts *o, eddy_engine *engine, const eddy_registry *reg,
                                eddy_loop *loop, eddy_store **store, eddy_problems *problems)
{
    if (!o->flow_file) {
        fprintf(stderr, "eddy: --no-editor needs a flow file\n");
        return 1;
    }
    eddy_flow *flow = eddy_flow_load_file(o->flow_file, reg, problems);
    if (!flow)
        return 1;
    if (eddy_events_open_for_flow(flow, o->data_dir, o->fsync, loop, store) != 0) {
        eddy_flow_free(flow);
        return 1;
    }
    eddy_engine_set_store(engine, *store);
    int nodes = flow->node_count;
    if (eddy_engine_start(engine, flow, problems) != EDDY_OK)
        return 1;
    eddy_log(EDDY_LOG_INFO, "[eddy] running %s (%d nodes)", o->flow_file, nodes);
    return 0;
}

/* Opens the editor, then starts the deployed flows (or the seed file). */
static int start_with_editor(const cli_opts *o, eddy_engine *engine, const eddy_registry *reg,
                             eddy_loop *loop, eddy_store **store, eddy_admin **admin,
                             eddy_problems *problems)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_admin_opts aopts = {.data_dir = o->data_dir,
                             .web_dir = eddy_web_dir(),
                             .settings_file = o->settings,
                             .listen = o->listen,
                             .port = o->port,
                             .fsync = o->fsync,
                             .store = store};
    *admin = eddy_admin_new(loop, engine, reg, &aopts, &err);
    if (!*admin) {
        char line[1024];
        eddy_err_format(&err, line, sizeof(line));
        fprintf(stderr, "eddy: the editor cannot start: %s\n", line);
        return 1;
    }
    const char *source = NULL;
    if (eddy_admin_start_flows(*admin, o->flow_file, problems, &source) != EDDY_OK)
        return 1;
    const eddy_flow *flow = eddy_engine_flow(engine);
    eddy_log(EDDY_LOG_INFO, "[eddy] running %s (%d nodes); editor on http://%s:%d/", source,
             flow ? flow->node_count : 0, o->listen ? o->listen : "127.0.0.1",
             eddy_admin_port(*admin));
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    cli_opts o = {.data_dir = "eddy-data", .port = DEFAULT_PORT};
    int rc = parse_opts(argc, argv, &o, usage_run);
    if (rc)
        return rc == 1 ? 0 : rc;
    signal(SIGPIPE, SIG_IGN);
    eddy_err err;
    eddy_err_clear(&err);
    eddy_registry *reg = make_registry(&o);
    eddy_loop *loop = reg ? eddy_loop_new(EDDY_CLOCK_REAL, &err) : NULL;
    eddy_engine *engine = loop ? eddy_engine_new(loop, reg, NULL, &err) : NULL;
    if (!engine) {
        if (err.code)
            fprintf(stderr, "eddy: %s\n", err.msg);
        eddy_loop_free(loop);
        eddy_registry_free(reg);
        return 1;
    }
    eddy_problems problems = {0};
    eddy_store *store = NULL;
    eddy_admin *admin = NULL;
    int status = o.no_editor ? start_without_editor(&o, engine, reg, loop, &store, &problems)
                             : start_with_editor(&o, engine, reg, loop, &store, &admin, &problems);
    if (status == 0) {
        run_until_signal(loop);
        eddy_engine_stop(engine);
        eddy_log(EDDY_LOG_INFO, "[eddy] stopped cleanly");
    } else if (problems.count > 0) {
        eddy_problems_print(&problems, stderr);
        fprintf(stderr, "eddy: %s was not started (%d problem%s)\n",
                o.flow_file ? o.flow_file : "the flow", problems.count,
                problems.count == 1 ? "" : "s");
    }
    eddy_problems_clear(&problems);
    eddy_admin_free(admin);
    eddy_engine_free(engine);
    eddy_store_close(store); /* detaches: commits what is pending */
    eddy_loop_free(loop);
    eddy_registry_free(reg);
    return status;
}

static int cmd_nodes(int argc, char **argv)
{
    cli_opts o = {0};
    int rc = parse_opts(argc, argv, &o, usage_nodes);
    if (rc)
        return rc == 1 ? 0 : rc;
    eddy_registry *reg = make_registry(&o);
    if (!reg)
        return 1;
    for (int i = 0; i < eddy_registry_count(reg); i++) {
        const eddy_node_type *t = eddy_registry_at(reg, i);
        printf("%-14s in:%d out:%s%s\n", t->name, t->inputs,
               t->outputs < 0 ? "n" : (char[]){(char)('0' + (t->outputs % 10)), 0},
               t->flags & EDDY_NODE_CONFIG ? " (config)" : "");
        if (eddy_lua_type_is(t))
            printf("    (Lua: %s)\n", eddy_lua_type_file(t));
        if (t->help)
            printf("    %s\n", t->help);
        for (const eddy_prop *p = t->props; p && p->name; p++)
            printf("    - %s%s%s%s\n", p->name, p->def ? " = " : "", p->def ? p->def : "",
                   p->help ? "" : "");
    }
    eddy_registry_free(reg);
    return 0;
}

int main(int argc, char **argv)
{
    eddy_mem_install();
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0)
        return print_help(NULL);
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("eddy %s\n", EDDY_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0)
        return print_help(argc > 2 ? argv[2] : NULL);
    if (strcmp(cmd, "run") == 0) {
        int rc = cmd_run(argc - 1, argv + 1);
        eddy_mem_release_cache();
        return rc;
    }
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc - 1, argv + 1);
    if (strcmp(cmd, "nodes") == 0)
        return cmd_nodes(argc - 1, argv + 1);
    if (strcmp(cmd, "events") == 0) {
        int rc = eddy_events_main(argc - 1, argv + 1, registry_for_events);
        eddy_mem_release_cache();
        return rc;
    }
    fprintf(stderr, "eddy: unknown command '%s'\n\n%s", cmd, usage_main);
    return 2;
}
