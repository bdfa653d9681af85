/* pad.c — Pad and Crop, float32 NCHW: pure data movement.
 *
 * Pad writes each output row as [left border | memcpy of the source row |
 * right border]; rows above/below the input come from a source row chosen by
 * the mode (reflect: mirror without repeating the edge, as numpy 'reflect'
 * and PyTorch; replicate: clamp to the edge) or are filled with `value`.
 * Crop is one memcpy per output row. Both parallel over the N*C planes, handed out in
 * dynamic chunks of ~16K floats (a thread on a busy core takes fewer).
 * Memory safety is the one thing checked here: reflect needs pad < size, and
 * a crop window must lie inside the input (ND_EINVAL otherwise).
 */
#include "kernels/pad.h"

#include <string.h>

#include "dispatch.h"
#include "nd_pad.h"


nd_status nd_pad_f32(const nd_pad_params *p, float *out, const float *const *in,
                     const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    const nd_status st = pad_check(p);
    if (st != ND_OK) return st;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w;
    const int64_t OH = H + p->pad_t + p->pad_b, OW = W + p->pad_l + p->pad_r;
    const int64_t L = p->pad_l, R = p->pad_r;
    const int mode = p->mode;
    const float v = p->value;
    const int64_t chunk = OH * OW >= 16384 ? 1 : 16384 / (OH * OW);   /* ~16K floats per grab */
    const float *x = in[0];
#pragma omp parallel for schedule(dynamic, chunk) if (planes * OH * OW > 131072)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *xp = x + pc * H * W;
        float *yp = out + pc * OH * OW;
        for (int64_t oy = 0; oy < OH; oy++) {
            float *y = yp + oy * OW;
            const int64_t sy = src_index(oy - p->pad_t, H, mode);
            if (sy < 0) {
                for (int64_t j = 0; j < OW; j++) y[j] = v;
                continue;
            }
            const float *r = xp + sy * W;
            for (int64_t j = 0; j < L; j++) {
                int64_t sx = src_index(j - L, W, mode);
                y[j] = sx < 0 ? v : r[sx];
            }
            memcpy(y + L, r, (size_t)W * sizeof(float));
            for (int64_t j = 0; j < R; j++) {
                int64_t sx = src_index(W + j, W, mode);
                y[L + W + j] = sx < 0 ? v : r[sx];
            }
        }
    }
    return ND_OK;
}

nd_status nd_crop_f32(const nd_crop_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (crop_bad(p)) return ND_EINVAL;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    const int64_t chunk = OH * OW >= 16384 ? 1 : 16384 / (OH * OW);
    const float *x = in[0];
#pragma omp parallel for schedule(dynamic, chunk) if (planes * OH * OW > 262144)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *xp = x + pc * H * W + p->off_h * W + p->off_w;
        float *yp = out + pc * OH * OW;
        for (int64_t oy = 0; oy < OH; oy++)
            memcpy(yp + oy * OW, xp + oy * W, (size_t)OW * sizeof(float));
    }
    return ND_OK;
}
