/* resize.h — Upsample (PyTorch F.interpolate, nearest and bilinear) on NCHW.
 * x is (N,C,H,W), y is (N,C,OH,OW).
 */
#ifndef ND_RESIZE_H
#define ND_RESIZE_H
#include "nd_common.h"

/* mode: 0 nearest, 1 bilinear; align_corners: bilinear only. The coordinate scale is
 * derived from the sizes (in/out, or (in-1)/(out-1) with align_corners), which equals
 * PyTorch's 1/scale_factor for the integer factors the language allows. */
typedef struct {
    int64_t n, c, h, w, oh, ow;
    int32_t mode, align_corners;
} nd_upsample_params;

nd_status nd_upsample_f32(const nd_upsample_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws);
#endif
