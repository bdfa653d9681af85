/* activation.c — element-wise activations over a flat float32 buffer.
 *
 * The tensor's shape does not matter: n*size contiguous floats in, the same
 * count out. Each element is read once and written once at the same index,
 * so out == in[0] (in-place) is safe. ReLU/LeakyReLU vectorize at -O3; Sigmoid
 * and Tanh call libm per element (exact to ~1 ulp; they are rare in modern
 * CNNs, so no polynomial approximation here). NaN stays NaN, as in PyTorch.
 * The parallel loop only fans out above ~64K elements: below that, waking the
 * thread team costs more than the work.
 */
#include "kernels/activation.h"

#include <math.h>

#define ACT_PAR_MIN 65536

static inline int bad(const nd_act_params *p) { return p->n <= 0 || p->size <= 0; }

nd_status nd_relu_f32(const nd_relu_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad(p)) return ND_EINVAL;
    const int64_t total = p->n * p->size;
    const float *x = in[0];
#pragma omp parallel for simd schedule(static) if (total > ACT_PAR_MIN)
    for (int64_t i = 0; i < total; i++) out[i] = x[i] < 0.0f ? 0.0f : x[i];
    return ND_OK;
}

nd_status nd_leakyrelu_f32(const nd_leakyrelu_params *p, float *out, const float *const *in,
                           const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad(p)) return ND_EINVAL;
    const int64_t total = p->n * p->size;
    const float *x = in[0];
    const float slope = p->slope;
#pragma omp parallel for simd schedule(static) if (total > ACT_PAR_MIN)
    for (int64_t i = 0; i < total; i++) out[i] = x[i] < 0.0f ? x[i] * slope : x[i];
    return ND_OK;
}

nd_status nd_sigmoid_f32(const nd_sigmoid_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad(p)) return ND_EINVAL;
    const int64_t total = p->n * p->size;
    const float *x = in[0];
    /* exp(-x) overflows to inf for x < -88, giving exactly 0: no special case needed. */
#pragma omp parallel for schedule(static) if (total > ACT_PAR_MIN / 8)
    for (int64_t i = 0; i < total; i++) out[i] = 1.0f / (1.0f + expf(-x[i]));
    return ND_OK;
}

nd_status nd_tanh_f32(const nd_tanh_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad(p)) return ND_EINVAL;
    const int64_t total = p->n * p->size;
    const float *x = in[0];
#pragma omp parallel for schedule(static) if (total > ACT_PAR_MIN / 8)
    for (int64_t i = 0; i < total; i++) out[i] = tanhf(x[i]);
    return ND_OK;
}
