/* qconv.c — int8 Conv / FC: quantize, pack, u8 x s8 -> s32 GEMM, fused float32 epilogue.
 *
 * Layout and algorithm (qconv.h has the formulas, qgemm.h the micro-kernel contract):
 * 1. The float32 NCHW input is quantized once into the workspace as uint8 NCHW (one
 *    contiguous, vectorized pass; a transposing pass to NHWC cost more than it saved).
 * 2. GEMM: rows = output channels (A, the weights, packed at load), columns = output pixels
 *    with the batch folded in (n = b*OH*OW + oy*OW + ox), k = (tap, channel padded to cp).
 *    A column panel of 64 pixels is packed from the uint8 planes, 4 channels interleaved so
 *    that one 32-bit lane of vpdpbusd holds one pixel's 4 k's — im2col on bytes, a quarter of
 *    float32's traffic; a tap outside the image reads the zero point (the real 0, which
 *    `comp` corrects exactly).
 * 3. The epilogue turns each int32 tile into float32 NCHW rows: per channel scale and bias,
 *    the residual, the activation — contiguous rows when the 64 pixels lie in one image.
 * Threads: one task per column panel (each thread packs its own panel into its slice of
 * the workspace); when there are fewer panels than threads (batch 1, 7x7 maps) the rows are
 * split too and each task packs its panel itself (a small redundant copy).
 * What it does not do: groups (depthwise convs stay float32), uint8 outputs (activations
 * between layers are float32; see docs/QUANTIZE.md), K blocking.
 * The micro-kernels: portable C here (both layouts), AVX2 (qgemm_avx2.c), AVX-512 VNNI
 * (qgemm_avx512.c); nd_qconv_path says which one runs. The quantize / pack / epilogue
 * loops are one C body compiled per ISA (ND_EACH_ISA), as conv_dw.c does.
 */
#include "dispatch.h"
#include "kernels/qconv.h"
#include "kernels/qgemm.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define ALIGN64(x) (((x) + 63) & ~(int64_t)63)

/* ------------------------------------------------------------ portable micro-kernels */

#define QUK_PORTABLE(name, T)                                                                      \
    void name(int64_t k4, const void *ap_, const uint8_t *bp, int32_t *acc)                        \
    {                                                                                              \
        const T *ap = (const T *)ap_;                                                              \
        int32_t t[QMR][QNR];                                                                       \
        memset(t, 0, sizeof t);                                                                    \
        for (int64_t g = 0; g < k4; g++) {                                                         \
            const uint8_t *b = bp + g * (QNR * 4);                                                 \
            const T *a = ap + g * (QMR * 4);                                                       \
            for (int i = 0; i < QMR; i++) {                                                        \
                const int32_t a0 = a[4 * i], a1 = a[4 * i + 1], a2 = a[4 * i + 2], a3 = a[4 * i + 3]; \
                for (int j = 0; j < QNR; j++)                                                      \
                    t[i][j] += a0 * b[4 * j] + a1 * b[4 * j + 1] + a2 * b[4 * j + 2] + a3 * b[4 * j + 3]; \
            }                                                                                      \
        }                                                                                          \
        memcpy(acc, t, sizeof t);                                                                  \
    }
QUK_PORTABLE(nd_quk_l1_portable, int8_t)
QUK_PORTABLE(nd_quk_l2_portable, int16_t)

/* ------------------------------------------------------------ per-ISA loops */

/* uint8 of one value: round-half-even of clamp(x/s + z, 0, 255); NaN -> z (numerics.py) */
static inline __attribute__((always_inline)) uint8_t q8(float x, float inv, float z)
{
    float v = x * inv;
    v = v + z;
    v = v == v ? v : z;
    v = v < 0.0f ? 0.0f : v;
    v = v > 255.0f ? 255.0f : v;
    v = (v + 12582912.0f) - 12582912.0f;     /* 1.5 * 2^23: rounds to an integer, half to even */
    return (uint8_t)(int32_t)v;
}

/* x[i0, i1) (float32, any layout) -> uint8, the same index: NCHW stays NCHW */
static inline __attribute__((always_inline)) void
quant_body(uint8_t *restrict xq, const float *restrict x, const nd_qconv_params *p, int64_t i0, int64_t i1)
{
    const float inv = p->in_inv_scale, z = (float)p->in_zero;
    for (int64_t i = i0; i < i1; i++) xq[i] = q8(x[i], inv, z);
}
#if defined(__x86_64__) || defined(__i386__)
static void quant_vec_avx2(uint8_t *xq, const float *x, const nd_qconv_params *p, int64_t i0, int64_t i1)
{
    nd_quant_u8_avx2(xq + i0, x + i0, i1 - i0, p->in_inv_scale, (float)p->in_zero);
}
static void quant_vec_avx512(uint8_t *xq, const float *x, const nd_qconv_params *p, int64_t i0, int64_t i1)
{
    nd_quant_u8_avx512(xq + i0, x + i0, i1 - i0, p->in_inv_scale, (float)p->in_zero);
}
#endif

/* One run of a B panel's columns on one output row: panel columns [j, j + len), image b,
 * output row oy, first output column ox. */
typedef struct {
    int64_t j, len, b, oy, ox;
} q_seg;

/* the B panel of columns [n0, n0 + nr) (nr <= QNR; the columns past nr are zero points:
 * their results are never stored). For each tap and 4 channels, each run of columns reads
 * 4 channel rows of the uint8 NCHW input and interleaves them (stride 1: contiguous reads,
 * which the compiler vectorizes); the columns whose tap falls outside the image, and the
 * channels past C, read the zero point. */
static inline __attribute__((always_inline)) void
pack_body(uint8_t *restrict dst, const uint8_t *restrict xq, const nd_qconv_params *p, int64_t n0, int64_t nr)
{
    const int64_t ohw = p->oh * p->ow, OW = p->ow, H = p->h, W = p->w, C = p->c, cp4 = p->cp / 4;
    const int64_t sw = p->sw;
    const uint8_t z = (uint8_t)p->in_zero;
    q_seg seg[QNR];
    int ns = 0;
    for (int64_t j = 0; j < nr;) {
        const int64_t n = n0 + j, b = n / ohw, s = n % ohw, oy = s / OW, ox = s % OW;
        int64_t len = OW - ox;
        if (len > nr - j)
            len = nr - j;
        seg[ns++] = (q_seg){j, len, b, oy, ox};
        j += len;
    }
    if (nr < QNR)
        for (int64_t g = 0; g < p->kh * p->kw * cp4; g++) memset(dst + (g * QNR + nr) * 4, z, (size_t)(QNR - nr) * 4);
    for (int64_t i = 0; i < p->kh; i++)
        for (int64_t jj = 0; jj < p->kw; jj++) {
            const int64_t t = i * p->kw + jj, off = jj * p->dw - p->pad_l;   /* ix = ox*sw + off */
            for (int si = 0; si < ns; si++) {
                const q_seg sg = seg[si];
                const int64_t iy = sg.oy * p->sh - p->pad_t + i * p->dh;
                const int row_in = iy >= 0 && iy < H;
                /* output columns ox in [lo, hi) read inside the row */
                int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
                if (lo < sg.ox) lo = sg.ox;
                if (hi > sg.ox + sg.len) hi = sg.ox + sg.len;
                if (!row_in || hi < lo)
                    hi = lo = sg.ox;
                for (int64_t c4 = 0; c4 < cp4; c4++) {
                    uint8_t *restrict d = dst + ((t * cp4 + c4) * QNR + sg.j - sg.ox) * 4;   /* d[ox*4 + q] */
                    const uint8_t *r[4];
                    int full = 1;
                    for (int q = 0; q < 4; q++) {
                        const int64_t c = 4 * c4 + q;
                        r[q] = (c < C && row_in) ? xq + ((sg.b * C + c) * H + iy) * W + off : NULL;
                        full &= r[q] != NULL;
                    }
                    for (int64_t ox = sg.ox; ox < lo; ox++) memset(d + ox * 4, z, 4);
                    for (int64_t ox = hi; ox < sg.ox + sg.len; ox++) memset(d + ox * 4, z, 4);
                    if (full && sw == 1) {
                        const uint8_t *restrict r0 = r[0], *restrict r1 = r[1], *restrict r2 = r[2], *restrict r3 = r[3];
                        for (int64_t ox = lo; ox < hi; ox++) {
                            d[ox * 4] = r0[ox];
                            d[ox * 4 + 1] = r1[ox];
                            d[ox * 4 + 2] = r2[ox];
                            d[ox * 4 + 3] = r3[ox];
                        }
                    } else {
                        for (int q = 0; q < 4; q++)
                            for (int64_t ox = lo; ox < hi; ox++) d[ox * 4 + q] = r[q] ? r[q][ox * sw] : z;
                    }
                }
            }
        }
}

/* One run of a tile's columns whose outputs are contiguous: tile columns [j, j + len) go to
 * out[obase + m * OH*OW + (0 .. len)] for channel m. */
typedef struct {
    int64_t j, len, obase;
} q_run;

/* the runs of a packed panel (columns n0 .. n0+nr, batch folded): one per image it touches */
static int runs_packed(q_run *run, const nd_qconv_params *p, int64_t n0, int64_t nr)
{
    const int64_t ohw = p->oh * p->ow;
    int k = 0;
    for (int64_t j0 = 0; j0 < nr;) {
        const int64_t b0 = (n0 + j0) / ohw, s0 = (n0 + j0) % ohw;
        const int64_t len = ohw - s0 < nr - j0 ? ohw - s0 : nr - j0;
        run[k++] = (q_run){j0, len, b0 * p->oc * ohw + s0};
        j0 += len;
    }
    return k;
}

/* the runs of a direct panel of image b: virtual columns n' = n0 + j = oy * Wv + x (Wv the
 * padded input width / stride); x >= OW and oy >= OH are not outputs */
static int runs_direct(q_run *run, const nd_qconv_params *p, int64_t wp, int64_t b, int64_t n0)
{
    const int64_t ohw = p->oh * p->ow;
    int k = 0;
    for (int64_t j = 0; j < QNR;) {
        const int64_t n = n0 + j, oy = n / wp, x = n % wp;
        if (oy >= p->oh)
            break;
        if (x >= p->ow) {
            j += wp - x;
            continue;
        }
        const int64_t len = (p->ow - x) < (QNR - j) ? (p->ow - x) : (QNR - j);
        run[k++] = (q_run){j, len, b * p->oc * ohw + oy * p->ow + x};
        j += len;
    }
    return k;
}

/* float32 output of the tile: rows m0 .. m0+mr, each run a contiguous, vectorized row per
 * channel */
static inline __attribute__((always_inline)) void
epi_body(float *restrict out, const float *restrict res, const int32_t *restrict acc, const float *restrict scale,
         const float *restrict bias, const int32_t *restrict comp, const nd_qconv_params *p, int64_t m0,
         int64_t mr, const q_run *runs, int nruns,
         void (*row)(void *, const void *, int, const int32_t *, int64_t, int32_t, float, float, int, int, float,
                     float, float, float))
{
    const int64_t ohw = p->oh * p->ow;
    const int act = p->act, rkind = !res ? 0 : p->res_u8 ? 2 : 1;
    const float oinv = p->out_inv_scale, oz = (float)p->out_zero, rs = p->res_scale, rz = (float)p->res_zero;
    const uint8_t *r8 = (const uint8_t *)res;
    uint8_t *out8 = (uint8_t *)out;
    for (int ri = 0; ri < nruns; ri++) {
        const int64_t j0 = runs[ri].j, len = runs[ri].len;
        for (int64_t i = 0; i < mr; i++) {
            const int64_t m = m0 + i;
            const float sc = scale[m], bi = bias[m];
            const int32_t cm = comp[m];
            const int32_t *restrict a = acc + i * QNR + j0;
            const int64_t o = runs[ri].obase + m * ohw;
            if (row && (act == ND_ACT_NONE || act == ND_ACT_RELU)) {   /* the vector row (AVX-512) */
                row(p->out_u8 ? (void *)(out8 + o) : (void *)(out + o),
                    rkind == 2 ? (const void *)(r8 + o) : rkind == 1 ? (const void *)(res + o) : NULL, rkind, a, len,
                    cm, sc, bi, act == ND_ACT_RELU, p->out_u8, oinv, oz, rs, rz);
                continue;
            }
            float t[QNR];
            if (rkind == 1) {
                const float *restrict r = res + o;
                for (int64_t j = 0; j < len; j++) t[j] = ((float)(a[j] - cm) * sc + bi) + r[j];
            } else if (rkind == 2) {
                const uint8_t *restrict r = r8 + o;
                for (int64_t j = 0; j < len; j++) t[j] = ((float)(a[j] - cm) * sc + bi) + ((float)r[j] - rz) * rs;
            } else {
                for (int64_t j = 0; j < len; j++) t[j] = (float)(a[j] - cm) * sc + bi;
            }
            if (act == ND_ACT_RELU)
                for (int64_t j = 0; j < len; j++) t[j] = t[j] < 0.0f ? 0.0f : t[j];
            else if (act != ND_ACT_NONE && len >= 16)
                nd_act_inplace(t, len, act);
            else if (act != ND_ACT_NONE)
                for (int64_t j = 0; j < len; j++) t[j] = nd_act1(t[j], act);
            if (p->out_u8)
                for (int64_t j = 0; j < len; j++) out8[o + j] = q8(t[j], oinv, oz);
            else
                memcpy(out + o, t, (size_t)len * sizeof(float));
        }
    }
}

/* The direct layout (dilation 1, equal strides s): the input quantized into 4-channel groups
 * of padded planes split into s row phases, xq4[b][c4][phase][Hs][Wp][4] — padded row yp is
 * row yp / s of phase yp % s; Wp = pad_l + W + pad_r rounded up to a multiple of s, Hs =
 * ceil((pad_t + H + pad_b) / s); borders and channels past C hold the zero point. Then for
 * the virtual columns n' = oy*Wv + x (Wv = Wp / s) and tap (i, j) the input pixel is
 * s*n' + (i / s)*Wp + j of phase i % s: a B panel row is 64 consecutive 4-byte pixels
 * (stride 1: one copy) or every s-th one. Row r of the planes (r over b, c4, yp < s*Hs) is
 * one call. */
typedef struct {
    int64_t s, hp, wp, hs, wv;
} q_geo;

static inline q_geo geo_of(const nd_qconv_params *p)
{
    q_geo g;
    g.s = p->sh;
    g.hp = p->pad_t + p->h + p->pad_b;
    g.wp = (p->pad_l + p->w + p->pad_r + g.s - 1) / g.s * g.s;
    g.hs = (g.hp + g.s - 1) / g.s;
    g.wv = g.wp / g.s;
    return g;
}

static inline __attribute__((always_inline)) void
quant4_body(uint8_t *restrict xq4, const float *restrict x, const nd_qconv_params *p, int64_t r,
            void (*rows4)(uint8_t *, const float *const *, int64_t, float, float))
{
    const q_geo g = geo_of(p);
    const int64_t cp4 = p->cp / 4, H = p->h, W = p->w, C = p->c, rows = g.s * g.hs;
    const int64_t b = r / (cp4 * rows), rem = r % (cp4 * rows), c4 = rem / rows, yp = rem % rows;
    const int64_t y = yp - p->pad_t;
    uint8_t *restrict d = xq4 + (((b * cp4 + c4) * g.s + yp % g.s) * g.hs + yp / g.s) * g.wp * 4;
    const uint8_t z = (uint8_t)p->in_zero;
    if (y < 0 || y >= H) {
        memset(d, z, (size_t)(g.wp * 4));
        return;
    }
    memset(d, z, (size_t)(p->pad_l * 4));
    memset(d + (p->pad_l + W) * 4, z, (size_t)((g.wp - p->pad_l - W) * 4));
    if (p->in_u8) {                     /* already uint8 NCHW: interleave only */
        const uint8_t *x8 = (const uint8_t *)x;
        uint8_t *restrict e = d + p->pad_l * 4;
        const uint8_t *r8[4];
        int full = 1;
        for (int q = 0; q < 4; q++) {
            const int64_t c = 4 * c4 + q;
            r8[q] = c < C ? x8 + ((b * C + c) * H + y) * W : NULL;
            full &= r8[q] != NULL;
        }
        int64_t ix = 0;
#ifdef __SSE2__
        if (full)                       /* 16 pixels: bytes then pairs interleaved, 64 bytes */
            for (; ix + 16 <= W; ix += 16) {
                const __m128i q0 = _mm_loadu_si128((const __m128i *)(r8[0] + ix));
                const __m128i q1 = _mm_loadu_si128((const __m128i *)(r8[1] + ix));
                const __m128i q2 = _mm_loadu_si128((const __m128i *)(r8[2] + ix));
                const __m128i q3 = _mm_loadu_si128((const __m128i *)(r8[3] + ix));
                const __m128i lo01 = _mm_unpacklo_epi8(q0, q1), hi01 = _mm_unpackhi_epi8(q0, q1);
                const __m128i lo23 = _mm_unpacklo_epi8(q2, q3), hi23 = _mm_unpackhi_epi8(q2, q3);
                _mm_storeu_si128((__m128i *)(e + 4 * ix), _mm_unpacklo_epi16(lo01, lo23));
                _mm_storeu_si128((__m128i *)(e + 4 * ix + 16), _mm_unpackhi_epi16(lo01, lo23));
                _mm_storeu_si128((__m128i *)(e + 4 * ix + 32), _mm_unpacklo_epi16(hi01, hi23));
                _mm_storeu_si128((__m128i *)(e + 4 * ix + 48), _mm_unpackhi_epi16(hi01, hi23));
            }
#endif
        for (; ix < W; ix++)
            for (int q = 0; q < 4; q++) e[4 * ix + q] = r8[q] ? r8[q][ix] : z;
        return;
    }
    const float *rws[4];
    for (int q = 0; q < 4; q++) {
        const int64_t c = 4 * c4 + q;
        rws[q] = c < C ? x + ((b * C + c) * H + y) * W : NULL;
    }
    rows4(d + p->pad_l * 4, rws, W, p->in_inv_scale, (float)p->in_zero);
}

static inline __attribute__((always_inline)) void
pack_direct_body(uint8_t *restrict dst, const uint8_t *restrict xq4, const nd_qconv_params *p, int64_t b,
                 int64_t n0)
{
    const q_geo g = geo_of(p);
    const int64_t cp4 = p->cp / 4, plane = g.hs * g.wp * 4, S = g.s;
    const uint8_t *img = xq4 + b * cp4 * S * plane;
    for (int64_t i = 0; i < p->kh; i++)
        for (int64_t j = 0; j < p->kw; j++) {
            const int64_t t = i * p->kw + j;
            const uint8_t *src = img + (i % S) * plane + (S * n0 + (i / S) * g.wp + j) * 4;
            for (int64_t c4 = 0; c4 < cp4; c4++) {
                uint8_t *restrict d = dst + (t * cp4 + c4) * (QNR * 4);
                const uint8_t *restrict sp = src + c4 * S * plane;
                if (S == 1) {
                    memcpy(d, sp, QNR * 4);
                } else {
                    uint32_t *restrict d32 = (uint32_t *)d;
                    for (int jj = 0; jj < QNR; jj++) memcpy(d32 + jj, sp + 4 * S * jj, 4);
                }
            }
        }
}

void nd_quant_u8_strided(uint8_t *d, const float *r, int64_t n, float inv, float z)
{
    for (int64_t x = 0; x < n; x++) d[4 * x] = r ? q8(r[x], inv, z) : (uint8_t)z;
}

/* d[4x + q] = q8(rows[q][x]) for x < n (a NULL row: the zero point) — scalar */
static void rows4_scalar(uint8_t *d, const float *const *rows, int64_t n, float inv, float z)
{
    for (int q = 0; q < 4; q++) {
        const float *r = rows[q];
        for (int64_t x = 0; x < n; x++) d[4 * x + q] = r ? q8(r[x], inv, z) : (uint8_t)z;
    }
}


typedef struct {
    void (*quant)(uint8_t *xq, const float *x, const nd_qconv_params *p, int64_t r0, int64_t r1);
    void (*pack)(uint8_t *dst, const uint8_t *xq, const nd_qconv_params *p, int64_t n0, int64_t nr);
    void (*epi)(float *out, const float *res, const int32_t *acc, const float *scale, const float *bias,
                const int32_t *comp, const nd_qconv_params *p, int64_t m0, int64_t mr, const q_run *runs,
                int nruns);
    void (*quant4)(uint8_t *xq4, const float *x, const nd_qconv_params *p, int64_t r);
    void (*pack_direct)(uint8_t *dst, const uint8_t *xq4, const nd_qconv_params *p, int64_t b, int64_t n0);
} q_loops;

#define DEFINE_Q(suffix, attr)                                                                     \
    attr static void quant_##suffix(uint8_t *xq, const float *x, const nd_qconv_params *p, int64_t r0, \
                                    int64_t r1)                                                    \
    {                                                                                              \
        quant_body(xq, x, p, r0, r1);                                                              \
    }                                                                                              \
    attr static void pack_##suffix(uint8_t *dst, const uint8_t *xq, const nd_qconv_params *p,     \
                                   int64_t n0, int64_t nr)                                         \
    {                                                                                              \
        pack_body(dst, xq, p, n0, nr);                                                             \
    }                                                                                              \
    attr static void epi_##suffix(float *out, const float *res, const int32_t *acc, const float *scale, \
                                  const float *bias, const int32_t *comp, const nd_qconv_params *p,   \
                                  int64_t m0, int64_t mr, const q_run *runs, int nruns)            \
    {                                                                                              \
        epi_body(out, res, acc, scale, bias, comp, p, m0, mr, runs, nruns, EPIROW_##suffix);       \
    }                                                                                              \
    attr static void quant4_##suffix(uint8_t *xq4, const float *x, const nd_qconv_params *p, int64_t r) \
    {                                                                                              \
        quant4_body(xq4, x, p, r, ROWS4_##suffix);                                                 \
    }                                                                                              \
    attr static void pack_direct_##suffix(uint8_t *dst, const uint8_t *xq4, const nd_qconv_params *p, \
                                          int64_t b, int64_t n0)                                   \
    {                                                                                              \
        pack_direct_body(dst, xq4, p, b, n0);                                                      \
    }                                                                                              \
    static const q_loops q_loops_##suffix = {QUANT_##suffix, pack_##suffix, epi_##suffix, quant4_##suffix, \
                                             pack_direct_##suffix};
#define QUANT_portable quant_portable
#define QUANT_avx2 quant_vec_avx2
#define QUANT_avx512 quant_vec_avx512
#define EPIROW_portable NULL
#define EPIROW_avx2 NULL
#define EPIROW_avx512 nd_qepi_row_avx512
#define ROWS4_portable rows4_scalar
#define ROWS4_avx2 nd_quant_rows4_avx2
#define ROWS4_avx512 nd_quant_rows4_avx512
ND_EACH_ISA(DEFINE_Q)

static const q_loops *loops_for_level(int level)
{
#if defined(__x86_64__) || defined(__i386__)
    if (level >= ND_ISA_AVX512)
        return &q_loops_avx512;
    if (level >= ND_ISA_AVX2)
        return &q_loops_avx2;
#endif
    (void)level;
    return &q_loops_portable;
}

/* ------------------------------------------------------------ dispatch */

static int has_vnni(void)
{
#if defined(__x86_64__) || defined(__i386__)
    static int cached = -1;
    if (cached < 0)
        cached = nd_cpu_has_vnni();
    return cached;
#else
    return 0;
#endif
}

int32_t nd_qconv_mr(void) { return QMR; }

int32_t nd_qconv_path(int32_t layout)
{
    const int level = nd_isa_level();
    if (layout == 1)
        return level >= ND_ISA_AVX512 && has_vnni() ? 2 : 0;
    if (layout == 2)
        return level >= ND_ISA_AVX2 ? 1 : 0;
    return -1;
}

int32_t nd_qconv_layout(void)
{
    const int level = nd_isa_level();
    if (level >= ND_ISA_AVX512 && has_vnni())
        return 1;
    return level >= ND_ISA_AVX2 ? 2 : 1;
}

static nd_quk_fn quk_for(int32_t layout)
{
    switch (nd_qconv_path(layout)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2: return nd_quk_vnni;
    case 1: return nd_quk_avx2;
#endif
    default: return layout == 2 ? nd_quk_l2_portable : nd_quk_l1_portable;
    }
}

/* ------------------------------------------------------------ driver */

enum { MAX_KP = 32768 };   /* |acc - comp| <= 2 * 255 * 127 * kp < 2^31 */

static int params_ok(const nd_qconv_params *p)
{
    if (!p || p->n < 1 || p->c < 1 || p->h < 1 || p->w < 1 || p->oc < 1 || p->oh < 1 || p->ow < 1 ||
        p->kh < 1 || p->kw < 1 || p->sh < 1 || p->sw < 1 || p->dh < 1 || p->dw < 1 || p->threads < 1)
        return 0;
    if (p->cp < p->c || p->cp % 4 || p->in_zero < 0 || p->in_zero > 255 || !(p->in_inv_scale > 0.0f) ||
        p->in_inv_scale > 3.0e38f || (p->layout != 1 && p->layout != 2) || !nd_act_ok(p->act) ||
        (p->residual != 0 && p->residual != 1) || p->a_bytes < 0 || p->a_bytes % 64)
        return 0;
    if ((p->in_u8 != 0 && p->in_u8 != 1) || (p->out_u8 != 0 && p->out_u8 != 1))
        return 0;
    if (p->out_u8 && (p->out_zero < 0 || p->out_zero > 255 || !(p->out_inv_scale > 0.0f) || p->out_inv_scale > 3.0e38f))
        return 0;
    if ((p->res_u8 != 0 && p->res_u8 != 1) || (p->res_u8 && !p->residual) ||
        (p->res_u8 && (p->res_zero < 0 || p->res_zero > 255 || !(p->res_scale > 0.0f) || p->res_scale > 3.0e38f)))
        return 0;
    int64_t kp;
    if (!ND_PROD_OK(p->kh, p->kw, p->cp) || (kp = p->kh * p->kw * p->cp) > MAX_KP)
        return 0;
    if (!ND_PROD_OK(p->n, p->h, p->w, p->cp) || !ND_PROD_OK(p->n, p->oc, p->oh, p->ow) ||
        !ND_PROD_OK(p->n, p->c, p->h, p->w))
        return 0;
    if (!nd_axis_ok(p->h, p->oh, p->kh, p->sh, p->dh, p->pad_t, p->pad_b) ||
        !nd_axis_ok(p->w, p->ow, p->kw, p->sw, p->dw, p->pad_l, p->pad_r))
        return 0;
    /* every output pixel's window must be the one the padding describes */
    if ((p->oh - 1) * p->sh + (p->kh - 1) * p->dh + 1 > p->h + p->pad_t + p->pad_b ||
        (p->ow - 1) * p->sw + (p->kw - 1) * p->dw + 1 > p->w + p->pad_l + p->pad_r)
        return 0;
    return 1;
}

static int64_t ocp_of(const nd_qconv_params *p) { return (p->oc + QMR - 1) / QMR * QMR; }
/* dilation 1 and equal strides up to 4 take the direct layout (quant4_body); the others, and FCs (h = w = 1,
 * where the batch is the only column: a direct panel would hold one), the packed one */
static int is_direct(const nd_qconv_params *p)
{
    return p->sh == p->sw && p->sh <= 4 && p->dh == 1 && p->dw == 1 && !(p->h == 1 && p->w == 1);
}
/* bytes of the quantized input; the direct layout's slack covers the reads of the last
 * panel's virtual columns past the last plane (their results are not stored) */
static int64_t xq_bytes(const nd_qconv_params *p)
{
    if (is_direct(p)) {
        const q_geo g = geo_of(p);
        return ALIGN64(p->n * p->cp * g.s * g.hs * g.wp + (g.s * QNR + p->kw + (p->kh / g.s + 1) * g.wp) * 4);
    }
    return ALIGN64(p->n * p->c * p->h * p->w);
}
static int64_t panel_bytes(const nd_qconv_params *p) { return ALIGN64(p->kh * p->kw * p->cp * QNR); }

int64_t nd_qconv_ws_floats(const nd_qconv_params *p)
{
    if (!params_ok(p))
        return -1;
    const int64_t bytes = xq_bytes(p) + (int64_t)p->threads * panel_bytes(p) + 64;
    return (bytes + 3) / 4;
}

nd_status nd_qconv_f32(const nd_qconv_params *p, float *out, const float *const *in, const float *w,
                       const float *bias, float *ws)
{
    (void)bias;
    if (!params_ok(p) || !out || !in || !in[0] || !w || !ws)
        return ND_EINVAL;
    const float *res = p->residual ? in[1] : NULL;
    if (p->residual && (!res || res == out))
        return ND_EINVAL;
    const int64_t ocp = ocp_of(p), k4 = p->kh * p->kw * p->cp / 4;
    const int64_t esz = p->layout == 2 ? 2 : 1;
    if (p->a_bytes < ocp * k4 * 4 * esz)
        return ND_EINVAL;
    const uint8_t *blob = (const uint8_t *)w;
    const float *scale = (const float *)(blob + p->a_bytes);
    const float *bvec = scale + ocp;
    const int32_t *comp = (const int32_t *)(bvec + ocp);
    const int64_t a_panel = QMR * k4 * 4 * esz;     /* bytes of one A panel */

    /* the workspace: 64-aligned from its start */
    uint8_t *base = (uint8_t *)ws;
    base += (64 - ((uintptr_t)base & 63)) & 63;
    uint8_t *xq = base;
    uint8_t *panels = xq + xq_bytes(p);

    const q_loops *L = loops_for_level(nd_isa_level());
    const nd_quk_fn uk = quk_for(p->layout);
    const int threads = nd_threads(p->threads);
    const int direct = is_direct(p);
    const q_geo g = geo_of(p);
    const int64_t wp = g.wv;            /* the virtual columns' row length */
    (void)threads;
    if (direct) {
        const int64_t rows = p->n * (p->cp / 4) * g.s * g.hs, used = rows * g.wp * 4;
        memset(xq + used, p->in_zero, (size_t)(xq_bytes(p) - used));
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows > 1)
#endif
        for (int64_t r = 0; r < rows; r++) L->quant4(xq, in[0], p, r);
    } else if (p->in_u8) {
        xq = (uint8_t *)in[0];          /* read only: the packing reads it as it is */
        panels = base;
    } else {
        const int64_t nx = p->n * p->c * p->h * p->w, chunk = 16384;
        const int64_t nchunks = (nx + chunk - 1) / chunk;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && nchunks > 1)
#endif
        for (int64_t ci = 0; ci < nchunks; ci++)
            L->quant(xq, in[0], p, ci * chunk, (ci + 1) * chunk < nx ? (ci + 1) * chunk : nx);
    }

    /* columns: packed, n = b*OH*OW + s; direct, per image ppi panels of virtual columns */
    const int64_t ncols = p->n * p->oh * p->ow;
    const int64_t ppi = (p->oh * wp + QNR - 1) / QNR;
    const int64_t npan = direct ? p->n * ppi : (ncols + QNR - 1) / QNR, nmb = ocp / QMR;
    int64_t msplit = 1;
    if (npan < threads) {
        msplit = (threads + npan - 1) / npan;
        if (msplit > nmb)
            msplit = nmb;
    }
    const int64_t tasks = npan * msplit;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1 && tasks > 1)
#endif
    for (int64_t t = 0; t < tasks; t++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        int32_t acc[QMR * QNR] __attribute__((aligned(64)));
        uint8_t *bp = panels + (int64_t)tid * panel_bytes(p);
        const int64_t pan = t / msplit, ms = t % msplit;
        const int64_t rb0 = ms * nmb / msplit, rb1 = (ms + 1) * nmb / msplit;
        q_run runs[QNR];
        int nruns;
        if (direct) {
            const int64_t b = pan / ppi, n0 = (pan % ppi) * QNR;
            L->pack_direct(bp, xq, p, b, n0);
            nruns = runs_direct(runs, p, wp, b, n0);
        } else {
            const int64_t n0 = pan * QNR, nr = ncols - n0 < QNR ? ncols - n0 : QNR;
            L->pack(bp, xq, p, n0, nr);
            nruns = runs_packed(runs, p, n0, nr);
        }
        for (int64_t rb = rb0; rb < rb1; rb++) {
            const int64_t m0 = rb * QMR, mr = p->oc - m0 < QMR ? p->oc - m0 : QMR;
            uk(k4, blob + rb * a_panel, bp, acc);
            L->epi(out, res, acc, scale, bvec, comp, p, m0, mr, runs, nruns);
        }
    }
    return ND_OK;
}
