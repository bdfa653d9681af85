/* resize.c — Upsample, float32 NCHW, with PyTorch's coordinate rules.
 *
 * nearest:  src = floor(dst * in / out), in exact integer arithmetic (PyTorch
 *           computes it with a float scale, which agrees for integer factors
 *           and can be one pixel off for odd ratios given with size=; the
 *           integer form is the definition, so we keep it).
 * bilinear: src = align_corners ? dst * (in-1)/(out-1)
 *                               : max((dst + 0.5) * in/out - 0.5, 0)
 *           i0 = floor(src), i1 = min(i0 + 1, in - 1), l1 = src - i0.
 * Coordinates are computed in double: a handful of flops per output pixel
 * next to four loads, and the weights then match the float64 oracle to
 * float32 rounding. Column taps are recomputed per row rather than cached:
 * kernels never allocate, and the recomputation is cheap. Parallel over planes.
 * Not done: bicubic, area, nearest-exact, downsampling antialias.
 */
#include "kernels/resize.h"

#include <stdint.h>
#include <string.h>

#include "dispatch.h"

static inline void linear_src(int64_t dst, double scale, int64_t in, int ac,
                              int64_t *i0, int64_t *i1, float *l1)
{
    double s = ac ? (double)dst * scale : ((double)dst + 0.5) * scale - 0.5;
    if (s < 0.0) s = 0.0;
    int64_t a = (int64_t)s;               /* s >= 0: truncation is floor */
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

#define NCOL 2048   /* output rows up to this wide take the tabled paths below */

/* nearest, one plane: src column ix[ox] tabled once per call; an output row whose source
 * row is the previous one's is a copy of that output row (a 2x upsample reads each input
 * row once, not twice). */
static void nearest_plane(float *yp, const float *xp, const int32_t *ix, int64_t H, int64_t W,
                          int64_t OH, int64_t OW)
{
    int64_t prev = -1;
    for (int64_t oy = 0; oy < OH; oy++) {
        const int64_t sy = oy * H / OH;
        float *y = yp + oy * OW;
        if (sy == prev) {
            memcpy(y, y - OW, (size_t)OW * sizeof(float));
            continue;
        }
        prev = sy;
        const float *row = xp + sy * W;
        for (int64_t ox = 0; ox < OW; ox++) y[ox] = row[ix[ox]];
    }
}

static void hrow(float *d, const float *src, const int32_t *x0, const int32_t *x1, const float *lx,
                 const float *lx0, int64_t OW)
{
    for (int64_t ox = 0; ox < OW; ox++) d[ox] = src[x0[ox]] * lx0[ox] + src[x1[ox]] * lx[ox];
}

/* bilinear, one plane: column taps tabled once per call; each source row is interpolated
 * horizontally once into a row buffer (two buffers hold the rows y0, y1 of the current
 * output row and are reused while they stay), then the rows are blended. The float
 * operations per output value are those of the per-pixel formula, in the same order:
 * top = r0[x0](1-lx) + r0[x1]lx, bot likewise, y = top(1-ly) + bot ly. */
static void bilinear_plane(float *yp, const float *xp, const int32_t *x0, const int32_t *x1,
                           const float *lx, const float *lx0, int64_t H, int64_t W, int64_t OH,
                           int64_t OW, double rh, int ac)
{
    float buf[2][NCOL];
    int64_t have[2] = {-1, -1};
    for (int64_t oy = 0; oy < OH; oy++) {
        int64_t y0, y1;
        float ly;
        linear_src(oy, rh, H, ac, &y0, &y1, &ly);
        int s0 = have[0] == y0 ? 0 : have[1] == y0 ? 1 : -1;
        int s1 = have[0] == y1 ? 0 : have[1] == y1 ? 1 : -1;
        if (s0 < 0) {                         /* refill the slot row y1 does not hold */
            s0 = s1 == 0 ? 1 : 0;
            hrow(buf[s0], xp + y0 * W, x0, x1, lx, lx0, OW);
            have[s0] = y0;
        }
        if (s1 < 0) {
            s1 = y1 == y0 ? s0 : s0 ^ 1;
            if (s1 != s0) {
                hrow(buf[s1], xp + y1 * W, x0, x1, lx, lx0, OW);
                have[s1] = y1;
            }
        }
        const float *top = buf[s0], *bot = buf[s1];
        const float wt = 1.0f - ly;
        float *y = yp + oy * OW;
        for (int64_t ox = 0; ox < OW; ox++) y[ox] = top[ox] * wt + bot[ox] * ly;
    }
}

nd_status nd_upsample_f32(const nd_upsample_params *p, float *out, const float *const *in,
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
    const float *x = in[0];
    const int64_t chunk = OH * OW >= 16384 ? 1 : 16384 / (OH * OW);
    if (OW <= NCOL && W <= INT32_MAX) {   /* source columns fit the int32 tables */
        /* the column tables, shared read-only by the threads */
        int32_t c0[NCOL], c1[NCOL];
        float l1[NCOL], l0[NCOL];
        for (int64_t ox = 0; ox < OW; ox++) {
            if (p->mode == 0) {
                c0[ox] = (int32_t)(ox * W / OW);
            } else {
                int64_t a, b;
                linear_src(ox, rw, W, ac, &a, &b, &l1[ox]);
                c0[ox] = (int32_t)a;
                c1[ox] = (int32_t)b;
                l0[ox] = 1.0f - l1[ox];
            }
        }
#pragma omp parallel for schedule(dynamic, chunk) if (planes * OH * OW > 131072)
        for (int64_t pc = 0; pc < planes; pc++) {
            if (p->mode == 0)
                nearest_plane(out + pc * OH * OW, x + pc * H * W, c0, H, W, OH, OW);
            else
                bilinear_plane(out + pc * OH * OW, x + pc * H * W, c0, c1, l1, l0, H, W, OH, OW, rh, ac);
        }
        return ND_OK;
    }
#pragma omp parallel for schedule(dynamic, chunk) if (planes * OH * OW > 131072)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *xp = x + pc * H * W;
        float *yp = out + pc * OH * OW;
        if (p->mode == 0) {
            for (int64_t oy = 0; oy < OH; oy++) {
                const float *row = xp + (oy * H / OH) * W;
                float *y = yp + oy * OW;
                for (int64_t ox = 0; ox < OW; ox++) y[ox] = row[ox * W / OW];
            }
        } else {
            for (int64_t oy = 0; oy < OH; oy++) {
                int64_t y0, y1;
                float ly;
                linear_src(oy, rh, H, ac, &y0, &y1, &ly);
                const float *r0 = xp + y0 * W, *r1 = xp + y1 * W;
                float *y = yp + oy * OW;
                for (int64_t ox = 0; ox < OW; ox++) {
                    int64_t x0, x1;
                    float lx;
                    linear_src(ox, rw, W, ac, &x0, &x1, &lx);
                    float top = r0[x0] * (1.0f - lx) + r0[x1] * lx;
                    float bot = r1[x0] * (1.0f - lx) + r1[x1] * lx;
                    y[ox] = top * (1.0f - ly) + bot * ly;
                }
            }
        }
    }
    return ND_OK;
}
