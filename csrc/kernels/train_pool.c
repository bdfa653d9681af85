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
 * this is the cell whose value the forward wrote; y is not read. extreme_plane is that scan,
 * one window at a time (the reference, and the path for geometries the vector path refuses);
 * the vector path (below it) runs the same scan over a block of windows at once, per ISA.
 * AvgPool: dy / count to every real tap, count as the forward's divisor (count_include_pad:
 * the taps inside the padded extent [-pad, size + pad_end), else the real taps).
 * StochasticPool (training): p_i = a+_i / sum(a+) over the real taps, a+ = max(a, 0), the
 * inference kernel's probability (netdsl/ops/pool.py). One uniform u = nd_rand_uniform(seed,
 * output index) per window; the pick is the first tap whose running sum of a+ (in double,
 * scan order) exceeds u * sum. The saved tap index i*kw + j is exact in float (the planner
 * keeps kh*kw <= 2^24). Windows with no positive cell: y = 0, saved -1, no gradient (y is 0
 * around such an input); a NaN tap: the first NaN is picked (y = NaN, as the inference gives);
 * a +inf tap: the first +inf takes all the probability (y = +inf).
 * Not done here: argmax index outputs (the winner is recomputed), NHWC, SIMD for AvgPool,
 * StochasticPool and the scatters (data-dependent targets; these run once per step, not per
 * inference): only Max/MinPool's winner search is vectorized.
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

/* ------------------------------------------------------------ Max/MinPool, the vector path
 *
 * The same scan, run for many windows at once: lane L of a loop holds one window's running
 * extreme and winning tap number, and each tap (i, j) in scan order is one pass over the
 * lanes (a load, two compares, two selects: the loop vectorizes; in the scalar scan the
 * data-dependent selects were the cost). The lanes are a block of output rows laid end to
 * end, row b of the block at lanes [b*rl, b*rl + ow) (rl >= ow: the lanes past ow compute
 * junk that nobody reads), so that small maps still fill the vectors. For the lanes to be
 * alike, every window must have all kh*kw taps at one stride from its lane: each tap row i
 * of the block is copied into a padded buffer, row b at b*rl*sw, where a padding cell holds
 * a copy of the nearest real cell of its residue class mod the dilation. Along an axis a
 * window's taps are s, s+d, s+2d, ..., all in one class, so that copy is the value of the
 * window's first (last) real tap, and it sits next to it in scan order (a padded row is the
 * whole first or last real row again). A scan over a sequence with an element repeated in
 * place picks the same cell: the first of equal extremes is the first copy, the last NaN
 * the last copy. So the winner's cell, mapped back to a real cell, is the scalar scan's,
 * bit for bit, and padding still never wins. Only the winner is mapped back (in the scatter).
 */

#define PAD_FLOATS 8192    /* the block's padded tap rows, on the stack (32 KB) */
#define LANES 512          /* windows per block */
#define TAPS_MAX 256       /* tap number tables */
#define EDGE_MAX 64        /* padding cells of a padded row */

/* lanes scanned for n windows: a multiple of 16 (no scalar remainder on any vector width),
 * plus one for the strided loads' last group, which the vectorizer peels to a scalar step */
static inline int64_t scan_lanes_for(int64_t n) { return (n + 15) / 16 * 16 + 1; }

/* the real cell whose value padding cell c (any integer) holds: the nearest one in c's
 * residue class mod d, clamped into [0, n) for a cell that only junk lanes read */
static inline int64_t home(int64_t c, int64_t n, int64_t d)
{
    if (c >= 0 && c < n) return c;                     /* the usual case: no divide */
    if (c < 0) c += (-c + d - 1) / d * d;
    else if (c >= n) c -= (c - n + d) / d * d;
    return c < 0 ? 0 : c >= n ? n - 1 : c;
}

/* d[0..n) = s[0..n) by fixed-size copies the compiler inlines (a memcpy call per short row
 * cost more than the rest of the row's work) */
static inline __attribute__((always_inline)) void copy_floats(float *d, const float *s, int64_t n)
{
    for (; n >= 16; n -= 16, d += 16, s += 16) memcpy(d, s, 64);
    if (n & 8) { memcpy(d, s, 32); d += 8; s += 8; }
    if (n & 4) { memcpy(d, s, 16); d += 4; s += 4; }
    if (n & 2) { memcpy(d, s, 8); d += 2; s += 2; }
    if (n & 1) *d = *s;
}

/* the vector path's layout, worked out once per call (read by every thread) */
typedef struct {
    int64_t rl;                  /* lanes per output row; a padded row is rl*sw floats */
    int64_t rows;                /* output rows per block */
    int64_t plane;               /* floats per tap row of a block: what the scanned lanes read */
    int64_t y0, y1, x0, x1;      /* the output rows and columns whose windows have no padding */
    int64_t cw;                  /* a padded row holds input columns [0, cw) at pad_l.. */
    int64_t ne;                  /* .. and ne padding cells: cell edst[k] holds column esrc[k] */
    int32_t edst[EDGE_MAX], esrc[EDGE_MAX];
    int32_t ti[TAPS_MAX], tj[TAPS_MAX];   /* tap number -> (i, j) */
    int64_t off[TAPS_MAX];       /* tap number -> i*dh*w + j*dw */
} vec_geom;

/* 1 when the vector path can take p: every window has a real tap (the scalar path skips one
 * that has none), and a block of at least one output row fits */
static int vec_setup(const nd_pool_params *p, vec_geom *g)
{
    if (p->kh * p->kw > TAPS_MAX) return 0;
    const int64_t span = (p->ow - 1) * p->sw + (p->kw - 1) * p->dw + 1;   /* padded columns read */
    g->rl = (span + p->sw - 1) / p->sw;
    if (g->rl > LANES) return 0;
    g->rows = LANES / g->rl < p->oh ? LANES / g->rl : p->oh;
    for (; g->rows > 0; g->rows--) {
        g->plane = scan_lanes_for(g->rows * g->rl) * p->sw + (p->kw - 1) * p->dw;
        if (p->kh * g->plane <= PAD_FLOATS) break;
    }
    if (g->rows == 0) return 0;
    const int64_t rw = g->rl * p->sw;
    g->cw = p->w < rw - p->pad_l ? p->w : rw - p->pad_l;
    g->ne = 0;
    for (int64_t c = 0; c < rw; c++) {
        if (c >= p->pad_l && c < p->pad_l + g->cw) continue;
        if (g->ne == EDGE_MAX) return 0;
        g->edst[g->ne] = (int32_t)c;
        g->esrc[g->ne++] = (int32_t)home(c - p->pad_l, p->w, p->dw);
    }
    g->y0 = g->x0 = INT64_MAX;
    g->y1 = g->x1 = 0;
    for (int64_t o = 0; o < p->oh; o++) {
        int64_t a, b;
        taps(o * p->sh - p->pad_t, p->kh, p->dh, 0, p->h, &a, &b);
        if (b <= a) return 0;
        if (a == 0 && b == p->kh) {
            g->y0 = g->y0 < o ? g->y0 : o;
            g->y1 = o + 1;
        }
    }
    for (int64_t o = 0; o < p->ow; o++) {
        int64_t a, b;
        taps(o * p->sw - p->pad_l, p->kw, p->dw, 0, p->w, &a, &b);
        if (b <= a) return 0;
        if (a == 0 && b == p->kw) {
            g->x0 = g->x0 < o ? g->x0 : o;
            g->x1 = o + 1;
        }
    }
    for (int64_t t = 0; t < p->kh * p->kw; t++) {
        g->ti[t] = (int32_t)(t / p->kw);
        g->tj[t] = (int32_t)(t % p->kw);
        g->off[t] = g->ti[t] * p->dh * p->w + g->tj[t] * p->dw;
    }
    return 1;
}

/* win[L] = the tap number of lane L's winner, L < n, its taps being pad[i*plane + L*SW + j*DW]:
 * the scalar scan's rule (a strictly larger / smaller value or a NaN takes over). With the
 * taps known at compile time (the common geometries) they are unrolled inside the loop over
 * the lanes, so each lane's extreme stays in a register; otherwise one pass over the lanes
 * per tap, the running extremes in m[]. */
static inline __attribute__((always_inline)) void
scan_lanes(int32_t *restrict win, const float *pad, int64_t plane, int64_t n, int64_t KH, int64_t KW,
           int64_t SW, int64_t DW, int op, int fixed)
{
    if (fixed) {
        for (int64_t o = 0; o < n; o++) {
            const float *s = pad + o * SW;
            float c = s[0];
            int32_t w = 0;
            for (int64_t i = 0; i < KH; i++)
                for (int64_t j = 0; j < KW; j++) {
                    if (i == 0 && j == 0) continue;
                    const float v = s[i * plane + j * DW];
                    const int take = (op == EXT_MAX ? (v > c) : (v < c)) | (v != v);
                    c = take ? v : c;
                    w = take ? (int32_t)(i * KW + j) : w;
                }
            win[o] = w;
        }
        return;
    }
    float m[LANES + 17];
    for (int64_t o = 0; o < n; o++) {
        m[o] = pad[o * SW];
        win[o] = 0;
    }
    for (int64_t i = 0; i < KH; i++)
        for (int64_t j = 0; j < KW; j++) {
            if (i == 0 && j == 0) continue;
            const float *s = pad + i * plane + j * DW;
            const int32_t t = (int32_t)(i * KW + j);
            for (int64_t o = 0; o < n; o++) {
                const float v = s[o * SW], c = m[o];
                const int take = (op == EXT_MAX ? (v > c) : (v < c)) | (v != v);
                m[o] = take ? v : c;
                win[o] = take ? t : win[o];
            }
        }
}

/* dx of the window at output (oy, ox) += g, its winner being tap t: the cell the tap's
 * padded copy came from */
static inline __attribute__((always_inline)) void
put_mapped(float *dx, const nd_pool_params *p, const vec_geom *g, int64_t oy, int64_t ox, int32_t t, float v)
{
    const int64_t r = home(oy * p->sh - p->pad_t + g->ti[t] * p->dh, p->h, p->dh);
    const int64_t c = home(ox * p->sw - p->pad_l + g->tj[t] * p->dw, p->w, p->dw);
    dx[r * p->w + c] += v;
}

/* One plane of Max/MinPool backward by blocks of output rows; geometry as extreme_plane's.
 * The geometry and tables it loops over are copied into locals first: dx is a float store
 * that may alias *p and *g (the build has -fno-strict-aliasing). */
static inline __attribute__((always_inline)) void
vec_plane_body(const nd_pool_params *p, const vec_geom *g, const float *x, const float *dy, float *dx,
               int op, int64_t KH, int64_t KW, int64_t SW, int64_t DW, int fixed)
{
    const int64_t H = p->h, W = p->w, OH = p->oh, OW = p->ow, SH = p->sh, DH = p->dh;
    const int64_t PT = p->pad_t, PL = p->pad_l, RL = g->rl, RW = g->rl * SW, PLANE = g->plane;
    const int64_t ROWS = g->rows, CW = g->cw, NE = g->ne, Y0 = g->y0, Y1 = g->y1;
    const int64_t X0 = g->x0 < OW ? g->x0 : OW, X1 = g->x1 > X0 ? g->x1 : X0;
    int32_t edst[EDGE_MAX], esrc[EDGE_MAX];
    int64_t off[TAPS_MAX];
    for (int64_t k = 0; k < NE; k++) {
        edst[k] = g->edst[k];
        esrc[k] = g->esrc[k];
    }
    for (int64_t t = 0; t < KH * KW; t++) off[t] = g->off[t];
    float pad[PAD_FLOATS];
    int32_t win[LANES + 17];
    memset(dx, 0, (size_t)(H * W) * sizeof(float));
    for (int64_t oy0 = 0; oy0 < OH; oy0 += ROWS) {
        const int64_t nb = OH - oy0 < ROWS ? OH - oy0 : ROWS;
        for (int64_t i = 0; i < KH; i++) {
            float *pl = pad + i * PLANE;
            for (int64_t b = 0; b < nb; b++) {
                const float *xr = x + home((oy0 + b) * SH - PT + i * DH, H, DH) * W;
                float *d = pl + b * RW;
                copy_floats(d + PL, xr, CW);
                for (int64_t k = 0; k < NE; k++) d[edst[k]] = xr[esrc[k]];
            }
            memset(pl + nb * RW, 0, (size_t)(PLANE - nb * RW) * sizeof(float));   /* junk lanes' */
        }
        scan_lanes(win, pad, PLANE, scan_lanes_for(nb * RL), KH, KW, SW, DW, op, fixed);
        for (int64_t b = 0; b < nb; b++) {
            const int64_t oy = oy0 + b;
            const float *dyr = dy + oy * OW;
            const int32_t *wr = win + b * RL;
            const int whole = oy >= Y0 && oy < Y1;   /* rows and columns of whole windows: no mapping */
            const int64_t a = whole ? X0 : OW, e = whole ? X1 : OW;
            float *d = dx + (oy * SH - PT) * W - PL;
            int64_t o = 0;
            for (; o < a; o++) put_mapped(dx, p, g, oy, o, wr[o], dyr[o]);
            for (; o < e; o++) d[o * SW + off[wr[o]]] += dyr[o];
            for (; o < OW; o++) put_mapped(dx, p, g, oy, o, wr[o], dyr[o]);
        }
    }
}

/* the common geometries with constant taps and strides (unrolled taps, strided loads the
 * compiler can vectorize), the rest with run-time ones */
static inline __attribute__((always_inline)) void
vec_plane_any(const nd_pool_params *p, const vec_geom *g, const float *x, const float *dy, float *dx, int op)
{
    const int64_t KH = p->kh, KW = p->kw, SW = p->sw, DW = p->dw;
    if (KH == 3 && KW == 3 && SW == 2 && DW == 1) vec_plane_body(p, g, x, dy, dx, op, 3, 3, 2, 1, 1);
    else if (KH == 2 && KW == 2 && SW == 2 && DW == 1) vec_plane_body(p, g, x, dy, dx, op, 2, 2, 2, 1, 1);
    else if (SW == 1) vec_plane_body(p, g, x, dy, dx, op, KH, KW, 1, DW, 0);
    else vec_plane_body(p, g, x, dy, dx, op, KH, KW, SW, DW, 0);
}

typedef void (*vec_plane_fn)(const nd_pool_params *p, const vec_geom *g, const float *x, const float *dy,
                             float *dx);
#define DEFINE_VEC(suffix, attr)                                                                   \
    attr static void vmax_##suffix(const nd_pool_params *p, const vec_geom *g, const float *x,       \
                                   const float *dy, float *dx) { vec_plane_any(p, g, x, dy, dx, EXT_MAX); } \
    attr static void vmin_##suffix(const nd_pool_params *p, const vec_geom *g, const float *x,       \
                                   const float *dy, float *dx) { vec_plane_any(p, g, x, dy, dx, EXT_MIN); }
ND_EACH_ISA(DEFINE_VEC)

static vec_plane_fn vec_for(int op)
{
#if defined(__x86_64__) || defined(__i386__)
    switch (nd_ops()->level) {
    case ND_ISA_AVX512: return op == EXT_MAX ? vmax_avx512 : vmin_avx512;
    case ND_ISA_AVX2: return op == EXT_MAX ? vmax_avx2 : vmin_avx2;
    default: break;
    }
#endif
    return op == EXT_MAX ? vmax_portable : vmin_portable;
}

static nd_status extreme_run(const nd_pool_params *p, float *out, const float *const *in, int op)
{
    if (bad_geometry(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, isz = p->h * p->w, osz = p->oh * p->ow;
    const float *x = in[0], *dy = in[1];
    vec_geom g;
    if (!vec_setup(p, &g)) {
#pragma omp parallel for schedule(dynamic, 1) if (par(p))
        for (int64_t pc = 0; pc < planes; pc++)
            extreme_plane(p, x + pc * isz, dy + pc * osz, out + pc * isz, op);
        return ND_OK;
    }
    const vec_plane_fn f = vec_for(op);
    const int64_t chunk = planes / 64 > 1 ? planes / 64 : 1;   /* a plane can take ~0.1 us */
#pragma omp parallel for schedule(dynamic, chunk) if (par(p))
    for (int64_t pc = 0; pc < planes; pc++) f(p, &g, x + pc * isz, dy + pc * osz, out + pc * isz);
    return ND_OK;
}

nd_status nd_maxpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return extreme_run(p, out, in, EXT_MAX);
}

nd_status nd_minpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return extreme_run(p, out, in, EXT_MIN);
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
