/* norm.h — BatchNorm (inference, folded to scale/shift) and LRN (across channels).
 * x is (N,C,HW); for vectors (N,F) use c = F, hw = 1.
 */
#ifndef ND_NORM_H
#define ND_NORM_H
#include "nd_common.h"

/* y = x*scale[c] + shift[c] then the fused activation act (an nd_act): w = scale, bias = shift,
 * precomputed at plan time as scale = weight/sqrt(var+eps), shift = bias - mean*scale.
 * In-place safe. */
typedef struct {
    int64_t n, c, hw;
    int32_t act;           /* fused epilogue, an nd_act (set by a fusion pass) */
} nd_batchnorm_params;

/* PyTorch LocalResponseNorm: y = x / (k + alpha/size * sum_{c' in window} x[c']^2)^beta,
 * window c - size/2 .. c + (size-1)/2 clipped to [0, C). NOT in-place safe. */
typedef struct {
    int64_t n, c, hw, size;
    float alpha, beta, k;
} nd_lrn_params;

nd_status nd_batchnorm_f32(const nd_batchnorm_params *p, float *out, const float *const *in,
                           const float *w, const float *bias, float *ws);
nd_status nd_lrn_f32(const nd_lrn_params *p, float *out, const float *const *in,
                     const float *w, const float *bias, float *ws);
#endif
