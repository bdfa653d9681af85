/* activation.h — element-wise activations: ReLU, LeakyReLU, Sigmoid, Tanh; Clip (ReLU6,
 * Hardtanh), HardSigmoid; HardSwish, SiLU, GELU, Mish (nd_actfn_f32, by nd_act code).
 * Any shape: `size` elements per sample, n samples. In-place safe (out may be in[0]).
 */
#ifndef ND_ACTIVATION_H
#define ND_ACTIVATION_H
#include "nd_common.h"

typedef struct {
    int64_t n, size;     /* n samples of `size` floats each */
    float slope;         /* LeakyReLU negative slope; ignored by the others */
} nd_act_params;

typedef nd_act_params nd_relu_params;
typedef nd_act_params nd_leakyrelu_params;
typedef nd_act_params nd_sigmoid_params;
typedef nd_act_params nd_tanh_params;

/* Clip / ReLU6 / Hardtanh: y = min(max(x, lo), hi) (NaN stays NaN; lo > hi gives hi, as
 * torch.clamp); +-inf bounds are no bound */
typedef struct {
    int64_t n, size;
    float lo, hi;
} nd_clip_params;

/* HardSigmoid: y = min(max(alpha x + beta, 0), 1); alpha = 1/6, beta = 1/2 computes
 * PyTorch's relu6(x + 3) / 6 (the fused ND_ACT_HARDSIGMOID) */
typedef struct {
    int64_t n, size;
    float alpha, beta;
} nd_hardsigmoid_params;

/* HardSwish, SiLU, GELU (erf or tanh form), Mish: y = act(x) for act one of ND_ACT_HARDSWISH,
 * ND_ACT_SILU, ND_ACT_GELU, ND_ACT_GELU_TANH, ND_ACT_MISH (or any other pass act): the
 * fused epilogues' own code (dispatch.h nd_act_inplace), so standalone and fused agree */
typedef struct {
    int64_t n, size;
    int32_t act;
} nd_actfn_params;

nd_status nd_clip_f32(const nd_clip_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws);
nd_status nd_hardsigmoid_f32(const nd_hardsigmoid_params *p, float *out, const float *const *in,
                             const float *w, const float *bias, float *ws);
nd_status nd_actfn_f32(const nd_actfn_params *p, float *out, const float *const *in,
                       const float *w, const float *bias, float *ws);

nd_status nd_relu_f32(const nd_relu_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws);
nd_status nd_leakyrelu_f32(const nd_leakyrelu_params *p, float *out, const float *const *in,
                           const float *w, const float *bias, float *ws);
nd_status nd_sigmoid_f32(const nd_sigmoid_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws);
nd_status nd_tanh_f32(const nd_tanh_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws);
#endif
