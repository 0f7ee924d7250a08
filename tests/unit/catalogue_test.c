/* catalogue_test.c: the node catalogue the editor loads (runtime/catalogue.h): every type
 * in exactly one set and with a definition after its set's marker, the native definitions
 * agree with the C property tables, Node-RED's inject and debug come from a web folder
 * when it has them, and Lua types get a generated or hand-written definition. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalogue.h"
#include "check.h"
#include "flow.h"
#include "log.h"
#include "lua_type.h"
#include "mem.h"
#include "registry.h"

/* ---- scratch folders ---- */

static char scratch[64];

static void scratch_new(void)
{
    snprintf(scratch, sizeof(scratch), "/tmp/eddy-catalogue-XXXXXX");
    if (!mkdtemp(scratch))
        CHECK_FAIL_("mkdtemp failed");
}

static void scratch_free(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
    CHECK_INT_EQ(system(cmd), 0);
}

/* Writes 'text' to <scratch>/<rel>, making the folders on the way. */
static void write_file(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", scratch, rel);
    for (char *p = path + strlen(scratch) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* A Node-RED web folder with the files the catalogue reads. */
static void fake_web_dir(void)
{
    write_file("nodes/package.json", "{\"name\":\"@node-red/nodes\",\"version\":\"9.8.7\"}");
    write_file("nodes/core/common/20-inject.html", "<script>/* INJECT-CORE */</script>");
    write_file("nodes/locales/en-US/common/20-inject.html",
               "<script type=\"text/html\" data-help-name=\"inject\">INJECT-HELP</script>");
    write_file("nodes/core/common/21-debug.html", "<script>/* DEBUG-CORE */</script>");
    write_file("nodes/locales/en-US/common/21-debug.html",
               "<script type=\"text/html\" data-help-name=\"debug\">DEBUG-HELP</script>");
    write_file("nodes/icons/switch.svg", "<svg/>");
    write_file("nodes/icons/alert.svg", "<svg/>");
}

/* ---- helpers ---- */

/* Builtins plus the Lua types shipped in nodes/lua. */
static eddy_registry *full_registry(void)
{
    eddy_err err = {0};
    eddy_registry *reg = eddy_registry_new(&err);
    CHECK(reg != NULL);
    CHECK_INT_EQ(eddy_registry_add_builtin(reg, &err), EDDY_OK);
    eddy_problems problems = {0};
    int n = eddy_lua_types_load(reg, EDDY_SOURCE_DIR "/nodes/lua", &problems);
    eddy_problems_clear(&problems);
    CHECK(n >= 3);
    return reg;
}

/* The set (JSON object) that lists 'type'; fails unless exactly one does. */
static const json_t *set_of(const json_t *sets, const char *type)
{
    const json_t *found = NULL;
    size_t i, j;
    json_t *set, *t;
    json_array_foreach(sets, i, set)
    {
        json_array_foreach(json_object_get(set, "types"), j, t)
        {
            if (strcmp(json_string_value(t), type) == 0) {
                if (found)
                    CHECK_FAIL_("type '%s' is in two sets", type);
                found = set;
            }
        }
    }
    return found;
}

/* The HTML of set 'id' inside the catalogue HTML: from after its marker to the next marker.
 * New, eddy_free; NULL when the marker is missing. */
static char *set_html(const char *html, const char *id)
{
    char marker[300];
    snprintf(marker, sizeof(marker), "\n<!-- --- [red-module:%s] --- -->\n", id);
    const char *start = strstr(html, marker);
    if (!start)
        return NULL;
    start += strlen(marker);
    const char *end = strstr(start, "\n<!-- --- [red-module:");
    return eddy_strndup(start, end ? (size_t)(end - start) : strlen(start));
}

static bool registers(const char *html, const char *type)
{
    char call[200];
    snprintf(call, sizeof(call), "RED.nodes.registerType(\"%s\"", type);
    return strstr(html, call) != NULL;
}

/* ---- tests ---- */

static void test_every_type_in_one_set(void)
{
    eddy_registry *reg = full_registry();
    json_t *sets = eddy_catalogue_sets(reg, NULL);
    size_t len = 0;
    char *html = eddy_catalogue_html(reg, NULL, &len);
    CHECK(sets && html);
    CHECK_INT_EQ(len, strlen(html));
    int lua = 0;
    for (int i = 0; i < eddy_registry_count(reg); i++) {
        const eddy_node_type *t = eddy_registry_at(reg, i);
        const json_t *set = set_of(sets, t->name);
        if (strcmp(t->name, "inject") == 0 || strcmp(t->name, "debug") == 0) {
            CHECK(set == NULL); /* no web folder: Node-RED's own are left out */
            continue;
        }
        if (!set)
            CHECK_FAIL_("type '%s' is in no set", t->name);
        const char *id = json_string_value(json_object_get(set, "id"));
        const char *module = json_string_value(json_object_get(set, "module"));
        CHECK(json_is_true(json_object_get(set, "enabled")));
        CHECK(json_is_false(json_object_get(set, "local")));
        CHECK(json_is_false(json_object_get(set, "user")));
        CHECK_STR_EQ(json_string_value(json_object_get(set, "version")), EDDY_VERSION);
        CHECK(strchr(id, ' ') == NULL); /* the editor's marker takes no white space */
        if (eddy_lua_type_is(t)) {
            CHECK_STR_EQ(module, "eddy-lua");
            lua++;
        } else {
            CHECK_STR_EQ(module, "eddy");
        }
        char *part = set_html(html, id);
        if (!part)
            CHECK_FAIL_("no marker for set '%s'", id);
        /* junction: the editor draws it itself; Node-RED registers no type for it */
        bool ok = strcmp(t->name, "junction") == 0 ? !strstr(part, "registerType")
                                                   : registers(part, t->name);
        eddy_free(part);
        if (!ok)
            CHECK_FAIL_("set '%s' does not define type '%s'", id, t->name);
    }
    CHECK_INT_EQ(lua, 3);
    /* a Lua type with a space in its name */
    const json_t *dew = set_of(sets, "dew point");
    CHECK(dew != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(dew, "id")), "eddy-lua/dew%20point");
    CHECK_INT_EQ(json_array_size(sets), eddy_registry_count(reg) - 2);
    json_decref(sets);
    eddy_free(html);
    eddy_registry_free(reg);
}

/* The keys of the object literal after "defaults:" in a definition, at its top level. */
static int defaults_keys(const char *html, char keys[][64], int max)
{
    const char *p = strstr(html, "defaults:");
    if (!p || !(p = strchr(p, '{')))
        return -1;
    int depth = 0, n = 0;
    bool expect_key = false;
    for (; *p; p++) {
        char c = *p;
        if (c == '"' || c == '\'') { /* skip a string literal */
            for (p++; *p && *p != c; p++)
                if (*p == '\\' && p[1])
                    p++;
            expect_key = false;
            continue;
        }
        if (c == '{' || c == '[' || c == '(') {
            depth++;
            expect_key = depth == 1;
        } else if (c == '}' || c == ']' || c == ')') {
            if (--depth == 0)
                return n;
        } else if (c == ',' && depth == 1) {
            expect_key = true;
        } else if (expect_key && (isalpha((unsigned char)c) || c == '_')) {
            const char *s = p;
            while (isalnum((unsigned char)*p) || *p == '_')
                p++;
            const char *q = p;
            while (isspace((unsigned char)*q))
                q++;
            if (*q == ':' && n < max)
                snprintf(keys[n++], 64, "%.*s", (int)(p - s), s);
            p--;
            expect_key = false;
        } else if (!isspace((unsigned char)c)) {
            expect_key = false;
        }
    }
    return -1;
}

static const eddy_prop *find_prop(const eddy_node_type *t, const char *name)
{
    for (const eddy_prop *p = t->props; p && p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

/* Keys a definition may hold that the C type does not declare, each with its reason. */
static bool editor_only_key(const eddy_node_type *t, const char *key)
{
    if (strcmp(key, "name") == 0) /* every node's name, read by the engine directly */
        return true;
    if (strcmp(key, "outputs") == 0 && t->outputs < 0) /* output count from the flow */
        return true;
    if (strcmp(key, "info") == 0 && strcmp(t->name, "comment") == 0) /* its text */
        return true;
    /* Node-RED keeps links on both ends; eddy's link in needs none, the editor draws them */
    if (strcmp(key, "links") == 0 && strcmp(t->name, "link in") == 0)
        return true;
    return false;
}

static void test_native_defaults_match_props(void)
{
    int checked = 0;
    for (int i = 0; eddy_native_node_types[i]; i++) {
        const eddy_node_type *t = eddy_native_node_types[i];
        const char *stem = eddy_native_node_stems[i];
        if (strcmp(stem, "inject") == 0 || strcmp(stem, "debug") == 0) {
            CHECK(eddy_catalogue_native(stem) == NULL); /* served from @node-red/nodes */
            continue;
        }
        const eddy_catalogue_def *def = eddy_catalogue_native(stem);
        if (!def)
            CHECK_FAIL_("nodes/%s.html is missing", stem);
        CHECK_INT_EQ(def->len, strlen(def->html));
        if (strcmp(stem, "junction") == 0)
            continue;
        char tmpl[200], help[200];
        snprintf(tmpl, sizeof(tmpl), "data-template-name=\"%s\"", t->name);
        snprintf(help, sizeof(help), "data-help-name=\"%s\"", t->name);
        CHECK_CONTAINS(def->html, tmpl);
        CHECK_CONTAINS(def->html, help);
        CHECK(registers(def->html, t->name));
        char keys[64][64];
        int n = defaults_keys(def->html, keys, 64);
        if (n < 1)
            CHECK_FAIL_("nodes/%s.html: no defaults object", stem);
        for (int k = 0; k < n; k++)
            if (!find_prop(t, keys[k]) && !editor_only_key(t, keys[k]))
                CHECK_FAIL_("nodes/%s.html: default '%s' is no property of '%s'", stem, keys[k],
                            t->name);
        for (const eddy_prop *p = t->props; p && p->name; p++) {
            if (!p->required)
                continue;
            bool found = false;
            for (int k = 0; k < n; k++)
                found = found || strcmp(keys[k], p->name) == 0;
            if (!found)
                CHECK_FAIL_("nodes/%s.html: required property '%s' has no default", stem, p->name);
        }
        checked++;
    }
    CHECK(checked >= 20);
}

/* The checker itself: a key that is no property is found, nested keys are not keys. */
static void test_defaults_parser(void)
{
    char keys[8][64];
    int n = defaults_keys("x({defaults: {name: {value: \"a,b:\"}, rules: {value: [{t: \"eq\"}]},"
                          " gap: {validate: f(/^(\\d*)$/)}}, inputs: 1})",
                          keys, 8);
    CHECK_INT_EQ(n, 3);
    CHECK_STR_EQ(keys[0], "name");
    CHECK_STR_EQ(keys[1], "rules");
    CHECK_STR_EQ(keys[2], "gap");
    CHECK_INT_EQ(defaults_keys("no object here", keys, 8), -1);
}

static int warnings;
static void count_warnings(eddy_log_level level, const char *line, void *data)
{
    if (level == EDDY_LOG_WARN && strstr(line, "inject and debug"))
        warnings++;
}

static void test_node_red_sets_from_web_dir(void)
{
    scratch_new();
    fake_web_dir();
    eddy_err err = {0};
    eddy_registry *reg = eddy_registry_new(&err);
    CHECK_INT_EQ(eddy_registry_add_builtin(reg, &err), EDDY_OK);

    json_t *sets = eddy_catalogue_sets(reg, scratch);
    const json_t *inject = set_of(sets, "inject"), *debug = set_of(sets, "debug");
    CHECK(inject && debug);
    CHECK_STR_EQ(json_string_value(json_object_get(inject, "id")), "node-red/inject");
    CHECK_STR_EQ(json_string_value(json_object_get(debug, "id")), "node-red/debug");
    CHECK_STR_EQ(json_string_value(json_object_get(inject, "module")), "node-red");
    CHECK_STR_EQ(json_string_value(json_object_get(debug, "version")), "9.8.7");
    char *html = eddy_catalogue_html(reg, scratch, NULL);
    char *part = set_html(html, "node-red/inject");
    CHECK(part != NULL);
    const char *core = strstr(part, "INJECT-CORE"), *help = strstr(part, "INJECT-HELP");
    CHECK(core && help && core < help); /* the locale's help follows the core HTML */
    CHECK(strstr(part, "DEBUG") == NULL);
    eddy_free(part);
    part = set_html(html, "node-red/debug");
    CHECK_CONTAINS(part, "DEBUG-CORE");
    CHECK_CONTAINS(part, "DEBUG-HELP");
    eddy_free(part);
    eddy_free(html);
    json_decref(sets);

    json_t *icons = eddy_catalogue_icons(scratch);
    char *text = json_dumps(icons, JSON_COMPACT);
    CHECK_STR_EQ(text, "{\"node-red\":[\"alert.svg\",\"switch.svg\"]}");
    eddy_free(text);
    json_decref(icons);

    /* without debug's help the debug set is left out of both views, with one warning */
    char path[512];
    snprintf(path, sizeof(path), "%s/nodes/locales/en-US/common/21-debug.html", scratch);
    CHECK_INT_EQ(unlink(path), 0);
    eddy_log_set_hook(count_warnings, NULL);
    sets = eddy_catalogue_sets(reg, scratch);
    html = eddy_catalogue_html(reg, scratch, NULL);
    eddy_log_set_hook(NULL, NULL);
    CHECK(set_of(sets, "inject") != NULL);
    CHECK(set_of(sets, "debug") == NULL);
    CHECK(strstr(html, "[red-module:node-red/debug]") == NULL);
    CHECK_CONTAINS(html, "[red-module:node-red/inject]");
    CHECK(warnings <= 1); /* once per process (an earlier test may have used it) */
    json_decref(sets);
    eddy_free(html);

    icons = eddy_catalogue_icons(NULL);
    CHECK_INT_EQ(json_object_size(icons), 0);
    json_decref(icons);
    eddy_registry_free(reg);
    scratch_free();
}

static void test_lua_type_editor_file(void)
{
    scratch_new();
    write_file("types/plain/node.lua", "return {name = \"plain one\", input = function(node, msg) "
                                       "return msg end}");
    write_file("types/custom/node.lua", "return {name = \"custom\", input = function(node, msg) "
                                        "return msg end}");
    write_file("types/custom/editor.html", "<script>/* HAND-WRITTEN */</script>");
    eddy_err err = {0};
    eddy_registry *reg = eddy_registry_new(&err);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/types", scratch);
    eddy_problems problems = {0};
    CHECK_INT_EQ(eddy_lua_types_load(reg, dir, &problems), 2);
    eddy_problems_clear(&problems);
    char *html = eddy_catalogue_html(reg, NULL, NULL);
    char *custom = set_html(html, "eddy-lua/custom");
    char *plain = set_html(html, "eddy-lua/plain%20one");
    CHECK(custom && plain);
    CHECK_STR_EQ(custom, "<script>/* HAND-WRITTEN */</script>");
    CHECK(registers(plain, "plain one"));
    eddy_free(custom);
    eddy_free(plain);
    eddy_free(html);
    eddy_registry_free(reg);
    scratch_free();
}

static void noop_input(eddy_node *node, void *state, json_t *msg)
{
    json_decref(msg);
}

static void test_other_types_listed_without_html(void)
{
    static const eddy_node_type helper = {
        .name = "test helper", .inputs = 1, .outputs = 0, .input = noop_input};
    eddy_err err = {0};
    eddy_registry *reg = eddy_registry_new(&err);
    CHECK_INT_EQ(eddy_registry_add(reg, &helper, &err), EDDY_OK);
    json_t *sets = eddy_catalogue_sets(reg, NULL);
    CHECK_INT_EQ(json_array_size(sets), 1);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(sets, 0), "id")),
                 "eddy-extra/test%20helper");
    char *html = eddy_catalogue_html(reg, NULL, NULL);
    CHECK_STR_EQ(html, "\n<!-- --- [red-module:eddy-extra/test%20helper] --- -->\n");
    eddy_free(html);
    json_decref(sets);
    eddy_registry_free(reg);
}

static const check_test tests[] = {
    {"every_type_in_one_set", test_every_type_in_one_set},
    {"native_defaults_match_props", test_native_defaults_match_props},
    {"defaults_parser", test_defaults_parser},
    {"node_red_sets_from_web_dir", test_node_red_sets_from_web_dir},
    {"lua_type_editor_file", test_lua_type_editor_file},
    {"other_types_listed_without_html", test_other_types_listed_without_html},
    {NULL, NULL},
};

CHECK_MAIN(tests)
