/* pad.h — Pad (constant, reflect, replicate) and Crop on NCHW.
 * Pad:  x (N,C,H,W) -> y (N,C,H+pad_t+pad_b, W+pad_l+pad_r).
 * Crop: x (N,C,H,W) -> y (N,C,OH,OW) = x[..., off_h:off_h+OH, off_w:off_w+OW];
 *       a second input (the reference whose size is copied) is ignored.
 */
#ifndef ND_PAD_H
#define ND_PAD_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, h, w;
    int64_t pad_t, pad_l, pad_b, pad_r;   /* all >= 0 */
    int32_t mode;                         /* 0 constant, 1 reflect, 2 replicate */
    float value;                          /* constant mode fill */
} nd_pad_params;

typedef struct {
    int64_t n, c, h, w, oh, ow, off_h, off_w;
} nd_crop_params;

nd_status nd_pad_f32(const nd_pad_params *p, float *out, const float *const *in,
                     const float *w, const float *bias, float *ws);
nd_status nd_crop_f32(const nd_crop_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws);
#endif
