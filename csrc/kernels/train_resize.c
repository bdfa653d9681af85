/* train_resize.c — backward of Upsample, Pad and Crop, float32 NCHW: the adjoints.
 *
 * dy is the forward output (N,C,OH,OW), dx the forward input (N,C,H,W). Each forward output
 * pixel is a weighted sum of input pixels, so dx[i] = sum over the outputs o that read i of
 * weight(o, i) dy[o]; every dx value is written (0 where no output reads it).
 *   Upsample nearest: o reads one pixel, src = floor(dst * in / out) per axis (integer
 *     arithmetic, as resize.c); bilinear: four pixels with weights (1-ly)(1-lx), (1-ly)lx,
 *     ly(1-lx), ly lx, the coordinates computed exactly as resize.c (in double). A zero
 *     weight still multiplies dy (0 * NaN is NaN), as PyTorch's upsample_bilinear2d_backward.
 *   Pad: the interior of dy is copied into dx, then (reflect, replicate) every border pixel
 *     is added to the pixel it was copied from; constant borders have no source.
 *   Crop: dx is dy inside the window and 0 outside.
 * Upsample gathers: the outputs that read input row i (column j) are a contiguous range,
 * since the taps never decrease, so each input row first sums its source rows times their
 * row weights (whole-row vector multiply-adds), then each pixel sums its source columns
 * times their column weights (bilinear: sum (1 - ly) (1 - lx) dy + ...). No scatter, each dx
 * value written once: the gradient costs about what the forward does. Maps wider or taller
 * than 1023 take a scatter form instead (per output row, runs of equal column taps summed in
 * a register, then added to the one or two input rows). Sums are float32 (at most
 * ceil(OH/H) * ceil(OW/W) terms per pixel, 4x that bilinear; Pad: at most 4). Planes are
 * independent: threads over them.
 * Not here: the other interpolation modes (resize.c has none).
 */
#include "kernels/train_resize.h"

#include <string.h>

#include "dispatch.h"
#include "nd_pad.h"

#define NCOL 2048

/* resize.c's coordinate rule, unchanged (both files must agree; the oracle tests check) */
static inline void linear_src(int64_t dst, double scale, int64_t in, int ac, int64_t *i0, int64_t *i1, float *l1)
{
    double s = ac ? (double)dst * scale : ((double)dst + 0.5) * scale - 0.5;
    if (s < 0.0) s = 0.0;
    int64_t a = (int64_t)s;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a < in - 1 ? a + 1 : a;
    *l1 = (float)(s - (double)a);
}

static inline double axis_scale(int64_t in, int64_t out, int ac)
{
    if (ac) return out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0;
    return (double)in / (double)out;
}

/* the column taps of one axis: tabled (c0 != NULL) or computed per column */
typedef struct {
    const int32_t *c0, *c1;
    const float *l1;
    int64_t w, ow;
    double rw;
    int ac, mode;
} cols;

static inline void col_tap(const cols *T, int64_t ox, int64_t *x0, int64_t *x1, float *lx)
{
    if (T->c0) {
        *x0 = T->c0[ox];
        *x1 = T->mode ? T->c1[ox] : *x0;
        *lx = T->mode ? T->l1[ox] : 0.0f;
    } else if (T->mode == 0) {
        *x0 = *x1 = ox * T->w / T->ow;
        *lx = 0.0f;
    } else {
        linear_src(ox, T->rw, T->w, T->ac, x0, x1, lx);
    }
}

/* one output row g[0..OW) into input rows r0 (weight a0) and r1 (weight a1, or NULL): per
 * stream of taps (nearest: one; bilinear: the left taps with 1 - lx, the right ones with lx)
 * the taps never decrease along the row, so each run of equal taps is summed in a register
 * and added to the two rows once: no chain of stores and reloads of one cell */
static void row_adj(float *r0, float a0, float *r1, float a1, const float *g, const cols *T)
{
    for (int right = 0; right < (T->mode ? 2 : 1); right++) {
        int64_t cur = -1;
        float s = 0.0f;
        for (int64_t ox = 0; ox < T->ow; ox++) {
            int64_t x0, x1;
            float lx;
            col_tap(T, ox, &x0, &x1, &lx);
            const int64_t c = right ? x1 : x0;
            if (c != cur) {
                if (cur >= 0) {
                    r0[cur] += a0 * s;
                    if (r1) r1[cur] += a1 * s;
                }
                cur = c;
                s = 0.0f;
            }
            s += T->mode ? g[ox] * (right ? lx : 1.0f - lx) : g[ox];
        }
        r0[cur] += a0 * s;
        if (r1) r1[cur] += a1 * s;
    }
}

static void upsample_plane(float *xp, const float *gp, const nd_upsample_bwd_params *p, const cols *T, double rh)
{
    const int64_t H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    memset(xp, 0, (size_t)(H * W) * sizeof(float));
    for (int64_t oy = 0; oy < OH; oy++) {
        if (p->mode == 0) {
            row_adj(xp + (oy * H / OH) * W, 1.0f, NULL, 0.0f, gp + oy * OW, T);
            continue;
        }
        int64_t y0, y1;
        float ly;
        linear_src(oy, rh, H, p->align_corners, &y0, &y1, &ly);
        row_adj(xp + y0 * W, 1.0f - ly, xp + y1 * W, ly, gp + oy * OW, T);
    }
}

/* The gather form (every size < GCOL, the usual case). Along each axis the outputs
 * whose left (right) tap is input i form the range [st[i], st[i+1]) (the taps never
 * decrease), tabled once per call. Per input row iy: acc = sum of the output rows with a tap
 * at iy times their row weight (whole-row multiply-adds, vectorized), then each input pixel
 * sums the acc columns with a tap at it times their column weight. Every dx value is
 * written once, by the one thread that owns its plane; nothing is scattered. */
#define GCOL 1024   /* the gather tables: 40 KB on the calling thread's stack */

typedef struct {
    int32_t y0[GCOL], y1[GCOL], x0[GCOL], x1[GCOL];    /* taps per output row / column */
    float ly[GCOL], lx[GCOL];                          /* weight of the right tap */
    int32_t r0[GCOL + 1], r1[GCOL + 1], c0[GCOL + 1], c1[GCOL + 1];   /* ranges per input index */
} gather_tabs;

static void tap_ranges(int32_t *st, const int32_t *tap, int64_t n_out, int64_t n_in)
{
    int64_t o = 0;
    for (int64_t i = 0; i <= n_in; i++) {
        while (o < n_out && tap[o] < i) o++;
        st[i] = (int32_t)o;
    }
}

static void axis_taps(int32_t *t0, int32_t *t1, float *l1, int64_t n_out, int64_t n_in, double r, int ac, int mode)
{
    for (int64_t o = 0; o < n_out; o++) {
        if (mode == 0) {
            t0[o] = t1[o] = (int32_t)(o * n_in / n_out);
            l1[o] = 0.0f;
        } else {
            int64_t a, b;
            linear_src(o, r, n_in, ac, &a, &b, &l1[o]);
            t0[o] = (int32_t)a;
            t1[o] = (int32_t)b;
        }
    }
}

static void upsample_plane_gather(float *xp, const float *gp, const nd_upsample_bwd_params *p, const gather_tabs *T)
{
    const int64_t H = p->h, W = p->w, OW = p->ow;
    float acc[GCOL];
    for (int64_t iy = 0; iy < H; iy++) {
        for (int64_t j = 0; j < OW; j++) acc[j] = 0.0f;
        for (int64_t oy = T->r0[iy]; oy < T->r0[iy + 1]; oy++) {
            const float *g = gp + oy * OW;
            if (p->mode == 0) {
                for (int64_t j = 0; j < OW; j++) acc[j] += g[j];
            } else {
                const float wt = 1.0f - T->ly[oy];
                for (int64_t j = 0; j < OW; j++) acc[j] += wt * g[j];
            }
        }
        if (p->mode != 0)
            for (int64_t oy = T->r1[iy]; oy < T->r1[iy + 1]; oy++) {
                const float *g = gp + oy * OW, wb = T->ly[oy];
                for (int64_t j = 0; j < OW; j++) acc[j] += wb * g[j];
            }
        float *xr = xp + iy * W;
        for (int64_t ix = 0; ix < W; ix++) {
            float s = 0.0f;
            if (p->mode == 0) {
                for (int64_t ox = T->c0[ix]; ox < T->c0[ix + 1]; ox++) s += acc[ox];
            } else {
                for (int64_t ox = T->c0[ix]; ox < T->c0[ix + 1]; ox++) s += acc[ox] * (1.0f - T->lx[ox]);
                for (int64_t ox = T->c1[ix]; ox < T->c1[ix + 1]; ox++) s += acc[ox] * T->lx[ox];
            }
            xr[ix] = s;
        }
    }
}

nd_status nd_upsample_bwd_data_f32(const nd_upsample_bwd_params *p, float *out, const float *const *in,
                                   const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oh <= 0 || p->ow <= 0 ||
        !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->c, p->oh, p->ow) ||
        !ND_PROD_OK(p->oh, p->h) || !ND_PROD_OK(p->ow, p->w))
        return ND_EINVAL;
    if (p->mode != 0 && p->mode != 1) return ND_EUNSUPPORTED;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    const int ac = p->align_corners;
    const double rh = axis_scale(H, OH, ac), rw = axis_scale(W, OW, ac);
    const int64_t chunk = OH * OW >= 16384 ? 1 : 16384 / (OH * OW);
    const float *g = in[0];
    if (H < GCOL && W < GCOL && OH < GCOL && OW < GCOL) {
        gather_tabs T;
        axis_taps(T.y0, T.y1, T.ly, OH, H, rh, ac, p->mode);
        axis_taps(T.x0, T.x1, T.lx, OW, W, rw, ac, p->mode);
        tap_ranges(T.r0, T.y0, OH, H);
        tap_ranges(T.r1, T.y1, OH, H);
        tap_ranges(T.c0, T.x0, OW, W);
        tap_ranges(T.c1, T.x1, OW, W);
        const gather_tabs *tp = &T;
#pragma omp parallel for schedule(dynamic, chunk) if (planes * OH * OW > 131072)
        for (int64_t pc = 0; pc < planes; pc++) upsample_plane_gather(out + pc * H * W, g + pc * OH * OW, p, tp);
        return ND_OK;
    }
    /* larger maps: the scatter form, columns tabled while they fit */
    const int tabled = OW <= NCOL && W <= INT32_MAX;
    int32_t c0[NCOL], c1[NCOL];
    float l1[NCOL];
    if (tabled) {
        for (int64_t ox = 0; ox < OW; ox++) {
            int64_t a = ox * W / OW, b = a;
            l1[ox] = 0.0f;
            if (p->mode != 0) linear_src(ox, rw, W, ac, &a, &b, &l1[ox]);
            c0[ox] = (int32_t)a;
            c1[ox] = (int32_t)b;
        }
    }
    const cols C = {tabled ? c0 : NULL, tabled ? c1 : NULL, tabled ? l1 : NULL, W, OW, rw, ac, p->mode};
#pragma omp parallel for schedule(dynamic, chunk) if (planes * OH * OW > 131072)
    for (int64_t pc = 0; pc < planes; pc++) upsample_plane(out + pc * H * W, g + pc * OH * OW, p, &C, rh);
    return ND_OK;
}


nd_status nd_pad_bwd_data_f32(const nd_pad_bwd_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    const nd_status st = pad_check(p);
    if (st != ND_OK) return st;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, T = p->pad_t, L = p->pad_l, R = p->pad_r;
    const int64_t OH = H + T + p->pad_b, OW = W + L + R;
    const int mode = p->mode;
    const int64_t chunk = OH * OW >= 16384 ? 1 : 16384 / (OH * OW);
    const float *g = in[0];
#pragma omp parallel for schedule(dynamic, chunk) if (planes * OH * OW > 131072)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *gp = g + pc * OH * OW;
        float *xp = out + pc * H * W;
        for (int64_t iy = 0; iy < H; iy++)
            memcpy(xp + iy * W, gp + (iy + T) * OW + L, (size_t)W * sizeof(float));
        if (mode == PAD_CONSTANT) continue;
        for (int64_t oy = 0; oy < OH; oy++) {
            const float *gr = gp + oy * OW;
            float *xr = xp + src_index(oy - T, H, mode) * W;
            if (oy < T || oy >= T + H) {      /* a border row: all of it folds back */
                for (int64_t ox = 0; ox < OW; ox++) xr[src_index(ox - L, W, mode)] += gr[ox];
            } else {                          /* an interior row: its left and right borders */
                for (int64_t j = 0; j < L; j++) xr[src_index(j - L, W, mode)] += gr[j];
                for (int64_t j = 0; j < R; j++) xr[src_index(W + j, W, mode)] += gr[L + W + j];
            }
        }
    }
    return ND_OK;
}

nd_status nd_crop_bwd_data_f32(const nd_crop_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (crop_bad(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    const int64_t chunk = H * W >= 16384 ? 1 : 16384 / (H * W);
    const float *g = in[0];
#pragma omp parallel for schedule(dynamic, chunk) if (planes * H * W > 262144)
    for (int64_t pc = 0; pc < planes; pc++) {
        float *xp = out + pc * H * W;
        memset(xp, 0, (size_t)(H * W) * sizeof(float));
        float *win = xp + p->off_h * W + p->off_w;
        for (int64_t oy = 0; oy < OH; oy++)
            memcpy(win + oy * W, g + pc * OH * OW + oy * OW, (size_t)OW * sizeof(float));
    }
    return ND_OK;
}
