/* admin.c: see admin.h. Routes are grouped as the contract lists them: loading the editor,
 * flows and deploys, the user's buttons (inject, debug), credentials, context, login; then
 * what the runtime publishes on /comms (debug, status, runtime state). */
#include "admin.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalogue.h"
#include "credentials.h"
#include "debug_encode.h"
#include "events_cli.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "readmodel.h"

#define DEFAULT_DEBUG_MAX_LENGTH 1000
#define DEFAULT_DEBUG_RATE       100    /* debug messages per second per node */
#define TOKEN_LIFETIME_S         604800 /* 7 days, as Node-RED */
#define LOGIN_FAILURES_ALLOWED   5      /* per minute, then refused for a minute */
#define LOGIN_WINDOW_MS          60000

struct eddy_admin {
    eddy_loop *loop;
    eddy_engine *engine;
    const eddy_registry *reg;
    eddy_http *http;
    char *data_dir, *web_dir;
    const char *fsync;
    struct eddy_store **store;
    json_t *settings; /* the settings file, or {} */
    char *secret;     /* the credential secret */
    json_t *flows;    /* the deployed flows, without credentials */
    json_t *creds;    /* node id -> credentials (decrypted) */
    char rev[65];
    json_t *missing; /* missing node types of the deployed flows, or NULL */
    /* a deploy waiting for the loop's top level */
    eddy_http_req *deploy_req;
    json_t *deploy_flows, *deploy_creds;
    eddy_deploy_mode deploy_mode;
    bool deploy_reload;
    /* debug sidebar rate limit: node id -> [window start ms, sent, skipped] */
    json_t *debug_rate;
    size_t debug_max_length;
    long debug_rate_limit;
    eddy_timer *skip_timer;
    /* login */
    json_t *tokens; /* token -> {user, permissions, expires} */
    int64_t login_window_start;
    int login_failures;
};

/* ---- small helpers ---- */

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = eddy_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static json_t *read_json_file(const char *path, eddy_err *err)
{
    size_t len;
    char *text = eddy_read_file(path, &len);
    if (!text) {
        eddy_err_set(err, EDDY_ENOTFOUND, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    json_t *doc = eddy_json_loadb(text, len, err);
    eddy_free(text);
    if (!doc)
        eddy_err_at_file(err, path, err->line, err->column);
    return doc;
}

/* Writes 'text' to dir/name through a temporary file and a rename, so a crash leaves the
 * old or the new file whole; the old one is kept as name.backup when 'backup'. */
static int write_atomically(const char *dir, const char *name, const char *text, bool backup,
                            eddy_err *err)
{
    char *path = path_join(dir, name);
    size_t n = strlen(path) + 16;
    char *tmp = eddy_malloc(n), *old = eddy_malloc(n);
    int rc = EDDY_ENOMEM;
    if (!path || !tmp || !old)
        goto done;
    snprintf(tmp, n, "%s.tmp", path);
    snprintf(old, n, "%s.backup", path);
    rc = EDDY_EIO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        eddy_err_set(err, EDDY_EIO, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            eddy_err_set(err, EDDY_EIO, "cannot write %s: %s", tmp, strerror(errno));
            close(fd);
            goto done;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        eddy_err_set(err, EDDY_EIO, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    /* the backup is a second link: 'path' exists at every moment, old or new */
    if (backup && access(path, F_OK) == 0) {
        unlink(old);
        if (link(path, old) != 0) {
            eddy_err_set(err, EDDY_EIO, "cannot keep %s: %s", old, strerror(errno));
            goto done;
        }
    }
    if (rename(tmp, path) != 0) {
        eddy_err_set(err, EDDY_EIO, "cannot replace %s: %s", path, strerror(errno));
        goto done;
    }
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd); /* the rename itself must survive a power cut */
        close(dfd);
    }
    rc = EDDY_OK;
done:
    if (rc == EDDY_ENOMEM)
        eddy_err_set(err, rc, "out of memory writing %s", name);
    eddy_free(path);
    eddy_free(tmp);
    eddy_free(old);
    return rc;
}

static int ensure_dir(const char *dir, eddy_err *err)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return EDDY_OK;
    return eddy_err_set(err, EDDY_EIO, "cannot create the data folder %s: %s", dir,
                        strerror(errno));
}

static bool accepts_json(eddy_http_req *req)
{
    const char *accept = eddy_http_req_header(req, "accept");
    return accept && strcmp(accept, "application/json") == 0;
}

static const char *str_or(const json_t *obj, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : def;
}

/* ---- settings and the credential secret ---- */

static int load_settings(eddy_admin *a, const char *file, eddy_err *err)
{
    if (!file) {
        a->settings = json_object();
        return a->settings ? EDDY_OK : eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    a->settings = read_json_file(file, err);
    if (!a->settings)
        return err->code;
    if (!json_is_object(a->settings))
        return eddy_err_set(err, EDDY_EINVAL, "%s: settings must be a JSON object", file);
    json_t *auth = json_object_get(a->settings, "adminAuth");
    if (auth) {
        json_t *users = json_object_get(auth, "users");
        if (strcmp(str_or(auth, "type", ""), "credentials") != 0 || !json_is_array(users))
            return eddy_err_set(err, EDDY_EINVAL,
                                "%s: adminAuth needs type \"credentials\" and a users list", file);
        size_t i;
        json_t *u;
        json_array_foreach(users, i, u)
        {
            if (!*str_or(u, "username", "") || strncmp(str_or(u, "password", ""), "$", 1) != 0)
                return eddy_err_set(err, EDDY_EINVAL,
                                    "%s: adminAuth user %zu needs a username and a password "
                                    "hash (bcrypt, as `node-red admin hash-pw` makes)",
                                    file, i + 1);
            /* Node-RED also takes lists of scopes ("flows.read", ...); eddy knows the two
             * levels its routes have, and refuses the rest rather than guess. */
            json_t *perm = json_object_get(u, "permissions");
            const char *p = json_string_value(perm);
            if (perm && !(p && (!strcmp(p, "*") || !strcmp(p, "read") || !strcmp(p, "*.read"))))
                return eddy_err_set(err, EDDY_EINVAL,
                                    "%s: adminAuth user %zu ('%s'): permissions must be \"*\" "
                                    "or \"read\"",
                                    file, i + 1, str_or(u, "username", ""));
        }
    }
    json_t *len = json_object_get(a->settings, "debugMaxLength");
    if (json_is_integer(len) && json_integer_value(len) > 0)
        a->debug_max_length = (size_t)json_integer_value(len);
    json_t *rate = json_object_get(a->settings, "debugRateLimit");
    if (json_is_integer(rate) && json_integer_value(rate) > 0)
        a->debug_rate_limit = (long)json_integer_value(rate);
    return EDDY_OK;
}

/* credentialSecret from the settings, else $EDDY_CREDENTIAL_SECRET, else one made once
 * and kept in DATA/.secret (as Node-RED keeps its generated one in .config.runtime.json). */
static int load_secret(eddy_admin *a, eddy_err *err)
{
    if (a->secret) /* loaded on first need: a flow without credentials writes no file */
        return EDDY_OK;
    int rc = ensure_dir(a->data_dir, err);
    if (rc != EDDY_OK)
        return rc;
    const char *s = json_string_value(json_object_get(a->settings, "credentialSecret"));
    if (!s)
        s = getenv("EDDY_CREDENTIAL_SECRET");
    if (s && *s) {
        a->secret = eddy_strdup(s);
        return a->secret ? EDDY_OK : eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    char *path = path_join(a->data_dir, ".secret");
    size_t len = 0;
    char *kept = path ? eddy_read_file(path, &len) : NULL;
    if (kept && len >= 32) {
        kept[strcspn(kept, "\r\n")] = 0;
        a->secret = kept;
        eddy_free(path);
        return EDDY_OK;
    }
    eddy_free(kept);
    char made[65];
    rc = eddy_random_hex(made, 32);
    if (rc == EDDY_OK)
        rc = write_atomically(a->data_dir, ".secret", made, false, err);
    if (rc == EDDY_OK) {
        eddy_log(EDDY_LOG_WARN,
                 "[admin] no credentialSecret in the settings: credentials are encrypted with "
                 "a key generated in %s; keep that file with the flows",
                 path);
        a->secret = eddy_strdup(made);
    }
    eddy_free(path);
    return rc;
}

/* ---- flows, revisions and credentials on disk ---- */

static void set_rev(eddy_admin *a)
{
    char *text = eddy_json_dumps(a->flows, 0);
    eddy_sha256_hex(text ? text : "", text ? strlen(text) : 0, a->rev);
    eddy_free(text);
}

char *eddy_admin_deployed_flows(const char *data_dir)
{
    char *path = path_join(data_dir, "flows.json");
    if (path && access(path, R_OK) == 0)
        return path;
    eddy_free(path);
    return NULL;
}

static int load_creds(eddy_admin *a, eddy_err *err)
{
    char *path = path_join(a->data_dir, "flows_cred.json");
    if (!path)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    json_decref(a->creds);
    a->creds = NULL;
    if (access(path, F_OK) != 0) {
        eddy_free(path);
        a->creds = json_object();
        return a->creds ? EDDY_OK : eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    json_t *doc = load_secret(a, err) == EDDY_OK ? read_json_file(path, err) : NULL;
    if (doc) {
        a->creds = eddy_creds_decrypt(doc, a->secret, err);
        json_decref(doc);
    }
    if (!a->creds)
        eddy_err_at_file(err, path, 0, 0);
    eddy_free(path);
    return a->creds ? EDDY_OK : err->code;
}

static int save_flows(eddy_admin *a, const json_t *flows, const json_t *creds, eddy_err *err)
{
    int rc = load_secret(a, err);
    if (rc != EDDY_OK)
        return rc;
    char *text = eddy_json_dumps(flows, EDDY_JSON_PRETTY);
    json_t *enc = eddy_creds_encrypt(creds, a->secret, err);
    char *ctext = enc ? json_dumps(enc, JSON_COMPACT) : NULL;
    json_decref(enc);
    if (!text || !ctext)
        rc = err->code ? err->code : eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    if (rc == EDDY_OK)
        rc = write_atomically(a->data_dir, "flows_cred.json", ctext, true, err);
    if (rc == EDDY_OK)
        rc = write_atomically(a->data_dir, "flows.json", text, true, err);
    eddy_free(text);
    eddy_free(ctext);
    return rc;
}

/* The flows as the engine runs them: each node with its credentials put back. */
static json_t *with_credentials(const json_t *flows, const json_t *creds)
{
    json_t *run = json_deep_copy(flows);
    size_t i;
    json_t *node;
    json_array_foreach(run, i, node)
    {
        json_t *c = json_object_get(creds, str_or(node, "id", ""));
        if (c)
            json_object_set(node, "credentials", c);
    }
    return run;
}

/* Takes the "credentials" the editor posted out of each node and merges them into a copy
 * of the stored ones (the editor sends only changed fields; "__PWRD__" means unchanged).
 * Credentials of nodes no longer in the flows are dropped. */
static json_t *split_credentials(eddy_admin *a, json_t *flows)
{
    json_t *out = json_object();
    size_t i;
    json_t *node;
    json_array_foreach(flows, i, node)
    {
        const char *id = str_or(node, "id", "");
        json_t *old = json_object_get(a->creds, id);
        json_t *posted = json_object_get(node, "credentials");
        if (!old && !json_is_object(posted)) {
            json_object_del(node, "credentials"); /* never kept in the flows */
            continue;
        }
        json_t *merged = old ? json_deep_copy(old) : json_object();
        const char *key;
        json_t *v;
        json_object_foreach(posted, key, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), "__PWRD__") == 0)
                continue;
            json_object_set(merged, key, v);
        }
        json_object_del(node, "credentials");
        if (json_object_size(merged) > 0)
            json_object_set_new(out, id, merged);
        else
            json_decref(merged);
    }
    return out;
}

/* ---- publishing to the editor ---- */

static void publish(eddy_admin *a, const char *topic, json_t *data, bool retain)
{
    if (a->http)
        eddy_comms_publish(a->http, topic, data, retain);
    else
        json_decref(data);
}

static void publish_state(eddy_admin *a, const char *state, bool deploy)
{
    json_t *d = json_pack("{s:s}", "state", state);
    if (deploy)
        json_object_set_new(d, "deploy", json_true());
    publish(a, "notification/runtime-state", d, true);
}

static void publish_missing(eddy_admin *a)
{
    publish(a, "notification/runtime-state",
            json_pack("{s:s,s:s,s:s,s:s,s:O}", "state", "stop", "error", "missing-types", "type",
                      "warning", "text", "notification.warnings.missing-types", "types",
                      a->missing),
            true);
}

static void publish_start_error(eddy_admin *a, const eddy_problems *problems)
{
    eddy_buf b = {0};
    eddy_buf_str(&b, "The flows were saved but did not start: ");
    for (int i = 0; i < problems->count; i++) {
        char line[1024];
        eddy_err_format(&problems->items[i], line, sizeof(line));
        eddy_buf_str(&b, line);
        eddy_buf_str(&b, i + 1 < problems->count ? "; " : "");
    }
    publish(a, "notification/runtime-state",
            json_pack("{s:s,s:s,s:s,s:s}", "state", "stop", "error", "start-failed", "type",
                      "error", "text", b.data ? b.data : "out of memory"),
            true);
    eddy_free(b.data);
}

/* The path Node-RED puts in debug messages: the tab, or tab/instance for subflows. */
static const char *node_path(eddy_node *node)
{
    return eddy_node_tab(node);
}

static json_t *debug_head(eddy_node *node)
{
    json_t *d = json_pack("{s:s,s:s,s:s}", "id", eddy_node_id(node), "z", eddy_node_tab(node),
                          "path", node_path(node));
    const char *name = eddy_node_name(node);
    if (*name)
        json_object_set_new(d, "name", json_string(name));
    return d;
}

/* Per node: at most debug_rate_limit messages a second reach the sidebar; the rest are
 * counted and the count is shown once the second is over, so a flood cannot stall the
 * runtime or the browser. Returns whether this one may go. */
static bool debug_allowed(eddy_admin *a, eddy_node *node)
{
    const char *id = eddy_node_id(node);
    int64_t now = eddy_loop_now(a->loop);
    json_t *r = json_object_get(a->debug_rate, id);
    if (!r) {
        r = json_pack("[I,i,i]", (json_int_t)now, 0, 0);
        json_object_set_new(a->debug_rate, id, r);
    }
    int64_t start = json_integer_value(json_array_get(r, 0));
    if (now - start >= 1000) {
        json_array_set_new(r, 0, json_integer(now));
        json_array_set_new(r, 1, json_integer(0));
    }
    json_int_t sent = json_integer_value(json_array_get(r, 1));
    if (sent < a->debug_rate_limit) {
        json_array_set_new(r, 1, json_integer(sent + 1));
        return true;
    }
    json_array_set_new(r, 2, json_integer(json_integer_value(json_array_get(r, 2)) + 1));
    return false;
}

static int64_t report_skipped(eddy_loop *loop, eddy_timer *timer, void *data);

static void on_debug(void *data, eddy_node *node, const json_t *value, const char *property)
{
    eddy_admin *a = data;
    if (!a->http || eddy_comms_clients(a->http) == 0)
        return; /* nobody watches: skip the encoding */
    if (!debug_allowed(a, node)) {
        if (!a->skip_timer)
            a->skip_timer = eddy_timer_start(a->loop, 1000, report_skipped, a, NULL);
        return;
    }
    json_t *d = debug_head(node);
    bool whole = strcmp(property, "msg") == 0;
    const json_t *topic = whole ? json_object_get(value, "topic") : NULL;
    if (json_is_string(topic))
        json_object_set(d, "topic", (json_t *)topic);
    if (!whole)
        json_object_set_new(d, "property", json_string(property));
    if (d && eddy_debug_encode(value, a->debug_max_length, d) == EDDY_OK)
        publish(a, "debug", d, false);
    else
        json_decref(d);
}

/* Tells the sidebar how many messages each flooding node had skipped. */
static int64_t report_skipped(eddy_loop *loop, eddy_timer *timer, void *data)
{
    eddy_admin *a = data;
    const char *id;
    json_t *r;
    bool pending = false;
    json_object_foreach(a->debug_rate, id, r)
    {
        json_int_t skipped = json_integer_value(json_array_get(r, 2));
        if (skipped == 0)
            continue;
        eddy_node *node = eddy_engine_find(a->engine, id);
        json_array_set_new(r, 2, json_integer(0));
        if (!node)
            continue;
        char text[200];
        snprintf(text, sizeof(text),
                 "%lld messages not shown: this node sent more than %ld a second "
                 "(debugRateLimit)",
                 (long long)skipped, a->debug_rate_limit);
        json_t *d = debug_head(node);
        json_object_set_new(d, "level", json_integer(30));
        json_t *s = json_string(text);
        eddy_debug_encode(s, a->debug_max_length, d);
        json_decref(s);
        publish(a, "debug", d, false);
        pending = true;
    }
    if (!pending)
        a->skip_timer = NULL;
    return pending ? 1000 : EDDY_TIMER_STOP;
}

/* Warnings and uncaught errors show in the sidebar too (Node-RED's log handler). */
static void log_to_sidebar(eddy_admin *a, eddy_node *node, const char *text, int level)
{
    if (!a->http || eddy_comms_clients(a->http) == 0 || !debug_allowed(a, node))
        return;
    json_t *d = debug_head(node);
    json_object_set_new(d, "type", json_string(eddy_node_type_name(node)));
    json_object_set_new(d, "level", json_integer(level));
    json_t *s = json_string(text);
    if (s && d && eddy_debug_encode(s, a->debug_max_length, d) == EDDY_OK)
        publish(a, "debug", d, false);
    else
        json_decref(d);
    json_decref(s);
}

static void on_uncaught(void *data, eddy_node *node, const char *text)
{
    log_to_sidebar(data, node, text, 20);
}

static void on_warn(void *data, eddy_node *node, const char *text)
{
    log_to_sidebar(data, node, text, 30);
}

static void on_status(void *data, eddy_node *node, const json_t *status)
{
    eddy_admin *a = data;
    char topic[256];
    snprintf(topic, sizeof(topic), "status/%s", eddy_node_id(node));
    publish(a, topic, json_deep_copy(status), true);
}

/* ---- starting and replacing flows ---- */

static bool is_missing_type(const eddy_err *e)
{
    return e->code == EDDY_ENOTFOUND && strncmp(e->msg, "unknown node type", 17) == 0;
}

/* Splits the problems: missing node types go to a->missing (new array, or NULL when
 * none); returns how many other problems there are. */
static int note_missing(eddy_admin *a, const eddy_problems *problems)
{
    json_decref(a->missing);
    a->missing = NULL;
    int others = 0;
    for (int i = 0; i < problems->count; i++) {
        const eddy_err *e = &problems->items[i];
        if (!is_missing_type(e)) {
            others++;
            continue;
        }
        if (!a->missing)
            a->missing = json_array();
        bool seen = false;
        size_t k;
        json_t *t;
        json_array_foreach(a->missing, k, t) seen =
            seen || strcmp(json_string_value(t), e->node_type) == 0;
        if (!seen)
            json_array_append_new(a->missing, json_string(e->node_type));
    }
    return others;
}

static bool flow_uses_store(const eddy_flow *flow)
{
    for (int i = 0; i < flow->node_count; i++)
        if (flow->nodes[i].ntype && (flow->nodes[i].ntype->flags & EDDY_NODE_STORE))
            return true;
    return false;
}

/* A deploy may bring the first event node: open the store then. */
static int ensure_store(eddy_admin *a, const eddy_flow *flow)
{
    if (!a->store || *a->store || !flow_uses_store(flow))
        return EDDY_OK;
    if (eddy_events_open_for_flow(flow, a->data_dir, a->fsync, a->loop, a->store) != 0)
        return EDDY_EIO;
    eddy_engine_set_store(a->engine, *a->store);
    return EDDY_OK;
}

static eddy_flow *validate(eddy_admin *a, const json_t *flows, const json_t *creds,
                           const char *file, eddy_problems *problems)
{
    json_t *run = with_credentials(flows, creds);
    if (!run)
        return NULL;
    return eddy_flow_from_json(run, NULL, file, a->reg, problems);
}

int eddy_admin_start_flows(eddy_admin *a, const char *seed, eddy_problems *problems,
                           const char **source)
{
    char *deployed = eddy_admin_deployed_flows(a->data_dir);
    const char *file = deployed ? deployed : seed;
    eddy_err err;
    eddy_err_clear(&err);
    json_t *doc = file ? read_json_file(file, &err) : json_array();
    *source = deployed ? "the flows last deployed from the editor" : seed ? seed : "(no flows)";
    if (deployed)
        eddy_log(EDDY_LOG_INFO,
                 "[admin] running the flows last deployed from the editor (%s)%s%s%s", deployed,
                 seed ? "; " : "", seed ? seed : "",
                 seed ? " is used only when the data folder has none" : "");
    int rc = doc ? load_creds(a, &err) : err.code;
    if (rc != EDDY_OK) {
        eddy_problems_add(problems, &err);
        json_decref(doc);
        eddy_free(deployed);
        return rc;
    }
    /* credentials found in a seed file are moved into the credentials store */
    json_t *seed_creds = json_is_array(doc) ? split_credentials(a, doc) : NULL;
    if (seed_creds) {
        json_decref(a->creds);
        a->creds = seed_creds;
    }
    if (!json_is_array(doc)) {
        /* let the loader say what is wrong, with line and column */
        json_decref(doc);
        eddy_flow *f = eddy_flow_load_file(file, a->reg, problems);
        eddy_flow_free(f);
        eddy_free(deployed);
        return EDDY_EINVAL;
    }
    json_decref(a->flows);
    a->flows = doc;
    set_rev(a);
    eddy_problems found = {0};
    eddy_flow *flow = validate(a, a->flows, a->creds, file ? file : "flows", &found);
    int others = note_missing(a, &found);
    eddy_free(deployed);
    if (!flow && others > 0) {
        for (int i = 0; i < found.count; i++)
            eddy_problems_add(problems, &found.items[i]);
        eddy_problems_clear(&found);
        return EDDY_EINVAL;
    }
    eddy_problems_clear(&found);
    if (!flow) { /* only missing types: the editor shows them; the flows stay stopped */
        publish_missing(a);
        return EDDY_OK;
    }
    rc = ensure_store(a, flow);
    if (rc != EDDY_OK) {
        eddy_flow_free(flow);
        return rc;
    }
    rc = eddy_engine_start(a->engine, flow, problems);
    publish_state(a, rc == EDDY_OK ? "start" : "stop", false);
    return rc;
}

/* The status of a node that stops must not linger under it in the editor. */
static void on_close(void *data, eddy_node *node, bool removed)
{
    eddy_admin *a = data;
    (void)removed;
    if (!a->http)
        return;
    char topic[256];
    snprintf(topic, sizeof(topic), "status/%s", eddy_node_id(node));
    eddy_comms_forget(a->http, topic);
    publish(a, topic, json_object(), false);
}

/* Runs at the loop's top level (eddy_loop_defer): stopping nodes runs the loop. */
static void run_deploy(eddy_loop *loop, void *data)
{
    eddy_admin *a = data;
    eddy_http_req *req = a->deploy_req;
    a->deploy_req = NULL;
    json_t *flows = a->deploy_flows, *creds = a->deploy_creds;
    a->deploy_flows = a->deploy_creds = NULL;
    eddy_problems problems = {0};
    eddy_flow *flow = validate(a, flows, creds, "deploy", &problems);
    int others = note_missing(a, &problems);
    eddy_err err;
    eddy_err_clear(&err);
    if (!flow && others > 0) { /* checked before; only out-of-memory gets here */
        eddy_http_reply_error(req, 500, "unexpected_error", "the flows could not be loaded");
        goto done;
    }
    if (!a->deploy_reload && save_flows(a, flows, creds, &err) != EDDY_OK) {
        eddy_flow_free(flow);
        eddy_http_reply_error(req, 500, "unexpected_error", "%s", err.msg);
        goto done;
    }
    json_decref(a->flows);
    json_decref(a->creds);
    a->flows = json_incref(flows);
    a->creds = json_incref(creds);
    set_rev(a);
    json_object_clear(a->debug_rate); /* ids of nodes that may be gone */
    publish_state(a, "stop", true);
    eddy_problems_clear(&problems);
    int rc = EDDY_OK;
    if (!flow) {
        eddy_engine_stop(a->engine);
        publish_missing(a);
    } else if ((rc = ensure_store(a, flow)) != EDDY_OK) {
        eddy_flow_free(flow);
        eddy_engine_stop(a->engine);
    } else {
        eddy_deploy_result res;
        rc = eddy_engine_redeploy(
            a->engine, flow, a->deploy_reload ? EDDY_DEPLOY_FULL : a->deploy_mode, &problems, &res);
        if (rc == EDDY_OK)
            eddy_log(EDDY_LOG_INFO, "[admin] deployed: %d node(s) started, %d stopped, %d kept",
                     res.started, res.stopped, res.kept);
    }
    if (flow && rc != EDDY_OK) {
        eddy_problems_print(&problems, stderr);
        publish_start_error(a, &problems);
    } else if (flow) {
        publish_state(a, "start", true);
    }
    publish(a, "notification/runtime-deploy", json_pack("{s:s}", "revision", a->rev), true);
    eddy_http_reply_json(req, 200, json_pack("{s:s}", "rev", a->rev));
done:
    eddy_problems_clear(&problems);
    json_decref(flows);
    json_decref(creds);
}

/* The flows of a deploy body: {"flows":[...],"rev":...} (API v2) or a bare array (v1). */
static json_t *posted_flows(json_t *body, const char **rev)
{
    *rev = NULL;
    if (json_is_array(body))
        return body;
    *rev = json_string_value(json_object_get(body, "rev"));
    return json_object_get(body, "flows");
}

static void reply_problems(eddy_http_req *req, const eddy_problems *problems, int count)
{
    eddy_buf b = {0};
    json_t *list = json_array();
    for (int i = 0; i < problems->count; i++) {
        const eddy_err *e = &problems->items[i];
        if (is_missing_type(e))
            continue;
        char line[1024];
        eddy_err_format(e, line, sizeof(line));
        eddy_buf_str(&b, line);
        eddy_buf_str(&b, "\n");
        json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:s,s:i}", "id", e->node_id, "type",
                                              e->node_type, "tab", e->tab, "message", e->msg,
                                              "line", e->line));
    }
    json_t *body = json_pack("{s:s,s:s,s:o}", "code", "invalid_flows", "message",
                             b.data ? b.data : "invalid flows", "problems", list);
    (void)count;
    eddy_free(b.data);
    eddy_http_reply_json(req, 400, body);
}

static int post_flows(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    if (a->deploy_req) {
        eddy_http_reply_error(req, 409, "deploy_in_progress", "another deploy is in progress");
        return EDDY_HTTP_DONE;
    }
    const char *type = eddy_http_req_header(req, "node-red-deployment-type");
    if (!type)
        type = "full";
    eddy_deploy_mode mode = EDDY_DEPLOY_FULL;
    bool reload = false;
    if (strcmp(type, "nodes") == 0)
        mode = EDDY_DEPLOY_NODES;
    else if (strcmp(type, "flows") == 0)
        mode = EDDY_DEPLOY_FLOWS;
    else if (strcmp(type, "reload") == 0)
        reload = true;
    else if (strcmp(type, "full") != 0) {
        eddy_http_reply_error(req, 400, "invalid_request", "unknown deployment type '%s'", type);
        return EDDY_HTTP_DONE;
    }
    json_t *flows = NULL, *creds = NULL;
    if (reload) {
        flows = json_incref(a->flows);
        creds = json_incref(a->creds);
    } else {
        size_t len;
        const char *text = eddy_http_req_body(req, &len);
        eddy_err err;
        eddy_err_clear(&err);
        json_t *body = eddy_json_loadb(text, len, &err);
        if (!body) {
            eddy_http_reply_error(req, 400, "invalid_json",
                                  "the body is not JSON: line %d, column %d: %s", err.line,
                                  err.column, err.msg);
            return EDDY_HTTP_DONE;
        }
        const char *rev;
        json_t *list = posted_flows(body, &rev);
        if (rev && strcmp(rev, a->rev) != 0) {
            json_decref(body);
            eddy_http_reply_error(req, 409, "version_mismatch",
                                  "the flows were changed since you loaded them (deployed "
                                  "revision %.12s)",
                                  a->rev);
            return EDDY_HTTP_DONE;
        }
        size_t i;
        json_t *node;
        bool shaped = json_is_array(list);
        json_array_foreach(list, i, node) shaped =
            shaped && json_is_object(node) && json_is_string(json_object_get(node, "id"));
        if (!shaped) {
            json_decref(body);
            eddy_http_reply_error(req, 400, "invalid_request",
                                  "expected {\"flows\":[nodes with an id],\"rev\":...}");
            return EDDY_HTTP_DONE;
        }
        flows = json_deep_copy(list);
        json_decref(body);
        creds = flows ? split_credentials(a, flows) : NULL;
        /* an invalid flow is refused with every problem and the running one is untouched */
        eddy_problems problems = {0};
        eddy_flow *check = flows && creds ? validate(a, flows, creds, "deploy", &problems) : NULL;
        int others = note_missing(a, &problems);
        eddy_flow_free(check);
        if (others > 0 || !flows || !creds) {
            if (others > 0)
                reply_problems(req, &problems, others);
            else
                eddy_http_reply_error(req, 500, "unexpected_error", "out of memory");
            eddy_problems_clear(&problems);
            json_decref(flows);
            json_decref(creds);
            return EDDY_HTTP_DONE;
        }
        eddy_problems_clear(&problems);
    }
    a->deploy_req = req;
    a->deploy_flows = flows;
    a->deploy_creds = creds;
    a->deploy_mode = mode;
    a->deploy_reload = reload;
    if (eddy_loop_defer(a->loop, run_deploy, a) != EDDY_OK) {
        a->deploy_req = NULL;
        json_decref(flows);
        json_decref(creds);
        a->deploy_flows = a->deploy_creds = NULL;
        eddy_http_reply_error(req, 500, "unexpected_error", "out of memory");
        return EDDY_HTTP_DONE;
    }
    return EDDY_HTTP_LATER;
}

static int get_flows(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    const char *v = eddy_http_req_header(req, "node-red-api-version");
    if (v && strcmp(v, "v1") == 0)
        eddy_http_reply_json(req, 200, json_incref(a->flows));
    else
        eddy_http_reply_json(req, 200, json_pack("{s:O,s:s}", "flows", a->flows, "rev", a->rev));
    return EDDY_HTTP_DONE;
}

/* ---- the user's buttons ---- */

static eddy_node *running(eddy_admin *a, const char *id)
{
    return eddy_engine_running(a->engine) ? eddy_engine_find(a->engine, id) : NULL;
}

static int post_inject(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    eddy_node *node = running(a, eddy_http_req_rest(req));
    if (!node) {
        eddy_http_reply_error(req, 404, "not_found", "node %s is not deployed",
                              eddy_http_req_rest(req));
        return EDDY_HTTP_DONE;
    }
    size_t len;
    const char *text = eddy_http_req_body(req, &len);
    json_t *arg = len ? json_loadb(text, len, 0, NULL) : json_object();
    if (!arg) {
        eddy_http_reply_error(req, 400, "invalid_json", "the body is not JSON");
        return EDDY_HTTP_DONE;
    }
    eddy_err err;
    eddy_err_clear(&err);
    int rc = eddy_node_command(node, "inject", arg, &err);
    json_decref(arg);
    if (rc == EDDY_EUNSUPPORTED)
        eddy_http_reply_error(req, 404, "not_found", "node %s is not an inject node",
                              eddy_node_id(node));
    else if (rc != EDDY_OK)
        eddy_http_reply_error(req, 500, "unexpected_error", "%s", err.msg);
    else
        eddy_http_reply(req, 200, "text/plain", "OK", 2);
    return EDDY_HTTP_DONE;
}

/* POST debug/<id>/enable|disable, or debug/enable|disable with nodes[]=... */
static int post_debug(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    const char *rest = eddy_http_req_rest(req);
    const char *slash = strrchr(rest, '/');
    const char *action = slash ? slash + 1 : rest;
    bool enable = strcmp(action, "enable") == 0;
    if (!enable && strcmp(action, "disable") != 0) {
        eddy_http_reply_error(req, 404, "not_found", "unknown debug action '%s'", action);
        return EDDY_HTTP_DONE;
    }
    const char *const *ids = NULL;
    int count = 0;
    char one[256];
    if (slash) {
        snprintf(one, sizeof(one), "%.*s", (int)(slash - rest), rest);
        static const char *single[1];
        single[0] = one;
        ids = single;
        count = 1;
    } else {
        count = eddy_http_req_params(req, "nodes[]", &ids);
        if (count == 0)
            count = eddy_http_req_params(req, "nodes", &ids);
    }
    for (int i = 0; i < count; i++) {
        eddy_node *node = running(a, ids[i]);
        eddy_err err;
        eddy_err_clear(&err);
        if (!node ||
            eddy_node_command(node, enable ? "enable" : "disable", NULL, &err) != EDDY_OK) {
            if (slash) {
                eddy_http_reply_error(req, 404, "not_found", "debug node %s is not deployed",
                                      ids[i]);
                return EDDY_HTTP_DONE;
            }
        }
    }
    eddy_http_reply(req, enable ? 200 : 201, "text/plain", "OK", 2);
    return EDDY_HTTP_DONE;
}

/* ---- credentials: text fields back, secrets only as has_<field> ---- */

static int get_credentials(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    const char *rest = eddy_http_req_rest(req); /* <type>/<id> */
    const char *slash = strrchr(rest, '/');
    if (!slash) {
        eddy_http_reply_error(req, 404, "not_found", "expected credentials/<type>/<id>");
        return EDDY_HTTP_DONE;
    }
    char type[128];
    snprintf(type, sizeof(type), "%.*s", (int)(slash - rest), rest);
    const eddy_node_type *t = eddy_registry_find(a->reg, type);
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(a->creds, slash + 1), key, v)
    {
        char field[160];
        snprintf(field, sizeof(field), "|%s|", key);
        if (t && t->public_credentials && strstr(t->public_credentials, field)) {
            json_object_set(out, key, v);
        } else {
            char has[160];
            snprintf(has, sizeof(has), "has_%s", key);
            json_object_set_new(out, has,
                                json_boolean(json_is_string(v) && json_string_length(v) > 0));
        }
    }
    eddy_http_reply_json(req, 200, out);
    return EDDY_HTTP_DONE;
}

/* ---- context sidebar: {"memory": {key: {msg, format}}} ---- */

static json_t *encode_context(eddy_admin *a, const json_t *ctx, const char *only)
{
    json_t *store = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)ctx, key, v)
    {
        if (only && strcmp(only, key) != 0)
            continue;
        json_t *e = json_object();
        eddy_debug_encode(v, a->debug_max_length, e);
        json_object_set_new(store, key, e);
    }
    return store;
}

static int get_context(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    char scope[16] = "", id[256] = "", key[256] = "";
    const char *rest = eddy_http_req_rest(req);
    if (strncmp(rest, "global", 6) == 0) {
        strcpy(scope, "global");
        if (rest[6] == '/')
            snprintf(key, sizeof(key), "%s", rest + 7);
    } else if (sscanf(rest, "%15[^/]/%255[^/]/%255[^\n]", scope, id, key) < 2) {
        eddy_http_reply_error(req, 404, "not_found", "expected context/<global|flow|node>/<id>");
        return EDDY_HTTP_DONE;
    }
    eddy_ctx_scope s = strcmp(scope, "node") == 0   ? EDDY_CTX_NODE
                       : strcmp(scope, "flow") == 0 ? EDDY_CTX_FLOW
                                                    : EDDY_CTX_GLOBAL;
    if (s == EDDY_CTX_GLOBAL && strcmp(scope, "global") != 0) {
        eddy_http_reply_error(req, 404, "not_found", "unknown context scope '%s'", scope);
        return EDDY_HTTP_DONE;
    }
    const json_t *ctx = eddy_engine_context(a->engine, s, id);
    json_t *store = encode_context(a, ctx, *key ? key : NULL);
    if (*key) { /* one key: its {msg, format} */
        json_t *one = json_incref(json_object_get(store, key));
        json_decref(store);
        eddy_http_reply_json(req, 200, one ? one : json_object());
    } else {
        eddy_http_reply_json(req, 200, json_pack("{s:o}", "memory", store));
    }
    return EDDY_HTTP_DONE;
}

/* ---- read models (runtime/readmodel.h) ---- */

/* GET /api/state/<model>[/<key>]: the key is the rest of the path, percent-decoded. */
static int get_state(eddy_http_req *req, void *data)
{
    const char *rest = eddy_http_req_rest(req);
    size_t mlen = strcspn(rest, "/");
    char model[256], key[1024];
    snprintf(model, sizeof(model), "%.*s", (int)(mlen < 255 ? mlen : 255), rest);
    size_t klen = 0;
    bool has_key = rest[mlen] == '/' && rest[mlen + 1];
    for (const char *p = rest + mlen + 1; has_key && *p && klen < sizeof(key) - 1; p++) {
        unsigned hex;
        if (p[0] == '%' && p[1] && p[2] && sscanf(p + 1, "%2x", &hex) == 1 && hex) {
            key[klen++] = (char)hex;
            p += 2;
        } else {
            key[klen++] = *p;
        }
    }
    key[klen] = '\0';
    eddy_err err;
    eddy_err_clear(&err);
    json_t *out = eddy_readmodel_query(model, has_key ? key : NULL, klen, &err);
    if (out)
        eddy_http_reply_json(req, 200, out);
    else if (err.code == EDDY_ENOTFOUND)
        eddy_http_reply_error(req, 404, "not_found", "%s", err.msg);
    else
        eddy_http_reply_error(req, 500, "server_error", "%s", err.msg);
    return EDDY_HTTP_DONE;
}

/* ---- loading the editor ---- */

static int reply_file(eddy_http_req *req, const char *dir, const char *name, const char *type,
                      const char *fallback)
{
    char *path = dir ? path_join(dir, name) : NULL;
    size_t len = 0;
    char *text = path ? eddy_read_file(path, &len) : NULL;
    eddy_free(path);
    if (text)
        eddy_http_reply(req, 200, type, text, len);
    else if (fallback)
        eddy_http_reply(req, 200, type, fallback, strlen(fallback));
    else
        eddy_http_reply_error(req, 404, "not_found", "%s not found", name);
    eddy_free(text);
    return EDDY_HTTP_DONE;
}

static int get_index(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    eddy_http_add_header(req, "Cache-Control", "no-cache");
    return reply_file(req, a->web_dir, "public/index.html", "text/html; charset=utf-8",
                      "<!DOCTYPE html><title>eddy</title><p>The editor is not built: run "
                      "<code>make build</code>.</p>");
}

static int get_theme(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    return reply_file(req, a->web_dir, "theme/theme.json", "application/json",
                      "{\"page\":{\"title\":\"eddy\"},\"header\":{\"title\":\"eddy\"},"
                      "\"themes\":[]}");
}

/* locales/<ns>?lng=: the editor's catalogues for en-US; {} for others. */
static int get_locale(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    const char *ns = eddy_http_req_rest(req);
    const char *lng = eddy_http_req_param(req, "lng");
    if (lng && strcmp(lng, "en-US") != 0)
        return reply_file(req, NULL, "", "application/json", "{}");
    char name[256];
    if (strcmp(ns, "node-red") == 0)
        snprintf(name, sizeof(name), "nodes/locales/en-US/messages.json");
    else if (strcmp(ns, "editor") == 0 || strcmp(ns, "jsonata") == 0 || strcmp(ns, "infotips") == 0)
        snprintf(name, sizeof(name), "locales/en-US/%s.json", ns);
    else
        return reply_file(req, NULL, "", "application/json", "{}");
    return reply_file(req, a->web_dir, name, "application/json", "{}");
}

static int get_settings(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    json_t *s = json_pack(
        "{s:s,s:s,s:{s:s,s:[s]},s:{s:s,s:{}},s:[{s:s,s:s,s:b,s:s}],s:s,s:{s:b,s:b},s:b,"
        "s:{s:b,s:b},s:{s:{s:b,s:b},s:{s:b}},s:b,s:i,s:b,s:I,s:b}",
        "httpNodeRoot", "/", "version", EDDY_VERSION, "context", "default", "memory", "stores",
        "memory", "codeEditor", "lib", "monaco", "options", "libraries", "id", "local", "label",
        "editor:library.types.local", "user", 0, "icon", "font-awesome/fa-hdd-o",
        "flowEncryptionType", "user", "diagnostics", "enabled", 0, "ui", 0, "telemetryEnabled", 0,
        "runtimeState", "enabled", 0, "ui", 0, "externalModules", "palette", "allowInstall", 0,
        "allowUpload", 0, "modules", "allowInstall", 0, "functionExternalModules", 0,
        "functionTimeout", 0, "tlsConfigDisableLocalFiles", 1, "debugMaxLength",
        (json_int_t)a->debug_max_length, "debugUseColors", 0);
    json_object_set_new(s, "editorTheme",
                        json_pack("{s:b,s:[s],s:{s:b},s:{s:{s:[s,s,s,s,s]}},s:{s:b}}", "tours", 0,
                                  "languages", "en-US", "projects", "enabled", 0, "palette",
                                  "categories", "order", "iot", "common", "function", "network",
                                  "storage", "multiplayer", "enabled", 0));
    const char *user = NULL;
    const char *auth = eddy_http_req_header(req, "authorization");
    if (auth && strncmp(auth, "Bearer ", 7) == 0) {
        json_t *t = json_object_get(a->tokens, auth + 7);
        user = str_or(t, "user", NULL);
        if (user)
            json_object_set_new(s, "user",
                                json_pack("{s:s,s:s}", "username", user, "permissions",
                                          str_or(t, "permissions", "*")));
    }
    eddy_http_reply_json(req, 200, s);
    return EDDY_HTTP_DONE;
}

static int get_user_settings(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    return reply_file(req, a->data_dir, "settings-user.json", "application/json", "{}");
}

static int post_user_settings(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    size_t len;
    const char *text = eddy_http_req_body(req, &len);
    json_t *doc = json_loadb(text, len, 0, NULL);
    eddy_err err;
    eddy_err_clear(&err);
    if (!json_is_object(doc)) {
        json_decref(doc);
        eddy_http_reply_error(req, 400, "invalid_json", "user settings must be a JSON object");
        return EDDY_HTTP_DONE;
    }
    char *out = json_dumps(doc, JSON_INDENT(4));
    json_decref(doc);
    int rc = out && ensure_dir(a->data_dir, &err) == EDDY_OK
                 ? write_atomically(a->data_dir, "settings-user.json", out, false, &err)
                 : EDDY_EIO;
    eddy_free(out);
    if (rc != EDDY_OK)
        eddy_http_reply_error(req, 500, "unexpected_error", "%s", err.msg);
    else
        eddy_http_reply(req, 204, NULL, "", 0);
    return EDDY_HTTP_DONE;
}

static int get_nodes(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    if (accepts_json(req)) {
        eddy_http_reply_json(req, 200, eddy_catalogue_sets(a->reg, a->web_dir));
        return EDDY_HTTP_DONE;
    }
    size_t len = 0;
    char *html = eddy_catalogue_html(a->reg, a->web_dir, &len);
    if (!html) {
        eddy_http_reply_error(req, 500, "unexpected_error", "out of memory");
        return EDDY_HTTP_DONE;
    }
    eddy_http_reply(req, 200, "text/html; charset=utf-8", html, len);
    eddy_free(html);
    return EDDY_HTTP_DONE;
}

static int get_empty_object(eddy_http_req *req, void *data)
{
    (void)data;
    eddy_http_reply_json(req, 200, json_object());
    return EDDY_HTTP_DONE;
}

static int get_empty_list(eddy_http_req *req, void *data)
{
    (void)data;
    eddy_http_reply_json(req, 200, json_array());
    return EDDY_HTTP_DONE;
}

static int get_plugins(eddy_http_req *req, void *data)
{
    (void)data;
    if (accepts_json(req))
        eddy_http_reply_json(req, 200, json_array());
    else
        eddy_http_reply(req, 200, "text/html; charset=utf-8", "", 0);
    return EDDY_HTTP_DONE;
}

static int get_icons(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    eddy_http_reply_json(req, 200, eddy_catalogue_icons(a->web_dir));
    return EDDY_HTTP_DONE;
}

/* icons/<module>/<file>: Node-RED's core icons; unknown ones get arrow-in.svg, as there. */
static int get_icon(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    const char *rest = eddy_http_req_rest(req);
    const char *file = strrchr(rest, '/');
    file = file ? file + 1 : rest;
    char name[300];
    snprintf(name, sizeof(name), "nodes/icons/%s", file);
    if (!*file || strstr(file, "..") || !a->web_dir)
        snprintf(name, sizeof(name), "nodes/icons/arrow-in.svg");
    char *path = a->web_dir ? path_join(a->web_dir, name) : NULL;
    if (path && access(path, R_OK) != 0)
        snprintf(name, sizeof(name), "nodes/icons/arrow-in.svg");
    eddy_free(path);
    const char *ext = strrchr(name, '.');
    const char *type = ext && strcmp(ext, ".png") == 0 ? "image/png" : "image/svg+xml";
    eddy_http_add_header(req, "Cache-Control", "max-age=86400");
    return reply_file(req, a->web_dir, name, type, NULL);
}

/* ---- login ---- */

static int get_login(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    if (!json_object_get(a->settings, "adminAuth")) {
        eddy_http_reply_json(req, 200, json_object());
        return EDDY_HTTP_DONE;
    }
    eddy_http_reply_json(req, 200,
                         json_pack("{s:s,s:[{s:s,s:s,s:s},{s:s,s:s,s:s}]}", "type", "credentials",
                                   "prompts", "id", "username", "type", "text", "label",
                                   "user.username", "id", "password", "type", "password", "label",
                                   "user.password"));
    return EDDY_HTTP_DONE;
}

static const json_t *check_password(eddy_admin *a, const char *user, const char *password)
{
    json_t *users = json_object_get(json_object_get(a->settings, "adminAuth"), "users");
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u)
    {
        if (strcmp(str_or(u, "username", ""), user) != 0)
            continue;
        const char *hash = str_or(u, "password", "");
        struct crypt_data cd;
        memset(&cd, 0, sizeof(cd));
        const char *got = crypt_r(password, hash, &cd);
        if (got && strcmp(got, hash) == 0)
            return u;
    }
    return NULL;
}

static int post_token(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    int64_t now = eddy_loop_now(a->loop);
    if (now - a->login_window_start > LOGIN_WINDOW_MS) {
        a->login_window_start = now;
        a->login_failures = 0;
    }
    if (a->login_failures >= LOGIN_FAILURES_ALLOWED) {
        eddy_http_reply_error(req, 429, "too_many_attempts",
                              "too many failed logins; try again in a minute");
        return EDDY_HTTP_DONE;
    }
    const char *user = eddy_http_req_param(req, "username");
    const char *password = eddy_http_req_param(req, "password");
    const json_t *u = user && password && json_object_get(a->settings, "adminAuth")
                          ? check_password(a, user, password)
                          : NULL;
    if (!u) {
        a->login_failures++;
        eddy_log(EDDY_LOG_WARN, "[admin] failed login for user '%s'", user ? user : "");
        eddy_http_reply_error(req, 403, "unauthorized", "wrong user name or password");
        return EDDY_HTTP_DONE;
    }
    char token[65];
    if (eddy_random_hex(token, 32) != EDDY_OK) {
        eddy_http_reply_error(req, 500, "unexpected_error", "no randomness for a token");
        return EDDY_HTTP_DONE;
    }
    json_object_set_new(a->tokens, token,
                        json_pack("{s:s,s:s,s:I}", "user", user, "permissions",
                                  str_or(u, "permissions", "*"), "expires",
                                  (json_int_t)(eddy_loop_wall(a->loop) / 1000 + TOKEN_LIFETIME_S)));
    eddy_http_reply_json(req, 200,
                         json_pack("{s:s,s:i,s:s}", "access_token", token, "expires_in",
                                   TOKEN_LIFETIME_S, "token_type", "Bearer"));
    return EDDY_HTTP_DONE;
}

static int post_revoke(eddy_http_req *req, void *data)
{
    eddy_admin *a = data;
    const char *token = eddy_http_req_param(req, "token");
    if (token)
        json_object_del(a->tokens, token);
    eddy_http_reply(req, 200, "text/plain", "OK", 2);
    return EDDY_HTTP_DONE;
}

/* What a token allows: its user's permissions, as Node-RED reads them ("*" everything;
 * "read" or "*.read" only reading; an array of scopes allows writing when one of them
 * does). Editor routes that change something carry EDDY_HTTP_WRITE. */
static int token_allows(const char *token, void *data)
{
    eddy_admin *a = data;
    json_t *t = json_object_get(a->tokens, token);
    if (!t)
        return EDDY_HTTP_AUTH_NONE;
    if (json_integer_value(json_object_get(t, "expires")) < eddy_loop_wall(a->loop) / 1000) {
        json_object_del(a->tokens, token);
        return EDDY_HTTP_AUTH_NONE;
    }
    const char *p = str_or(t, "permissions", "*");
    return strcmp(p, "read") == 0 || strcmp(p, "*.read") == 0 ? EDDY_HTTP_AUTH_READ
                                                              : EDDY_HTTP_AUTH_WRITE;
}

/* ---- set-up ---- */

typedef struct route {
    const char *method, *pattern;
    unsigned flags;
    eddy_http_handler handler;
} route;

static const route routes[] = {{"GET", "", EDDY_HTTP_PUBLIC, get_index},
                               {"GET", "theme", EDDY_HTTP_PUBLIC, get_theme},
                               {"GET", "locales/*", EDDY_HTTP_PUBLIC, get_locale},
                               {"GET", "auth/login", EDDY_HTTP_PUBLIC, get_login},
                               {"POST", "auth/token", EDDY_HTTP_PUBLIC, post_token},
                               {"POST", "auth/revoke", 0, post_revoke},
                               {"GET", "icons/*", EDDY_HTTP_PUBLIC, get_icon},
                               {"GET", "settings", 0, get_settings},
                               {"GET", "settings/user", 0, get_user_settings},
                               {"POST", "settings/user", EDDY_HTTP_WRITE, post_user_settings},
                               {"GET", "plugins", 0, get_plugins},
                               {"GET", "plugins/messages", 0, get_empty_object},
                               {"GET", "nodes", 0, get_nodes},
                               {"GET", "nodes/messages", 0, get_empty_object},
                               {"GET", "icons", 0, get_icons},
                               {"GET", "flows", 0, get_flows},
                               {"POST", "flows", EDDY_HTTP_WRITE, post_flows},
                               {"POST", "inject/*", EDDY_HTTP_WRITE, post_inject},
                               {"POST", "debug/*", EDDY_HTTP_WRITE, post_debug},
                               {"GET", "credentials/*", 0, get_credentials},
                               {"GET", "context/*", 0, get_context},
                               {"GET", "library/*", 0, get_empty_list},
                               {"GET", "api/state/*", 0, get_state},
                               {NULL, NULL, 0, NULL}};

static int add_routes(eddy_admin *a)
{
    for (const route *r = routes; r->method; r++)
        if (eddy_http_route(a->http, r->method, r->pattern, r->flags, r->handler, a) != EDDY_OK)
            return EDDY_ENOMEM;
    if (!a->web_dir)
        return EDDY_OK;
    /* the page adds ?v= cache busters, so static files may be cached long */
    char *dirs[] = {path_join(a->web_dir, "nodes/core/common/lib/debug"),
                    path_join(a->web_dir, "theme"), path_join(a->web_dir, "public")};
    int rc = EDDY_OK;
    if (rc == EDDY_OK && dirs[0])
        rc = eddy_http_static(a->http, "debug/view/", dirs[0], 3600);
    if (rc == EDDY_OK && dirs[1])
        rc = eddy_http_static(a->http, "theme/", dirs[1], 86400);
    if (rc == EDDY_OK && dirs[2])
        rc = eddy_http_static(a->http, "", dirs[2], 86400);
    for (int i = 0; i < 3; i++)
        eddy_free(dirs[i]);
    return rc;
}

eddy_admin *eddy_admin_new(eddy_loop *loop, eddy_engine *engine, const eddy_registry *reg,
                           const eddy_admin_opts *opts, eddy_err *err)
{
    eddy_admin *a = eddy_calloc(1, sizeof(*a));
    if (!a) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->engine = engine;
    a->reg = reg;
    a->fsync = opts->fsync;
    a->store = opts->store;
    a->debug_max_length = DEFAULT_DEBUG_MAX_LENGTH;
    a->debug_rate_limit = DEFAULT_DEBUG_RATE;
    a->data_dir = eddy_strdup(opts->data_dir ? opts->data_dir : "eddy-data");
    a->web_dir = opts->web_dir ? eddy_strdup(opts->web_dir) : NULL;
    a->debug_rate = json_object();
    a->tokens = json_object();
    a->flows = json_array();
    a->creds = json_object();
    if (!a->data_dir || !a->debug_rate || !a->tokens || !a->flows || !a->creds) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory");
        goto fail;
    }
    set_rev(a);
    if (load_settings(a, opts->settings_file, err) != EDDY_OK)
        goto fail;
    eddy_http_opts hopts = {.listen = opts->listen, .port = opts->port};
    a->http = eddy_http_new(loop, &hopts, err);
    if (!a->http)
        goto fail;
    if (add_routes(a) != EDDY_OK) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory");
        goto fail;
    }
    if (json_object_get(a->settings, "adminAuth"))
        eddy_http_set_auth(a->http, token_allows, a);
    eddy_engine_hooks hooks = {.on_status = on_status,
                               .on_uncaught = on_uncaught,
                               .on_warn = on_warn,
                               .on_debug = on_debug,
                               .on_close = on_close,
                               .data = a};
    eddy_engine_set_hooks(engine, &hooks);
    return a;
fail:
    eddy_admin_free(a);
    return NULL;
}

int eddy_admin_port(const eddy_admin *a)
{
    return eddy_http_port(a->http);
}

void eddy_admin_free(eddy_admin *a)
{
    if (!a)
        return;
    if (a->engine) {
        eddy_engine_hooks none = {0};
        eddy_engine_set_hooks(a->engine, &none);
    }
    eddy_loop_cancel_deferred(a->loop, a);
    eddy_timer_stop(a->loop, a->skip_timer);
    if (a->deploy_req)
        eddy_http_reply_error(a->deploy_req, 503, "shutting_down", "eddy is stopping");
    json_decref(a->deploy_flows);
    json_decref(a->deploy_creds);
    eddy_http_free(a->http);
    json_decref(a->settings);
    json_decref(a->flows);
    json_decref(a->creds);
    json_decref(a->missing);
    json_decref(a->debug_rate);
    json_decref(a->tokens);
    eddy_free(a->secret);
    eddy_free(a->data_dir);
    eddy_free(a->web_dir);
    eddy_free(a);
}
