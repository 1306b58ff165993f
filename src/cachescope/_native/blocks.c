/* cachescope._native.blocks: the per-call walk of `_blocks.flatten_units`, in C.
 *
 * `compare(a, b)` flattens both requests on every call, and every byte of both is hashed each
 * time: a message's blocks are reused from the memo only under a key computed from its content.
 * In Python that walk costs ~2 µs per message; here it is one pass over the message's values.
 *
 * Functions (pure-Python twins in `cachescope._blocks`, held to identical results by tests):
 *
 *   xxh3_64(data, seed=0) -> int
 *       xxh3-64 of a str's UTF-8 ("surrogatepass") or of bytes. Twin: `_xxh3_py`.
 *   value_key(value) -> int | None
 *       The content key of a plain JSON value (exact dict / list / str / int / float / bool /
 *       None): the xxh3 of a tagged encoding in which each long string enters by its text
 *       hash (`texthash.h`: AES-based where the CPU has AES, else xxh3; `TEXT_HASH` names it).
 *       None for anything else (subclasses, tuples, SDK objects, ints beyond 64 bits, nesting
 *       deeper than MAX_DEPTH). Twin: `_value_key_py`.
 *   message_key(message, m, start) -> int | None
 *       The memo key of message `m` starting at block `start`. Twin: `_message_key_py`.
 *   flatten_messages(messages, memo, head, head_tokens, slow[, prior_keys, prior_entries])
 *           -> (blocks, units, marks, tokens, flags, keys, entries)
 *       For each message: its `message_key`; the entry of an earlier walk's message with the
 *       same key at the same place, or a memo hit, gives the message's entry, otherwise
 *       `slow(message, m, start, key_or_None)` returns it. Twin: the Python loop in
 *       `flatten_units` (see the comment above the function below).
 *
 * Message keys and value keys are encoded by a fast path for the shapes agents send (exact dict,
 * list, compact str; see "the common shapes, fast" below) and by the general code otherwise; both
 * give the same bytes.
 *
 * Long inputs are hashed with AVX2 when the CPU has it (runtime check; the result is the same
 * xxh3 as the scalar/SSE2 code, which is used otherwise). Strings are read in place: a key hashes
 * the str's own storage (ASCII/latin-1, UCS-2 or UCS-4 units, tagged with the width, which is
 * canonical in CPython), so no UTF-8 copy is made.
 */
/* as in CPython's own release builds of extension modules (sysconfig CFLAGS): the header's
 * inline accessors (PyTuple_GET_ITEM, PyUnicode_DATA, ...) without their debug assertions */
#ifndef NDEBUG
#define NDEBUG
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* CPython 3.11's dict layout, to read a dict's items in place (what PyDict_Next does, without
 * a call per item); other versions use PyDict_Next. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && !defined(CS_NO_DICT_LAYOUT) && \
    defined(__has_include)
#if __has_include("internal/pycore_dict.h") /* installed with 3.11's headers; else PyDict_Next */
#define CS_DICT_LAYOUT 1
#endif
#endif
#ifdef CS_DICT_LAYOUT
#define Py_BUILD_CORE 1
#include "internal/pycore_dict.h"
#undef Py_BUILD_CORE
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CS_AVX2 1
#define XXH_DISPATCH_AVX2 1
#define XXH_TARGET_AVX2 __attribute__((__target__("avx2")))
/* the AVX2 code loads the accumulator and secret 32-byte aligned */
#define XXH_ACC_ALIGN 64
#include <immintrin.h>
#endif

#define XXH_INLINE_ALL
#include "xxhash.h"
#include "texthash.h"

#define MAX_DEPTH 200
#define INLINE_BYTES 32

/* ---- hashing ------------------------------------------------------------------------------ */

#ifdef CS_AVX2
static int have_avx2 = 0;

XXH_TARGET_AVX2 static XXH64_hash_t
hash_long_avx2(const void *data, size_t size, XXH64_hash_t seed)
{
    if (seed == 0)
        return XXH3_hashLong_64b_internal(data, size, XXH3_kSecret, sizeof(XXH3_kSecret),
                                          XXH3_accumulate_avx2, XXH3_scrambleAcc_avx2);
    {
        XXH_ALIGN(64) xxh_u8 secret[XXH_SECRET_DEFAULT_SIZE];
        XXH3_initCustomSecret_avx2(secret, seed);
        return XXH3_hashLong_64b_internal(data, size, secret, sizeof(secret),
                                          XXH3_accumulate_avx2, XXH3_scrambleAcc_avx2);
    }
}
#endif

static XXH64_hash_t
cs_hash(const void *data, size_t size, XXH64_hash_t seed)
{
#ifdef CS_AVX2
    if (size > XXH3_MIDSIZE_MAX && have_avx2)
        return hash_long_avx2(data, size, seed);
#endif
    return XXH3_64bits_withSeed(data, size, seed);
}

/* The text hash of a long string in a key (`cs_text_hash`, with this module's AVX2 xxh3 when
 * the CPU has no AES), out of line so that `put_str` stays small enough to inline. */
#if defined(__GNUC__) || defined(__clang__)
#define CS_NOINLINE __attribute__((noinline))
#else
#define CS_NOINLINE
#endif

static CS_NOINLINE unsigned long long
key_text_hash(const void *data, size_t size)
{
    if (cs_th_path == CS_TH_XXH3)
        return cs_hash(data, size, 0); /* the same values as XXH3_64bits, AVX2 when it can */
    return cs_text_hash(data, size);
}

/* cs_hash(data, size, 0), with the seed known: the short and mid-size paths fold it away */
static XXH64_hash_t
cs_hash0(const void *data, size_t size)
{
    if (size <= 16)
        return XXH3_len_0to16_64b((const xxh_u8 *)data, size, XXH3_kSecret, 0);
    if (size <= 128)
        return XXH3_len_17to128_64b((const xxh_u8 *)data, size, XXH3_kSecret,
                                    sizeof(XXH3_kSecret), 0);
    if (size <= XXH3_MIDSIZE_MAX)
        return XXH3_len_129to240_64b((const xxh_u8 *)data, size, XXH3_kSecret,
                                     sizeof(XXH3_kSecret), 0);
    return cs_hash(data, size, 0);
}

/* ---- the key encoding ----------------------------------------------------------------------- */

/* Every put below writes at most ROOM bytes, and each checks for that much room first. */
#define ROOM (8 + INLINE_BYTES)

typedef struct {
    unsigned char *data;
    size_t len;
    size_t cap;
    unsigned char local[2048];
} Buf;

static void
buf_init(Buf *b)
{
    b->data = b->local;
    b->len = 0;
    b->cap = sizeof(b->local);
}

static void
buf_free(Buf *b)
{
    if (b->data != b->local)
        PyMem_Free(b->data);
    b->data = b->local;
    b->cap = sizeof(b->local);
    b->len = 0;
}

static int
buf_grow(Buf *b, size_t need)
{
    size_t cap = b->cap * 2;
    unsigned char *data;
    while (cap < need)
        cap *= 2;
    if (b->data == b->local) {
        data = PyMem_Malloc(cap);
        if (data != NULL)
            memcpy(data, b->local, b->len);
    }
    else {
        data = PyMem_Realloc(b->data, cap);
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

/* Make room for ROOM more bytes; returns where they go, or NULL with MemoryError set. */
static inline unsigned char *
buf_room(Buf *b)
{
    if (b->cap - b->len < ROOM && buf_grow(b, b->len + ROOM) < 0)
        return NULL;
    return b->data + b->len;
}

/* a 64-bit number, little-endian (one store where the compiler can) */
static inline void
write_u64(unsigned char *out, unsigned long long value)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(out, &value, 8);
#else
    int i;
    for (i = 0; i < 8; i++)
        out[i] = (unsigned char)(value >> (8 * i));
#endif
}

/* a tag byte and a 64-bit little-endian number (9 bytes) */
static inline int
put_tagged(Buf *b, unsigned char tag, unsigned long long value)
{
    unsigned char *out = buf_room(b);
    if (out == NULL)
        return -1;
    out[0] = tag;
    write_u64(out + 1, value);
    b->len += 9;
    return 0;
}

/* a tag byte and a size below 2**56, in one 64-bit word (the tag in the low byte) */
static inline int
put_sized(Buf *b, unsigned char tag, size_t size)
{
    unsigned char *out = buf_room(b);
    if (out == NULL)
        return -1;
    write_u64(out, (unsigned long long)tag | ((unsigned long long)size << 8));
    b->len += 8;
    return 0;
}

static inline int
put_tag(Buf *b, unsigned char tag)
{
    unsigned char *out = buf_room(b);
    if (out == NULL)
        return -1;
    out[0] = tag;
    b->len += 1;
    return 0;
}

/* A str of at most INLINE_BYTES bytes of storage: one byte, 0x80 + 33 * (width / 2) + the
 * byte size (128 to 226; every other tag is ASCII), then the raw storage (1, 2 or 4 bytes per
 * code point: the width is canonical in CPython). A longer one: one word of 'S', the width and
 * the length in code points (tag in the low byte, width in the next, length above), then the
 * text hash of its storage (`cs_text_hash`: AES-based where the CPU has AES, else xxh3; keys
 * never leave the process). Returns 1, or -1 with an exception set. */
static inline int
put_str(Buf *b, PyObject *text)
{
    size_t length, size;
    unsigned int kind;
    const unsigned char *data;
    unsigned char *out, *to;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return -1;
#endif
    out = buf_room(b);
    if (out == NULL)
        return -1;
    length = (size_t)PyUnicode_GET_LENGTH(text);
    kind = (unsigned int)PyUnicode_KIND(text);
    data = (const unsigned char *)PyUnicode_DATA(text);
    size = length * kind;
    if (size > INLINE_BYTES) {
        write_u64(out, (unsigned long long)'S' | ((unsigned long long)kind << 8) |
                           ((unsigned long long)length << 16));
        write_u64(out + 8, key_text_hash(data, size));
        b->len += 16;
        return 1;
    }
    out[0] = (unsigned char)(0x80 + 33 * (kind >> 1) + size);
    to = out + 1;
    /* fixed-size, possibly overlapping copies (each a single move), never past `size` */
    if (size >= 16) {
        memcpy(to, data, 16);
        memcpy(to + size - 16, data + size - 16, 16);
    }
    else if (size >= 8) {
        memcpy(to, data, 8);
        memcpy(to + size - 8, data + size - 8, 8);
    }
    else if (size >= 4) {
        memcpy(to, data, 4);
        memcpy(to + size - 4, data + size - 4, 4);
    }
    else if (size > 0) {
        /* 1 to 3 bytes: first, middle and last (they overlap when shorter) */
        to[0] = data[0];
        to[size >> 1] = data[size >> 1];
        to[size - 1] = data[size - 1];
    }
    b->len += 1 + size;
    return 1;
}

/* Returns 1 when encoded, 0 when the value is not plain JSON (no exception), -1 on error. */
static int
put_value(Buf *b, PyObject *value, int depth)
{
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyUnicode_Type)
        return put_str(b, value);
    if (type == &PyDict_Type) {
        Py_ssize_t pos = 0, left = PyDict_GET_SIZE(value);
        PyObject *key, *item;
        if (depth >= MAX_DEPTH)
            return 0;
        if (put_sized(b, 'D', (size_t)left) < 0)
            return -1;
#ifdef CS_DICT_LAYOUT
        {
            /* the items in place, in PyDict_Next's order (entries with a value) */
            PyDictObject *dict = (PyDictObject *)value;
            PyDictKeysObject *keys = dict->ma_keys;
            if (dict->ma_values == NULL && keys->dk_kind == DICT_KEYS_UNICODE) {
                PyDictUnicodeEntry *entry = DK_UNICODE_ENTRIES(keys);
                PyDictUnicodeEntry *end = entry + keys->dk_nentries;
                for (; left > 0 && entry < end; entry++) {
                    int done;
                    item = entry->me_value;
                    if (item == NULL)
                        continue;
                    left--;
                    if (put_str(b, entry->me_key) < 0)
                        return -1;
                    done = Py_TYPE(item) == &PyUnicode_Type ? put_str(b, item)
                                                             : put_value(b, item, depth + 1);
                    if (done != 1)
                        return done;
                }
                return 1;
            }
        }
#endif
        /* No Python code runs while encoding, so the dict cannot change under the walk: it
         * ends after its size in items (no last call to find the end). */
        for (; left > 0 && PyDict_Next(value, &pos, &key, &item); left--) {
            int done;
            if (Py_TYPE(key) != &PyUnicode_Type)
                return 0;
            if (put_str(b, key) < 0)
                return -1;
            done = Py_TYPE(item) == &PyUnicode_Type ? put_str(b, item)
                                                     : put_value(b, item, depth + 1);
            if (done != 1)
                return done;
        }
        return 1;
    }
    if (type == &PyList_Type) {
        Py_ssize_t i, n = PyList_GET_SIZE(value);
        if (depth >= MAX_DEPTH)
            return 0;
        if (put_sized(b, 'L', (size_t)n) < 0)
            return -1;
        for (i = 0; i < n; i++) {
            int done = put_value(b, PyList_GET_ITEM(value, i), depth + 1);
            if (done != 1)
                return done;
        }
        return 1;
    }
    if (type == &PyLong_Type) {
        int overflow = 0;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow)
            return 0;
        if (number == -1 && PyErr_Occurred())
            return -1;
        if (put_tagged(b, 'I', (unsigned long long)number) < 0)
            return -1;
        return 1;
    }
    if (type == &PyFloat_Type) {
        double number = PyFloat_AS_DOUBLE(value);
        unsigned long long bits;
        memcpy(&bits, &number, sizeof(bits));
        if (put_tagged(b, 'R', bits) < 0)
            return -1;
        return 1;
    }
    if (value == Py_True)
        return put_tag(b, 'T') < 0 ? -1 : 1;
    if (value == Py_False)
        return put_tag(b, 'F') < 0 ? -1 : 1;
    if (value == Py_None)
        return put_tag(b, 'N') < 0 ? -1 : 1;
    return 0;
}

static PyObject *str_role;
static PyObject *str_content;
static PyObject *str_layer_names;
/* `cachescope._blocks.LayeredBlocks`, set by `set_layered` when _blocks is imported */
static PyObject *layered_type;
static PyObject *str_tokens;
static PyObject *str_cache_control;
static PyObject *str_ttl;

/* 1 when the exact str `key` equals the ASCII str `name` (interned literals usually are the
 * same object; keys parsed from JSON are equal copies), else 0; -1 with an exception set */
static inline int
is_name(PyObject *key, PyObject *name)
{
    Py_ssize_t length;
    if (key == name)
        return 1;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(key) < 0)
        return -1;
#endif
    length = PyUnicode_GET_LENGTH(name);
    return PyUnicode_IS_ASCII(key) && PyUnicode_GET_LENGTH(key) == length &&
           memcmp(PyUnicode_DATA(key), PyUnicode_DATA(name), (size_t)length) == 0;
}

/* A message's content that is exactly a `LayeredBlocks` (a list that remembers the prompt layer
 * of each block, as `Prompt.render` returns): 'Y' and the size, the items, then the
 * `layer_names` list — so equal keys mean equal blocks *and* equal layers. The class has no
 * descriptors or __getattr__, so reading the attribute (from the instance dict) runs no Python
 * code. Returns as put_value. */
static int
put_layered(Buf *b, PyObject *content)
{
    Py_ssize_t i, n = PyList_GET_SIZE(content);
    PyObject *names;
    int done;
    if (put_sized(b, 'Y', (size_t)n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        done = put_value(b, PyList_GET_ITEM(content, i), 2);
        if (done != 1)
            return done;
    }
    names = PyObject_GetAttr(content, str_layer_names);
    if (names == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    done = Py_TYPE(names) == &PyList_Type ? put_value(b, names, 2) : 0;
    Py_DECREF(names);
    return done;
}

/* ---- the common shapes, fast -------------------------------------------------------------- */

#if defined(__GNUC__) || defined(__clang__)
#define CS_LIKELY(x) __builtin_expect(!!(x), 1)
#define CS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define CS_ALWAYS_INLINE inline
#define CS_LIKELY(x) (x)
#define CS_UNLIKELY(x) (x)
#endif

#if defined(CS_DICT_LAYOUT) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The same bytes as put_value / put_str / message_key_of, for the shapes agents send: exact str
 * (compact), exact dict (3.11's combined str-keyed table), exact list, exact int within 64 bits,
 * float, bool and None. Each writes through a local pointer `p` (not through the Buf, whose fields
 * a char store could alias) and checks the room once per container, and returns where it stopped;
 * NULL for anything else (a legacy str, a split or general-kind dict, a subclass, an int beyond
 * 64 bits, the depth limit, a LayeredBlocks content, a buffer too small): the caller then encodes
 * the whole message (or value) again with the general code, which gives the same bytes, the same
 * "not keyable", or the error. Nothing here can fail or raise. Held to the twins by
 * tests/foundation/test_native_encoder.py. Bytes past the returned end may have
 * been written (within the room checked); the next put overwrites them. */
#define CS_FAST 1

/* The `size` <= INLINE_BYTES bytes of a compact str's storage `data`, in fixed-size moves that
 * never read outside the str object: its storage follows its header (48 bytes or more) in the
 * same object, so a str of at most 8 bytes is one 8-byte load that ends at its last byte (and
 * starts in the header when shorter), shifted down over the header's bytes (little-endian).
 * Writes up to 8 bytes past `to + size` when `size` < 8. */
static inline void
copy_upto8(unsigned char *to, const unsigned char *data, size_t size)
{
    unsigned long long word;
    memcpy(&word, data + size - 8, 8);
    word >>= (0 - size * 8) & 63; /* (8 - size) bytes; size 0: the header's, past the end */
    memcpy(to, &word, 8);
}

static inline void
copy_small(unsigned char *to, const unsigned char *data, size_t size)
{
    if (size <= 8)
        copy_upto8(to, data, size);
    else if (size <= 16) {
        memcpy(to, data, 8);
        memcpy(to + size - 8, data + size - 8, 8);
    }
    else {
        memcpy(to, data, 16);
        memcpy(to + size - 16, data + size - 16, 16);
    }
}

/* A str's state bits as one word, and the bits of a compact ASCII str in it (a constant the
 * compiler folds): one test for both, where PyUnicode_IS_COMPACT_ASCII tests one bit, then the
 * other. */
static inline unsigned int
str_state(PyObject *text)
{
    unsigned int word;
    memcpy(&word, &((PyASCIIObject *)text)->state, sizeof(word));
    return word;
}

static inline unsigned int
state_bits(unsigned int compact, unsigned int ascii)
{
    PyASCIIObject probe;
    unsigned int word;
    memset(&probe, 0, sizeof(probe));
    probe.state.compact = compact;
    probe.state.ascii = ascii;
    memcpy(&word, &probe.state, sizeof(word));
    return word;
}
#define COMPACT (state_bits(1, 0))
#define COMPACT_ASCII (state_bits(1, 1))

/* two compact ASCII str are equal */
static inline int
same_ascii(PyObject *a, PyObject *b)
{
    size_t length = (size_t)((PyASCIIObject *)a)->length;
    return length == (size_t)((PyASCIIObject *)b)->length &&
           memcmp((PyASCIIObject *)a + 1, (PyASCIIObject *)b + 1, length) == 0;
}

/* put_str of an exact str; needs ROOM bytes at p. NULL for a str that is not compact. */
static inline unsigned char *
fast_str(unsigned char *p, PyObject *text)
{
    size_t length = (size_t)((PyASCIIObject *)text)->length, size;
    const unsigned char *data;
    unsigned int kind;
    if (CS_LIKELY((str_state(text) & COMPACT_ASCII) == COMPACT_ASCII)) {
        data = (const unsigned char *)((PyASCIIObject *)text + 1);
        if (CS_LIKELY(length <= 8)) { /* most names and roles: one test */
            p[0] = (unsigned char)(0x80 + length);
            copy_upto8(p + 1, data, length);
            return p + 1 + length;
        }
        if (length <= 16) {
            p[0] = (unsigned char)(0x80 + length);
            memcpy(p + 1, data, 8);
            memcpy(p + 1 + length - 8, data + length - 8, 8);
            return p + 1 + length;
        }
        if (length <= INLINE_BYTES) {
            p[0] = (unsigned char)(0x80 + length);
            memcpy(p + 1, data, 16);
            memcpy(p + 1 + length - 16, data + length - 16, 16);
            return p + 1 + length;
        }
        kind = 1;
        size = length;
    }
    else {
        if (!PyUnicode_IS_COMPACT(text) || !PyUnicode_IS_READY(text))
            return NULL;
        kind = (unsigned int)PyUnicode_KIND(text);
        data = (const unsigned char *)((PyCompactUnicodeObject *)text + 1);
        size = length * kind;
        if (size <= INLINE_BYTES) {
            p[0] = (unsigned char)(0x80 + 33 * (kind >> 1) + size);
            copy_small(p + 1, data, size);
            return p + 1 + size;
        }
    }
    write_u64(p, (unsigned long long)'S' | ((unsigned long long)kind << 8) |
                     ((unsigned long long)length << 16));
    write_u64(p + 8, key_text_hash(data, size));
    return p + 16;
}

static unsigned char *fast_value(unsigned char *p, unsigned char *end, PyObject *value,
                                 int depth);

/* put_value of an exact dict at `depth` */
static inline unsigned char *
fast_dict(unsigned char *p, unsigned char *end, PyObject *value, int depth)
{
    PyDictObject *dict = (PyDictObject *)value;
    PyDictKeysObject *keys = dict->ma_keys;
    Py_ssize_t used = dict->ma_used;
    PyDictUnicodeEntry *entry, *stop;
    /* a key and a str value take at most 2 * ROOM bytes (a dict cannot hold enough items for
     * the product to overflow) */
    if (CS_UNLIKELY(depth >= MAX_DEPTH || dict->ma_values != NULL ||
                    keys->dk_kind != DICT_KEYS_UNICODE ||
                    (size_t)(end - p) < 8 + (size_t)used * (2 * ROOM)))
        return NULL;
    write_u64(p, (unsigned long long)'D' | ((unsigned long long)used << 8));
    p += 8;
    entry = DK_UNICODE_ENTRIES(keys);
    stop = entry + keys->dk_nentries;
    /* every entry with a value, in order: the `used` items (PyDict_Next's order) */
    for (; entry < stop; entry++) {
        PyObject *item = entry->me_value;
        if (item == NULL)
            continue;
        p = fast_str(p, entry->me_key); /* the keys of this kind are exact str */
        if (CS_UNLIKELY(p == NULL))
            return NULL;
        if (CS_LIKELY(Py_TYPE(item) == &PyUnicode_Type)) {
            p = fast_str(p, item);
            if (CS_UNLIKELY(p == NULL))
                return NULL;
        }
        else {
            p = fast_value(p, end, item, depth + 1);
            /* room again for the items left (at most one per entry left) */
            if (p == NULL || (size_t)(end - p) < (size_t)(stop - entry) * (2 * ROOM))
                return NULL;
        }
    }
    return p;
}

/* put_value of an exact list at `depth` */
static inline unsigned char *
fast_list(unsigned char *p, unsigned char *end, PyObject *value, int depth)
{
    Py_ssize_t n = PyList_GET_SIZE(value);
    PyObject **items = ((PyListObject *)value)->ob_item, **last = items + n;
    if (CS_UNLIKELY(depth >= MAX_DEPTH || end - p < ROOM))
        return NULL;
    write_u64(p, (unsigned long long)'L' | ((unsigned long long)n << 8));
    p += 8;
    /* no Python code runs here: the list cannot change under the walk */
    for (; items < last; items++) {
        PyObject *item = *items;
        if (CS_LIKELY(Py_TYPE(item) == &PyDict_Type))
            p = fast_dict(p, end, item, depth + 1);
        else
            p = fast_value(p, end, item, depth + 1);
        if (CS_UNLIKELY(p == NULL))
            return NULL;
    }
    return p;
}

/* put_value of any value at `depth` */
static unsigned char *
fast_value(unsigned char *p, unsigned char *end, PyObject *value, int depth)
{
    PyTypeObject *type = Py_TYPE(value);
    if (end - p < ROOM)
        return NULL;
    if (type == &PyUnicode_Type)
        return fast_str(p, value);
    if (type == &PyDict_Type)
        return fast_dict(p, end, value, depth);
    if (type == &PyList_Type)
        return fast_list(p, end, value, depth);
    if (type == &PyLong_Type) {
        int overflow = 0;
        /* of an exact int: no error, only the overflow flag */
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (number == -1 && PyErr_Occurred()))
            return NULL;
        p[0] = 'I';
        write_u64(p + 1, (unsigned long long)number);
        return p + 9;
    }
    if (type == &PyFloat_Type) {
        double number = PyFloat_AS_DOUBLE(value);
        unsigned long long bits;
        memcpy(&bits, &number, sizeof(bits));
        p[0] = 'R';
        write_u64(p + 1, bits);
        return p + 9;
    }
    if (value == Py_True)
        p[0] = 'T';
    else if (value == Py_False)
        p[0] = 'F';
    else if (value == Py_None)
        p[0] = 'N';
    else
        return NULL;
    return p + 1;
}

/* message_key_of's bytes for a message with this role and content (NULL when missing), into
 * `data` (at least 2048 bytes, up to `end`) */
static inline unsigned char *
fast_message(unsigned char *data, unsigned char *end, PyObject *role, PyObject *content,
             Py_ssize_t m, Py_ssize_t start)
{
    unsigned char *p = data + 18;
    data[0] = 'M';
    write_u64(data + 1, (unsigned long long)m);
    data[9] = 'M';
    write_u64(data + 10, (unsigned long long)start);
    /* the header and a role str or tag fit in the 2048 bytes */
    if (role == NULL)
        *p++ = '-';
    else if (CS_LIKELY(Py_TYPE(role) == &PyUnicode_Type)) {
        p = fast_str(p, role);
        if (CS_UNLIKELY(p == NULL))
            return NULL;
    }
    else
        return NULL;
    if (content == NULL) {
        *p++ = '-';
        return p;
    }
    if (CS_LIKELY(Py_TYPE(content) == &PyList_Type))
        return fast_list(p, end, content, 1);
    if (Py_TYPE(content) == &PyUnicode_Type)
        return fast_str(p, content);
    return fast_value(p, end, content, 1); /* NULL for a LayeredBlocks (a list subclass) */
}
#endif

/* The key of message `m` starting at block `start`: 'M', m, start, then the role and the
 * content (each '-' when missing). Other keys of the message do not make blocks, so they are
 * left out. Returns 1 and sets *key, 0 when not keyable, -1 on error. (message_key_of below
 * tries the fast encoder first, then this.) */
static int
message_key_general(Buf *b, PyObject *message, Py_ssize_t m, Py_ssize_t start,
                    unsigned long long *key)
{
    PyObject *role = NULL, *content = NULL, *name, *value;
    Py_ssize_t pos = 0, left;
    int done;
    if (Py_TYPE(message) != &PyDict_Type)
        return 0;
    left = PyDict_GET_SIZE(message);
#ifdef CS_DICT_LAYOUT
    {
        /* the items in place, in PyDict_Next's order; the keys of this kind are exact str */
        PyDictObject *dict = (PyDictObject *)message;
        PyDictKeysObject *keys = dict->ma_keys;
        if (dict->ma_values == NULL && keys->dk_kind == DICT_KEYS_UNICODE) {
            PyDictUnicodeEntry *entry = DK_UNICODE_ENTRIES(keys);
            PyDictUnicodeEntry *end = entry + keys->dk_nentries;
            for (; left > 0 && entry < end; entry++) {
                value = entry->me_value;
                if (value == NULL)
                    continue;
                left--;
                name = entry->me_key;
                if (role == NULL && (done = is_name(name, str_role)) != 0) {
                    if (done < 0)
                        return -1;
                    role = value;
                }
                else if (content == NULL && (done = is_name(name, str_content)) != 0) {
                    if (done < 0)
                        return -1;
                    content = value;
                }
            }
            goto found;
        }
    }
#endif
    /* one pass over the (usually two) items instead of two lookups; no Python code runs, so
     * the dict ends after its size in items */
    for (; left > 0 && PyDict_Next(message, &pos, &name, &value); left--) {
        /* another key type could still equal "role" for `message.get`: not keyable */
        if (Py_TYPE(name) != &PyUnicode_Type)
            return 0;
        if (role == NULL && (done = is_name(name, str_role)) != 0) {
            if (done < 0)
                return -1;
            role = value;
        }
        else if (content == NULL && (done = is_name(name, str_content)) != 0) {
            if (done < 0)
                return -1;
            content = value;
        }
    }
#ifdef CS_DICT_LAYOUT
found:
#endif
    /* 'M', m, 'M', start: a buffer always has room for them (its capacity never drops below
     * the 2048 bytes of `local`) */
    b->len = 18;
    b->data[0] = 'M';
    write_u64(b->data + 1, (unsigned long long)m);
    b->data[9] = 'M';
    write_u64(b->data + 10, (unsigned long long)start);
    if (role == NULL) {
        if (put_tag(b, '-') < 0)
            return -1;
    }
    else if ((done = Py_TYPE(role) == &PyUnicode_Type ? put_str(b, role)
                                                       : put_value(b, role, 1)) != 1)
        return done;
    if (content == NULL) {
        if (put_tag(b, '-') < 0)
            return -1;
    }
    else if ((done = layered_type != NULL && (PyObject *)Py_TYPE(content) == layered_type
                         ? put_layered(b, content)
                         : put_value(b, content, 1)) != 1)
        return done;
    *key = cs_hash0(b->data, b->len);
    return 1;
}

/* message_key_general's result: through the fast encoder when the message is an exact dict in
 * the combined str-keyed layout and its role and content are of the common shapes */
static CS_ALWAYS_INLINE int
message_key_of(Buf *b, PyObject *message, Py_ssize_t m, Py_ssize_t start,
               unsigned long long *key)
{
#ifdef CS_FAST
    if (CS_LIKELY(Py_TYPE(message) == &PyDict_Type)) {
        PyDictObject *dict = (PyDictObject *)message;
        PyDictKeysObject *keys = dict->ma_keys;
        if (CS_LIKELY(dict->ma_values == NULL && keys->dk_kind == DICT_KEYS_UNICODE)) {
            PyDictUnicodeEntry *entry = DK_UNICODE_ENTRIES(keys), *stop;
            PyObject *role = NULL, *content = NULL, *name_role = str_role,
                     *name_content = str_content;
            unsigned char *p;
            /* the names by identity (literals and most parsers give the interned str), else
             * by value; a dict holds each name once, so the first match is the only one */
            if (CS_LIKELY(keys->dk_nentries == 2)) {
                /* {"role": ..., "content": ...} in either order (an entry deleted since has no
                 * value: the name is missing, as in the loop) */
                PyObject *first = entry[0].me_key, *second = entry[1].me_key;
                if (first == name_role && second == name_content) {
                    role = entry[0].me_value;
                    content = entry[1].me_value;
                    goto found;
                }
                if (first == name_content && second == name_role) {
                    content = entry[0].me_value;
                    role = entry[1].me_value;
                    goto found;
                }
            }
            for (stop = entry + keys->dk_nentries; entry < stop; entry++) {
                PyObject *name = entry->me_key, *value = entry->me_value;
                if (value == NULL)
                    continue;
                if (name == name_role)
                    role = value;
                else if (name == name_content)
                    content = value;
                else if ((str_state(name) & COMPACT_ASCII) == COMPACT_ASCII) {
                    if (role == NULL && same_ascii(name, name_role))
                        role = value;
                    else if (content == NULL && same_ascii(name, name_content))
                        content = value;
                }
                else if (!(str_state(name) & COMPACT))
                    goto general; /* a legacy str: is_name readies it */
            }
        found:
            p = fast_message(b->data, b->data + b->cap, role, content, m, start);
            if (CS_LIKELY(p != NULL)) {
                *key = cs_hash0(b->data, (size_t)(p - b->data));
                return 1;
            }
        }
    }
general:
#endif
    return message_key_general(b, message, m, start, key);
}

/* ---- module functions ------------------------------------------------------------------------- */

static PyObject *
blocks_xxh3_64(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"data", "seed", NULL};
    PyObject *data, *seed_obj = NULL;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O!:xxh3_64", names, &data, &PyLong_Type,
                                     &seed_obj))
        return NULL;
    if (seed_obj != NULL) { /* 0 <= seed < 2**64, as xxhash checks */
        seed = PyLong_AsUnsignedLongLong(seed_obj);
        if (seed == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
    }
    if (PyUnicode_Check(data)) {
        PyObject *encoded;
        XXH64_hash_t digest;
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(data) < 0)
            return NULL;
#endif
        if (PyUnicode_IS_ASCII(data))
            return PyLong_FromUnsignedLongLong(cs_hash(
                PyUnicode_DATA(data), (size_t)PyUnicode_GET_LENGTH(data), (XXH64_hash_t)seed));
        /* a temporary UTF-8 copy, not PyUnicode_AsUTF8's cached one (it would stay with the
         * str for its lifetime, and refuses lone surrogates) */
        encoded = PyUnicode_AsEncodedString(data, "utf-8", "surrogatepass");
        if (encoded == NULL)
            return NULL;
        digest = cs_hash(PyBytes_AS_STRING(encoded), (size_t)PyBytes_GET_SIZE(encoded),
                         (XXH64_hash_t)seed);
        Py_DECREF(encoded);
        return PyLong_FromUnsignedLongLong(digest);
    }
    if (PyBytes_Check(data))
        return PyLong_FromUnsignedLongLong(cs_hash(
            PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data), (XXH64_hash_t)seed));
    PyErr_Format(PyExc_TypeError, "expected str or bytes, got %.100s", Py_TYPE(data)->tp_name);
    return NULL;
}

static PyObject *
blocks_value_key(PyObject *self, PyObject *value)
{
    Buf b;
    int done;
    PyObject *result;
    buf_init(&b);
#ifdef CS_FAST
    {
        unsigned char *p = fast_value(b.data, b.data + b.cap, value, 0);
        if (p != NULL) /* the local buffer: nothing to free */
            return PyLong_FromUnsignedLongLong(cs_hash0(b.data, (size_t)(p - b.data)));
    }
#endif
    done = put_value(&b, value, 0);
    if (done < 0) {
        buf_free(&b);
        return NULL;
    }
    if (done == 0) {
        buf_free(&b);
        Py_RETURN_NONE;
    }
    result = PyLong_FromUnsignedLongLong(cs_hash0(b.data, b.len));
    buf_free(&b);
    return result;
}

static PyObject *
blocks_message_key(PyObject *self, PyObject *args)
{
    PyObject *message;
    Py_ssize_t m, start;
    unsigned long long key = 0;
    int done;
    Buf b;
    if (!PyArg_ParseTuple(args, "Onn:message_key", &message, &m, &start))
        return NULL;
    if (m < 0 || start < 0) {
        PyErr_SetString(PyExc_ValueError, "m and start must be >= 0");
        return NULL;
    }
    buf_init(&b);
    done = message_key_of(&b, message, m, start, &key);
    buf_free(&b);
    if (done < 0)
        return NULL;
    if (done == 0)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(key);
}

/* A memo entry of one unit: (blocks, images, citations, toggles, tokens, marks) where blocks is
 * a tuple of Block, tokens the bytes of one native int64 token count per block and marks a
 * tuple of the offsets (ints) of the blocks that carry cache_control. */
#define ENTRY_SIZE 6

/* 0 when `entry` is well formed, else -1 with TypeError set */
static int
check_entry(PyObject *entry)
{
    PyObject *unit, *tokens, *marks;
    Py_ssize_t i;
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != ENTRY_SIZE)
        goto bad;
    unit = PyTuple_GET_ITEM(entry, 0);
    tokens = PyTuple_GET_ITEM(entry, 4);
    marks = PyTuple_GET_ITEM(entry, 5);
    if (!PyTuple_CheckExact(unit) || !PyBytes_CheckExact(tokens) || !PyTuple_CheckExact(marks) ||
        PyBytes_GET_SIZE(tokens) != PyTuple_GET_SIZE(unit) * (Py_ssize_t)sizeof(long long))
        goto bad;
    for (i = 0; i < PyTuple_GET_SIZE(marks); i++) {
        PyObject *offset = PyTuple_GET_ITEM(marks, i);
        Py_ssize_t at;
        if (!PyLong_CheckExact(offset))
            goto bad;
        at = PyLong_AsSsize_t(offset);
        if (at == -1 && PyErr_Occurred())
            return -1;
        if (at < 0 || at >= PyTuple_GET_SIZE(unit))
            goto bad;
    }
    return 0;
bad:
    PyErr_SetString(PyExc_TypeError,
                    "a memo entry must be (blocks tuple, images, citations, toggles, "
                    "tokens bytes with one int64 per block, tuple of block offsets)");
    return -1;
}

/* PyObject_IsTrue with the usual bools first */
static inline int
truth(PyObject *value)
{
    if (value == Py_False)
        return 0;
    if (value == Py_True)
        return 1;
    return PyObject_IsTrue(value);
}

/* a well-formed memo entry's flags (bit 0 images, bit 1 citations), or -1 with an exception */
static int
entry_flags(PyObject *entry)
{
    int images, citations;
    if (check_entry(entry) < 0)
        return -1;
    images = truth(PyTuple_GET_ITEM(entry, 1));
    if (images < 0)
        return -1;
    citations = truth(PyTuple_GET_ITEM(entry, 2));
    if (citations < 0)
        return -1;
    return (images ? 1 : 0) | (citations ? 2 : 0);
}

/* the entries of the messages walked so far, with each message's key and whether it has one */
typedef struct {
    PyObject **items;
    unsigned long long *keys; /* two per entry: the key, 1 when keyed (else 0) */
    Py_ssize_t len, cap;
} Entries;

static int
entries_push(Entries *e, PyObject *entry, unsigned long long key, int keyed)
{
    if (e->len == e->cap) {
        Py_ssize_t cap = e->cap ? e->cap * 2 : 256;
        PyObject **items = PyMem_Realloc(e->items, (size_t)cap * sizeof(PyObject *));
        unsigned long long *keys;
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        e->items = items;
        keys = PyMem_Realloc(e->keys, (size_t)cap * 2 * sizeof(unsigned long long));
        if (keys == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        e->keys = keys;
        e->cap = cap;
    }
    Py_INCREF(entry);
    e->items[e->len] = entry;
    e->keys[2 * e->len] = key;
    e->keys[2 * e->len + 1] = (unsigned long long)keyed;
    e->len++;
    return 0;
}

static void
entries_free(Entries *e)
{
    Py_ssize_t i;
    for (i = 0; i < e->len; i++)
        Py_DECREF(e->items[i]);
    PyMem_Free(e->items);
    PyMem_Free(e->keys);
    e->items = NULL;
    e->keys = NULL;
    e->len = e->cap = 0;
}

/* flatten_messages(messages, memo, head, head_tokens, slow[, prior_keys, prior_entries])
 *     -> (blocks, units, marks, tokens, flags, keys, entries)
 *
 * head: the list of blocks before the messages (tools, system); head_tokens: their cumulative
 * token counts as bytes of len(head) + 1 int64 (starting at 0), or None to read them (and the
 * head's breakpoints) from the blocks' `tokens` and `cache_control` attributes. For message m starting at block
 * `start`: a memo hit under message_key gives its entry; otherwise slow(message, m, start,
 * key_or_None) must return the entry (and may store it). Returns the list of every block (head
 * included), the list of the messages' block tuples, the list of the blocks (absolute indices)
 * that carry cache_control, the cumulative token counts of all blocks (bytes of
 * len(blocks) + 1 int64), the flags (bit 0 images, bit 1 citations), each message's key (bytes
 * of two uint64 per message: the key, 1 when it has one) and the list of the entries. Given
 * an earlier walk's keys and entries, a message with the same key at the same place takes the
 * earlier entry (the one a memo lookup would give) without the lookup.
 */
static PyObject *
blocks_flatten_messages(PyObject *self, PyObject *args)
{
    PyObject *messages, *memo, *head, *head_tokens, *slow;
    PyObject *prior_keys = Py_None, *prior_entries = Py_None;
    PyObject *blocks = NULL, *units = NULL, *marks = NULL, *tokens = NULL;
    PyObject *keys = NULL, *entry_list = NULL;
    Py_ssize_t m, i, start, total, head_len, prior_count = 0;
    long flags = 0;
    long long *cumulative;
    const unsigned long long *prior = NULL;
    Entries entries = {NULL, NULL, 0, 0};
    Buf b;
    if (!PyArg_ParseTuple(args, "O!O!O!OO|OO:flatten_messages", &PyList_Type, &messages,
                          &PyDict_Type, &memo, &PyList_Type, &head, &head_tokens, &slow,
                          &prior_keys, &prior_entries))
        return NULL;
    if (head_tokens != Py_None && !PyBytes_CheckExact(head_tokens)) {
        PyErr_SetString(PyExc_TypeError, "head_tokens must be bytes or None");
        return NULL;
    }
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "slow must be callable");
        return NULL;
    }
    if (prior_keys != Py_None || prior_entries != Py_None) {
        if (!PyBytes_CheckExact(prior_keys) || !PyList_CheckExact(prior_entries) ||
            PyBytes_GET_SIZE(prior_keys) !=
                PyList_GET_SIZE(prior_entries) * 2 * (Py_ssize_t)sizeof(unsigned long long)) {
            PyErr_SetString(PyExc_TypeError,
                            "prior_keys and prior_entries must come from one earlier walk");
            return NULL;
        }
        /* both are kept alive by the caller's references for the whole call; the list is
         * re-checked for size before each use, since `slow` could change it */
        prior = (const unsigned long long *)PyBytes_AS_STRING(prior_keys);
        prior_count = PyList_GET_SIZE(prior_entries);
    }

    head_len = PyList_GET_SIZE(head);
    if (head_tokens != Py_None &&
        PyBytes_GET_SIZE(head_tokens) != (head_len + 1) * (Py_ssize_t)sizeof(long long)) {
        PyErr_SetString(PyExc_ValueError, "head_tokens must hold len(head) + 1 int64 counts");
        return NULL;
    }
    buf_init(&b);
    start = head_len;
    /* `slow` runs Python code that may change the list: its size is re-read each time */
    for (m = 0; m < PyList_GET_SIZE(messages); m++) {
        PyObject *message = PyList_GET_ITEM(messages, m);
        PyObject *key = NULL, *entry = NULL;
        unsigned long long digest = 0;
        int done, found;
        Py_INCREF(message);
#ifdef CS_DICT_LAYOUT
        if (m + 2 < PyList_GET_SIZE(messages))
            __builtin_prefetch(PyList_GET_ITEM(messages, m + 2));
        if (m + 1 < PyList_GET_SIZE(messages)) {
            PyObject *next = PyList_GET_ITEM(messages, m + 1);
            if (Py_TYPE(next) == &PyDict_Type) {
                __builtin_prefetch(((PyDictObject *)next)->ma_keys);
                __builtin_prefetch((char *)((PyDictObject *)next)->ma_keys + 64);
            }
            if (prior != NULL && m + 1 < PyList_GET_SIZE(prior_entries))
                __builtin_prefetch(PyList_GET_ITEM(prior_entries, m + 1));
        }
#endif
        done = message_key_of(&b, message, m, start, &digest);
        if (done < 0)
            goto fail_message;
        if (done == 1 && prior != NULL && m < prior_count &&
            m < PyList_GET_SIZE(prior_entries) && prior[2 * m + 1] == 1 &&
            prior[2 * m] == digest) {
            /* the same message at the same place as in the earlier request: its entry */
            entry = PyList_GET_ITEM(prior_entries, m);
            Py_INCREF(entry);
        }
        else if (done == 1) {
            key = PyLong_FromUnsignedLongLong(digest);
            if (key == NULL)
                goto fail_message;
            entry = PyDict_GetItemWithError(memo, key); /* borrowed */
            if (entry == NULL && PyErr_Occurred())
                goto fail_message;
            Py_XINCREF(entry);
        }
        if (entry == NULL) {
            entry = PyObject_CallFunction(slow, "OnnO", message, m, start,
                                          key != NULL ? key : Py_None);
            if (entry == NULL)
                goto fail_message;
        }
        if ((found = entry_flags(entry)) < 0)
            goto fail_entry;
        flags |= found;
        if (entries_push(&entries, entry, digest, done == 1) < 0)
            goto fail_entry;
        start += PyTuple_GET_SIZE(PyTuple_GET_ITEM(entry, 0));
        Py_DECREF(entry);
        Py_XDECREF(key);
        Py_DECREF(message);
        continue;
    fail_entry:
        Py_DECREF(entry);
    fail_message:
        Py_XDECREF(key);
        Py_DECREF(message);
        goto error;
    }
    buf_free(&b);

    total = start;
    blocks = PyList_New(total);
    units = PyList_New(entries.len);
    entry_list = PyList_New(entries.len);
    marks = PyList_New(0);
    tokens = PyBytes_FromStringAndSize(NULL, (total + 1) * (Py_ssize_t)sizeof(long long));
    if (blocks == NULL || units == NULL || entry_list == NULL || marks == NULL || tokens == NULL)
        goto error;
    keys = PyBytes_FromStringAndSize((const char *)entries.keys,
                                     entries.len * 2 * (Py_ssize_t)sizeof(unsigned long long));
    if (keys == NULL)
        goto error;
    /* `head` may have changed size during the callbacks: copy what the offsets assumed */
    if (PyList_GET_SIZE(head) != head_len) {
        PyErr_SetString(PyExc_RuntimeError, "head changed during flatten_messages");
        goto error;
    }
    cumulative = (long long *)PyBytes_AS_STRING(tokens);
    if (head_tokens != Py_None)
        memcpy(cumulative, PyBytes_AS_STRING(head_tokens),
               (size_t)(head_len + 1) * sizeof(long long));
    else
        cumulative[0] = 0;
    for (i = 0; i < head_len; i++) {
        PyObject *block = PyList_GET_ITEM(head, i);
        Py_INCREF(block);
        PyList_SET_ITEM(blocks, i, block);
        if (head_tokens == Py_None) {
            /* the head's counts and breakpoints from its blocks' `tokens` and `cache_control` */
            PyObject *count = PyObject_GetAttr(block, str_tokens);
            PyObject *control;
            long long value;
            if (count == NULL)
                goto error;
            value = PyLong_Check(count) ? PyLong_AsLongLong(count) : -1;
            Py_DECREF(count);
            if (value == -1 && PyErr_Occurred())
                goto error;
            if (value < 0) {
                PyErr_SetString(PyExc_TypeError, "a head block's tokens must be an int >= 0");
                goto error;
            }
            cumulative[i + 1] = cumulative[i] + value;
            control = PyObject_GetAttr(block, str_cache_control);
            if (control == NULL)
                goto error;
            Py_DECREF(control);
            if (control != Py_None) {
                PyObject *at = PyLong_FromSsize_t(i);
                int failed = at == NULL || PyList_Append(marks, at) < 0;
                Py_XDECREF(at);
                if (failed)
                    goto error;
            }
        }
    }
    start = head_len;
    for (i = 0; i < entries.len; i++) {
        PyObject *entry = entries.items[i];
        PyObject *unit = PyTuple_GET_ITEM(entry, 0);
        PyObject *offsets = PyTuple_GET_ITEM(entry, 5);
        const char *counts = PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 4));
        Py_ssize_t j, n = PyTuple_GET_SIZE(unit);
        for (j = 0; j < n; j++) {
            PyObject *block = PyTuple_GET_ITEM(unit, j);
            long long count;
            memcpy(&count, counts + j * (Py_ssize_t)sizeof(long long), sizeof(count));
            cumulative[start + j + 1] = cumulative[start + j] + count;
            Py_INCREF(block);
            PyList_SET_ITEM(blocks, start + j, block);
        }
        for (j = 0; j < PyTuple_GET_SIZE(offsets); j++) {
            PyObject *at = PyLong_FromSsize_t(start + PyLong_AsSsize_t(PyTuple_GET_ITEM(offsets, j)));
            int failed = at == NULL || PyList_Append(marks, at) < 0;
            Py_XDECREF(at);
            if (failed)
                goto error;
        }
        Py_INCREF(unit);
        PyList_SET_ITEM(units, i, unit);
        Py_INCREF(entry);
        PyList_SET_ITEM(entry_list, i, entry);
        start += n;
    }
    entries_free(&entries);
    return Py_BuildValue("(NNNNlNN)", blocks, units, marks, tokens, flags, keys, entry_list);

error:
    buf_free(&b);
    entries_free(&entries);
    Py_XDECREF(blocks);
    Py_XDECREF(units);
    Py_XDECREF(entry_list);
    Py_XDECREF(marks);
    Py_XDECREF(tokens);
    Py_XDECREF(keys);
    return NULL;
}

/* lean_messages(messages, memo, head, slow[, prior]) -> (keys, starts, tokens, marks, mflags,
 *                                                          flags, found, ttls)
 *
 * The walk of flatten_messages for `compare`, with only numbers out: no list of blocks, units or
 * entries. For message m: its `message_key` (every text hashed, as always); a message whose key
 * equals the prior walk's key of message m (same content at the same place: the key holds m and
 * the start) takes that walk's token counts, breakpoints and flags; otherwise a memo hit, else
 * `slow(message, m, start, key_or_None)`, gives its entry. `head` is the list of blocks before
 * the messages (their `tokens` and `cache_control` are read); `prior` is an earlier result of
 * this function over the same counter's memo. Returns, as bytes: each message's key (two uint64:
 * the key, 1 when keyed), the first block of each message plus the total count (int64,
 * len(messages) + 1), the cumulative token counts of all blocks (int64, total + 1, from 0), the
 * blocks with cache_control (int64 absolute indices), each message's flags (one byte: bit 0
 * images, bit 1 citations); all flags or-ed; {m: entry} of the messages whose numbers did not
 * come from the prior (usually the one or two that changed: compare reads their blocks); and the
 * TTL code of each breakpoint (one byte, see ttl_code).
 *
 * lean_pair(messages_a, memo_a, head_a, slow_a, prior_a, messages_b, memo_b, head_b, slow_b,
 *           prior_b) -> (walk_a, walk_b)
 *
 * Two such walks in lockstep: message m of `a`, then message m of `b`. `prior_b` None means "a
 * itself" (same counter): b's message m is checked against a's message m, walked just before.
 * The results are those of two lean_messages calls; the order only keeps each message of `a`
 * in the CPU caches for the same message of `b` (every text of both is still hashed).
 */
typedef struct {
    unsigned char *data;
    Py_ssize_t len, cap; /* in bytes */
} Grow;

/* make room for `need` more bytes (at least doubling); 0, or -1 with MemoryError set */
static int
grow_room(Grow *g, Py_ssize_t need)
{
    Py_ssize_t cap = g->cap ? g->cap * 2 : 4096;
    unsigned char *data;
    while (cap < g->len + need)
        cap *= 2;
    data = PyMem_Realloc(g->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    g->data = data;
    g->cap = cap;
    return 0;
}

static inline int
grow_put(Grow *g, const void *item, Py_ssize_t size)
{
    if (CS_UNLIKELY(g->len + size > g->cap) && grow_room(g, size) < 0)
        return -1;
    memcpy(g->data + g->len, item, (size_t)size);
    g->len += size;
    return 0;
}

static PyObject *
grow_bytes(Grow *g)
{
    PyObject *out = PyBytes_FromStringAndSize(g->data != NULL ? (const char *)g->data : "", g->len);
    PyMem_Free(g->data);
    g->data = NULL;
    g->len = g->cap = 0;
    return out;
}

/* the numbers of a prior walk: a finished one (bytes) or one going on alongside */
typedef struct {
    const unsigned long long *keys; /* two per message */
    const long long *starts;        /* first block of each message */
    const long long *tokens;        /* cumulative, total + 1 */
    const long long *marks;
    const unsigned char *ttls; /* one TTL code per mark (see ttl_code) */
    const unsigned char *mflags;
    Py_ssize_t count; /* messages walked */
    Py_ssize_t total; /* blocks up to the end of the last one */
    Py_ssize_t nmarks;
} Prior;

/* The TTL of a breakpoint, from its block's cache_control, as Block.ttl gives it: 1 for "5m"
 * (also when the ttl is missing, None or ""), 2 for "1h", 0 for anything else (then Python reads
 * the block); -1 with an exception set. */
static int
ttl_code(PyObject *control)
{
    PyObject *ttl;
    if (Py_TYPE(control) != &PyDict_Type)
        return 0;
    ttl = PyDict_GetItemWithError(control, str_ttl); /* borrowed; str keys run no Python code */
    if (ttl == NULL)
        return PyErr_Occurred() ? -1 : 1;
    if (ttl == Py_None)
        return 1;
    if (Py_TYPE(ttl) == &PyUnicode_Type) {
        if (PyUnicode_GET_LENGTH(ttl) == 0 || PyUnicode_CompareWithASCIIString(ttl, "5m") == 0)
            return 1;
        if (PyUnicode_CompareWithASCIIString(ttl, "1h") == 0)
            return 2;
    }
    return 0;
}

/* one walk going on */
typedef struct {
    PyObject *messages, *memo, *slow;
    Grow keys, starts, tokens, marks, ttls, mflags;
    Py_ssize_t start;      /* the next message's first block */
    Py_ssize_t prior_mark; /* where the prior's marks were last read */
    long flags;
    int prefetch; /* ask for the next messages' objects ahead (not when another walk just did) */
    PyObject *found; /* {m: entry} of the messages not taken from the prior */
} Lean;

static void
lean_free(Lean *w)
{
    PyMem_Free(w->keys.data);
    PyMem_Free(w->starts.data);
    PyMem_Free(w->tokens.data);
    PyMem_Free(w->marks.data);
    PyMem_Free(w->ttls.data);
    PyMem_Free(w->mflags.data);
    Py_XDECREF(w->found);
    memset(w, 0, sizeof(*w));
}

/* a walk's own numbers so far, as the prior of a walk alongside it */
static void
prior_of_live(const Lean *w, Prior *p)
{
    p->keys = (const unsigned long long *)w->keys.data;
    p->starts = (const long long *)w->starts.data;
    p->tokens = (const long long *)w->tokens.data;
    p->marks = (const long long *)w->marks.data;
    p->ttls = w->ttls.data;
    p->mflags = w->mflags.data;
    p->count = w->mflags.len;
    p->total = w->start;
    p->nmarks = w->marks.len / 8;
}

/* a finished walk (the tuple lean_messages returns) as a prior; -1 with TypeError if malformed */
static int
prior_of_tuple(PyObject *prior, Prior *p)
{
    PyObject *pk, *ps, *pt, *pm, *pf, *pl;
    Py_ssize_t count;
    if (!PyTuple_CheckExact(prior) || PyTuple_GET_SIZE(prior) != 8)
        goto bad;
    pk = PyTuple_GET_ITEM(prior, 0);
    ps = PyTuple_GET_ITEM(prior, 1);
    pt = PyTuple_GET_ITEM(prior, 2);
    pm = PyTuple_GET_ITEM(prior, 3);
    pf = PyTuple_GET_ITEM(prior, 4);
    pl = PyTuple_GET_ITEM(prior, 7);
    if (!PyBytes_CheckExact(pk) || !PyBytes_CheckExact(ps) || !PyBytes_CheckExact(pt) ||
        !PyBytes_CheckExact(pm) || !PyBytes_CheckExact(pf) || !PyBytes_CheckExact(pl) ||
        PyBytes_GET_SIZE(pl) * 8 != PyBytes_GET_SIZE(pm))
        goto bad;
    count = PyBytes_GET_SIZE(pf);
    if (PyBytes_GET_SIZE(pk) != count * 16 || PyBytes_GET_SIZE(ps) != (count + 1) * 8 ||
        PyBytes_GET_SIZE(pt) % 8 != 0 || PyBytes_GET_SIZE(pt) < 8 ||
        PyBytes_GET_SIZE(pm) % 8 != 0)
        goto bad;
    p->keys = (const unsigned long long *)PyBytes_AS_STRING(pk);
    p->starts = (const long long *)PyBytes_AS_STRING(ps);
    p->tokens = (const long long *)PyBytes_AS_STRING(pt);
    p->marks = (const long long *)PyBytes_AS_STRING(pm);
    p->ttls = (const unsigned char *)PyBytes_AS_STRING(pl);
    p->mflags = (const unsigned char *)PyBytes_AS_STRING(pf);
    p->count = count;
    p->total = PyBytes_GET_SIZE(pt) / 8 - 1;
    p->nmarks = PyBytes_GET_SIZE(pm) / 8;
    if (p->starts[count] != p->total)
        goto bad;
    return 0;
bad:
    PyErr_SetString(PyExc_TypeError, "prior must be an earlier result of lean_messages");
    return -1;
}

/* start a walk: the head's counts and breakpoints from its blocks' `tokens` and
 * `cache_control`, and room for about `blocks` blocks */
static int
lean_init(Lean *w, PyObject *messages, PyObject *memo, PyObject *head, PyObject *slow,
          Py_ssize_t blocks)
{
    Py_ssize_t i, n = PyList_GET_SIZE(messages), head_len = PyList_GET_SIZE(head);
    long long zero = 0;
    memset(w, 0, sizeof(*w));
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "slow must be callable");
        return -1;
    }
    w->messages = messages;
    w->memo = memo;
    w->slow = slow;
    w->prefetch = 1;
    w->found = PyDict_New();
    if (w->found == NULL)
        return -1;
    blocks = head_len + Py_MAX(blocks, 2 * n) + 16;
    if (grow_room(&w->keys, 16 * n + 16) < 0 || grow_room(&w->starts, 8 * n + 16) < 0 ||
        grow_room(&w->tokens, 8 * blocks) < 0 || grow_room(&w->mflags, n + 16) < 0 ||
        grow_put(&w->tokens, &zero, 8) < 0)
        return -1;
    for (i = 0; i < head_len; i++) {
        PyObject *block = PyList_GET_ITEM(head, i);
        PyObject *count = PyObject_GetAttr(block, str_tokens);
        PyObject *control;
        long long value;
        if (count == NULL)
            return -1;
        value = PyLong_Check(count) ? PyLong_AsLongLong(count) : -1;
        Py_DECREF(count);
        if (value == -1 && PyErr_Occurred())
            return -1;
        if (value < 0) {
            PyErr_SetString(PyExc_TypeError, "a head block's tokens must be an int >= 0");
            return -1;
        }
        value += ((long long *)w->tokens.data)[i];
        if (grow_put(&w->tokens, &value, 8) < 0)
            return -1;
        control = PyObject_GetAttr(block, str_cache_control);
        if (control == NULL)
            return -1;
        if (control != Py_None) {
            long long at = i;
            int code = ttl_code(control);
            unsigned char byte = (unsigned char)code;
            Py_DECREF(control);
            if (code < 0 || grow_put(&w->marks, &at, 8) < 0 || grow_put(&w->ttls, &byte, 1) < 0)
                return -1;
        }
        else
            Py_DECREF(control);
    }
    if (PyList_GET_SIZE(head) != head_len) {
        PyErr_SetString(PyExc_RuntimeError, "head changed during lean_messages");
        return -1;
    }
    w->start = head_len;
    return 0;
}

/* message m of the walk (m < the list's size), checked against `p` (NULL: no prior) */
static CS_ALWAYS_INLINE int
lean_step(Lean *w, Buf *b, Py_ssize_t m, const Prior *p)
{
    PyObject *message = PyList_GET_ITEM(w->messages, m);
    PyObject *key = NULL, *entry = NULL;
    unsigned long long digest = 0, pair[2];
    long long at = w->start;
    Py_ssize_t start = w->start;
    unsigned char mflag = 0;
    int done, result = -1;
    if (grow_put(&w->starts, &at, 8) < 0)
        return -1;
#ifdef CS_DICT_LAYOUT
    /* The next messages' objects, three levels deep, while this one is keyed: each level was
     * asked for one message earlier than the one below it needs it. */
    if (w->prefetch && m + 3 < PyList_GET_SIZE(w->messages))
        __builtin_prefetch(PyList_GET_ITEM(w->messages, m + 3));
    if (w->prefetch && m + 2 < PyList_GET_SIZE(w->messages)) {
        PyObject *next = PyList_GET_ITEM(w->messages, m + 2);
        if (Py_TYPE(next) == &PyDict_Type) {
            __builtin_prefetch(((PyDictObject *)next)->ma_keys);
            __builtin_prefetch((char *)((PyDictObject *)next)->ma_keys + 64);
        }
    }
    if (w->prefetch && m + 1 < PyList_GET_SIZE(w->messages)) {
        PyObject *next = PyList_GET_ITEM(w->messages, m + 1);
        if (Py_TYPE(next) == &PyDict_Type && ((PyDictObject *)next)->ma_values == NULL &&
            ((PyDictObject *)next)->ma_keys->dk_kind == DICT_KEYS_UNICODE) {
            PyDictKeysObject *keys = ((PyDictObject *)next)->ma_keys;
            PyDictUnicodeEntry *entry = DK_UNICODE_ENTRIES(keys);
            Py_ssize_t k, n = Py_MIN(keys->dk_nentries, 4);
            for (k = 0; k < n; k++)
                if (entry[k].me_value != NULL)
                    __builtin_prefetch(entry[k].me_value);
        }
    }
#endif
    Py_INCREF(message);
    done = message_key_of(b, message, m, start, &digest);
    if (done < 0)
        goto out;
    pair[0] = digest;
    pair[1] = done == 1;
    if (grow_put(&w->keys, pair, 16) < 0)
        goto out;
    if (done == 1 && p != NULL && m < p->count && p->keys[2 * m + 1] == 1 &&
        p->keys[2 * m] == digest && p->starts[m] == start) {
        /* the same message at the same place as in the prior walk: its numbers */
        Py_ssize_t end = m + 1 < p->count ? (Py_ssize_t)p->starts[m + 1] : p->total;
        Py_ssize_t n = end - start, j;
        const long long *from = p->tokens + start;
        long long value;
        if (n < 0 || end > p->total)
            goto fallback;
        value = ((long long *)w->tokens.data)[start];
        if (CS_UNLIKELY(w->tokens.len + 8 * n > w->tokens.cap) &&
            grow_room(&w->tokens, 8 * n) < 0)
            goto out;
        for (j = 0; j < n; j++) {
            value += from[j + 1] - from[j];
            ((long long *)(w->tokens.data + w->tokens.len))[j] = value;
        }
        w->tokens.len += 8 * n;
        if (w->prior_mark > p->nmarks)
            w->prior_mark = 0;
        while (w->prior_mark < p->nmarks && p->marks[w->prior_mark] < start)
            w->prior_mark++;
        for (; w->prior_mark < p->nmarks && p->marks[w->prior_mark] < end; w->prior_mark++)
            if (grow_put(&w->marks, &p->marks[w->prior_mark], 8) < 0 ||
                grow_put(&w->ttls, &p->ttls[w->prior_mark], 1) < 0)
                goto out;
        mflag = p->mflags[m];
        w->start = end;
    }
    else {
        PyObject *unit, *offsets;
        const char *counts;
        Py_ssize_t n, j;
        int found;
    fallback:
        if (done == 1) {
            key = PyLong_FromUnsignedLongLong(digest);
            if (key == NULL)
                goto out;
            entry = PyDict_GetItemWithError(w->memo, key); /* borrowed */
            if (entry == NULL && PyErr_Occurred())
                goto out;
            Py_XINCREF(entry);
        }
        if (entry == NULL) {
            entry = PyObject_CallFunction(w->slow, "OnnO", message, m, start,
                                          key != NULL ? key : Py_None);
            if (entry == NULL)
                goto out;
        }
        if ((found = entry_flags(entry)) < 0)
            goto out;
        mflag = (unsigned char)found;
        {
            PyObject *at_message = PyLong_FromSsize_t(m);
            int failed = at_message == NULL || PyDict_SetItem(w->found, at_message, entry) < 0;
            Py_XDECREF(at_message);
            if (failed)
                goto out;
        }
        unit = PyTuple_GET_ITEM(entry, 0);
        offsets = PyTuple_GET_ITEM(entry, 5);
        counts = PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 4));
        n = PyTuple_GET_SIZE(unit);
        for (j = 0; j < n; j++) {
            long long count, value;
            memcpy(&count, counts + j * (Py_ssize_t)sizeof(long long), sizeof(count));
            value = ((long long *)w->tokens.data)[start + j] + count;
            if (grow_put(&w->tokens, &value, 8) < 0)
                goto out;
        }
        /* check_entry made sure the offsets are ints within the unit */
        for (j = 0; j < PyTuple_GET_SIZE(offsets); j++) {
            Py_ssize_t offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(offsets, j));
            long long at_block = start + offset;
            PyObject *control = PyObject_GetAttr(PyTuple_GET_ITEM(unit, offset), str_cache_control);
            int code = control != NULL ? ttl_code(control) : -1;
            unsigned char byte = (unsigned char)code;
            Py_XDECREF(control);
            if (code < 0 || grow_put(&w->marks, &at_block, 8) < 0 ||
                grow_put(&w->ttls, &byte, 1) < 0)
                goto out;
        }
        w->start = start + n;
    }
    w->flags |= mflag;
    if (grow_put(&w->mflags, &mflag, 1) < 0)
        goto out;
    result = 0;
out:
    Py_XDECREF(entry);
    Py_XDECREF(key);
    Py_DECREF(message);
    return result;
}

/* the finished walk as the tuple lean_messages returns; the walk's buffers are freed */
static PyObject *
lean_result(Lean *w)
{
    long long total = w->start;
    PyObject *k, *s, *t, *mk, *f, *l;
    if (grow_put(&w->starts, &total, 8) < 0)
        return NULL;
    k = grow_bytes(&w->keys);
    s = grow_bytes(&w->starts);
    t = grow_bytes(&w->tokens);
    mk = grow_bytes(&w->marks);
    f = grow_bytes(&w->mflags);
    l = grow_bytes(&w->ttls);
    if (k == NULL || s == NULL || t == NULL || mk == NULL || f == NULL || l == NULL) {
        Py_XDECREF(k);
        Py_XDECREF(s);
        Py_XDECREF(t);
        Py_XDECREF(mk);
        Py_XDECREF(f);
        Py_XDECREF(l);
        return NULL;
    }
    return Py_BuildValue("(NNNNNlON)", k, s, t, mk, f, w->flags, w->found, l);
}

static PyObject *
blocks_lean_messages(PyObject *self, PyObject *args)
{
    PyObject *messages, *memo, *head, *slow, *prior = Py_None, *result;
    Prior p;
    Lean w;
    Buf b;
    Py_ssize_t m;
    if (!PyArg_ParseTuple(args, "O!O!O!O|O:lean_messages", &PyList_Type, &messages,
                          &PyDict_Type, &memo, &PyList_Type, &head, &slow, &prior))
        return NULL;
    /* the prior tuple (and so its bytes) is kept alive by the caller for the whole call */
    if (prior != Py_None && prior_of_tuple(prior, &p) < 0)
        return NULL;
    if (lean_init(&w, messages, memo, head, slow, prior != Py_None ? p.total : 0) < 0) {
        lean_free(&w);
        return NULL;
    }
    buf_init(&b);
    /* `slow` runs Python code that may change the list: its size is re-read each time */
    for (m = 0; m < PyList_GET_SIZE(messages); m++) {
        if (lean_step(&w, &b, m, prior != Py_None ? &p : NULL) < 0) {
            buf_free(&b);
            lean_free(&w);
            return NULL;
        }
    }
    buf_free(&b);
    result = lean_result(&w);
    lean_free(&w);
    return result;
}

static PyObject *
blocks_lean_pair(PyObject *self, PyObject *args)
{
    PyObject *messages_a, *memo_a, *head_a, *slow_a, *prior_a;
    PyObject *messages_b, *memo_b, *head_b, *slow_b, *prior_b;
    PyObject *walk_a = NULL, *walk_b = NULL;
    Prior pa, pb;
    Lean a, b;
    Buf buf;
    Py_ssize_t m;
    int follows;
    if (!PyArg_ParseTuple(args, "O!O!O!OOO!O!O!OO:lean_pair", &PyList_Type, &messages_a,
                          &PyDict_Type, &memo_a, &PyList_Type, &head_a, &slow_a, &prior_a,
                          &PyList_Type, &messages_b, &PyDict_Type, &memo_b, &PyList_Type,
                          &head_b, &slow_b, &prior_b))
        return NULL;
    follows = prior_b == Py_None;
    if ((prior_a != Py_None && prior_of_tuple(prior_a, &pa) < 0) ||
        (!follows && prior_of_tuple(prior_b, &pb) < 0))
        return NULL;
    memset(&b, 0, sizeof(b));
    if (lean_init(&a, messages_a, memo_a, head_a, slow_a, prior_a != Py_None ? pa.total : 0) <
            0 ||
        lean_init(&b, messages_b, memo_b, head_b, slow_b, follows ? 0 : pb.total) < 0)
        goto error;
    b.prefetch = 0; /* b's message m is read right after a's: shared objects are in the caches */
    buf_init(&buf);
    /* `slow` runs Python code that may change the lists: their sizes are re-read each time */
    for (m = 0; m < PyList_GET_SIZE(messages_a) || m < PyList_GET_SIZE(messages_b); m++) {
        if (m < PyList_GET_SIZE(messages_a) &&
            lean_step(&a, &buf, m, prior_a != Py_None ? &pa : NULL) < 0)
            goto error_buf;
        if (m < PyList_GET_SIZE(messages_b)) {
            if (follows)
                prior_of_live(&a, &pb); /* a's buffers may have moved: read them again */
            if (lean_step(&b, &buf, m, &pb) < 0)
                goto error_buf;
        }
    }
    buf_free(&buf);
    walk_a = lean_result(&a);
    walk_b = walk_a != NULL ? lean_result(&b) : NULL;
    lean_free(&a);
    lean_free(&b);
    if (walk_b == NULL) {
        Py_XDECREF(walk_a);
        return NULL;
    }
    return Py_BuildValue("(NN)", walk_a, walk_b);

error_buf:
    buf_free(&buf);
error:
    lean_free(&a);
    lean_free(&b);
    return NULL;
}

/* first_different_key(a, b) -> int | None: the first message whose keys (as lean_messages packs
 * them) differ between two walks, or that either could not key; None when the common length
 * has none */
static PyObject *
blocks_first_different_key(PyObject *self, PyObject *args)
{
    Py_buffer a, b;
    Py_ssize_t i, n;
    const unsigned long long *x, *y;
    PyObject *result;
    if (!PyArg_ParseTuple(args, "y*y*:first_different_key", &a, &b))
        return NULL;
    x = (const unsigned long long *)a.buf;
    y = (const unsigned long long *)b.buf;
    n = Py_MIN(a.len, b.len) / 16;
    for (i = 0; i < n; i++)
        if (x[2 * i] != y[2 * i] || x[2 * i + 1] != 1 || y[2 * i + 1] != 1)
            break;
    result = i < n ? PyLong_FromSsize_t(i) : (Py_INCREF(Py_None), Py_None);
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return result;
}

/* ---- the changed span of one block: common prefix and suffix of two str ------------------- */

static int
two_str(PyObject *args, const char *name, PyObject **a, PyObject **b, Py_ssize_t *floor)
{
    char format[64];
    if (floor != NULL)
        *floor = 0;
    PyOS_snprintf(format, sizeof(format), "UU%s:%s", floor != NULL ? "|n" : "", name);
    if (!PyArg_ParseTuple(args, format, a, b, floor))
        return -1;
    if (floor != NULL && *floor < 0) {
        PyErr_SetString(PyExc_ValueError, "floor must be >= 0");
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(*a) < 0 || PyUnicode_READY(*b) < 0)
        return -1;
#endif
    return 0;
}

/* length of the common prefix of two ready str */
static Py_ssize_t
prefix_length(PyObject *a, PyObject *b)
{
    Py_ssize_t i, limit = Py_MIN(PyUnicode_GET_LENGTH(a), PyUnicode_GET_LENGTH(b));
    int kind_a = (int)PyUnicode_KIND(a), kind_b = (int)PyUnicode_KIND(b);
    const void *data_a = PyUnicode_DATA(a), *data_b = PyUnicode_DATA(b);
    i = 0;
    if (kind_a == kind_b) {
        const unsigned char *x = data_a, *y = data_b;
        size_t bytes = (size_t)limit * (size_t)kind_a, at = 0;
        while (at + 8 <= bytes) { /* 8 bytes at a time, then unit by unit */
            unsigned long long u, v;
            memcpy(&u, x + at, 8);
            memcpy(&v, y + at, 8);
            if (u != v)
                break;
            at += 8;
        }
        i = (Py_ssize_t)(at / (size_t)kind_a);
    }
    while (i < limit && PyUnicode_READ(kind_a, data_a, i) == PyUnicode_READ(kind_b, data_b, i))
        i++;
    return i;
}

/* length of the common suffix of two ready str, not reaching into their first `floor` units */
static Py_ssize_t
suffix_length(PyObject *a, PyObject *b, Py_ssize_t floor)
{
    Py_ssize_t n, len_a = PyUnicode_GET_LENGTH(a), len_b = PyUnicode_GET_LENGTH(b);
    Py_ssize_t limit = Py_MIN(len_a, len_b) - floor;
    int kind_a = (int)PyUnicode_KIND(a), kind_b = (int)PyUnicode_KIND(b);
    const void *data_a = PyUnicode_DATA(a), *data_b = PyUnicode_DATA(b);
    n = 0;
    if (kind_a == kind_b && limit > 0) {
        /* 8 bytes at a time from the ends, then unit by unit */
        const unsigned char *x = (const unsigned char *)data_a + (size_t)len_a * (size_t)kind_a;
        const unsigned char *y = (const unsigned char *)data_b + (size_t)len_b * (size_t)kind_b;
        size_t bytes = (size_t)limit * (size_t)kind_a, at = 0;
        while (at + 8 <= bytes) {
            unsigned long long u, v;
            memcpy(&u, x - at - 8, 8);
            memcpy(&v, y - at - 8, 8);
            if (u != v)
                break;
            at += 8;
        }
        n = (Py_ssize_t)(at / (size_t)kind_a);
    }
    while (n < limit && PyUnicode_READ(kind_a, data_a, len_a - 1 - n) ==
                            PyUnicode_READ(kind_b, data_b, len_b - 1 - n))
        n++;
    return n;
}

/* common_prefix(a, b) -> int: length of the common prefix of two str */
static PyObject *
blocks_common_prefix(PyObject *self, PyObject *args)
{
    PyObject *a, *b;
    if (two_str(args, "common_prefix", &a, &b, NULL) < 0)
        return NULL;
    return PyLong_FromSsize_t(prefix_length(a, b));
}

/* common_suffix(a, b, floor=0) -> int: length of the common suffix of two str, not reaching
 * back into their first `floor` characters */
static PyObject *
blocks_common_suffix(PyObject *self, PyObject *args)
{
    PyObject *a, *b;
    Py_ssize_t floor;
    if (two_str(args, "common_suffix", &a, &b, &floor) < 0)
        return NULL;
    return PyLong_FromSsize_t(suffix_length(a, b, floor));
}

/* the line of `text` around text[start:end], clipped to `window` characters of context on each
 * side ("…" where clipped), tabs and carriage returns shown as spaces; and (start, end) of the
 * changed characters inside it. A change that spans lines is shown up to the end of its first
 * line. Twin: stability._line_window. Returns a new (str, (int, int)) tuple, or NULL. */
static PyObject *
line_window(PyObject *text, Py_ssize_t start, Py_ssize_t end, Py_ssize_t window)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(text), line_start, line_end, first_break;
    Py_ssize_t shown_end, lo, hi, clipped_start;
    PyObject *shown, *joined;
    int before, after;
    line_start = PyUnicode_FindChar(text, '\n', 0, start, -1);
    line_end = PyUnicode_FindChar(text, '\n', end, length, 1);
    first_break = PyUnicode_FindChar(text, '\n', start, end, 1);
    if (line_start == -2 || line_end == -2 || first_break == -2)
        return NULL;
    line_start += 1;
    if (line_end == -1)
        line_end = length;
    shown_end = first_break != -1 ? first_break : end;
    lo = Py_MAX(line_start, start - window);
    hi = first_break == -1 ? Py_MIN(line_end, shown_end + window) : shown_end;
    before = lo > line_start;
    after = hi < line_end && first_break == -1;
    shown = PyUnicode_Substring(text, lo, hi);
    if (shown == NULL)
        return NULL;
    if (before || after) {
        PyObject *dots = PyUnicode_FromOrdinal(0x2026); /* … */
        if (dots == NULL) {
            Py_DECREF(shown);
            return NULL;
        }
        if (before) {
            joined = PyUnicode_Concat(dots, shown);
            Py_SETREF(shown, joined);
        }
        if (shown != NULL && after) {
            joined = PyUnicode_Concat(shown, dots);
            Py_SETREF(shown, joined);
        }
        Py_DECREF(dots);
        if (shown == NULL)
            return NULL;
    }
    {
        static const Py_UCS4 blanks[2] = {'\t', '\r'};
        int k;
        for (k = 0; k < 2; k++) {
            Py_ssize_t found = PyUnicode_FindChar(shown, blanks[k], 0, PyUnicode_GET_LENGTH(shown), 1);
            if (found == -2) {
                Py_DECREF(shown);
                return NULL;
            }
            if (found >= 0) {
                PyObject *from = PyUnicode_FromOrdinal((int)blanks[k]);
                PyObject *to = PyUnicode_FromOrdinal(' ');
                PyObject *replaced = from != NULL && to != NULL
                                         ? PyUnicode_Replace(shown, from, to, -1)
                                         : NULL;
                Py_XDECREF(from);
                Py_XDECREF(to);
                Py_SETREF(shown, replaced);
                if (shown == NULL)
                    return NULL;
            }
        }
    }
    clipped_start = before ? 1 : 0;
    return Py_BuildValue("(N(nn))", shown, clipped_start + (start - lo),
                         clipped_start + (Py_MIN(shown_end, hi) - lo));
}

/* change_window(old, new, window) -> (offset, line, column, old_window, old_span, new_window,
 *                                     new_span)
 * Where two str first differ (offset, 1-based line and column in `old`) and the changed line
 * of each, clipped to `window` characters of context (see line_window). Twin:
 * stability._change_window_py. */
static PyObject *
blocks_change_window(PyObject *self, PyObject *args)
{
    PyObject *old, *new, *old_shown, *new_shown;
    Py_ssize_t window, offset, suffix, line = 1, line_start, at;
    if (!PyArg_ParseTuple(args, "UUn:change_window", &old, &new, &window))
        return NULL;
    if (window < 0) {
        PyErr_SetString(PyExc_ValueError, "window must be >= 0");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(old) < 0 || PyUnicode_READY(new) < 0)
        return NULL;
#endif
    offset = prefix_length(old, new);
    suffix = suffix_length(old, new, offset);
    /* the line and column of the offset in `old` */
    at = 0;
    while ((at = PyUnicode_FindChar(old, '\n', at, offset, 1)) >= 0) {
        line++;
        at++;
    }
    if (at == -2)
        return NULL;
    line_start = PyUnicode_FindChar(old, '\n', 0, offset, -1);
    if (line_start == -2)
        return NULL;
    old_shown = line_window(old, offset, PyUnicode_GET_LENGTH(old) - suffix, window);
    if (old_shown == NULL)
        return NULL;
    new_shown = line_window(new, offset, PyUnicode_GET_LENGTH(new) - suffix, window);
    if (new_shown == NULL) {
        Py_DECREF(old_shown);
        return NULL;
    }
    {
        PyObject *result = Py_BuildValue(
            "(nnnOOOO)", offset, line, offset - (line_start + 1) + 1,
            PyTuple_GET_ITEM(old_shown, 0), PyTuple_GET_ITEM(old_shown, 1),
            PyTuple_GET_ITEM(new_shown, 0), PyTuple_GET_ITEM(new_shown, 1));
        Py_DECREF(old_shown);
        Py_DECREF(new_shown);
        return result;
    }
}

/* first_different(a, b) -> int | None: the first index where two lists hold different objects
 * (identity, not ==), over their common length; None when there is none */
static PyObject *
blocks_first_different(PyObject *self, PyObject *args)
{
    PyObject *a, *b;
    Py_ssize_t i, n;
    if (!PyArg_ParseTuple(args, "O!O!:first_different", &PyList_Type, &a, &PyList_Type, &b))
        return NULL;
    n = Py_MIN(PyList_GET_SIZE(a), PyList_GET_SIZE(b));
    for (i = 0; i < n; i++)
        if (PyList_GET_ITEM(a, i) != PyList_GET_ITEM(b, i))
            return PyLong_FromSsize_t(i);
    Py_RETURN_NONE;
}

/* message_keys(messages, previous) -> (keys, same): `message_key(message, m, 0)` of each
 * message packed as little-endian uint64, up to the first message that cannot be keyed; and how
 * many of them lead `previous` (such a packing) unchanged. No Python code runs during the walk,
 * so the list cannot change under it. */
static PyObject *
blocks_message_keys(PyObject *self, PyObject *args)
{
    PyObject *messages, *previous, *out, **items;
    Py_ssize_t m, n, keyed = 0, same = 0, known;
    unsigned char *data;
    const char *before;
    Buf b;
    if (!PyArg_ParseTuple(args, "O!O!:message_keys", &PyList_Type, &messages, &PyBytes_Type,
                          &previous))
        return NULL;
    n = PyList_GET_SIZE(messages);
    out = PyBytes_FromStringAndSize(NULL, n * 8);
    if (out == NULL)
        return NULL;
    data = (unsigned char *)PyBytes_AS_STRING(out);
    items = ((PyListObject *)messages)->ob_item;
    buf_init(&b);
    for (m = 0; m < n; m++) {
        unsigned long long key = 0;
        int done = message_key_of(&b, items[m], m, 0, &key);
        if (done < 0) {
            buf_free(&b);
            Py_DECREF(out);
            return NULL;
        }
        if (done == 0)
            break;
        write_u64(data + 8 * m, key);
        keyed++;
    }
    buf_free(&b);
    known = Py_MIN(keyed, PyBytes_GET_SIZE(previous) / 8);
    before = PyBytes_AS_STRING(previous);
    while (same < known && memcmp(data + 8 * same, before + 8 * same, 8) == 0)
        same++;
    if (keyed < n && _PyBytes_Resize(&out, keyed * 8) < 0)
        return NULL;
    return Py_BuildValue("(Nn)", out, same);
}

/* set_layered(cls): the LayeredBlocks class, whose instances message keys read with their
 * layer names (called once by cachescope._blocks) */
static PyObject *
blocks_set_layered(PyObject *self, PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyList_Type)) {
        PyErr_SetString(PyExc_TypeError, "set_layered takes a subclass of list");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(layered_type, cls);
    Py_RETURN_NONE;
}

static PyMethodDef blocks_methods[] = {
    {"xxh3_64", (PyCFunction)(void (*)(void))blocks_xxh3_64, METH_VARARGS | METH_KEYWORDS,
     "xxh3_64(data, seed=0) -> int: xxh3-64 of a str's UTF-8 (surrogatepass) or of bytes."},
    {"value_key", blocks_value_key, METH_O,
     "value_key(value) -> int | None: content key of a plain JSON value (None if not plain)."},
    {"message_key", blocks_message_key, METH_VARARGS,
     "message_key(message, m, start) -> int | None: memo key of one message."},
    {"set_layered", blocks_set_layered, METH_O,
     "set_layered(cls): the list subclass whose instances, as a message's content, are keyed "
     "with their layer_names."},
    {"message_keys", blocks_message_keys, METH_VARARGS,
     "message_keys(messages, previous) -> (keys, same): the packed keys of the messages (at "
     "block 0) up to the first one not keyable, and how many lead `previous` unchanged."},
    {"first_different", blocks_first_different, METH_VARARGS,
     "first_different(a, b) -> int | None: first index where two lists hold different objects."},
    {"common_prefix", blocks_common_prefix, METH_VARARGS,
     "common_prefix(a, b) -> int: length of the common prefix of two str."},
    {"change_window", blocks_change_window, METH_VARARGS,
     "change_window(old, new, window) -> (offset, line, column, old_window, old_span, "
     "new_window, new_span): where two str first differ and the changed line of each."},
    {"common_suffix", blocks_common_suffix, METH_VARARGS,
     "common_suffix(a, b, floor=0) -> int: length of the common suffix of two str, not "
     "reaching into their first `floor` characters."},
    {"lean_messages", blocks_lean_messages, METH_VARARGS,
     "lean_messages(messages, memo, head, slow[, prior]) -> (keys, starts, tokens, marks, "
     "mflags, flags, found, ttls): the message walk of compare, numbers only."},
    {"lean_pair", blocks_lean_pair, METH_VARARGS,
     "lean_pair(messages_a, memo_a, head_a, slow_a, prior_a, messages_b, memo_b, head_b, "
     "slow_b, prior_b) -> (walk_a, walk_b): two lean_messages walks in lockstep (prior_b None: "
     "b follows a)."},
    {"first_different_key", blocks_first_different_key, METH_VARARGS,
     "first_different_key(a, b) -> int | None: first message whose packed keys differ."},
    {"flatten_messages", blocks_flatten_messages, METH_VARARGS,
     "flatten_messages(messages, memo, head, head_tokens, slow) -> (blocks, units, marks, "
     "tokens, flags): the message walk of flatten_units."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef blocks_module = {
    PyModuleDef_HEAD_INIT, "cachescope._native.blocks",
    "The per-call message walk of cachescope._blocks.flatten_units (pure twin in _blocks).", -1,
    blocks_methods,
};

PyMODINIT_FUNC
PyInit_blocks(void)
{
    PyObject *module;
    const char *text_hash_name = cs_text_hash_init();
#ifdef CS_AVX2
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
#endif
    if (str_role == NULL) {
        str_role = PyUnicode_InternFromString("role");
        if (str_role == NULL)
            return NULL;
    }
    if (str_content == NULL) {
        str_content = PyUnicode_InternFromString("content");
        if (str_content == NULL)
            return NULL;
    }
    if (str_layer_names == NULL) {
        str_layer_names = PyUnicode_InternFromString("layer_names");
        if (str_layer_names == NULL)
            return NULL;
    }
    if (str_tokens == NULL) {
        str_tokens = PyUnicode_InternFromString("tokens");
        if (str_tokens == NULL)
            return NULL;
    }
    if (str_ttl == NULL) {
        str_ttl = PyUnicode_InternFromString("ttl");
        if (str_ttl == NULL)
            return NULL;
    }
    if (str_cache_control == NULL) {
        str_cache_control = PyUnicode_InternFromString("cache_control");
        if (str_cache_control == NULL)
            return NULL;
    }
    module = PyModule_Create(&blocks_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddStringConstant(module, "SOURCE_HASH", CACHESCOPE_SOURCE_HASH) < 0 ||
        PyModule_AddStringConstant(module, "TEXT_HASH", text_hash_name) < 0 ||
        PyModule_AddIntConstant(module, "AVX2",
#ifdef CS_AVX2
                                have_avx2
#else
                                0
#endif
                                ) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
