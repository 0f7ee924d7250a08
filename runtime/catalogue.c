/* catalogue.c: the node sets the editor loads (see catalogue.h). The list of sets is built
 * once per call by walking the registry; the JSON and the HTML are two views of it. */
#include "catalogue.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "lua_type.h"
#include "mem.h"
#include "msg.h"

#define NR_MODULE    "node-red"
#define EDDY_MODULE  "eddy"
#define LUA_MODULE   "eddy-lua"
#define EXTRA_MODULE "eddy-extra" /* types neither native nor Lua (test helpers) */

/* Node-RED's core files served from @node-red/nodes: inject and debug, and "unknown", the
 * editor-only type the editor draws nodes of missing types with (it has no runtime). */
static const struct nr_core {
    const char *type;
    const char *file; /* under nodes/core/ and nodes/locales/en-US/ */
    bool editor_only; /* no registry type: served whenever the files are there */
} nr_core[] = {
    {"inject", "common/20-inject.html", false},
    {"debug", "common/21-debug.html", false},
    {"unknown", "common/98-unknown.html", true},
};

const eddy_catalogue_def *eddy_catalogue_native(const char *stem)
{
    for (const eddy_catalogue_def *d = eddy_catalogue_natives; d->stem; d++)
        if (strcmp(d->stem, stem) == 0)
            return d;
    return NULL;
}

/* ---- files of the web folder ---- */

static void web_path(char *out, size_t size, const char *web_dir, const char *a, const char *b)
{
    snprintf(out, size, "%s/nodes/%s%s", web_dir, a, b);
}

/* Node-RED's definition of nr_core[i]: the core HTML, then its en-US help (the registry of
 * Node-RED appends the locale's help the same way). NULL when a file is missing. */
static char *nr_core_html(const char *web_dir, int i, size_t *len)
{
    if (!web_dir)
        return NULL;
    char path[4096];
    size_t clen = 0, hlen = 0;
    web_path(path, sizeof(path), web_dir, "core/", nr_core[i].file);
    char *core = eddy_read_file(path, &clen);
    web_path(path, sizeof(path), web_dir, "locales/en-US/", nr_core[i].file);
    char *help = core ? eddy_read_file(path, &hlen) : NULL;
    if (!core || !help) {
        eddy_free(core);
        eddy_free(help);
        return NULL;
    }
    eddy_buf b = {0};
    eddy_buf_add(&b, core, clen);
    eddy_buf_str(&b, "\n");
    eddy_buf_add(&b, help, hlen);
    eddy_free(core);
    eddy_free(help);
    if (b.failed) {
        eddy_free(b.data);
        return NULL;
    }
    *len = b.len;
    return b.data;
}

static bool nr_core_present(const char *web_dir, int i)
{
    if (!web_dir)
        return false;
    char path[4096];
    struct stat st;
    web_path(path, sizeof(path), web_dir, "core/", nr_core[i].file);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    web_path(path, sizeof(path), web_dir, "locales/en-US/", nr_core[i].file);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void warn_missing_core(const char *web_dir)
{
    static bool warned;
    if (warned)
        return;
    warned = true;
    eddy_log(EDDY_LOG_WARN,
             "[editor] Node-RED's inject and debug definitions are not in %s/nodes: the editor's "
             "palette lacks them (run scripts/build-web.sh, or set EDDY_WEB_DIR)",
             web_dir ? web_dir : "(no web folder)");
}

/* The version of the @node-red/nodes package in the web folder. New, eddy_free. */
static char *nr_version(const char *web_dir)
{
    char path[4096];
    web_path(path, sizeof(path), web_dir, "package.json", "");
    json_t *pkg = json_load_file(path, 0, NULL);
    const char *v = json_string_value(json_object_get(pkg, "version"));
    char *out = eddy_strdup(v ? v : "0.0.0");
    json_decref(pkg);
    return out;
}

/* ---- the sets ---- */

typedef enum set_kind { SET_NR_CORE, SET_NATIVE, SET_LUA, SET_OTHER } set_kind;

typedef struct cat_set {
    set_kind kind;
    char id[256];
    const char *module, *name;
    int core;                   /* SET_NR_CORE: index in nr_core */
    const char *stem;           /* SET_NATIVE */
    const eddy_node_type *type; /* its one type */
} cat_set;

typedef struct cat_list {
    cat_set *sets;
    int count;
} cat_list;

/* The native stem of 'type', or NULL when it is not a native type. */
static const char *native_stem(const eddy_node_type *type)
{
    for (int i = 0; eddy_native_node_types[i]; i++)
        if (eddy_native_node_types[i] == type)
            return eddy_native_node_stems[i];
    return NULL;
}

/* A set id part from a type name: the editor's marker takes no white space. */
static void id_part(char *out, size_t size, const char *name)
{
    size_t o = 0;
    for (const char *p = name; *p && o + 4 < size; p++) {
        if (*p == ' ' || *p == '%') {
            o += (size_t)snprintf(out + o, size - o, "%%%02X", (unsigned char)*p);
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* Builds the list of sets, one per type (Node-RED's sets may hold several; eddy's one file
 * per type makes one each). false when out of memory. */
static bool build(const eddy_registry *reg, const char *web_dir, cat_list *l)
{
    int n = eddy_registry_count(reg);
    int cores = (int)(sizeof(nr_core) / sizeof(nr_core[0]));
    l->count = 0;
    l->sets = eddy_calloc((size_t)(n + cores) + 1, sizeof(*l->sets));
    if (!l->sets)
        return false;
    bool missing_core = false;
    for (int i = 0; i < n; i++) {
        const eddy_node_type *t = eddy_registry_at(reg, i);
        const char *stem = native_stem(t);
        cat_set s = {
            .kind = SET_OTHER, .module = EXTRA_MODULE, .name = t->name, .core = -1, .type = t};
        char part[200];
        if (stem) {
            for (int c = 0; c < (int)(sizeof(nr_core) / sizeof(nr_core[0])); c++)
                if (strcmp(t->name, nr_core[c].type) == 0)
                    s.core = c;
            if (s.core >= 0 && !nr_core_present(web_dir, s.core)) {
                missing_core = true;
                continue;
            }
            if (s.core >= 0) {
                s.kind = SET_NR_CORE;
                s.module = NR_MODULE;
                s.name = nr_core[s.core].type;
                snprintf(s.id, sizeof(s.id), "%s/%s", NR_MODULE, s.name);
            } else {
                s.kind = SET_NATIVE;
                s.module = EDDY_MODULE;
                s.stem = stem;
                s.name = stem;
                snprintf(s.id, sizeof(s.id), "%s/%s", EDDY_MODULE, stem);
            }
        } else if (eddy_lua_type_is(t)) {
            s.kind = SET_LUA;
            s.module = LUA_MODULE;
            id_part(part, sizeof(part), t->name);
            snprintf(s.id, sizeof(s.id), "%s/%s", LUA_MODULE, part);
        } else {
            id_part(part, sizeof(part), t->name);
            snprintf(s.id, sizeof(s.id), "%s/%s", EXTRA_MODULE, part);
        }
        l->sets[l->count++] = s;
    }
    for (int c = 0; c < cores; c++) {
        if (!nr_core[c].editor_only || !nr_core_present(web_dir, c))
            continue;
        cat_set s = {.kind = SET_NR_CORE, .module = NR_MODULE, .name = nr_core[c].type, .core = c};
        snprintf(s.id, sizeof(s.id), "%s/%s", NR_MODULE, s.name);
        l->sets[l->count++] = s;
    }
    if (missing_core)
        warn_missing_core(web_dir);
    return true;
}

json_t *eddy_catalogue_sets(const eddy_registry *reg, const char *web_dir)
{
    cat_list l;
    if (!build(reg, web_dir, &l))
        return NULL;
    char *nrv = NULL;
    json_t *out = json_array();
    for (int i = 0; out && i < l.count; i++) {
        const cat_set *s = &l.sets[i];
        if (s->kind == SET_NR_CORE && !nrv && !(nrv = nr_version(web_dir)))
            break;
        json_t *set =
            json_pack("{s:s,s:s,s:[s],s:b,s:b,s:b,s:s,s:s}", "id", s->id, "name", s->name, "types",
                      s->type ? s->type->name : s->name, "enabled", 1, "local", 0, "user", 0,
                      "module", s->module, "version", s->kind == SET_NR_CORE ? nrv : EDDY_VERSION);
        if (!set || json_array_append_new(out, set) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    if (out && (int)json_array_size(out) != l.count) {
        json_decref(out);
        out = NULL;
    }
    eddy_free(nrv);
    eddy_free(l.sets);
    return out;
}

/* The folder of a Lua type's node.lua, with "/editor.html". */
static char *lua_editor_file(const eddy_node_type *type, size_t *len)
{
    const char *file = eddy_lua_type_file(type);
    const char *slash = file ? strrchr(file, '/') : NULL;
    char path[4096];
    if (slash)
        snprintf(path, sizeof(path), "%.*s/editor.html", (int)(slash - file), file);
    else
        snprintf(path, sizeof(path), "editor.html");
    return eddy_read_file(path, len);
}

char *eddy_catalogue_html(const eddy_registry *reg, const char *web_dir, size_t *len)
{
    cat_list l;
    if (!build(reg, web_dir, &l))
        return NULL;
    eddy_buf b = {0};
    eddy_buf_str(&b, ""); /* an empty catalogue is "", not NULL */
    for (int i = 0; i < l.count && !b.failed; i++) {
        const cat_set *s = &l.sets[i];
        eddy_buf_str(&b, "\n<!-- --- [red-module:");
        eddy_buf_str(&b, s->id);
        eddy_buf_str(&b, "] --- -->\n");
        const eddy_catalogue_def *def;
        char *html = NULL;
        size_t hlen = 0;
        switch (s->kind) {
        case SET_NR_CORE:
            html = nr_core_html(web_dir, s->core, &hlen);
            if (!html)
                b.failed = true; /* present a moment ago: treat as a failure to read */
            break;
        case SET_NATIVE:
            if ((def = eddy_catalogue_native(s->stem)) != NULL)
                eddy_buf_add(&b, def->html, def->len);
            break;
        case SET_LUA:
            html = lua_editor_file(s->type, &hlen);
            if (!html && (html = eddy_lua_type_editor_html(s->type)) != NULL)
                hlen = strlen(html);
            if (!html)
                b.failed = true;
            break;
        case SET_OTHER:
            break;
        }
        if (html)
            eddy_buf_add(&b, html, hlen);
        eddy_free(html);
    }
    eddy_free(l.sets);
    if (b.failed) {
        eddy_free(b.data);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.data;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

json_t *eddy_catalogue_icons(const char *web_dir)
{
    json_t *out = json_object();
    if (!out || !web_dir)
        return out;
    char path[4096];
    web_path(path, sizeof(path), web_dir, "icons", "");
    DIR *d = opendir(path);
    if (!d)
        return out;
    char **names = NULL;
    size_t count = 0, cap = 0;
    bool failed = false;
    struct dirent *de;
    while (!failed && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = eddy_realloc(names, cap * sizeof(*names));
            if (!grown) {
                failed = true;
                break;
            }
            names = grown;
        }
        if (!(names[count] = eddy_strdup(de->d_name)))
            failed = true;
        else
            count++;
    }
    closedir(d);
    if (count)
        qsort(names, count, sizeof(*names), cmp_str);
    json_t *list = failed ? NULL : json_array();
    for (size_t i = 0; list && i < count; i++)
        if (json_array_append_new(list, json_string(names[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    for (size_t i = 0; i < count; i++)
        eddy_free(names[i]);
    eddy_free(names);
    if (!list || json_object_set_new(out, NR_MODULE, list) != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}
