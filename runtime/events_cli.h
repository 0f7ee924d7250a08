/* events_cli.h: the event store's side of the command line: `eddy events ...` (stats,
 * tail, read, export, import, check, rebuild) and opening the store for `eddy run`. Part of the
 * CLI: it prints to stdout/stderr and returns exit statuses, but never exits itself. */
#ifndef EDDY_EVENTS_CLI_H
#define EDDY_EVENTS_CLI_H

#include "flow.h"
#include "loop.h"
#include "registry.h"
#include "store.h"

/* Makes the registry of node types `eddy events rebuild` loads the flow with: the native
 * types, the shipped Lua types and those of the 'count' --nodes folders 'dirs' (main.c
 * knows how). NULL after saying why on stderr. Ownership: new. */
typedef eddy_registry *(*eddy_events_registry_fn)(const char *const *dirs, int count);

/* `eddy events COMMAND [options]`: 'argv[0]' is "events". 'make_registry' is used by
 * `rebuild` only. Returns the exit status: 0 ok, 1 failure (said on stderr), 2 usage. */
int eddy_events_main(int argc, char **argv, eddy_events_registry_fn make_registry);
/* Prints `eddy help events`. Returns 0. */
int eddy_events_help(void);

/* For `eddy run`: when 'flow' has a node type that uses the event store
 * (EDDY_NODE_STORE), opens the store in 'data_dir' with durability 'fsync' (NULL =
 * always) and attaches it to 'loop'; otherwise leaves '*out' NULL and touches no file.
 * Returns 0, or 1 after saying why on stderr. Ownership: '*out' is new
 * (eddy_store_close). */
int eddy_events_open_for_flow(const eddy_flow *flow, const char *data_dir, const char *fsync,
                              eddy_loop *loop, eddy_store **out);

#endif
