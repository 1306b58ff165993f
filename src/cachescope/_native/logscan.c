/* cachescope._native.logscan: the hot loop of `cachescope.logs._scan` (Claude Code transcripts).
 *
 * scan_block(buf, end, line_base, models, begin=0) reads the complete lines buf[begin:end] (the
 * first numbered line_base; positions returned are offsets into buf) in one pass and
 * does, for the usual usage line, exactly what the pure-Python fast path does (`_Scanner.
 * _usage_block`: one orjson parse of the line with the bytes from `"content":` up to `"usage":{`
 * cut out, then the field checks). It never decides anything the pure path might decide
 * differently: whenever a line is not plainly the usual kind (the cut document is not JSON this
 * parser is sure orjson accepts, a key is duplicated, a string has a \u escape, a count is not a
 * plain non-negative integer, the model is <synthetic>, ...) the line is handed back as "odd" and
 * Python runs its own per-line path on it, so odd lines cost time, never correctness.
 *
 * Pure-Python twin: `_Scanner.scan` with the native module absent (CACHESCOPE_PURE=1); tests hold
 * both to identical FileResults and DataFrames.
 *
 * Returns (lines, rows, taken, synthetic, odd, bad, stamps, compact, ledger):
 * - lines: newlines in buf[begin:end];
 * - rows: bytes, ROW_SIZE bytes per taken line (struct Row below, native byte order);
 * - taken: number of rows;
 * - synthetic: `<synthetic>` usage lines counted (usage lines without a row, as in the pure path);
 * - odd: [(rows_before, start, stop, pos, line_no)] usage lines left to Python, in file order;
 * - bad: line numbers of non-empty lines that do not end in `}` (after trailing \r);
 * - stamps: [(row, bytes)] rows whose timestamp is not `YYYY-MM-DDTHH:MM:SS.sssZ` (their `time`
 *   is left 0 and Python parses the text as the pure path would);
 * - compact / ledger: [(start, stop, pos, line_no)] lines holding `"compact_boundary"` /
 *   `"cachescope.call"` (first occurrence at pos), for Python's handlers.
 * `models` is a dict bytes -> int that gives each model name its code (first seen, next code).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#define LOGSCAN_SSE2 1
#endif

static inline int
ctz32(unsigned x)
{
#if defined(__GNUC__)
    return __builtin_ctz(x);
#else
    int n = 0;
    while (!(x & 1u))
        x >>= 1, n++;
    return n;
#endif
}

typedef struct {
    int64_t time, fresh, w5, w1, read, output, key, message;
    int32_t model;
    uint8_t flags;
    uint8_t pad[3];
} Row;

#define FLAG_SIDECHAIN 1
#define FLAG_FAST 2
#define FLAG_HAS_SPEED 4
#define MAX_DEPTH 200
#define SIGN_FLIP 0x8000000000000000ULL

/* ---------------------------------------------------------------------------------------------
 * A strict JSON reader over one document. Every function returns 0 on success and -1 to give
 * the line to Python ("bail"): on anything orjson might reject or read differently.
 */
typedef struct {
    const unsigned char *p, *end;
    int depth;
} Parser;

typedef struct {
    const unsigned char *s;
    Py_ssize_t n;
    int escaped;
} Str;

static inline void
skip_ws(Parser *P)
{
    /* transcripts are written without whitespace: one test in the usual case */
    if (P->p < P->end && *P->p > ' ')
        return;
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r'))
        P->p++;
}

/* Bytes a string cannot simply step over: '"', '\\', controls and non-ASCII. */
static unsigned char special[256];

static void
init_special(void)
{
    for (int i = 0; i < 256; i++)
        special[i] = i < 0x20 || i >= 0x80 || i == '"' || i == '\\';
}

static inline int
read_string(Parser *P, Str *out)
{
    const unsigned char *p = P->p, *end = P->end;
    if (p >= end || *p != '"')
        return -1;
    p++;
    out->s = p;
    out->escaped = 0;
    while (p < end) {
#ifdef LOGSCAN_SSE2
        while (end - p >= 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)p);
            __m128i hit = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                             _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
                _mm_cmplt_epi8(x, _mm_set1_epi8(0x20))); /* signed: controls and >= 0x80 */
            int mask = _mm_movemask_epi8(hit);
            if (mask) {
                p += ctz32((unsigned)mask);
                break;
            }
            p += 16;
        }
        if (p >= end)
            break;
#endif
        while (p < end && !special[*p])
            p++;
        if (p >= end)
            break;
        unsigned char ch = *p;
        if (ch == '"') {
            out->n = p - out->s;
            P->p = p + 1;
            return 0;
        }
        if (ch < 0x20)
            return -1;
        if (ch == '\\') {
            if (p + 1 >= end)
                return -1;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                out->escaped = 1;
                p += 2;
                continue;
            default: /* \u escapes (surrogate rules) and invalid escapes: let orjson judge */
                return -1;
            }
        }
        if (ch < 0x80) {
            p++;
            continue;
        }
        /* strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF */
        if (ch >= 0xC2 && ch <= 0xDF) {
            if (p + 1 >= end || (p[1] & 0xC0) != 0x80)
                return -1;
            p += 2;
        }
        else if (ch >= 0xE0 && ch <= 0xEF) {
            unsigned char lo = 0x80, hi = 0xBF;
            if (ch == 0xE0)
                lo = 0xA0;
            else if (ch == 0xED)
                hi = 0x9F;
            if (p + 2 >= end || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
                return -1;
            p += 3;
        }
        else if (ch >= 0xF0 && ch <= 0xF4) {
            unsigned char lo = 0x80, hi = 0xBF;
            if (ch == 0xF0)
                lo = 0x90;
            else if (ch == 0xF4)
                hi = 0x8F;
            if (p + 3 >= end || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 ||
                (p[3] & 0xC0) != 0x80)
                return -1;
            p += 4;
        }
        else
            return -1;
    }
    return -1;
}

static inline int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A number of any JSON form that orjson surely reads as a finite value. */
static int
skip_number(Parser *P)
{
    const unsigned char *p = P->p, *end = P->end;
    Py_ssize_t digits = 0;
    if (p < end && *p == '-')
        p++;
    if (p >= end || !is_digit(*p))
        return -1;
    if (*p == '0')
        p++, digits = 1;
    else
        while (p < end && is_digit(*p))
            p++, digits++;
    if (digits > 18)
        return -1;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return -1;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E'))
        return -1; /* exponents can overflow to infinity, which orjson rejects */
    P->p = p;
    return 0;
}

/* A count: a plain non-negative integer (what `type(x) is int and x >= 0` accepts). */
static int
read_count(Parser *P, int64_t *out)
{
    const unsigned char *p = P->p, *end = P->end;
    int64_t value = 0;
    int digits = 0;
    if (p >= end || !is_digit(*p))
        return -1;
    if (*p == '0' && p + 1 < end && is_digit(p[1]))
        return -1;
    while (p < end && is_digit(*p)) {
        if (++digits > 18)
            return -1;
        value = value * 10 + (*p - '0');
        p++;
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return -1;
    *out = value;
    P->p = p;
    return 0;
}

static int skip_value(Parser *P);

static int
skip_container(Parser *P, unsigned char close)
{
    Str key;
    if (++P->depth > MAX_DEPTH)
        return -1;
    P->p++;
    skip_ws(P);
    if (P->p < P->end && *P->p == close) {
        P->p++;
        P->depth--;
        return 0;
    }
    for (;;) {
        if (close == '}') {
            if (read_string(P, &key) < 0)
                return -1;
            skip_ws(P);
            if (P->p >= P->end || *P->p != ':')
                return -1;
            P->p++;
            skip_ws(P);
        }
        if (skip_value(P) < 0)
            return -1;
        skip_ws(P);
        if (P->p >= P->end)
            return -1;
        if (*P->p == ',') {
            P->p++;
            skip_ws(P);
            continue;
        }
        if (*P->p == close) {
            P->p++;
            P->depth--;
            return 0;
        }
        return -1;
    }
}

static int
skip_literal(Parser *P, const char *word, Py_ssize_t n)
{
    if (P->end - P->p < n || memcmp(P->p, word, n) != 0)
        return -1;
    P->p += n;
    return 0;
}

static int
skip_value(Parser *P)
{
    Str s;
    if (P->p >= P->end)
        return -1;
    switch (*P->p) {
    case '{':
        return skip_container(P, '}');
    case '[':
        return skip_container(P, ']');
    case '"':
        return read_string(P, &s);
    case 't':
        return skip_literal(P, "true", 4);
    case 'f':
        return skip_literal(P, "false", 5);
    case 'n':
        return skip_literal(P, "null", 4);
    default:
        return skip_number(P);
    }
}

static inline int
key_is(const Str *key, const char *name, Py_ssize_t n)
{
    return key->n == n && memcmp(key->s, name, n) == 0;
}
#define KEY_IS(k, lit) key_is((k), (lit), (Py_ssize_t)(sizeof(lit) - 1))

/* Walks the members of an object at P->p ('{'): calls member(P, key, ctx) positioned at each
 * value, which must consume it. Keys with escapes bail (they could spell a key we look for). */
typedef int (*member_fn)(Parser *P, const Str *key, void *ctx);

static int
walk_object(Parser *P, member_fn member, void *ctx)
{
    Str key;
    if (P->p >= P->end || *P->p != '{' || ++P->depth > MAX_DEPTH)
        return -1;
    P->p++;
    skip_ws(P);
    if (P->p < P->end && *P->p == '}') {
        P->p++;
        P->depth--;
        return 0;
    }
    for (;;) {
        if (read_string(P, &key) < 0 || key.escaped)
            return -1;
        skip_ws(P);
        if (P->p >= P->end || *P->p != ':')
            return -1;
        P->p++;
        skip_ws(P);
        if (member(P, &key, ctx) < 0)
            return -1;
        skip_ws(P);
        if (P->p >= P->end)
            return -1;
        if (*P->p == ',') {
            P->p++;
            skip_ws(P);
            continue;
        }
        if (*P->p == '}') {
            P->p++;
            P->depth--;
            return 0;
        }
        return -1;
    }
}

/* What one usage line yields. `seen` bits guard against duplicate keys (orjson keeps the last
 * one; we simply bail). */
typedef struct {
    unsigned seen;
    Str stamp, model, id, request;
    int has_request, sidechain, has_speed, fast, has_breakdown;
    int64_t fresh, output, read, creation, w5, w1;
} Line;

enum {
    S_MESSAGE = 1 << 0, S_STAMP = 1 << 1, S_SIDECHAIN = 1 << 2, S_REQUEST = 1 << 3,
    S_MODEL = 1 << 4, S_ID = 1 << 5, S_USAGE = 1 << 6, S_FRESH = 1 << 7, S_OUTPUT = 1 << 8,
    S_READ = 1 << 9, S_CREATION = 1 << 10, S_BREAKDOWN = 1 << 11, S_SPEED = 1 << 12,
    S_W5 = 1 << 13, S_W1 = 1 << 14,
};

static inline int
once(Line *L, unsigned bit)
{
    if (L->seen & bit)
        return -1;
    L->seen |= bit;
    return 0;
}

static int
breakdown_member(Parser *P, const Str *key, void *ctx)
{
    Line *L = (Line *)ctx;
    if (KEY_IS(key, "ephemeral_5m_input_tokens"))
        return (once(L, S_W5) < 0 || read_count(P, &L->w5) < 0) ? -1 : 0;
    if (KEY_IS(key, "ephemeral_1h_input_tokens"))
        return (once(L, S_W1) < 0 || read_count(P, &L->w1) < 0) ? -1 : 0;
    return skip_value(P);
}

static int
usage_member(Parser *P, const Str *key, void *ctx)
{
    Line *L = (Line *)ctx;
    if (KEY_IS(key, "input_tokens"))
        return (once(L, S_FRESH) < 0 || read_count(P, &L->fresh) < 0) ? -1 : 0;
    if (KEY_IS(key, "output_tokens"))
        return (once(L, S_OUTPUT) < 0 || read_count(P, &L->output) < 0) ? -1 : 0;
    if (KEY_IS(key, "cache_read_input_tokens"))
        return (once(L, S_READ) < 0 || read_count(P, &L->read) < 0) ? -1 : 0;
    if (KEY_IS(key, "cache_creation_input_tokens"))
        return (once(L, S_CREATION) < 0 || read_count(P, &L->creation) < 0) ? -1 : 0;
    if (KEY_IS(key, "cache_creation")) {
        if (once(L, S_BREAKDOWN) < 0 || P->p >= P->end)
            return -1;
        if (*P->p == 'n')
            return skip_literal(P, "null", 4);
        if (*P->p != '{')
            return -1;
        L->has_breakdown = 1;
        return walk_object(P, breakdown_member, L);
    }
    if (KEY_IS(key, "speed")) {
        Str s;
        if (once(L, S_SPEED) < 0 || P->p >= P->end)
            return -1;
        if (*P->p == 'n')
            return skip_literal(P, "null", 4);
        if (read_string(P, &s) < 0 || s.escaped)
            return -1;
        L->has_speed = 1;
        L->fast = s.n == 4 && memcmp(s.s, "fast", 4) == 0;
        return 0;
    }
    return skip_value(P);
}

static int
message_member(Parser *P, const Str *key, void *ctx)
{
    Line *L = (Line *)ctx;
    if (KEY_IS(key, "model"))
        return (once(L, S_MODEL) < 0 || read_string(P, &L->model) < 0 || L->model.escaped) ? -1
                                                                                          : 0;
    if (KEY_IS(key, "id"))
        return (once(L, S_ID) < 0 || read_string(P, &L->id) < 0 || L->id.escaped) ? -1 : 0;
    if (KEY_IS(key, "usage"))
        return (once(L, S_USAGE) < 0 || walk_object(P, usage_member, L) < 0) ? -1 : 0;
    return skip_value(P);
}

static int
record_member(Parser *P, const Str *key, void *ctx)
{
    Line *L = (Line *)ctx;
    if (KEY_IS(key, "message"))
        return (once(L, S_MESSAGE) < 0 || walk_object(P, message_member, L) < 0) ? -1 : 0;
    if (KEY_IS(key, "timestamp"))
        return (once(L, S_STAMP) < 0 || read_string(P, &L->stamp) < 0 || L->stamp.escaped) ? -1
                                                                                          : 0;
    if (KEY_IS(key, "isSidechain")) {
        if (once(L, S_SIDECHAIN) < 0)
            return -1;
        if (P->p < P->end && *P->p == 't') {
            L->sidechain = 1;
            return skip_literal(P, "true", 4);
        }
        return skip_value(P);
    }
    if (KEY_IS(key, "requestId")) {
        if (once(L, S_REQUEST) < 0 || P->p >= P->end)
            return -1;
        if (*P->p == '"') {
            if (read_string(P, &L->request) < 0 || L->request.escaped)
                return -1;
            L->has_request = 1;
            return 0;
        }
        return skip_value(P);
    }
    return skip_value(P);
}

#define S_REQUIRED (S_MESSAGE | S_USAGE | S_FRESH | S_OUTPUT | S_STAMP | S_MODEL | S_ID)

/* The pure fast path's test on the cut document doc[0:n]: 1 it takes the line (L holds the
 * row), 0 it surely does not (the document is valid and lacks a field the path needs), -1 not
 * sure (Python decides); 2 the line is a `<synthetic>` error, which the fast path leaves to the
 * per-line path. */
static int
parse_line(const unsigned char *doc, Py_ssize_t n, Line *L)
{
    Parser P = {doc, doc + n, 0};
    memset(L, 0, sizeof(*L));
    skip_ws(&P);
    if (walk_object(&P, record_member, L) < 0)
        return -1;
    skip_ws(&P);
    if (P.p != P.end)
        return -1;
    if ((L->seen & S_REQUIRED) != S_REQUIRED)
        return 0;
    if (L->model.n == 11 && memcmp(L->model.s, "<synthetic>", 11) == 0)
        return 2;
    if (!(L->has_breakdown && (L->seen & (S_W5 | S_W1)))) {
        L->w5 = L->creation;
        L->w1 = 0;
    }
    return 1;
}

/* `_full_line`'s view of a whole line: 0 when it is valid JSON whose top level has no `message`
 * object holding a `usage` object (the pure path then ignores the line), -1 otherwise. */
static int
full_message_member(Parser *P, const Str *key, void *ctx)
{
    unsigned *seen = (unsigned *)ctx;
    if (KEY_IS(key, "usage")) {
        if (*seen & S_USAGE || P->p >= P->end || *P->p == '{')
            return -1; /* a usage object: not for us to judge */
        *seen |= S_USAGE;
    }
    return skip_value(P);
}

static int
full_record_member(Parser *P, const Str *key, void *ctx)
{
    unsigned *seen = (unsigned *)ctx;
    if (KEY_IS(key, "message")) {
        if (*seen & S_MESSAGE || P->p >= P->end)
            return -1;
        *seen |= S_MESSAGE;
        if (*P->p == '{') {
            unsigned inner = 0;
            return walk_object(P, full_message_member, &inner);
        }
    }
    return skip_value(P);
}

static int
ignored_line(const unsigned char *doc, Py_ssize_t n)
{
    Parser P = {doc, doc + n, 0};
    unsigned seen = 0;
    skip_ws(&P);
    if (walk_object(&P, full_record_member, &seen) < 0)
        return -1;
    skip_ws(&P);
    return P.p == P.end ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Timestamps: `YYYY-MM-DDTHH:MM:SS.sssZ` to milliseconds since the epoch (what numpy's
 * datetime64[ms] gives for the same text); -1 for any other form (Python parses those).
 */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
digits_at(const unsigned char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int64_t
stamp_to_ms(const unsigned char *s, Py_ssize_t n)
{
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, se, ms;
    if (n != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != '.' || s[23] != 'Z')
        return -1;
    if (digits_at(s, 4, &y) < 0 || digits_at(s + 5, 2, &mo) < 0 || digits_at(s + 8, 2, &d) < 0 ||
        digits_at(s + 11, 2, &h) < 0 || digits_at(s + 14, 2, &mi) < 0 ||
        digits_at(s + 17, 2, &se) < 0 || digits_at(s + 20, 3, &ms) < 0)
        return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > month_days[mo - 1] + (mo == 2 && leap))
        return -1;
    return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)se * 1000 + ms;
}

/* ---------------------------------------------------------------------------------------------
 * The block scan.
 */
static Py_ssize_t
find(const unsigned char *b, Py_ssize_t from, Py_ssize_t to, const char *needle, Py_ssize_t n)
{
    /* first occurrence of needle entirely inside b[from:to], or -1 (bytes.find semantics);
     * the needles are `"key":`, whose second byte is far rarer than the quote */
    while (to - from >= n) {
        const unsigned char *q = memchr(b + from + 1, needle[1], (size_t)(to - from - n + 1));
        if (q == NULL)
            return -1;
        if (q[-1] == (unsigned char)needle[0] && memcmp(q + 1, needle + 2, (size_t)(n - 2)) == 0)
            return (q - 1) - b;
        from = q - b;
    }
    return -1;
}

/* Events of the block scan: '\n', and '"' followed by 'u' or 'c' (the first bytes of the marks
 * after their quote). event_mask gives them for b[i:i+16] as bits (needs b[i+16] readable). */
#ifdef LOGSCAN_SSE2
static inline unsigned
event_mask(const unsigned char *b, Py_ssize_t i)
{
    __m128i a = _mm_loadu_si128((const __m128i *)(b + i));
    __m128i n = _mm_loadu_si128((const __m128i *)(b + i + 1));
    __m128i hit = _mm_or_si128(
        _mm_cmpeq_epi8(a, _mm_set1_epi8('\n')),
        _mm_and_si128(_mm_cmpeq_epi8(a, _mm_set1_epi8('"')),
                      _mm_or_si128(_mm_cmpeq_epi8(n, _mm_set1_epi8('u')),
                                   _mm_cmpeq_epi8(n, _mm_set1_epi8('c')))));
    return (unsigned)_mm_movemask_epi8(hit);
}
#endif

static inline int
is_event(const unsigned char *b, Py_ssize_t i, Py_ssize_t end)
{
    return b[i] == '\n' || (b[i] == '"' && i + 1 < end && (b[i + 1] == 'u' || b[i + 1] == 'c'));
}

typedef struct {
    const unsigned char *b;
    PyObject *models; /* dict bytes -> int */
    Row *rows;
    Py_ssize_t n_rows, cap_rows, synthetic;
    unsigned char *doc;
    Py_ssize_t cap_doc;
    PyObject *odd, *bad, *stamps, *compact, *ledger;
    /* the last model seen and its code: most lines repeat it */
    unsigned char last_model[256];
    Py_ssize_t last_model_n;
    int32_t last_code;
} Scan;

static int
model_code(Scan *S, const Str *model, int32_t *code)
{
    if (S->last_model_n >= 0 && model->n == S->last_model_n &&
        memcmp(model->s, S->last_model, (size_t)model->n) == 0) {
        *code = S->last_code;
        return 0;
    }
    PyObject *name = PyBytes_FromStringAndSize((const char *)model->s, model->n);
    if (name == NULL)
        return -1;
    PyObject *value = PyDict_GetItemWithError(S->models, name); /* borrowed */
    long v;
    if (value != NULL) {
        v = PyLong_AsLong(value);
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(name);
            return -1;
        }
    }
    else {
        if (PyErr_Occurred()) {
            Py_DECREF(name);
            return -1;
        }
        v = (long)PyDict_Size(S->models);
        PyObject *num = PyLong_FromLong(v);
        if (num == NULL || PyDict_SetItem(S->models, name, num) < 0) {
            Py_XDECREF(num);
            Py_DECREF(name);
            return -1;
        }
        Py_DECREF(num);
    }
    Py_DECREF(name);
    if (v < 0 || v > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "models: codes must be small non-negative integers");
        return -1;
    }
    *code = (int32_t)v;
    if (model->n <= (Py_ssize_t)sizeof(S->last_model)) {
        memcpy(S->last_model, model->s, (size_t)model->n);
        S->last_model_n = model->n;
        S->last_code = *code;
    }
    return 0;
}

static inline int
has_byte(const unsigned char *b, Py_ssize_t from, Py_ssize_t to, unsigned char ch)
{
    return to > from && memchr(b + from, ch, (size_t)(to - from)) != NULL;
}

/* Whether `_usage_line` sends the line buf[start:e] (first mark at pos, first `"message":{`
 * at m >= 0, b[e - 1] == '}') straight to `_full_line`; mirrors its checks one by one. */
static int
routes_to_full(const unsigned char *b, Py_ssize_t start, Py_ssize_t e, Py_ssize_t pos,
               Py_ssize_t m)
{
    if (b[start] != '{' || has_byte(b, start + 1, m, '{'))
        return 1;
    Py_ssize_t c = find(b, m, pos, "\"content\":", 10);
    if (c < 0)
        c = pos;
    Py_ssize_t u_end = find(b, pos, e, "}},\"", 4) + 1;
    if (find(b, m, c, "\"model\":\"", 9) < 0 || find(b, m, c, "\"id\":\"", 6) < 0 || u_end == 0 ||
        has_byte(b, m + 11, c, '{') || find(b, u_end, e, "\"usage\":{", 9) >= 0)
        return 1;
    if (find(b, u_end, e, "\"timestamp\":\"", 13) < 0 ||
        find(b, u_end, e, "\"type\":\"assistant\"", 18) < 0)
        return 1;
    return 0;
}

/* A `<synthetic>` line on `_usage_line`'s positional path: counted (not priced) when that path
 * reads plain counts and the model `<synthetic>` by position; 1 when counted here. */
static int
synthetic_line(Scan *S, Py_ssize_t start, Py_ssize_t e, Py_ssize_t pos, Py_ssize_t m)
{
    const unsigned char *b = S->b;
    if (routes_to_full(b, start, e, pos, m))
        return 0;
    Py_ssize_t c = find(b, m, pos, "\"content\":", 10);
    if (c < 0)
        c = pos;
    Py_ssize_t u_end = find(b, pos, e, "}},\"", 4) + 1;
    Py_ssize_t mo = find(b, m, c, "\"model\":\"", 9);
    Line U;
    memset(&U, 0, sizeof(U));
    Parser P = {b + pos + 8, b + u_end, 0};
    if (walk_object(&P, usage_member, &U) < 0 || P.p != P.end ||
        (U.seen & (S_FRESH | S_OUTPUT)) != (S_FRESH | S_OUTPUT))
        return 0;
    const unsigned char *name = b + mo + 9;
    const unsigned char *close = memchr(name, '"', (size_t)(e - (mo + 9)));
    if (close == NULL || close - name != 11 || memcmp(name, "<synthetic>", 11) != 0)
        return 0;
    S->synthetic++;
    return 1;
}

static int
add_line(PyObject *list, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t pos, Py_ssize_t line_no)
{
    PyObject *item = Py_BuildValue("(nnnn)", start, stop, pos, line_no);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

static int
add_odd(Scan *S, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t pos, Py_ssize_t line_no)
{
    PyObject *item = Py_BuildValue("(nnnnn)", S->n_rows, start, stop, pos, line_no);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(S->odd, item);
    Py_DECREF(item);
    return rc;
}

/* One usage line: buf[start:stop] (stop is its '\n'), first mark at pos. 0, or -1 with an
 * exception set. */
static int
usage_line(Scan *S, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t pos, Py_ssize_t line_no)
{
    const unsigned char *b = S->b;
    Py_ssize_t e = b[stop - 1] == '\r' ? stop - 1 : stop;
    Py_ssize_t m = find(b, start, pos, "\"message\":{", 11);
    if (b[e - 1] != '}')
        return add_odd(S, start, stop, pos, line_no);
    if (m < 0) /* the pure path goes straight to `_full_line` */
        return ignored_line(b + start, e - start) == 0 ? 0 : add_odd(S, start, stop, pos, line_no);
    Py_ssize_t c = find(b, m, pos, "\"content\":", 10);
    Py_ssize_t head = c >= 0 ? c - start : e - start;
    Py_ssize_t tail = c >= 0 ? e - pos : 0;
    if (head + tail > S->cap_doc) {
        Py_ssize_t cap = (head + tail) * 2;
        unsigned char *doc = PyMem_Realloc(S->doc, (size_t)cap);
        if (doc == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        S->doc = doc;
        S->cap_doc = cap;
    }
    memcpy(S->doc, b + start, (size_t)head);
    if (tail)
        memcpy(S->doc + head, b + pos, (size_t)tail);
    Line L;
    int taken = parse_line(S->doc, head + tail, &L);
    if (taken < 0)
        return add_odd(S, start, stop, pos, line_no);
    if (taken == 0) {
        /* the per-line path (`_usage_line`) next: ignored when it goes straight to the full
         * parse and that finds no message.usage; anything else is Python's */
        if (routes_to_full(b, start, e, pos, m) && ignored_line(b + start, e - start) == 0)
            return 0;
        return add_odd(S, start, stop, pos, line_no);
    }
    if (taken == 2)
        return synthetic_line(S, start, e, pos, m) ? 0 : add_odd(S, start, stop, pos, line_no);
    /* the key: xxh3 of message.id, or of message.id NUL requestId */
    unsigned char joined[512];
    if (L.has_request && L.id.n + 1 + L.request.n > (Py_ssize_t)sizeof(joined))
        return add_odd(S, start, stop, pos, line_no);
    int32_t code;
    if (model_code(S, &L.model, &code) < 0)
        return -1;
    if (S->n_rows == S->cap_rows) {
        Py_ssize_t cap = S->cap_rows ? S->cap_rows * 2 : 256;
        Row *rows = PyMem_Realloc(S->rows, (size_t)cap * sizeof(Row));
        if (rows == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        S->rows = rows;
        S->cap_rows = cap;
    }
    Row *r = &S->rows[S->n_rows];
    memset(r, 0, sizeof(*r));
    uint64_t msg = XXH3_64bits(L.id.s, (size_t)L.id.n);
    uint64_t key = msg;
    if (L.has_request) {
        memcpy(joined, L.id.s, (size_t)L.id.n);
        joined[L.id.n] = 0;
        memcpy(joined + L.id.n + 1, L.request.s, (size_t)L.request.n);
        key = XXH3_64bits(joined, (size_t)(L.id.n + 1 + L.request.n));
    }
    int64_t ms = stamp_to_ms(L.stamp.s, L.stamp.n);
    if (ms < 0) {
        PyObject *item = Py_BuildValue("(ny#)", S->n_rows, (const char *)L.stamp.s, L.stamp.n);
        if (item == NULL)
            return -1;
        int rc = PyList_Append(S->stamps, item);
        Py_DECREF(item);
        if (rc < 0)
            return -1;
        ms = 0;
    }
    r->time = ms;
    r->fresh = L.fresh;
    r->w5 = L.w5;
    r->w1 = L.w1;
    r->read = L.read;
    r->output = L.output;
    r->key = (int64_t)(key ^ SIGN_FLIP);
    r->message = (int64_t)(msg ^ SIGN_FLIP);
    r->model = code;
    r->flags = (uint8_t)((L.sidechain ? FLAG_SIDECHAIN : 0) |
                         (L.has_speed ? FLAG_HAS_SPEED : 0) | (L.fast ? FLAG_FAST : 0));
    S->n_rows++;
    return 0;
}

static PyObject *
logscan_scan_block(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t end, line_base, begin = 0;
    PyObject *models, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*nnO!|n:scan_block", &view, &end, &line_base, &PyDict_Type,
                          &models, &begin))
        return NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    if (end < 0 || end > view.len || begin < 0 || begin > end) {
        PyErr_SetString(PyExc_ValueError, "scan_block: begin:end is outside the buffer");
        PyBuffer_Release(&view);
        return NULL;
    }
    if (end > begin && b[end - 1] != '\n') {
        PyErr_SetString(PyExc_ValueError, "scan_block: buf[begin:end] must end with a newline");
        PyBuffer_Release(&view);
        return NULL;
    }
    Scan S;
    memset(&S, 0, sizeof(S));
    S.b = b;
    S.models = models;
    S.last_model_n = -1;
    S.odd = PyList_New(0);
    S.bad = PyList_New(0);
    S.stamps = PyList_New(0);
    S.compact = PyList_New(0);
    S.ledger = PyList_New(0);
    if (S.odd == NULL || S.bad == NULL || S.stamps == NULL || S.compact == NULL ||
        S.ledger == NULL)
        goto done;

    Py_ssize_t i = begin, line_start = begin, line_no = line_base, lines = 0;
    Py_ssize_t usage_pos = -1, compact_pos = -1, ledger_pos = -1;
    while (i < end) {
        unsigned mask;
        Py_ssize_t base = i;
#ifdef LOGSCAN_SSE2
        if (i + 17 <= end) {
            mask = event_mask(b, i);
            i += 16;
        }
        else
#endif
        {
            mask = is_event(b, i, end) ? 1u : 0u;
            i += 1;
        }
        while (mask) {
            Py_ssize_t q = base + ctz32(mask);
            mask &= mask - 1;
            if (b[q] == '\n') {
                Py_ssize_t k = q;
                while (k > line_start && b[k - 1] == '\r')
                    k--;
                if (k > line_start && b[k - 1] != '}') {
                    PyObject *num = PyLong_FromSsize_t(line_no);
                    if (num == NULL || PyList_Append(S.bad, num) < 0) {
                        Py_XDECREF(num);
                        goto done;
                    }
                    Py_DECREF(num);
                }
                if (usage_pos >= 0 && usage_line(&S, line_start, q, usage_pos, line_no) < 0)
                    goto done;
                if (compact_pos >= 0 &&
                    add_line(S.compact, line_start, q, compact_pos, line_no) < 0)
                    goto done;
                if (ledger_pos >= 0 && add_line(S.ledger, line_start, q, ledger_pos, line_no) < 0)
                    goto done;
                usage_pos = compact_pos = ledger_pos = -1;
                line_start = q + 1;
                line_no++;
                lines++;
            }
            /* b[q] is '"' and q + 1 < end (b[end - 1] is '\n') */
            else if (b[q + 1] == 'u') {
                if (usage_pos < 0 && end - q >= 9 && memcmp(b + q, "\"usage\":{", 9) == 0)
                    usage_pos = q;
            }
            else if (compact_pos < 0 && end - q >= 18 &&
                     memcmp(b + q, "\"compact_boundary\"", 18) == 0)
                compact_pos = q;
            else if (ledger_pos < 0 && end - q >= 17 &&
                     memcmp(b + q, "\"cachescope.call\"", 17) == 0)
                ledger_pos = q;
        }
    }
    {
        PyObject *rows = PyBytes_FromStringAndSize((const char *)S.rows,
                                                   S.n_rows * (Py_ssize_t)sizeof(Row));
        if (rows == NULL)
            goto done;
        result = Py_BuildValue("(nNnnOOOOO)", lines, rows, S.n_rows, S.synthetic, S.odd, S.bad,
                               S.stamps, S.compact, S.ledger);
    }
done:
    PyBuffer_Release(&view);
    PyMem_Free(S.rows);
    PyMem_Free(S.doc);
    Py_XDECREF(S.odd);
    Py_XDECREF(S.bad);
    Py_XDECREF(S.stamps);
    Py_XDECREF(S.compact);
    Py_XDECREF(S.ledger);
    return result;
}

static PyObject *
logscan_stamp_ms(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "expected bytes, got %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    int64_t ms = stamp_to_ms((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg));
    if (ms < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(ms);
}

/* ---------------------------------------------------------------------------------------------
 * De-duplication (pure twin: the numpy path of `cachescope.logs._load.deduplicate`).
 *
 * dedup(key, total, flags, message, time) -> (survivors, duplicates, replays): int64 key,
 * total, message and time columns and the uint8 flags, as buffers of n rows. Within a key
 * the row with the largest total wins, ties going to the row with FLAG_HAS_SPEED, then to the
 * first row; among the winners, the earliest (time, row) of a message is primary and any other
 * winner of that message that has FLAG_SIDECHAIN is a replay. survivors: bytes of int64 row
 * numbers, ascending.
 */
typedef struct {
    int64_t *slot; /* row number + 1, 0 = empty */
    uint64_t mask;
} Table;

static int
table_init(Table *t, Py_ssize_t n)
{
    uint64_t size = 16;
    while (size < (uint64_t)n * 2)
        size <<= 1;
    t->slot = PyMem_Calloc((size_t)size, sizeof(int64_t));
    t->mask = size - 1;
    if (t->slot == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The slot for `value` in column `col`: holding a row with that value, or empty. The values are
 * xxh3 digests, so their low bits spread well; mixed once more for safety. */
static int64_t *
table_find(Table *t, const int64_t *col, int64_t value)
{
    uint64_t h = (uint64_t)value * 0x9E3779B97F4A7C15ULL;
    uint64_t i = (h ^ (h >> 29)) & t->mask;
    for (;;) {
        int64_t *slot = &t->slot[i];
        if (*slot == 0 || col[*slot - 1] == value)
            return slot;
        i = (i + 1) & t->mask;
    }
}

static int
column(Py_buffer *view, Py_ssize_t itemsize, Py_ssize_t *n, const char *name)
{
    if (view->len % itemsize != 0 || (*n >= 0 && view->len / itemsize != *n)) {
        PyErr_Format(PyExc_ValueError, "dedup: %s has the wrong length", name);
        return -1;
    }
    *n = view->len / itemsize;
    return 0;
}

static PyObject *
logscan_dedup(PyObject *self, PyObject *args)
{
    Py_buffer k, t, f, m, ti;
    PyObject *result = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*:dedup", &k, &t, &f, &m, &ti))
        return NULL;
    Py_ssize_t n = -1;
    Table by_key = {NULL, 0}, by_message = {NULL, 0};
    uint8_t *keep = NULL;
    if (column(&k, 8, &n, "key") < 0 || column(&t, 8, &n, "total") < 0 ||
        column(&f, 1, &n, "flags") < 0 || column(&m, 8, &n, "message") < 0 ||
        column(&ti, 8, &n, "time") < 0)
        goto done;
    const int64_t *key = k.buf, *total = t.buf, *message = m.buf, *time = ti.buf;
    const uint8_t *flags = f.buf;
    if (table_init(&by_key, n) < 0 || table_init(&by_message, n) < 0)
        goto done;
    keep = PyMem_Calloc((size_t)(n ? n : 1), 1);
    if (keep == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t *slot = table_find(&by_key, key, key[i]);
        if (*slot == 0) {
            *slot = i + 1;
            continue;
        }
        Py_ssize_t best = (Py_ssize_t)(*slot - 1);
        if (total[i] > total[best] ||
            (total[i] == total[best] && (flags[i] & FLAG_HAS_SPEED) &&
             !(flags[best] & FLAG_HAS_SPEED)))
            *slot = i + 1;
    }
    Py_ssize_t kept = 0;
    for (uint64_t s = 0; s <= by_key.mask; s++)
        if (by_key.slot[s]) {
            keep[by_key.slot[s] - 1] = 1;
            kept++;
        }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        int64_t *slot = table_find(&by_message, message, message[i]);
        if (*slot == 0 || time[i] < time[*slot - 1])
            *slot = i + 1;
    }
    Py_ssize_t count = 0, replays = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        if ((flags[i] & FLAG_SIDECHAIN) && *table_find(&by_message, message, message[i]) != i + 1)
            keep[i] = 0, replays++;
        else
            count++;
    }
    out = PyBytes_FromStringAndSize(NULL, count * 8);
    if (out == NULL)
        goto done;
    int64_t *survivors = (int64_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0, j = 0; i < n; i++)
        if (keep[i])
            survivors[j++] = i;
    result = Py_BuildValue("(Onn)", out, n - kept, replays);
done:
    Py_XDECREF(out);
    PyMem_Free(by_key.slot);
    PyMem_Free(by_message.slot);
    PyMem_Free(keep);
    PyBuffer_Release(&k);
    PyBuffer_Release(&t);
    PyBuffer_Release(&f);
    PyBuffer_Release(&m);
    PyBuffer_Release(&ti);
    return result;
}

static PyMethodDef logscan_methods[] = {
    {"dedup", logscan_dedup, METH_VARARGS,
     "dedup(key, total, flags, message, time) -> (survivors, duplicates, replays): the rows "
     "`cachescope.logs._load.deduplicate` keeps, as bytes of int64 row numbers."},
    {"scan_block", logscan_scan_block, METH_VARARGS,
     "scan_block(buf, end, line_base, models, begin=0) -> (lines, rows, taken, synthetic, odd, bad, "
     "stamps, compact, ledger): the usual usage lines of buf[begin:end] as packed rows."},
    {"stamp_ms", logscan_stamp_ms, METH_O,
     "stamp_ms(b'YYYY-MM-DDTHH:MM:SS.sssZ') -> milliseconds since the epoch, or None for any "
     "other form."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef logscan_module = {
    PyModuleDef_HEAD_INIT, "cachescope._native.logscan",
    "Byte-level scan of Claude Code transcripts (pure twin: cachescope.logs._scan).", -1,
    logscan_methods,
};

PyMODINIT_FUNC
PyInit_logscan(void)
{
    init_special();
    PyObject *module = PyModule_Create(&logscan_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddStringConstant(module, "SOURCE_HASH", CACHESCOPE_SOURCE_HASH) < 0 ||
        PyModule_AddIntConstant(module, "ROW_SIZE", (long)sizeof(Row)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
