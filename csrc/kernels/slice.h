/* slice.h — Slice: channels [start, stop) of x (N, C, INNER) into out (N, stop-start, INNER). */
#ifndef ND_SLICE_H
#define ND_SLICE_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, inner;     /* input: n samples of c channels of inner values */
    int64_t start, stop;     /* kept channels: start <= ch < stop */
} nd_slice_params;

nd_status nd_slice_f32(const nd_slice_params *p, float *out, const float *const *in,
                       const float *w, const float *bias, float *ws);
#endif
