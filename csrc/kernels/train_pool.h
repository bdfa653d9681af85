/* train_pool.h — training kernels of the pools: backward of MaxPool, MinPool, AvgPool,
 * GlobalAvgPool, GlobalMaxPool, and StochasticPool's sampling forward and its backward.
 * x, dx are (N,C,H,W); y, dy are (N,C,OH,OW) (global pools: (N,C)). The window pools take
 * pool.h's nd_pool_params, exactly as their forward kernels got it.
 *
 *   nd_maxpool_bwd_data_f32 / nd_minpool_bwd_data_f32   in = {x, dy}
 *   nd_avgpool_bwd_data_f32                             in = {dy}
 *   nd_globalavgpool_bwd_data_f32                       in = {dy}       (nd_globalpool_params)
 *   nd_globalmaxpool_bwd_data_f32                       in = {x, dy}    (nd_globalpool_params)
 *   nd_stochasticpool_train_f32     in = {x}; out = y (N,C,OH,OW) then the sampled tap of each
 *                                   window (N,C,OH,OW floats: i*kw + j, -1 when none)
 *   nd_stochasticpool_bwd_data_f32  in = {dy, saved taps}
 */
#ifndef ND_TRAIN_POOL_H
#define ND_TRAIN_POOL_H
#include "nd_common.h"
#include "kernels/pool.h"

/* nd_pool_params plus the step's seed (the session sets a new one every step) */
typedef struct {
    int64_t n, c, h, w;
    int64_t oh, ow;
    int64_t kh, kw, sh, sw;
    int64_t dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;
    uint64_t seed;
} nd_stochasticpool_train_params;

nd_status nd_maxpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws);
nd_status nd_minpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws);
nd_status nd_avgpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws);
nd_status nd_globalavgpool_bwd_data_f32(const nd_globalpool_params *p, float *out, const float *const *in,
                                        const float *w, const float *bias, float *ws);
nd_status nd_globalmaxpool_bwd_data_f32(const nd_globalpool_params *p, float *out, const float *const *in,
                                        const float *w, const float *bias, float *ws);
nd_status nd_stochasticpool_train_f32(const nd_stochasticpool_train_params *p, float *out,
                                      const float *const *in, const float *w, const float *bias, float *ws);
nd_status nd_stochasticpool_bwd_data_f32(const nd_pool_params *p, float *out, const float *const *in,
                                         const float *w, const float *bias, float *ws);
#endif
