/* conv_dw.c — one output plane of a depthwise convolution, per ISA.
 *
 * y is (OH,OW), x is (H,W), w is (KH,KW), r (residual) is (OH,OW) or NULL:
 *     y = act(bias + sum_ij w[i,j] x[oy*sh-pt+i*dh, ox*sw-pl+j*dw] + r).
 * Every path adds the taps in the same order (i, then j, from the bias; a tap
 * whose input is padding is skipped, not added as 0) with a separate multiply
 * and add (the build does not contract to FMA), so all ISAs give the same bits.
 *
 * Portable body (dw_body, also the AVX2/AVX-512 fallback for column strides
 * other than 1 and 2): for each output row and tap, one axpy over the output
 * row on the columns whose input is inside the image (computed, not tested
 * per pixel); then the residual and the activation in a pass over the plane.
 *
 * AVX-512 / AVX2 (column stride 1 or 2, any dilation): register-blocked. For
 * a chunk of 16 (8) output columns and one output row, all KH*KW taps are
 * accumulated in one register and the result is stored once, with the
 * residual added and relu/relu6/leaky applied in the register (other
 * activations: one vectorized pass over the plane after). Each tap's input is
 * a zero-masked load whose mask is the lanes whose input column is inside the
 * image, so nothing outside the row's in-image columns is read; the add is
 * masked by the same lanes, which keeps "padding is skipped" exact. Stride 2
 * loads 2 x 16 (2 x 8) contiguous columns and keeps the even ones with a
 * permute. The masks depend on the chunk and tap column only, so they are
 * computed once per chunk and reused down the rows. No scratch, no copies:
 * nd_conv_ws_floats is 0 for depthwise. Threads split planes (conv.c).
 */
#include "dispatch.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

static inline __attribute__((always_inline)) void
dw_body(float *restrict y, const float *restrict x, const float *restrict w, float bias, int64_t H,
        int64_t W, int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t dh,
        int64_t dw, int64_t pt, int64_t pl)
{
    for (int64_t oy = 0; oy < OH; oy++) {
        float *restrict yr = y + oy * OW;
        for (int64_t ox = 0; ox < OW; ox++) yr[ox] = bias;
        for (int64_t i = 0; i < KH; i++) {
            const int64_t iy = oy * sh - pt + i * dh;
            if (iy < 0 || iy >= H)
                continue;
            const float *restrict xr = x + iy * W;
            for (int64_t j = 0; j < KW; j++) {
                const float wv = w[i * KW + j];
                const int64_t off = j * dw - pl;           /* ix = ox*sw + off */
                int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
                if (hi > OW) hi = OW;
                if (sw == 1) {
                    const float *restrict xs = xr + off;
                    for (int64_t ox = lo; ox < hi; ox++) yr[ox] += wv * xs[ox];
                } else {
                    for (int64_t ox = lo; ox < hi; ox++) yr[ox] += wv * xr[ox * sw + off];
                }
            }
        }
    }
}

/* y = act(y + r) over the plane (r may be NULL) */
static inline __attribute__((always_inline)) void dw_finish(float *y, const float *r, int64_t n, int act)
{
    if (r)
        for (int64_t i = 0; i < n; i++)
            y[i] += r[i];
    nd_act_inplace(y, n, act);
}

/* the activations the vector kernels apply in registers */
static inline int dw_act_in_reg(int act)
{
    return act == ND_ACT_NONE || act == ND_ACT_RELU || act == ND_ACT_RELU6 || act == ND_ACT_LEAKYRELU;
}

/* output lanes [*lo, *hi) of the chunk at ox0 (L lanes) whose tap column ox*sw + off is in the image */
static inline void dw_lanes(int64_t ox0, int64_t L, int64_t OW, int64_t W, int64_t sw, int64_t off,
                            int64_t *lo, int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int64_t b = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
    if (b > OW) b = OW;
    a -= ox0;
    b -= ox0;
    *lo = a < 0 ? 0 : a > L ? L : a;
    *hi = b < 0 ? 0 : b > L ? L : b;
    if (*hi < *lo) *hi = *lo;
}

/* The kernels run 16 (8) column strips down the plane, so a plane from memory was read 1-2
 * lines per row per strip, which the hardware prefetchers do not follow at 4 KB pages. On
 * planes past L1 (>= 32 KB) the first strip fetches whole input rows two output rows ahead,
 * and the output rows, for the strips after it (MobileNetV2's 96-channel 3x3/2 on 112x112 at
 * batch 8, 1 thread, AVX-512: 7.3 -> 2.3 ms). The strip loop with it is a separate instance,
 * so the strips without it keep their code. */
static inline int dw_prefetch_pays(int64_t ox0, int64_t lanes, int64_t OW, int64_t H, int64_t W)
{
    return ox0 == 0 && OW > lanes && H * W >= 8192;
}

static inline __attribute__((always_inline)) void
dw_prefetch_ahead(const float *x, float *y, int64_t oy, int64_t H, int64_t W, int64_t OH, int64_t OW,
                  int64_t KH, int64_t sh, int64_t dh, int64_t pt)
{
    const int64_t top = (oy + 2) * sh - pt + (KH - 1) * dh;
    for (int64_t iy = top - sh + 1; iy <= top; iy++)
        if (iy >= 0 && iy < H)
            for (int64_t b = 0; b < W; b += 16) __builtin_prefetch(x + iy * W + b, 0, 3);
    if (oy + 2 < OH)
        for (int64_t b = 0; b < OW; b += 16) __builtin_prefetch(y + (oy + 2) * OW + b, 1, 3);
}

#define DW_ARGS                                                                                    \
    float *y, const float *x, const float *w, float bias, const float *r, int act, int64_t h,      \
        int64_t w_, int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw,        \
        int64_t dh, int64_t dw, int64_t pt, int64_t pl
#define DW_PARAMS y, x, w, bias, r, act, h, w_, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl

void nd_dw_plane_portable(DW_ARGS)
{
    dw_body(y, x, w, bias, h, w_, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl);
    dw_finish(y, r, oh * ow, act);
}

#if defined(__x86_64__) || defined(__i386__)
/* fn##_entry, the body of one ISA's nd_dw_plane_*: the 3x3 stride-1 and stride-2 bodies
 * specialised (the general body inlined with the geometry constant), other kernels up to 16
 * wide through the general body, the rest (wider kernels, other strides) through the plain C one. */
#define DW_SPECIAL(TGT, fn, name, SW)                                                               \
    TGT static void fn##_##name(float *y, const float *x, const float *w, float bias, const float *r, \
                                int act, int64_t h, int64_t w_, int64_t oh, int64_t ow, int64_t sh,   \
                                int64_t dh, int64_t dw, int64_t pt, int64_t pl)                       \
    {                                                                                               \
        fn(y, x, w, bias, r, act, h, w_, oh, ow, 3, 3, sh, SW, dh, dw, pt, pl);                     \
    }
#define DW_ENTRY(TGT, fn)                                                                           \
    DW_SPECIAL(TGT, fn, 33s1, 1)                                                                    \
    DW_SPECIAL(TGT, fn, 33s2, 2)                                                                    \
    TGT static void fn##_entry(DW_ARGS)                                                             \
    {                                                                                               \
        if (kw <= 16 && (sw == 1 || sw == 2)) {                                                     \
            if (kh == 3 && kw == 3)                                                                 \
                (sw == 1 ? fn##_33s1 : fn##_33s2)(y, x, w, bias, r, act, h, w_, oh, ow, sh, dh, dw, pt, pl); \
            else if (sw == 1)                                                                       \
                fn(y, x, w, bias, r, act, h, w_, oh, ow, kh, kw, sh, 1, dh, dw, pt, pl);            \
            else                                                                                    \
                fn(y, x, w, bias, r, act, h, w_, oh, ow, kh, kw, sh, 2, dh, dw, pt, pl);            \
            return;                                                                                 \
        }                                                                                           \
        dw_body(y, x, w, bias, h, w_, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl);                      \
        dw_finish(y, r, oh * ow, act);                                                              \
    }

/* ------------------------------------------------------------------ AVX-512 */
#define TGT512 __attribute__((target("avx512f,fma")))

TGT512 static inline __attribute__((always_inline)) __m512 act512(__m512 v, int act)
{
    const __m512 z = _mm512_setzero_ps();
    switch (act) {
    case ND_ACT_RELU: return _mm512_max_ps(z, v);   /* NaN and -0 in the second operand pass */
    case ND_ACT_RELU6: return _mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(z, v));
    case ND_ACT_LEAKYRELU:
        return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, z, _CMP_LT_OQ), v, _mm512_set1_ps(0.01f));
    default: return v;
    }
}

static inline __mmask16 m16(int64_t lo, int64_t hi) { return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u)); }

/* One 16-column strip of output rows [0, OH); pf: dw_prefetch_ahead per row. */
TGT512 static inline __attribute__((always_inline)) void
dw512_strip(float *restrict y, const float *restrict x, const float *restrict w, float bias,
            const float *restrict r, int ract, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t KH,
            int64_t KW, int64_t sh, int64_t SW, int64_t dh, int64_t dw, int64_t pt, int64_t pl, int64_t ox0,
            const __mmask16 *ma, const __mmask16 *ml0, const __mmask16 *ml1, const int pf)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const int64_t n = OW - ox0 < 16 ? OW - ox0 : 16;
    const __mmask16 ms = m16(0, n);
    for (int64_t oy = 0; oy < OH; oy++) {
        if (pf)
            dw_prefetch_ahead(x, y, oy, H, W, OH, OW, KH, sh, dh, pt);
        __m512 acc = _mm512_set1_ps(bias);
        for (int64_t i = 0; i < KH; i++) {
            const int64_t iy = oy * sh - pt + i * dh;
            if (iy < 0 || iy >= H)
                continue;
            const float *xr = x + iy * W + ox0 * SW - pl;
            for (int64_t j = 0; j < KW; j++) {
                const float *xs = xr + j * dw;
                __m512 v;
                if (SW == 1) {
                    v = _mm512_maskz_loadu_ps(ma[j], xs);
                } else {
                    const __m512 v0 = _mm512_maskz_loadu_ps(ml0[j], xs);
                    const __m512 v1 = _mm512_maskz_loadu_ps(ml1[j], xs + 16);
                    v = _mm512_permutex2var_ps(v0, even, v1);
                }
                acc = _mm512_mask_add_ps(acc, ma[j], acc, _mm512_mul_ps(_mm512_set1_ps(w[i * KW + j]), v));
            }
        }
        float *yr = y + oy * OW + ox0;
        if (r)
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(ms, r + oy * OW + ox0));
        _mm512_mask_storeu_ps(yr, ms, act512(acc, ract));
    }
}

TGT512 static inline __attribute__((always_inline)) void
dw512(float *restrict y, const float *restrict x, const float *restrict w, float bias,
      const float *restrict r, int act, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t KH,
      int64_t KW, int64_t sh, int64_t SW, int64_t dh, int64_t dw, int64_t pt, int64_t pl)
{
    enum { KWMAX = 16 };
    const int ract = dw_act_in_reg(act) ? act : ND_ACT_NONE;
    for (int64_t ox0 = 0; ox0 < OW; ox0 += 16) {
        __mmask16 ma[KWMAX], ml0[KWMAX], ml1[KWMAX];   /* add mask; stride-2 load masks */
        for (int64_t j = 0; j < KW; j++) {
            int64_t lo, hi;
            dw_lanes(ox0, 16, OW, W, SW, j * dw - pl, &lo, &hi);
            ma[j] = m16(lo, hi);
            if (SW == 2) {   /* input lanes [2 lo, 2 hi - 1) of the 32 loaded */
                const uint64_t b = hi > lo ? (((uint64_t)1 << (2 * hi - 1)) - 1) & ~(((uint64_t)1 << (2 * lo)) - 1) : 0;
                ml0[j] = (__mmask16)b;
                ml1[j] = (__mmask16)(b >> 16);
            }
        }
        if (dw_prefetch_pays(ox0, 16, OW, H, W))
            dw512_strip(y, x, w, bias, r, ract, H, W, OH, OW, KH, KW, sh, SW, dh, dw, pt, pl, ox0, ma, ml0, ml1, 1);
        else
            dw512_strip(y, x, w, bias, r, ract, H, W, OH, OW, KH, KW, sh, SW, dh, dw, pt, pl, ox0, ma, ml0, ml1, 0);
    }
    if (!dw_act_in_reg(act))
        nd_act_inplace(y, OH * OW, act);
}

DW_ENTRY(TGT512, dw512)
ND_TARGET_AVX512 void nd_dw_plane_avx512(DW_ARGS) { dw512_entry(DW_PARAMS); }

/* --------------------------------------------------------------------- AVX2 */
#define TGT256 __attribute__((target("avx2,fma")))

TGT256 static inline __attribute__((always_inline)) __m256 act256(__m256 v, int act)
{
    const __m256 z = _mm256_setzero_ps();
    switch (act) {
    case ND_ACT_RELU: return _mm256_max_ps(z, v);
    case ND_ACT_RELU6: return _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(z, v));
    case ND_ACT_LEAKYRELU:
        return _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(0.01f)), _mm256_cmp_ps(v, z, _CMP_LT_OQ));
    default: return v;
    }
}

/* all-ones in lanes [lo, hi) of 8 */
TGT256 static inline __attribute__((always_inline)) __m256i m8(int64_t lo, int64_t hi)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i a = _mm256_cmpgt_epi32(iota, _mm256_set1_epi32((int)lo - 1));
    const __m256i b = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), iota);
    return _mm256_and_si256(a, b);
}

/* One 8-column strip of output rows [0, OH); pf: dw_prefetch_ahead per row. */
TGT256 static inline __attribute__((always_inline)) void
dw256_strip(float *restrict y, const float *restrict x, const float *restrict w, float bias,
            const float *restrict r, int ract, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t KH,
            int64_t KW, int64_t sh, int64_t SW, int64_t dh, int64_t dw, int64_t pt, int64_t pl, int64_t ox0,
            const __m256i *ma, const __m256i *ml0, const __m256i *ml1, const int pf)
{
    const int64_t n = OW - ox0 < 8 ? OW - ox0 : 8;
    const __m256i ms = m8(0, n);
    for (int64_t oy = 0; oy < OH; oy++) {
        if (pf)
            dw_prefetch_ahead(x, y, oy, H, W, OH, OW, KH, sh, dh, pt);
        __m256 acc = _mm256_set1_ps(bias);
        for (int64_t i = 0; i < KH; i++) {
            const int64_t iy = oy * sh - pt + i * dh;
            if (iy < 0 || iy >= H)
                continue;
            const float *xr = x + iy * W + ox0 * SW - pl;
            for (int64_t j = 0; j < KW; j++) {
                const float *xs = xr + j * dw;
                __m256 v;
                if (SW == 1) {
                    v = _mm256_maskload_ps(xs, ma[j]);
                } else {
                    const __m256 v0 = _mm256_maskload_ps(xs, ml0[j]);
                    const __m256 v1 = _mm256_maskload_ps(xs + 8, ml1[j]);
                    /* [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6] */
                    const __m256 s = _mm256_shuffle_ps(v0, v1, _MM_SHUFFLE(2, 0, 2, 0));
                    v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
                }
                const __m256 t = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(w[i * KW + j]), v));
                acc = _mm256_blendv_ps(acc, t, _mm256_castsi256_ps(ma[j]));
            }
        }
        float *yr = y + oy * OW + ox0;
        if (r)
            acc = _mm256_add_ps(acc, _mm256_maskload_ps(r + oy * OW + ox0, ms));
        _mm256_maskstore_ps(yr, ms, act256(acc, ract));
    }
}

TGT256 static inline __attribute__((always_inline)) void
dw256(float *restrict y, const float *restrict x, const float *restrict w, float bias,
      const float *restrict r, int act, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t KH,
      int64_t KW, int64_t sh, int64_t SW, int64_t dh, int64_t dw, int64_t pt, int64_t pl)
{
    enum { KWMAX = 16 };
    const int ract = dw_act_in_reg(act) ? act : ND_ACT_NONE;
    for (int64_t ox0 = 0; ox0 < OW; ox0 += 8) {
        __m256i ma[KWMAX], ml0[KWMAX], ml1[KWMAX];
        for (int64_t j = 0; j < KW; j++) {
            int64_t lo, hi;
            dw_lanes(ox0, 8, OW, W, SW, j * dw - pl, &lo, &hi);
            ma[j] = m8(lo, hi);
            if (SW == 2) {   /* input lanes [2 lo, 2 hi - 1) of the 16 loaded */
                const int64_t a = 2 * lo, b = hi > lo ? 2 * hi - 1 : a;
                ml0[j] = m8(a, b);
                ml1[j] = m8(a - 8, b - 8);
            }
        }
        if (dw_prefetch_pays(ox0, 8, OW, H, W))
            dw256_strip(y, x, w, bias, r, ract, H, W, OH, OW, KH, KW, sh, SW, dh, dw, pt, pl, ox0, ma, ml0, ml1, 1);
        else
            dw256_strip(y, x, w, bias, r, ract, H, W, OH, OW, KH, KW, sh, SW, dh, dw, pt, pl, ox0, ma, ml0, ml1, 0);
    }
    if (!dw_act_in_reg(act))
        nd_act_inplace(y, OH * OW, act);
}

DW_ENTRY(TGT256, dw256)
ND_TARGET_AVX2 void nd_dw_plane_avx2(DW_ARGS) { dw256_entry(DW_PARAMS); }
#endif
