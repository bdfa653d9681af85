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
                        int64_t mr, int64_t nr, const float *brow, const float *bcol, int flags,
                        const float *apf)
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
        _mm_prefetch((const char *)apf, _MM_HINT_T1);
        apf += MR;
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
            if (flags & ND_UK_RELU6) {  /* min/max return the SECOND operand on NaN (and on +-0 ties) */
                v0 = _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(zero, v0));
                v1 = _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(zero, v1));
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
                if (flags & ND_UK_RELU6) {
                    v0 = _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(zero, v0));
                    v1 = _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(zero, v1));
                }
                _mm256_maskstore_ps(cr, m0, v0);
                _mm256_maskstore_ps(cr + 8, m1, v1);
            }
        }
    }
}

void nd_dw_plane_avx2(float *y, const float *x, const float *w, float bias, const float *r,
                      int act, int64_t h, int64_t w_, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                      int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl);

nd_isa_ops nd_ops_avx2 = {
    .level = ND_ISA_AVX2, .name = "avx2",
    .mr = MR, .nr = NR, .mc = 6 * 20, .kc = 256, .nc = 2048,
    .ukernel = uk_avx2, .dot = dot_avx2, .axpy = axpy_avx2,
    .im2col_panel = im2col_panel_avx2,
    .conv_row = conv_row_avx2,
    .act_vec = NULL,            /* dispatch.c installs kernels/fast_math.c's pass */
    .dw_plane = nd_dw_plane_avx2,
};
#endif
