/* cachescope._native.simcore: the simulator core's hot loops (cachescope.sim._plan).
 *
 * Pure-Python twins live in cachescope/sim/_simcore_py.py and a test holds both to identical
 * results:
 *
 * - struct_hash(value) -> bytes | None: a 16-byte digest (XXH3-128, canonical big-endian) of a
 *   parsed JSON value's *structure*: exact dict (key order matters), list, str, int (64-bit),
 *   float (bit pattern), True, False, None, each with its own tag, so `1`, `1.0` and `True`
 *   differ and `{"a":1,"b":2}` differs from `{"b":2,"a":1}`. Any other type (a tuple, a subclass,
 *   an int beyond 64 bits, a str with lone surrogates, non-str keys) gives None: the caller then
 *   does not memoize. Two values with the same digest serialize to the same JSON bytes (up to a
 *   128-bit collision), which is what the simulator's byte-exact reuse needs.
 * - freeze(value) -> object: an immutable copy of a parsed JSON value (lists as tuples,
 *   dicts as (Ellipsis, key, value, ...) tuples, atoms as themselves); ValueError where
 *   struct_hash gives None.
 * - matches(frozen, value) -> bool: `value` equals what `frozen` was frozen from, with the same
 *   strictness as struct_hash (exact types, key order, float bits) but exactly, no digest.
 * - common(frozen_items, values) -> int: how many leading items of `values` match.
 * - digest_count(text, seed, factor, chars_per_token, punct_weight, newline_weight,
 *   non_ascii_weight, punct) -> (digest, tokens) | None: xxh3-64 of the text's UTF-8 with `seed`
 *   and the estimate of cachescope._tokens.EstimatingCounter.count with those constants; None
 *   for a str that has no UTF-8 form (lone surrogates).
 * - text_message, lookback: the plain-text segment and the read windows (see their comments).
 * - default_reply(seed, words) -> (text, tokens): cachescope.sim._responder.default_reply.
 * - handle(sim, body, api_key) -> (message, ttft_ms, total_ms) | None: a whole Messages request
 *   of the common shape (see its comment); its twin is the Python path it falls back to,
 *   cachescope.sim._simulator.Simulator._process, held to it by tests/sim/test_simcore_handle.py.
 */
/* as in CPython's own release builds of extension modules (sysconfig CFLAGS): the header's
 * inline accessors (PyTuple_GET_ITEM, PyUnicode_DATA, ...) without their debug assertions */
#ifndef NDEBUG
#define NDEBUG
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>
#include <stdint.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

/* ---- canonical structure encoding --------------------------------------------------------- */

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} Buffer;

static int
buf_reserve(Buffer *b, size_t extra)
{
    if (b->size + extra <= b->capacity)
        return 0;
    size_t capacity = b->capacity ? b->capacity : 4096;
    while (capacity < b->size + extra) {
        if (capacity > ((size_t)PY_SSIZE_T_MAX) / 2) {
            PyErr_NoMemory();
            return -1;
        }
        capacity *= 2;
    }
    char *data = PyMem_Realloc(b->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int
buf_put(Buffer *b, char tag, const void *payload, size_t size)
{
    if (buf_reserve(b, 1 + size) < 0)
        return -1;
    b->data[b->size++] = tag;
    if (size) {
        memcpy(b->data + b->size, payload, size);
        b->size += size;
    }
    return 0;
}

static int
buf_put_u64(Buffer *b, char tag, uint64_t value)
{
    unsigned char bytes[8];
    for (int i = 0; i < 8; i++)
        bytes[i] = (unsigned char)(value >> (8 * i)); /* little-endian, as the twin packs it */
    return buf_put(b, tag, bytes, 8);
}

/* Encoding (the twin writes the same bytes):
 *   dict  'd' <count u64> then per item: <key as str> <value>
 *   list  'l' <count u64> then the items
 *   str   's' <UTF-8 length u64> <UTF-8 bytes>
 *   int   'i' <value as two's complement u64>
 *   float 'f' <IEEE-754 bits u64>
 *   True 't', False 'F', None 'n'
 * Returns 0, 1 when the value has an unsupported type (no exception set), -1 on error. */
static int encode(Buffer *b, PyObject *obj, int depth);

static int
encode_str(Buffer *b, PyObject *obj)
{
    Py_ssize_t size;
    const char *data = PyUnicode_AsUTF8AndSize(obj, &size);
    if (data == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            return 1;
        }
        return -1;
    }
    if (buf_put_u64(b, 's', (uint64_t)size) < 0)
        return -1;
    if (buf_reserve(b, (size_t)size) < 0)
        return -1;
    memcpy(b->data + b->size, data, (size_t)size);
    b->size += (size_t)size;
    return 0;
}

static int
encode(Buffer *b, PyObject *obj, int depth)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (type == &PyUnicode_Type)
        return encode_str(b, obj);
    if (type == &PyLong_Type) {
        int overflow = 0;
        long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (overflow)
            return 1;
        if (value == -1 && PyErr_Occurred())
            return -1;
        return buf_put_u64(b, 'i', (uint64_t)value);
    }
    if (type == &PyFloat_Type) {
        double value = PyFloat_AS_DOUBLE(obj);
        uint64_t bits;
        memcpy(&bits, &value, 8);
        return buf_put_u64(b, 'f', bits);
    }
    if (obj == Py_True)
        return buf_put(b, 't', NULL, 0);
    if (obj == Py_False)
        return buf_put(b, 'F', NULL, 0);
    if (obj == Py_None)
        return buf_put(b, 'n', NULL, 0);
    if (depth > 200)
        return 1; /* a container deeper than anyone sends: not memoized (as freeze) */
    if (type == &PyDict_Type) {
        if (buf_put_u64(b, 'd', (uint64_t)PyDict_GET_SIZE(obj)) < 0)
            return -1;
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(obj, &pos, &key, &value)) {
            if (Py_TYPE(key) != &PyUnicode_Type)
                return 1;
            int r = encode_str(b, key);
            if (r != 0)
                return r;
            Py_INCREF(value); /* a str key's __eq__ cannot run here, but stay safe */
            r = encode(b, value, depth + 1);
            Py_DECREF(value);
            if (r != 0)
                return r;
        }
        return 0;
    }
    if (type == &PyList_Type) {
        Py_ssize_t n = PyList_GET_SIZE(obj);
        if (buf_put_u64(b, 'l', (uint64_t)n) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(obj); i++) {
            PyObject *item = PyList_GET_ITEM(obj, i);
            Py_INCREF(item);
            int r = encode(b, item, depth + 1);
            Py_DECREF(item);
            if (r != 0)
                return r;
        }
        return 0;
    }
    return 1;
}

static void
digest_of(const Buffer *b, unsigned char out[16])
{
    XXH128_hash_t h = XXH3_128bits(b->data, b->size);
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, h);
    memcpy(out, canonical.digest, 16);
}

static PyObject *
simcore_struct_hash(PyObject *self, PyObject *obj)
{
    Buffer b = {NULL, 0, 0};
    int r = encode(&b, obj, 0);
    if (r != 0) {
        PyMem_Free(b.data);
        if (r < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    unsigned char out[16];
    digest_of(&b, out);
    PyMem_Free(b.data);
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

/* ---- frozen copies ------------------------------------------------------------------------ *
 * freeze(value) -> object: an immutable copy of a parsed JSON value that `matches` can
 * compare a later value against, exactly as struct_hash would (same types, same key order, float
 * bits): a list becomes a tuple of frozen items, a dict a tuple (Ellipsis, key0, frozen value0,
 * key1, ...), atoms (exact str, int, float, True, False, None) stay themselves (immutable).
 * ValueError when struct_hash would give None. */

static int
supported_int(PyObject *obj)
{
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred())
        return -1;
    return overflow ? 0 : 1;
}

/* A frozen tuple holds only atoms and frozen tuples: once none of them is tracked by the garbage
 * collector it cannot be part of a cycle, so stop tracking it now (the collector would do the
 * same on its next pass, after traversing it). */
static void
untrack_if_atomic(PyObject *tuple)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tuple); i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        if (PyObject_IS_GC(item) && PyObject_GC_IsTracked(item))
            return;
    }
    PyObject_GC_UnTrack(tuple);
}

/* The same for a tuple built on the hot path, as conservatively as CPython's own collector: it
 * keeps tracking a tuple that holds any container but an untracked tuple (a dict or list may
 * gain references later). */
static void
untrack_if_only_atoms(PyObject *tuple)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tuple); i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        if (PyObject_IS_GC(item) &&
            (Py_TYPE(item) != &PyTuple_Type || PyObject_GC_IsTracked(item)))
            return;
    }
    PyObject_GC_UnTrack(tuple);
}

/* Returns a new reference, Py_None-less NULL with no exception for "unsupported", NULL with an
 * exception on error. */
static PyObject *
freeze(PyObject *obj, int depth)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (type == &PyUnicode_Type) {
        Py_ssize_t size;
        if (PyUnicode_AsUTF8AndSize(obj, &size) == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                PyErr_Clear();
            return NULL;
        }
        Py_INCREF(obj);
        return obj;
    }
    if (type == &PyLong_Type) {
        int r = supported_int(obj);
        if (r <= 0)
            return NULL;
        Py_INCREF(obj);
        return obj;
    }
    if (type == &PyFloat_Type || obj == Py_True || obj == Py_False || obj == Py_None) {
        Py_INCREF(obj);
        return obj;
    }
    if (depth > 200)
        return NULL;
    if (type == &PyList_Type) {
        Py_ssize_t n = PyList_GET_SIZE(obj);
        PyObject *result = PyTuple_New(n);
        if (result == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i >= PyList_GET_SIZE(obj)) {
                Py_DECREF(result);
                return NULL;
            }
            PyObject *item = PyList_GET_ITEM(obj, i);
            Py_INCREF(item);
            PyObject *frozen = freeze(item, depth + 1);
            Py_DECREF(item);
            if (frozen == NULL) {
                Py_DECREF(result);
                return NULL;
            }
            PyTuple_SET_ITEM(result, i, frozen);
        }
        untrack_if_atomic(result);
        return result;
    }
    if (type == &PyDict_Type) {
        Py_ssize_t n = PyDict_GET_SIZE(obj);
        PyObject *result = PyTuple_New(1 + 2 * n);
        if (result == NULL)
            return NULL;
        Py_INCREF(Py_Ellipsis);
        PyTuple_SET_ITEM(result, 0, Py_Ellipsis);
        Py_ssize_t pos = 0, i = 1;
        PyObject *key, *value;
        while (PyDict_Next(obj, &pos, &key, &value)) {
            if (i >= 1 + 2 * n || Py_TYPE(key) != &PyUnicode_Type) {
                Py_DECREF(result);
                return NULL;
            }
            PyObject *frozen_key = freeze(key, depth + 1);
            if (frozen_key == NULL) {
                Py_DECREF(result);
                return NULL;
            }
            PyTuple_SET_ITEM(result, i, frozen_key);
            Py_INCREF(value);
            PyObject *frozen = freeze(value, depth + 1);
            Py_DECREF(value);
            if (frozen == NULL) {
                Py_DECREF(result);
                return NULL;
            }
            PyTuple_SET_ITEM(result, i + 1, frozen);
            i += 2;
        }
        if (i != 1 + 2 * n) {
            Py_DECREF(result);
            return NULL;
        }
        untrack_if_atomic(result);
        return result;
    }
    return NULL;
}

static PyObject *
simcore_freeze(PyObject *self, PyObject *obj)
{
    PyObject *result = freeze(obj, 0);
    if (result == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "not plain JSON (see struct_hash)");
    return result;
}

/* An atom's match: 1, 0, -1 on error, or 2 when `value` is not an atom (a container). */
static inline int
match_atom(PyObject *frozen, PyObject *value)
{
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyUnicode_Type) {
        if (frozen == value)
            return 1;
        if (Py_TYPE(frozen) != &PyUnicode_Type)
            return 0;
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(value) < 0)
            return -1;
#endif
        Py_ssize_t n = PyUnicode_GET_LENGTH(value);
        if (PyUnicode_GET_LENGTH(frozen) != n || PyUnicode_KIND(frozen) != PyUnicode_KIND(value))
            return 0;
        /* equal code points: equal strings (a str with lone surrogates never froze) */
        return memcmp(PyUnicode_DATA(frozen), PyUnicode_DATA(value),
                      (size_t)n * PyUnicode_KIND(value)) == 0;
    }
    if (type == &PyLong_Type) {
        if (Py_TYPE(frozen) != &PyLong_Type)
            return 0;
        if (frozen == value)
            return 1;
        return PyObject_RichCompareBool(frozen, value, Py_EQ);
    }
    if (type == &PyFloat_Type) {
        if (Py_TYPE(frozen) != &PyFloat_Type)
            return 0;
        double a = PyFloat_AS_DOUBLE(frozen), b = PyFloat_AS_DOUBLE(value);
        return memcmp(&a, &b, sizeof(double)) == 0;
    }
    if (value == Py_True || value == Py_False || value == Py_None)
        return frozen == value;
    return 2;
}

/* 1 when `value` (live) is what `frozen` was frozen from, 0 when not, -1 on error.
 * No Python code runs in here (str and exact int comparisons only), so the items stay alive
 * without new references. */
static int
matches(PyObject *frozen, PyObject *value, int depth)
{
    PyTypeObject *type = Py_TYPE(value);
    if (type != &PyDict_Type && type != &PyList_Type) {
        int r = match_atom(frozen, value);
        return r == 2 ? 0 : r;
    }
    if (depth > 200 || Py_TYPE(frozen) != &PyTuple_Type)
        return 0;
    Py_ssize_t size = PyTuple_GET_SIZE(frozen);
    if (type == &PyList_Type) {
        Py_ssize_t n = PyList_GET_SIZE(value);
        if (size != n || (n && PyTuple_GET_ITEM(frozen, 0) == Py_Ellipsis))
            return 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PyList_GET_ITEM(value, i), *f = PyTuple_GET_ITEM(frozen, i);
            int r = match_atom(f, item);
            if (r == 2)
                r = matches(f, item, depth + 1);
            if (r != 1)
                return r;
        }
        return 1;
    }
    /* a dict: exactly n steps (the sizes agree; nothing can change the dict meanwhile) */
    if (size != 1 + 2 * PyDict_GET_SIZE(value) || PyTuple_GET_ITEM(frozen, 0) != Py_Ellipsis)
        return 0;
    Py_ssize_t pos = 0;
    PyObject *key, *item;
    for (Py_ssize_t i = 1; i < size; i += 2) {
        if (!PyDict_Next(value, &pos, &key, &item) || Py_TYPE(key) != &PyUnicode_Type)
            return 0;
        PyObject *f = PyTuple_GET_ITEM(frozen, i);
        int r = f == key ? 1 : match_atom(f, key);
        if (r != 1)
            return r;
        f = PyTuple_GET_ITEM(frozen, i + 1);
        r = match_atom(f, item);
        if (r == 2)
            r = matches(f, item, depth + 1);
        if (r != 1)
            return r;
    }
    return 1;
}

static PyObject *
simcore_matches(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "matches(frozen, value) takes 2 arguments");
        return NULL;
    }
    int r = matches(args[0], args[1], 0);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

/* common(frozen_items, values) -> int: how many leading items of the list `values` match the
 * frozen items (a list of freeze() results). */
static PyObject *
simcore_common(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "common(frozen: list, values: list)");
        return NULL;
    }
    PyObject *frozen = args[0], *values = args[1];
    Py_ssize_t i = 0;
    for (;; i++) {
        if (i >= PyList_GET_SIZE(frozen) || i >= PyList_GET_SIZE(values))
            break;
        PyObject *a = PyList_GET_ITEM(frozen, i), *b = PyList_GET_ITEM(values, i);
        Py_INCREF(a);
        Py_INCREF(b);
        int r = matches(a, b, 0);
        Py_DECREF(a);
        Py_DECREF(b);
        if (r < 0)
            return NULL;
        if (r == 0)
            break;
    }
    return PyLong_FromSsize_t(i);
}

/* ---- block digest and token estimate ------------------------------------------------------ */

static PyObject *
simcore_digest_count(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "digest_count(text, seed, factor, chars_per_token, punct_weight, "
                        "newline_weight, non_ascii_weight, punct) takes 8 arguments");
        return NULL;
    }
    PyObject *text = args[0];
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "text must be str, not %.100s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    unsigned long long seed = PyLong_AsUnsignedLongLong(args[1]);
    if (seed == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    double params[5];
    for (int i = 0; i < 5; i++) {
        params[i] = PyFloat_AsDouble(args[2 + i]);
        if (params[i] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    if (!PyBytes_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "punct must be bytes");
        return NULL;
    }
    /* per byte: +1 for punctuation, +2**32 for a newline, summed in one 64-bit counter; the
     * table is rebuilt only when the punctuation set changes */
    static uint64_t weight[256];
    static char table_for[256];
    static Py_ssize_t table_size = -1;
    Py_ssize_t punct_size = PyBytes_GET_SIZE(args[7]);
    const char *punct = PyBytes_AS_STRING(args[7]);
    if (punct_size != table_size || punct_size > 256 || memcmp(table_for, punct, punct_size)) {
        memset(weight, 0, sizeof(weight));
        for (Py_ssize_t i = 0; i < punct_size; i++)
            weight[(unsigned char)punct[i]] = 1;
        weight['\n'] += (uint64_t)1 << 32;
        if (punct_size <= 256) {
            memcpy(table_for, punct, punct_size);
            table_size = punct_size;
        }
        else
            table_size = -1;
    }

    Py_ssize_t size;
    const char *data = PyUnicode_AsUTF8AndSize(text, &size);
    if (data == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return NULL;
    }
    uint64_t digest = XXH3_64bits_withSeed(data, (size_t)size, (XXH64_hash_t)seed);
    long long tokens = 0;
    Py_ssize_t chars = PyUnicode_GET_LENGTH(text);
    if (chars) {
        const unsigned char *p = (const unsigned char *)data;
        Py_ssize_t punct_count = 0, newlines = 0;
        for (Py_ssize_t start = 0; start < size; start += 0x40000000) { /* no carry past 32 bits */
            Py_ssize_t end = size - start > 0x40000000 ? start + 0x40000000 : size;
            uint64_t sum = 0, sum1 = 0, sum2 = 0, sum3 = 0;
            Py_ssize_t i = start;
            for (; i + 4 <= end; i += 4) { /* four independent sums: fewer steps per byte */
                sum += weight[p[i]];
                sum1 += weight[p[i + 1]];
                sum2 += weight[p[i + 2]];
                sum3 += weight[p[i + 3]];
            }
            for (; i < end; i++)
                sum += weight[p[i]];
            sum += sum1 + sum2 + sum3;
            punct_count += (Py_ssize_t)(sum & 0xFFFFFFFFu);
            newlines += (Py_ssize_t)(sum >> 32);
        }
        Py_ssize_t extra = size - chars;
        Py_ssize_t plain = chars - punct_count - newlines;
        /* the same operations in the same order as EstimatingCounter.count (IEEE doubles) */
        double estimate = (double)plain / params[1] + (double)punct_count * params[2] +
                          (double)newlines * params[3] + (double)extra * params[4];
        double rounded = ceil(estimate * params[0]);
        if (!(rounded < 9.0e18) ) {
            PyErr_SetString(PyExc_OverflowError, "token estimate out of range");
            return NULL;
        }
        tokens = (long long)rounded;
        if (tokens < 1)
            tokens = 1;
    }
    PyObject *d = PyLong_FromUnsignedLongLong(digest);
    if (d == NULL)
        return NULL;
    PyObject *t = PyLong_FromLongLong(tokens);
    if (t == NULL) {
        Py_DECREF(d);
        return NULL;
    }
    PyObject *result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(d);
        Py_DECREF(t);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, d);
    PyTuple_SET_ITEM(result, 1, t);
    return result;
}

/* ---- the segment of a plain text message --------------------------------------------------- *
 * text_message(message, user, assistant, max_entries, estimator) -> segment | None
 *
 * The fast path of cachescope.sim._plan._message_segment for the common shapes: an exact dict
 * whose role is exactly "user" or "assistant" and whose content is a non-empty str, or a list of
 * one exact dict {"type": "text", "text": <non-empty str>} with at most a cache_control that is
 * an exact dict {"type": "ephemeral"} with an optional ttl (None, "5m" or "1h"). `user` and
 * `assistant` are that role's (seed, {text: (digest, tokens)}) memo; `estimator` the constants
 * of digest_count. Anything else — or a new text without a UTF-8 form — gives None and the
 * caller takes the Python path, which handles every shape (and raises the API's errors). */

static PyObject *s_role, *s_content, *s_type, *s_text, *s_cache_control, *s_ttl, *s_user,
    *s_assistant, *s_ephemeral, *s_5m, *s_1h, *s_path_content, *s_path_content0;

static int
is_exact(PyObject *obj, PyObject *literal)
{
    if (obj == NULL || Py_TYPE(obj) != &PyUnicode_Type)
        return 0;
    if (obj == literal)
        return 1;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(obj) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    /* equal strings have equal lengths and kinds (PEP 393 picks the narrowest) */
    Py_ssize_t n = PyUnicode_GET_LENGTH(literal);
    return PyUnicode_GET_LENGTH(obj) == n && PyUnicode_KIND(obj) == PyUnicode_KIND(literal) &&
           memcmp(PyUnicode_DATA(obj), PyUnicode_DATA(literal),
                  (size_t)n * PyUnicode_KIND(literal)) == 0;
}

/* A borrowed dict item, NULL when missing (or on an error, with the exception set). */
static PyObject *
get_item(PyObject *dict, PyObject *key)
{
    return PyDict_GetItemWithError(dict, key);
}

/* The parts of a plain text message's segment: 1 with `out` filled (out->found a new
 * reference), 0 when the message has another shape, -1 on error. */
typedef struct {
    PyObject *found;    /* (digest, tokens) */
    uint64_t word;      /* the digest as a native 64-bit word */
    PyObject *cc;       /* borrowed: the block's cache_control, NULL for none */
    PyObject *path;     /* borrowed: "content" or "content.0" */
    PyObject *ttl_name; /* borrowed: the breakpoint's ttl name (with cc) */
    double seconds;
} TextParts;

static int
text_parts(PyObject *self, PyObject *const *args, TextParts *out)
{
    PyObject *message = args[0];
    if (Py_TYPE(message) != &PyDict_Type)
        return 0;
    PyObject *role = get_item(message, s_role);
    if (role == NULL) {
        if (PyErr_Occurred())
            return -1;
        return 0;
    }
    PyObject *memo;
    if (is_exact(role, s_user))
        memo = args[1];
    else if (is_exact(role, s_assistant))
        memo = args[2];
    else
        return 0;
    if (!PyTuple_Check(memo) || PyTuple_GET_SIZE(memo) != 2 ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(memo, 1))) {
        PyErr_SetString(PyExc_TypeError, "a role's memo must be (seed, dict)");
        return -1;
    }
    Py_ssize_t max_entries = PyLong_AsSsize_t(args[3]);
    if (max_entries == -1 && PyErr_Occurred())
        return -1;
    PyObject *estimator = args[4];
    if (!PyTuple_Check(estimator) || PyTuple_GET_SIZE(estimator) != 6) {
        PyErr_SetString(PyExc_TypeError, "estimator must be a 6-tuple");
        return -1;
    }

    PyObject *content = get_item(message, s_content);
    if (content == NULL) {
        if (PyErr_Occurred())
            return -1;
        return 0;
    }
    PyObject *text, *cc = NULL, *path;
    if (Py_TYPE(content) == &PyUnicode_Type) {
        if (PyUnicode_GET_LENGTH(content) == 0)
            return 0;
        text = content;
        path = s_path_content;
    }
    else if (Py_TYPE(content) == &PyList_Type && PyList_GET_SIZE(content) == 1) {
        PyObject *item = PyList_GET_ITEM(content, 0);
        if (Py_TYPE(item) != &PyDict_Type)
            return 0;
        PyObject *kind = get_item(item, s_type);
        if (kind == NULL && PyErr_Occurred())
            return -1;
        if (!is_exact(kind, s_text))
            return 0;
        text = get_item(item, s_text);
        if (text == NULL && PyErr_Occurred())
            return -1;
        if (text == NULL || Py_TYPE(text) != &PyUnicode_Type || PyUnicode_GET_LENGTH(text) == 0)
            return 0;
        cc = get_item(item, s_cache_control);
        if (cc == NULL && PyErr_Occurred())
            return -1;
        if (cc == Py_None)
            cc = NULL;
        if (PyDict_GET_SIZE(item) != 2 + (cc != NULL))
            return 0;
        path = s_path_content0;
    }
    else
        return 0;

    /* the breakpoint's verdict, for the plain forms only */
    PyObject *ttl_name = NULL;
    double seconds = 0.0;
    if (cc != NULL) {
        if (Py_TYPE(cc) != &PyDict_Type)
            return 0;
        PyObject *cc_type = get_item(cc, s_type);
        if (cc_type == NULL && PyErr_Occurred())
            return -1;
        if (!is_exact(cc_type, s_ephemeral))
            return 0;
        PyObject *ttl = get_item(cc, s_ttl);
        if (ttl == NULL && PyErr_Occurred())
            return -1;
        if (ttl == NULL || ttl == Py_None) {
            ttl_name = s_5m;
            seconds = 300.0;
        }
        else if (Py_TYPE(ttl) == &PyUnicode_Type && PyUnicode_GET_LENGTH(ttl) == 0) {
            ttl_name = s_5m; /* `cc.get("ttl") or "5m"` */
            seconds = 300.0;
        }
        else if (is_exact(ttl, s_5m)) {
            ttl_name = ttl;
            seconds = 300.0;
        }
        else if (is_exact(ttl, s_1h)) {
            ttl_name = ttl;
            seconds = 3600.0;
        }
        else
            return 0;
    }

    /* (digest, tokens) from the role's text memo, or hashed and counted now */
    PyObject *table = PyTuple_GET_ITEM(memo, 1);
    PyObject *found = PyDict_GetItemWithError(table, text);
    if (found == NULL) {
        if (PyErr_Occurred())
            return -1;
        PyObject *call_args[8] = {text, PyTuple_GET_ITEM(memo, 0)};
        for (int i = 0; i < 6; i++)
            call_args[2 + i] = PyTuple_GET_ITEM(estimator, i);
        PyObject *computed = simcore_digest_count(self, call_args, 8);
        if (computed == NULL)
            return -1;
        if (computed == Py_None) {
            Py_DECREF(computed);
            return 0; /* no UTF-8 form: the Python path hashes it */
        }
        if (PyDict_GET_SIZE(table) >= max_entries)
            PyDict_Clear(table);
        if (PyDict_SetItem(table, text, computed) < 0) {
            Py_DECREF(computed);
            return -1;
        }
        Py_DECREF(computed); /* the table holds it */
        found = computed;
    }
    if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 2) {
        PyErr_SetString(PyExc_TypeError, "a text memo entry must be (digest, tokens)");
        return -1;
    }
    unsigned long long value = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(found, 0));
    if (value == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    Py_INCREF(found);
    out->found = found;
    out->word = (uint64_t)value; /* native byte order, like int.to_bytes(8, sys.byteorder) */
    out->cc = cc;
    out->path = path;
    out->ttl_name = ttl_name;
    out->seconds = seconds;
    return 1;

}

static PyObject *
simcore_text_message(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "text_message(message, user, assistant, max_entries, estimator)");
        return NULL;
    }
    TextParts parts;
    int r = text_parts(self, args, &parts);
    if (r < 0)
        return NULL;
    if (r == 0)
        Py_RETURN_NONE;
    PyObject *found = parts.found, *cc = parts.cc, *path = parts.path, *ttl_name = parts.ttl_name;
    PyObject *digest = PyTuple_GET_ITEM(found, 0), *tokens = PyTuple_GET_ITEM(found, 1);
    uint64_t word = parts.word;
    double seconds = parts.seconds;

    /* ((digest,), (tokens,), packed, marks, (0, cc, path), False, False, ()) */
    PyObject *cc_copy = NULL, *marks = NULL, *eligible = NULL, *packed = NULL;
    PyObject *digests = NULL, *counts = NULL, *result = NULL;
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        goto done;
    if (cc != NULL) {
        cc_copy = PyDict_Copy(cc);
        if (cc_copy == NULL)
            goto done;
        PyObject *secs = PyFloat_FromDouble(seconds);
        if (secs == NULL)
            goto done;
        PyObject *verdict = PyTuple_Pack(2, secs, ttl_name);
        Py_DECREF(secs);
        if (verdict == NULL)
            goto done;
        PyObject *mark = PyTuple_Pack(4, zero, cc_copy, path, verdict);
        Py_DECREF(verdict);
        if (mark == NULL)
            goto done;
        marks = PyTuple_Pack(1, mark);
        Py_DECREF(mark);
    }
    else
        marks = PyTuple_New(0);
    if (marks == NULL)
        goto done;
    eligible = PyTuple_Pack(3, zero, cc_copy != NULL ? cc_copy : Py_None, path);
    packed = PyBytes_FromStringAndSize((const char *)&word, 8);
    digests = PyTuple_Pack(1, digest);
    counts = PyTuple_Pack(1, tokens);
    if (eligible == NULL || packed == NULL || digests == NULL || counts == NULL)
        goto done;
    result = PyTuple_New(8);
    if (result == NULL)
        goto done;
    PyObject *empty = PyTuple_New(0);
    if (empty == NULL) {
        Py_CLEAR(result);
        goto done;
    }
    PyTuple_SET_ITEM(result, 0, digests);
    PyTuple_SET_ITEM(result, 1, counts);
    PyTuple_SET_ITEM(result, 2, packed);
    PyTuple_SET_ITEM(result, 3, marks);
    PyTuple_SET_ITEM(result, 4, eligible);
    Py_INCREF(Py_False);
    PyTuple_SET_ITEM(result, 5, Py_False);
    Py_INCREF(Py_False);
    PyTuple_SET_ITEM(result, 6, Py_False);
    PyTuple_SET_ITEM(result, 7, empty);
    /* memo entries that live long: untracked now rather than after a collector pass */
    untrack_if_only_atoms(digests);
    untrack_if_only_atoms(counts);
    untrack_if_only_atoms(eligible);
    untrack_if_only_atoms(marks);
    untrack_if_only_atoms(result);
    digests = counts = packed = marks = eligible = NULL; /* owned by result */
done:
    Py_DECREF(found);
    Py_XDECREF(zero);
    Py_XDECREF(cc_copy);
    Py_XDECREF(marks);
    Py_XDECREF(eligible);
    Py_XDECREF(packed);
    Py_XDECREF(digests);
    Py_XDECREF(counts);
    return result;
}

/* ---- the read windows ----------------------------------------------------------------------- *
 * lookback(keyed, breakpoints, units, tools_end, system_end, entries, now, grace, lookback,
 *          same_ttl_only, keys) -> int
 *
 * The reads of cachescope.sim._simulator.Simulator._evaluate: one window per breakpoint, the
 * last first, longest live and available hit wins; the prefix key of position p is the xxh3-64
 * of keyed[:(p + 2 + (p >= tools_end) + (p >= system_end)) * 8], cached in `keys` (p -> key).
 * Returns the hit position, -1 for none, or -2 when a number is not a float (or an int a double
 * holds exactly) — then the caller runs its Python loop, which compares them exactly. */

static int
as_double(PyObject *obj, double *out)
{
    if (PyFloat_CheckExact(obj)) {
        *out = PyFloat_AS_DOUBLE(obj);
        return 1;
    }
    if (PyLong_CheckExact(obj)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (overflow || v > (1LL << 52) || v < -(1LL << 52)) /* sums stay exact */
            return 0;
        *out = (double)v;
        return 1;
    }
    return 0;
}

static PyObject *
simcore_lookback(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11 || !PyBytes_Check(args[0]) || !PyList_Check(args[1]) ||
        !(args[2] == Py_None || PyList_Check(args[2])) || !PyDict_Check(args[5]) ||
        !PyDict_Check(args[10])) {
        PyErr_SetString(PyExc_TypeError,
                        "lookback(keyed: bytes, breakpoints: list, units: list | None, "
                        "tools_end, system_end, entries: dict, now, grace, lookback, "
                        "same_ttl_only, keys: dict)");
        return NULL;
    }
    PyObject *keyed = args[0], *breakpoints = args[1], *units = args[2];
    PyObject *entries = args[5], *keys = args[10];
    Py_ssize_t tools_end = PyLong_AsSsize_t(args[3]);
    if (tools_end == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t system_end = PyLong_AsSsize_t(args[4]);
    if (system_end == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t window = PyLong_AsSsize_t(args[8]);
    if (window == -1 && PyErr_Occurred())
        return NULL;
    int same_ttl_only = PyObject_IsTrue(args[9]);
    if (same_ttl_only < 0)
        return NULL;
    double now, grace;
    int r = as_double(args[6], &now);
    if (r <= 0)
        return r < 0 ? NULL : PyLong_FromLong(-2);
    r = as_double(args[7], &grace);
    if (r <= 0)
        return r < 0 ? NULL : PyLong_FromLong(-2);
    const char *words = PyBytes_AS_STRING(keyed);
    Py_ssize_t word_count = PyBytes_GET_SIZE(keyed) / 8;

    Py_ssize_t best = -1;
    for (Py_ssize_t b = PyList_GET_SIZE(breakpoints) - 1; b >= 0; b--) {
        PyObject *mark = PyList_GET_ITEM(breakpoints, b);
        if (!PyTuple_Check(mark) || PyTuple_GET_SIZE(mark) != 3) {
            PyErr_SetString(PyExc_TypeError, "a breakpoint must be (position, ttl, name)");
            return NULL;
        }
        Py_ssize_t position = PyLong_AsSsize_t(PyTuple_GET_ITEM(mark, 0));
        if (position == -1 && PyErr_Occurred())
            return NULL;
        double ttl;
        r = as_double(PyTuple_GET_ITEM(mark, 1), &ttl);
        if (r <= 0)
            return r < 0 ? NULL : PyLong_FromLong(-2);
        if (position <= best)
            break;
        Py_ssize_t p = position, stop, top_unit = 0;
        if (units == Py_None)
            stop = position - window > best ? position - window : best;
        else {
            stop = best;
            if (position < 0 || position >= PyList_GET_SIZE(units)) {
                PyErr_SetString(PyExc_IndexError, "units: position out of range");
                return NULL;
            }
            top_unit = PyLong_AsSsize_t(PyList_GET_ITEM(units, position));
            if (top_unit == -1 && PyErr_Occurred())
                return NULL;
        }
        for (; p > stop; p--) {
            if (units != Py_None) {
                if (p >= PyList_GET_SIZE(units)) {
                    PyErr_SetString(PyExc_IndexError, "units: position out of range");
                    return NULL;
                }
                Py_ssize_t unit = PyLong_AsSsize_t(PyList_GET_ITEM(units, p));
                if (unit == -1 && PyErr_Occurred())
                    return NULL;
                if (top_unit - unit >= window)
                    break;
            }
            PyObject *p_obj = PyLong_FromSsize_t(p);
            if (p_obj == NULL)
                return NULL;
            PyObject *key = PyDict_GetItemWithError(keys, p_obj);
            if (key != NULL)
                Py_INCREF(key);
            else {
                if (PyErr_Occurred()) {
                    Py_DECREF(p_obj);
                    return NULL;
                }
                Py_ssize_t index = p + 2 + (p >= tools_end) + (p >= system_end);
                if (index < 0 || index > word_count) {
                    Py_DECREF(p_obj);
                    PyErr_SetString(PyExc_IndexError, "position beyond the keyed digests");
                    return NULL;
                }
                key = PyLong_FromUnsignedLongLong(XXH3_64bits(words, (size_t)index * 8));
                if (key == NULL || PyDict_SetItem(keys, p_obj, key) < 0) {
                    Py_XDECREF(key);
                    Py_DECREF(p_obj);
                    return NULL;
                }
            }
            Py_DECREF(p_obj);
            PyObject *entry = PyDict_GetItemWithError(entries, key);
            Py_DECREF(key);
            if (entry == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                continue;
            }
            if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 4) {
                PyErr_SetString(PyExc_TypeError, "a cache entry must be a 4-tuple");
                return NULL;
            }
            double expires, available, entry_ttl;
            if ((r = as_double(PyTuple_GET_ITEM(entry, 1), &expires)) <= 0 ||
                (r = as_double(PyTuple_GET_ITEM(entry, 2), &available)) <= 0 ||
                (r = as_double(PyTuple_GET_ITEM(entry, 3), &entry_ttl)) <= 0)
                return r < 0 ? NULL : PyLong_FromLong(-2);
            if (available <= now && now < expires + grace && (!same_ttl_only || entry_ttl == ttl)) {
                best = p;
                break;
            }
        }
    }
    return PyLong_FromSsize_t(best);
}

/* ---- the whole request in one call ------------------------------------------------------- *
 * handle(sim, body, api_key) -> (message, ttft_ms, total_ms) | None
 *
 * cachescope.sim._simulator.Simulator.process for the common request shape, in one call: the
 * plan (unchanged tools/system by comparison with last request's frozen copy, the messages'
 * shared prefix from the conversation's snapshot, new messages segmented and memoized exactly as
 * _plan.plan does), the reads (lookback), usage, the default reply, the commit of cache entries,
 * the Message JSON, the diagnostics record and the clock. It reads and writes the same memo and
 * workspace structures as the Python path, which stays the twin: for anything else — another
 * request key, a retired or unknown model, a responder, concurrency, a custom clock, images,
 * citations, server tools, an invalid breakpoint or message, a number that is not a float where
 * the simulator writes floats — it returns None *before changing anything but memo tables* and
 * the caller runs the Python path (so the API's error texts live in one place).
 *
 * The settings it needs come from sim._fast_config, a tuple Simulator._fast_learn builds:
 *   (settings, models, clock, fast_models {name: (model_id, memo, minimum, tools_seed)},
 *    workspaces, grace, lookback, same_ttl_only, refresh_reached, segment_minimum,
 *    latency_base_ms, per_uncached, per_cached, per_output, delay_availability,
 *    after_mode (0 nothing, 1 clock.advance, 2 sim._after), id_prefix, ids, diagnostics_history,
 *    words, snapshot class, message_segment, conversations, empty_settings, clock_mode
 *    (0: read VirtualClock._now, 1: call clock.now()))
 * and it is used only while sim.settings, sim.models and sim.clock are those objects, there is
 * no responder and no concurrent block. */

static PyObject *s_fast_config, *s_settings, *s_models, *s_clock, *s_responder,
    *s_concurrent_depth, *s_model, *s_max_tokens, *s_messages, *s_system, *s_systems, *s_tools,
    *s_metadata, *s_stream, *s_temperature, *s_top_p, *s_top_k, *s_stop_sequences, *s_last,
    *s_snapshots, *s_raw, *s_states, *s_marks, *s_tokens, *s_packed, *s_first, *s_ends,
    *s_fast_text, *s_estimator, *s_max_entries, *s_entries, *s_records, *s_now, *s__now,
    *s_requests, *s_popitem, *s_standard, *s_message, *s_end_turn, *s_max_tokens_reason,
    *f_300, *f_3600, *s__lock, *s_acquire, *s_release, *s_advance, *s__after, *s_ctokens,
    *s_id, *s_tool_use, *s_tool_result, *s_tool_use_id;

static PyObject *k_message[8], *k_usage[6], *k_cache_creation[2], *k_block[2];
static const char *k_message_names[8] = {"id", "type", "role", "model", "content",
                                         "stop_reason", "stop_sequence", "usage"};
static const char *k_usage_names[6] = {"input_tokens", "cache_creation_input_tokens",
                                       "cache_read_input_tokens", "cache_creation",
                                       "output_tokens", "service_tier"};
static const char *k_cache_creation_names[2] = {"ephemeral_5m_input_tokens",
                                                "ephemeral_1h_input_tokens"};
static const char *k_block_names[2] = {"type", "text"};

#define FAST_CONFIG_SIZE 25
#define MAX_FAST_BREAKPOINTS 4

/* exact str equality (no Python code) */
static int
str_eq(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    if (Py_TYPE(a) != &PyUnicode_Type || Py_TYPE(b) != &PyUnicode_Type)
        return 0;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(a) < 0 || PyUnicode_READY(b) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    return n == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b) &&
           memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * PyUnicode_KIND(a)) == 0;
}

/* an exact int as long long; 1 ok, 0 not an exact int or out of range */
static int
exact_ll(PyObject *obj, long long *out)
{
    if (obj == NULL || Py_TYPE(obj) != &PyLong_Type)
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = v;
    return 1;
}

/* a cache entry (tokens, expires, available, ttl) with float-comparable numbers; 1 ok, 0 not */
static int
entry_numbers(PyObject *entry, double *expires, double *available, double *ttl)
{
    if (Py_TYPE(entry) != &PyTuple_Type || PyTuple_GET_SIZE(entry) != 4)
        return 0;
    if (as_double(PyTuple_GET_ITEM(entry, 1), expires) != 1 ||
        as_double(PyTuple_GET_ITEM(entry, 2), available) != 1 ||
        as_double(PyTuple_GET_ITEM(entry, 3), ttl) != 1) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

typedef struct {
    Py_ssize_t position;
    PyObject *seconds; /* borrowed: the verdict's float */
    PyObject *name;    /* borrowed: "5m" / "1h" */
} FastBreakpoint;

typedef struct {
    uint64_t *words; /* keyed digests: seed0, tools, seed1, system, seed2, messages */
    Py_ssize_t tools_end, system_end, positions;
    uint64_t *keys;
    char *have_key;
} FastKeys;

static uint64_t
fast_key(FastKeys *k, Py_ssize_t p)
{
    if (!k->have_key[p]) {
        Py_ssize_t index = p + 2 + (p >= k->tools_end) + (p >= k->system_end);
        k->keys[p] = XXH3_64bits(k->words, (size_t)index * 8);
        k->have_key[p] = 1;
    }
    return k->keys[p];
}

/* A segment tuple's parts, checked: (digests, tokens, packed, marks, eligible, images,
 * citations, toggles). 1 ok, 0 unusual (fall back). */
static int
segment_parts(PyObject *seg, PyObject **tokens, PyObject **packed, PyObject **marks,
              PyObject **eligible, int *flags, PyObject **toggles)
{
    if (Py_TYPE(seg) != &PyTuple_Type || PyTuple_GET_SIZE(seg) != 8)
        return 0;
    *tokens = PyTuple_GET_ITEM(seg, 1);
    *packed = PyTuple_GET_ITEM(seg, 2);
    *marks = PyTuple_GET_ITEM(seg, 3);
    *eligible = PyTuple_GET_ITEM(seg, 4);
    *toggles = PyTuple_GET_ITEM(seg, 7);
    if (Py_TYPE(*tokens) != &PyTuple_Type || Py_TYPE(*packed) != &PyBytes_Type ||
        PyBytes_GET_SIZE(*packed) != 8 * PyTuple_GET_SIZE(*tokens) ||
        Py_TYPE(*marks) != &PyTuple_Type || Py_TYPE(*toggles) != &PyTuple_Type ||
        (*eligible != Py_None &&
         (Py_TYPE(*eligible) != &PyTuple_Type || PyTuple_GET_SIZE(*eligible) != 3)))
        return 0;
    PyObject *images = PyTuple_GET_ITEM(seg, 5), *citations = PyTuple_GET_ITEM(seg, 6);
    if ((images != Py_False && images != Py_True) ||
        (citations != Py_False && citations != Py_True))
        return 0;
    *flags = (images == Py_True) | ((citations == Py_True) << 1);
    return 1;
}

/* The memoized segment of tools or system when it is what it was last request (a structural
 * comparison with the frozen copy), else NULL (fall back). Borrowed. -1 on error via *error. */
static PyObject *
same_as_last(PyObject *memo, PyObject *table_name, PyObject *value, int *error)
{
    PyObject *table = PyObject_GetAttr(memo, table_name);
    if (table == NULL) {
        *error = 1;
        return NULL;
    }
    PyObject *last_map = PyObject_GetAttr(memo, s_last);
    if (last_map == NULL) {
        Py_DECREF(table);
        *error = 1;
        return NULL;
    }
    PyObject *result = NULL;
    PyObject *id = PyLong_FromVoidPtr(table);
    if (id == NULL) {
        *error = 1;
        goto done;
    }
    PyObject *last = PyDict_Check(last_map) ? PyDict_GetItemWithError(last_map, id) : NULL;
    Py_DECREF(id);
    if (last == NULL) {
        if (PyErr_Occurred())
            *error = 1;
        goto done;
    }
    if (Py_TYPE(last) != &PyTuple_Type || PyTuple_GET_SIZE(last) != 2)
        goto done;
    int r = matches(PyTuple_GET_ITEM(last, 0), value, 0);
    if (r < 0) {
        *error = 1;
        goto done;
    }
    if (r == 1)
        result = PyTuple_GET_ITEM(last, 1); /* borrowed: memo.last keeps it alive for the call */
done:
    Py_DECREF(table);
    Py_DECREF(last_map);
    return result;
}

/* struct_hash into a reused scratch buffer (no Python code runs while it is in use, and the
 * GIL is held). */
static Buffer scratch = {NULL, 0, 0};

static PyObject *
struct_digest(PyObject *obj, int *unsupported)
{
    scratch.size = 0;
    int r = encode(&scratch, obj, 0);
    unsigned char out[16];
    if (r == 0)
        digest_of(&scratch, out);
    if (scratch.capacity > (1 << 20)) { /* do not keep a huge one */
        PyMem_Free(scratch.data);
        scratch.data = NULL;
        scratch.capacity = 0;
    }
    scratch.size = 0;
    if (r != 0) {
        if (r > 0)
            *unsupported = 1;
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

/* default_reply(seed, words) -> (text, tokens): cachescope.sim._responder.default_reply */
static PyObject *
reply_text(uint64_t seed, PyObject *words, long long *tokens)
{
    uint64_t h = seed & 0xFFFFFFFFFFFFULL;
    char hex[16];
    for (int i = 0; i < 6; i++) /* "%06x" of the low 24 bits */
        hex[i] = "0123456789abcdef"[(h >> (4 * (5 - i))) & 0xF];
    hex[6] = 0;
    *tokens = 12 + (long long)(h % 181);
    PyObject *chosen[6];
    Py_ssize_t length = 17 + 6 + 1 + 6 + 1; /* "(simulated reply ", hex, ")", 6 spaces, "." */
    int ascii = 1;
    for (int i = 0; i < 6; i++) {
        chosen[i] = PyTuple_GET_ITEM(words, (h >> (4 * i)) % 12);
        ascii = ascii && PyUnicode_IS_ASCII(chosen[i]);
        length += PyUnicode_GET_LENGTH(chosen[i]);
    }
    if (ascii && strlen(hex) == 6) {
        PyObject *text = PyUnicode_New(length, 127);
        if (text == NULL)
            return NULL;
        char *out = (char *)PyUnicode_1BYTE_DATA(text);
        memcpy(out, "(simulated reply ", 17);
        memcpy(out + 17, hex, 6);
        out[23] = ')';
        Py_ssize_t at = 24;
        for (int i = 0; i < 6; i++) {
            out[at++] = ' ';
            Py_ssize_t n = PyUnicode_GET_LENGTH(chosen[i]);
            memcpy(out + at, PyUnicode_1BYTE_DATA(chosen[i]), (size_t)n);
            at += n;
        }
        out[at++] = '.';
        if (at != length) {
            Py_DECREF(text);
            PyErr_SetString(PyExc_SystemError, "default reply length");
            return NULL;
        }
        return text;
    }
    return PyUnicode_FromFormat(
        "(simulated reply %s) %U %U %U %U %U %U.", hex, PyTuple_GET_ITEM(words, h % 12),
        PyTuple_GET_ITEM(words, (h >> 4) % 12), PyTuple_GET_ITEM(words, (h >> 8) % 12),
        PyTuple_GET_ITEM(words, (h >> 12) % 12), PyTuple_GET_ITEM(words, (h >> 16) % 12),
        PyTuple_GET_ITEM(words, (h >> 20) % 12));
}

static PyObject *
simcore_default_reply(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyLong_Check(args[0]) || !PyTuple_Check(args[1]) ||
        PyTuple_GET_SIZE(args[1]) != 12) {
        PyErr_SetString(PyExc_TypeError, "default_reply(seed: int, words: 12-tuple of str)");
        return NULL;
    }
    for (int i = 0; i < 12; i++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(args[1], i))) {
            PyErr_SetString(PyExc_TypeError, "words must be str");
            return NULL;
        }
    uint64_t seed = (uint64_t)PyLong_AsUnsignedLongLongMask(args[0]);
    if (seed == (uint64_t)-1 && PyErr_Occurred())
        return NULL;
    long long tokens;
    PyObject *text = reply_text(seed, args[1], &tokens);
    if (text == NULL)
        return NULL;
    return Py_BuildValue("(NL)", text, tokens);
}

/* one entry tuple from C numbers and reused objects (each argument: an object or NULL and a
 * double to make one from) */
static PyObject *
entry_tuple(PyObject *tokens, PyObject *expires_obj, double expires, PyObject *available_obj,
            double available, PyObject *ttl_obj, double ttl)
{
    PyObject *t = PyTuple_New(4);
    if (t == NULL)
        return NULL;
    PyObject *items[4] = {tokens, expires_obj, available_obj, ttl_obj};
    double values[4] = {0.0, expires, available, ttl};
    for (int i = 0; i < 4; i++) {
        PyObject *item = items[i];
        if (item != NULL)
            Py_INCREF(item);
        else if ((item = PyFloat_FromDouble(values[i])) == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, item);
    }
    untrack_if_only_atoms(t); /* numbers: never part of a cycle */
    return t;
}



/* a tuple of new references (stolen, also on failure) */
static PyObject *
tuple_of(Py_ssize_t n, PyObject **items)
{
    PyObject *t = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (items[i] == NULL)
            goto fail;
    t = PyTuple_New(n);
    if (t == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(t, i, items[i]);
    untrack_if_only_atoms(t); /* the collector would, after traversing it once */
    return t;
fail:
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

/* a dict from interned keys and new references (stolen, also on failure) */
static PyObject *
dict_of(Py_ssize_t n, PyObject *const *keys, PyObject **values)
{
    PyObject *dict = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (values[i] == NULL)
            goto done;
    dict = PyDict_New();
    if (dict == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyDict_SetItem(dict, keys[i], values[i]) < 0) {
            Py_CLEAR(dict);
            break;
        }
done:
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(values[i]);
    return dict;
}

static PyObject *
new_ref(PyObject *obj)
{
    Py_INCREF(obj);
    return obj;
}

/* The Message JSON, as Simulator._process builds it (same keys, same order). */
static PyObject *
response(PyObject *message_id, PyObject *model_id, PyObject *reply, PyObject *stop_reason,
         long long input_tokens, long long write_5m, long long write_1h, long long read,
         long long output_tokens)
{
    PyObject *cache_creation_values[2] = {PyLong_FromLongLong(write_5m),
                                          PyLong_FromLongLong(write_1h)};
    PyObject *usage_values[6] = {
        PyLong_FromLongLong(input_tokens),
        PyLong_FromLongLong(write_5m + write_1h),
        PyLong_FromLongLong(read),
        dict_of(2, k_cache_creation, cache_creation_values),
        PyLong_FromLongLong(output_tokens),
        new_ref(s_standard),
    };
    PyObject *block_values[2] = {new_ref(s_text), new_ref(reply)};
    PyObject *block = dict_of(2, k_block, block_values);
    PyObject *content = block == NULL ? NULL : PyList_New(1);
    if (content != NULL)
        PyList_SET_ITEM(content, 0, block);
    else
        Py_XDECREF(block);
    PyObject *message_values[8] = {
        new_ref(message_id), new_ref(s_message), new_ref(s_assistant), new_ref(model_id),
        content, new_ref(stop_reason), new_ref(Py_None), dict_of(6, k_usage, usage_values),
    };
    return dict_of(8, k_message, message_values);
}


/* clock.advance(seconds) — for an exact VirtualClock, its body in C when its lock is free
 * (`with self._lock: self._now += step`), else the method itself. 0 ok, 1 error. */
static int
advance_clock(PyObject *clock, long clock_mode, double seconds)
{
    if (clock_mode == 0 && seconds >= 0) {
        PyObject *lock = PyObject_GetAttr(clock, s__lock);
        if (lock == NULL)
            return 1;
        PyObject *got = PyObject_CallMethodOneArg(lock, s_acquire, Py_False);
        if (got == NULL) {
            Py_DECREF(lock);
            return 1;
        }
        int acquired = got == Py_True;
        Py_DECREF(got);
        if (acquired) {
            int bad = 0;
            PyObject *now = PyObject_GetAttr(clock, s__now);
            if (now == NULL || Py_TYPE(now) != &PyFloat_Type)
                bad = 1;
            else {
                PyObject *moved = PyFloat_FromDouble(PyFloat_AS_DOUBLE(now) + seconds);
                bad = moved == NULL || PyObject_SetAttr(clock, s__now, moved) < 0;
                Py_XDECREF(moved);
            }
            Py_XDECREF(now);
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyObject *released = PyObject_CallMethodNoArgs(lock, s_release);
            Py_DECREF(lock);
            if (released == NULL) {
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(traceback);
                return 1;
            }
            Py_DECREF(released);
            PyErr_Restore(type, value, traceback);
            return bad;
        }
        Py_DECREF(lock);
    }
    PyObject *seconds_obj = PyFloat_FromDouble(seconds);
    if (seconds_obj == NULL)
        return 1;
    PyObject *done = PyObject_CallMethodOneArg(clock, s_advance, seconds_obj);
    Py_DECREF(seconds_obj);
    Py_XDECREF(done);
    return done == NULL;
}

static int
call_after(PyObject *sim, double total_ms)
{
    PyObject *arg = PyFloat_FromDouble(total_ms);
    if (arg == NULL)
        return 1;
    PyObject *done = PyObject_CallMethodOneArg(sim, s__after, arg);
    Py_DECREF(arg);
    Py_XDECREF(done);
    return done == NULL;
}

/* ---- tool_use / tool_result pairing (twin: _plan._client_tool_uses, _check_tool_pairing) ----
 * Validity only: a request these accept is one the Python path accepts; anything else (an
 * invalid pairing, whose error text lives in _plan.py, or a shape not read here: a non-dict, a
 * type, role or id that is not an exact str, more than MAX_FAST_TOOL_IDS ids) makes handle()
 * fall back. No Python code runs in them (exact dicts, str keys). */

#define MAX_FAST_TOOL_IDS 32

/* The client tool_use ids of `message` (borrowed into `ids`) when it is an assistant message:
 * their count (0 for a user message or str content), -2 for a shape left to the Python path,
 * -1 on error. */
static int
tool_use_ids(PyObject *message, PyObject **ids)
{
    if (Py_TYPE(message) != &PyDict_Type)
        return -2;
    PyObject *role = get_item(message, s_role);
    if (role == NULL)
        return PyErr_Occurred() ? -1 : -2;
    if (Py_TYPE(role) != &PyUnicode_Type)
        return -2;
    if (!is_exact(role, s_assistant))
        return 0;
    PyObject *content = get_item(message, s_content);
    if (content == NULL)
        return PyErr_Occurred() ? -1 : -2;
    if (Py_TYPE(content) == &PyUnicode_Type)
        return 0;
    if (Py_TYPE(content) != &PyList_Type)
        return -2;
    int n = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(content); i++) {
        PyObject *item = PyList_GET_ITEM(content, i);
        if (Py_TYPE(item) != &PyDict_Type)
            return -2;
        PyObject *kind = get_item(item, s_type);
        if (kind == NULL)
            return PyErr_Occurred() ? -1 : -2;
        if (Py_TYPE(kind) != &PyUnicode_Type)
            return -2;
        if (!is_exact(kind, s_tool_use))
            continue;
        PyObject *id = get_item(item, s_id);
        if (id == NULL)
            return PyErr_Occurred() ? -1 : -2;
        if (Py_TYPE(id) != &PyUnicode_Type || n == MAX_FAST_TOOL_IDS)
            return -2;
        ids[n++] = id;
    }
    return n;
}

/* 1 when the exact str `kind` names a server tool's result (`web_search_tool_result`,
 * `advisor_tool_result`, ...: "*_tool_result" but not `tool_result` or `mcp_tool_result`),
 * whose pairing with its `server_tool_use` the Python path checks (twin: _plan._is_server_result) */
static int
is_server_result(PyObject *kind)
{
    static const char suffix[] = "_tool_result";
    const Py_ssize_t n = (Py_ssize_t)sizeof(suffix) - 1;
    Py_ssize_t length;
    const char *data;
    if (!PyUnicode_IS_ASCII(kind))
        return 0;
    length = PyUnicode_GET_LENGTH(kind);
    data = (const char *)PyUnicode_DATA(kind);
    if (length <= n || memcmp(data + length - n, suffix, (size_t)n) != 0)
        return 0;
    return !(length == n + 3 && memcmp(data, "mcp", 3) == 0);
}

/* 1 when `message` pairs with the `n` client tool_use ids of the message before it (no tool_use
 * in a user message, no tool_result in an assistant one, every id answered by the tool_result
 * blocks the message starts with, no tool_result for another id, no server tool result — those
 * are left to the Python path); 0 when not, or for a shape left to the Python path; -1 on
 * error. */
static int
tool_pairing_ok(PyObject *message, PyObject *const *ids, int n)
{
    if (Py_TYPE(message) != &PyDict_Type)
        return 0;
    PyObject *role = get_item(message, s_role);
    if (role == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (Py_TYPE(role) != &PyUnicode_Type)
        return 0;
    int user = is_exact(role, s_user);
    if (!user && !is_exact(role, s_assistant))
        return 0;
    PyObject *content = get_item(message, s_content);
    if (content == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (Py_TYPE(content) == &PyUnicode_Type)
        return n == 0;
    if (Py_TYPE(content) != &PyList_Type)
        return 0;
    unsigned char answered[MAX_FAST_TOOL_IDS] = {0};
    int leading = 1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(content); i++) {
        PyObject *item = PyList_GET_ITEM(content, i);
        if (Py_TYPE(item) != &PyDict_Type)
            return 0;
        PyObject *kind = get_item(item, s_type);
        if (kind == NULL)
            return PyErr_Occurred() ? -1 : 0;
        if (Py_TYPE(kind) != &PyUnicode_Type)
            return 0;
        if (!is_exact(kind, s_tool_result)) {
            if ((user && is_exact(kind, s_tool_use)) || is_server_result(kind))
                return 0;
            leading = 0;
            continue;
        }
        if (!user)
            return 0;
        PyObject *id = get_item(item, s_tool_use_id);
        if (id == NULL)
            return PyErr_Occurred() ? -1 : 0;
        if (Py_TYPE(id) != &PyUnicode_Type)
            return 0;
        int found = 0;
        for (int j = 0; j < n; j++)
            if (str_eq(id, ids[j])) {
                found = 1;
                if (leading)
                    answered[j] = 1;
            }
        if (!found)
            return 0;
    }
    for (int j = 0; j < n; j++)
        if (!answered[j])
            return 0;
    return 1;
}

#define FALLBACK                                                                                  \
    do {                                                                                          \
        goto fallback;                                                                            \
    } while (0)
#define FAIL                                                                                      \
    do {                                                                                          \
        goto error;                                                                               \
    } while (0)

static PyObject *
simcore_handle(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "handle(sim, body, api_key)");
        return NULL;
    }
    PyObject *sim = args[0], *body = args[1], *api_key = args[2];
    PyObject *result = NULL;
    /* owned references, released at the end */
    PyObject *config = NULL, *attr = NULL, *first_raw = NULL, *snapshots = NULL,
             *previous = NULL, *prev_raw = NULL, *prev_states = NULL, *prev_marks = NULL,
             *prev_tokens = NULL, *prev_packed = NULL, *frozen_list = NULL, *states = NULL,
             *marks = NULL, *tokens_list = NULL, *message_eligible = NULL, *table = NULL,
             *fast_text = NULL, *estimator = NULL, *max_entries_obj = NULL, *workspace = NULL,
             *entries = NULL, *records = NULL, *now_obj = NULL, *message_segment_fn = NULL;
    Buffer mwords = {NULL, 0, 0}, mtokens = {NULL, 0, 0};
    uint64_t *words = NULL, *keys = NULL;
    char *have_key = NULL;
    long long *cum = NULL;
    FastBreakpoint bps[MAX_FAST_BREAKPOINTS + 1];
    Py_ssize_t bp_count = 0;

    if (Py_TYPE(body) != &PyDict_Type || Py_TYPE(api_key) != &PyUnicode_Type)
        FALLBACK;
    /* ---- the simulator's state: the config is current, nothing unusual ---- */
    config = PyObject_GetAttr(sim, s_fast_config);
    if (config == NULL)
        FAIL;
    if (Py_TYPE(config) != &PyTuple_Type || PyTuple_GET_SIZE(config) != FAST_CONFIG_SIZE)
        FALLBACK;
    PyObject *const *cf = ((PyTupleObject *)config)->ob_item;
    {
        PyObject *names[3] = {s_settings, s_models, s_clock};
        for (int i = 0; i < 3; i++) {
            attr = PyObject_GetAttr(sim, names[i]);
            if (attr == NULL)
                FAIL;
            int same = attr == cf[i];
            Py_CLEAR(attr);
            if (!same)
                FALLBACK;
        }
        attr = PyObject_GetAttr(sim, s_responder);
        if (attr == NULL)
            FAIL;
        int none = attr == Py_None;
        Py_CLEAR(attr);
        if (!none)
            FALLBACK;
        attr = PyObject_GetAttr(sim, s_concurrent_depth);
        if (attr == NULL)
            FAIL;
        long long depth;
        int zero = exact_ll(attr, &depth) && depth == 0;
        Py_CLEAR(attr);
        if (!zero)
            FALLBACK;
    }
    PyObject *fast_models = cf[3], *workspaces = cf[4];
    double grace = PyFloat_AsDouble(cf[5]);
    Py_ssize_t window = PyLong_AsSsize_t(cf[6]);
    int same_ttl_only = cf[7] == Py_True, refresh_reached = cf[8] == Py_True;
    int segment_minimum = cf[9] == Py_True;
    double latency_base = PyFloat_AsDouble(cf[10]), per_uncached = PyFloat_AsDouble(cf[11]),
           per_cached = PyFloat_AsDouble(cf[12]), per_output = PyFloat_AsDouble(cf[13]);
    int delay_availability = cf[14] == Py_True;
    long after_mode = PyLong_AsLong(cf[15]);
    PyObject *id_prefix = cf[16], *ids = cf[17];
    Py_ssize_t diagnostics_history = PyLong_AsSsize_t(cf[18]);
    PyObject *reply_words = cf[19], *snapshot_class = cf[20];
    message_segment_fn = cf[21];
    Py_INCREF(message_segment_fn);
    Py_ssize_t conversations = PyLong_AsSsize_t(cf[22]);
    uint64_t empty_settings = (uint64_t)PyLong_AsUnsignedLongLongMask(cf[23]);
    long clock_mode = PyLong_AsLong(cf[24]);
    if (PyErr_Occurred())
        FAIL;
    if (!PyDict_CheckExact(fast_models) || !PyDict_CheckExact(workspaces) ||
        !PyTuple_CheckExact(reply_words) || PyTuple_GET_SIZE(reply_words) != 12 ||
        !PyUnicode_CheckExact(id_prefix) || !PyType_Check(snapshot_class) || !PyIter_Check(ids))
        FALLBACK;
    for (int i = 0; i < 12; i++)
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(reply_words, i)))
            FALLBACK;

    /* ---- the body: only keys that do not change the answer beyond what is handled here ---- */
    PyObject *model = NULL, *max_tokens_obj = NULL, *messages = NULL, *system = NULL,
             *tools = NULL, *top = NULL;
    {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(body, &pos, &key, &value)) {
            if (str_eq(key, s_messages))
                messages = value;
            else if (str_eq(key, s_model))
                model = value;
            else if (str_eq(key, s_max_tokens))
                max_tokens_obj = value;
            else if (str_eq(key, s_system))
                system = value;
            else if (str_eq(key, s_tools))
                tools = value;
            else if (str_eq(key, s_cache_control))
                top = value;
            else if (!(str_eq(key, s_metadata) || str_eq(key, s_stream) ||
                       str_eq(key, s_temperature) || str_eq(key, s_top_p) ||
                       str_eq(key, s_top_k) || str_eq(key, s_stop_sequences)))
                FALLBACK;
        }
    }
    if (model == NULL || Py_TYPE(model) != &PyUnicode_Type || messages == NULL ||
        Py_TYPE(messages) != &PyList_Type || PyList_GET_SIZE(messages) == 0)
        FALLBACK;
    long long max_tokens;
    if (!exact_ll(max_tokens_obj, &max_tokens) || max_tokens <= 0)
        FALLBACK;
    PyObject *model_entry = PyDict_GetItemWithError(fast_models, model);
    if (model_entry == NULL) {
        if (PyErr_Occurred())
            FAIL;
        FALLBACK;
    }
    if (Py_TYPE(model_entry) != &PyTuple_Type || PyTuple_GET_SIZE(model_entry) != 4)
        FALLBACK;
    PyObject *model_id = PyTuple_GET_ITEM(model_entry, 0);
    PyObject *memo = PyTuple_GET_ITEM(model_entry, 1);
    long long minimum;
    if (!exact_ll(PyTuple_GET_ITEM(model_entry, 2), &minimum))
        FALLBACK;
    uint64_t tools_seed = (uint64_t)PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(model_entry, 3));
    if (PyErr_Occurred())
        FAIL;

    /* ---- top-level cache_control ---- */
    PyObject *top_ttl = NULL; /* borrowed: s_5m / s_1h / the body's */
    double top_seconds = 0.0;
    if (top != NULL && top != Py_None) {
        if (Py_TYPE(top) != &PyDict_Type)
            FALLBACK;
        PyObject *kind = PyDict_GetItemWithError(top, s_type);
        if (kind == NULL && PyErr_Occurred())
            FAIL;
        if (kind == NULL || !str_eq(kind, s_ephemeral))
            FALLBACK;
        PyObject *ttl = PyDict_GetItemWithError(top, s_ttl);
        if (ttl == NULL && PyErr_Occurred())
            FAIL;
        if (ttl == NULL || ttl == Py_None ||
            (Py_TYPE(ttl) == &PyUnicode_Type && PyUnicode_GET_LENGTH(ttl) == 0) ||
            str_eq(ttl, s_5m)) {
            top_ttl = s_5m;
            top_seconds = 300.0;
        }
        else if (str_eq(ttl, s_1h)) {
            top_ttl = s_1h;
            top_seconds = 3600.0;
        }
        else
            FALLBACK;
    }

    /* ---- tools and system: unchanged since last request ---- */
    PyObject *segs[2] = {NULL, NULL}; /* borrowed */
    {
        PyObject *values[2] = {tools, system};
        PyObject *tables[2] = {s_tools, s_systems};
        for (int i = 0; i < 2; i++) {
            PyObject *v = values[i];
            if (v == NULL || v == Py_None)
                continue;
            if (Py_TYPE(v) == &PyList_Type) {
                if (PyList_GET_SIZE(v) == 0)
                    continue;
            }
            else if (i == 1 && Py_TYPE(v) == &PyUnicode_Type) {
                if (PyUnicode_GET_LENGTH(v) == 0)
                    continue;
            }
            else
                FALLBACK;
            int error = 0;
            segs[i] = same_as_last(memo, tables[i], v, &error);
            if (error)
                FAIL;
            if (segs[i] == NULL)
                FALLBACK;
        }
    }
    PyObject *seg_tokens[2] = {NULL, NULL}, *seg_packed[2] = {NULL, NULL},
             *seg_marks[2] = {NULL, NULL}, *seg_eligible[2] = {NULL, NULL};
    Py_ssize_t level_n[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (segs[i] == NULL)
            continue;
        int flags;
        PyObject *toggles;
        if (!segment_parts(segs[i], &seg_tokens[i], &seg_packed[i], &seg_marks[i],
                           &seg_eligible[i], &flags, &toggles) ||
            PyTuple_GET_SIZE(toggles) != 0)
            FALLBACK;
        level_n[i] = PyTuple_GET_SIZE(seg_tokens[i]);
    }
    Py_ssize_t tools_end = level_n[0], system_end = level_n[0] + level_n[1];

    /* ---- messages: the shared prefix with the conversation's snapshot ---- */
    Py_ssize_t count = PyList_GET_SIZE(messages);
    PyObject *tool_ids[MAX_FAST_TOOL_IDS]; /* borrowed from the message before the current one */
    {
        /* a final assistant message with client tool_use blocks: the Python path raises */
        int n_ids = tool_use_ids(PyList_GET_ITEM(messages, count - 1), tool_ids);
        if (n_ids == -1)
            FAIL;
        if (n_ids != 0)
            FALLBACK;
    }
    int unsupported = 0;
    first_raw = struct_digest(PyList_GET_ITEM(messages, 0), &unsupported);
    if (first_raw == NULL) {
        if (unsupported)
            FALLBACK;
        FAIL;
    }
    snapshots = PyObject_GetAttr(memo, s_snapshots);
    if (snapshots == NULL)
        FAIL;
    if (!PyDict_CheckExact(snapshots))
        FALLBACK;
    previous = PyDict_GetItemWithError(snapshots, first_raw);
    Py_ssize_t reused = 0, positions = 0, mark_count = 0;
    if (previous != NULL) {
        Py_INCREF(previous);
        if ((prev_raw = PyObject_GetAttr(previous, s_raw)) == NULL ||
            (prev_states = PyObject_GetAttr(previous, s_states)) == NULL ||
            (prev_marks = PyObject_GetAttr(previous, s_marks)) == NULL ||
            (prev_tokens = PyObject_GetAttr(previous, s_tokens)) == NULL ||
            (prev_packed = PyObject_GetAttr(previous, s_packed)) == NULL)
            FAIL;
        if (Py_TYPE(prev_raw) != &PyList_Type || Py_TYPE(prev_states) != &PyList_Type ||
            Py_TYPE(prev_marks) != &PyList_Type || Py_TYPE(prev_tokens) != &PyList_Type ||
            Py_TYPE(prev_packed) != &PyBytes_Type ||
            PyList_GET_SIZE(prev_states) != PyList_GET_SIZE(prev_raw))
            FALLBACK;
        for (; reused < count && reused < PyList_GET_SIZE(prev_raw); reused++) {
            int r = matches(PyList_GET_ITEM(prev_raw, reused),
                            PyList_GET_ITEM(messages, reused), 0);
            if (r < 0)
                FAIL;
            if (r == 0)
                break;
        }
    }
    else if (PyErr_Occurred())
        FAIL;
    if (reused) {
        PyObject *state = PyList_GET_ITEM(prev_states, reused - 1);
        long long n, k;
        if (Py_TYPE(state) != &PyTuple_Type || PyTuple_GET_SIZE(state) != 6 ||
            !exact_ll(PyTuple_GET_ITEM(state, 0), &n) ||
            !exact_ll(PyTuple_GET_ITEM(state, 4), &k) ||
            PyTuple_GET_ITEM(state, 2) != Py_False || PyTuple_GET_ITEM(state, 3) != Py_False ||
            n < 0 || n > PyList_GET_SIZE(prev_tokens) || 8 * n > PyBytes_GET_SIZE(prev_packed) ||
            k < 0 || k > PyList_GET_SIZE(prev_marks))
            FALLBACK;
        if (PyTuple_GET_ITEM(state, 5) != Py_False && reused < count)
            FALLBACK; /* an empty message that is no longer last: the Python path raises */
        positions = (Py_ssize_t)n;
        mark_count = (Py_ssize_t)k;
        message_eligible = PyTuple_GET_ITEM(state, 1);
        Py_INCREF(message_eligible);
        if (buf_reserve(&mwords, (size_t)positions * 8) < 0 ||
            buf_reserve(&mtokens, (size_t)positions * 8) < 0)
            FAIL;
        memcpy(mwords.data, PyBytes_AS_STRING(prev_packed), (size_t)positions * 8);
        mwords.size = (size_t)positions * 8;
        long long *t = (long long *)mtokens.data;
        /* the counts as C words when this path kept them (and they are the list's), else
         * read from the list */
        PyObject *ctokens = PyObject_GetAttr(previous, s_ctokens);
        if (ctokens == NULL)
            FAIL;
        if (Py_TYPE(ctokens) == &PyBytes_Type &&
            PyBytes_GET_SIZE(ctokens) == 8 * PyList_GET_SIZE(prev_tokens))
            memcpy(t, PyBytes_AS_STRING(ctokens), (size_t)positions * 8);
        else
            for (Py_ssize_t i = 0; i < positions; i++)
                if (!exact_ll(PyList_GET_ITEM(prev_tokens, i), &t[i])) {
                    Py_DECREF(ctokens);
                    FALLBACK;
                }
        Py_DECREF(ctokens);
        mtokens.size = (size_t)positions * 8;
    }
    else {
        message_eligible = Py_None;
        Py_INCREF(message_eligible);
    }

    /* ---- the other messages, segment by segment (memo tables only) ---- */
    if (reused < count) {
        /* what the new messages add (the snapshot gets them once all are segmented) */
        if ((frozen_list = PyList_New(0)) == NULL || (states = PyList_New(0)) == NULL ||
            (marks = PyList_New(0)) == NULL || (tokens_list = PyList_New(0)) == NULL)
            FAIL;
        if ((table = PyObject_GetAttr(memo, s_messages)) == NULL ||
            (fast_text = PyObject_GetAttr(memo, s_fast_text)) == NULL ||
            (estimator = PyObject_GetAttr(memo, s_estimator)) == NULL ||
            (max_entries_obj = PyObject_GetAttr(memo, s_max_entries)) == NULL)
            FAIL;
        Py_ssize_t max_entries = PyLong_AsSsize_t(max_entries_obj);
        if (max_entries == -1 && PyErr_Occurred())
            FAIL;
        if (!PyDict_CheckExact(table) ||
            (fast_text != Py_None &&
             (!PyTuple_CheckExact(fast_text) || PyTuple_GET_SIZE(fast_text) != 2)))
            FALLBACK;
        int prev_plain = reused == 0; /* the message before has no tool_use (none, or plain) */
        for (Py_ssize_t m = reused; m < count; m++) {
            PyObject *message = PyList_GET_ITEM(messages, m);
            /* the client tool_use ids this message must answer (read before any Python code) */
            int n_ids = 0;
            if (!prev_plain) {
                n_ids = tool_use_ids(PyList_GET_ITEM(messages, m - 1), tool_ids);
                if (n_ids == -1)
                    FAIL;
                if (n_ids == -2)
                    FALLBACK;
            }
            /* the frozen copy for the snapshot (refused exactly where struct_hash gives None) */
            PyObject *frozen = freeze(message, 0);
            if (frozen == NULL) {
                if (PyErr_Occurred())
                    FAIL;
                FALLBACK;
            }
            int r = PyList_Append(frozen_list, frozen);
            Py_DECREF(frozen);
            if (r < 0)
                FAIL;
            /* A plain text message: its segment from the text memo, with no structural digest
             * (that only keys memo.messages, which such a message does not need). */
            PyObject *segment = NULL;
            TextParts tp;
            int plain = 0;
            if (fast_text != Py_None && estimator != Py_None) {
                PyObject *call[5] = {message, PyTuple_GET_ITEM(fast_text, 0),
                                     PyTuple_GET_ITEM(fast_text, 1), max_entries_obj, estimator};
                if ((plain = text_parts(self, call, &tp)) < 0)
                    FAIL;
            }
            Py_ssize_t n;
            int empty = 0;
            prev_plain = plain;
            if (plain) {
                if (n_ids) {
                    Py_DECREF(tp.found);
                    FALLBACK; /* plain text does not answer them: the Python path raises */
                }
                /* one position: text_message's segment, read without building it */
                long long token_count;
                PyObject *token_item = PyTuple_GET_ITEM(tp.found, 1);
                PyObject *m_obj = NULL, *cc_copy = NULL;
                int bad = !exact_ll(token_item, &token_count);
                if (!bad && (buf_reserve(&mwords, 8) < 0 || buf_reserve(&mtokens, 8) < 0 ||
                             PyList_Append(tokens_list, token_item) < 0 ||
                             (m_obj = PyLong_FromSsize_t(m)) == NULL))
                    bad = 2;
                if (!bad && tp.cc != NULL) {
                    /* the segment keeps a copy, not the caller's (mutable) dict */
                    if ((cc_copy = PyDict_Copy(tp.cc)) == NULL)
                        bad = 2;
                    else {
                        PyObject *verdict_parts[2] = {
                            new_ref(tp.seconds == 3600.0 ? f_3600 : f_300), new_ref(tp.ttl_name)};
                        PyObject *mark_parts[5] = {PyLong_FromSsize_t(positions), new_ref(cc_copy),
                                                   new_ref(m_obj), new_ref(tp.path),
                                                   tuple_of(2, verdict_parts)};
                        PyObject *mark = tuple_of(5, mark_parts);
                        if (mark == NULL || PyList_Append(marks, mark) < 0)
                            bad = 2;
                        Py_XDECREF(mark);
                    }
                }
                if (!bad) {
                    PyObject *el_parts[4] = {PyLong_FromSsize_t(positions),
                                             new_ref(cc_copy != NULL ? cc_copy : Py_None),
                                             new_ref(m_obj), new_ref(tp.path)};
                    PyObject *el = tuple_of(4, el_parts);
                    if (el == NULL)
                        bad = 2;
                    else
                        Py_SETREF(message_eligible, el);
                }
                if (!bad) {
                    memcpy(mwords.data + mwords.size, &tp.word, 8);
                    mwords.size += 8;
                    memcpy(mtokens.data + mtokens.size, &token_count, 8);
                    mtokens.size += 8;
                }
                Py_XDECREF(m_obj);
                Py_XDECREF(cc_copy);
                Py_DECREF(tp.found);
                if (bad == 2)
                    FAIL;
                if (bad)
                    FALLBACK;
                n = 1;
            }
            else {
                int paired = tool_pairing_ok(message, tool_ids, n_ids);
                if (paired < 0)
                    FAIL;
                if (!paired)
                    FALLBACK; /* the Python path raises the pairing error (or decides) */
                if (segment == NULL) {
                    /* any other shape: memoized by structural digest, built by _message_segment */
                    PyObject *raw_message;
                    if (m == 0) {
                        raw_message = first_raw;
                        Py_INCREF(raw_message);
                    }
                    else if ((raw_message = struct_digest(message, &unsupported)) == NULL) {
                        if (unsupported)
                            FALLBACK;
                        FAIL;
                    }
                    segment = PyDict_GetItemWithError(table, raw_message);
                    if (segment != NULL)
                        Py_INCREF(segment);
                    else {
                        if (PyErr_Occurred()) {
                            Py_DECREF(raw_message);
                            FAIL;
                        }
                        PyObject *m_obj = PyLong_FromSsize_t(m);
                        if (m_obj == NULL) {
                            Py_DECREF(raw_message);
                            FAIL;
                        }
                        segment = PyObject_CallFunctionObjArgs(message_segment_fn, message, m_obj,
                                                               memo, NULL);
                        Py_DECREF(m_obj);
                        if (segment == NULL) {
                            /* the API's error (or anything else): the Python path raises it */
                            Py_DECREF(raw_message);
                            PyErr_Clear();
                            FALLBACK;
                        }
                        if (PyDict_GET_SIZE(table) >= max_entries)
                            PyDict_Clear(table);
                        if (PyDict_SetItem(table, raw_message, segment) < 0) {
                            Py_DECREF(raw_message);
                            Py_DECREF(segment);
                            FAIL;
                        }
                    }
                    Py_DECREF(raw_message);
                }
                PyObject *s_tok, *s_pack, *s_mk, *s_el, *toggles;
                int flags;
                if (!segment_parts(segment, &s_tok, &s_pack, &s_mk, &s_el, &flags, &toggles) ||
                    flags) {
                    Py_DECREF(segment);
                    FALLBACK; /* images or citations change the settings: the Python path */
                }
                n = PyTuple_GET_SIZE(s_tok);
                empty = n == 0;
                if (empty) {
                    PyObject *role = Py_TYPE(message) == &PyDict_Type
                                         ? PyDict_GetItemWithError(message, s_role)
                                         : NULL;
                    if (m != count - 1 || role == NULL || !str_eq(role, s_assistant)) {
                        Py_DECREF(segment);
                        PyErr_Clear();
                        FALLBACK; /* the Python path raises "must have non-empty content" */
                    }
                }
                if (buf_reserve(&mwords, (size_t)n * 8) < 0 ||
                    buf_reserve(&mtokens, (size_t)n * 8) < 0) {
                    Py_DECREF(segment);
                    FAIL;
                }
                memcpy(mwords.data + mwords.size, PyBytes_AS_STRING(s_pack), (size_t)n * 8);
                mwords.size += (size_t)n * 8;
                long long *t = (long long *)(mtokens.data + mtokens.size);
                for (Py_ssize_t i = 0; i < n; i++) {
                    PyObject *item = PyTuple_GET_ITEM(s_tok, i);
                    if (!exact_ll(item, &t[i]) || PyList_Append(tokens_list, item) < 0) {
                        Py_DECREF(segment);
                        if (PyErr_Occurred())
                            FAIL;
                        FALLBACK;
                    }
                }
                mtokens.size += (size_t)n * 8;
                PyObject *m_obj = PyLong_FromSsize_t(m);
                if (m_obj == NULL) {
                    Py_DECREF(segment);
                    FAIL;
                }
                int bad = 0;
                for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(s_mk) && !bad; i++) {
                    PyObject *mark = PyTuple_GET_ITEM(s_mk, i);
                    long long offset;
                    if (Py_TYPE(mark) != &PyTuple_Type || PyTuple_GET_SIZE(mark) != 4 ||
                        !exact_ll(PyTuple_GET_ITEM(mark, 0), &offset)) {
                        bad = 1;
                        break;
                    }
                    PyObject *parts[5] = {PyLong_FromSsize_t(positions + (Py_ssize_t)offset),
                                          new_ref(PyTuple_GET_ITEM(mark, 1)), new_ref(m_obj),
                                          new_ref(PyTuple_GET_ITEM(mark, 2)),
                                          new_ref(PyTuple_GET_ITEM(mark, 3))};
                    PyObject *full = tuple_of(5, parts);
                    if (full == NULL || PyList_Append(marks, full) < 0)
                        bad = 2;
                    Py_XDECREF(full);
                }
                if (!bad && s_el != Py_None) {
                    long long offset;
                    if (!exact_ll(PyTuple_GET_ITEM(s_el, 0), &offset))
                        bad = 1;
                    else {
                        PyObject *parts[4] = {PyLong_FromSsize_t(positions + (Py_ssize_t)offset),
                                              new_ref(PyTuple_GET_ITEM(s_el, 1)), new_ref(m_obj),
                                              new_ref(PyTuple_GET_ITEM(s_el, 2))};
                        PyObject *el = tuple_of(4, parts);
                        if (el == NULL)
                            bad = 2;
                        else
                            Py_SETREF(message_eligible, el);
                    }
                }
                Py_DECREF(m_obj);
                Py_DECREF(segment);
                if (bad == 2)
                    FAIL;
                if (bad)
                    FALLBACK;
            }
            positions += n;
            PyObject *parts[6] = {PyLong_FromSsize_t(positions), new_ref(message_eligible),
                                  new_ref(Py_False), new_ref(Py_False),
                                  PyLong_FromSsize_t(mark_count + PyList_GET_SIZE(marks)),
                                  new_ref(empty ? Py_True : Py_False)};
            PyObject *state = tuple_of(6, parts);
            if (state == NULL || PyList_Append(states, state) < 0) {
                Py_XDECREF(state);
                FAIL;
            }
            Py_DECREF(state);
        }
        PyObject *packed = PyBytes_FromStringAndSize(mwords.data, (Py_ssize_t)mwords.size);
        if (packed == NULL)
            FAIL;
        PyObject *ctokens = PyBytes_FromStringAndSize(mtokens.data, (Py_ssize_t)mtokens.size);
        if (ctokens == NULL) {
            Py_DECREF(packed);
            FAIL;
        }
        if (previous != NULL) {
            /* The conversation's snapshot, updated in place: what plan() does by slicing the
             * old one's lists into a new snapshot (nothing else holds them). On a failure
             * half-way it is dropped: a memo may forget, never disagree. */
            int bad = PyList_SetSlice(prev_raw, reused, PY_SSIZE_T_MAX, frozen_list) < 0 ||
                      PyList_SetSlice(prev_states, reused, PY_SSIZE_T_MAX, states) < 0 ||
                      PyList_SetSlice(prev_marks, mark_count, PY_SSIZE_T_MAX, marks) < 0 ||
                      PyList_SetSlice(prev_tokens,
                                      positions - (Py_ssize_t)PyList_GET_SIZE(tokens_list),
                                      PY_SSIZE_T_MAX, tokens_list) < 0 ||
                      PyObject_SetAttr(previous, s_packed, packed) < 0 ||
                      PyObject_SetAttr(previous, s_ctokens, ctokens) < 0;
            Py_DECREF(packed);
            Py_DECREF(ctokens);
            /* most recently updated last, as plan()'s pop-and-insert */
            if (!bad)
                bad = PyDict_DelItem(snapshots, first_raw) < 0 ||
                      PyDict_SetItem(snapshots, first_raw, previous) < 0;
            if (bad) {
                PyObject *type, *value, *traceback;
                PyErr_Fetch(&type, &value, &traceback);
                if (PyDict_DelItem(snapshots, first_raw) < 0)
                    PyErr_Clear();
                PyErr_Restore(type, value, traceback);
                FAIL;
            }
            Py_SETREF(marks, new_ref(prev_marks));
        }
        else {
            PyTypeObject *cls = (PyTypeObject *)snapshot_class;
            PyObject *snapshot = cls->tp_alloc(cls, 0);
            PyObject *ends = PyList_New(0);
            PyObject *first = PyBytes_FromStringAndSize(NULL, 0);
            int bad = snapshot == NULL || ends == NULL || first == NULL ||
                      PyObject_SetAttr(snapshot, s_raw, frozen_list) < 0 ||
                      PyObject_SetAttr(snapshot, s_first, first) < 0 ||
                      PyObject_SetAttr(snapshot, s_ends, ends) < 0 ||
                      PyObject_SetAttr(snapshot, s_states, states) < 0 ||
                      PyObject_SetAttr(snapshot, s_marks, marks) < 0 ||
                      PyObject_SetAttr(snapshot, s_tokens, tokens_list) < 0 ||
                      PyObject_SetAttr(snapshot, s_packed, packed) < 0 ||
                      PyObject_SetAttr(snapshot, s_ctokens, ctokens) < 0;
            Py_DECREF(packed);
            Py_DECREF(ctokens);
            Py_XDECREF(ends);
            Py_XDECREF(first);
            if (!bad && PyDict_GET_SIZE(snapshots) >= conversations) {
                Py_ssize_t pos = 0;
                PyObject *oldest, *value;
                if (PyDict_Next(snapshots, &pos, &oldest, &value)) {
                    Py_INCREF(oldest);
                    bad = PyDict_DelItem(snapshots, oldest) < 0;
                    Py_DECREF(oldest);
                }
            }
            if (!bad)
                bad = PyDict_SetItem(snapshots, first_raw, snapshot) < 0;
            Py_XDECREF(snapshot);
            if (bad)
                FAIL;
        }
    }

    /* ---- breakpoints: count, verdicts, TTL order, the automatic one ---- */
    {
        PyObject *msg_marks = marks != NULL ? marks : prev_marks;
        Py_ssize_t msg_mark_count = marks != NULL ? PyList_GET_SIZE(marks) : mark_count;
        Py_ssize_t explicit = (seg_marks[0] ? PyTuple_GET_SIZE(seg_marks[0]) : 0) +
                              (seg_marks[1] ? PyTuple_GET_SIZE(seg_marks[1]) : 0) + msg_mark_count;
        if (explicit > MAX_FAST_BREAKPOINTS ||
            (top_ttl != NULL && explicit == MAX_FAST_BREAKPOINTS))
            FALLBACK; /* the Python path raises the count error */
        int seen_5m = 0;
        for (int level = 0; level < 3; level++) {
            Py_ssize_t n = level < 2 ? (seg_marks[level] ? PyTuple_GET_SIZE(seg_marks[level]) : 0)
                                     : msg_mark_count;
            Py_ssize_t base = level == 0 ? 0 : level == 1 ? tools_end : system_end;
            for (Py_ssize_t i = 0; i < n; i++) {
                PyObject *mark = level < 2 ? PyTuple_GET_ITEM(seg_marks[level], i)
                                           : PyList_GET_ITEM(msg_marks, i);
                Py_ssize_t size = level < 2 ? 4 : 5;
                long long offset;
                if (Py_TYPE(mark) != &PyTuple_Type || PyTuple_GET_SIZE(mark) != size ||
                    !exact_ll(PyTuple_GET_ITEM(mark, 0), &offset))
                    FALLBACK;
                PyObject *verdict = PyTuple_GET_ITEM(mark, size - 1);
                if (Py_TYPE(verdict) != &PyTuple_Type || PyTuple_GET_SIZE(verdict) != 2 ||
                    Py_TYPE(PyTuple_GET_ITEM(verdict, 0)) != &PyFloat_Type)
                    FALLBACK; /* an invalid cache_control: the Python path raises */
                PyObject *name = PyTuple_GET_ITEM(verdict, 1);
                if (str_eq(name, s_5m))
                    seen_5m = 1;
                else if (!str_eq(name, s_1h) || seen_5m)
                    FALLBACK; /* 1h after 5m: the Python path raises */
                bps[bp_count].position = base + (Py_ssize_t)offset;
                bps[bp_count].seconds = PyTuple_GET_ITEM(verdict, 0);
                bps[bp_count].name = name;
                bp_count++;
            }
        }
        if (top_ttl != NULL) {
            /* the last block that can carry a breakpoint */
            PyObject *eligible_cc = NULL;
            Py_ssize_t eligible_position = -1;
            if (message_eligible != Py_None) {
                long long p;
                if (Py_TYPE(message_eligible) != &PyTuple_Type ||
                    PyTuple_GET_SIZE(message_eligible) != 4 ||
                    !exact_ll(PyTuple_GET_ITEM(message_eligible, 0), &p))
                    FALLBACK;
                eligible_position = system_end + (Py_ssize_t)p;
                eligible_cc = PyTuple_GET_ITEM(message_eligible, 1);
            }
            else
                for (int level = 1; level >= 0; level--)
                    if (seg_eligible[level] != NULL && seg_eligible[level] != Py_None) {
                        long long p;
                        if (!exact_ll(PyTuple_GET_ITEM(seg_eligible[level], 0), &p))
                            FALLBACK;
                        eligible_position = (level ? tools_end : 0) + (Py_ssize_t)p;
                        eligible_cc = PyTuple_GET_ITEM(seg_eligible[level], 1);
                        break;
                    }
            if (eligible_position >= 0) {
                if (eligible_cc != Py_None) {
                    if (Py_TYPE(eligible_cc) != &PyDict_Type)
                        FALLBACK;
                    PyObject *own = PyDict_GetItemWithError(eligible_cc, s_ttl);
                    if (own == NULL && PyErr_Occurred())
                        FAIL;
                    PyObject *own_name =
                        (own == NULL || own == Py_None ||
                         (Py_TYPE(own) == &PyUnicode_Type && PyUnicode_GET_LENGTH(own) == 0))
                            ? s_5m
                            : own;
                    if (Py_TYPE(own_name) != &PyUnicode_Type || !str_eq(own_name, top_ttl))
                        FALLBACK; /* the conflict error, from the Python path */
                }
                else {
                    if (top_seconds == 3600.0 && seen_5m)
                        FALLBACK;
                    bps[bp_count].position = eligible_position;
                    bps[bp_count].seconds = top_seconds == 3600.0 ? f_3600 : f_300;
                    bps[bp_count].name = top_ttl;
                    bp_count++;
                }
            }
        }
    }

    /* ---- cumulative tokens and keyed digests ---- */
    Py_ssize_t msg_positions = (Py_ssize_t)(mtokens.size / 8);
    Py_ssize_t total_positions = system_end + msg_positions;
    for (Py_ssize_t b = 0; b < bp_count; b++)
        if (bps[b].position < 0 || bps[b].position >= total_positions)
            FALLBACK; /* not from a consistent memo */
    cum = PyMem_Malloc(sizeof(long long) * (size_t)(total_positions + 1));
    words = PyMem_Malloc(8 * (size_t)(total_positions + 3));
    keys = PyMem_Malloc(8 * (size_t)(total_positions + 1));
    have_key = PyMem_Calloc((size_t)(total_positions + 1), 1);
    if (cum == NULL || words == NULL || keys == NULL || have_key == NULL) {
        PyErr_NoMemory();
        FAIL;
    }
    {
        long long running = 0;
        Py_ssize_t p = 0;
        for (int level = 0; level < 2; level++)
            for (Py_ssize_t i = 0; i < level_n[level]; i++) {
                long long v;
                if (!exact_ll(PyTuple_GET_ITEM(seg_tokens[level], i), &v))
                    FALLBACK;
                running += v;
                cum[p++] = running;
            }
        const long long *t = (const long long *)mtokens.data;
        for (Py_ssize_t i = 0; i < msg_positions; i++) {
            running += t[i];
            cum[p++] = running;
        }
        if (running > (1LL << 52) || running < 0)
            FALLBACK;
        uint64_t seeds[3] = {tools_seed, empty_settings, empty_settings};
        Py_ssize_t w = 0;
        for (int level = 0; level < 3; level++) {
            words[w++] = seeds[level];
            Py_ssize_t n = level < 2 ? level_n[level] : msg_positions;
            const char *src = level < 2 ? (segs[level] ? PyBytes_AS_STRING(seg_packed[level]) : "")
                                        : mwords.data;
            if (n)
                memcpy(&words[w], src, (size_t)n * 8);
            w += n;
        }
    }
    FastKeys fk = {words, tools_end, system_end, total_positions, keys, have_key};
    long long total = total_positions ? cum[total_positions - 1] : 0;

    /* ---- the workspace, the time, the reads ---- */
    workspace = PyDict_GetItemWithError(workspaces, api_key);
    if (workspace == NULL) {
        if (PyErr_Occurred())
            FAIL;
        FALLBACK; /* the Python path makes it */
    }
    Py_INCREF(workspace);
    if ((entries = PyObject_GetAttr(workspace, s_entries)) == NULL ||
        (records = PyObject_GetAttr(workspace, s_records)) == NULL)
        FAIL;
    if (!PyDict_CheckExact(entries))
        FALLBACK;
    if (clock_mode == 0)
        now_obj = PyObject_GetAttr(cf[2], s__now);
    else
        now_obj = PyObject_CallMethodNoArgs(cf[2], s_now);
    if (now_obj == NULL)
        FAIL;
    if (Py_TYPE(now_obj) != &PyFloat_Type)
        FALLBACK;
    double start = PyFloat_AS_DOUBLE(now_obj);

    Py_ssize_t best = -1;
    if (PyDict_GET_SIZE(entries) && bp_count) {
        for (Py_ssize_t b = bp_count - 1; b >= 0; b--) {
            Py_ssize_t position = bps[b].position;
            if (position <= best)
                break;
            double ttl = PyFloat_AS_DOUBLE(bps[b].seconds);
            Py_ssize_t stop = position - window > best ? position - window : best;
            for (Py_ssize_t p = position; p > stop; p--) {
                PyObject *key = PyLong_FromUnsignedLongLong(fast_key(&fk, p));
                if (key == NULL)
                    FAIL;
                PyObject *entry = PyDict_GetItemWithError(entries, key);
                Py_DECREF(key);
                if (entry == NULL) {
                    if (PyErr_Occurred())
                        FAIL;
                    continue;
                }
                double expires, available, entry_ttl;
                if (!entry_numbers(entry, &expires, &available, &entry_ttl))
                    FALLBACK;
                if (available <= start && start < expires + grace &&
                    (!same_ttl_only || entry_ttl == ttl)) {
                    best = p;
                    break;
                }
            }
        }
    }
    long long read = best >= 0 ? cum[best] : 0;

    /* ---- writes: breakpoints beyond the hit, at or above the minimum ---- */
    Py_ssize_t write_index[MAX_FAST_BREAKPOINTS + 1];
    Py_ssize_t write_count = 0;
    long long b_tokens = read, c_tokens = read, previous_tokens = 0;
    for (Py_ssize_t b = 0; b < bp_count; b++) {
        Py_ssize_t position = bps[b].position;
        long long tokens = cum[position];
        long long length = segment_minimum ? tokens - previous_tokens : tokens;
        previous_tokens = tokens;
        if (position <= best || length < minimum || tokens <= 0)
            continue;
        write_index[write_count++] = b;
        c_tokens = tokens;
        if (str_eq(bps[b].name, s_1h))
            b_tokens = tokens;
    }
    long long input_tokens = total - (read > c_tokens ? read : c_tokens);
    long long write_5m = c_tokens - b_tokens, write_1h = b_tokens - read;
    Py_ssize_t last_position = write_count ? bps[write_index[write_count - 1]].position : best;

    /* the entries the commit will touch must hold float-comparable numbers */
    {
        Py_ssize_t check[2 * MAX_FAST_BREAKPOINTS + 2];
        Py_ssize_t n = 0;
        if (best >= 0) {
            check[n++] = best;
            if (refresh_reached)
                for (Py_ssize_t b = 0; b < bp_count && bps[b].position < best; b++)
                    check[n++] = bps[b].position;
        }
        for (Py_ssize_t i = 0; i < write_count; i++)
            check[n++] = bps[write_index[i]].position;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *key = PyLong_FromUnsignedLongLong(fast_key(&fk, check[i]));
            if (key == NULL)
                FAIL;
            PyObject *entry = PyDict_GetItemWithError(entries, key);
            Py_DECREF(key);
            if (entry == NULL) {
                if (PyErr_Occurred())
                    FAIL;
                if (check[i] == best)
                    FALLBACK; /* cannot happen: the hit was just found */
                continue;
            }
            double a, b, c;
            if (!entry_numbers(entry, &a, &b, &c))
                FALLBACK;
        }
    }

    /* ---- the reply and the timing ---- */
    uint64_t seed = total_positions ? fast_key(&fk, total_positions - 1) : 0;
    long long output_tokens;
    PyObject *reply = reply_text(seed, reply_words, &output_tokens);
    if (reply == NULL)
        FAIL;
    PyObject *stop_reason = s_end_turn;
    if (output_tokens > max_tokens) {
        output_tokens = max_tokens;
        stop_reason = s_max_tokens_reason;
    }
    double ttft_ms = latency_base + (double)(input_tokens + write_5m + write_1h) * per_uncached +
                     (double)read * per_cached;
    double total_ms = ttft_ms + (double)output_tokens * per_output;

    /* ==== from here on, the request is answered: commit ==== */
    {
        /* the hit: refreshed */
        if (best >= 0) {
            PyObject *key = PyLong_FromUnsignedLongLong(fast_key(&fk, best));
            if (key == NULL)
                goto commit_error;
            PyObject *entry = PyDict_GetItemWithError(entries, key);
            double expires_at, available_at, ttl;
            if (entry != NULL && entry_numbers(entry, &expires_at, &available_at, &ttl)) {
                double expires = start + ttl;
                if (expires > expires_at) {
                    PyObject *t = entry_tuple(PyTuple_GET_ITEM(entry, 0), NULL, expires,
                                              PyTuple_GET_ITEM(entry, 2), 0.0,
                                              PyTuple_GET_ITEM(entry, 3), 0.0);
                    if (t == NULL || PyDict_SetItem(entries, key, t) < 0) {
                        Py_XDECREF(t);
                        Py_DECREF(key);
                        goto commit_error;
                    }
                    Py_DECREF(t);
                }
            }
            Py_DECREF(key);
            if (refresh_reached)
                for (Py_ssize_t b = 0; b < bp_count; b++) {
                    if (bps[b].position >= best)
                        break;
                    key = PyLong_FromUnsignedLongLong(fast_key(&fk, bps[b].position));
                    if (key == NULL)
                        goto commit_error;
                    entry = PyDict_GetItemWithError(entries, key);
                    double e_expires, e_available, e_ttl;
                    if (entry != NULL &&
                        entry_numbers(entry, &e_expires, &e_available, &e_ttl) &&
                        e_available <= start && start < e_expires + grace &&
                        start + e_ttl > e_expires) {
                        PyObject *t = entry_tuple(PyTuple_GET_ITEM(entry, 0), NULL,
                                                  start + e_ttl, PyTuple_GET_ITEM(entry, 2), 0.0,
                                                  PyTuple_GET_ITEM(entry, 3), 0.0);
                        if (t == NULL || PyDict_SetItem(entries, key, t) < 0) {
                            Py_XDECREF(t);
                            Py_DECREF(key);
                            goto commit_error;
                        }
                        Py_DECREF(t);
                    }
                    Py_DECREF(key);
                }
        }
        /* the writes */
        if (write_count) {
            PyObject *available_obj =
                delay_availability ? PyFloat_FromDouble(start + ttft_ms / 1000.0) : now_obj;
            if (available_obj == NULL)
                goto commit_error;
            if (!delay_availability)
                Py_INCREF(available_obj);
            for (Py_ssize_t i = 0; i < write_count; i++) {
                FastBreakpoint *bp = &bps[write_index[i]];
                double ttl = PyFloat_AS_DOUBLE(bp->seconds);
                PyObject *key = PyLong_FromUnsignedLongLong(fast_key(&fk, bp->position));
                if (key == NULL) {
                    Py_DECREF(available_obj);
                    goto commit_error;
                }
                PyObject *old = PyDict_GetItemWithError(entries, key);
                double o_expires, o_available, o_ttl;
                PyObject *t;
                if (old != NULL && entry_numbers(old, &o_expires, &o_available, &o_ttl) &&
                    start < o_expires) {
                    double new_expires = start + ttl;
                    t = entry_tuple(PyTuple_GET_ITEM(old, 0),
                                    new_expires > o_expires ? NULL : PyTuple_GET_ITEM(old, 1),
                                    new_expires, PyTuple_GET_ITEM(old, 2), 0.0,
                                    ttl > o_ttl ? bp->seconds : PyTuple_GET_ITEM(old, 3), 0.0);
                }
                else {
                    PyObject *tokens = PyLong_FromLongLong(cum[bp->position]);
                    t = tokens == NULL ? NULL
                                       : entry_tuple(tokens, NULL, start + ttl, available_obj,
                                                     0.0, bp->seconds, 0.0);
                    Py_XDECREF(tokens);
                }
                if (t == NULL || PyDict_SetItem(entries, key, t) < 0) {
                    Py_XDECREF(t);
                    Py_DECREF(key);
                    Py_DECREF(available_obj);
                    goto commit_error;
                }
                Py_DECREF(t);
                Py_DECREF(key);
            }
            Py_DECREF(available_obj);
        }

        /* the Message JSON */
        PyObject *count_obj = PyIter_Next(ids);
        if (count_obj == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "the message ID counter stopped");
            goto commit_error;
        }
        long long id_number = PyLong_AsLongLong(count_obj);
        Py_DECREF(count_obj);
        if (id_number == -1 && PyErr_Occurred())
            goto commit_error;
        char digits[32];
        int ndigits = 0;
        if (id_number >= 0 && id_number < 100000000000000LL) { /* 14 digits, zero-padded */
            for (int i = 13; i >= 0; i--, id_number /= 10)
                digits[i] = (char)('0' + id_number % 10);
            ndigits = 14;
            digits[14] = 0;
        }
        else
            ndigits = snprintf(digits, sizeof digits, "%014lld", id_number);
        PyObject *message_id;
        if (PyUnicode_IS_ASCII(id_prefix) && ndigits == 14) {
            Py_ssize_t prefix_length = PyUnicode_GET_LENGTH(id_prefix);
            message_id = PyUnicode_New(prefix_length + 14, 127);
            if (message_id != NULL) {
                char *out = (char *)PyUnicode_1BYTE_DATA(message_id);
                memcpy(out, PyUnicode_1BYTE_DATA(id_prefix), (size_t)prefix_length);
                memcpy(out + prefix_length, digits, 14);
            }
        }
        else
            message_id = PyUnicode_FromFormat("%U%s", id_prefix, digits);
        if (message_id == NULL)
            goto commit_error;
        PyObject *message = response(message_id, model_id, reply, stop_reason, input_tokens,
                                     write_5m, write_1h, read, output_tokens);
        if (message == NULL) {
            Py_DECREF(message_id);
            goto commit_error;
        }

        /* the diagnostics record */
        PyObject *all_packed = PyBytes_FromStringAndSize(NULL, 8 * total_positions);
        PyObject *record = NULL;
        if (all_packed != NULL) {
            char *dst = PyBytes_AS_STRING(all_packed);
            memcpy(dst, &words[1], 8 * (size_t)tools_end);
            memcpy(dst + 8 * tools_end, &words[2 + tools_end], 8 * (size_t)level_n[1]);
            memcpy(dst + 8 * system_end, &words[3 + system_end], 8 * (size_t)msg_positions);
            /* ..., the last position left in the cache and the tokens up to it */
            PyObject *ends[3] = {PyLong_FromSsize_t(tools_end), PyLong_FromSsize_t(system_end),
                                 PyLong_FromSsize_t(total_positions)};
            PyObject *seeds[3] = {PyLong_FromUnsignedLongLong(tools_seed),
                                  PyLong_FromUnsignedLongLong(empty_settings),
                                  PyLong_FromUnsignedLongLong(empty_settings)};
            PyObject *parts[6] = {new_ref(model_id), tuple_of(3, ends), tuple_of(3, seeds),
                                  all_packed, PyLong_FromSsize_t(last_position),
                                  PyLong_FromLongLong(last_position >= 0 ? cum[last_position] : 0)};
            record = tuple_of(6, parts);
        }
        int bad = record == NULL || PyObject_SetItem(records, message_id, record) < 0;
        Py_XDECREF(record);
        Py_DECREF(message_id);
        if (!bad) {
            Py_ssize_t size = PyObject_Size(records);
            if (size < 0)
                bad = 1;
            else if (size > diagnostics_history) {
                PyObject *popped = PyObject_CallMethodOneArg(records, s_popitem, Py_False);
                if (popped == NULL)
                    bad = 1;
                Py_XDECREF(popped);
            }
        }
        /* the request count and the clock */
        if (!bad) {
            attr = PyObject_GetAttr(sim, s_requests);
            PyObject *one = PyLong_FromLong(1);
            PyObject *next = attr && one ? PyNumber_Add(attr, one) : NULL;
            Py_XDECREF(one);
            Py_CLEAR(attr);
            bad = next == NULL || PyObject_SetAttr(sim, s_requests, next) < 0;
            Py_XDECREF(next);
        }
        if (!bad && after_mode != 0) {
            bad = after_mode == 1 ? advance_clock(cf[2], clock_mode, total_ms / 1000.0)
                                  : call_after(sim, total_ms);
        }
        if (bad) {
            Py_DECREF(message);
            goto commit_error;
        }
        Py_DECREF(reply);
        PyObject *parts[3] = {message, PyFloat_FromDouble(ttft_ms), PyFloat_FromDouble(total_ms)};
        result = tuple_of(3, parts);
        goto done;
    commit_error:
        Py_DECREF(reply);
        goto error;
    }

fallback:
    if (PyErr_Occurred())
        goto error;
    result = Py_None;
    Py_INCREF(result);
    goto done;
error:
    result = NULL;
done:
    Py_XDECREF(config);
    Py_XDECREF(attr);
    Py_XDECREF(first_raw);
    Py_XDECREF(snapshots);
    Py_XDECREF(previous);
    Py_XDECREF(prev_raw);
    Py_XDECREF(prev_states);
    Py_XDECREF(prev_marks);
    Py_XDECREF(prev_tokens);
    Py_XDECREF(prev_packed);
    Py_XDECREF(frozen_list);
    Py_XDECREF(states);
    Py_XDECREF(marks);
    Py_XDECREF(tokens_list);
    Py_XDECREF(message_eligible);
    Py_XDECREF(table);
    Py_XDECREF(fast_text);
    Py_XDECREF(estimator);
    Py_XDECREF(max_entries_obj);
    Py_XDECREF(workspace);
    Py_XDECREF(entries);
    Py_XDECREF(records);
    Py_XDECREF(now_obj);
    Py_XDECREF(message_segment_fn);
    PyMem_Free(mwords.data);
    PyMem_Free(mtokens.data);
    PyMem_Free(words);
    PyMem_Free(keys);
    PyMem_Free(have_key);
    PyMem_Free(cum);
    return result;
}

/* ---- module ------------------------------------------------------------------------------- */

static PyMethodDef simcore_methods[] = {
    {"struct_hash", simcore_struct_hash, METH_O,
     "struct_hash(value) -> bytes | None: 16-byte structural digest of a parsed JSON value."},
    {"freeze", simcore_freeze, METH_O,
     "freeze(value) -> object: an immutable copy that matches() compares against."},
    {"matches", (PyCFunction)(void (*)(void))simcore_matches, METH_FASTCALL,
     "matches(frozen, value) -> bool: value is structurally what frozen was frozen from."},
    {"common", (PyCFunction)(void (*)(void))simcore_common, METH_FASTCALL,
     "common(frozen: list, values: list) -> int: leading items that match."},
    {"digest_count", (PyCFunction)(void (*)(void))simcore_digest_count, METH_FASTCALL,
     "digest_count(text, seed, factor, cpt, pw, nw, naw, punct) -> (digest, tokens) | None."},
    {"lookback", (PyCFunction)(void (*)(void))simcore_lookback, METH_FASTCALL,
     "lookback(keyed, breakpoints, units, tools_end, system_end, entries, now, grace, "
     "lookback, same_ttl_only, keys) -> int: the longest read hit (-2: use the Python loop)."},
    {"text_message", (PyCFunction)(void (*)(void))simcore_text_message, METH_FASTCALL,
     "text_message(message, user, assistant, max_entries, estimator) -> segment | None."},
    {"default_reply", (PyCFunction)(void (*)(void))simcore_default_reply, METH_FASTCALL,
     "default_reply(seed, words) -> (text, tokens): the simulator's default reply."},
    {"handle", (PyCFunction)(void (*)(void))simcore_handle, METH_FASTCALL,
     "handle(sim, body, api_key) -> (message, ttft_ms, total_ms) | None: a whole request."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef simcore_module = {
    PyModuleDef_HEAD_INIT, "cachescope._native.simcore",
    "The simulator core's hot loops (pure twin: cachescope.sim._simcore_py).", -1,
    simcore_methods,
};

PyMODINIT_FUNC
PyInit_simcore(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_role, "role"},       {&s_content, "content"},
        {&s_type, "type"},       {&s_text, "text"},
        {&s_cache_control, "cache_control"}, {&s_ttl, "ttl"},
        {&s_user, "user"},       {&s_assistant, "assistant"},
        {&s_ephemeral, "ephemeral"}, {&s_5m, "5m"},
        {&s_1h, "1h"},           {&s_path_content, "content"},
        {&s_path_content0, "content.0"},
        {&s_fast_config, "_fast_config"}, {&s_settings, "settings"},
        {&s_models, "models"}, {&s_clock, "clock"},
        {&s_responder, "responder"}, {&s_concurrent_depth, "_concurrent_depth"},
        {&s_model, "model"}, {&s_max_tokens, "max_tokens"},
        {&s_messages, "messages"}, {&s_system, "system"},
        {&s_systems, "systems"}, {&s_tools, "tools"},
        {&s_metadata, "metadata"}, {&s_stream, "stream"},
        {&s_temperature, "temperature"}, {&s_top_p, "top_p"},
        {&s_top_k, "top_k"}, {&s_stop_sequences, "stop_sequences"},
        {&s_last, "last"}, {&s_snapshots, "snapshots"},
        {&s_raw, "raw"}, {&s_states, "states"},
        {&s_marks, "marks"}, {&s_tokens, "tokens"},
        {&s_packed, "packed"}, {&s_first, "first"},
        {&s_ends, "ends"}, {&s_fast_text, "fast_text"},
        {&s_estimator, "estimator"}, {&s_max_entries, "max_entries"},
        {&s_entries, "entries"}, {&s_records, "records"},
        {&s_now, "now"}, {&s__now, "_now"},
        {&s_requests, "requests"}, {&s_popitem, "popitem"},
        {&s_standard, "standard"}, {&s_message, "message"},
        {&s_end_turn, "end_turn"}, {&s_max_tokens_reason, "max_tokens"},
        {&s__lock, "_lock"}, {&s_acquire, "acquire"},
        {&s_release, "release"}, {&s_advance, "advance"},
        {&s__after, "_after"}, {&s_ctokens, "ctokens"},
        {&s_id, "id"}, {&s_tool_use, "tool_use"},
        {&s_tool_result, "tool_result"}, {&s_tool_use_id, "tool_use_id"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL) {
            *names[i].slot = PyUnicode_InternFromString(names[i].text);
            if (*names[i].slot == NULL)
                return NULL;
        }
    }
    struct {
        PyObject **keys;
        const char **names;
        int n;
    } key_sets[] = {{k_message, k_message_names, 8},
                    {k_usage, k_usage_names, 6},
                    {k_cache_creation, k_cache_creation_names, 2},
                    {k_block, k_block_names, 2}};
    for (size_t i = 0; i < sizeof(key_sets) / sizeof(key_sets[0]); i++)
        for (int j = 0; j < key_sets[i].n; j++)
            if (key_sets[i].keys[j] == NULL &&
                (key_sets[i].keys[j] = PyUnicode_InternFromString(key_sets[i].names[j])) == NULL)
                return NULL;
    if (f_300 == NULL && (f_300 = PyFloat_FromDouble(300.0)) == NULL)
        return NULL;
    if (f_3600 == NULL && (f_3600 = PyFloat_FromDouble(3600.0)) == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&simcore_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddStringConstant(module, "SOURCE_HASH", CACHESCOPE_SOURCE_HASH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
