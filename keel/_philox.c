/* The uniforms of numpy's Generator(Philox(key)).random(n, dtype=float32) at chosen
 * positions only, for keel's noisy argmax: the draw of its top id's bound, and in one scan
 * the draws of the ids that could still win; a second scan then picks the winner.
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
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* The high 64 bits of a * b, the low ones in *low: one multiply instruction where the
 * compiler has 128-bit integers (GCC and Clang on 64-bit targets), else in 32-bit pieces.
 * Philox's rounds are these products, and the T > 0 choice draws one block for each of
 * its contenders, up to a few thousand a row. */
static uint64_t high_product(uint64_t a, uint64_t b, uint64_t *low) {
#if defined(__SIZEOF_INT128__)
    unsigned __int128 product = (unsigned __int128)a * b;
    *low = (uint64_t)product;
    return (uint64_t)(product >> 64);
#else
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
    uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
    uint64_t middle = (lo_lo >> 32) + (uint32_t)hi_lo + (uint32_t)lo_hi;
    *low = (middle << 32) | (uint32_t)lo_lo;
    return hi_hi + (hi_lo >> 32) + (lo_hi >> 32) + (middle >> 32);
#endif
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

/* What a call wants of one argument: a contiguous buffer of kind 'q' (8-byte signed
 * integers: numpy's "q" or "l") or 'f' (4-byte floats), writable if asked, or None where
 * that is allowed. */
typedef struct {
    PyObject *obj;
    char kind;
    int writable;
    int or_none;
} Wanted;

static void release_buffers(Py_buffer *views, int count) {
    for (int i = 0; i < count; i++) {
        if (views[i].obj != NULL) {
            PyBuffer_Release(&views[i]);
        }
    }
}

/* Every wanted buffer (a None left with obj NULL), or none of them: 0 with `wrong` as a
 * ValueError (or the buffer protocol's own error) set. */
static int take_buffers(const Wanted *wanted, Py_buffer *views, int count, const char *wrong) {
    for (int i = 0; i < count; i++) {
        memset(&views[i], 0, sizeof views[i]);
        if (wanted[i].or_none && wanted[i].obj == Py_None) {
            continue;
        }
        int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (wanted[i].writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(wanted[i].obj, &views[i], flags) != 0) {
            release_buffers(views, i);
            return 0;
        }
        const char *format = views[i].format ? views[i].format : "B";
        char kind = format[strlen(format) - 1];
        int fits = wanted[i].kind == 'f' ? (kind == 'f' && views[i].itemsize == 4)
                                         : ((kind == 'q' || kind == 'l') && views[i].itemsize == 8);
        if (!fits) {
            release_buffers(views, i + 1);
            PyErr_SetString(PyExc_ValueError, wrong);
            return 0;
        }
    }
    return 1;
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

/* Above every Gumbel draw: the largest, from the largest float32 uniform (1 - 2^-24), is
 * 16.6355; the rest is room for the logarithms' rounding (tests check all 2^24 uniforms). */
#define NOISE_CEILING 16.75

static const char WRONG_CUT[] = "cut needs float32 values and a position of one of them";

/* cut(key_low, key_high, values, best, position, temperature) -> float: the least value
 * that could still win against values[best], the top id, whose draw is at `position`. Its
 * score, values[best] / temperature in float32 as numpy divides, plus a bound below its
 * noise (libm's logarithms in double, less a margin for numpy's float32 ones, which differ
 * by about 1e-6 at most), less the ceiling of every other id's noise and a margin for
 * float32 rounding, times the temperature. Only a bound is needed, so nothing here has to
 * match numpy bit for bit; one C call instead of a dozen Python operations on the caches a
 * decode has just emptied. A NaN or infinite top gives a NaN or infinite cut, which keeps
 * every id in contenders. */
static PyObject *cut(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *low, *high;
    Wanted wanted[1] = {{NULL, 'f', 0, 0}};
    Py_ssize_t best;
    long long position;
    double temperature;
    uint64_t key_low, key_high, block[4], computed = 0;
    Py_buffer views[1];
    if (!PyArg_ParseTuple(args, "OOOnLd", &low, &high, &wanted[0].obj, &best, &position,
                          &temperature) ||
        !take_key(low, high, &key_low, &key_high) ||
        !take_buffers(wanted, views, 1, WRONG_CUT)) {
        return NULL;
    }
    int fits = best >= 0 && best < views[0].len / 4 && position >= 0;
    float top = fits ? ((const float *)views[0].buf)[best] / (float)temperature : 0.0f;
    release_buffers(views, 1);
    if (!fits) {
        PyErr_SetString(PyExc_ValueError, WRONG_CUT);
        return NULL;
    }
    double u = draw_at(key_low, key_high, (uint64_t)position, block, &computed);
    double reach = (double)top + (u == 0.0 ? -INFINITY : -log(-log(u)) - 1e-3);
    reach -= NOISE_CEILING + 1e-5 * fmax(1.0, fabs(reach));
    return PyFloat_FromDouble(reach * temperature);
}

/* Which of a block's values (`size` of them, at most SCAN_BLOCK) are at least `least`, a
 * bit each, the first value lowest; a NaN is not. Four vector compares where SSE2 exists
 * (every x86-64; its compare is ordered like C's >=), else a loop without branches. The
 * scan then visits only the set bits: testing each value on its own branched on every
 * one, and where a row has a thousand contenders those branches cost more than the rest
 * of the scan. */
enum { SCAN_BLOCK = 16 };

static unsigned block_mask(const float *value, Py_ssize_t size, float least) {
#if defined(__SSE2__)
    if (size == SCAN_BLOCK) {
        __m128 bound = _mm_set1_ps(least);
        __m128 hits[SCAN_BLOCK / 4];
        for (int part = 0; part < SCAN_BLOCK / 4; part++) {
            hits[part] = _mm_cmpge_ps(_mm_loadu_ps(value + 4 * part), bound);
        }
        if (!_mm_movemask_ps(_mm_or_ps(_mm_or_ps(hits[0], hits[1]), _mm_or_ps(hits[2], hits[3])))) {
            return 0; /* most blocks of a row */
        }
        unsigned mask = 0;
        for (int part = 0; part < SCAN_BLOCK / 4; part++) {
            mask |= (unsigned)_mm_movemask_ps(hits[part]) << (4 * part);
        }
        return mask;
    }
#endif
    unsigned mask = 0;
    for (Py_ssize_t j = 0; j < size; j++) {
        mask |= (unsigned)(value[j] >= least) << j;
    }
    return mask;
}

static int lowest_bit(unsigned mask) {
#if defined(__GNUC__)
    return __builtin_ctz(mask);
#else
    int bit = 0;
    while (!(mask >> bit & 1u)) {
        bit++;
    }
    return bit;
#endif
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
    PyObject *low, *high;
    Wanted wanted[4] = {{NULL, 'f', 0, 0}, {NULL, 'q', 0, 1}, {NULL, 'q', 1, 0}, {NULL, 'f', 1, 0}};
    double cut;
    uint64_t key_low, key_high, block[4], computed = 0;
    Py_buffer views[4]; /* values, ids, index, uniform */
    if (!PyArg_ParseTuple(args, "OOOOdOO", &low, &high, &wanted[0].obj, &wanted[1].obj, &cut,
                          &wanted[2].obj, &wanted[3].obj) ||
        !take_key(low, high, &key_low, &key_high) ||
        !take_buffers(wanted, views, 4, WRONG_CONTENDERS)) {
        return NULL;
    }
    const float *value = views[0].buf;
    const int64_t *id = views[1].buf; /* NULL without ids */
    int64_t *chosen = views[2].buf;
    float *draw = views[3].buf;
    Py_ssize_t n = views[0].len / 4, count = 0;
    int zero_drawn = 0;
    int fits = (id == NULL || views[1].len / 8 == n) && views[2].len / 8 >= n &&
               views[3].len / 4 >= n;
    if (!fits) {
        PyErr_SetString(PyExc_ValueError, WRONG_CONTENDERS);
    }
    /* rounded to nearest, beyond float's range to an infinity (IEEE, C's Annex F): numpy's
     * cast of the cut for `values >= cut` */
    float least = (float)cut;
    int all = !isfinite(cut);
    for (Py_ssize_t start = 0; fits && start < n; start += SCAN_BLOCK) {
        Py_ssize_t size = n - start < SCAN_BLOCK ? n - start : SCAN_BLOCK;
        unsigned mask = all ? (1u << size) - 1 : block_mask(value + start, size, least);
        for (; fits && mask != 0; mask &= mask - 1) {
            Py_ssize_t i = start + lowest_bit(mask);
            int64_t position = id != NULL ? id[i] : i;
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
    release_buffers(views, 4);
    return fits ? Py_BuildValue("(nO)", count, zero_drawn ? Py_True : Py_False) : NULL;
}

static const char WRONG_SCORES[] =
    "best_score needs float32 values, int64 indices into them and float32 logs as long";

/* best_score(values, index, scale, double_log) -> index[k] for the k with the largest
 * values[index[k]] / scale - double_log[k] (a draw's noise is -double_log), by np.argmax's
 * rule. */
static PyObject *best_score(PyObject *self, PyObject *args) {
    (void)self;
    Wanted wanted[3] = {{NULL, 'f', 0, 0}, {NULL, 'q', 0, 0}, {NULL, 'f', 0, 0}};
    float scale;
    Py_buffer views[3];
    if (!PyArg_ParseTuple(args, "OOfO", &wanted[0].obj, &wanted[1].obj, &scale,
                          &wanted[2].obj) ||
        !take_buffers(wanted, views, 3, WRONG_SCORES)) {
        return NULL;
    }
    const float *value = views[0].buf, *log_of = views[2].buf;
    const int64_t *at = views[1].buf;
    Py_ssize_t n = views[0].len / 4, count = views[1].len / 8;
    int fits = views[2].len / 4 == count && count > 0;
    int64_t best = -1;
    float top = 0.0f;
    for (Py_ssize_t k = 0; fits && k < count; k++) {
        if (at[k] < 0 || at[k] >= n) { /* never read outside the values */
            fits = 0;
            break;
        }
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
    if (!fits) {
        PyErr_SetString(PyExc_ValueError, WRONG_SCORES);
    }
    release_buffers(views, 3);
    return fits ? PyLong_FromLongLong(best) : NULL;
}

static PyMethodDef methods[] = {
    {"uniform_at", uniform_at, METH_VARARGS,
     "uniform_at(key_low, key_high, position) -> float: the draw at one position."},
    {"cut", cut, METH_VARARGS,
     "cut(key_low, key_high, values, best, position, temperature) -> the least value that "
     "could still win against values[best], whose draw is at position."},
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

PyMODINIT_FUNC PyInit__philox(void) {
    PyObject *made = PyModule_Create(&module);
    PyObject *ceiling = made != NULL ? PyFloat_FromDouble(NOISE_CEILING) : NULL;
    int added = ceiling != NULL && PyModule_AddObjectRef(made, "NOISE_CEILING", ceiling) == 0;
    Py_XDECREF(ceiling);
    if (made != NULL && !added) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}
