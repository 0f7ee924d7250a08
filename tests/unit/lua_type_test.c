/* lua_type_test.c: node types written in Lua (runtime/lua_type.c): loading folders, the
 * errors a bad declaration gets (with file and line), running nodes of a type (setup,
 * input, close, limits), and the editor definition. The shipped types' behaviour is in
 * tests/nodes/cases/{dew_point,heat_index,hysteresis}.json. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "log.h"
#include "lua_type.h"

/* ---- a scratch folder of type folders ---- */

static char scratch[64];

static void scratch_new(void)
{
    snprintf(scratch, sizeof(scratch), "/tmp/eddy-lua-type-XXXXXX");
    if (!mkdtemp(scratch))
        CHECK_FAIL_("mkdtemp failed");
}

/* Writes 'text' as <scratch>/<folder>/node.lua; returns the file's path (static). */
static const char *write_type(const char *folder, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", scratch, folder);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/%s/node.lua", scratch, folder);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

static void scratch_free(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
    CHECK_INT_EQ(system(cmd), 0);
}

static eddy_registry *native_registry(void)
{
    eddy_err err;
    eddy_registry *reg = eddy_registry_new(&err);
    CHECK(reg && eddy_registry_add_builtin(reg, &err) == EDDY_OK);
    return reg;
}

/* Loads 'text' as a type and expects it refused: 'line' (0: not checked) and 'text' in the
 * message. */
static void expect_refused(const char *text, int line, const char *message)
{
    const char *file = write_type("bad", text);
    eddy_registry *reg = native_registry();
    int before = eddy_registry_count(reg);
    eddy_err err;
    eddy_err_clear(&err);
    int rc = eddy_lua_type_load_file(reg, file, &err);
    if (rc == EDDY_OK)
        CHECK_FAIL_("accepted: %s", text);
    CHECK_INT_EQ(eddy_registry_count(reg), before);
    CHECK_STR_EQ(err.file, file);
    if (line && err.line != line)
        CHECK_FAIL_("expected line %d, got %d (%s) for:\n%s", line, err.line, err.msg, text);
    CHECK_CONTAINS(err.msg, message);
    eddy_registry_free(reg);
}

/* ---- loading ---- */

static void test_shipped_types_load(void)
{
    eddy_registry *reg = native_registry();
    eddy_problems problems = {0};
    CHECK_INT_EQ(eddy_lua_types_load(reg, eddy_lua_types_dir(), &problems), 3);
    CHECK_INT_EQ(problems.count, 0);
    const char *names[] = {"dew point", "heat index", "hysteresis"};
    for (int i = 0; i < 3; i++) {
        const eddy_node_type *t = eddy_registry_find(reg, names[i]);
        CHECK(t != NULL);
        CHECK(eddy_lua_type_is(t));
        CHECK_CONTAINS(eddy_lua_type_file(t), "/node.lua");
        CHECK(t->inputs == 1 && t->outputs == 1 && t->help && t->props);
    }
    CHECK(!eddy_lua_type_is(eddy_registry_find(reg, "switch")));
    CHECK(eddy_lua_type_file(eddy_registry_find(reg, "switch")) == NULL);
    /* loading the same folder again: every type is a duplicate, named with its file */
    CHECK(eddy_lua_types_load(reg, eddy_lua_types_dir(), &problems) < 0);
    CHECK_INT_EQ(problems.count, 3);
    CHECK_CONTAINS(problems.items[0].msg, "node type 'dew point' is registered twice");
    CHECK_CONTAINS(problems.items[0].file, "dew-point/node.lua");
    eddy_problems_clear(&problems);
    eddy_registry_free(reg);
}

static void test_folder_forms(void)
{
    scratch_new();
    write_type("b-second", "return {name = 'second', input = function() end}");
    write_type("a-first", "return {name = 'first', inputs = 0, outputs = 2}");
    char other[300];
    snprintf(other, sizeof(other), "%s/not-a-type", scratch);
    mkdir(other, 0700); /* a folder without node.lua is not a type */
    eddy_registry *reg = native_registry();
    int natives = eddy_registry_count(reg);
    eddy_problems problems = {0};
    CHECK_INT_EQ(eddy_lua_types_load(reg, scratch, &problems), 2);
    CHECK_STR_EQ(eddy_registry_at(reg, natives)->name, "first"); /* in folder order */
    CHECK_STR_EQ(eddy_registry_at(reg, natives + 1)->name, "second");
    CHECK_INT_EQ(eddy_registry_find(reg, "first")->outputs, 2);
    eddy_registry_free(reg);
    /* a type's own folder */
    reg = native_registry();
    snprintf(other, sizeof(other), "%s/a-first", scratch);
    CHECK_INT_EQ(eddy_lua_types_load(reg, other, &problems), 1);
    CHECK(eddy_registry_find(reg, "first") != NULL);
    /* a missing folder */
    CHECK_INT_EQ(eddy_lua_types_load(reg, "/nonexistent/eddy-types", &problems), EDDY_ENOTFOUND);
    CHECK_INT_EQ(problems.count, 1);
    CHECK_CONTAINS(problems.items[0].msg, "cannot open the node types folder");
    /* one bad type among good ones: the good ones load */
    write_type("c-bad", "return {name = 'third', outputs = -1}");
    eddy_registry_free(reg);
    reg = native_registry();
    eddy_problems_clear(&problems);
    CHECK_INT_EQ(eddy_lua_types_load(reg, scratch, &problems), EDDY_EINVAL);
    CHECK(eddy_registry_find(reg, "first") && eddy_registry_find(reg, "second"));
    CHECK_INT_EQ(problems.count, 1);
    CHECK_CONTAINS(problems.items[0].file, "c-bad/node.lua");
    eddy_problems_clear(&problems);
    eddy_registry_free(reg);
    /* the example for users loads */
    reg = native_registry();
    CHECK_INT_EQ(eddy_lua_types_load(reg, EDDY_SOURCE_DIR "/examples/lua-node", &problems), 1);
    CHECK(eddy_registry_find(reg, "moving average") != NULL);
    eddy_registry_free(reg);
    scratch_free();
}

static void test_declaration_errors_name_file_and_line(void)
{
    scratch_new();
    expect_refused("local x = 1\nreturn {name = 'x',\n  input = function() end\n", 4,
                   "'}' expected (to close '{' at line 2) near <eof>");
    expect_refused("error('no declaration here')", 1, "no declaration here");
    expect_refused("return 42", 0, "must return a table declaring the node type");
    expect_refused("return {category = 'x', input = function() end}", 1, "has no 'name'");
    expect_refused("return {\n  name = 'bad/name',\n  input = function() end}", 2,
                   "'name' must be 1 to 64 letters, digits, spaces, '-' or '_'");
    expect_refused("return {\n  name = 'x',\n  ouputs = 2,\n  input = function() end}", 3,
                   "unknown field 'ouputs'");
    expect_refused("return {\n  name = 'x',\n  outputs = 70,\n  input = function() end}", 3,
                   "'outputs' must be a whole number from 0 to 64");
    expect_refused("return {\n  name = 'x',\n  inputs = 2,\n  input = function() end}", 3,
                   "'inputs' must be a whole number from 0 to 1");
    expect_refused("return {\n  name = 'x',\n  color = 'red',\n  input = function() end}", 3,
                   "'color' must look like \"#a1b2c3\"");
    expect_refused("return {\n  name = 'x',\n  category = 5,\n  input = function() end}", 3,
                   "'category' must be a string, not number");
    expect_refused("return {\n  name = 'x'\n}", 0, "a type with an input needs an 'input' handler");
    expect_refused("return {\n  name = 'x', inputs = 0,\n  input = function() end}", 3,
                   "cannot have an 'input' handler");
    expect_refused("return {\n  name = 'x',\n  setup = 'later',\n  input = function() end}", 3,
                   "'setup' must be a function");
    expect_refused("return {\n  name = 'x',\n  properties = {a = 1},\n  input = function() end}", 3,
                   "'properties' must be a list of tables");
    expect_refused("return {\n  name = 'x',\n  input = function() end,\n  properties = {\n"
                   "    {name = 'a', type = 'string'},\n"
                   "    {name = 'level', type = 'float', default = 1},\n  }}",
                   6, "property 'level': 'type' must be one of string, property, select");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'mode', type = 'select', default = 'a'}}}",
                   2, "property 'mode': a select property needs 'options'");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'mode', type = 'select',\n   options = {'a', 'b'},\n"
                   "   default = 'c'}}}",
                   4, "property 'mode': 'default' is not one of the options");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'n', type = 'integer',\n   default = 1.5}}}",
                   3, "property 'n': 'default' must be a whole number");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'n', type = 'number', min = 0, max = 10,\n   default = 11}}}",
                   3, "property 'n': 'default' must be from 0 to 10");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'n', type = 'number'}}}",
                   2, "property 'n': a number property needs a 'default'");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'p', type = 'property', default = 'a..b'}}}",
                   2, "property 'p': 'default' is not a message property");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'a', type = 'string'},\n  {name = 'a', type = 'string'}}}",
                   2, "property 'a' is declared twice");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'name', type = 'string'}}}",
                   2, "property 'name': a property name is a letter");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'a', type = 'string',\n   lable = 'A'}}}",
                   3, "property 'a': unknown field 'lable'");
    expect_refused("return {name = 'x', input = function() end, properties = {\n"
                   "  {name = 'a', type = 'string',\n   validate = true}}}",
                   3, "property 'a': 'validate' must be a function");
    expect_refused("return {name = 'x', input = function() end,\n  limits = {memory = 0}}", 2,
                   "limits: 'memory' is MiB from 0.0625 to 4096");
    expect_refused("return {name = 'switch', input = function() end}", 0,
                   "node type 'switch' is registered twice");
    expect_refused("while true do end", 1, "instruction budget exceeded");
    scratch_free();
}

/* ---- nodes of a type ---- */

static char log_seen[4096];

static void capture_log(eddy_log_level level, const char *line, void *data)
{
    size_t n = strlen(log_seen);
    snprintf(log_seen + n, sizeof(log_seen) - n, "%s\n", line);
}

static void test_nodes_run_setup_input_close(void)
{
    scratch_new();
    write_type(
        "counter",
        "local count -- per node\n"
        "return {\n"
        "  name = 'counter', outputs = 2,\n"
        "  properties = {\n"
        "    {name = 'start', type = 'integer', default = 10},\n"
        "    {name = 'label', type = 'string', default = 'n'},\n"
        "    {name = 'extra', type = 'json', default = {1, 2}},\n"
        "    {name = 'loud', type = 'boolean', default = false},\n"
        "  },\n"
        "  limits = {instructions = 100000},\n"
        "  setup = function(node) count = node.config.start; node.log('set up ' .. count) end,\n"
        "  input = function(node, msg)\n"
        "    if msg.payload == 'spin' then while true do end end\n"
        "    count = count + 1\n"
        "    msg[node.config.label] = count\n"
        "    msg.extra = node.config.extra\n"
        "    if node.config.loud then return {nil, msg} end\n"
        "    return msg\n"
        "  end,\n"
        "  close = function(node) node.log('closing at ' .. count) end,\n"
        "}\n");
    /* read-only (runtime/lua_inspect.h): passes what it was given without converting it */
    write_type("above", "return {name = 'above',\n"
                        "  properties = {{name = 'limit', type = 'integer', default = 30}},\n"
                        "  input = function(node, msg)\n"
                        "    if msg.payload.t > node.config.limit then return msg end\n"
                        "  end}\n");
    write_type("broken", "return {name = 'broken', input = function() end,\n"
                         "  setup = function(node)\n    error('cannot start')\n  end}");
    setenv("EDDY_LUA_NODES", scratch, 1);
    log_seen[0] = '\0';
    eddy_log_set_hook(capture_log, NULL);
    eddy_problems problems = {0};
    eddy_harness *h = eddy_harness_new(
        "[{\"id\":\"a\",\"type\":\"counter\",\"wires\":[[\"h1\"],[\"h2\"]]},"
        "{\"id\":\"b\",\"type\":\"counter\",\"start\":\"100\",\"label\":\"m\",\"loud\":true,"
        "\"extra\":\"{\\\"x\\\":true}\",\"wires\":[[\"h1\"],[\"h2\"]]},"
        "{\"id\":\"c\",\"type\":\"catch\",\"wires\":[[\"hc\"]]},"
        "{\"id\":\"r\",\"type\":\"above\",\"wires\":[[\"h3\"]]},"
        "{\"id\":\"h3\",\"type\":\"helper\"},"
        "{\"id\":\"h1\",\"type\":\"helper\"},{\"id\":\"h2\",\"type\":\"helper\"},"
        "{\"id\":\"hc\",\"type\":\"helper\"}]",
        NULL, &problems);
    if (!h) {
        char line[1024] = "";
        if (problems.count)
            eddy_err_format(&problems.items[0], line, sizeof(line));
        eddy_log_set_hook(NULL, NULL);
        CHECK_FAIL_("flow did not start: %s", line);
    }
    CHECK_CONTAINS(log_seen, "[node a (counter) on t] set up 10");
    CHECK_CONTAINS(log_seen, "[node b (counter) on t] set up 100");
    eddy_harness_send(h, "a", json_pack("{s:i}", "payload", 1));
    eddy_harness_send(h, "a", json_pack("{s:s}", "payload", "spin"));
    eddy_harness_send(h, "a", json_pack("{s:i}", "payload", 2));
    eddy_harness_send(h, "b", json_pack("{s:i}", "payload", 3));
    eddy_harness_send(
        h, "r",
        json_pack("{s:s,s:{s:f,s:[i,{}]}}", "_msgid", "r1", "payload", "t", 31.5, "list", 1));
    eddy_harness_send(h, "r", json_pack("{s:{s:i}}", "payload", "t", 3));
    eddy_harness_settle(h);
    json_t *above = eddy_harness_take(h, "h3");
    char *above_text = eddy_json_dumps(above, 0);
    CHECK_STR_EQ(above_text, "[{\"_msgid\":\"r1\",\"payload\":{\"t\":31.5,\"list\":[1,{}]}}]");
    eddy_free(above_text);
    json_decref(above);
    json_t *got = eddy_harness_take(h, "h1");
    char *text = eddy_json_dumps(got, 0);
    CHECK_INT_EQ(json_array_size(got), 2);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(got, 0), "n")), 11);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(got, 1), "n")), 12);
    CHECK_CONTAINS(text, "\"extra\":[1,2]");
    eddy_free(text);
    json_decref(got);
    got = eddy_harness_take(h, "h2");
    CHECK_INT_EQ(json_array_size(got), 1);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(got, 0), "m")), 101);
    CHECK(json_is_true(json_object_get(json_object_get(json_array_get(got, 0), "extra"), "x")));
    json_decref(got);
    got = eddy_harness_take(h, "hc");
    CHECK_INT_EQ(json_array_size(got), 1);
    CHECK_STR_EQ(json_string_value(
                     json_object_get(json_object_get(json_array_get(got, 0), "error"), "message")),
                 "counter/node.lua:13: instruction budget exceeded (100000 instructions per "
                 "call)");
    json_decref(got);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
    CHECK_CONTAINS(log_seen, "[node a (counter) on t] closing at 12");
    CHECK_CONTAINS(log_seen, "[node b (counter) on t] closing at 101");
    /* a setup handler that fails stops the flow from starting, with its line */
    h = eddy_harness_new("[{\"id\":\"x\",\"type\":\"broken\",\"wires\":[]}]", NULL, &problems);
    CHECK(h == NULL);
    CHECK(problems.count >= 1);
    CHECK_STR_EQ(problems.items[problems.count - 1].node_id, "x");
    CHECK_CONTAINS(problems.items[problems.count - 1].msg,
                   "setup: broken/node.lua:3: cannot start");
    eddy_problems_clear(&problems);
    eddy_log_set_hook(NULL, NULL);
    unsetenv("EDDY_LUA_NODES");
    scratch_free();
}

/* ---- the editor definition ---- */

static void test_editor_definition(void)
{
    eddy_registry *reg = native_registry();
    eddy_problems problems = {0};
    CHECK_INT_EQ(eddy_lua_types_load(reg, eddy_lua_types_dir(), &problems), 3);
    CHECK(eddy_lua_type_editor_html(eddy_registry_find(reg, "switch")) == NULL);
    char *html = eddy_lua_type_editor_html(eddy_registry_find(reg, "dew point"));
    CHECK(html != NULL);
    CHECK_CONTAINS(html, "RED.nodes.registerType(\"dew point\", {");
    CHECK_CONTAINS(html, "category: \"climate\"");
    CHECK_CONTAINS(html, "color: \"#A6BBCF\"");
    CHECK_CONTAINS(html, "name: {value: \"\"}");
    CHECK_CONTAINS(html, "temperature: {value: \"payload.temperature\", required: true}");
    CHECK_CONTAINS(html, "decimals: {value: 1, validate: function(v) {");
    CHECK_CONTAINS(html, "&& Math.floor(n) === n && n >= 0 && n <= 6");
    CHECK_CONTAINS(html, "inputs: 1,\n        outputs: 1,");
    CHECK_CONTAINS(html, "icon: \"font-awesome\\/fa-tint\"");
    CHECK_CONTAINS(html, "label: function() { return this.name || \"dew point\"; }");
    CHECK_CONTAINS(html, "$(\"#node-input-temperature\").typedInput({types: [\"msg\"]});");
    CHECK_CONTAINS(html, "<script type=\"text/html\" data-template-name=\"dew point\">");
    CHECK_CONTAINS(html,
                   "<select id=\"node-input-unit\">\n            <option value=\"C\">C</option>");
    CHECK_CONTAINS(html, "<label for=\"node-input-humidity\">Humidity</label>");
    CHECK_CONTAINS(html, "<script type=\"text/markdown\" data-help-name=\"dew point\">\n"
                         "Computes the dew point");
    eddy_free(html);
    html = eddy_lua_type_editor_html(eddy_registry_find(reg, "hysteresis"));
    CHECK_CONTAINS(html, "onPayload: {value: \"true\"}");
    CHECK_CONTAINS(html, "$(\"#node-input-onPayload\").typedInput({types: [\"json\"]});");
    CHECK_CONTAINS(html, "<input type=\"checkbox\" id=\"node-input-changesOnly\"");
    eddy_free(html);
    eddy_registry_free(reg);

    /* what the declaration says cannot break out of the HTML or the script */
    scratch_new();
    const char *file = write_type(
        "sneaky", "return {name = 'sneaky', label = '</script><b>\"x\"', input = function() end,\n"
                  "  help = 'a </script> b </SCRIPT> c',\n"
                  "  properties = {{name = 'p', type = 'string', label = '<i>&\\'',\n"
                  "                 default = '</script>'}}}");
    reg = native_registry();
    eddy_err err;
    CHECK_INT_EQ(eddy_lua_type_load_file(reg, file, &err), EDDY_OK);
    html = eddy_lua_type_editor_html(eddy_registry_find(reg, "sneaky"));
    CHECK_CONTAINS(html, "return this.name || \"<\\/script><b>\\\"x\\\"\"");
    CHECK_CONTAINS(html, "p: {value: \"<\\/script>\"}");
    CHECK_CONTAINS(html, ">&lt;i&gt;&amp;&#39;</label>");
    CHECK_CONTAINS(html, "a <\\/script> b <\\/SCRIPT> c");
    /* exactly the three closing tags the generator writes */
    int closes = 0;
    for (const char *p = html; (p = strstr(p, "</script>")) != NULL; p++)
        closes++;
    CHECK_INT_EQ(closes, 3);
    eddy_free(html);
    eddy_registry_free(reg);
    scratch_free();
}

static const check_test tests[] = {
    {"shipped_types_load", test_shipped_types_load},
    {"folder_forms", test_folder_forms},
    {"declaration_errors_name_file_and_line", test_declaration_errors_name_file_and_line},
    {"nodes_run_setup_input_close", test_nodes_run_setup_input_close},
    {"editor_definition", test_editor_definition},
    {NULL, NULL}};

CHECK_MAIN(tests)
