/* train_pool.c — backward of the pools, and StochasticPool's training forward, float32 NCHW.
 *
 * x, dx are (N,C,H,W); y, dy, the sampled taps are (N,C,OH,OW); global pools: dy is (N,C).
 * Geometry is the forward's (nd_pool_params, pool.c): output (oy,ox) has taps (i,j),
 * i < kh, j < kw, on input row oy*sh - pad_t + i*dh and column ox*sw - pad_l + j*dw; only
 * taps on real cells take part (padding never wins a max, never gets a gradient).
 *
 * Every kernel here is a scatter: clear the dx plane, then each output adds its dy to the
 * cells it read (windows overlap when the stride is below the span, so cells collect
 * several). One plain loop over taps serves every form — stride, dilation, asymmetric pads,
 * ceil_mode's partial windows — because tap_range clips each window to the real cells.
 * Parallel over the N*C planes: a plane's scatter touches only its own dx plane, so no two
 * threads write one cell and the result does not depend on the thread count.
 *
 * MaxPool/MinPool route dy to the window's winner, recomputed from x with the forward's rule
 * (pool.c combine): scan the taps row by row, a strictly larger (smaller) value or any NaN
 * takes over. So ties go to the first tap in scan order and a NaN window to its last NaN —
 * exactly PyTorch's max_pool2d indices (min pool is -max_pool2d(-x)). A max is exact, so
 * this is the cell whose value the forward wrote; y is not read.
 * AvgPool: dy / count to every real tap, count as the forward's divisor (count_include_pad:
 * the taps inside the padded extent [-pad, size + pad_end), else the real taps).
 * StochasticPool (training): p_i = a+_i / sum(a+) over the real taps, a+ = max(a, 0), the
 * inference kernel's probability (netdsl/ops/pool.py). One uniform u = nd_rand_uniform(seed,
 * output index) per window; the pick is the first tap whose running sum of a+ (in double,
 * scan order) exceeds u * sum. The saved tap index i*kw + j is exact in float (the planner
 * keeps kh*kw <= 2^24). Windows with no positive cell: y = 0, saved -1, no gradient (y is 0
 * around such an input); a NaN tap: the first NaN is picked (y = NaN, as the inference gives);
 * a +inf tap: the first +inf takes all the probability (y = +inf).
 * Not done here: argmax index outputs (the winner is recomputed), NHWC, SIMD (scatters with
 * data-dependent targets; these run once per step, not per inference).
 */
#include "kernels/train_pool.h"

#include <math.h>
#include <string.h>

#include "dispatch.h"
#include "nd_random.h"

/* taps [*i0, *i1) of a window starting at `start` with k taps d apart lie in [lo, hi) (pool.c) */
static inline void taps(int64_t start, int64_t k, int64_t d, int64_t lo, int64_t hi, int64_t *i0, int64_t *i1)
{
    int64_t a, b;
    if (d == 1) {                   /* no 64-bit divide (tens of cycles) per window: the usual case */
        a = lo > start ? lo - start : 0;
        b = hi > start ? hi - start : 0;
    } else {
        a = lo > start ? (lo - start + d - 1) / d : 0;
        b = hi > start ? (hi - start + d - 1) / d : 0;
    }
    *i0 = a;
    *i1 = b < k ? b : k;
}

static inline int bad_geometry(const nd_pool_params *p)
{
    return p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oh <= 0 || p->ow <= 0 ||
           p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 || p->dw <= 0 ||
           !nd_axis_ok(p->h, p->oh, p->kh, p->sh, p->dh, p->pad_t, p->pad_b) ||
           !nd_axis_ok(p->w, p->ow, p->kw, p->sw, p->dw, p->pad_l, p->pad_r) ||
           !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->c, p->oh, p->ow, p->kh, p->kw);
}

/* Same threshold as pool.c: wake the team for ~2^18 tap visits or floats written. */
static inline int par(const nd_pool_params *p)
{
    return p->n * p->c * p->oh * p->ow * p->kh * p->kw > 262144 || p->n * p->c * p->h * p->w > 262144;
}

enum { EXT_MAX, EXT_MIN };

/* (*m, *best) = take ? (v, at) : (*m, *best), branch-free by masks: gcc turns a ?: here back
 * into a jump, and the winner is data-dependent, so a branch mispredicts every few taps. */
static inline void pick(int take, float v, int64_t at, float *m, int64_t *best)
{
    const int64_t k = -(int64_t)take;
    uint32_t mb, vb;
    memcpy(&mb, m, 4);
    memcpy(&vb, &v, 4);
    mb = (vb & (uint32_t)k) | (mb & ~(uint32_t)k);
    memcpy(m, &mb, 4);
    *best = (at & k) | (*best & ~k);
}

/* One plane of Max/MinPool backward: dx = 0, then dy of each window onto its winner.
 * The geometry is copied into locals first: dx is a float store that may alias *p (the build
 * has -fno-strict-aliasing), so reading p->... in the loops reloads it after every store. */
static inline __attribute__((always_inline)) void
extreme_plane(const nd_pool_params *p, const float *x, const float *dy, float *dx, int op)
{
    const int64_t H = p->h, W = p->w, OH = p->oh, OW = p->ow, KH = p->kh, KW = p->kw;
    const int64_t SH = p->sh, SW = p->sw, DH = p->dh, DW = p->dw, PT = p->pad_t, PL = p->pad_l;
    memset(dx, 0, (size_t)(H * W) * sizeof(float));
    for (int64_t oy = 0; oy < OH; oy++) {
        const int64_t ys = oy * SH - PT;
        int64_t i0, i1;
        taps(ys, KH, DH, 0, H, &i0, &i1);
        for (int64_t ox = 0; ox < OW; ox++) {
            const int64_t xs = ox * SW - PL;
            int64_t j0, j1;
            taps(xs, KW, DW, 0, W, &j0, &j1);
            if (i1 <= i0 || j1 <= j0) continue;            /* only padding: refused before C */
            /* Each row's winner by a scan, then the rows' winners by the same rule, in row
             * order: the scan's answer (a later NaN, else the first strict maximum wins), with
             * the rows' scans independent, so they overlap instead of one chain of kh*kw. */
            int64_t best = 0;
            float m = 0.0f;
            for (int64_t i = i0; i < i1; i++) {
                const int64_t r = (ys + i * DH) * W + xs;
                int64_t rb = r + j0 * DW;
                float rm = x[rb];
                for (int64_t j = j0 + 1; j < j1; j++) {
                    const int64_t at = r + j * DW;
                    const float v = x[at];
                    const int take = (op == EXT_MAX ? (v > rm) : (v < rm)) | (v != v);
                    pick(take, v, at, &rm, &rb);
                }
                const int take = (i == i0) | (op == EXT_MAX ? (rm > m) : (rm < m)) | (rm != rm);
                pick(take, rm, rb, &m, &best);
            }
            dx[best] += dy[oy * OW + ox];
        }
    }
}

nd_status nd_maxpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad_geometry(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, isz = p->h * p->w, osz = p->oh * p->ow;
#pragma omp parallel for schedule(dynamic, 1) if (par(p))
    for (int64_t pc = 0; pc < planes; pc++)
        extreme_plane(p, in[0] + pc * isz, in[1] + pc * osz, out + pc * isz, EXT_MAX);
    return ND_OK;
}

nd_status nd_minpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad_geometry(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, isz = p->h * p->w, osz = p->oh * p->ow;
#pragma omp parallel for schedule(dynamic, 1) if (par(p))
    for (int64_t pc = 0; pc < planes; pc++)
        extreme_plane(p, in[0] + pc * isz, in[1] + pc * osz, out + pc * isz, EXT_MIN);
    return ND_OK;
}

/* One plane of AvgPool backward: each window spreads dy / count over its real taps. */
static void avg_plane(const nd_pool_params *p, const float *dy, float *dx)
{
    const int64_t H = p->h, W = p->w;
    memset(dx, 0, (size_t)(H * W) * sizeof(float));
    for (int64_t oy = 0; oy < p->oh; oy++) {
        const int64_t ys = oy * p->sh - p->pad_t;
        int64_t i0, i1, c0, c1;
        taps(ys, p->kh, p->dh, 0, H, &i0, &i1);
        taps(ys, p->kh, p->dh, -p->pad_t, H + p->pad_b, &c0, &c1);
        for (int64_t ox = 0; ox < p->ow; ox++) {
            const int64_t xs = ox * p->sw - p->pad_l;
            int64_t j0, j1, e0, e1;
            taps(xs, p->kw, p->dw, 0, W, &j0, &j1);
            taps(xs, p->kw, p->dw, -p->pad_l, W + p->pad_r, &e0, &e1);
            if (i1 <= i0 || j1 <= j0) continue;
            const int64_t cnt = p->count_include_pad ? (c1 - c0) * (e1 - e0) : (i1 - i0) * (j1 - j0);
            const float g = dy[oy * p->ow + ox] / (float)cnt;
            for (int64_t i = i0; i < i1; i++) {
                float *r = dx + (ys + i * p->dh) * W + xs;
                for (int64_t j = j0; j < j1; j++) r[j * p->dw] += g;
            }
        }
    }
}

nd_status nd_avgpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad_geometry(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, isz = p->h * p->w, osz = p->oh * p->ow;
#pragma omp parallel for schedule(dynamic, 1) if (par(p))
    for (int64_t pc = 0; pc < planes; pc++) avg_plane(p, in[0] + pc * osz, out + pc * isz);
    return ND_OK;
}

static inline int bad_global(const nd_globalpool_params *p)
{
    return p->n <= 0 || p->c <= 0 || p->hw <= 0 || !ND_PROD_OK(p->n, p->c, p->hw);
}

/* dx = dy / hw over the plane (the forward's mean). */
nd_status nd_globalavgpool_bwd_data_f32(const nd_globalpool_params *p, float *out, const float *const *in,
                                        const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad_global(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, hw = p->hw;
    const float *dy = in[0];
#pragma omp parallel for schedule(static) if (planes * hw > 262144)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float g = dy[pc] / (float)hw;
        for (int64_t i = 0; i < hw; i++) out[pc * hw + i] = g;
    }
    return ND_OK;
}

/* dy to the plane's winner (first maximum in memory order, the last NaN if any), 0 elsewhere. */
nd_status nd_globalmaxpool_bwd_data_f32(const nd_globalpool_params *p, float *out, const float *const *in,
                                        const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad_global(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, hw = p->hw;
    const float *x = in[0], *dy = in[1];
#pragma omp parallel for schedule(static) if (planes * hw > 262144)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *xp = x + pc * hw;
        float *dx = out + pc * hw;
        int64_t best = 0;
        float m = xp[0];
        for (int64_t i = 0; i < hw; i++) {
            const float v = xp[i];
            if ((v > m) | (v != v)) { m = v; best = i; }
            dx[i] = 0.0f;
        }
        dx[best] = dy[pc];
    }
    return ND_OK;
}

static inline nd_pool_params pool_of(const nd_stochasticpool_train_params *t)
{
    nd_pool_params p = {t->n, t->c, t->h, t->w, t->oh, t->ow, t->kh, t->kw, t->sh, t->sw,
                        t->dh, t->dw, t->pad_t, t->pad_l, t->pad_b, t->pad_r, 0};
    return p;
}

/* One plane of the sampling forward; `o0` is the plane's first output index (the counter
 * of the random numbers, so a sample depends on (seed, position) only). */
static void sample_plane(const nd_pool_params *p, uint64_t seed, int64_t o0, const float *x, float *y,
                         float *tap)
{
    const int64_t H = p->h, W = p->w;
    for (int64_t oy = 0; oy < p->oh; oy++) {
        const int64_t ys = oy * p->sh - p->pad_t;
        int64_t i0, i1;
        taps(ys, p->kh, p->dh, 0, H, &i0, &i1);
        for (int64_t ox = 0; ox < p->ow; ox++) {
            const int64_t xs = ox * p->sw - p->pad_l, o = oy * p->ow + ox;
            int64_t j0, j1;
            taps(xs, p->kw, p->dw, 0, W, &j0, &j1);
            double sum = 0.0;
            int64_t nan_t = -1, inf_t = -1, pick = -1;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0; j < j1; j++) {
                    const float v = x[(ys + i * p->dh) * W + xs + j * p->dw];
                    if (v != v) { if (nan_t < 0) nan_t = i * p->kw + j; }
                    else if (v == INFINITY) { if (inf_t < 0) inf_t = i * p->kw + j; }
                    else if (v > 0.0f) sum += v;
                }
            if (nan_t >= 0) pick = nan_t;
            else if (inf_t >= 0) pick = inf_t;
            else if (sum > 0.0) {
                const double t = (double)nd_rand_uniform(seed, (uint64_t)(o0 + o)) * sum;
                double run = 0.0;
                int64_t last = -1;
                for (int64_t i = i0; i < i1 && pick < 0; i++)
                    for (int64_t j = j0; j < j1; j++) {
                        const float v = x[(ys + i * p->dh) * W + xs + j * p->dw];
                        if (!(v > 0.0f)) continue;
                        last = i * p->kw + j;
                        run += v;
                        if (run > t) { pick = last; break; }
                    }
                if (pick < 0) pick = last;   /* run == t at the end (u < 1: rounding only) */
            }
            if (pick < 0) {
                y[o] = 0.0f;
                tap[o] = -1.0f;
            } else {
                const int64_t i = pick / p->kw, j = pick % p->kw;
                y[o] = x[(ys + i * p->dh) * W + xs + j * p->dw];
                tap[o] = (float)pick;
            }
        }
    }
}

/* out = y (N,C,OH,OW) then the taps (N,C,OH,OW). */
nd_status nd_stochasticpool_train_f32(const nd_stochasticpool_train_params *t, float *out,
                                      const float *const *in, const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    const nd_pool_params p = pool_of(t);
    if (bad_geometry(&p) || p.kh * p.kw > (1 << 24)) return ND_EINVAL;
    const int64_t planes = p.n * p.c, isz = p.h * p.w, osz = p.oh * p.ow, total = planes * osz;
    const uint64_t seed = t->seed;
#pragma omp parallel for schedule(dynamic, 1) if (par(&p))
    for (int64_t pc = 0; pc < planes; pc++)
        sample_plane(&p, seed, pc * osz, in[0] + pc * isz, out + pc * osz, out + total + pc * osz);
    return ND_OK;
}

/* dx = 0, then each window's dy onto its saved tap (none for -1). A tap outside the window's
 * real cells (not what the forward saved) makes the call fail. */
nd_status nd_stochasticpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad_geometry(p) || p->kh * p->kw > (1 << 24)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, isz = p->h * p->w, osz = p->oh * p->ow;
    const int64_t H = p->h, W = p->w, K = p->kh * p->kw;
    const float *dy = in[0], *tap = in[1];
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) if (par(p))
    for (int64_t pc = 0; pc < planes; pc++) {
        float *dx = out + pc * isz;
        memset(dx, 0, (size_t)isz * sizeof(float));
        for (int64_t o = 0; o < osz; o++) {
            const float t = tap[pc * osz + o];
            if (t == -1.0f) continue;
            if (!(t >= 0.0f && t < (float)K && t == floorf(t))) {
#pragma omp atomic write
                bad = 1;
                continue;
            }
            const int64_t k = (int64_t)t, i = k / p->kw, j = k % p->kw;
            const int64_t r = (o / p->ow) * p->sh - p->pad_t + i * p->dh;
            const int64_t c = (o % p->ow) * p->sw - p->pad_l + j * p->dw;
            if (r < 0 || r >= H || c < 0 || c >= W) {
#pragma omp atomic write
                bad = 1;
                continue;
            }
            dx[r * W + c] += dy[pc * osz + o];
        }
    }
    return bad ? ND_EINVAL : ND_OK;
}
