/* pool.c — window pools and global pools, float32 NCHW.
 *
 * x is (N,C,H,W), y is (N,C,OH,OW). Output cell (oy,ox) looks at padded rows
 * [oy*sh - pad_t, +kh) and columns [ox*sw - pad_l, +kw), clipped to the input
 * for reading. Padding semantics follow PyTorch:
 *   max/min     padded cells never win (PyTorch pads max with -inf);
 *   avg         padded cells are zeros; the divisor counts them only with
 *               count_include_pad, and then only up to pad_b/pad_r — the extra
 *               cells a ceil_mode window hangs past the padding never count;
 *   stochastic  (inference, Zeiler & Fergus) sum(p_i * a_i) over the real cells,
 *               p_i = a+_i / sum(a+) with a+ = max(a, 0): sum(a+^2) / sum(a+),
 *               0 when no cell is positive, +inf when one is +inf, NaN when one
 *               is NaN (netdsl/ops/pool.py StochasticPool says why).
 * A window with no real cell (netdsl refuses such pads before any C runs; ONNX's
 * rule) gives 0 for every pool.
 * Dilation (taps dh/dw apart) takes its own plain per-window loop (dilated_plane):
 * the row-buffer and strided sweeps below assume dense windows.
 *
 * Parallel over the N*C planes (dynamic, one plane at a time): they are independent,
 * usually many, and one plane of a typical CNN fits in L2, so overlapping windows reread
 * rows from cache; no tiling. The reduction is separable: max/min/avg combine a window's
 * rows into a padded row buffer, then reduce along it (pool_plane; the vector bodies are
 * csrc/nd_simd.h's, per ISA); the stochastic pool (and rows wider than the buffer) reduce
 * each row first, then the rows.
 * Not done here: NHWC, argmax indices.
 */
#include "kernels/pool.h"

#include <math.h>
#include <string.h>

#include "dispatch.h"
#include "nd_simd.h"

enum { POOL_MAX, POOL_MIN, POOL_AVG, POOL_STOCH };

#define OWB 256   /* output columns per chunk: the row accumulators live on the stack */
#define PBUF 4160 /* max/min: padded rows up to this wide (less 16) are combined vertically first */

/* The clipped range [*lo, *hi) of a window starting at padded index o*s - pad. */
static inline void window_range(int64_t o, int64_t s, int64_t pad, int64_t k, int64_t size,
                                int64_t *lo, int64_t *hi)
{
    int64_t a = o * s - pad, b = a + k;
    *lo = a < 0 ? 0 : a;
    *hi = b > size ? size : b;
}

/* Max/min keep a NaN once seen (v != v), as PyTorch and numpy do; written as a
 * select so the loops vectorize. */
static inline float combine(int op, float m, float v)
{
    switch (op) {
    case POOL_MAX: return ((v > m) | (v != v)) ? v : m;   /* `|`, not `||`: no branch */
    case POOL_MIN: return ((v < m) | (v != v)) ? v : m;
    default:       return m + v;
    }
}

/* The value a pool sums or compares: the stochastic pool weighs only the positive
 * part (a cell <= 0 has probability 0); `v < 0 ? 0 : v` keeps NaN. */
static inline float val(int op, float v)
{
    return op == POOL_STOCH ? (v < 0.0f ? 0.0f : v) : v;
}

static inline float identity(int op)
{
    return op == POOL_MAX ? -INFINITY : op == POOL_MIN ? INFINITY : 0.0f;
}

/* The horizontal half of the separable reduction, for one input row and output
 * columns [o0, o1): t[j] reduces row over window o0+j (t2: sum of squares, for
 * the stochastic pool). Columns whose window lies fully inside the row
 * ([ilo, ihi)) run kx-outer so the inner loop is a strided, vectorizable sweep;
 * the few edge columns take the clipped scalar loop. */
static inline __attribute__((always_inline)) void
hpass(const float *row, const nd_pool_params *p, int64_t o0, int64_t o1, int64_t ilo, int64_t ihi,
      float *t, float *t2, int op)
{
    const int64_t sw = p->sw, pl = p->pad_l, kw = p->kw;
    const int64_t a = o0 > ilo ? o0 : ilo, b = o1 < ihi ? o1 : ihi;
    for (int64_t ox = o0; ox < o1; ox++) {
        if (ox >= a && ox < b) continue;
        int64_t x0, x1;
        window_range(ox, sw, pl, kw, p->w, &x0, &x1);
        float m = identity(op), m2 = 0.0f;
        for (int64_t j = x0; j < x1; j++) {
            const float v = val(op, row[j]);
            m = combine(op, m, v);
            if (op == POOL_STOCH) m2 += v * v;
        }
        t[ox - o0] = m;
        if (op == POOL_STOCH) t2[ox - o0] = m2;
    }
    if (a >= b) return;
    float *ta = t + (a - o0), *t2a = t2 + (a - o0);
    const float *r = row + a * sw - pl;
    const int64_t m = b - a;
    for (int64_t j = 0; j < m; j++) ta[j] = val(op, r[j * sw]);
    if (op == POOL_STOCH)
        for (int64_t j = 0; j < m; j++) t2a[j] = ta[j] * ta[j];
    for (int64_t kx = 1; kx < kw; kx++) {
        const float *rk = r + kx;
        for (int64_t j = 0; j < m; j++) ta[j] = combine(op, ta[j], val(op, rk[j * sw]));
        if (op == POOL_STOCH)
            for (int64_t j = 0; j < m; j++) {
                const float v = val(op, rk[j * sw]);
                t2a[j] += v * v;
            }
    }
}

/* The first tap index i in [0, k) with lo <= start + i*d, and one past the last with
 * start + i*d < hi: taps [*i0, *i1) of a dilated window lie in [lo, hi). */
static inline void tap_range(int64_t start, int64_t k, int64_t d, int64_t lo, int64_t hi,
                             int64_t *i0, int64_t *i1)
{
    int64_t a = lo > start ? (lo - start + d - 1) / d : 0;
    int64_t b = hi > start ? (hi - start + d - 1) / d : 0;
    *i0 = a;
    *i1 = b < k ? b : k;
}

/* A dilated window pool on one plane: every output visits its real taps directly.
 * AvgPool's divisor counts the taps in the padded extent [-pad_t, H + pad_b) with
 * count_include_pad, else the real taps; max/min keep NaN; stochastic as below. */
static inline __attribute__((always_inline)) void
dilated_plane(const nd_pool_params *p, const float *x, float *y, int op)
{
    const int64_t H = p->h, W = p->w;
    for (int64_t oy = 0; oy < p->oh; oy++) {
        const int64_t ys = oy * p->sh - p->pad_t;
        int64_t i0, i1, c0, c1;
        tap_range(ys, p->kh, p->dh, 0, H, &i0, &i1);
        tap_range(ys, p->kh, p->dh, -p->pad_t, H + p->pad_b, &c0, &c1);
        for (int64_t ox = 0; ox < p->ow; ox++) {
            const int64_t xs = ox * p->sw - p->pad_l;
            int64_t j0, j1, e0, e1;
            tap_range(xs, p->kw, p->dw, 0, W, &j0, &j1);
            tap_range(xs, p->kw, p->dw, -p->pad_l, W + p->pad_r, &e0, &e1);
            float *yo = y + oy * p->ow + ox;
            if (i1 <= i0 || j1 <= j0) { *yo = 0.0f; continue; }    /* only padding */
            float m = identity(op), m2 = 0.0f;
            for (int64_t i = i0; i < i1; i++) {
                const float *row = x + (ys + i * p->dh) * W + xs;
                for (int64_t j = j0; j < j1; j++) {
                    const float v = val(op, row[j * p->dw]);
                    m = combine(op, m, v);
                    if (op == POOL_STOCH) m2 += v * v;
                }
            }
            if (op == POOL_AVG) {
                const int64_t cnt = p->count_include_pad ? (c1 - c0) * (e1 - e0) : (i1 - i0) * (j1 - j0);
                *yo = m / (float)cnt;
            } else if (op == POOL_STOCH) {
                *yo = m == INFINITY ? INFINITY : m != 0.0f ? m2 / m : 0.0f;
            } else {
                *yo = m;
            }
        }
    }
}

/* One (n,c) plane. `op` is a literal at every call site and this is inlined into
 * each kernel's own parallel loop, so the switches fold away. (A shared
 * function holding the `omp parallel` would not do: OpenMP outlines the loop
 * body before inlining, and `op` would become a run-time value in there.)
 * Max, min and sums are separable: reduce each input row of a window
 * horizontally (hpass), then combine those rows; each output row recomputes
 * its rows' horizontal pass (kh/sh times the minimum work, kept because it
 * needs no workspace and every loop is a contiguous or strided sweep). */
static inline __attribute__((always_inline)) void
pool_plane(const nd_pool_params *p, const float *x, float *y, int op)
{
    if (p->dh != 1 || p->dw != 1) {
        dilated_plane(p, x, y, op);
        return;
    }
    const int64_t H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    const int64_t sw = p->sw, pl = p->pad_l, kw = p->kw;
    /* Output columns whose window needs no clipping: ox*sw >= pl and ox*sw - pl + kw <= W. */
    const int64_t ilo = (pl + sw - 1) / sw;
    const int64_t ihi = W + pl - kw >= 0 ? (W + pl - kw) / sw + 1 : 0;
    /* count_include_pad divides by the window clipped to the padded extent (not the
     * ceil_mode overhang past it), PyTorch's rule. */
    const int64_t hp = H + p->pad_b, wp = W + p->pad_r;
    float acc[OWB], acc2[OWB], t[OWB], t2[OWB];
    if (op == POOL_AVG && p->kh == 2 && p->kw == 2 && p->sh == 2 && p->sw == 2 && p->pad_t == 0 &&
        p->pad_l == 0 && 2 * OH <= H && 2 * OW <= W) {
        /* AvgPool 2x2/s2 without padding (LeNet's subsampling, DenseNet's transitions): every
         * window is four real cells, so no clipping, divisor 4; one pass per output row
         * instead of the separable loops, whose per-row setup dominates on tiny planes. */
        for (int64_t oy = 0; oy < OH; oy++) {
            const float *r0 = x + 2 * oy * W, *r1 = r0 + W;
            float *yr = y + oy * OW;
            for (int64_t j = 0; j < OW; j++) {
                const float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
                yr[j] = ((a + b) + (c + d)) * 0.25f;
            }
        }
        return;
    }
    if (op == POOL_MAX || op == POOL_MIN || op == POOL_AVG) {
        /* Max/min/avg: combine the window's input rows first (one contiguous vector sweep
         * per row, nd_simd vred / accum), into a row buffer that holds the identity (-inf /
         * +inf / 0) in the padding, so that no window needs clipping; then one horizontal
         * pass over that buffer (nd_simd pool_row: contiguous loads for stride 1, even/odd
         * shuffles for stride 2); avg then divides by the window's count. kh*W + OW*kw
         * element ops per output row; max/min keep NaN. Avg sums rows first, then columns
         * (the other order than the loops below: a different rounding, the same on every
         * ISA). Windows with no real cell (pad >= kernel) give 0, as below. */
        const int64_t L = (OW - 1) * sw + kw;             /* buffer floats the windows read */
        const int64_t ncols = W < L - pl ? W : L - pl;    /* input columns some window reads */
        if (L + 16 <= PBUF && pl + W + 16 <= PBUF) {
            const nd_simd_ops *S = nd_simd();
            const int red = op == POOL_MAX ? ND_RED_MAX : op == POOL_MIN ? ND_RED_MIN : ND_RED_SUM;
            const float id = identity(op);
            float b[PBUF];
            int64_t cl = 0, chi = OW;                     /* [cl, chi): columns with a real cell */
            for (;;) {
                int64_t x0, x1;
                if (cl >= OW) break;
                window_range(cl, sw, pl, kw, W, &x0, &x1);
                if (x1 > x0) break;
                cl++;
            }
            for (;;) {
                int64_t x0, x1;
                if (chi <= cl) break;
                window_range(chi - 1, sw, pl, kw, W, &x0, &x1);
                if (x1 > x0) break;
                chi--;
            }
            /* avg: the window's column count per output column (kw <= L < PBUF: fits int32) */
            int32_t cwt[op == POOL_AVG ? PBUF : 1];
            if (op == POOL_AVG)
                for (int64_t j = cl; j < chi; j++) {
                    int64_t x0, x1;
                    window_range(j, sw, pl, kw, W, &x0, &x1);
                    int64_t cw = x1 - x0;
                    if (p->count_include_pad) {
                        const int64_t xs = j * sw - pl, xe = xs + kw < wp ? xs + kw : wp;
                        cw = xe - xs;
                    }
                    cwt[j] = (int32_t)cw;
                }
            const int64_t lo = pl < L ? pl : L, hi = ncols > 0 ? pl + ncols : lo;
            for (int64_t j = 0; j < lo; j++) b[j] = id;
            for (int64_t j = hi; j < L + 16; j++) b[j] = id;   /* + the even-lane loads' slack */
            for (int64_t oy = 0; oy < OH; oy++) {
                int64_t y0, y1;
                window_range(oy, p->sh, p->pad_t, p->kh, H, &y0, &y1);
                float *yr = y + oy * OW;
                if (y1 <= y0 || cl >= chi) {
                    for (int64_t j = 0; j < OW; j++) yr[j] = 0.0f;
                    continue;
                }
                if (ncols > 0) {
                    float *v = b + pl;
                    const float *r0 = x + y0 * W;
                    if (y1 - y0 == 1 || op == POOL_AVG) {
                        memcpy(v, r0, (size_t)ncols * sizeof(float));
                        if (op == POOL_AVG)
                            for (int64_t i = y0 + 1; i < y1; i++) S->accum(v, x + i * W, 0.0f, ncols, 0);
                    } else {
                        S->vred(v, r0, r0 + W, ncols, red);   /* rows y0, y0+1, then the rest */
                        for (int64_t i = y0 + 2; i < y1; i++) S->vred(v, v, x + i * W, ncols, red);
                    }
                }
                S->pool_row(yr, b, OW, kw, sw, red);
                if (op == POOL_AVG) {
                    /* count_include_pad counts the window clipped to the padded extent (not
                     * the ceil_mode overhang past it), PyTorch's rule */
                    int64_t ch = y1 - y0;
                    if (p->count_include_pad) {
                        const int64_t ys = oy * p->sh - p->pad_t, ye = ys + p->kh < hp ? ys + p->kh : hp;
                        ch = ye - ys;
                    }
                    for (int64_t j = cl; j < chi; j++) yr[j] = yr[j] / (float)(ch * cwt[j]);
                }
                for (int64_t j = 0; j < cl; j++) yr[j] = 0.0f;
                for (int64_t j = chi; j < OW; j++) yr[j] = 0.0f;
            }
            return;
        }
    }
    for (int64_t oy = 0; oy < OH; oy++) {
        int64_t y0, y1;
        window_range(oy, p->sh, p->pad_t, p->kh, H, &y0, &y1);
        int64_t ch = y1 - y0;
        if (op == POOL_AVG && p->count_include_pad) {
            int64_t ys = oy * p->sh - p->pad_t, ye = ys + p->kh < hp ? ys + p->kh : hp;
            ch = ye - ys;
        }
        for (int64_t o0 = 0; o0 < OW; o0 += OWB) {
            const int64_t o1 = o0 + OWB < OW ? o0 + OWB : OW, m = o1 - o0;
            for (int64_t j = 0; j < m; j++) { acc[j] = identity(op); acc2[j] = 0.0f; }
            for (int64_t i = y0; i < y1; i++) {
                hpass(x + i * W, p, o0, o1, ilo, ihi, t, t2, op);
                for (int64_t j = 0; j < m; j++) acc[j] = combine(op, acc[j], t[j]);
                if (op == POOL_STOCH)
                    for (int64_t j = 0; j < m; j++) acc2[j] += t2[j];
            }
            float *yr = y + oy * OW + o0;
            for (int64_t j = 0; j < m; j++) {
                int64_t x0, x1;
                window_range(o0 + j, sw, pl, kw, W, &x0, &x1);
                if (y1 <= y0 || x1 <= x0) { yr[j] = 0.0f; continue; }   /* only padding */
                if (op == POOL_AVG) {
                    int64_t cw = x1 - x0;
                    if (p->count_include_pad) {
                        int64_t xs = (o0 + j) * sw - pl, xe = xs + kw < wp ? xs + kw : wp;
                        cw = xe - xs;
                    }
                    yr[j] = acc[j] / (float)(ch * cw);
                } else if (op == POOL_STOCH) {
                    /* acc = sum(a+) >= every a+ in the window, so no cancellation: the ratio
                     * is as accurate as the sums. A +inf cell wins the whole probability
                     * (inf/inf would say NaN); NaN != 0, so NaN goes on to the division. */
                    yr[j] = acc[j] == INFINITY ? INFINITY : acc[j] != 0.0f ? acc2[j] / acc[j] : 0.0f;
                } else {
                    yr[j] = acc[j];
                }
            }
        }
    }
}

static inline int pool_bad(const nd_pool_params *p)
{
    return p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oh <= 0 || p->ow <= 0 ||
           p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 || p->dw <= 0 ||
           !nd_axis_ok(p->h, p->oh, p->kh, p->sh, p->dh, p->pad_t, p->pad_b) ||
           !nd_axis_ok(p->w, p->ow, p->kw, p->sw, p->dw, p->pad_l, p->pad_r) ||
           !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->c, p->oh, p->ow, p->kh, p->kw);
}

/* Fan out only when there is enough work to pay for waking the thread team (~10 us of
 * vectorized work: 2^18 window-element ops, or that many input floats read); planes go
 * out in dynamic chunks of one, so a thread that starts late (a busy core) takes fewer. */
#define POOL_PAR_MIN 262144
static inline int pool_parallel(const nd_pool_params *p)
{
    return p->n * p->c * p->oh * p->ow * p->kh * p->kw > POOL_PAR_MIN ||
           p->n * p->c * p->h * p->w > POOL_PAR_MIN;
}

nd_status nd_maxpool_f32(const nd_maxpool_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (pool_bad(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, isz = p->h * p->w, osz = p->oh * p->ow;
#pragma omp parallel for schedule(dynamic, 1) if (pool_parallel(p))
    for (int64_t pc = 0; pc < planes; pc++) pool_plane(p, in[0] + pc * isz, out + pc * osz, POOL_MAX);
    return ND_OK;
}

nd_status nd_minpool_f32(const nd_minpool_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (pool_bad(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, isz = p->h * p->w, osz = p->oh * p->ow;
#pragma omp parallel for schedule(dynamic, 1) if (pool_parallel(p))
    for (int64_t pc = 0; pc < planes; pc++) pool_plane(p, in[0] + pc * isz, out + pc * osz, POOL_MIN);
    return ND_OK;
}

nd_status nd_avgpool_f32(const nd_avgpool_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (pool_bad(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, isz = p->h * p->w, osz = p->oh * p->ow;
#pragma omp parallel for schedule(dynamic, 1) if (pool_parallel(p))
    for (int64_t pc = 0; pc < planes; pc++) pool_plane(p, in[0] + pc * isz, out + pc * osz, POOL_AVG);
    return ND_OK;
}

nd_status nd_stochasticpool_f32(const nd_stochasticpool_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (pool_bad(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, isz = p->h * p->w, osz = p->oh * p->ow;
#pragma omp parallel for schedule(dynamic, 1) if (pool_parallel(p))
    for (int64_t pc = 0; pc < planes; pc++) pool_plane(p, in[0] + pc * isz, out + pc * osz, POOL_STOCH);
    return ND_OK;
}

/* x is (N,C,HW) -> y (N,C). The sum runs in 8 float lanes then a fixed tree (nd_simd hsum,
 * the same order on every ISA), which is both faster and closer to the exact mean than one
 * serial float accumulator. Many small planes: dynamic chunks of ~16K elements. */
nd_status nd_globalavgpool_f32(const nd_globalavgpool_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0 || !ND_PROD_OK(p->n, p->c, p->hw)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, hw = p->hw, chunk = hw >= 16384 ? 1 : 16384 / hw;
    const float *x = in[0];
    const nd_simd_ops *S = nd_simd();
#pragma omp parallel for schedule(dynamic, chunk) if (planes * hw > POOL_PAR_MIN)
    for (int64_t pc = 0; pc < planes; pc++) out[pc] = S->hsum(x + pc * hw, hw) / (float)hw;
    return ND_OK;
}

/* NaN anywhere in the plane gives NaN (nd_simd hred keeps it). */
nd_status nd_globalmaxpool_f32(const nd_globalmaxpool_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0 || !ND_PROD_OK(p->n, p->c, p->hw)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, hw = p->hw, chunk = hw >= 16384 ? 1 : 16384 / hw;
    const float *x = in[0];
    const nd_simd_ops *S = nd_simd();
#pragma omp parallel for schedule(dynamic, chunk) if (planes * hw > POOL_PAR_MIN)
    for (int64_t pc = 0; pc < planes; pc++) out[pc] = S->hred(x + pc * hw, hw, ND_RED_MAX);
    return ND_OK;
}
