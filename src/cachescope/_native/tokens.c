/* cachescope._native.tokens: `EstimatingCounter.count` in C, with exactly the same integers.
 *
 *   count(text, factor) -> int
 *
 * Twin: `cachescope._tokens.EstimatingCounter._count_py`. The estimate counts, over the text's
 * UTF-8 ("surrogatepass") bytes, the punctuation bytes and newlines (both ASCII, which UTF-8 never
 * uses inside a multi-byte character), and the bytes beyond one per character; here they are
 * counted from the str's own storage, without encoding it. The floating-point expression is
 * the Python one, term by term in the same order, in IEEE double (ISO C mode: no contraction into
 * fused multiply-adds), so the result is bit-identical; NaN and infinity raise what math.ceil
 * raises.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

#define CHARS_PER_TOKEN 3.6
#define PUNCT_WEIGHT 0.6
#define NEWLINE_WEIGHT 0.5
#define NON_ASCII_WEIGHT 0.35

static const char PUNCT[] = "{}[]()<>:;,.\"'=+-*/\\|&^%$#@!?~`";
static unsigned char is_punct[128];
/* per byte of a 1-byte-wide str: punctuation in the low 32 bits, a newline in the high 32 */
static unsigned long long byte_weight[256];

/* extra UTF-8 bytes of one code point beyond the first (surrogates: 3 bytes, surrogatepass) */
static inline long long
extra_bytes(Py_UCS4 c)
{
    return c < 0x80 ? 0 : c < 0x800 ? 1 : c < 0x10000 ? 2 : 3;
}

static PyObject *
tokens_count(PyObject *self, PyObject *args)
{
    PyObject *text;
    double factor, estimate, scaled, rounded;
    Py_ssize_t length, i;
    long long punct = 0, newlines = 0, extra = 0, plain;
    int kind;
    const void *data;
    if (!PyArg_ParseTuple(args, "Ud:count", &text, &factor))
        return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return NULL;
#endif
    length = PyUnicode_GET_LENGTH(text);
    if (length == 0)
        return PyLong_FromLong(0);
    kind = (int)PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    if (kind == PyUnicode_1BYTE_KIND) {
        /* branch-free: one table add per byte (counts stay below 2**32: a str of 4 GB would
         * be needed to carry into the newline half, so longer ones take the loop below) */
        const unsigned char *p = data;
        if (length < 0xFFFFFFFFLL) {
            unsigned long long both = 0, high = 0;
            for (i = 0; i < length; i++) {
                both += byte_weight[p[i]];
                high += p[i] >> 7;
            }
            punct = (long long)(both & 0xFFFFFFFFULL);
            newlines = (long long)(both >> 32);
            extra = (long long)high;
        }
        else {
            for (i = 0; i < length; i++) {
                unsigned char c = p[i];
                if (c < 0x80) {
                    punct += is_punct[c];
                    newlines += c == '\n';
                }
                else {
                    extra += 1;
                }
            }
        }
    }
    else {
        for (i = 0; i < length; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 0x80) {
                punct += is_punct[c];
                newlines += c == '\n';
            }
            else {
                extra += extra_bytes(c);
            }
        }
    }
    plain = (long long)length - punct - newlines;
    /* Python: plain / CHARS_PER_TOKEN + punct * PUNCT_WEIGHT + newlines * NEWLINE_WEIGHT
     *         + extra_bytes * NON_ASCII_WEIGHT, then * factor, math.ceil, max(1, ...) */
    estimate = (double)plain / CHARS_PER_TOKEN;
    estimate = estimate + (double)punct * PUNCT_WEIGHT;
    estimate = estimate + (double)newlines * NEWLINE_WEIGHT;
    estimate = estimate + (double)extra * NON_ASCII_WEIGHT;
    scaled = estimate * factor;
    if (isnan(scaled)) {
        PyErr_SetString(PyExc_ValueError, "cannot convert float NaN to integer");
        return NULL;
    }
    if (isinf(scaled)) {
        PyErr_SetString(PyExc_OverflowError, "cannot convert float infinity to integer");
        return NULL;
    }
    rounded = ceil(scaled);
    if (rounded < 1.0)
        return PyLong_FromLong(1);
    return PyLong_FromDouble(rounded);
}

static PyMethodDef tokens_methods[] = {
    {"count", tokens_count, METH_VARARGS,
     "count(text, factor) -> int: EstimatingCounter(factor).count(text), computed in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef tokens_module = {
    PyModuleDef_HEAD_INIT, "cachescope._native.tokens",
    "Token estimation in C (pure twin: cachescope._tokens.EstimatingCounter._count_py).", -1,
    tokens_methods,
};

PyMODINIT_FUNC
PyInit_tokens(void)
{
    PyObject *module;
    const char *p;
    for (p = PUNCT; *p; p++) {
        is_punct[(unsigned char)*p] = 1;
        byte_weight[(unsigned char)*p] = 1;
    }
    byte_weight['\n'] = 1ULL << 32;
    module = PyModule_Create(&tokens_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddStringConstant(module, "SOURCE_HASH", CACHESCOPE_SOURCE_HASH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
