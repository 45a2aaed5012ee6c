/* The uniforms of numpy's Generator(Philox(key)).random(n, dtype=float32) at chosen
 * positions only.
 *
 * keel's T > 0 noise for a step is that stream over the whole vocabulary, but only the few
 * hundred ids that could still win are ever looked at. numpy has to produce the stream
 * whole (about three quarters of the sampler's time on a 49k vocabulary); Philox is
 * counter-based, so any position can be computed on its own, bit for bit what the stream
 * gives there. tests/unit/test_sampling.py compares the two over whole vocabularies.
 *
 * The stream, as numpy lays it out: block b (b = 1, 2, ...) is Philox4x64-10 of the
 * counter b under the 128-bit key; its four 64-bit words are used in order, each as two
 * 32-bit draws, low half first; a float32 draw is the top 24 bits of one, times 2^-24. So
 * float32 number i comes from block i / 8 + 1, word (i / 2) % 4, half i % 2.
 *
 * Plain C with the stable ABI of Python 3.11 and later: one wheel serves every version.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The high 64 bits of a * b, in 32-bit pieces: one code path on every compiler. */
static uint64_t high_product(uint64_t a, uint64_t b, uint64_t *low) {
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
    uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
    uint64_t middle = (lo_lo >> 32) + (uint32_t)hi_lo + (uint32_t)lo_hi;
    *low = (middle << 32) | (uint32_t)lo_lo;
    return hi_hi + (hi_lo >> 32) + (lo_hi >> 32) + (middle >> 32);
}

/* Philox4x64 with 10 rounds (Salmon et al., SC 2011; numpy's constants). */
static void philox_block(uint64_t counter, uint64_t key0, uint64_t key1, uint64_t out[4]) {
    uint64_t c0 = counter, c1 = 0, c2 = 0, c3 = 0;
    for (int round = 0; round < 10; round++) {
        uint64_t lo0, lo1;
        uint64_t hi0 = high_product(0xD2E7470EE14C6C93ULL, c0, &lo0);
        uint64_t hi1 = high_product(0xCA5A826395121157ULL, c2, &lo1);
        c0 = hi1 ^ c1 ^ key0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ key1;
        c3 = lo0;
        key0 += 0x9E3779B97F4A7C15ULL;
        key1 += 0xBB67AE8584CAA73BULL;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

static const char WRONG_BUFFERS[] =
    "uniforms_at needs int64 positions and a float32 output as long";

/* A contiguous buffer of 8-byte signed integers ("q" or "l") or, writable, of 4-byte
 * floats ("f"); 0 with a ValueError or TypeError set otherwise. */
static int take_buffer(PyObject *obj, Py_buffer *view, int writable) {
    int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        return 0;
    }
    const char *format = view->format ? view->format : "B";
    char kind = format[strlen(format) - 1];
    int fits = writable ? (kind == 'f' && view->itemsize == 4)
                        : ((kind == 'q' || kind == 'l') && view->itemsize == 8);
    if (!fits) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, WRONG_BUFFERS);
    }
    return fits;
}

/* Fills `uniform` with the draws at `position`; 0 with a ValueError set at a negative
 * position. Consecutive positions in one block share its computation. */
static int fill(uint64_t key_low, uint64_t key_high, const int64_t *position, float *uniform,
                Py_ssize_t count) {
    uint64_t block[4], computed = 0; /* block 0 is never used: none computed yet */
    for (Py_ssize_t i = 0; i < count; i++) {
        if (position[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "uniforms_at: a position is negative");
            return 0;
        }
        uint64_t at = (uint64_t)position[i], counter = at / 8 + 1;
        if (counter != computed) {
            philox_block(counter, key_low, key_high, block);
            computed = counter;
        }
        uint64_t word = block[(at / 2) % 4];
        uint32_t draw = (at % 2) ? (uint32_t)(word >> 32) : (uint32_t)word;
        uniform[i] = (float)(draw >> 8) * (1.0f / 16777216.0f);
    }
    return 1;
}

/* uniforms_at(key_low, key_high, positions, out): positions is int64, out float32 of the
 * same length. */
static PyObject *uniforms_at(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *low, *high, *positions_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &low, &high, &positions_obj, &out_obj)) {
        return NULL;
    }
    /* these refuse negative or wider keys (OverflowError), where "K" would wrap them */
    unsigned long long key_low = PyLong_AsUnsignedLongLong(low);
    unsigned long long key_high = PyErr_Occurred() ? 0 : PyLong_AsUnsignedLongLong(high);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer positions, out;
    if (!take_buffer(positions_obj, &positions, 0)) {
        return NULL;
    }
    if (!take_buffer(out_obj, &out, 1)) {
        PyBuffer_Release(&positions);
        return NULL;
    }
    Py_ssize_t count = positions.len / 8;
    int filled = out.len == count * 4;
    if (!filled) {
        PyErr_SetString(PyExc_ValueError, WRONG_BUFFERS);
    } else {
        filled = fill(key_low, key_high, positions.buf, out.buf, count);
    }
    PyBuffer_Release(&positions);
    PyBuffer_Release(&out);
    if (!filled) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"uniforms_at", uniforms_at, METH_VARARGS,
     "uniforms_at(key_low, key_high, positions, out): numpy's float32 Philox draws at "
     "positions, written to out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "keel._philox", .m_size = 0, .m_methods = methods};

PyMODINIT_FUNC PyInit__philox(void) { return PyModule_Create(&module); }
