/* train_conv.h — backward kernels of the layers with weights: Conv, ConvTranspose, Local, FC.
 *
 * Shapes as in the forward headers (conv.h, conv_transpose.h, conv_local.h, fc.h), batch n
 * included. Each layer has two kernels with the one nd_common.h signature:
 *   nd_<op>_bwd_data_f32:   out = dx (the input's shape), in[0] = dy, w = the layer's weight;
 *   nd_<op>_bwd_params_f32: out = dW then db (when bias = 1), packed in PyTorch layout,
 *                           in[0] = dy, in[1] = x; w unused.
 * Both write their output whole (no accumulation); bias pointers are ignored.
 * `threads`: the workspace was sized for this many threads (nd_<op>_bwd_*_ws_floats).
 */
#ifndef ND_TRAIN_CONV_H
#define ND_TRAIN_CONV_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, h, w;          /* x, batch included */
    int64_t oc, oh, ow;          /* dy */
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;   /* input padding, as in the forward */
    int64_t groups;
    int32_t bias;                /* 1: dparams ends with db (OC) */
    int32_t threads;
    int32_t algo;                /* dx: 0 auto, 1 a conv of dy with the flipped weights (stride 1,
                                  * pads < the kernel; else as 0), 2 GEMM + col2im, 3 direct
                                  * (depthwise; else as 0). dparams: 0 auto, 3 direct (depthwise; else as 0). */
} nd_conv_bwd_params;

/* ConvTranspose: x (n,c,h,w), dy (n,oc,oh,ow), w (C, OC/groups, KH, KW); pads crop the output. */
typedef struct {
    int64_t n, c, h, w;
    int64_t oc, oh, ow;
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int64_t groups;
    int32_t bias;
    int32_t threads;
} nd_convtranspose_bwd_params;

/* Local: w (OH*OW, OC, C*KH*KW), db (OC, OH, OW). */
typedef struct {
    int64_t n, c, h, w;
    int64_t oc, oh, ow;
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int32_t bias;
    int32_t threads;
} nd_local_bwd_params;

/* FC: x (n, in_features) (any (n, ...) read flat), w (out_features, in_features). */
typedef struct {
    int64_t n, in_features, out_features;
    int32_t bias;
    int32_t threads;
} nd_fc_bwd_params;

nd_status nd_conv_bwd_data_f32(const nd_conv_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
nd_status nd_conv_bwd_params_f32(const nd_conv_bwd_params *p, float *out, const float *const *in,
                                 const float *w, const float *bias, float *ws);
/* the training forward: y = conv(x, w) + b with w = the layer's params block (weight, then
 * bias when p->bias), in[0] = x; the weights are packed into the workspace on every call
 * (they change every step), so the forward gets the prepacked paths (direct, Winograd over
 * enough tiles, the transposed GEMM with packed B), and taps that only read padding are
 * dropped first (as in both backward kernels). p->algo is not read. */
nd_status nd_conv_train_fwd_f32(const nd_conv_bwd_params *p, float *out, const float *const *in, const float *w,
                                const float *bias, float *ws);
int64_t nd_conv_train_fwd_ws_floats(const nd_conv_bwd_params *p);
int64_t nd_conv_bwd_data_ws_floats(const nd_conv_bwd_params *p);
int64_t nd_conv_bwd_params_ws_floats(const nd_conv_bwd_params *p);
/* the path each kernel takes: dx 1 conv of dy, 2 GEMM + col2im, 3 direct depthwise, 4 conv
 * of dy by Winograd (as 1, where nd_conv_f32 takes Winograd for it);
 * dparams 1 im2col GEMM, 2 pointwise GEMM (x read in place), 3 direct depthwise; -1 bad params */
int32_t nd_conv_bwd_data_algo(const nd_conv_bwd_params *p);
int32_t nd_conv_bwd_params_algo(const nd_conv_bwd_params *p);

nd_status nd_convtranspose_bwd_data_f32(const nd_convtranspose_bwd_params *p, float *out,
                                        const float *const *in, const float *w, const float *bias,
                                        float *ws);
nd_status nd_convtranspose_bwd_params_f32(const nd_convtranspose_bwd_params *p, float *out,
                                          const float *const *in, const float *w, const float *bias,
                                          float *ws);
int64_t nd_convtranspose_bwd_data_ws_floats(const nd_convtranspose_bwd_params *p);
int64_t nd_convtranspose_bwd_params_ws_floats(const nd_convtranspose_bwd_params *p);

nd_status nd_local_bwd_data_f32(const nd_local_bwd_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws);
nd_status nd_local_bwd_params_f32(const nd_local_bwd_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws);
int64_t nd_local_bwd_data_ws_floats(const nd_local_bwd_params *p);
int64_t nd_local_bwd_params_ws_floats(const nd_local_bwd_params *p);

nd_status nd_fc_bwd_data_f32(const nd_fc_bwd_params *p, float *out, const float *const *in,
                             const float *w, const float *bias, float *ws);
nd_status nd_fc_bwd_params_f32(const nd_fc_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
int64_t nd_fc_bwd_data_ws_floats(const nd_fc_bwd_params *p);
int64_t nd_fc_bwd_params_ws_floats(const nd_fc_bwd_params *p);
#endif
