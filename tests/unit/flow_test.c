/* flow_test.c: the loader lists every problem with file, line, node id, type and tab. */
#include "check.h"
#include "flow.h"
#include "registry.h"

static eddy_registry *registry(void)
{
    eddy_registry *reg = eddy_registry_new(NULL);
    CHECK(eddy_registry_add_builtin(reg, NULL) == EDDY_OK);
    return reg;
}

static const eddy_err *find_problem(const eddy_problems *p, const char *needle)
{
    for (int i = 0; i < p->count; i++)
        if (strstr(p->items[i].msg, needle))
            return &p->items[i];
    return NULL;
}

static void test_malformed_json_line_column(void)
{
    eddy_registry *reg = registry();
    eddy_problems p = {0};
    const char *text = "[\n  {\"id\": \"a\", \"type\": \"junction\"},\n  {\"id\": \"b\",, }\n]";
    CHECK(eddy_flow_load(text, strlen(text), "bad.json", reg, &p) == NULL);
    CHECK_INT_EQ(p.count, 1);
    CHECK_STR_EQ(p.items[0].file, "bad.json");
    CHECK_INT_EQ(p.items[0].line, 3);
    CHECK(p.items[0].column > 0);
    CHECK_CONTAINS(p.items[0].msg, "malformed JSON");
    eddy_problems_clear(&p);
    eddy_registry_free(reg);
}

static void test_every_problem_listed(void)
{
    eddy_registry *reg = registry();
    eddy_problems p = {0};
    const char *text =
        "[{\"id\":\"t1\",\"type\":\"tab\",\"label\":\"Main\"},\n"
        "{\"id\":\"f1\",\"type\":\"function\",\"z\":\"t1\",\"wires\":[[]]},\n"
        "{\"id\":\"u1\",\"type\":\"mystery\",\"z\":\"t1\",\"wires\":[[]]},\n"
        "{\"id\":\"j1\",\"type\":\"junction\",\"z\":\"t1\",\"wires\":[[\"ghost\"]]},\n"
        "{\"id\":\"lc\",\"type\":\"link call\",\"z\":\"t1\",\"timeout\":\"soon\",\"links\":[\"x\"],"
        "\"wires\":[[]]}]";
    CHECK(eddy_flow_load(text, strlen(text), "flows.json", reg, &p) == NULL);
    CHECK_INT_EQ(p.count, 4);
    const eddy_err *e = find_problem(&p, "use the lua node");
    CHECK(e);
    CHECK_STR_EQ(e->node_id, "f1");
    CHECK_STR_EQ(e->node_type, "function");
    CHECK_STR_EQ(e->tab, "t1");
    CHECK_INT_EQ(e->line, 2);
    e = find_problem(&p, "unknown node type 'mystery'");
    CHECK(e && e->line == 3);
    e = find_problem(&p, "missing node 'ghost'");
    CHECK(e && strcmp(e->node_id, "j1") == 0 && e->line == 4);
    e = find_problem(&p, "must be a number");
    CHECK(e && strcmp(e->node_id, "lc") == 0);
    char line[512];
    eddy_err_format(e, line, sizeof(line));
    CHECK_CONTAINS(line, "flows.json:5: node lc (link call) on tab t1: property 'timeout'");
    eddy_problems_clear(&p);
    eddy_registry_free(reg);
}

static void test_jsonata_refused(void)
{
    eddy_registry *reg = registry();
    eddy_problems p = {0};
    const char *text = "[{\"id\":\"d\",\"type\":\"debug\",\"complete\":\"payload\","
                       "\"statusType\":\"jsonata\"}]";
    CHECK(eddy_flow_load(text, strlen(text), "x.json", reg, &p) == NULL);
    CHECK(find_problem(&p, "JSONata"));
    eddy_problems_clear(&p);
    eddy_registry_free(reg);
}

static void test_not_an_array(void)
{
    eddy_registry *reg = registry();
    eddy_problems p = {0};
    CHECK(eddy_flow_load("{\"a\":1}", 7, "x.json", reg, &p) == NULL);
    CHECK(find_problem(&p, "JSON array of nodes"));
    eddy_problems_clear(&p);
    CHECK(eddy_flow_load("[1, {\"id\": 3}]", 14, "x.json", reg, &p) == NULL);
    CHECK_INT_EQ(p.count, 2);
    CHECK(find_problem(&p, "entry 0 is not a node"));
    eddy_problems_clear(&p);
    eddy_registry_free(reg);
}

static void test_v2_shape_and_unused_props_kept(void)
{
    eddy_registry *reg = registry();
    eddy_problems p = {0};
    const char *text = "{\"rev\":\"abc\",\"flows\":[{\"id\":\"t\",\"type\":\"tab\"},"
                       "{\"id\":\"j\",\"type\":\"junction\",\"z\":\"t\",\"x\":10,\"y\":20,"
                       "\"custom\":{\"keep\":true},\"wires\":[[]]},"
                       "{\"id\":\"c\",\"type\":\"comment\",\"z\":\"t\",\"info\":\"hi\"},"
                       "{\"id\":\"g\",\"type\":\"group\",\"z\":\"t\",\"nodes\":[\"j\"]}]}";
    eddy_flow *f = eddy_flow_load(text, strlen(text), "x.json", reg, &p);
    CHECK(f != NULL);
    CHECK_INT_EQ(f->node_count, 1); /* comment and group do not run */
    CHECK_STR_EQ(f->nodes[0].id, "j");
    CHECK(json_is_true(json_object_get(json_object_get(f->nodes[0].config, "custom"), "keep")));
    CHECK_INT_EQ(json_array_size(f->doc), 4); /* the document is kept whole */
    eddy_flow_free(f);
    eddy_registry_free(reg);
}

static void test_missing_file(void)
{
    eddy_registry *reg = registry();
    eddy_problems p = {0};
    CHECK(eddy_flow_load_file("/nonexistent/flows.json", reg, &p) == NULL);
    CHECK_INT_EQ(p.items[0].code, EDDY_EIO);
    CHECK_CONTAINS(p.items[0].msg, "cannot open");
    eddy_problems_clear(&p);
    eddy_registry_free(reg);
}

static void test_registry_names_unique_and_callbacks_set(void)
{
    for (int i = 0; eddy_native_node_types[i]; i++) {
        const eddy_node_type *t = eddy_native_node_types[i];
        CHECK(t->name && *t->name);
        if (t->inputs > 0 && !(t->flags & EDDY_NODE_NO_RUN) && !t->input)
            CHECK_FAIL_("type %s has an input but no handler", t->name);
        for (int j = 0; j < i; j++)
            if (strcmp(eddy_native_node_types[j]->name, t->name) == 0)
                CHECK_FAIL_("type %s registered twice", t->name);
        for (const eddy_prop *p = t->props; p && p->name; p++)
            if (p->def) {
                json_t *d = json_loads(p->def, JSON_DECODE_ANY, NULL);
                if (!d)
                    CHECK_FAIL_("type %s: default of '%s' is not JSON: %s", t->name, p->name,
                                p->def);
                json_decref(d);
            }
    }
}

static void test_deep_nesting_is_an_error_not_a_crash(void)
{
    eddy_registry *reg = registry();
    eddy_problems p = {0};
    size_t n = 100000;
    char *text = eddy_malloc(2 * n + 1);
    memset(text, '[', n);
    memset(text + n, ']', n);
    text[2 * n] = '\0';
    CHECK(eddy_flow_load(text, 2 * n, "deep.json", reg, &p) == NULL);
    CHECK(p.count >= 1);
    eddy_free(text);
    eddy_problems_clear(&p);
    eddy_registry_free(reg);
}

static const check_test tests[] = {
    {"malformed_json_line_column", test_malformed_json_line_column},
    {"every_problem_listed", test_every_problem_listed},
    {"jsonata_refused", test_jsonata_refused},
    {"not_an_array", test_not_an_array},
    {"v2_shape_and_unused_props_kept", test_v2_shape_and_unused_props_kept},
    {"missing_file", test_missing_file},
    {"registry_names_unique_and_callbacks_set", test_registry_names_unique_and_callbacks_set},
    {"deep_nesting_is_an_error_not_a_crash", test_deep_nesting_is_an_error_not_a_crash},
    {NULL, NULL}};

CHECK_MAIN(tests)
