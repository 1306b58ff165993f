/* cachescope._native.hashing: xxh3-64 of a str's UTF-8 (or of bytes) without copying.
 *
 * Pure-Python twin: xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass")).
 * For a str the UTF-8 form comes from PyUnicode_AsUTF8AndSize: no copy at all for ASCII
 * strings (CPython stores them as UTF-8 already), one cached copy for others.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

static int
utf8_view(PyObject *obj, const char **data, Py_ssize_t *size)
{
    if (PyUnicode_Check(obj)) {
        *data = PyUnicode_AsUTF8AndSize(obj, size);
        return *data == NULL ? -1 : 0;
    }
    if (PyBytes_Check(obj)) {
        *data = PyBytes_AS_STRING(obj);
        *size = PyBytes_GET_SIZE(obj);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "expected str or bytes, got %.100s", Py_TYPE(obj)->tp_name);
    return -1;
}

static PyObject *
hashing_xxh3_64(PyObject *self, PyObject *obj)
{
    const char *data;
    Py_ssize_t size;
    if (utf8_view(obj, &data, &size) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(XXH3_64bits(data, (size_t)size));
}

static PyMethodDef hashing_methods[] = {
    {"xxh3_64", hashing_xxh3_64, METH_O,
     "xxh3_64(text) -> int: xxh3-64 of a str's UTF-8 (or of bytes), without a copy."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hashing_module = {
    PyModuleDef_HEAD_INIT, "cachescope._native.hashing",
    "xxh3-64 of str or bytes without copying (pure twin: xxhash.xxh3_64_intdigest).", -1,
    hashing_methods,
};

PyMODINIT_FUNC
PyInit_hashing(void)
{
    PyObject *module = PyModule_Create(&hashing_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddStringConstant(module, "SOURCE_HASH", CACHESCOPE_SOURCE_HASH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
