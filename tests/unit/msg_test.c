/* msg_test.c: property paths, JavaScript number text, JSON encoding and deep equality. */
#include <math.h>

#include "check.h"
#include "msg.h"

static void test_path_parse(void)
{
    eddy_path p;
    CHECK_INT_EQ(eddy_path_parse("payload.a[0]['b c'][\"d\"].e", &p, NULL), EDDY_OK);
    CHECK_INT_EQ(p.count, 6);
    CHECK_STR_EQ(p.seg[0].key, "payload");
    CHECK_STR_EQ(p.seg[1].key, "a");
    CHECK(p.seg[2].key == NULL);
    CHECK_INT_EQ(p.seg[2].index, 0);
    CHECK_STR_EQ(p.seg[3].key, "b c");
    CHECK_STR_EQ(p.seg[4].key, "d");
    CHECK_STR_EQ(p.seg[5].key, "e");
}

static void test_path_errors(void)
{
    const char *bad[] = {"", ".a", "a.", "a..b", "a[", "a[]", "a[msg.b]", "a]b", "[0]", NULL};
    for (int i = 0; bad[i]; i++) {
        eddy_path p;
        eddy_err err;
        eddy_err_clear(&err);
        if (eddy_path_parse(bad[i], &p, &err) != EDDY_EPARSE)
            CHECK_FAIL_("'%s' should not parse", bad[i]);
        CHECK_CONTAINS(err.msg, "invalid property expression");
    }
}

static void test_path_set_creates(void)
{
    json_t *msg = json_object();
    CHECK_INT_EQ(eddy_path_assign_take(msg, "a.b[1].c", json_integer(5), NULL), EDDY_OK);
    char *text = eddy_json_dumps(msg, 0);
    CHECK_STR_EQ(text, "{\"a\":{\"b\":[null,{\"c\":5}]}}");
    eddy_free(text);
    /* cannot go beneath a string */
    json_object_set_new(msg, "s", json_string("x"));
    eddy_err err;
    CHECK_INT_EQ(eddy_path_assign_take(msg, "s.t", json_true(), &err), EDDY_EINVAL);
    eddy_path p;
    eddy_path_parse("a.b", &p, NULL);
    CHECK(eddy_path_delete(msg, &p));
    CHECK(eddy_path_lookup(msg, "a.b") == NULL);
    json_decref(msg);
}

static void test_number_text(void)
{
    char buf[32];
    struct {
        double v;
        const char *js;
    } cases[] = {{0.1, "0.1"},
                 {1.0 / 3, "0.3333333333333333"},
                 {100, "100"},
                 {1e21, "1e+21"},
                 {1e20, "100000000000000000000"},
                 {1.5e-7, "1.5e-7"},
                 {0.000001, "0.000001"},
                 {-2.5, "-2.5"},
                 {123456789.125, "123456789.125"},
                 {5e-324, "5e-324"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_STR_EQ(eddy_format_number(cases[i].v, buf), cases[i].js);
}

static void test_parse_number(void)
{
    double v;
    CHECK(eddy_parse_number(" 12.5 ", &v) && v == 12.5);
    CHECK(eddy_parse_number("0x10", &v) && v == 16);
    CHECK(eddy_parse_number("-1e3", &v) && v == -1000);
    CHECK(!eddy_parse_number("", &v));
    CHECK(!eddy_parse_number("12abc", &v));
    CHECK(!eddy_parse_number("nan", &v));
    CHECK(!eddy_parse_number("Infinityxyz", &v));
    CHECK(eddy_parse_number("+Infinity", &v) && v > 1e308);
    CHECK(eddy_parse_number(" -Infinity ", &v) && v < -1e308);
}

static void test_js_parse_float(void)
{
    CHECK(eddy_js_parse_float("  12.5abc") == 12.5);
    CHECK(eddy_js_parse_float("-3e2x") == -300);
    CHECK(eddy_js_parse_float("1e") == 1);
    CHECK(eddy_js_parse_float("-Infinity") < -1e308);
    CHECK(isnan(eddy_js_parse_float("abc")));
    CHECK(isnan(eddy_js_parse_float("0x")) == 0); /* parseFloat("0x") is 0 */
    double v = 0;
    json_t *s = json_string(" 7 seconds");
    CHECK(eddy_json_parse_float(s, &v) && v == 7);
    json_decref(s);
    CHECK(!eddy_json_parse_float(NULL, &v));
}

static void test_dumps_like_json_stringify(void)
{
    eddy_err err;
    const char *in = "{\"a\":1.0,\"b\":[0.1,2e0,\"q\\\"\\n\"],\"c\":{},\"d\":[]}";
    json_t *v = eddy_json_loadb(in, strlen(in), &err);
    CHECK(v != NULL);
    CHECK(json_is_integer(json_object_get(v, "a")));
    char *text = eddy_json_dumps(v, 0);
    CHECK_STR_EQ(text, "{\"a\":1,\"b\":[0.1,2,\"q\\\"\\n\"],\"c\":{},\"d\":[]}");
    eddy_free(text);
    text = eddy_json_dumps(v, EDDY_JSON_PRETTY);
    CHECK_STR_EQ(text, "{\n    \"a\": 1,\n    \"b\": [\n        0.1,\n        2,\n        "
                       "\"q\\\"\\n\"\n    ],\n    \"c\": {},\n    \"d\": []\n}");
    eddy_free(text);
    json_decref(v);
}

static void test_big_integers_become_reals(void)
{
    eddy_err err;
    json_t *v = eddy_json_loadb("12345678901234567890", 20, &err);
    CHECK(v && json_is_real(v));
    char *text = eddy_json_dumps(v, 0);
    CHECK_STR_EQ(text, "12345678901234567000");
    eddy_free(text);
    json_decref(v);
}

static void test_parse_error_position(void)
{
    eddy_err err;
    eddy_err_clear(&err);
    CHECK(eddy_json_loadb("[1,\n 2,\n {]", 12, &err) == NULL);
    CHECK_INT_EQ(err.code, EDDY_EPARSE);
    CHECK_INT_EQ(err.line, 3);
    CHECK(err.column > 0);
}

static void test_to_string(void)
{
    json_t *arr = json_pack("[i,s,n,[i,i]]", 1, "a", 2, 3);
    char *s = eddy_json_to_string(arr, false);
    CHECK_STR_EQ(s, "1,a,,2,3");
    eddy_free(s);
    json_t *obj = json_object();
    s = eddy_json_to_string(obj, false);
    CHECK_STR_EQ(s, "[object Object]");
    eddy_free(s);
    json_decref(obj);
    json_decref(arr);
}

static void test_equal_by_value(void)
{
    json_t *a = json_pack("{s:i,s:[f]}", "x", 1, "y", 2.0);
    json_t *b = json_pack("{s:f,s:[i]}", "x", 1.0, "y", 2);
    CHECK(eddy_json_equal(a, b));
    json_object_set_new(b, "z", json_null());
    CHECK(!eddy_json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

static void test_msg_ids_unique(void)
{
    char a[17], b[17];
    eddy_msg_new_id(a);
    eddy_msg_new_id(b);
    CHECK_INT_EQ(strlen(a), 16);
    CHECK(strcmp(a, b) != 0);
}

static const check_test tests[] = {{"path_parse", test_path_parse},
                                   {"path_errors", test_path_errors},
                                   {"path_set_creates", test_path_set_creates},
                                   {"number_text", test_number_text},
                                   {"parse_number", test_parse_number},
                                   {"js_parse_float", test_js_parse_float},
                                   {"dumps_like_json_stringify", test_dumps_like_json_stringify},
                                   {"big_integers_become_reals", test_big_integers_become_reals},
                                   {"parse_error_position", test_parse_error_position},
                                   {"to_string", test_to_string},
                                   {"equal_by_value", test_equal_by_value},
                                   {"msg_ids_unique", test_msg_ids_unique},
                                   {NULL, NULL}};

CHECK_MAIN(tests)
