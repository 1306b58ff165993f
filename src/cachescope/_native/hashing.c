/* cachescope._native.hashing: xxh3-64 of a str's UTF-8 (or of bytes) without copying.
 *
 * Pure-Python twin: xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass")).
 * For a str the UTF-8 form comes from PyUnicode_AsUTF8AndSize: no copy at all for ASCII
 * strings (CPython stores them as UTF-8 already), one cached copy for others.
 *
 * Also the text hash of texthash.h (cs_text_hash, for message keys), exposed for tests and
 * benchmarks: text_hash(bytes) and TEXT_HASH ("aes" or "xxh3"); its pure-Python twin for the
 * "aes" algorithm is cachescope._texthash.aes_text_hash_py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* xxh3's AVX2 kernels, for the benchmark's peer (what blocks.c hashed long strings with) */
#define CS_BENCH_AVX2 1
#define XXH_DISPATCH_AVX2 1
#define XXH_TARGET_AVX2 __attribute__((__target__("avx2")))
#define XXH_ACC_ALIGN 64
#include <immintrin.h>
#endif
#define XXH_INLINE_ALL
#include "xxhash.h"
#include "texthash.h"

#include <time.h>

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

static PyObject *
hashing_text_hash(PyObject *self, PyObject *obj)
{
    Py_buffer view;
    unsigned long long hash;
    if (PyUnicode_Check(obj) || !PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError, "expected a bytes-like object, got %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    hash = cs_text_hash(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(hash);
}

static const char *
path_name(int path)
{
    return path == CS_TH_VAES ? "vaes" : path == CS_TH_AESNI ? "aesni" : "xxh3";
}

/* Tests only: force the AES-NI path (or back to the best one) to compare it with VAES. */
static PyObject *
hashing_text_hash_path(PyObject *self, PyObject *args)
{
    const char *name = NULL;
    int wanted;
    if (!PyArg_ParseTuple(args, "|s:_text_hash_path", &name))
        return NULL;
    cs_text_hash_init();
    if (name != NULL) {
        if (strcmp(name, "auto") == 0)
            wanted = cs_th_best;
        else if (strcmp(name, "vaes") == 0)
            wanted = CS_TH_VAES;
        else if (strcmp(name, "aesni") == 0)
            wanted = CS_TH_AESNI;
        else if (strcmp(name, "xxh3") == 0)
            wanted = CS_TH_XXH3;
        else {
            PyErr_Format(PyExc_ValueError,
                         "unknown text hash path %.50s (auto, vaes, aesni or xxh3)", name);
            return NULL;
        }
        /* Only a path the CPU runs, and never another algorithm than TEXT_HASH's. */
        if (wanted > cs_th_best || (wanted == CS_TH_XXH3) != (cs_th_best == CS_TH_XXH3)) {
            PyErr_Format(PyExc_ValueError, "text hash path %s is not available here (best: %s)",
                         name, path_name(cs_th_best));
            return NULL;
        }
        cs_th_path = wanted;
    }
    return PyUnicode_FromString(path_name(cs_th_path));
}

#if CS_TH_X86
__attribute__((target("avx2"))) static unsigned long long
read_avx2(const void *data, size_t n)
{
    /* Four accumulators, 128 bytes a step: bound by the loads, not by a chain of xors. */
    const unsigned char *p = (const unsigned char *)data;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    unsigned long long lanes[4];
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    for (; i + 32 <= n; i += 32)
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    _mm256_storeu_si256((__m256i *)lanes, a0);
    return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3] ^ i;
}
#endif

/* A plain read of every byte (whole 8-byte words; the memory-speed reference). */
static unsigned long long
read_words(const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    unsigned long long acc = 0, word;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&word, p + i, 8);
        acc ^= word;
    }
    return acc ^ i;
}

static double
monotonic_seconds(void)
{
#if defined(CLOCK_MONOTONIC)
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

static unsigned long long
bench_xxh3(const void *data, size_t size)
{
    return XXH3_64bits(data, size);
}

#ifdef CS_BENCH_AVX2
/* xxh3 with its AVX2 kernel for long inputs, as blocks.c runs it where the CPU has AVX2 */
XXH_TARGET_AVX2 static unsigned long long
bench_xxh3_avx2(const void *data, size_t size)
{
    if (size <= XXH3_MIDSIZE_MAX)
        return XXH3_64bits(data, size);
    return XXH3_hashLong_64b_internal(data, size, XXH3_kSecret, sizeof(XXH3_kSecret),
                                      XXH3_accumulate_avx2, XXH3_scrambleAcc_avx2);
}
#endif

/* Benchmarks only: seconds for `rounds` passes of one function over every buffer, in C. */
static PyObject *
hashing_bench(PyObject *self, PyObject *args)
{
    const char *name;
    PyObject *buffers, *seq;
    Py_ssize_t rounds, count, i, r;
    unsigned long long (*function)(const void *, size_t);
    const char **datas = NULL;
    size_t *sizes = NULL;
    volatile unsigned long long sink = 0;
    double start, seconds;
    if (!PyArg_ParseTuple(args, "sOn:_bench", &name, &buffers, &rounds))
        return NULL;
    if (strcmp(name, "text_hash") == 0)
        function = cs_text_hash;
    else if (strcmp(name, "xxh3") == 0)
        function = bench_xxh3;
    else if (strcmp(name, "xxh3_avx2") == 0) {
        function = bench_xxh3;
#ifdef CS_BENCH_AVX2
        if (__builtin_cpu_supports("avx2"))
            function = bench_xxh3_avx2;
#endif
    }
    else if (strcmp(name, "read") == 0) {
        function = read_words;
#if CS_TH_X86
        if (__builtin_cpu_supports("avx2"))
            function = read_avx2;
#endif
    }
    else {
        PyErr_Format(PyExc_ValueError, "unknown function %.50s (text_hash, xxh3, xxh3_avx2 or read)", name);
        return NULL;
    }
    seq = PySequence_Fast(buffers, "buffers must be a sequence of bytes");
    if (seq == NULL)
        return NULL;
    count = PySequence_Fast_GET_SIZE(seq);
    datas = PyMem_Malloc(sizeof(*datas) * (size_t)(count + 1));
    sizes = PyMem_Malloc(sizeof(*sizes) * (size_t)(count + 1));
    if (datas == NULL || sizes == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "buffers must be bytes, got %.100s",
                         Py_TYPE(item)->tp_name);
            goto fail;
        }
        datas[i] = PyBytes_AS_STRING(item);
        sizes[i] = (size_t)PyBytes_GET_SIZE(item);
    }
    cs_text_hash_init();
    start = monotonic_seconds();
    for (r = 0; r < rounds; r++)
        for (i = 0; i < count; i++)
            sink += function(datas[i], sizes[i]);
    seconds = monotonic_seconds() - start;
    (void)sink;
    PyMem_Free(datas);
    PyMem_Free(sizes);
    Py_DECREF(seq);
    return PyFloat_FromDouble(seconds);
fail:
    PyMem_Free(datas);
    PyMem_Free(sizes);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef hashing_methods[] = {
    {"xxh3_64", hashing_xxh3_64, METH_O,
     "xxh3_64(text) -> int: xxh3-64 of a str's UTF-8 (or of bytes), without a copy."},
    {"text_hash", hashing_text_hash, METH_O,
     "text_hash(data) -> int: the 64-bit text hash of a bytes-like object (TEXT_HASH names it)."},
    {"_text_hash_path", hashing_text_hash_path, METH_VARARGS,
     "_text_hash_path([name]) -> str: the implementation in use; tests force 'aesni' or 'auto'."},
    {"_bench", hashing_bench, METH_VARARGS,
     "_bench(name, buffers, rounds) -> float: seconds for rounds passes of text_hash, xxh3, "
     "xxh3_avx2 or "
     "read over a list of bytes, timed in C."},
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
    if (PyModule_AddStringConstant(module, "TEXT_HASH", cs_text_hash_init()) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
