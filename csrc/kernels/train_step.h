/* train_step.h — the training step's own kernels (netdsl/train/plan.py): the finite guard.
 *
 * nd_finite_guard_f32 reads in[0][0 .. count) and returns ND_ENONFINITE when any value is
 * NaN or inf, ND_OK otherwise; it writes nothing. The training plan puts one after the loss
 * (count 1) and one after the backward pass (the whole gradient region), both before the
 * optimizer: a step whose loss or gradients went non-finite stops there, the parameters and
 * optimizer state untouched, and Python finds the first layer whose output went bad.
 */
#ifndef ND_TRAIN_STEP_H
#define ND_TRAIN_STEP_H
#include "nd_common.h"

typedef struct {
    int64_t count;
} nd_finite_guard_params;

nd_status nd_finite_guard_f32(const nd_finite_guard_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws);
#endif
