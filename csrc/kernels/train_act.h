/* train_act.h — backward kernels of the element-wise activations, PReLU, Softmax, LogSoftmax.
 *
 * Every kernel takes its forward op's params struct (the typedefs below), so the backward
 * rule (netdsl/train/bwd_elem.py) passes the forward builder's fields unchanged. Inputs:
 * in[0] = dy (the gradient of the output), in[1] = the forward tensor the derivative is
 * computed from: y (the output) for ReLU, LeakyReLU with slope >= 0, Sigmoid, Tanh, ReLU6,
 * Hardtanh, Softmax, LogSoftmax; x (the input) for the others. Shapes as in the forward:
 * n samples of `size` floats (element-wise), (N, C, HW) for PReLU, (N, C, INNER) normalized
 * over C for the softmaxes. dx may be dy (element-wise kernels; not PReLU's dparams).
 * NaN and the values at the kinks follow PyTorch's backward (see train_act.c).
 */
#ifndef ND_TRAIN_ACT_H
#define ND_TRAIN_ACT_H
#include "nd_common.h"
#include "kernels/activation.h"
#include "kernels/prelu.h"
#include "kernels/softmax.h"

typedef nd_act_params nd_relu_bwd_params;          /* in[1] = y */
typedef nd_act_params nd_leakyrelu_bwd_params;     /* in[1] = y (slope >= 0) or x (any slope) */
typedef nd_act_params nd_sigmoid_bwd_params;       /* in[1] = y */
typedef nd_act_params nd_tanh_bwd_params;          /* in[1] = y */
typedef nd_clip_params nd_clip_bwd_params;         /* Clip (torch.clamp): in[1] = x */
typedef nd_clip_params nd_hardtanh_bwd_params;     /* ReLU6, Hardtanh: in[1] = y */
typedef nd_hardsigmoid_params nd_hardsigmoid_bwd_params;   /* in[1] = x */
typedef nd_actfn_params nd_actfn_bwd_params;       /* HardSwish, SiLU, GELU (erf, tanh), Mish: in[1] = x */
typedef nd_prelu_params nd_prelu_bwd_params;       /* in[1] = x, w = the nw slopes */
typedef nd_softmax_params nd_softmax_bwd_params;   /* in[1] = y */
typedef nd_softmax_params nd_logsoftmax_bwd_params;   /* in[1] = y */

nd_status nd_relu_bwd_data_f32(const nd_relu_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
nd_status nd_leakyrelu_bwd_data_f32(const nd_leakyrelu_bwd_params *p, float *out, const float *const *in,
                                    const float *w, const float *bias, float *ws);
nd_status nd_sigmoid_bwd_data_f32(const nd_sigmoid_bwd_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws);
nd_status nd_tanh_bwd_data_f32(const nd_tanh_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
nd_status nd_clip_bwd_data_f32(const nd_clip_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
nd_status nd_hardtanh_bwd_data_f32(const nd_hardtanh_bwd_params *p, float *out, const float *const *in,
                                   const float *w, const float *bias, float *ws);
nd_status nd_hardsigmoid_bwd_data_f32(const nd_hardsigmoid_bwd_params *p, float *out, const float *const *in,
                                      const float *w, const float *bias, float *ws);
nd_status nd_actfn_bwd_data_f32(const nd_actfn_bwd_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws);
/* dx = x > 0 ? dy : w[c] dy */
nd_status nd_prelu_bwd_data_f32(const nd_prelu_bwd_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws);
/* out = the nw slope gradients: sum over n and hw of (x > 0 ? 0 : x dy), per channel or all
 * together; w is not read; nw == 1 needs ws of c floats (per-channel partial sums, then
 * summed in order) */
nd_status nd_prelu_bwd_params_f32(const nd_prelu_bwd_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws);
nd_status nd_softmax_bwd_data_f32(const nd_softmax_bwd_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws);
nd_status nd_logsoftmax_bwd_data_f32(const nd_logsoftmax_bwd_params *p, float *out, const float *const *in,
                                     const float *w, const float *bias, float *ws);
#endif
