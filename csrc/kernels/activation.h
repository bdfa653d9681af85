/* activation.h — element-wise activations: ReLU, LeakyReLU, Sigmoid, Tanh.
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

nd_status nd_relu_f32(const nd_relu_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws);
nd_status nd_leakyrelu_f32(const nd_leakyrelu_params *p, float *out, const float *const *in,
                           const float *w, const float *bias, float *ws);
nd_status nd_sigmoid_f32(const nd_sigmoid_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws);
nd_status nd_tanh_f32(const nd_tanh_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws);
#endif
