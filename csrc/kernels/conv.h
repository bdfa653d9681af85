/* conv.h — 2-D convolution (groups, depthwise, dilation, asymmetric pads, fused act).
 * x is (N,C,H,W), w is (OC,C/groups,KH,KW) — or prepacked, see below — bias is
 * (OC) or NULL, y is (N,OC,OH,OW). act: an nd_act (nd_common.h).
 * residual: in[1] is r (N,OC,OH,OW) and y = act(conv(x) + bias + r) — a ResNet
 * block's Add (+ReLU) fused into its last conv; r may be y itself (the planner puts y in
 * r's buffer when r dies there), except for depthwise convs.
 */
#ifndef ND_CONV_H
#define ND_CONV_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, h, w;          /* input, batch included */
    int64_t oc, oh, ow;          /* output channels and size */
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int64_t groups;
    int32_t act;                 /* nd_act */
    int32_t threads;             /* the workspace was sized for this many threads (>= 1) */
    int32_t w_packed_mr;         /* > 0: w was prepacked by nd_conv_pack_w with this MR */
    int32_t residual;            /* 1: add in[1] before the activation */
    int32_t algo;                /* 0 auto, 1 GEMM Y = W . im2col(X), 2 transposed GEMM
                                  * Y^T = im2col(X)^T . W^T (batch folded; for small OH*OW),
                                  * 3 direct (stride-1 rows, ISAs with conv_row; else as 1).
                                  * 4 Winograd F(4x4,3x3) (3x3, stride 1, no dilation, groups 1;
                                  * else as 0). 5 auto without Winograd (training: the weights, and so
                                  * their Winograd transform, change every call).
                                  * Prepacking follows the choice, so pack with the same algo. */
} nd_conv_params;

nd_status nd_conv_f32(const nd_conv_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws);
int64_t nd_conv_ws_floats(const nd_conv_params *p);

/* Weights prepacked once at plan time into the GEMM's A panels for the ISA in
 * use (nd_gemm_mr()); 0 floats means this conv does not use a GEMM (depthwise). */
int64_t nd_conv_packed_w_floats(const nd_conv_params *p, int32_t mr);
nd_status nd_conv_pack_w(const nd_conv_params *p, float *dst, const float *w, int32_t mr);

/* Which algorithm nd_conv_f32 runs for p (mr > 0: as if w were prepacked with that MR when
 * p->w_packed_mr is 0): 1 GEMM, 2 transposed GEMM, 3 direct, 4 Winograd, 5 pointwise (1x1,
 * no im2col), 6 depthwise, 7 fc-like; -1 for params the kernel rejects. */
int32_t nd_conv_algo(const nd_conv_params *p, int32_t mr);
#endif
