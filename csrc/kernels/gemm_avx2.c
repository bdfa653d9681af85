/* gemm_avx2.c — AVX2 + FMA micro-kernel (6 x 16) and vector primitives.
 *
 * Tile: 6 rows x 16 columns = 12 ymm accumulators, 2 for the B row, 1 for the
 * broadcast: 15 of 16 registers, the classic Haswell shape (12 independent
 * FMA chains >= 2 ports x 5 cycles latency). Column tails go through a small
 * stack tile because AVX2 masked stores are slow and awkward; they are rare.
 */
#include "dispatch.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define TGT __attribute__((target("avx2,fma")))
enum { MR = 6, NR = 16 };

TGT static void uk_avx2(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                        int64_t mr, int64_t nr, const float *brow, const float *bcol, int flags)
{
    __m256 t[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        t[i][0] = _mm256_setzero_ps();
        t[i][1] = _mm256_setzero_ps();
    }
    /* the C tile is read (ND_UK_ACC) or written after the k loop: start its lines now */
    for (int64_t i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8); /* prepacked B may be unaligned */
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            const __m256 a = _mm256_broadcast_ss(ap + i);
            t[i][0] = _mm256_fmadd_ps(a, b0, t[i][0]);
            t[i][1] = _mm256_fmadd_ps(a, b1, t[i][1]);
        }
        ap += MR;
        bp += NR;
    }
    /* full-width rows store straight to C; a column tail goes via `tmp` */
    float tmp[NR] __attribute__((aligned(32)));
    const __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(0.01f);
    __m256 bc0 = zero, bc1 = zero;
    if (bcol) {
        float bb[NR] __attribute__((aligned(32))) = {0};
        memcpy(bb, bcol, (size_t)nr * sizeof(float));
        bc0 = _mm256_load_ps(bb);
        bc1 = _mm256_load_ps(bb + 8);
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        if (i < mr) {
            float *cr = c + i * ldc;
            __m256 v0 = t[i][0], v1 = t[i][1];
            if (flags & ND_UK_ACC) {
                if (nr == NR) {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8));
                } else {
                    memset(tmp, 0, sizeof tmp);
                    memcpy(tmp, cr, (size_t)nr * sizeof(float));
                    v0 = _mm256_add_ps(v0, _mm256_load_ps(tmp));
                    v1 = _mm256_add_ps(v1, _mm256_load_ps(tmp + 8));
                }
            }
            if (brow) {
                const __m256 b = _mm256_broadcast_ss(brow + i);
                v0 = _mm256_add_ps(v0, b);
                v1 = _mm256_add_ps(v1, b);
            }
            v0 = _mm256_add_ps(v0, bc0);
            v1 = _mm256_add_ps(v1, bc1);
            if (flags & ND_UK_RELU) {   /* maxps returns its SECOND operand when either is NaN: NaN stays */
                v0 = _mm256_max_ps(zero, v0);
                v1 = _mm256_max_ps(zero, v1);
            }
            if (flags & ND_UK_LEAKY) {
                v0 = _mm256_blendv_ps(v0, _mm256_mul_ps(v0, slope), _mm256_cmp_ps(v0, zero, _CMP_LT_OQ));
                v1 = _mm256_blendv_ps(v1, _mm256_mul_ps(v1, slope), _mm256_cmp_ps(v1, zero, _CMP_LT_OQ));
            }
            if (nr == NR) {
                _mm256_storeu_ps(cr, v0);
                _mm256_storeu_ps(cr + 8, v1);
            } else {
                _mm256_store_ps(tmp, v0);
                _mm256_store_ps(tmp + 8, v1);
                memcpy(cr, tmp, (size_t)nr * sizeof(float));
            }
        }
    }
}

TGT static float dot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

TGT static void axpy_avx2(float *y, float a, const float *x, int64_t n)
{
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* tanh as Eigen/MLAS do it: x clamped to +-9 (tanh is 1 - 3e-8 there), then a
 * 13/6-degree odd/even rational polynomial, a few ulp from tanhf; sigmoid(x) =
 * 0.5 + 0.5 tanh(x/2). Used only in GEMM/conv epilogues (the standalone
 * activation kernels keep libm's expf/tanhf). */
TGT static __m256 tanh256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-9.0f)), _mm256_set1_ps(9.0f));
    const __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-2.76076847742355e-16f);
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.00018790482477e-13f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-8.60467152213735e-11f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(5.12229709037114e-08f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(1.48572235717979e-05f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(6.37261928875436e-04f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(4.89352455891786e-03f));
    p = _mm256_mul_ps(p, x);
    __m256 q = _mm256_set1_ps(1.19825839466702e-06f);
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(1.18534705686654e-04f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(2.26843463243900e-03f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(4.89352518554385e-03f));
    return _mm256_div_ps(p, q);
}

/* e^x, Cephes' expf: x = n ln2 + r (|r| <= ln2/2, ln2 in two parts), a degree-6 polynomial
 * for e^r, 2^n through the exponent bits; ~1 ulp from expf on [-87.3, 88.3]. Below that
 * range it gives 0 and above it +inf (expf gives denormals below, and up to 3.4e38 on
 * (88.38, 88.72]: no act here tells them apart from 0 / inf at float precision); NaN lanes are
 * garbage (act_avx2 replaces them). */
TGT static __m256 exp256(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365f);
    const __m256 big = _mm256_cmp_ps(x, hi, _CMP_GT_OQ), small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 t = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), t);
    t = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), t);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(t, t), _mm256_add_ps(t, _mm256_set1_ps(1.0f)));
    /* n in [-126, 127]: 2^n is a normal float */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    p = _mm256_blendv_ps(p, _mm256_set1_ps(INFINITY), big);
    return _mm256_andnot_ps(small, p);
}

/* min(max(v, 0), 6); max_ps/min_ps return their second operand when one is NaN: NaN stays */
TGT static inline __m256 relu6_256(__m256 v)
{
    return _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(_mm256_setzero_ps(), v));
}

/* act of 8 finite lanes (the non-finite ones are redone by nd_act1) */
TGT static inline __m256 act8(__m256 x, int act)
{
    const __m256 h = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 three = _mm256_set1_ps(3.0f);
    switch (act) {
    case ND_ACT_SIGMOID: return _mm256_fmadd_ps(tanh256(_mm256_mul_ps(x, h)), h, h);
    case ND_ACT_TANH: return tanh256(x);
    case ND_ACT_RELU6: return relu6_256(x);
    case ND_ACT_HARDSIGMOID: return _mm256_div_ps(relu6_256(_mm256_add_ps(x, three)), _mm256_set1_ps(6.0f));
    case ND_ACT_HARDSWISH:
        return _mm256_mul_ps(x, _mm256_div_ps(relu6_256(_mm256_add_ps(x, three)), _mm256_set1_ps(6.0f)));
    case ND_ACT_SILU:   /* x / (1 + e^-x): e^-x = inf for x < -88.7 gives -0, as expf does */
        return _mm256_div_ps(x, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
    case ND_ACT_GELU_TANH: {   /* (1 + tanh u) / 2 = 1 / (1 + e^-2u): no cancellation for x << 0 */
        const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        const __m256 u = _mm256_mul_ps(_mm256_set1_ps(-1.5957691216057308f),
                                       _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
        return _mm256_div_ps(x, _mm256_add_ps(one, exp256(u)));
    }
    case ND_ACT_MISH: {   /* tanh(log(1 + e)) = n / (n + 2), n = e (e + 2); e^20: the ratio is 1 */
        const __m256 e = exp256(_mm256_min_ps(x, _mm256_set1_ps(20.0f)));
        const __m256 nn = _mm256_mul_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
        return _mm256_mul_ps(x, _mm256_div_ps(nn, _mm256_add_ps(nn, _mm256_set1_ps(2.0f))));
    }
    default: return x;
    }
}

TGT static void act_avx2(float *y, int64_t n, int act)
{
    if (!nd_act_is_pass(act))
        return;
    if (act == ND_ACT_GELU) {   /* erf: no vector form here, libm's erff per value */
        for (int64_t i = 0; i < n; i++) y[i] = nd_act1(y[i], act);
        return;
    }
    const __m256 inf = _mm256_set1_ps(INFINITY), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(y + i);
        _mm256_storeu_ps(y + i, act8(x, act));
        /* NaN or +-inf lanes: the scalar definition, exactly (inf / inf, -inf * 0 ...) */
        const int bad = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, x), inf, _CMP_NLT_UQ));
        if (bad) {
            float t[8];
            _mm256_storeu_ps(t, x);
            for (int j = 0; j < 8; j++)
                if (bad >> j & 1) y[i + j] = nd_act1(t[j], act);
        }
    }
    if (i < n) {   /* the tail through a zero-padded tile: the same arithmetic as the body */
        float t[8] = {0};
        for (int64_t j = 0; j < n - i; j++) t[j] = y[i + j];
        const __m256 x = _mm256_loadu_ps(t);
        _mm256_storeu_ps(t, act8(x, act));
        for (int64_t j = 0; j < n - i; j++) y[i + j] = isfinite(y[i + j]) ? t[j] : nd_act1(y[i + j], act);
    }
}

/* lanes [a, b) of 8 as an all-ones int mask (empty when b <= a) */
TGT static inline __m256i lanes8(int64_t a, int64_t b)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i va = _mm256_set1_epi32((int)a), vb = _mm256_set1_epi32((int)b);
    /* idx >= a && idx < b */
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(va, idx), _mm256_cmpgt_epi32(vb, idx));
}

/* nd_im2col_panel_portable with stride-1 runs as 8-wide vector copies: lanes outside
 * the image row (the padding) come from a zero-masked load (vmaskmovps does not fault
 * on masked lanes), a run's last partial vector is a masked store, so no byte outside
 * the run is written. Other strides take the portable copy. */
TGT static void im2col_panel_avx2(float *d, const nd_im2col *g, const nd_im2col_seg *seg, int64_t ns,
                                  int64_t nr, int64_t NR_, int64_t k0, int64_t kc)
{
    if (g->sw != 1) {
        nd_im2col_panel_portable(d, g, seg, ns, nr, NR_, k0, kc);
        return;
    }
    const int64_t H = g->h, W = g->w, KK = g->kh * g->kw;
    const __m256 zero = _mm256_setzero_ps();
    const __m256i all = _mm256_set1_epi32(-1);
    int64_t c = k0 / KK, r = k0 % KK, ki = r / g->kw, kj = r % g->kw;
    for (int64_t k = 0; k < kc; k++) {
        const float *img = g->x + c * H * W;
        const int64_t dy = ki * g->dh, dx = kj * g->dw;
        float *drow = d + k * NR_;
        for (int64_t s = 0; s < ns; s++) {
            float *o = drow + seg[s].j;
            const int64_t len = seg[s].len, iy = seg[s].iy + dy, ix = seg[s].ix + dx;
            if (iy < 0 || iy >= H) {
                int64_t q = 0;
                for (; q + 8 <= len; q += 8) _mm256_storeu_ps(o + q, zero);
                if (q < len) _mm256_maskstore_ps(o + q, lanes8(0, len - q), zero);
                continue;
            }
            /* valid t: lo <= t < hi; the address is formed as an integer so that a run
             * starting left of the row (padding) is no out-of-bounds pointer in C */
            const int64_t lo = -ix > 0 ? -ix : 0, hi = W - ix;
            const uintptr_t src = (uintptr_t)(img + seg[s].img + iy * W) + (uintptr_t)(ix * 4);
            for (int64_t q = 0; q < len; q += 8) {
                const int64_t e = len - q < 8 ? len - q : 8;
                const float *sp = (const float *)(src + (uintptr_t)(q * 4));
                __m256 v;
                if (q >= lo && q + e <= hi)
                    v = e == 8 ? _mm256_loadu_ps(sp) : _mm256_maskload_ps(sp, lanes8(0, e));
                else
                    v = _mm256_maskload_ps(sp, lanes8(lo - q, (hi - q < e ? hi - q : e)));
                if (e == 8)
                    _mm256_storeu_ps(o + q, v);
                else
                    _mm256_maskstore_ps(o + q, lanes8(0, e), v);
            }
        }
        for (int64_t j = nr; j < NR_; j += 8)
            _mm256_maskstore_ps(drow + j, NR_ - j >= 8 ? all : lanes8(0, NR_ - j), zero);
        if (++kj == g->kw) {
            kj = 0;
            if (++ki == g->kh) {
                ki = 0;
                c++;
            }
        }
    }
}

/* conv_row (kernels/conv.c: use_direct): one output row of mr <= MR channels, 16 columns
 * (two 8-wide chunks) at a time: MR x 2 accumulators like the GEMM tile, reading the image
 * in place. Per tap (c, ki, kj): one zero-masked load per chunk (the mask is the padding;
 * vmaskmovps does not fault on masked lanes) and MR broadcast FMAs from the packed weights.
 * The AVX2 twin of conv_row_avx512; the store is masked to the row's columns. */
TGT static void conv_row_avx2(float *y, int64_t ldy, const nd_im2col *g, const float *ap0, int64_t mr,
                              int64_t oy, const float *brow, int flags)
{
    const int64_t H = g->h, W = g->w, OW = g->ow;
    for (int64_t q = 0; q < OW; q += 16) {
        const int64_t e0 = OW - q < 8 ? OW - q : 8, e1 = OW - q - 8 < 0 ? 0 : OW - q - 8 < 8 ? OW - q - 8 : 8;
        const float *ap = ap0;
        __m256 t[MR][2];
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            t[i][0] = _mm256_setzero_ps();
            t[i][1] = _mm256_setzero_ps();
        }
        for (int64_t c = 0; c < g->c; c++) {
            for (int64_t ki = 0; ki < g->kh; ki++) {
                const int64_t iy = oy * g->sh - g->pt + ki * g->dh;
                if (iy < 0 || iy >= H) {
                    ap += MR * g->kw;
                    continue;
                }
                const uintptr_t row = (uintptr_t)(g->x + (c * H + iy) * W);
                for (int64_t kj = 0; kj < g->kw; kj++, ap += MR) {
                    const int64_t ix = q - g->pl + kj * g->dw;   /* input column of lane 0 */
                    const int64_t lo = -ix > 0 ? -ix : 0, hi = W - ix;
                    const __m256 v0 = _mm256_maskload_ps((const float *)(row + (uintptr_t)(ix * 4)),
                                                         lanes8(lo, hi < e0 ? hi : e0));
                    const __m256 v1 = _mm256_maskload_ps((const float *)(row + (uintptr_t)((ix + 8) * 4)),
                                                         lanes8(lo - 8, hi - 8 < e1 ? hi - 8 : e1));
#pragma GCC unroll 6
                    for (int i = 0; i < MR; i++) {
                        const __m256 a = _mm256_broadcast_ss(ap + i);
                        t[i][0] = _mm256_fmadd_ps(a, v0, t[i][0]);
                        t[i][1] = _mm256_fmadd_ps(a, v1, t[i][1]);
                    }
                }
            }
        }
        const __m256i m0 = lanes8(0, e0), m1 = lanes8(0, e1);
        const __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(0.01f);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            if (i < mr) {
                float *cr = y + i * ldy + q;
                __m256 v0 = t[i][0], v1 = t[i][1];
                if (flags & ND_UK_ACC) {
                    v0 = _mm256_add_ps(v0, _mm256_maskload_ps(cr, m0));
                    v1 = _mm256_add_ps(v1, _mm256_maskload_ps(cr + 8, m1));
                }
                if (brow) {
                    v0 = _mm256_add_ps(v0, _mm256_set1_ps(brow[i]));
                    v1 = _mm256_add_ps(v1, _mm256_set1_ps(brow[i]));
                }
                if (flags & (ND_UK_RELU | ND_UK_LEAKY)) {   /* v < 0 ? (0 | 0.01 v) : v; NaN fails v < 0 */
                    const __m256 n0 = _mm256_cmp_ps(v0, zero, _CMP_LT_OQ), n1 = _mm256_cmp_ps(v1, zero, _CMP_LT_OQ);
                    const __m256 r0 = flags & ND_UK_LEAKY ? _mm256_mul_ps(v0, slope) : zero;
                    const __m256 r1 = flags & ND_UK_LEAKY ? _mm256_mul_ps(v1, slope) : zero;
                    v0 = _mm256_blendv_ps(v0, r0, n0);
                    v1 = _mm256_blendv_ps(v1, r1, n1);
                }
                _mm256_maskstore_ps(cr, m0, v0);
                _mm256_maskstore_ps(cr + 8, m1, v1);
            }
        }
    }
}

void nd_dw_plane_avx2(float *y, const float *x, const float *w, float bias, int64_t h, int64_t w_,
                      int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                      int64_t dh, int64_t dw, int64_t pt, int64_t pl);

nd_isa_ops nd_ops_avx2 = {
    .level = ND_ISA_AVX2, .name = "avx2",
    .mr = MR, .nr = NR, .mc = 6 * 20, .kc = 256, .nc = 2048,
    .ukernel = uk_avx2, .dot = dot_avx2, .axpy = axpy_avx2,
    .im2col_panel = im2col_panel_avx2,
    .conv_row = conv_row_avx2,
    .act_vec = act_avx2,
    .dw_plane = nd_dw_plane_avx2,
};
#endif
