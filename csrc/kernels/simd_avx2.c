/* simd_avx2.c — AVX2 bodies of nd_simd.h's primitives (8 lanes, 256-bit).
 *
 * Each primitive performs per element the same float operations in the same order as
 * its portable twin in simd.c (bit-equal results; hsum's lane order too), so the tests'
 * per-ISA runs compare like with like. Tails (< 8 elements) run the scalar formula.
 * An AVX-512 machine runs these bodies (nd_simd() in simd.c): the loops are bound by
 * memory or by shuffles, and one tested body is worth more than an untested wider one.
 */
#include "nd_simd.h"

#include "dispatch.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))

static inline float red1(int op, float m, float v)
{
    if (op == ND_RED_SUM) return m + v;
    return op == ND_RED_MAX ? (((v > m) | (v != v)) ? v : m) : (((v < m) | (v != v)) ? v : m);
}

/* SUM: m + v. MAX: red(m, v) = (v > m) | (v != v) ? v : m: max_ps(v, m) is `v > m ? v : m` (m when either is
 * NaN), and the blend takes v where v is NaN; a NaN m is kept by max_ps itself. */
TGT static inline __m256 red8(int op, __m256 m, __m256 v)
{
    if (op == ND_RED_SUM) return _mm256_add_ps(m, v);
    const __m256 r = op == ND_RED_MAX ? _mm256_max_ps(v, m) : _mm256_min_ps(v, m);
    return _mm256_blendv_ps(r, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

TGT static void affine_act_avx2(float *y, const float *x, float s, float t, int64_t n, int act)
{
    const __m256 vs = _mm256_set1_ps(s), vt = _mm256_set1_ps(t), z = _mm256_setzero_ps();
    const __m256 sl = _mm256_set1_ps(0.01f);
    int64_t i = 0;
    if (act == ND_ACT_RELU) {
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), vt);
            _mm256_storeu_ps(y + i, _mm256_blendv_ps(v, z, _mm256_cmp_ps(v, z, _CMP_LT_OQ)));
        }
        for (; i < n; i++) {
            const float v = x[i] * s + t;
            y[i] = v < 0.0f ? 0.0f : v;
        }
    } else if (act == ND_ACT_LEAKYRELU) {
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), vt);
            _mm256_storeu_ps(y + i, _mm256_blendv_ps(v, _mm256_mul_ps(v, sl), _mm256_cmp_ps(v, z, _CMP_LT_OQ)));
        }
        for (; i < n; i++) {
            const float v = x[i] * s + t, lv = v * 0.01f;
            y[i] = v < 0.0f ? lv : v;
        }
    } else {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), vt));
        for (; i < n; i++) y[i] = x[i] * s + t;
        if (act != ND_ACT_NONE) nd_act_inplace(y, n, act);
    }
}

TGT static void prelu_avx2(float *y, const float *x, float a, int64_t n)
{
    const __m256 va = _mm256_set1_ps(a), z = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, _mm256_blendv_ps(_mm256_mul_ps(va, v), v, _mm256_cmp_ps(v, z, _CMP_GT_OQ)));
    }
    for (; i < n; i++) {
        const float v = x[i], av = a * v;
        y[i] = v > 0.0f ? v : av;
    }
}

TGT static void leaky_avx2(float *y, const float *x, float a, int64_t n)
{
    const __m256 va = _mm256_set1_ps(a), z = _mm256_setzero_ps();
    int64_t i = 0;
    if (a == 0.0f) {
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(x + i);
            _mm256_storeu_ps(y + i, _mm256_blendv_ps(v, z, _mm256_cmp_ps(v, z, _CMP_LT_OQ)));
        }
        for (; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
        return;
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, _mm256_blendv_ps(v, _mm256_mul_ps(v, va), _mm256_cmp_ps(v, z, _CMP_LT_OQ)));
    }
    for (; i < n; i++) {
        const float v = x[i], av = v * a;
        y[i] = v < 0.0f ? av : v;
    }
}

TGT static void accum_avx2(float *y, const float *x, float c, int64_t n, int mul)
{
    int64_t i = 0;
    if (x) {
        if (mul) {
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
            for (; i < n; i++) y[i] *= x[i];
        } else {
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
            for (; i < n; i++) y[i] += x[i];
        }
    } else {
        const __m256 vc = _mm256_set1_ps(c);
        if (mul) {
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vc));
            for (; i < n; i++) y[i] *= c;
        } else {
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), vc));
            for (; i < n; i++) y[i] += c;
        }
    }
}

TGT static void vred_avx2(float *y, const float *a, const float *x, int64_t n, int op)
{
    int64_t i = 0;
    /* A tail of < 8 reruns the last full block, ending at n: when y is a, its first lanes
     * are reduced twice, and red(red(a, x), x) == red(a, x) (NaN and which-of-equal too). */
    if (op == ND_RED_MAX) {
        for (; i < n && n >= 8; i += 8) {
            if (i + 8 > n) i = n - 8;
            _mm256_storeu_ps(y + i, red8(ND_RED_MAX, _mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i)));
        }
    } else {
        for (; i < n && n >= 8; i += 8) {
            if (i + 8 > n) i = n - 8;
            _mm256_storeu_ps(y + i, red8(ND_RED_MIN, _mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i)));
        }
    }
    for (; i < n; i++) y[i] = red1(op, a[i], x[i]);
}

TGT static inline void pool_row_op(float *y, const float *b, int64_t ow, int64_t kw, int64_t s, int op)
{
    int64_t j = 0;
    /* A tail of < 8 outputs reruns the last full block, ending at ow (y is not b: the
     * overlapping outputs are stored again with the same values). */
    if (s == 1) {
        for (; j < ow && ow >= 8; j += 8) {
            if (j + 8 > ow) j = ow - 8;
            __m256 m = _mm256_loadu_ps(b + j);
            for (int64_t k = 1; k < kw; k++) m = red8(op, m, _mm256_loadu_ps(b + j + k));
            _mm256_storeu_ps(y + j, m);
        }
    } else if (s == 2) {
        /* Taps 2q and 2q+1 of 8 outputs are the even and odd floats of the 16 at b + 2j + 2q:
         * one pair of loads, two shuffles (lanes in the order 0 1 4 5 2 3 6 7, the same for
         * every tap, so the reduction runs on scrambled lanes and one permute restores
         * them). An odd kw reads one float past the last one used: the caller's slack. */
        for (; j < ow && ow >= 8; j += 8) {
            if (j + 8 > ow) j = ow - 8;
            const float *p = b + 2 * j;
            __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
            __m256 m = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
            for (int64_t k = 1; k < kw; k++) {
                if (k & 1) {
                    m = red8(op, m, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
                } else {
                    lo = _mm256_loadu_ps(p + k);
                    hi = _mm256_loadu_ps(p + k + 8);
                    m = red8(op, m, _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
                }
            }
            m = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), _MM_SHUFFLE(3, 1, 2, 0)));
            _mm256_storeu_ps(y + j, m);
        }
    }
    for (; j < ow; j++) {
        float m = b[j * s];
        for (int64_t k = 1; k < kw; k++) m = red1(op, m, b[j * s + k]);
        y[j] = m;
    }
}

TGT static void pool_row_avx2(float *y, const float *b, int64_t ow, int64_t kw, int64_t s, int op)
{
    if (op == ND_RED_MAX)      pool_row_op(y, b, ow, kw, s, ND_RED_MAX);
    else if (op == ND_RED_MIN) pool_row_op(y, b, ow, kw, s, ND_RED_MIN);
    else                       pool_row_op(y, b, ow, kw, s, ND_RED_SUM);
}

TGT static float hred_avx2(const float *x, int64_t n, int op)
{
    if (n < 16) {
        float m = x[0];
        for (int64_t i = 1; i < n; i++) m = red1(op, m, x[i]);
        return m;
    }
    /* lane-wise reduction then the lanes: max/min is order-free except for which of equal
     * values (+0/-0) survives, and NaN is sticky either way */
    __m256 m = _mm256_loadu_ps(x);
    int64_t i = 8;
    for (; i + 8 <= n; i += 8) m = red8(op, m, _mm256_loadu_ps(x + i));
    float l[8];
    _mm256_storeu_ps(l, m);
    float r = l[0];
    for (int k = 1; k < 8; k++) r = red1(op, r, l[k]);
    for (; i < n; i++) r = red1(op, r, x[i]);
    return r;
}

/* hsum_c's order exactly: lane k sums x[i + k]; tail element i + k into lane k; then
 * ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)). */
TGT static float hsum_avx2(const float *x, int64_t n)
{
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
    if (i < n) {   /* a masked load (no store-forwarding stall; masked lanes read as +0, never fault) */
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)), lane);
        acc = _mm256_add_ps(acc, _mm256_maskload_ps(x + i, mask));
    }
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));   /* l_k + l_k+4 */
    q = _mm_add_ps(q, _mm_shuffle_ps(q, q, _MM_SHUFFLE(2, 3, 0, 1)));                    /* q0+q1, q2+q3 */
    q = _mm_add_ss(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(q);
}

const nd_simd_ops nd_simd_avx2 = {
    .affine_act = affine_act_avx2, .prelu = prelu_avx2, .leaky = leaky_avx2, .accum = accum_avx2,
    .vred = vred_avx2, .pool_row = pool_row_avx2, .hred = hred_avx2, .hsum = hsum_avx2,
};
#endif
