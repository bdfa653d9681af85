/* fc.h — fully connected layer: y (N,OUT) = x (N,IN) . w^T + bias, then act.
 * x is any (N, ...) tensor read as (N, IN) (C-major flatten), w is (OUT, IN)
 * as in PyTorch's nn.Linear, bias (OUT) or NULL.
 */
#ifndef ND_FC_H
#define ND_FC_H
#include "nd_common.h"

typedef struct {
    int64_t n, in_features, out_features;
    int32_t act;                 /* nd_act (nd_common.h) */
    int32_t threads;             /* the workspace was sized for this many threads (>= 1) */
} nd_fc_params;

nd_status nd_fc_f32(const nd_fc_params *p, float *out, const float *const *in, const float *w,
                    const float *bias, float *ws);
int64_t nd_fc_ws_floats(const nd_fc_params *p);
#endif
