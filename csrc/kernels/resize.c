/* resize.c — Upsample, float32 NCHW, with PyTorch's coordinate rules.
 *
 * nearest:  src = min(floor(dst * scale), in - 1)           ('nearest', not 'nearest-exact')
 * bilinear: src = align_corners ? dst * scale
 *                               : max((dst + 0.5) * scale - 0.5, 0)
 *           i0 = floor(src), i1 = min(i0 + 1, in - 1), l1 = src - i0
 * Coordinates are computed in float like PyTorch's CPU kernel, so the chosen
 * source pixels match it exactly for the usual integer factors.
 * Column taps are recomputed per output pixel: kernels never allocate, and
 * the index arithmetic is cheap next to the four loads. Parallel over planes.
 */
#include "kernels/resize.h"

#include <math.h>

static inline int64_t nearest_src(int64_t dst, float scale, int64_t in)
{
    int64_t s = (int64_t)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

static inline void linear_src(int64_t dst, float scale, int64_t in, int ac,
                              int64_t *i0, int64_t *i1, float *l1)
{
    float s = ac ? (float)dst * scale : ((float)dst + 0.5f) * scale - 0.5f;
    if (s < 0.0f) s = 0.0f;
    int64_t a = (int64_t)s;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a < in - 1 ? a + 1 : a;
    *l1 = s - (float)a;
    if (*l1 > 1.0f) *l1 = 1.0f;
}

nd_status nd_upsample_f32(const nd_upsample_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oh <= 0 || p->ow <= 0)
        return ND_EINVAL;
    if (p->mode != 0 && p->mode != 1) return ND_EUNSUPPORTED;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    const float *x = in[0];
#pragma omp parallel for schedule(static) if (planes * OH * OW > 32768)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *xp = x + pc * H * W;
        float *yp = out + pc * OH * OW;
        if (p->mode == 0) {
            for (int64_t oy = 0; oy < OH; oy++) {
                const float *row = xp + nearest_src(oy, p->scale_h, H) * W;
                for (int64_t ox = 0; ox < OW; ox++) yp[oy * OW + ox] = row[nearest_src(ox, p->scale_w, W)];
            }
        } else {
            for (int64_t oy = 0; oy < OH; oy++) {
                int64_t y0, y1;
                float ly;
                linear_src(oy, p->scale_h, H, p->align_corners, &y0, &y1, &ly);
                const float *r0 = xp + y0 * W, *r1 = xp + y1 * W;
                for (int64_t ox = 0; ox < OW; ox++) {
                    int64_t x0, x1;
                    float lx;
                    linear_src(ox, p->scale_w, W, p->align_corners, &x0, &x1, &lx);
                    yp[oy * OW + ox] = (1.0f - ly) * ((1.0f - lx) * r0[x0] + lx * r0[x1])
                                     + ly * ((1.0f - lx) * r1[x0] + lx * r1[x1]);
                }
            }
        }
    }
    return ND_OK;
}
