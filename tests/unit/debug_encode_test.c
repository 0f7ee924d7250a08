/* debug_encode_test.c: the debug sidebar's encoding, case by case against what Node-RED's
 * encodeObject produces for the same values (checked with Node-RED 5.0.7's util). */
#include "check.h"
#include "debug_encode.h"
#include "msg.h"

static json_t *encode_text(const char *json, size_t max_len)
{
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    json_t *out = json_object();
    CHECK(eddy_debug_encode(v, max_len, out) == EDDY_OK);
    json_decref(v);
    return out;
}

#define CHECK_ENCODED(json, max, want_format, want_msg)                                            \
    do {                                                                                           \
        json_t *o_ = encode_text(json, max);                                                       \
        CHECK_STR_EQ(json_string_value(json_object_get(o_, "format")), want_format);               \
        CHECK_STR_EQ(json_string_value(json_object_get(o_, "msg")), want_msg);                     \
        json_decref(o_);                                                                           \
    } while (0)

static void test_scalars(void)
{
    CHECK_ENCODED("\"hello\"", 1000, "string[5]", "hello");
    CHECK_ENCODED("42", 1000, "number", "42");
    CHECK_ENCODED("0.1", 1000, "number", "0.1");
    CHECK_ENCODED("-2.5e-7", 1000, "number", "-2.5e-7");
    CHECK_ENCODED("1e21", 1000, "number", "1e+21");
    CHECK_ENCODED("true", 1000, "boolean", "true");
    CHECK_ENCODED("null", 1000, "null", "(undefined)");
    json_t *out = json_object();
    CHECK(eddy_debug_encode(NULL, 1000, out) == EDDY_OK);
    CHECK_STR_EQ(json_string_value(json_object_get(out, "format")), "undefined");
    json_decref(out);
}

static void test_long_strings_are_cut(void)
{
    CHECK_ENCODED("\"abcdefghij\"", 4, "string[10]", "abcd...");
    /* JavaScript lengths count UTF-16 units: an emoji is two, e-acute one */
    CHECK_ENCODED("\"\xc3\xa9\xf0\x9f\x98\x80x\"", 1000, "string[4]", "\xc3\xa9\xf0\x9f\x98\x80x");
    CHECK_ENCODED("\"\xc3\xa9\xf0\x9f\x98\x80x\"", 3, "string[4]", "\xc3\xa9\xf0\x9f\x98\x80...");
}

static void test_objects_and_arrays(void)
{
    CHECK_ENCODED("{\"a\":1,\"b\":[1,2]}", 1000, "Object", "{\"a\":1,\"b\":[1,2]}");
    /* inside objects: long strings cut, long arrays marked */
    CHECK_ENCODED("{\"s\":\"abcdef\",\"l\":[1,2,3]}", 2, "Object",
                  "{\"s\":\"ab...\",\"l\":{\"__enc__\":true,\"type\":\"array\",\"data\":[1,2],"
                  "\"length\":3}}");
    CHECK_ENCODED("[1,2,3]", 1000, "array[3]", "[1,2,3]");
    CHECK_ENCODED("[1,2,3]", 2, "array[3]",
                  "{\"__enc__\":true,\"type\":\"array\",\"data\":[1,2],\"length\":3}");
}

static void test_buffers(void)
{
    CHECK_ENCODED("{\"type\":\"Buffer\",\"data\":[0,15,255]}", 1000, "buffer[3]", "000fff");
    CHECK_ENCODED("{\"type\":\"Buffer\",\"data\":[1,2,3,4]}", 4, "buffer[4]", "0102");
    /* a buffer inside a message is marked so the sidebar shows it as one */
    CHECK_ENCODED("{\"p\":{\"type\":\"Buffer\",\"data\":[1,2,3]}}", 2, "Object",
                  "{\"p\":{\"type\":\"Buffer\",\"data\":[1,2],\"__enc__\":true,\"length\":3}}");
}

static void test_deep_nesting_is_bounded(void)
{
    json_t *root = json_object(), *cur = root;
    for (int i = 0; i < 200; i++) {
        json_t *next = json_object();
        json_object_set_new(cur, "x", next);
        cur = next;
    }
    json_t *out = json_object();
    CHECK(eddy_debug_encode(root, 1000, out) == EDDY_OK);
    CHECK(strstr(json_string_value(json_object_get(out, "msg")), "\"internal\"") != NULL);
    json_decref(out);
    json_decref(root);
}

static const check_test tests[] = {{"scalars", test_scalars},
                                   {"long_strings_are_cut", test_long_strings_are_cut},
                                   {"objects_and_arrays", test_objects_and_arrays},
                                   {"buffers", test_buffers},
                                   {"deep_nesting_is_bounded", test_deep_nesting_is_bounded},
                                   {NULL, NULL}};

CHECK_MAIN(tests)
