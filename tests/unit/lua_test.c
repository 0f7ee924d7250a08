/* lua_test.c: the Lua host (runtime/lua_host.c): JSON <-> Lua conversion, including round
 * trips of randomly generated documents, the sandbox (one test per escape), and the limits
 * (one test per bomb). */
#include <math.h>
#include <stdint.h>

#include <lauxlib.h>

#include "check.h"
#include "log.h"
#include "lua_host.h"
#include "lua_inspect.h"
#include "msg.h"

/* ---- helpers ---- */

typedef struct chunk_run {
    const char *src;
    const json_t *arg;  /* pushed as the chunk's argument (may be NULL) */
    const json_t *hint; /* for converting the result */
    json_t *result;     /* the chunk's first result as JSON */
    int conv_rc;
    eddy_err conv_err;
} chunk_run;

static int run_chunk_fn(lua_State *L)
{
    chunk_run *r = lua_touserdata(L, 1);
    eddy_lua_load(L, r->src, strlen(r->src), "test");
    eddy_lua_push_json(L, r->arg);
    lua_call(L, 1, 1);
    eddy_err_clear(&r->conv_err);
    r->conv_rc = eddy_lua_to_json(L, -1, "result", r->hint, &r->result, &r->conv_err);
    return 0;
}

/* Runs 'src' with 'arg'; returns eddy_lua_run's code; the result is in r->result. */
static int run(eddy_lua *h, chunk_run *r, eddy_err *err)
{
    eddy_err_clear(err);
    r->result = NULL;
    return eddy_lua_run(h, run_chunk_fn, r, err);
}

static eddy_lua *host(size_t memory, int64_t instructions)
{
    eddy_lua_limits limits = {memory, instructions};
    eddy_err err;
    eddy_err_clear(&err);
    eddy_lua *h = eddy_lua_new(&limits, "test", &err);
    if (!h)
        CHECK_FAIL_("eddy_lua_new: %s", err.msg);
    return h;
}

/* Runs 'src' expecting success and the JSON text 'want' as its result. */
static void expect_result(eddy_lua *h, const char *src, const char *arg_text, const char *want)
{
    json_t *arg = arg_text ? eddy_json_loadb(arg_text, strlen(arg_text), NULL) : NULL;
    chunk_run r = {.src = src, .arg = arg};
    eddy_err err;
    int rc = run(h, &r, &err);
    json_decref(arg);
    if (rc != EDDY_OK)
        CHECK_FAIL_("script failed: %s: %s", src, err.msg);
    if (r.conv_rc != EDDY_OK)
        CHECK_FAIL_("result conversion failed: %s: %s", src, r.conv_err.msg);
    char *text = r.result ? eddy_json_dumps(r.result, 0) : eddy_strdup("(nil)");
    json_t *want_json = strcmp(want, "(nil)") ? eddy_json_loadb(want, strlen(want), NULL) : NULL;
    bool same = want_json ? eddy_json_equal(want_json, r.result) : r.result == NULL;
    json_decref(want_json);
    json_decref(r.result);
    if (!same) {
        fprintf(stderr, "script: %s\n  want %s\n  got  %s\n", src, want, text);
        eddy_free(text);
        CHECK_FAIL_("unexpected result");
    }
    eddy_free(text);
}

/* Runs 'src' expecting its result to fail conversion with 'code' and 'text' in the message. */
static void expect_conv_error(eddy_lua *h, const char *src, int code, const char *text)
{
    chunk_run r = {.src = src};
    eddy_err err;
    int rc = run(h, &r, &err);
    if (rc != EDDY_OK)
        CHECK_FAIL_("script failed: %s: %s", src, err.msg);
    json_decref(r.result);
    CHECK(r.result == NULL);
    CHECK_INT_EQ(r.conv_rc, code);
    CHECK_CONTAINS(r.conv_err.msg, text);
}

/* Runs 'src' expecting eddy_lua_run to fail with 'code' and 'text' in the message. */
static void expect_run_error(eddy_lua *h, const char *src, int code, const char *text)
{
    chunk_run r = {.src = src};
    eddy_err err;
    int rc = run(h, &r, &err);
    json_decref(r.result);
    if (rc != code)
        CHECK_FAIL_("%s: expected %s, got %s (%s)", src, eddy_err_name(code), eddy_err_name(rc),
                    err.msg);
    CHECK_CONTAINS(err.msg, text);
}

/* ---- conversion ---- */

static void test_numbers_keep_their_kind(void)
{
    eddy_lua *h = host(0, 0);
    expect_result(h,
                  "local m = ...; return {math.type(m.i), math.type(m.f), math.type(m.big), "
                  "math.type(m.neg0), m.i + 1, m.f * 2}",
                  "{\"i\": 5, \"f\": 1.5, \"big\": 1152921504606846976.0, \"neg0\": -0.0}",
                  "[\"integer\",\"float\",\"integer\",\"float\",6,3]");
    /* Lua integers stay exact; floats that are integral become JSON integers */
    expect_result(h, "return {math.maxinteger, 2.0, 0.1, -0.0, 3 // 2, 7 / 2}", NULL,
                  "[9223372036854775807,2,0.1,0,1,3.5]");
    eddy_lua_free(h);
}

static void test_null_and_empty_containers(void)
{
    eddy_lua *h = host(0, 0);
    expect_result(h,
                  "local m = ...; return {m.a == json.null, m.e == nil, #m.list, "
                  "getmetatable(m.list) ~= nil, next(m.obj) == nil}",
                  "{\"a\": null, \"list\": [], \"obj\": {}}", "[true,true,0,true,true]");
    /* empty containers survive the round trip; json.array() makes an empty array */
    expect_result(h, "local m = ...; return m", "{\"a\":null,\"list\":[],\"obj\":{},\"n\":[null]}",
                  "{\"a\":null,\"list\":[],\"obj\":{},\"n\":[null]}");
    expect_result(h, "return {a = json.array(), b = {}, c = json.array({1, 2})}", NULL,
                  "{\"a\":[],\"b\":{},\"c\":[1,2]}");
    /* an array emptied by the script stays an array */
    expect_result(h, "local m = ...; m.list[1] = nil; return m", "{\"list\":[1]}", "{\"list\":[]}");
    /* json.null as an array element and as the whole value */
    expect_result(h, "return {1, json.null, 3}", NULL, "[1,null,3]");
    expect_result(h, "return json.null", NULL, "null");
    expect_result(h, "return nil", NULL, "(nil)");
    eddy_lua_free(h);
}

static void test_bad_tables_are_refused(void)
{
    eddy_lua *h = host(0, 0);
    expect_conv_error(h, "return {[true] = 1}", EDDY_EINVAL,
                      "result is a table with a key of type boolean");
    expect_conv_error(h, "return {a = {[0] = 1}}", EDDY_EINVAL, "result.a is a table with key 0");
    expect_conv_error(h, "return {[1.5] = 1}", EDDY_EINVAL, "key 1.5");
    expect_conv_error(h, "return {1, 2, x = 3}", EDDY_EINVAL,
                      "mixes array indexes and string keys");
    expect_conv_error(h, "return {[1] = 1, [3] = 3}", EDDY_EINVAL, "hole at index 2");
    expect_conv_error(h, "local a = json.array(); a.x = 1; return a", EDDY_EINVAL,
                      "marked as an array");
    expect_conv_error(h, "return {f = print}", EDDY_EINVAL, "result.f is a function");
    expect_conv_error(h, "return {co = coroutine.create(print)}", EDDY_EINVAL, "is a thread");
    expect_conv_error(h, "return {x = {0/0}}", EDDY_EINVAL, "result.x[1] is NaN");
    expect_conv_error(h, "return {x = math.huge}", EDDY_EINVAL, "result.x is infinity");
    expect_conv_error(h, "return {x = -math.huge}", EDDY_EINVAL, "-infinity");
    expect_conv_error(h, "return {s = 'a\\xff'}", EDDY_EINVAL,
                      "result.s is a string that is not valid UTF-8");
    expect_conv_error(h, "return {['\\xc0\\x80'] = 1}", EDDY_EINVAL, "key that is not valid UTF-8");
    expect_conv_error(h, "local t = {}; t.self = t; return t", EDDY_EINVAL,
                      "nested deeper than 100 levels");
    expect_conv_error(h, "local t = {}; for i = 1, 101 do t = {t} end; return t", EDDY_EINVAL,
                      "nested deeper");
    expect_result(h, "local t = {}; for i = 1, 99 do t = {t} end; return #json.encode(t)", NULL,
                  "200");
    eddy_lua_free(h);
}

static void test_deep_json_is_refused(void)
{
    eddy_lua *h = host(0, 0);
    char text[400];
    size_t n = 0;
    for (int i = 0; i < 150; i++)
        text[n++] = '[';
    for (int i = 0; i < 150; i++)
        text[n++] = ']';
    text[n] = '\0';
    json_t *deep = eddy_json_loadb(text, n, NULL);
    CHECK(deep != NULL);
    chunk_run r = {.src = "return 1", .arg = deep};
    eddy_err err;
    CHECK_INT_EQ(run(h, &r, &err), EDDY_ESCRIPT);
    CHECK_CONTAINS(err.msg, "nested deeper than 100 levels");
    json_decref(deep);
    eddy_lua_free(h);
}

static void test_unchanged_values_are_shared(void)
{
    eddy_lua *h = host(0, 0);
    const char *text = "{\"_msgid\":\"abc\",\"payload\":{\"t\":31.5,\"tags\":[\"a\",\"b\"]},"
                       "\"topic\":\"x\",\"n\":null}";
    json_t *msg = eddy_json_loadb(text, strlen(text), NULL);
    /* unchanged: the very same object comes back */
    chunk_run r = {.src = "local m = ...; return m", .arg = msg, .hint = msg};
    eddy_err err;
    CHECK_INT_EQ(run(h, &r, &err), EDDY_OK);
    CHECK(r.result == msg);
    json_decref(r.result);
    /* one change: a new top object, unchanged children shared */
    r = (chunk_run){.src = "local m = ...; m.topic = 'y'; return m", .arg = msg, .hint = msg};
    CHECK_INT_EQ(run(h, &r, &err), EDDY_OK);
    CHECK(r.result != msg);
    CHECK(json_object_get(r.result, "payload") == json_object_get(msg, "payload"));
    CHECK_STR_EQ(json_string_value(json_object_get(r.result, "topic")), "y");
    CHECK_STR_EQ(json_string_value(json_object_get(msg, "topic")), "x"); /* original intact */
    json_decref(r.result);
    /* a removed key and a changed array element */
    r = (chunk_run){.src = "local m = ...; m.n = nil; m.payload.tags[2] = 'c'; return m",
                    .arg = msg,
                    .hint = msg};
    CHECK_INT_EQ(run(h, &r, &err), EDDY_OK);
    char *out = eddy_json_dumps(r.result, 0);
    CHECK_STR_EQ(out, "{\"_msgid\":\"abc\",\"payload\":{\"t\":31.5,\"tags\":[\"a\",\"c\"]},"
                      "\"topic\":\"x\"}");
    eddy_free(out);
    CHECK(json_object_get(msg, "n") != NULL);
    json_decref(r.result);
    /* same value, other kind: 1 vs 1.0 is the same JSON number, -0.0 is not 0 */
    json_t *zero = json_pack("{s:i}", "z", 0);
    r = (chunk_run){.src = "local m = ...; m.z = -0.0; return m", .arg = zero, .hint = zero};
    CHECK_INT_EQ(run(h, &r, &err), EDDY_OK);
    CHECK(r.result != zero && json_is_real(json_object_get(r.result, "z")));
    json_decref(r.result);
    json_decref(zero);
    json_decref(msg);
    eddy_lua_free(h);
}

/* ---- random documents ---- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static json_t *random_string(void)
{
    static const char *const pieces[] = {"a", "Z", "0", " ",  "\"",  "\\",     "\n",
                                         "é", "€", "𝄞", "\t", "key", "_msgid", "\x01"};
    char buf[128];
    size_t n = 0;
    int count = (int)(rng() % 8);
    for (int i = 0; i < count; i++) {
        const char *p = pieces[rng() % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t len = strlen(p);
        memcpy(buf + n, p, len);
        n += len;
    }
    return json_stringn(buf, n);
}

static json_t *random_number(void)
{
    switch (rng() % 6) {
    case 0:
        return json_integer((json_int_t)(rng() % 2000) - 1000);
    case 1: /* anywhere within the safe range */
        return json_integer((json_int_t)(rng() % (1ull << 53)) * ((rng() & 1) ? 1 : -1));
    case 2:
        return json_real((double)(int64_t)(rng() % 100000) / 64.0 + 1.0 / 128);
    case 3: { /* any finite double */
        double d;
        do {
            uint64_t bits = rng();
            memcpy(&d, &bits, sizeof(d));
        } while (!isfinite(d));
        return eddy_json_number(d);
    }
    case 4:
        return json_real(-0.0);
    default:
        return json_real(1e300 * ((rng() & 1) ? 1 : -1));
    }
}

static json_t *random_json(int depth)
{
    int kind = (int)(rng() % (depth > 6 ? 5 : 7));
    switch (kind) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rng() & 1);
    case 2:
    case 3:
        return random_number();
    case 4:
        return random_string();
    case 5: {
        json_t *a = json_array();
        int n = (int)(rng() % 5);
        for (int i = 0; i < n; i++)
            json_array_append_new(a, random_json(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        int n = (int)(rng() % 5);
        for (int i = 0; i < n; i++) {
            json_t *k = random_string();
            json_object_set_new(o, json_string_value(k), random_json(depth + 1));
            json_decref(k);
        }
        return o;
    }
    }
}

/* Strict: same kinds (integer/real kept apart, except integral reals that fit in 64 bits,
 * which come back as integers of the same value) and values. */
static bool same_json(const json_t *a, const json_t *b)
{
    if (json_is_real(a) && json_is_integer(b))
        return json_real_value(a) == (double)json_integer_value(b) &&
               fabs(json_real_value(a)) >= 9007199254740992.0;
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_real(a))
        return json_real_value(a) == json_real_value(b) &&
               signbit(json_real_value(a)) == signbit(json_real_value(b));
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
        const char *key;
        size_t klen;
        json_t *v;
        json_object_keylen_foreach((json_t *)a, key, klen, v)
        {
            json_t *w = json_object_getn(b, key, klen);
            if (!w || !same_json(v, w))
                return false;
        }
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

static void test_random_round_trips(void)
{
    eddy_lua *h = host(0, 0);
    rng_state = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 2000; i++) {
        json_t *doc = random_json(0);
        /* through a Lua value and back, without and with the original as hint */
        chunk_run r = {.src = "return ...", .arg = doc};
        eddy_err err;
        CHECK_INT_EQ(run(h, &r, &err), EDDY_OK);
        if (r.conv_rc != EDDY_OK)
            CHECK_FAIL_("document %d: %s", i, r.conv_err.msg);
        if (!same_json(doc, r.result)) {
            char *a = eddy_json_dumps(doc, 0), *b = eddy_json_dumps(r.result, 0);
            fprintf(stderr, "document %d\n  in  %s\n  out %s\n", i, a, b);
            eddy_free(a);
            eddy_free(b);
            CHECK_FAIL_("round trip changed the document");
        }
        json_t *again = r.result;
        r = (chunk_run){.src = "return ...", .arg = doc, .hint = doc};
        CHECK_INT_EQ(run(h, &r, &err), EDDY_OK);
        CHECK(r.result == doc);
        json_decref(r.result);
        /* through JSON text inside Lua: json.decode(json.encode(v)) */
        r = (chunk_run){.src = "return json.decode(json.encode(...))", .arg = again};
        CHECK_INT_EQ(run(h, &r, &err), EDDY_OK);
        CHECK_INT_EQ(r.conv_rc, EDDY_OK);
        CHECK(eddy_json_equal(again, r.result));
        json_decref(r.result);
        json_decref(again);
        json_decref(doc);
    }
    eddy_lua_free(h);
}

/* ---- the sandbox: one escape per case ---- */

static void test_sandbox_closes_escapes(void)
{
    eddy_lua *h = host(0, 0);
    static const char *const absent[] = {"io",           "package",     "require",    "debug",
                                         "dofile",       "loadfile",    "os.execute", "os.exit",
                                         "os.remove",    "os.rename",   "os.tmpname", "os.getenv",
                                         "os.setlocale", "string.dump", NULL};
    for (int i = 0; absent[i]; i++) {
        char src[128];
        snprintf(src, sizeof(src), "return %s == nil", absent[i]);
        expect_result(h, src, NULL, "true");
    }
    /* the string metatable leads to the same (sandboxed) string table */
    expect_result(h, "return ('x').dump == nil and getmetatable('').__index.dump == nil", NULL,
                  "true");
    /* binary chunks: refused by mode and by content */
    expect_run_error(h, "return load('x', 'c', 'b')", EDDY_ESCRIPT,
                     "binary chunks are not allowed");
    expect_result(h, "local f, e = load('\\27Lua\\84\\0'); return {f == nil, e}", NULL,
                  "[true,\"attempt to load a binary chunk (mode is 't')\"]");
    expect_result(h,
                  "local s = '\\27Lua\\84'; return load(function() local p = s; s = nil; "
                  "return p end) == nil",
                  NULL, "true");
    /* text chunks load, with an env if given */
    expect_result(h, "return load('return 1 + 1')()", NULL, "2");
    expect_result(h, "return load('return x', 't', 't', {x = 7})()", NULL, "7");
    expect_result(h, "return load('return x', 'c', 't')()", NULL, "(nil)");
    /* collectgarbage: only harmless options */
    expect_run_error(h, "collectgarbage('stop')", EDDY_ESCRIPT,
                     "collectgarbage('stop') is not allowed");
    expect_run_error(h, "collectgarbage('incremental')", EDDY_ESCRIPT, "not allowed");
    expect_result(h, "return math.type(collectgarbage('count'))", NULL, "\"float\"");
    expect_result(h, "collectgarbage(); return collectgarbage('isrunning')", NULL, "true");
    /* what stays: time, clock, date */
    expect_result(h, "return {type(os.time()), type(os.clock()), os.date('!%Y', 0)}", NULL,
                  "[\"number\",\"number\",\"1970\"]");
    expect_result(h, "return os.date('!*t', 86400).day", NULL, "2");
    /* the state is the script's own: nothing of the host's is reachable */
    expect_result(h, "local n = 0; for k in pairs(_G) do n = n + 1 end; return n < 40", NULL,
                  "true");
    eddy_lua_free(h);
}

static char log_seen[2048];

static void capture_log(eddy_log_level level, const char *line, void *data)
{
    size_t n = strlen(log_seen);
    snprintf(log_seen + n, sizeof(log_seen) - n, "%s|%s\n", level == EDDY_LOG_WARN ? "W" : "I",
             line);
}

static void test_print_and_warn_go_to_the_log(void)
{
    eddy_lua *h = host(0, 0);
    log_seen[0] = '\0';
    eddy_log_set_hook(capture_log, NULL);
    expect_result(h, "print('hello', 1, nil); warn('careful ', 'now'); warn('@off'); return 1",
                  NULL, "1");
    eddy_log_set_hook(NULL, NULL);
    CHECK_CONTAINS(log_seen, "I|[test] hello\t1\tnil\n");
    CHECK_CONTAINS(log_seen, "W|[test] careful now\n");
    CHECK(!strstr(log_seen, "@off"));
    eddy_lua_free(h);
}

/* ---- the limits: one bomb per case ---- */

static void test_endless_loop_is_stopped(void)
{
    eddy_lua *h = host(0, 100000);
    expect_run_error(h, "local x = 0\nwhile true do x = x + 1 end", EDDY_EBUDGET,
                     "test:2: instruction budget exceeded (100000 instructions per call)");
    /* the state keeps working, with a fresh budget per call */
    for (int i = 0; i < 3; i++)
        expect_result(h, "local s = 0; for i = 1, 5000 do s = s + i end; return s", NULL,
                      "12502500");
    /* recursion without end */
    expect_run_error(h, "local function f() return f() end; f()", EDDY_EBUDGET,
                     "instruction budget exceeded");
    eddy_lua_free(h);
}

static void test_pcall_cannot_swallow_the_budget(void)
{
    eddy_lua *h = host(0, 100000);
    expect_run_error(h, "while true do pcall(function() while true do end end) end", EDDY_EBUDGET,
                     "instruction budget exceeded");
    expect_run_error(h,
                     "local function spin() while true do end end\n"
                     "while true do xpcall(spin, function(e) while true do end end) end",
                     EDDY_EBUDGET, "instruction budget exceeded");
    expect_run_error(h,
                     "local n = 0\nwhile true do local ok = pcall(pcall, pcall, function() "
                     "while true do end end); n = n + 1 end",
                     EDDY_EBUDGET, "instruction budget exceeded");
    /* errors in __close handlers and error objects with metamethods */
    expect_run_error(h,
                     "local mt = {__close = function() while true do end end}\n"
                     "do local x <close> = setmetatable({}, mt); error('boom') end",
                     EDDY_EBUDGET, "instruction budget exceeded");
    expect_run_error(h, "error(setmetatable({}, {__tostring = function() while true do end end}))",
                     EDDY_ESCRIPT, "error object is a table value");
    expect_result(h, "return 1", NULL, "1");
    eddy_lua_free(h);
}

static void test_coroutines_cannot_reset_the_budget(void)
{
    eddy_lua *h = host(0, 100000);
    expect_run_error(h, "while true do coroutine.wrap(function() for i = 1, 900 do end end)() end",
                     EDDY_EBUDGET, "instruction budget exceeded");
    expect_run_error(h,
                     "local co = coroutine.create(function() while true do end end)\n"
                     "while true do coroutine.resume(co) end",
                     EDDY_EBUDGET, "instruction budget exceeded");
    expect_run_error(h,
                     "while true do local co = coroutine.create(function() "
                     "while true do coroutine.yield() end end); coroutine.resume(co) end",
                     EDDY_EBUDGET, "instruction budget exceeded");
    eddy_lua_free(h);
}

static void test_conversion_counts_against_the_budget(void)
{
    eddy_lua *h = host(0, 200000);
    /* a table shared many times over: 2^30 leaves as JSON */
    expect_conv_error(h, "local t = {1}; for i = 1, 30 do t = {t, t} end; return t", EDDY_EBUDGET,
                      "instruction budget exceeded converting result");
    expect_run_error(h, "local t = {1}; for i = 1, 30 do t = {t, t} end; return json.encode(t)",
                     EDDY_EBUDGET, "instruction budget exceeded");
    eddy_lua_free(h);
}

static void test_memory_bombs_are_stopped(void)
{
    size_t before = eddy_mem_in_use();
    eddy_lua *h = host(1u << 20, 0);
    expect_run_error(h, "local t = {}\nwhile true do t[#t + 1] = {} end", EDDY_EBUDGET,
                     "memory limit exceeded (1024 KiB per node");
    expect_run_error(h, "local s = string.rep('x', 4 * 1024 * 1024)", EDDY_EBUDGET,
                     "memory limit exceeded");
    expect_run_error(h, "local s = 'x'\nwhile true do s = s .. s end", EDDY_EBUDGET,
                     "memory limit exceeded");
    /* caught by the script and thrown again: still a memory error */
    expect_run_error(h, "local ok, e = pcall(string.rep, 'x', 1 << 22); error(e, 0)", EDDY_EBUDGET,
                     "memory limit exceeded");
    /* caught and ignored forever: the instruction budget ends it */
    expect_run_error(h, "while true do pcall(string.rep, 'x', 1 << 22) end", EDDY_EBUDGET,
                     "instruction budget exceeded");
    /* a script-held table that keeps the state near the cap does not break the host */
    expect_run_error(h, "keep = {}\nwhile true do keep[#keep + 1] = 'x' .. #keep end", EDDY_EBUDGET,
                     "memory limit exceeded");
    expect_result(h, "keep = nil; collectgarbage(); return 1", NULL, "1");
    CHECK(eddy_lua_memory(h) < (1u << 20));
    eddy_lua_free(h);
    CHECK_INT_EQ(eddy_mem_in_use(), before);
}

static void test_pattern_bombs_are_stopped(void)
{
    eddy_lua *h = host(0, 0);
    /* each bomb is refused before matching, with an error a script (and catch) sees */
    static const char *const bombs[] = {
        "return string.rep('a', 1e5):find(string.rep('a*', 30) .. 'b')",
        "return ('a'):rep(1e5):find('a*b')",
        "return ('a'):rep(5000):match(('.-'):rep(10) .. 'x')",
        "return (('a'):rep(1e5):gsub('a-a-a-b', ''))",
        "for w in ('a'):rep(1e4):gmatch('a*a*b') do end",
        "return ('a'):rep(1e5):find('(a*)%1b')",
        "return ('('):rep(1e4):find(('%b()'):rep(5) .. 'x')",
    };
    for (size_t i = 0; i < sizeof(bombs) / sizeof(bombs[0]); i++) {
        expect_run_error(h, bombs[i], EDDY_ESCRIPT, "matching steps on");
        /* the state keeps working */
        expect_result(h, "return ('glasshouse/12/climate'):match('^glasshouse/(%d+)/')", NULL,
                      "\"12\"");
    }
    expect_run_error(h, "return ('a'):rep(1e5):find('a*b')", EDDY_ESCRIPT,
                     "string.find: this pattern may need up to 3e+10 matching steps");
    /* pcall sees it as an error; nothing ran long */
    expect_result(h,
                  "local ok, e = pcall(string.find, ('a'):rep(1e5), 'a*b'); "
                  "return {ok, e:find('instruction budget', 1, true) ~= nil}",
                  NULL, "[false,true]");
    /* common patterns on long texts stay cheap: one repeated item at the end is linear */
    expect_result(h, "local s = (' a'):rep(50000); return #(s:gsub('%s+', ''))", NULL, "50000");
    expect_result(h,
                  "local n = 0; for w in ('ab,'):rep(10000):gmatch('[^,]+') do n = n + 1 end; "
                  "return n",
                  NULL, "10000");
    expect_result(h, "return {('k=v'):match('(%w+)=(%w+)')}", NULL, "[\"k\",\"v\"]");
    expect_result(h, "return ('a.b'):find('.', 1, true)", NULL, "2");
    /* a smaller budget refuses sooner; charging counts against the budget */
    eddy_lua *small = host(0, 20000);
    expect_run_error(small, "return ('a'):rep(2000):find('a*b')", EDDY_ESCRIPT, "matching steps");
    expect_run_error(small, "for i = 1, 1000 do ('a'):rep(1000):find('%a+') end", EDDY_ESCRIPT,
                     "instruction budget has left (");
    eddy_lua_free(small);
    eddy_lua_free(h);
}

static void test_finalizers_are_refused(void)
{
    eddy_lua *h = host(0, 100000);
    expect_run_error(h, "setmetatable({}, {__gc = function() while true do end end})", EDDY_ESCRIPT,
                     "__gc metamethods are not allowed");
    /* the array mark cannot be reached to add one */
    expect_result(h, "return getmetatable(json.array())", NULL, "\"json.array\"");
    expect_run_error(h, "setmetatable(json.array(), {})", EDDY_ESCRIPT,
                     "cannot change a protected metatable");
    /* a metatable that gets __gc after setmetatable does not make a finalizer (Lua 5.4) */
    expect_result(h,
                  "local mt = {}; local t = setmetatable({}, mt); mt.__gc = function() "
                  "while true do end end; t = nil; collectgarbage(); return 1",
                  NULL, "1");
    /* xpcall's handler runs after unwinding, under the budget */
    expect_result(h, "return {xpcall(function(a) return a * 2 end, print, 21)}", NULL, "[true,42]");
    expect_result(h, "return {xpcall(error, function(e) return 'handled ' .. e end, 'x', 0)}", NULL,
                  "[false,\"handled x\"]");
    eddy_lua_free(h);
}

static void test_syntax_errors_name_the_line(void)
{
    eddy_lua *h = host(0, 0);
    expect_run_error(h, "local x = 1\nlocal y = = 2", EDDY_ESCRIPT, "test:2: unexpected symbol");
    expect_run_error(h, "local x = nil\nreturn x.y", EDDY_ESCRIPT,
                     "test:2: attempt to index a nil value (local 'x')");
    expect_run_error(h, "error({code = 1})", EDDY_ESCRIPT, "error object is a table value");
    expect_run_error(h, "error(42)", EDDY_ESCRIPT, "42");
    eddy_lua_free(h);
}

static void test_allocation_failures_leak_nothing(void)
{
    size_t before = eddy_mem_in_use();
    for (long n = 1; n < 400; n++) {
        eddy_mem_fail_after(n);
        eddy_err err;
        eddy_err_clear(&err);
        eddy_lua *h = eddy_lua_new(NULL, "test", &err);
        eddy_mem_fail_after(0);
        if (!h) {
            CHECK_INT_EQ(err.code, EDDY_ENOMEM);
            continue;
        }
        eddy_lua_free(h);
    }
    CHECK_INT_EQ(eddy_mem_in_use(), before);
}

typedef struct inspect_run {
    const char *src;
    const json_t *msg;
    bool read_only;
    long calls; /* calls counted while running the chunk with 'msg' */
} inspect_run;

static int inspect_fn(lua_State *L)
{
    inspect_run *r = lua_touserdata(L, 1);
    eddy_lua_load(L, r->src, strlen(r->src), "test");
    r->read_only = eddy_lua_is_read_only(L, -1);
    eddy_lua_push_json(L, r->msg);
    eddy_lua *h = eddy_lua_from_state(L);
    eddy_lua_watch_calls(h);
    lua_call(L, 1, 0);
    r->calls = eddy_lua_watched_calls(h);
    return 0;
}

/* Checks the verdict on 'src' and, unless want_calls is -1, the calls it made when run. */
static void expect_read_only(eddy_lua *h, const char *src, bool want, long want_calls)
{
    json_t *msg = json_pack("{s:s,s:s,s:{s:f}}", "topic", "a", "n", "12", "payload", "t", 31.5);
    inspect_run r = {.src = src, .msg = msg};
    eddy_err err;
    eddy_err_clear(&err);
    int rc = eddy_lua_run(h, inspect_fn, &r, &err);
    json_decref(msg);
    if (rc != EDDY_OK)
        CHECK_FAIL_("%s: %s", src, err.msg);
    if (r.read_only != want)
        CHECK_FAIL_("%s: read-only is %d, expected %d", src, r.read_only, want);
    if (want_calls >= 0 && r.calls != want_calls)
        CHECK_FAIL_("%s: %ld calls, expected %ld", src, r.calls, want_calls);
}

static int is_read_only_fn(lua_State *L)
{
    bool *out = lua_touserdata(L, 1);
    lua_pushcfunction(L, is_read_only_fn);
    *out = eddy_lua_is_read_only(L, -1);
    return 0;
}

/* Read-only functions can only read, compute, compare and return; each way of writing,
 * keeping or calling makes a function not read-only. While calls are watched, a run counts
 * the chunk's own entry plus one per function or metamethod it runs. */
static void test_read_only_functions_are_recognised(void)
{
    eddy_lua *h = host(0, 0);
    expect_read_only(h, "local msg = ...; if msg.payload.t > 30 then return msg end", true, 1);
    expect_read_only(h, "local msg = ...; return msg.payload.t >= 30.5 and msg or nil", true, 1);
    expect_read_only(h, "local msg = ...; local n = 0; for i = 1, 3 do n = n + i end; return n",
                     true, 1);
    expect_read_only(h, "local msg = ...; return #msg.topic .. msg.topic, -msg.payload.t % 3", true,
                     1);
    expect_read_only(h, "local msg = ...; local k = 'topic'; return msg[k] == json.null", true, 1);
    expect_read_only(h, "local msg = ...; msg.topic = 'b'", false, 1);           /* SETFIELD */
    expect_read_only(h, "local msg = ...; msg.payload[1] = 2", false, 1);        /* SETI */
    expect_read_only(h, "local msg = ...; local k = 'x'; msg[k] = 1", false, 1); /* SETTABLE */
    expect_read_only(h, "local msg = ...; kept = msg", false, 1);                /* SETTABUP */
    expect_read_only(h, "local msg = ...; return {msg}", false, 1);              /* NEWTABLE */
    expect_read_only(h, "local msg = ...; return function() return msg end", false, 1);
    expect_read_only(h, "local msg = ...; print(msg.topic)", false, -1);            /* CALL */
    expect_read_only(h, "local msg = ...; return tostring(msg)", false, -1);        /* TAILCALL */
    expect_read_only(h, "local msg = ...; return msg.topic:upper()", false, -1);    /* SELF */
    expect_read_only(h, "local msg = ...; for k in next, msg do end", false, -1);   /* TFORCALL */
    expect_read_only(h, "local msg = ...; do local x <close> = nil end", false, 1); /* TBC */
    /* a metamethod is a call, so the caller sees it even in a read-only function */
    expect_read_only(h, "local msg = ...; getmetatable('').__lt = function() return true end",
                     false, 2);
    expect_read_only(h, "local msg = ...; return msg.topic < msg.payload", true, 2);
    expect_read_only(h, "local msg = ...; return msg.n + 1", true, 2); /* string arithmetic */
    bool c_function_read_only = true;
    eddy_err err;
    eddy_err_clear(&err);
    CHECK_INT_EQ(eddy_lua_run(h, is_read_only_fn, &c_function_read_only, &err), EDDY_OK);
    CHECK(!c_function_read_only);
    eddy_lua_free(h);
}

static const check_test tests[] = {
    {"numbers_keep_their_kind", test_numbers_keep_their_kind},
    {"null_and_empty_containers", test_null_and_empty_containers},
    {"bad_tables_are_refused", test_bad_tables_are_refused},
    {"deep_json_is_refused", test_deep_json_is_refused},
    {"unchanged_values_are_shared", test_unchanged_values_are_shared},
    {"random_round_trips", test_random_round_trips},
    {"sandbox_closes_escapes", test_sandbox_closes_escapes},
    {"print_and_warn_go_to_the_log", test_print_and_warn_go_to_the_log},
    {"endless_loop_is_stopped", test_endless_loop_is_stopped},
    {"pcall_cannot_swallow_the_budget", test_pcall_cannot_swallow_the_budget},
    {"coroutines_cannot_reset_the_budget", test_coroutines_cannot_reset_the_budget},
    {"conversion_counts_against_the_budget", test_conversion_counts_against_the_budget},
    {"memory_bombs_are_stopped", test_memory_bombs_are_stopped},
    {"pattern_bombs_are_stopped", test_pattern_bombs_are_stopped},
    {"finalizers_are_refused", test_finalizers_are_refused},
    {"syntax_errors_name_the_line", test_syntax_errors_name_the_line},
    {"allocation_failures_leak_nothing", test_allocation_failures_leak_nothing},
    {"read_only_functions_are_recognised", test_read_only_functions_are_recognised},
    {NULL, NULL}};

CHECK_MAIN(tests)
