/* softmax.h — Softmax and LogSoftmax over the channel axis.
 * x is (N,C,INNER): INNER = H*W for feature maps, 1 for vectors (N,F) with C = F.
 * In-place safe (out may be in[0]).
 */
#ifndef ND_SOFTMAX_H
#define ND_SOFTMAX_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, inner;   /* normalise over c; inner positions are independent */
} nd_softmax_params;

typedef nd_softmax_params nd_logsoftmax_params;

nd_status nd_softmax_f32(const nd_softmax_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws);
nd_status nd_logsoftmax_f32(const nd_logsoftmax_params *p, float *out, const float *const *in,
                            const float *w, const float *bias, float *ws);
#endif
