/* msg_test.c: property paths, JavaScript number text, JSON encoding and deep equality. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
                 {5e-324, "5e-324"},
                 {0.1 + 0.2, "0.30000000000000004"},
                 {21.45, "21.45"},
                 {-0.005, "-0.005"},
                 {1795465943032, "1795465943032"},
                 {1152921504606846976.0, "1152921504606847000"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_STR_EQ(eddy_format_number(cases[i].v, buf), cases[i].js);
}

/* The digits of the shortest "%.*e" form of v that reads back as v, trying every
 * precision from 1 (the definition eddy_format_number must meet), written to 'digits'. */
static void shortest_digits(double v, char *digits)
{
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    int k = 0;
    for (const char *p = tmp; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    digits[k] = '\0';
}

/* The significant digits of number text ("-0.00125" -> "125", "1.5e-7" -> "15"). */
static void text_digits(const char *text, char *digits)
{
    int k = 0;
    for (const char *p = text; *p && *p != 'e'; p++)
        if ((*p >= '1' && *p <= '9') || (*p == '0' && k > 0))
            digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    digits[k] = '\0';
}

/* eddy_format_number's shortcuts (integers, one try for up to 15 digits) give the digits
 * of the full search and read back as the same double: decimals of every length, sums
 * that carry rounding error, integers, subnormals and random bit patterns. */
static void test_number_text_shortest(void)
{
    char buf[40], want[24], got[24];
    uint64_t x = 0x9e3779b97f4a7c15u;
    int bad = 0;
    for (int i = 0; i < 200000 && bad < 5; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double v;
        switch (i % 5) {
        case 0: /* a decimal of 1 to 17 digits at some scale */
            v = (double)(x % 100000000000000000u) / pow(10, (double)((x >> 58) % 20));
            break;
        case 1: /* a sum of readings, as a window's */
            v = 18.0 + (double)(x % 1000) / 100 + (double)((x >> 10) % 1000) / 100 +
                (double)((x >> 20) % 1000) / 100;
            break;
        case 2: /* an integer, some beyond 2^53 */
            v = (double)(int64_t)(x >> (x % 20));
            break;
        case 3: /* a subnormal or a tiny normal */
            v = ldexp((double)(x % 100000), -1074 + (int)(x >> 60) * 4);
            break;
        default: { /* any finite double */
            uint64_t bits = x;
            memcpy(&v, &bits, sizeof(v));
            if (!isfinite(v))
                v = 1.0 / 3;
        }
        }
        if (i % 2)
            v = -v;
        if (v == 0)
            continue;
        eddy_format_number(v, buf);
        shortest_digits(v, want);
        text_digits(buf, got);
        if (strtod(buf, NULL) != v || strcmp(want, got) != 0) {
            fprintf(stderr, "  %.17g: formatted %s, shortest digits %s\n", v, buf, want);
            bad++;
        }
    }
    CHECK_INT_EQ(bad, 0);
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

static void check_decode(const char *in, size_t n, const char *want, size_t want_len)
{
    size_t len = 0;
    char *out = eddy_utf8_decode(in, n, &len);
    CHECK(out != NULL);
    CHECK_INT_EQ(len, want_len);
    CHECK(memcmp(out, want, want_len) == 0);
    CHECK_INT_EQ(out[len], 0);
    eddy_free(out);
}

/* Runs of ASCII are checked 8 bytes at a time: invalid bytes before, inside and after such
 * runs, and multi-byte sequences across the 8-byte steps, must all be seen. */
static void test_utf8_valid_and_decode(void)
{
    static const char ascii[] = "{\"deviceId\":\"gh-007\",\"temperature\":21.37}";
    CHECK(eddy_utf8_valid(ascii, strlen(ascii)));
    CHECK(eddy_utf8_valid(NULL, 0));
    CHECK(eddy_utf8_valid("a\0b", 3)); /* NUL is a character */
    static const char multi[] = "temp\xC3\xA9rature 21\xE2\x82\xAC \xF0\x9D\x84\x9E done";
    CHECK(eddy_utf8_valid(multi, strlen(multi)));
    check_decode(multi, strlen(multi), multi, strlen(multi));
    check_decode(ascii, strlen(ascii), ascii, strlen(ascii));

    /* invalid: a lone continuation byte, overlong, surrogate, past U+10FFFF, truncated */
    static const char *const bad[] = {"0123456\x80"
                                      "abcdefgh",
                                      "\x80"
                                      "1234567abcdefgh",
                                      "0123456789abcdef\x80",
                                      "\xC0\xAF",
                                      "abcdefgh\xED\xA0\x80",
                                      "\xF4\x90\x80\x80",
                                      "abcdefghij\xE2\x82"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!eddy_utf8_valid(bad[i], strlen(bad[i])));

    /* each invalid byte becomes U+FFFD, as Node.js's Buffer.toString() does */
    check_decode("0123456789abcdef\x80xyz", 20, "0123456789abcdef\xEF\xBF\xBDxyz", 22);
    check_decode("\xFF"
                 "ab"
                 "\xFE",
                 4,
                 "\xEF\xBF\xBD"
                 "ab"
                 "\xEF\xBF\xBD",
                 8);
    check_decode("abcdefghij\xE2\x82", 12, "abcdefghij\xEF\xBF\xBD\xEF\xBF\xBD", 16);
    check_decode("a\0\xC3\xA9\xC3", 5, "a\0\xC3\xA9\xEF\xBF\xBD", 7);
    check_decode("", 0, "", 0);
}

/* ---- eddy_json_loadb against jansson ---- */

/* 'a' from eddy_json_loadb, 'b' from jansson's json_loadb with JSON_DECODE_INT_AS_REAL:
 * equal values, numbers as eddy_json_number makes them, keys in the same order. */
static bool same_json(const json_t *a, const json_t *b)
{
    if (json_is_real(b)) {
        json_t *want = eddy_json_number(json_real_value(b));
        bool same = json_typeof(a) == json_typeof(want) &&
                    (json_is_integer(a)
                         ? json_integer_value(a) == json_integer_value(want)
                         : json_real_value(a) == json_real_value(want) &&
                               signbit(json_real_value(a)) == signbit(json_real_value(want)));
        json_decref(want);
        return same;
    }
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_string(a))
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same_json(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);
        for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia),
                         ib = json_object_iter_next((json_t *)b, ib)) {
            size_t na = json_object_iter_key_len(ia), nb = json_object_iter_key_len(ib);
            if (na != nb || memcmp(json_object_iter_key(ia), json_object_iter_key(ib), na) != 0 ||
                !same_json(json_object_iter_value(ia), json_object_iter_value(ib)))
                return false;
        }
        return !ia && !ib;
    }
    return true; /* true, false, null */
}

/* Whatever eddy_json_loadb's fast path accepts must read as jansson reads it, and what it
 * leaves to jansson must fail with jansson's error. */
static void check_like_jansson(const char *text, size_t len)
{
    eddy_err err;
    eddy_err_clear(&err);
    json_error_t je;
    json_t *ours = eddy_json_loadb(text, len, &err);
    json_t *theirs = json_loadb(text, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
    if ((ours == NULL) != (theirs == NULL) || (ours && !same_json(ours, theirs)) ||
        (!ours &&
         (strcmp(err.msg, je.text) != 0 || err.line != je.line || err.column != je.column))) {
        fprintf(stderr, "input (%zu bytes): %.*s\n  eddy: %s\n  jansson: %s\n", len, (int)len, text,
                ours ? "a value" : err.msg, theirs ? "a value" : je.text);
        json_decref(ours);
        json_decref(theirs);
        CHECK(!"eddy_json_loadb differs from jansson");
    }
    json_decref(ours);
    json_decref(theirs);
}

static void test_loadb_like_jansson(void)
{
    static const char *const seeds[] = {
        "{\"eventId\":\"9e3779b1-0007-4e11-8b00-000000000123\",\"deviceId\":\"gh-007\","
        "\"sensorId\":\"gh-007-th2\",\"ts\":1764000000123,\"temperature\":21.37,"
        "\"humidity\":64.2,\"quality\":\"good\"}",
        " { \"a\" : [ 1 , -2.5e3 , 0 , -0 , 0.0 , 1E-2 , 3e+2 ] ,\n\t\"b\" : { } , \"c\" : [ ] } "
        "\r\n",
        "{\"s\":\"tab\\there \\\"quoted\\\" back\\\\slash \\/ "
        "\\b\\f\\n\\r\",\"t\":true,\"f\":false,"
        "\"n\":null}",
        "{\"unit\":\"\xC2\xB0"
        "C\",\"euro\":\"\xE2\x82\xAC\",\"clef\":\"\xF0\x9D\x84\x9E\",\"\":1}",
        "{\"a\":1,\"a\":2,\"b\":{\"a\":[{\"a\":null}]}}",
        "[9007199254740991,9007199254740993,12345678901234567890,1e308,1e-400,4.9e-324]",
        "[0.1,0.2,0.3,21.37,64.2,-9.87654321e-5,123456789012345,1234567890123456,1e22,1e23,"
        "2.2250738585072014e-308,5e-324,0.000000000000000000001,100e-2,7E+21,1."
        "7976931348623157e308]",
        "[1e309]",
        "[-1e400]",
        "\"just a string\"",
        "  42  ",
        "-0.0",
        "true",
        "null",
        "\"\\u00e9\\ud834\\udd1e\"",
        "[\"\\u0000\"]",
        "{\"k\\u0000\":1}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "[0123]",
        "[1.]",
        "[.5]",
        "[1e]",
        "[01]",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "[truex]",
        "[true1]",
        "\"bad \\x escape\"",
        "\"raw\ttab\"",
        "\"\xC0\xAF\"",
        "\"\xED\xA0\x80\"",
        "[1] [2]",
        "",
        "   ",
        "\xEF\xBB\xBF{}",
    };
    static const char alphabet[] =
        "{}[]\":,\\ -+.eE0123456789tfnrulsa\t\n\x01\x1f\x7f\xc3\xa9\x80\xff/u";
    uint64_t rng = 0x9E3779B97F4A7C15u;
    char buf[512];
    for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
        size_t seed_len = strlen(seeds[s]);
        check_like_jansson(seeds[s], seed_len);
        for (int m = 0; m < 500; m++) {
            size_t len = seed_len;
            memcpy(buf, seeds[s], len);
            int edits = 1 + m % 3;
            for (int e = 0; e < edits; e++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17; /* xorshift64 */
                size_t at = len ? (size_t)(rng >> 8) % len : 0;
                char c = alphabet[(rng >> 40) % (sizeof(alphabet) - 1)];
                switch (rng % 4) {
                case 0: /* replace */
                    if (len)
                        buf[at] = c;
                    break;
                case 1: /* delete */
                    if (len) {
                        memmove(buf + at, buf + at + 1, len - at - 1);
                        len--;
                    }
                    break;
                case 2: /* insert */
                    if (len + 1 < sizeof(buf)) {
                        memmove(buf + at + 1, buf + at, len - at);
                        buf[at] = c;
                        len++;
                    }
                    break;
                default: /* cut short */
                    len = at;
                }
            }
            check_like_jansson(buf, len);
        }
    }
    /* numbers: up to 18 digits, a decimal point anywhere, exponents around the exact range */
    for (int i = 0; i < 20000; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uint64_t bits = rng;
        int n = 0, ndigits = 1 + (int)(bits % 18), point = (int)((bits >> 5) % 20);
        if ((bits >> 10) & 1)
            buf[n++] = '-';
        for (int d = 0; d < ndigits; d++) {
            if (d == point && d > 0)
                buf[n++] = '.';
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            buf[n++] = (char)('0' + (d == 0 && ndigits > 1 && point != 1 ? 1 + rng % 9 : rng % 10));
        }
        if ((bits >> 11) & 1)
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, "e%d", (int)((bits >> 16) % 61) - 30);
        check_like_jansson(buf, (size_t)n);
    }
}

static const check_test tests[] = {{"path_parse", test_path_parse},
                                   {"path_errors", test_path_errors},
                                   {"path_set_creates", test_path_set_creates},
                                   {"number_text", test_number_text},
                                   {"number_text_shortest", test_number_text_shortest},
                                   {"parse_number", test_parse_number},
                                   {"js_parse_float", test_js_parse_float},
                                   {"dumps_like_json_stringify", test_dumps_like_json_stringify},
                                   {"big_integers_become_reals", test_big_integers_become_reals},
                                   {"parse_error_position", test_parse_error_position},
                                   {"to_string", test_to_string},
                                   {"equal_by_value", test_equal_by_value},
                                   {"msg_ids_unique", test_msg_ids_unique},
                                   {"utf8_valid_and_decode", test_utf8_valid_and_decode},
                                   {"loadb_like_jansson", test_loadb_like_jansson},
                                   {NULL, NULL}};

CHECK_MAIN(tests)
