/* prelu.h — PReLU: y = x if x > 0 else a·x, with a learned slope per channel or one for all.
 * x, y are (N, C, HW); a vector (N, F) is C = F, HW = 1. w holds nw slopes: nw == C (slope
 * w[c] for channel c) or nw == 1 (w[0] everywhere). bias is unused. In-place safe (out may
 * be in[0]). NaN stays NaN: NaN > 0 is false, and a·NaN is NaN.
 */
#ifndef ND_PRELU_H
#define ND_PRELU_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, hw;    /* n samples of c channels of hw values */
    int64_t nw;          /* slopes in w: c or 1 */
} nd_prelu_params;

nd_status nd_prelu_f32(const nd_prelu_params *p, float *out, const float *const *in,
                       const float *w, const float *bias, float *ws);
#endif
