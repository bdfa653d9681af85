/* conv_transpose.h — transposed convolution ("deconvolution"), PyTorch semantics.
 * x is (N,C,H,W), w is (C,OC/groups,KH,KW), bias (OC) or NULL, y is (N,OC,OH,OW)
 * where input pixel (iy,ix) feeds output (iy*sh - pad_t + i*dh, ix*sw - pad_l + j*dw);
 * OH/OW (output_padding included) come from the params, cells past them are dropped.
 */
#ifndef ND_CONV_TRANSPOSE_H
#define ND_CONV_TRANSPOSE_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, h, w;          /* input, batch included */
    int64_t oc, oh, ow;          /* output channels and size */
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;   /* cropped from the full output */
    int64_t groups;
    int32_t act;                 /* nd_act */
    int32_t threads;             /* the workspace was sized for this many threads (>= 1) */
} nd_convtranspose_params;

nd_status nd_convtranspose_f32(const nd_convtranspose_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
int64_t nd_convtranspose_ws_floats(const nd_convtranspose_params *p);
#endif
