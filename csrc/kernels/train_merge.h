/* train_merge.h — backward kernels of the merges and the channel slice: Add, Mul (any number
 * of inputs, per-channel / per-sample operands), Concat (any axis), Slice; and the zero
 * gradient of an input that only gives a size (Crop's second input).
 * in[0] = dy in every kernel; Mul's also reads the other inputs (see nd_eltwise_bwd_params).
 */
#ifndef ND_TRAIN_MERGE_H
#define ND_TRAIN_MERGE_H
#include "nd_common.h"
#include "kernels/slice.h"

/* The gradient of input `wrt` of Add / Mul with output (N, C, HW) (vectors: C = F, HW = 1).
 * bcast[i] as the forward's: 0 input i is (N, C, HW), 1 one value per channel (N, C),
 * 2 one per sample (N,). dx has input wrt's shape: dy (times the product of the other
 * inputs, Mul), summed over the axes input wrt is broadcast along. Mul's in[1 ..
 * ninputs-1] are the other inputs x_j, j != wrt, in increasing j; Add reads only dy. */
typedef struct {
    int64_t n, c, hw, ninputs, wrt;
    int32_t bcast[128];
} nd_eltwise_bwd_params;

typedef nd_eltwise_bwd_params nd_add_bwd_params;
typedef nd_eltwise_bwd_params nd_mul_bwd_params;

/* Concat: dy is (N, total), input i's gradient (N, inner) = dy[:, off : off + inner]
 * (N folds the batch and the axes before the joined one, as the forward's params). */
typedef struct {
    int64_t n, total, off, inner;
} nd_concat_bwd_params;

/* Slice: dx (N, C, INNER) is dy on channels [start, stop), 0 on the others */
typedef nd_slice_params nd_slice_bwd_params;

/* out = n*size zeros: the gradient of an input the output does not depend on */
typedef struct {
    int64_t n, size;
} nd_zero_bwd_params;

nd_status nd_add_bwd_data_f32(const nd_add_bwd_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws);
nd_status nd_mul_bwd_data_f32(const nd_mul_bwd_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws);
nd_status nd_concat_bwd_data_f32(const nd_concat_bwd_params *p, float *out, const float *const *in,
                                 const float *w, const float *bias, float *ws);
nd_status nd_slice_bwd_data_f32(const nd_slice_bwd_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws);
nd_status nd_zero_bwd_f32(const nd_zero_bwd_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws);
#endif
