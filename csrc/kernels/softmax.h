/* softmax.h — Softmax and LogSoftmax over one axis.
 * x is (N,C,INNER), normalised over C: for the channel axis N is the batch and INNER = H*W
 * (1 for vectors (N,F) with C = F); for another axis the builder folds the axes before it
 * into N and those after it into INNER (softmax over W of (B,C,H,W): N = B*C*H, C = W, INNER = 1).
 * In-place safe (out may be in[0]).
 */
#ifndef ND_SOFTMAX_H
#define ND_SOFTMAX_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, inner;   /* normalise over c; the n*inner positions are independent */
} nd_softmax_params;

typedef nd_softmax_params nd_logsoftmax_params;

nd_status nd_softmax_f32(const nd_softmax_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws);
nd_status nd_logsoftmax_f32(const nd_logsoftmax_params *p, float *out, const float *const *in,
                            const float *w, const float *bias, float *ws);
#endif
