/* merge.h — ops with several inputs: Concat (any axis), Add, Mul (element-wise).
 * `in` holds `ninputs` pointers (2 .. ND_MERGE_MAX_INPUTS = 128; cdef allows no macro
 * in the array bound, so the number is written out).
 */
#ifndef ND_MERGE_H
#define ND_MERGE_H
#include "nd_common.h"

#define ND_MERGE_MAX_INPUTS 128

/* Concat: input i is (N, inner[i]), the output (N, sum inner[i]). Along the channels N is
 * the batch and inner[i] = C_i*H*W (or F_i for vectors); along another axis N folds the
 * batch and the axes before it and inner[i] the rest (axis 2 of (C,H_i,W): N = batch*C,
 * inner[i] = H_i*W). */
typedef struct {
    int64_t n, ninputs;
    int64_t inner[128];
} nd_concat_params;

/* Add / Mul: output (N,C,HW). Input i is full (N,C,HW) when bcast[i] == 0, or one value
 * per channel (N,C,1,1) when bcast[i] == 1, or one per sample (N,1,1,1) when bcast[i] == 2.
 * Vectors (N,F) are c = F, hw = 1. act: the fused epilogue, an nd_act. Safe with out == any full input. */
typedef struct {
    int64_t n, c, hw, ninputs;
    int32_t act;
    int32_t bcast[128];
} nd_eltwise_params;

typedef nd_eltwise_params nd_add_params;
typedef nd_eltwise_params nd_mul_params;

nd_status nd_concat_f32(const nd_concat_params *p, float *out, const float *const *in,
                        const float *w, const float *bias, float *ws);
nd_status nd_add_f32(const nd_add_params *p, float *out, const float *const *in,
                     const float *w, const float *bias, float *ws);
nd_status nd_mul_f32(const nd_mul_params *p, float *out, const float *const *in,
                     const float *w, const float *bias, float *ws);
#endif
