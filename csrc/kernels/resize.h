/* resize.h — Upsample (PyTorch F.interpolate, nearest and bilinear) on NCHW.
 * x is (N,C,H,W), y is (N,C,OH,OW).
 */
#ifndef ND_RESIZE_H
#define ND_RESIZE_H
#include "nd_common.h"

/* mode: 0 nearest, 1 bilinear. scale_h/scale_w: source pixels per output pixel, as
 * PyTorch computes it: 1/scale_factor when a scale factor was given, else H/OH
 * (with align_corners: (H-1)/(OH-1), 0 when OH == 1). Computed in Python. */
typedef struct {
    int64_t n, c, h, w, oh, ow;
    int32_t mode, align_corners;
    float scale_h, scale_w;
} nd_upsample_params;

nd_status nd_upsample_f32(const nd_upsample_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws);
#endif
