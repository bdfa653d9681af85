/* pool.h — sliding-window pools (max, min, average, stochastic) and global pools.
 * x is (N,C,H,W), y is (N,C,OH,OW); global pools write (N,C) (same bytes as (N,C,1,1)).
 * One params struct serves the four window pools; the per-op names are typedefs
 * so every kernel still reads as nd_<op>_f32(const nd_<op>_params *, ...).
 */
#ifndef ND_POOL_H
#define ND_POOL_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, h, w;          /* input, per batch: (C,H,W) */
    int64_t oh, ow;              /* output size (ceil_mode already applied in Python) */
    int64_t kh, kw, sh, sw;      /* kernel (taps), stride */
    int64_t dh, dw;              /* dilation: taps dh rows / dw columns apart (1: a dense window) */
    int64_t pad_t, pad_l, pad_b, pad_r;
    int32_t count_include_pad;   /* AvgPool only: padded cells count in the divisor */
} nd_pool_params;

typedef nd_pool_params nd_maxpool_params;
typedef nd_pool_params nd_minpool_params;
typedef nd_pool_params nd_avgpool_params;
typedef nd_pool_params nd_stochasticpool_params;

typedef struct {
    int64_t n, c, hw;            /* input (N,C,H*W) -> output (N,C) */
} nd_globalpool_params;

typedef nd_globalpool_params nd_globalavgpool_params;
typedef nd_globalpool_params nd_globalmaxpool_params;

nd_status nd_maxpool_f32(const nd_maxpool_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws);
nd_status nd_minpool_f32(const nd_minpool_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws);
nd_status nd_avgpool_f32(const nd_avgpool_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws);
nd_status nd_stochasticpool_f32(const nd_stochasticpool_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws);
nd_status nd_globalavgpool_f32(const nd_globalavgpool_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
nd_status nd_globalmaxpool_f32(const nd_globalmaxpool_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
#endif
