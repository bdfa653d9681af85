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

nd_status nd_upsample_f32(const nd_upsample_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oh <= 0 || p->ow <= 0)
        return ND_EINVAL;
    if (p->mode != 0 && p->mode != 1) return ND_EUNSUPPORTED;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    const int ac = p->align_corners;
    const double rh = axis_scale(H, OH, ac), rw = axis_scale(W, OW, ac);
    const float *x = in[0];
#pragma omp parallel for schedule(static) if (planes * OH * OW > 32768)
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
