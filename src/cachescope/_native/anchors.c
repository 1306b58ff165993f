/* cachescope._native.anchors: every occurrence of many short literals in one pass over a text.
 *
 * Lint looks for each rule's anchors (a few letters: "jan", "0:00", "req_", "#"...) in a "shape"
 * of the prompt, an ASCII str. Searching ~90 anchors one `str.find` loop at a time reads a 5 MB
 * prompt ~90 times; this reads it once. A bitmap of the anchors' first two bytes rejects most
 * positions with one bit test; a position that passes is compared with the anchors filed under
 * its first two bytes (a 12-bit bucket of them), one-byte anchors with those under its first.
 *
 * Pure-Python twin: `cachescope._lint._positions`, once per anchor (every start, overlapping).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_ANCHORS 4096
#define BUCKETS 4096
#define BUCKET(a, b) ((((unsigned)(a) << 5) ^ (unsigned)(b)) & (BUCKETS - 1))

static int
ascii_view(PyObject *obj, const char *what, const unsigned char **data, Py_ssize_t *size)
{
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (!PyUnicode_IS_ASCII(obj)) {
        PyErr_Format(PyExc_ValueError, "%s must be ASCII", what);
        return -1;
    }
    *data = (const unsigned char *)PyUnicode_DATA(obj);
    *size = PyUnicode_GET_LENGTH(obj);
    return 0;
}

static int
append_index(PyObject *list, Py_ssize_t at)
{
    PyObject *number = PyLong_FromSsize_t(at);
    if (number == NULL)
        return -1;
    int rc = PyList_Append(list, number);
    Py_DECREF(number);
    return rc;
}

static PyObject *
anchors_find_all(PyObject *self, PyObject *args)
{
    PyObject *text_obj, *anchors_obj;
    if (!PyArg_ParseTuple(args, "OO:find_all", &text_obj, &anchors_obj))
        return NULL;
    const unsigned char *text;
    Py_ssize_t size;
    if (ascii_view(text_obj, "text", &text, &size) < 0)
        return NULL;
    PyObject *anchors = PySequence_Fast(anchors_obj, "anchors must be a sequence of str");
    if (anchors == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(anchors);
    PyObject *result = NULL;
    const unsigned char **needle = NULL;
    Py_ssize_t *length = NULL;
    int *next = NULL;
    if (count > MAX_ANCHORS) {
        PyErr_Format(PyExc_ValueError, "at most %d anchors", MAX_ANCHORS);
        goto done;
    }
    needle = PyMem_Malloc(sizeof(*needle) * (size_t)(count + 1));
    length = PyMem_Malloc(sizeof(*length) * (size_t)(count + 1));
    next = PyMem_Malloc(sizeof(*next) * (size_t)(count + 1));
    result = PyList_New(count);
    if (needle == NULL || length == NULL || next == NULL || result == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        Py_CLEAR(result);
        goto done;
    }
    /* pairs: a bit per first two bytes of an anchor; head[BUCKET(first two bytes)]: the first
     * such anchor (then next[k]); single[c]: the first one-byte anchor c (then next[k]). */
    int head[BUCKETS];
    int single[256];
    uint64_t pairs[65536 / 64];
    memset(head, -1, sizeof(head));
    memset(single, -1, sizeof(single));
    memset(pairs, 0, sizeof(pairs));
    int any_single = 0;
    for (Py_ssize_t k = count - 1; k >= 0; k--) {
        PyObject *item = PySequence_Fast_GET_ITEM(anchors, k);
        PyObject *positions = PyList_New(0);
        if (positions == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, k, positions);
        if (ascii_view(item, "each anchor", &needle[k], &length[k]) < 0) {
            Py_CLEAR(result);
            goto done;
        }
        if (length[k] == 0) {
            PyErr_SetString(PyExc_ValueError, "an anchor must not be empty");
            Py_CLEAR(result);
            goto done;
        }
        unsigned char first = needle[k][0];
        if (length[k] == 1) {
            next[k] = single[first];
            single[first] = (int)k;
            any_single = 1;
        } else {
            unsigned key = ((unsigned)first << 8) | needle[k][1];
            pairs[key >> 6] |= (uint64_t)1 << (key & 63);
            unsigned bucket = BUCKET(first, needle[k][1]);
            next[k] = head[bucket];
            head[bucket] = (int)k;
        }
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        const unsigned char *at = text + i;
        if (any_single) {
            for (int k = single[at[0]]; k != -1; k = next[k]) {
                if (append_index(PyList_GET_ITEM(result, k), i) < 0) {
                    Py_CLEAR(result);
                    goto done;
                }
            }
        }
        if (i + 1 >= size)
            break;
        unsigned key = ((unsigned)at[0] << 8) | at[1];
        if (!(pairs[key >> 6] & ((uint64_t)1 << (key & 63))))
            continue;
        Py_ssize_t left = size - i;
        for (int k = head[BUCKET(at[0], at[1])]; k != -1; k = next[k]) {
            const unsigned char *want = needle[k];
            Py_ssize_t n = length[k];
            if (n > left || want[0] != at[0] || want[1] != at[1])
                continue;
            Py_ssize_t j = 2;
            while (j < n && want[j] == at[j])
                j++;
            if (j == n && append_index(PyList_GET_ITEM(result, k), i) < 0) {
                Py_CLEAR(result);
                goto done;
            }
        }
    }
done:
    PyMem_Free(needle);
    PyMem_Free(length);
    PyMem_Free(next);
    Py_DECREF(anchors);
    return result;
}

static PyMethodDef anchors_methods[] = {
    {"find_all", anchors_find_all, METH_VARARGS,
     "find_all(text, anchors) -> list[list[int]]: for each anchor, every index where it starts in "
     "text (overlapping occurrences too). text and anchors are ASCII str; anchors non-empty."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef anchors_module = {
    PyModuleDef_HEAD_INIT, "cachescope._native.anchors",
    "Many short literals found in one pass (pure twin: cachescope._lint._positions).", -1,
    anchors_methods,
};

PyMODINIT_FUNC
PyInit_anchors(void)
{
    PyObject *module = PyModule_Create(&anchors_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddStringConstant(module, "SOURCE_HASH", CACHESCOPE_SOURCE_HASH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
