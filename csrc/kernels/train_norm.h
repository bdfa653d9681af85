/* train_norm.h — training kernels of BatchNorm, LRN and Dropout.
 * x, y, dx, dy are (N,C,HW) (BatchNorm on vectors (N,F): c = F, hw = 1; Dropout: any
 * shape, (N,size)). "saved" is what the training forward wrote after y.
 *
 *   nd_batchnorm_train_f32        in = {x, buffers}, w = {gamma[C], beta[C]};
 *                                 out = y then saved = {mean[C], inv_std[C]}; updates the
 *                                 buffers {running_mean[C], running_var[C]} in place
 *   nd_batchnorm_bwd_data_f32     in = {x, dy, saved}, w = {gamma, beta}; out = dx
 *   nd_batchnorm_bwd_params_f32   in = {x, dy, saved}; out = {dgamma[C], dbeta[C]}
 *   nd_lrn_bwd_data_f32           in = {x, dy} (norm.h's nd_lrn_params); out = dx
 *   nd_dropout_train_f32          in = {x}; out = y then saved = the scale of each value
 *                                 (0 or 1/(1-p)), (N,size)
 *   nd_dropout_bwd_data_f32       in = {dy, saved}; out = dx = dy * saved
 */
#ifndef ND_TRAIN_NORM_H
#define ND_TRAIN_NORM_H
#include "nd_common.h"
#include "kernels/norm.h"

typedef struct {
    int64_t n, c, hw;
    double eps;            /* added to the batch variance before the square root */
    double momentum;       /* running = (1 - momentum) running + momentum batch (PyTorch's rule) */
} nd_batchnorm_train_params;

typedef struct {
    int64_t n, c, hw;
} nd_batchnorm_bwd_params;

typedef struct {
    int64_t n, size;       /* batch, floats per sample */
    float p;               /* drop probability, 0 <= p < 1 */
    uint64_t seed;         /* set by the session every step */
} nd_dropout_train_params;

typedef struct {
    int64_t n, size;
} nd_dropout_bwd_params;

nd_status nd_batchnorm_train_f32(const nd_batchnorm_train_params *p, float *out, const float *const *in,
                                 const float *w, const float *bias, float *ws);
nd_status nd_batchnorm_bwd_data_f32(const nd_batchnorm_bwd_params *p, float *out, const float *const *in,
                                    const float *w, const float *bias, float *ws);
nd_status nd_batchnorm_bwd_params_f32(const nd_batchnorm_bwd_params *p, float *out, const float *const *in,
                                      const float *w, const float *bias, float *ws);
nd_status nd_lrn_bwd_data_f32(const nd_lrn_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws);
nd_status nd_dropout_train_f32(const nd_dropout_train_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
nd_status nd_dropout_bwd_data_f32(const nd_dropout_bwd_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws);
#endif
