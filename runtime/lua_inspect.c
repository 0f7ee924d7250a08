/* lua_inspect.c: reads a function's Lua 5.4 bytecode dump to tell whether it is read-only
 * (contract in lua_inspect.h).
 *
 * The dump of Lua 5.4 (ldump.c) starts with a fixed header, then the number of upvalues of
 * the main function, then the function: its source name, two line numbers, three bytes
 * (parameters, vararg, stack size), and its code as a count and 32-bit instructions whose
 * low 7 bits are the opcode. Sizes are unsigned numbers in 7-bit groups, most significant
 * first, the last group marked by its high bit. Only the function's own code is read: a
 * nested function needs a CLOSURE instruction, which is not read-only anyway. */
#include "lua_inspect.h"

#include <stdint.h>
#include <string.h>

#include "mem.h"

/* Dumps larger than this are not inspected (a read-only filter is a few hundred bytes). */
#define INSPECT_MAX_DUMP (64u * 1024u)

/* Lua 5.4's opcodes (lopcodes.h, "ORDER OP"), numbered as 5.4.0 to 5.4.7 number them; the
 * header check below makes sure the dump is of that instruction set. */
enum {
    OP_MOVE,
    OP_LOADI,
    OP_LOADF,
    OP_LOADK,
    OP_LOADKX,
    OP_LOADFALSE,
    OP_LFALSESKIP,
    OP_LOADTRUE,
    OP_LOADNIL,
    OP_GETUPVAL,
    OP_SETUPVAL,
    OP_GETTABUP,
    OP_GETTABLE,
    OP_GETI,
    OP_GETFIELD,
    OP_SETTABUP,
    OP_SETTABLE,
    OP_SETI,
    OP_SETFIELD,
    OP_NEWTABLE,
    OP_SELF,
    OP_ADDI,
    OP_ADDK,
    OP_SUBK,
    OP_MULK,
    OP_MODK,
    OP_POWK,
    OP_DIVK,
    OP_IDIVK,
    OP_BANDK,
    OP_BORK,
    OP_BXORK,
    OP_SHRI,
    OP_SHLI,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_MOD,
    OP_POW,
    OP_DIV,
    OP_IDIV,
    OP_BAND,
    OP_BOR,
    OP_BXOR,
    OP_SHL,
    OP_SHR,
    OP_MMBIN,
    OP_MMBINI,
    OP_MMBINK,
    OP_UNM,
    OP_BNOT,
    OP_NOT,
    OP_LEN,
    OP_CONCAT,
    OP_CLOSE,
    OP_TBC,
    OP_JMP,
    OP_EQ,
    OP_LT,
    OP_LE,
    OP_EQK,
    OP_EQI,
    OP_LTI,
    OP_LEI,
    OP_GTI,
    OP_GEI,
    OP_TEST,
    OP_TESTSET,
    OP_CALL,
    OP_TAILCALL,
    OP_RETURN,
    OP_RETURN0,
    OP_RETURN1,
    OP_FORLOOP,
    OP_FORPREP,
    OP_TFORPREP,
    OP_TFORCALL,
    OP_TFORLOOP,
    OP_SETLIST,
    OP_CLOSURE,
    OP_VARARG,
    OP_VARARGPREP,
    OP_EXTRAARG,
    OP_COUNT
};

/* Instructions that write (SET*, SETLIST), make objects (NEWTABLE, CLOSURE), call (CALL,
 * TAILCALL, SELF's method call, the generic for's iterator) or close variables (CLOSE,
 * TBC, which may run __close) are missing: everything else only reads, computes and jumps.
 * MMBIN* call a metamethod, which the caller sees as a call. */
static const bool read_only_op[OP_COUNT] = {
    [OP_MOVE] = true,    [OP_LOADI] = true,      [OP_LOADF] = true,      [OP_LOADK] = true,
    [OP_LOADKX] = true,  [OP_LOADFALSE] = true,  [OP_LFALSESKIP] = true, [OP_LOADTRUE] = true,
    [OP_LOADNIL] = true, [OP_GETUPVAL] = true,   [OP_GETTABUP] = true,   [OP_GETTABLE] = true,
    [OP_GETI] = true,    [OP_GETFIELD] = true,   [OP_ADDI] = true,       [OP_ADDK] = true,
    [OP_SUBK] = true,    [OP_MULK] = true,       [OP_MODK] = true,       [OP_POWK] = true,
    [OP_DIVK] = true,    [OP_IDIVK] = true,      [OP_BANDK] = true,      [OP_BORK] = true,
    [OP_BXORK] = true,   [OP_SHRI] = true,       [OP_SHLI] = true,       [OP_ADD] = true,
    [OP_SUB] = true,     [OP_MUL] = true,        [OP_MOD] = true,        [OP_POW] = true,
    [OP_DIV] = true,     [OP_IDIV] = true,       [OP_BAND] = true,       [OP_BOR] = true,
    [OP_BXOR] = true,    [OP_SHL] = true,        [OP_SHR] = true,        [OP_MMBIN] = true,
    [OP_MMBINI] = true,  [OP_MMBINK] = true,     [OP_UNM] = true,        [OP_BNOT] = true,
    [OP_NOT] = true,     [OP_LEN] = true,        [OP_CONCAT] = true,     [OP_JMP] = true,
    [OP_EQ] = true,      [OP_LT] = true,         [OP_LE] = true,         [OP_EQK] = true,
    [OP_EQI] = true,     [OP_LTI] = true,        [OP_LEI] = true,        [OP_GTI] = true,
    [OP_GEI] = true,     [OP_TEST] = true,       [OP_TESTSET] = true,    [OP_RETURN] = true,
    [OP_RETURN0] = true, [OP_RETURN1] = true,    [OP_FORLOOP] = true,    [OP_FORPREP] = true,
    [OP_VARARG] = true,  [OP_VARARGPREP] = true, [OP_EXTRAARG] = true,
};

typedef struct dump_buf {
    unsigned char *bytes;
    size_t len, cap;
    bool failed; /* out of memory or over INSPECT_MAX_DUMP */
} dump_buf;

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    dump_buf *d = ud;
    if (d->failed || d->len + n > INSPECT_MAX_DUMP) {
        d->failed = true;
        return 1; /* lua_dump stops at a non-zero answer */
    }
    if (d->len + n > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 512;
        while (cap < d->len + n)
            cap *= 2;
        unsigned char *bytes = eddy_realloc(d->bytes, cap);
        if (!bytes) {
            d->failed = true;
            return 1;
        }
        d->bytes = bytes;
        d->cap = cap;
    }
    memcpy(d->bytes + d->len, p, n);
    d->len += n;
    return 0;
}

typedef struct reader {
    const unsigned char *p, *end;
} reader;

static bool read_bytes(reader *r, size_t n, const unsigned char **out)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    *out = r->p;
    r->p += n;
    return true;
}

static bool read_size(reader *r, size_t *out)
{
    size_t x = 0;
    for (int i = 0; i < 10 && r->p < r->end; i++) {
        unsigned b = *r->p++;
        x = (x << 7) | (b & 0x7f);
        if (b & 0x80) {
            *out = x;
            return true;
        }
    }
    return false;
}

/* The header of a Lua 5.4 dump made on this machine: signature, version 5.4, official
 * format, the conversion-check bytes, and the sizes of an instruction, lua_Integer and
 * lua_Number. The check values that follow (an integer and a float) are skipped. */
static bool read_header(reader *r)
{
    static const unsigned char expected[] = {0x1b, 'L',  'u',  'a',  0x54, 0,
                                             0x19, 0x93, '\r', '\n', 0x1a, '\n'};
    const unsigned char *h;
    if (!read_bytes(r, sizeof(expected) + 3, &h) || memcmp(h, expected, sizeof(expected)) != 0)
        return false;
    const unsigned char *sizes = h + sizeof(expected);
    if (sizes[0] != 4 || sizes[1] != sizeof(lua_Integer) || sizes[2] != sizeof(lua_Number))
        return false;
    return read_bytes(r, sizeof(lua_Integer) + sizeof(lua_Number), &h);
}

/* Reads up to the main function's code; true with 'code' and 'count' set. */
static bool read_code(reader *r, const unsigned char **code, size_t *count)
{
    const unsigned char *skip;
    size_t n;
    if (!read_header(r) || !read_bytes(r, 1, &skip)) /* the number of upvalues */
        return false;
    if (!read_size(r, &n) || (n > 0 && !read_bytes(r, n - 1, &skip))) /* source name */
        return false;
    if (!read_size(r, &n) || !read_size(r, &n)) /* first and last line */
        return false;
    if (!read_bytes(r, 3, &skip) || !read_size(r, count)) /* params, vararg, stack size */
        return false;
    if (*count > INSPECT_MAX_DUMP / 4)
        return false;
    return read_bytes(r, *count * 4, code);
}

static bool code_is_read_only(const unsigned char *code, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint32_t ins;
        memcpy(&ins, code + i * 4, sizeof(ins)); /* the dump is in this machine's order */
        unsigned op = ins & 0x7f;
        if (op >= OP_COUNT || !read_only_op[op])
            return false;
    }
    return count > 0;
}

bool eddy_lua_is_read_only(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TFUNCTION || lua_iscfunction(L, idx))
        return false;
    lua_pushvalue(L, idx); /* lua_dump dumps the top */
    dump_buf d = {0};
    int rc = lua_dump(L, dump_writer, &d, 1);
    lua_pop(L, 1);
    bool read_only = false;
    if (rc == 0 && !d.failed) {
        reader r = {d.bytes, d.bytes + d.len};
        const unsigned char *code;
        size_t count;
        read_only = read_code(&r, &code, &count) && code_is_read_only(code, count);
    }
    eddy_free(d.bytes);
    return read_only;
}
