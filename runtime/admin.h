/* admin.h: the editor's side of eddy. Serves Node-RED's editor and the part of its Admin
 * HTTP API and /comms websocket the editor uses (../shared/EDITOR-API.md is the contract):
 * flows with revisions and deploys (full, modified nodes, modified flows, reload), the node
 * catalogue, credentials (encrypted, never sent back), inject and debug buttons, context,
 * user settings, optional login; and publishes debug messages, node status and runtime
 * state to the editor.
 *
 * Flows deployed from the editor are written to DATA/flows.json (the previous version
 * kept as DATA/flows.json.backup) and their credentials to DATA/flows_cred.json; after a
 * restart eddy runs DATA/flows.json when it exists. Threads: the loop thread only. */
#ifndef EDDY_ADMIN_H
#define EDDY_ADMIN_H

#include <jansson.h>

#include "engine.h"
#include "err.h"
#include "flow.h"
#include "loop.h"
#include "registry.h"

struct eddy_store;
typedef struct eddy_admin eddy_admin;

typedef struct eddy_admin_opts {
    const char *data_dir;      /* flows.json, flows_cred.json, settings-user.json, .secret */
    const char *web_dir;       /* the assembled editor (see runtime/README.md); NULL = API only */
    const char *settings_file; /* optional JSON settings (adminAuth, credentialSecret, ...) */
    const char *listen;        /* NULL = 127.0.0.1 */
    int port;                  /* 0 = any free port */
    const char *fsync;         /* event store durability for stores opened by a deploy */
    struct eddy_store **store; /* the run's store slot: a deploy that brings the first
                                  event node opens it there; the caller closes it */
} eddy_admin_opts;

/* Reads the settings, opens the server and sets the engine's hooks. Ownership: new,
 * free with eddy_admin_free (before the engine). NULL with 'err' set. */
eddy_admin *eddy_admin_new(eddy_loop *loop, eddy_engine *engine, const eddy_registry *reg,
                           const eddy_admin_opts *opts, eddy_err *err);
void eddy_admin_free(eddy_admin *admin);
int eddy_admin_port(const eddy_admin *admin);

/* Starts the flows at launch: DATA/flows.json if it was deployed before, else 'seed' (a
 * flow file; NULL = none: an empty flow). Problems (other than missing node types, which
 * are reported to the editor and leave the flows stopped, as in Node-RED) are appended
 * and the flows are not started. '*source' gets the file that was used (borrowed).
 * EDDY_OK when the editor can run. */
int eddy_admin_start_flows(eddy_admin *admin, const char *seed, eddy_problems *problems,
                           const char **source);

/* The path of the flows file eddy would run from 'data_dir' (DATA/flows.json) if it
 * exists, else NULL. Ownership: new, eddy_free. */
char *eddy_admin_deployed_flows(const char *data_dir);

#endif
