/* The uniforms of numpy's Generator(Philox(key)).random(n, dtype=float32) at chosen
 * positions only, and the two scans of keel's noisy argmax around them.
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
 * The scans (contenders, best_score) run right after a decode, when the caches hold the
 * model's weights instead of numpy's code: one C loop each, where numpy needed a dozen
 * calls (bench/cold.py). Their arithmetic is numpy's, step for step: float32 compares
 * against the cut rounded to float32, float32 division and subtraction (IEEE, so the same
 * bits), and np.argmax's rule (the first NaN, else the first of the largest).
 *
 * Plain C with the stable ABI of Python 3.11 and later: one wheel serves every version.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
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

/* A contiguous buffer of 8-byte signed integers (kind 'q': numpy's "q" or "l") or of
 * 4-byte floats ('f'), writable if asked; 0 with `wrong` as a ValueError (or the buffer
 * protocol's TypeError) otherwise. */
static int take_buffer(PyObject *obj, Py_buffer *view, char want, int writable,
                       const char *wrong) {
    int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        return 0;
    }
    const char *format = view->format ? view->format : "B";
    char kind = format[strlen(format) - 1];
    int fits = want == 'f' ? (kind == 'f' && view->itemsize == 4)
                           : ((kind == 'q' || kind == 'l') && view->itemsize == 8);
    if (!fits) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, wrong);
    }
    return fits;
}

/* The 128-bit key from two Python ints; 0 with an OverflowError for a negative or wider
 * one (where "K" would wrap it). */
static int take_key(PyObject *low, PyObject *high, uint64_t *key_low, uint64_t *key_high) {
    *key_low = PyLong_AsUnsignedLongLong(low);
    *key_high = PyErr_Occurred() ? 0 : PyLong_AsUnsignedLongLong(high);
    return !PyErr_Occurred();
}

/* The float32 draw at `at` of the stream keyed by (key_low, key_high). `block` caches the
 * last Philox block computed (its counter in *computed, 0 for none yet: block 0 is never
 * used), so consecutive positions share it. */
static float draw_at(uint64_t key_low, uint64_t key_high, uint64_t at, uint64_t block[4],
                     uint64_t *computed) {
    uint64_t counter = at / 8 + 1;
    if (counter != *computed) {
        philox_block(counter, key_low, key_high, block);
        *computed = counter;
    }
    uint64_t word = block[(at / 2) % 4];
    uint32_t draw = (at % 2) ? (uint32_t)(word >> 32) : (uint32_t)word;
    return (float)(draw >> 8) * (1.0f / 16777216.0f);
}

static const char NEGATIVE[] = "a position is negative";

/* Fills `uniform` with the draws at `position`; 0 with a ValueError set at a negative
 * position. */
static int fill(uint64_t key_low, uint64_t key_high, const int64_t *position, float *uniform,
                Py_ssize_t count) {
    uint64_t block[4], computed = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (position[i] < 0) {
            PyErr_SetString(PyExc_ValueError, NEGATIVE);
            return 0;
        }
        uniform[i] = draw_at(key_low, key_high, (uint64_t)position[i], block, &computed);
    }
    return 1;
}

/* uniforms_at(key_low, key_high, positions, out): positions is int64, out float32 of the
 * same length. */
static PyObject *uniforms_at(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *low, *high, *positions_obj, *out_obj;
    uint64_t key_low, key_high;
    if (!PyArg_ParseTuple(args, "OOOO", &low, &high, &positions_obj, &out_obj) ||
        !take_key(low, high, &key_low, &key_high)) {
        return NULL;
    }
    Py_buffer positions, out;
    if (!take_buffer(positions_obj, &positions, 'q', 0, WRONG_BUFFERS)) {
        return NULL;
    }
    if (!take_buffer(out_obj, &out, 'f', 1, WRONG_BUFFERS)) {
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

/* uniform_at(key_low, key_high, position) -> float: one draw, without the buffers. */
static PyObject *uniform_at(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *low, *high;
    long long position;
    uint64_t key_low, key_high, block[4], computed = 0;
    if (!PyArg_ParseTuple(args, "OOL", &low, &high, &position) ||
        !take_key(low, high, &key_low, &key_high)) {
        return NULL;
    }
    if (position < 0) {
        PyErr_SetString(PyExc_ValueError, NEGATIVE);
        return NULL;
    }
    return PyFloat_FromDouble(draw_at(key_low, key_high, (uint64_t)position, block, &computed));
}

static const char WRONG_CONTENDERS[] =
    "contenders needs float32 values, int64 ids (or None) as long, and an int64 index and "
    "a float32 uniform output at least as long";

/* contenders(key_low, key_high, values, ids, cut, index, uniform) -> (count, zero_drawn):
 * the indices i (ascending) with values[i] >= cut as float32, all of them if cut is not
 * finite (NaN or infinite tops keep every id), written to index[:count]; the draws at
 * their positions (ids[i], or i without ids) written to uniform[:count]; and whether one
 * of those draws is 0, whose logarithm numpy would warn of. */
static PyObject *contenders(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *low, *high, *values_obj, *ids_obj, *index_obj, *uniform_obj;
    double cut;
    uint64_t key_low, key_high, block[4], computed = 0;
    if (!PyArg_ParseTuple(args, "OOOOdOO", &low, &high, &values_obj, &ids_obj, &cut,
                          &index_obj, &uniform_obj) ||
        !take_key(low, high, &key_low, &key_high)) {
        return NULL;
    }
    Py_buffer values, ids = {0}, index, uniform;
    int with_ids = ids_obj != Py_None;
    if (!take_buffer(values_obj, &values, 'f', 0, WRONG_CONTENDERS)) {
        return NULL;
    }
    if (with_ids && !take_buffer(ids_obj, &ids, 'q', 0, WRONG_CONTENDERS)) {
        PyBuffer_Release(&values);
        return NULL;
    }
    if (!take_buffer(index_obj, &index, 'q', 1, WRONG_CONTENDERS)) {
        PyBuffer_Release(&values);
        if (with_ids) PyBuffer_Release(&ids);
        return NULL;
    }
    if (!take_buffer(uniform_obj, &uniform, 'f', 1, WRONG_CONTENDERS)) {
        PyBuffer_Release(&values);
        if (with_ids) PyBuffer_Release(&ids);
        PyBuffer_Release(&index);
        return NULL;
    }
    Py_ssize_t n = values.len / 4, count = 0;
    int zero_drawn = 0;
    int fits = (!with_ids || ids.len / 8 == n) && index.len / 8 >= n && uniform.len / 4 >= n;
    if (!fits) {
        PyErr_SetString(PyExc_ValueError, WRONG_CONTENDERS);
    } else {
        const float *value = values.buf;
        const int64_t *id = ids.buf;
        int64_t *chosen = index.buf;
        /* rounded to nearest, beyond float's range to an infinity (IEEE, C's Annex F):
         * numpy's cast of the cut for `values >= cut` */
        float *draw = uniform.buf, least = (float)cut;
        int all = !isfinite(cut);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!all && !(value[i] >= least)) {
                continue;
            }
            int64_t position = with_ids ? id[i] : i;
            if (position < 0) {
                PyErr_SetString(PyExc_ValueError, NEGATIVE);
                fits = 0;
                break;
            }
            chosen[count] = i;
            draw[count] = draw_at(key_low, key_high, (uint64_t)position, block, &computed);
            zero_drawn |= draw[count++] == 0.0f;
        }
    }
    PyBuffer_Release(&values);
    if (with_ids) PyBuffer_Release(&ids);
    PyBuffer_Release(&index);
    PyBuffer_Release(&uniform);
    return fits ? Py_BuildValue("(nO)", count, zero_drawn ? Py_True : Py_False) : NULL;
}

static const char WRONG_SCORES[] =
    "best_score needs float32 values, int64 indices into them and float32 logs as long";

/* best_score(values, index, scale, double_log) -> index[k] for the k with the largest
 * values[index[k]] / scale - double_log[k] (a draw's noise is -double_log), by np.argmax's
 * rule. */
static PyObject *best_score(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *values_obj, *index_obj, *logs_obj;
    float scale;
    if (!PyArg_ParseTuple(args, "OOfO", &values_obj, &index_obj, &scale, &logs_obj)) {
        return NULL;
    }
    Py_buffer values, index, logs;
    if (!take_buffer(values_obj, &values, 'f', 0, WRONG_SCORES)) {
        return NULL;
    }
    if (!take_buffer(index_obj, &index, 'q', 0, WRONG_SCORES)) {
        PyBuffer_Release(&values);
        return NULL;
    }
    if (!take_buffer(logs_obj, &logs, 'f', 0, WRONG_SCORES)) {
        PyBuffer_Release(&values);
        PyBuffer_Release(&index);
        return NULL;
    }
    Py_ssize_t n = values.len / 4, count = index.len / 8;
    const float *value = values.buf, *log_of = logs.buf;
    const int64_t *at = index.buf;
    int fits = logs.len / 4 == count && count > 0;
    for (Py_ssize_t k = 0; fits && k < count; k++) {
        fits = at[k] >= 0 && at[k] < n;
    }
    int64_t best = -1;
    if (fits) {
        float top = 0.0f;
        for (Py_ssize_t k = 0; k < count; k++) {
            float score = value[at[k]] / scale - log_of[k];
            if (isnan(score)) {
                best = at[k];
                break;
            }
            if (best < 0 || score > top) {
                top = score;
                best = at[k];
            }
        }
    } else {
        PyErr_SetString(PyExc_ValueError, WRONG_SCORES);
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&index);
    PyBuffer_Release(&logs);
    return fits ? PyLong_FromLongLong(best) : NULL;
}

static PyMethodDef methods[] = {
    {"uniforms_at", uniforms_at, METH_VARARGS,
     "uniforms_at(key_low, key_high, positions, out): numpy's float32 Philox draws at "
     "positions, written to out."},
    {"uniform_at", uniform_at, METH_VARARGS,
     "uniform_at(key_low, key_high, position) -> float: the draw at one position."},
    {"contenders", contenders, METH_VARARGS,
     "contenders(key_low, key_high, values, ids, cut, index, uniform) -> (count, zero_drawn): "
     "the indices of values at least cut (all if cut is not finite) and the draws at their "
     "positions."},
    {"best_score", best_score, METH_VARARGS,
     "best_score(values, index, scale, double_log) -> the index whose value / scale - "
     "double_log is largest (np.argmax's rule)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "keel._philox", .m_size = 0, .m_methods = methods};

PyMODINIT_FUNC PyInit__philox(void) { return PyModule_Create(&module); }
