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
 */
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

/* 1 when `value` (live) is what `frozen` was frozen from, 0 when not, -1 on error. */
static int
matches(PyObject *frozen, PyObject *value, int depth)
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
        if (memcmp(PyUnicode_DATA(frozen), PyUnicode_DATA(value),
                   (size_t)n * PyUnicode_KIND(value)) != 0)
            return 0;
        /* equal code points; a str with lone surrogates never froze, but the live one might
         * hold them only if the frozen one did: equal data means equal strings. */
        return 1;
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
    if (depth > 200 || Py_TYPE(frozen) != &PyTuple_Type)
        return 0;
    Py_ssize_t size = PyTuple_GET_SIZE(frozen);
    if (type == &PyList_Type) {
        Py_ssize_t n = PyList_GET_SIZE(value);
        if (size != n || (n && PyTuple_GET_ITEM(frozen, 0) == Py_Ellipsis))
            return 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i >= PyList_GET_SIZE(value))
                return 0;
            PyObject *item = PyList_GET_ITEM(value, i);
            Py_INCREF(item);
            int r = matches(PyTuple_GET_ITEM(frozen, i), item, depth + 1);
            Py_DECREF(item);
            if (r != 1)
                return r;
        }
        return 1;
    }
    if (type == &PyDict_Type) {
        Py_ssize_t n = PyDict_GET_SIZE(value);
        if (size != 1 + 2 * n || PyTuple_GET_ITEM(frozen, 0) != Py_Ellipsis)
            return 0;
        Py_ssize_t pos = 0, i = 1;
        PyObject *key, *item;
        while (PyDict_Next(value, &pos, &key, &item)) {
            if (i >= size || Py_TYPE(key) != &PyUnicode_Type)
                return 0;
            int r = matches(PyTuple_GET_ITEM(frozen, i), key, depth + 1);
            if (r != 1)
                return r;
            Py_INCREF(item);
            r = matches(PyTuple_GET_ITEM(frozen, i + 1), item, depth + 1);
            Py_DECREF(item);
            if (r != 1)
                return r;
            i += 2;
        }
        return i == size;
    }
    return 0;
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
            uint64_t sum = 0;
            for (Py_ssize_t i = start; i < end; i++)
                sum += weight[p[i]];
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
    return obj != NULL && Py_TYPE(obj) == &PyUnicode_Type &&
           (obj == literal || PyUnicode_Compare(obj, literal) == 0);
}

/* A borrowed dict item, NULL when missing (or on an error, with the exception set). */
static PyObject *
get_item(PyObject *dict, PyObject *key)
{
    return PyDict_GetItemWithError(dict, key);
}

static PyObject *
simcore_text_message(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "text_message(message, user, assistant, max_entries, estimator)");
        return NULL;
    }
    PyObject *message = args[0];
    if (Py_TYPE(message) != &PyDict_Type)
        Py_RETURN_NONE;
    PyObject *role = get_item(message, s_role);
    if (role == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *memo;
    if (is_exact(role, s_user))
        memo = args[1];
    else if (is_exact(role, s_assistant))
        memo = args[2];
    else
        Py_RETURN_NONE;
    if (!PyTuple_Check(memo) || PyTuple_GET_SIZE(memo) != 2 ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(memo, 1))) {
        PyErr_SetString(PyExc_TypeError, "a role's memo must be (seed, dict)");
        return NULL;
    }
    Py_ssize_t max_entries = PyLong_AsSsize_t(args[3]);
    if (max_entries == -1 && PyErr_Occurred())
        return NULL;
    PyObject *estimator = args[4];
    if (!PyTuple_Check(estimator) || PyTuple_GET_SIZE(estimator) != 6) {
        PyErr_SetString(PyExc_TypeError, "estimator must be a 6-tuple");
        return NULL;
    }

    PyObject *content = get_item(message, s_content);
    if (content == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *text, *cc = NULL, *path;
    if (Py_TYPE(content) == &PyUnicode_Type) {
        if (PyUnicode_GET_LENGTH(content) == 0)
            Py_RETURN_NONE;
        text = content;
        path = s_path_content;
    }
    else if (Py_TYPE(content) == &PyList_Type && PyList_GET_SIZE(content) == 1) {
        PyObject *item = PyList_GET_ITEM(content, 0);
        if (Py_TYPE(item) != &PyDict_Type)
            Py_RETURN_NONE;
        PyObject *kind = get_item(item, s_type);
        if (kind == NULL && PyErr_Occurred())
            return NULL;
        if (!is_exact(kind, s_text))
            Py_RETURN_NONE;
        text = get_item(item, s_text);
        if (text == NULL && PyErr_Occurred())
            return NULL;
        if (text == NULL || Py_TYPE(text) != &PyUnicode_Type || PyUnicode_GET_LENGTH(text) == 0)
            Py_RETURN_NONE;
        cc = get_item(item, s_cache_control);
        if (cc == NULL && PyErr_Occurred())
            return NULL;
        if (cc == Py_None)
            cc = NULL;
        if (PyDict_GET_SIZE(item) != 2 + (cc != NULL))
            Py_RETURN_NONE;
        path = s_path_content0;
    }
    else
        Py_RETURN_NONE;

    /* the breakpoint's verdict, for the plain forms only */
    PyObject *ttl_name = NULL;
    double seconds = 0.0;
    if (cc != NULL) {
        if (Py_TYPE(cc) != &PyDict_Type)
            Py_RETURN_NONE;
        PyObject *cc_type = get_item(cc, s_type);
        if (cc_type == NULL && PyErr_Occurred())
            return NULL;
        if (!is_exact(cc_type, s_ephemeral))
            Py_RETURN_NONE;
        PyObject *ttl = get_item(cc, s_ttl);
        if (ttl == NULL && PyErr_Occurred())
            return NULL;
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
            Py_RETURN_NONE;
    }

    /* (digest, tokens) from the role's text memo, or hashed and counted now */
    PyObject *table = PyTuple_GET_ITEM(memo, 1);
    PyObject *found = PyDict_GetItemWithError(table, text);
    if (found == NULL) {
        if (PyErr_Occurred())
            return NULL;
        PyObject *call_args[8] = {text, PyTuple_GET_ITEM(memo, 0)};
        for (int i = 0; i < 6; i++)
            call_args[2 + i] = PyTuple_GET_ITEM(estimator, i);
        PyObject *computed = simcore_digest_count(self, call_args, 8);
        if (computed == NULL)
            return NULL;
        if (computed == Py_None)
            return computed; /* no UTF-8 form: the Python path hashes it */
        if (PyDict_GET_SIZE(table) >= max_entries)
            PyDict_Clear(table);
        if (PyDict_SetItem(table, text, computed) < 0) {
            Py_DECREF(computed);
            return NULL;
        }
        Py_DECREF(computed); /* the table holds it */
        found = computed;
    }
    if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 2) {
        PyErr_SetString(PyExc_TypeError, "a text memo entry must be (digest, tokens)");
        return NULL;
    }
    Py_INCREF(found);
    PyObject *digest = PyTuple_GET_ITEM(found, 0), *tokens = PyTuple_GET_ITEM(found, 1);
    unsigned long long value = PyLong_AsUnsignedLongLong(digest);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        Py_DECREF(found);
        return NULL;
    }
    uint64_t word = (uint64_t)value; /* native byte order, like int.to_bytes(8, sys.byteorder) */

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
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL) {
            *names[i].slot = PyUnicode_InternFromString(names[i].text);
            if (*names[i].slot == NULL)
                return NULL;
        }
    }
    PyObject *module = PyModule_Create(&simcore_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddStringConstant(module, "SOURCE_HASH", CACHESCOPE_SOURCE_HASH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
