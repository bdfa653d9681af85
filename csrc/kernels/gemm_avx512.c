/* gemm_avx512.c — AVX-512F micro-kernel (8 x 32) and vector primitives.
 *
 * Tile: 8 rows x 32 columns = 16 zmm accumulators; per k: two aligned loads
 * of the packed B row and 8 broadcast-FMA pairs from packed A. 16 independent
 * FMA chains cover latency x throughput on every AVX-512 core (Zen 4: 1 zmm
 * FMA/cycle, 4 cycles; Intel: 2/cycle, 4 cycles), and MR = 8 divides every
 * channel count CNNs use, so no row of the tile is wasted (14 x 32 measured
 * 5-15% slower on ResNet conv shapes for that reason; -DND_AVX512_MR=14 to
 * compare). Column tails use masked loads/stores, row tails skip rows.
 * Compiled with target attributes, so the file builds with the project's
 * plain flags and runs only when dispatch.c saw avx512f.
 */
#include "dispatch.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <stdint.h>

#define TGT __attribute__((target("avx512f,fma")))
#ifndef ND_AVX512_MR
#define ND_AVX512_MR 8
#endif
enum { MR = ND_AVX512_MR, NR = 32 };

/* The fused relu / leaky relu (slope 0.01) of a micro-kernel's store, on two vectors.
 * vmaxps returns its SECOND source when either is NaN (Intel SDM), so max(0, v)
 * keeps a NaN v where max(v, 0) would give 0; leaky's `v < 0` is false for NaN. */
TGT static inline __attribute__((always_inline)) void relu_leaky2(__m512 *v0, __m512 *v1, int flags)
{
    const __m512 zero = _mm512_setzero_ps();
    if (flags & ND_UK_RELU) {
        *v0 = _mm512_max_ps(zero, *v0);
        *v1 = _mm512_max_ps(zero, *v1);
    }
    if (flags & ND_UK_LEAKY) {
        const __m512 slope = _mm512_set1_ps(0.01f);
        *v0 = _mm512_mask_mul_ps(*v0, _mm512_cmp_ps_mask(*v0, zero, _CMP_LT_OQ), *v0, slope);
        *v1 = _mm512_mask_mul_ps(*v1, _mm512_cmp_ps_mask(*v1, zero, _CMP_LT_OQ), *v1, slope);
    }
    if (flags & ND_UK_RELU6) {   /* nd_relu6f: NaN and -0 pass (second operands) */
        const __m512 six = _mm512_set1_ps(6.0f);
        *v0 = _mm512_min_ps(six, _mm512_max_ps(zero, *v0));
        *v1 = _mm512_min_ps(six, _mm512_max_ps(zero, *v1));
    }
}

TGT static void uk_avx512(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                          int64_t mr, int64_t nr, const float *brow, const float *bcol, int flags,
                        const float *apf)
{
    __m512 t[MR][2];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        t[i][0] = _mm512_setzero_ps();
        t[i][1] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16); /* prepacked B may be unaligned */
        _mm_prefetch((const char *)(bp + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)apf, _MM_HINT_T1);
        apf += MR;
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            const __m512 a = _mm512_set1_ps(ap[i]);
            t[i][0] = _mm512_fmadd_ps(a, b0, t[i][0]);
            t[i][1] = _mm512_fmadd_ps(a, b1, t[i][1]);
        }
        ap += MR;
        bp += NR;
    }
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    __m512 bc0 = _mm512_setzero_ps(), bc1 = _mm512_setzero_ps();
    if (bcol) {
        bc0 = _mm512_maskz_loadu_ps(m0, bcol);
        bc1 = _mm512_maskz_loadu_ps(m1, bcol + 16);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i < mr) {
            float *cr = c + i * ldc;
            __m512 v0 = t[i][0], v1 = t[i][1];
            if (flags & ND_UK_ACC) {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
            }
            if (brow) {
                const __m512 b = _mm512_set1_ps(brow[i]);
                v0 = _mm512_add_ps(v0, b);
                v1 = _mm512_add_ps(v1, b);
            }
            if (bcol) {
                v0 = _mm512_add_ps(v0, bc0);
                v1 = _mm512_add_ps(v1, bc1);
            }
            relu_leaky2(&v0, &v1, flags);
            _mm512_mask_storeu_ps(cr, m0, v0);
            _mm512_mask_storeu_ps(cr + 16, m1, v1);
        }
    }
}

TGT static float dot_avx512(const float *a, const float *b, int64_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(),
           s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

TGT static void axpy_avx512(float *y, float a, const float *x, int64_t n)
{
    const __m512 av = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* Bits [a, b) of a 16-lane mask, 0 <= a, b <= 16 (empty when b <= a). */
static inline __mmask16 lanes(int64_t a, int64_t b)
{
    if (b <= a)
        return 0;
    return (__mmask16)((((uint32_t)1 << b) - 1) & ~(((uint32_t)1 << a) - 1));
}

/* Gathers (im2col_gather_avx512) for panels of runs shorter than GATHER_RUN on average
 * (measured, AVX-512, 1 thread: ResNet-18 at 224 b1 20.2 -> 18.0 ms, its 256->256 conv on
 * 2x2 maps at batch 32 1.2 -> 0.9 ms; 16 gained no more), 8 or a multiple of 16 wide. */
#define GATHER_RUN 8
static int gather_pays(int64_t ns, int64_t nr, int64_t NR_)
{
    return ns > 0 && nr < GATHER_RUN * ns && (NR_ == 8 || NR_ % 16 == 0) && NR_ <= 64;
}

/* A panel of short runs (maps a few pixels wide: ResNet's 2x2 and 4x4 maps at 32x32 input,
 * batch folded, cut an 8-wide panel into runs of 2) by gathers: per pixel lane its window's
 * origin (offset in x, row, column), per k row one masked gather per 16 floats of the panel,
 * the mask being the taps that fall inside the image (the rest, and the lanes past nr, are 0).
 * With NR_ = 8 one gather fills two k rows. The offsets are int32: 0 (the caller copies the
 * runs instead) when a number of the panel is beyond +-2^29. Bit for bit the runs' copy. */
TGT static int im2col_gather_avx512(float *d, const nd_im2col *g, const nd_im2col_seg *seg, int64_t ns,
                                    int64_t nr, int64_t NR_, int64_t k0, int64_t kc)
{
    const int64_t H = g->h, W = g->w, KK = g->kh * g->kw, B = (int64_t)1 << 29;
    const int64_t reach = g->c * H * W + g->kh * g->dh * W + g->kw * g->dw;   /* the furthest tap offset */
    if (H >= B || W >= B || g->kh * g->dh >= B || g->kw * g->dw >= B || reach >= B)
        return 0;
    int32_t off[64], py[64], px[64];        /* NR_ <= 64; lanes >= nr: origin far outside (never valid) */
    for (int64_t j = 0; j < NR_; j++) {
        off[j] = 0;
        py[j] = (int32_t)(-(H + 1) - g->kh * g->dh);
        px[j] = 0;
    }
    for (int64_t s = 0; s < ns; s++)
        for (int64_t t = 0; t < seg[s].len; t++) {   /* every lane's numbers within +-2^29 (huge strides) */
            const int64_t j = seg[s].j + t, ix = seg[s].ix + t * g->sw, iy = seg[s].iy;
            if (ix <= -B || ix >= B || iy <= -B || iy >= B || seg[s].img < 0 || seg[s].img >= B)
                return 0;
            const int64_t o = seg[s].img + iy * W + ix;
            if (o <= -B || o >= B)
                return 0;
            off[j] = (int32_t)o;
            py[j] = (int32_t)iy;
            px[j] = (int32_t)ix;
        }
    const __m512i vH = _mm512_set1_epi32((int32_t)H), vW = _mm512_set1_epi32((int32_t)W);
    const __m512i zi = _mm512_setzero_si512();
    int64_t c = k0 / KK, r = k0 % KK, ki = r / g->kw, kj = r % g->kw;
    /* the tap of row k as (offset in x, dy, dx), then the next tap */
#define TAP_NEXT()                                                                                 \
    do {                                                                                           \
        if (++kj == g->kw) {                                                                       \
            kj = 0;                                                                                \
            if (++ki == g->kh) {                                                                   \
                ki = 0;                                                                            \
                c++;                                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)
#define TAP_OFF() ((int32_t)(c * H * W + ki * g->dh * W + kj * g->dw))
    if (NR_ == 8) {
        const __m256i o8 = _mm256_loadu_si256((const __m256i *)off), y8 = _mm256_loadu_si256((const __m256i *)py),
                      x8 = _mm256_loadu_si256((const __m256i *)px);
        const __m512i vo = _mm512_inserti64x4(_mm512_castsi256_si512(o8), o8, 1);
        const __m512i vy = _mm512_inserti64x4(_mm512_castsi256_si512(y8), y8, 1);
        const __m512i vx = _mm512_inserti64x4(_mm512_castsi256_si512(x8), x8, 1);
        for (int64_t k = 0; k < kc; k += 2) {
            const int32_t t0 = TAP_OFF(), dy0 = (int32_t)(ki * g->dh), dx0 = (int32_t)(kj * g->dw);
            TAP_NEXT();
            int32_t t1 = 0, dy1 = (int32_t)(-(H + 1) - g->kh * g->dh - 1), dx1 = 0;   /* past kc: invalid */
            if (k + 1 < kc) {
                t1 = TAP_OFF();
                dy1 = (int32_t)(ki * g->dh);
                dx1 = (int32_t)(kj * g->dw);
                TAP_NEXT();
            }
            const __m512i tt = _mm512_inserti64x4(_mm512_set1_epi32(t0), _mm256_set1_epi32(t1), 1);
            const __m512i ty = _mm512_inserti64x4(_mm512_set1_epi32(dy0), _mm256_set1_epi32(dy1), 1);
            const __m512i tx = _mm512_inserti64x4(_mm512_set1_epi32(dx0), _mm256_set1_epi32(dx1), 1);
            const __m512i iy = _mm512_add_epi32(vy, ty), ix = _mm512_add_epi32(vx, tx);
            const __mmask16 m = _mm512_cmpge_epi32_mask(iy, zi) & _mm512_cmplt_epi32_mask(iy, vH) &
                                _mm512_cmpge_epi32_mask(ix, zi) & _mm512_cmplt_epi32_mask(ix, vW);
            const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(vo, tt), g->x, 4);
            if (k + 1 < kc)
                _mm512_storeu_ps(d + k * 8, v);
            else
                _mm256_storeu_ps(d + k * 8, _mm512_castps512_ps256(v));
        }
    } else {
        for (int64_t k = 0; k < kc; k++) {
            const __m512i tt = _mm512_set1_epi32(TAP_OFF());
            const __m512i ty = _mm512_set1_epi32((int32_t)(ki * g->dh)), tx = _mm512_set1_epi32((int32_t)(kj * g->dw));
            for (int64_t q = 0; q < NR_; q += 16) {
                const __m512i iy = _mm512_add_epi32(_mm512_loadu_si512((const void *)(py + q)), ty);
                const __m512i ix = _mm512_add_epi32(_mm512_loadu_si512((const void *)(px + q)), tx);
                const __mmask16 m = _mm512_cmpge_epi32_mask(iy, zi) & _mm512_cmplt_epi32_mask(iy, vH) &
                                    _mm512_cmpge_epi32_mask(ix, zi) & _mm512_cmplt_epi32_mask(ix, vW);
                const __m512i idx = _mm512_add_epi32(_mm512_loadu_si512((const void *)(off + q)), tt);
                _mm512_storeu_ps(d + k * NR_ + q, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, g->x, 4));
            }
            TAP_NEXT();
        }
    }
#undef TAP_OFF
#undef TAP_NEXT
    return 1;
}

/* The load masks of a run of len <= 64 output columns whose first source column is ix, in a
 * row W wide: per 16-lane chunk, 1 mask (sw 1: lanes whose columns lie in [0, W)) or 2 (sw 2:
 * the two halves of the 32 source lanes, of which the even ones are kept). */
TGT static inline void run_masks(__mmask16 m[8], int64_t ix, int64_t W, int64_t len, int64_t sw)
{
    const int64_t lo = -ix > 0 ? -ix : 0, hi = W - ix;   /* valid t: 0 <= ix + t < W */
    for (int64_t q = 0, qi = 0; q < len; q += 16, qi++) {
        const int64_t e = len - q < 16 ? len - q : 16;
        if (sw == 2) {
            const int64_t s0 = 2 * q;
            const int64_t a = lo - s0 < 0 ? 0 : lo - s0 < 32 ? lo - s0 : 32;
            const int64_t b = hi - s0 < a ? a : hi - s0 < 2 * e - 1 ? hi - s0 : 2 * e - 1;
            m[2 * qi] = lanes(a < 16 ? a : 16, b < 16 ? b : 16);
            m[2 * qi + 1] = lanes(a > 16 ? a - 16 : 0, b > 16 ? b - 16 : 0);
        } else {
            const int64_t a = lo - q < 0 ? 0 : lo - q < e ? lo - q : e;
            const int64_t b = hi - q < a ? a : hi - q < e ? hi - q : e;
            m[qi] = lanes(a, b);
        }
    }
}

/* nd_im2col_panel_portable with stride-1 and stride-2 runs as masked vector copies: a run of
 * len <= NR columns is ceil(len/16) zero-masked loads (lanes outside [lo, hi),
 * the padding, read as 0 and are never touched: masked lanes do not fault)
 * and as many masked stores; stride 2 loads both halves of the 32 source lanes and keeps
 * the even ones (the stems' 7x7/s2 convs). ResNet's 14x14 maps cut a 32-wide panel into 3
 * runs of <= 14: the scalar copy and its three loops cost more than the data. Which lanes
 * lie inside the row depends on the run and kj alone, not on the channel or the kernel
 * row: the masks once per panel (IM2COL_PRE runs x kw at most, else per k row). */
TGT static void im2col_panel_avx512(float *d, const nd_im2col *g, const nd_im2col_seg *seg, int64_t ns,
                                    int64_t nr, int64_t NR_, int64_t k0, int64_t kc)
{
    if (gather_pays(ns, nr, NR_) && im2col_gather_avx512(d, g, seg, ns, nr, NR_, k0, kc))
        return;
    if (g->sw != 1 && g->sw != 2) {
        nd_im2col_panel_portable(d, g, seg, ns, nr, NR_, k0, kc);
        return;
    }
    const int64_t H = g->h, W = g->w, KK = g->kh * g->kw, sw = g->sw;
    const __m512 zero = _mm512_setzero_ps();
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    int64_t c = k0 / KK, r = k0 % KK, ki = r / g->kw, kj = r % g->kw;
    enum { IM2COL_PRE = 128 };
    __mmask16 lm[IM2COL_PRE][8];   /* per (run, kj) */
    const int pre = ns * g->kw <= IM2COL_PRE;
    if (pre)
        for (int64_t s = 0; s < ns; s++)
            for (int64_t j = 0; j < g->kw; j++) run_masks(lm[s * g->kw + j], seg[s].ix + j * g->dw, W, seg[s].len, sw);
    for (int64_t k = 0; k < kc; k++) {
        const float *img = g->x + c * H * W;
        const int64_t dy = ki * g->dh, dx = kj * g->dw;
        float *drow = d + k * NR_;
        for (int64_t s = 0; s < ns; s++) {
            float *o = drow + seg[s].j;
            const int64_t len = seg[s].len, iy = seg[s].iy + dy, ix = seg[s].ix + dx;
            if (iy < 0 || iy >= H) {
                for (int64_t q = 0; q < len; q += 16)
                    _mm512_mask_storeu_ps(o + q, lanes(0, len - q < 16 ? len - q : 16), zero);
                continue;
            }
            __mmask16 own[8];
            const __mmask16 *m = lm[s * g->kw + kj];
            if (!pre) {
                run_masks(own, ix, W, len, sw);
                m = own;
            }
            /* the address is formed as an integer: a padded run starts left of the row */
            const uintptr_t src = (uintptr_t)(img + seg[s].img + iy * W) + (uintptr_t)(ix * 4);
            for (int64_t q = 0, qi = 0; q < len; q += 16, qi++) {
                const __mmask16 st = lanes(0, len - q < 16 ? len - q : 16);
                if (sw == 2) {
                    const uintptr_t p = src + (uintptr_t)(2 * q * 4);
                    const __m512 v0 = _mm512_maskz_loadu_ps(m[2 * qi], (const float *)p);
                    const __m512 v1 = _mm512_maskz_loadu_ps(m[2 * qi + 1], (const float *)(p + 64));
                    _mm512_mask_storeu_ps(o + q, st, _mm512_permutex2var_ps(v0, even, v1));
                } else {
                    _mm512_mask_storeu_ps(o + q, st, _mm512_maskz_loadu_ps(m[qi], (const float *)(src + (uintptr_t)(q * 4))));
                }
            }
        }
        for (int64_t j = nr; j < NR_; j += 16)
            _mm512_mask_storeu_ps(drow + j, lanes(0, NR_ - j < 16 ? NR_ - j : 16), zero);
        if (++kj == g->kw) {
            kj = 0;
            if (++ki == g->kh) {
                ki = 0;
                c++;
            }
        }
    }
}

/* conv_row: one output row of MR channels, `two` 16-wide column chunks at a time
 * (MR x 2 accumulators, like the GEMM tile), reading the image directly: for
 * each tap (c, ki, kj) one zero-masked load per chunk (the mask is the padding)
 * and MR broadcast FMAs from the packed weights. No packing at all, which is
 * what LeNet-sized convs (K = 25..150, 10..28-pixel rows) spend most time on. */
TGT static inline __attribute__((always_inline)) void
conv_chunks_avx512(float *y, int64_t ldy, const nd_im2col *g, const float *ap, int64_t mr, int64_t oy,
                   const float *brow, int flags, int64_t q, const int two, const int s2)
{
    const int64_t H = g->h, W = g->w, OW = g->ow, WE = (W + 1) / 2;
    const int64_t e0 = OW - q < 16 ? OW - q : 16, e1 = two ? (OW - q - 16 < 16 ? OW - q - 16 : 16) : 0;
    __m512 t[MR][2];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        t[i][0] = _mm512_setzero_ps();
        t[i][1] = _mm512_setzero_ps();
    }
    /* the columns a tap reads, and which of them lie inside the row, depend on kj alone:
     * masks and offsets once per call, not per tap (use_direct: kw <= ND_CONV_ROW_KW) */
    __mmask16 k0[ND_CONV_ROW_KW], k1[ND_CONV_ROW_KW];
    int64_t off[ND_CONV_ROW_KW];
    for (int64_t kj = 0; kj < g->kw; kj++) {
        int64_t ix = q - g->pl + kj * g->dw, wp = W, base = 0;   /* input column of lane 0 */
        if (s2) {   /* lane t reads column 2 (q + t) - pl + kj dw: one parity half, contiguous */
            const int64_t sx = 2 * q - g->pl + kj * g->dw, par = sx & 1;
            ix = (sx - par) / 2;
            wp = par ? W / 2 : WE;
            base = par * WE;
        }
        const int64_t lo = -ix > 0 ? -ix : 0, hi = wp - ix;
        k0[kj] = lanes(lo < e0 ? lo : e0, hi < e0 ? hi : e0);
        k1[kj] = two ? lanes(lo - 16 > 0 ? (lo - 16 < e1 ? lo - 16 : e1) : 0, hi - 16 < e1 ? hi - 16 : e1) : 0;
        off[kj] = (base + ix) * 4;   /* bytes; formed as integers: a padded run starts left of the row */
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
                const uintptr_t rp = row + (uintptr_t)off[kj];
                const __m512 v0 = _mm512_maskz_loadu_ps(k0[kj], (const float *)rp);
                __m512 v1 = v0;
                if (two)
                    v1 = _mm512_maskz_loadu_ps(k1[kj], (const float *)(rp + 64));
#pragma GCC unroll 16
                for (int i = 0; i < MR; i++) {
                    const __m512 a = _mm512_set1_ps(ap[i]);
                    t[i][0] = _mm512_fmadd_ps(a, v0, t[i][0]);
                    if (two)
                        t[i][1] = _mm512_fmadd_ps(a, v1, t[i][1]);
                }
            }
        }
    }
    const __mmask16 m0 = lanes(0, e0), m1 = lanes(0, e1);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i < mr) {
            float *cr = y + i * ldy + q;
            __m512 v0 = t[i][0], v1 = t[i][1];
            if (flags & ND_UK_ACC) {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
                if (two)
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
            }
            if (brow) {
                v0 = _mm512_add_ps(v0, _mm512_set1_ps(brow[i]));
                v1 = _mm512_add_ps(v1, _mm512_set1_ps(brow[i]));
            }
            relu_leaky2(&v0, &v1, flags);
            _mm512_mask_storeu_ps(cr, m0, v0);
            if (two)
                _mm512_mask_storeu_ps(cr + 16, m1, v1);
        }
    }
}

TGT static void conv_row_avx512(float *y, int64_t ldy, const nd_im2col *g, const float *ap, int64_t mr,
                                int64_t oy, const float *brow, int flags)
{
    int64_t q = 0;
    if (g->sw == 2) {   /* g->x holds each row split into its even and odd columns */
        for (; g->ow - q > 16; q += 32)
            conv_chunks_avx512(y, ldy, g, ap, mr, oy, brow, flags, q, 1, 1);
        if (q < g->ow)
            conv_chunks_avx512(y, ldy, g, ap, mr, oy, brow, flags, q, 0, 1);
        return;
    }
    for (; g->ow - q > 16; q += 32)
        conv_chunks_avx512(y, ldy, g, ap, mr, oy, brow, flags, q, 1, 0);
    if (q < g->ow)
        conv_chunks_avx512(y, ldy, g, ap, mr, oy, brow, flags, q, 0, 0);
}

void nd_dw_plane_avx512(float *y, const float *x, const float *w, float bias, const float *r,
                        int act, int64_t h, int64_t w_, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                        int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl);

nd_isa_ops nd_ops_avx512 = {
    .level = ND_ISA_AVX512, .name = "avx512",
    .mr = MR, .nr = NR, .mc = MR * (112 / MR), .kc = 256, .nc = 2048,
    .ukernel = uk_avx512, .dot = dot_avx512, .axpy = axpy_avx512,
    .act_vec = NULL,            /* dispatch.c installs kernels/fast_math.c's pass */
    .im2col_panel = im2col_panel_avx512,
    .conv_row = conv_row_avx512, .conv_row_s2 = 1,
    .dw_plane = nd_dw_plane_avx512,
};
#endif
