/* conv_local.h — locally connected layer: a convolution with unshared weights.
 * x is (N,C,H,W), w is (OH*OW, OC, C*KH*KW) (k ordered c, i, j), bias (OC,OH,OW)
 * or NULL, y is (N,OC,OH,OW).
 */
#ifndef ND_CONV_LOCAL_H
#define ND_CONV_LOCAL_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, h, w;          /* input, batch included */
    int64_t oc, oh, ow;
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int32_t act;                 /* nd_act */
    int32_t threads;             /* the workspace was sized for this many threads (>= 1) */
} nd_local_params;

nd_status nd_local_f32(const nd_local_params *p, float *out, const float *const *in,
                       const float *w, const float *bias, float *ws);
int64_t nd_local_ws_floats(const nd_local_params *p);
#endif
