/* train_optim.h — optimizer updates and gradient clipping over the whole parameter region.
 *
 * All trainable parameters of a training plan are one flat float32 region of `count`
 * floats; the gradients and each optimizer-state region mirror it. out = the parameters
 * (updated in place), in[0] = the gradients, in[1], in[2] = the state regions, updated in
 * place through the input pointers (they are the non-const arena). Hyperparameters are
 * doubles (Python floats, as torch takes them); `step` is the 1-based number of this update.
 */
#ifndef ND_TRAIN_OPTIM_H
#define ND_TRAIN_OPTIM_H
#include "nd_common.h"

/* torch.optim.SGD. in = (grads) without momentum, (grads, momentum buffer) with it. */
typedef struct {
    int64_t count, step;
    double lr, momentum, dampening, weight_decay;
    int32_t nesterov;
} nd_sgd_params;

/* torch.optim.Adam (decoupled = 0: weight decay added to the gradient) and AdamW
 * (decoupled = 1: p *= 1 - lr wd before the update). in = (grads, exp_avg, exp_avg_sq). */
typedef struct {
    int64_t count, step;
    double lr, beta1, beta2, eps, weight_decay;
    int32_t decoupled;
} nd_adam_params;

/* torch.nn.utils.clip_grad_norm_ over one region: out = 1 float, the L2 norm before
 * clipping; in[0] = the gradients, scaled in place by min(1, max_norm / (norm + 1e-6)). */
typedef struct {
    int64_t count;
    double max_norm;
} nd_clip_grad_norm_params;

nd_status nd_sgd_step_f32(const nd_sgd_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws);
nd_status nd_adam_step_f32(const nd_adam_params *p, float *out, const float *const *in,
                           const float *w, const float *bias, float *ws);
nd_status nd_clip_grad_norm_f32(const nd_clip_grad_norm_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws);
#endif
