/* train_optim.c — SGD / Adam / AdamW updates and gradient-norm clipping, one flat region.
 *
 * Shapes: params, grads and every state region are (COUNT,), the trainable parameters of
 * the whole network packed one after another (the planner's layout; a layer's boundaries
 * do not matter to an element-wise update). out = params, updated in place; in[0] = grads
 * (read only, except by clipping); in[1], in[2] = optimizer state, written in place through
 * the const input pointers: that memory is the training arena, which is not const.
 *
 * Each update is torch.optim's single-tensor (for-loop) implementation, the one torch uses
 * on CPU, operation for operation in float32 with its scalars computed in double and
 * rounded once (torch turns the Python-float hyperparameters into float for a float
 * tensor): SGD
 *     g += wd p;  buf = step == 1 ? g : momentum buf + (1 - dampening) g;
 *     g = nesterov ? g + momentum buf : buf;  p += -lr g
 * Adam (AdamW: p *= 1 - lr wd first and no wd in g), with t = step:
 *     m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g g
 *     p += -(lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * so results match torch to a few float32 ulps (torch's vectorized lerp may use an FMA),
 * not bit for bit. The Adam state must start at zero; SGD's buffer is not read at step 1.
 *
 * Clipping sums the squares in double (one pass, then one scaling pass), where torch takes
 * the norm of the per-tensor float32 norms. A NaN gradient makes the norm NaN and the clip
 * factor NaN, so every gradient becomes NaN, as clip_grad_norm_ does (no silent skip).
 * Deliberately not here: amsgrad, maximize, per-parameter-group hyperparameters (no weight
 * decay exemption for biases / norms yet).
 *
 * Threads: one static OpenMP loop per pass; the region can be tens of millions of floats
 * and the updates are memory bound, so the split is by contiguous chunks. Measured on this
 * 2-core AVX2 machine, 10M parameters, one thread: SGD with momentum 11 ms, clipping 9 ms,
 * Adam 36 ms (its loop stays scalar: sqrtf may set errno, and the build keeps -fmath-errno;
 * GCC 12 ignores optimize("no-math-errno") on a function). Small next to a backward pass.
 */
#include "kernels/train_optim.h"

#include <math.h>

#define PAR_MIN 65536       /* below this a parallel region costs more than it saves */
#define CHUNK 16384         /* the norm's sum: fixed chunks, so the partial sums do not depend
                             * on the thread count (only their final addition order does) */
#define LANES 8             /* independent partial sums of the norm: they vectorize and pipeline */

nd_status nd_sgd_step_f32(const nd_sgd_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->count < 0 || p->step < 1 || !(p->lr >= 0.0) || !(p->momentum >= 0.0) ||
        !(p->weight_decay >= 0.0) || !(p->dampening >= 0.0 && p->dampening <= 1.0) ||
        (p->nesterov && !(p->momentum > 0.0 && p->dampening == 0.0)))
        return ND_EINVAL;
    const int64_t n = p->count;
    float *restrict prm = out;
    const float *restrict g = in[0];
    const float neg_lr = (float)(-p->lr), wd = (float)p->weight_decay;
    if (p->momentum == 0.0) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float d = g[i];
            if (wd != 0.0f)
                d = d + wd * prm[i];
            prm[i] = prm[i] + neg_lr * d;
        }
        return ND_OK;
    }
    float *restrict buf = (float *)in[1];          /* state: the arena, written in place */
    const float mom = (float)p->momentum, keep = (float)(1.0 - p->dampening);
    const int first = p->step == 1, nesterov = p->nesterov != 0;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (wd != 0.0f)
            d = d + wd * prm[i];
        const float b = first ? d : buf[i] * mom + keep * d;
        buf[i] = b;
        d = nesterov ? d + mom * b : b;
        prm[i] = prm[i] + neg_lr * d;
    }
    return ND_OK;
}

nd_status nd_adam_step_f32(const nd_adam_params *p, float *out, const float *const *in,
                           const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->count < 0 || p->step < 1 || !(p->lr >= 0.0) || !(p->beta1 >= 0.0 && p->beta1 < 1.0) ||
        !(p->beta2 >= 0.0 && p->beta2 < 1.0) || !(p->eps >= 0.0) || !(p->weight_decay >= 0.0))
        return ND_EINVAL;
    const int64_t n = p->count;
    float *restrict prm = out;
    const float *restrict g = in[0];
    float *restrict m = (float *)in[1], *restrict v = (float *)in[2];   /* state, in place */
    const double t = (double)p->step;
    const double bc1 = 1.0 - pow(p->beta1, t), bc2 = 1.0 - pow(p->beta2, t);
    const float neg_step = (float)(-(p->lr / bc1)), bc2_sqrt = (float)sqrt(bc2);
    const float w1 = (float)(1.0 - p->beta1), b2 = (float)p->beta2, w2 = (float)(1.0 - p->beta2);
    const float eps = (float)p->eps, wd = (float)p->weight_decay;
    const float decay = (float)(1.0 - p->lr * p->weight_decay);
    const int decoupled = p->decoupled != 0, small = w1 < 0.5f;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float pi = prm[i], gi = g[i];
        if (decoupled)
            pi = pi * decay;
        else if (wd != 0.0f)
            gi = gi + wd * pi;
        const float mi = small ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * (1.0f - w1);   /* torch lerp */
        const float vi = v[i] * b2 + w2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) / bc2_sqrt + eps;
        prm[i] = pi + neg_step * mi / denom;
    }
    return ND_OK;
}

nd_status nd_clip_grad_norm_f32(const nd_clip_grad_norm_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->count < 0 || !(p->max_norm >= 0.0))
        return ND_EINVAL;
    const int64_t n = p->count;
    float *restrict g = (float *)in[0];             /* the gradients, scaled in place */
    const int64_t nchunk = (n + CHUNK - 1) / CHUNK;
    double ss = 0.0;
#pragma omp parallel for schedule(static) reduction(+:ss) if (n > PAR_MIN)
    for (int64_t c = 0; c < nchunk; c++) {
        const int64_t lo = c * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n;
        double acc[LANES] = {0.0};
        int64_t i = lo;
        for (; i + LANES <= hi; i += LANES)
            for (int k = 0; k < LANES; k++)
                acc[k] += (double)g[i + k] * (double)g[i + k];
        for (; i < hi; i++)
            acc[0] += (double)g[i] * (double)g[i];
        double part = 0.0;
        for (int k = 0; k < LANES; k++)
            part += acc[k];
        ss += part;
    }
    const double norm = sqrt(ss);
    double coef = p->max_norm / (norm + 1e-6);
    if (coef > 1.0)                                 /* a NaN coefficient stays NaN */
        coef = 1.0;
    out[0] = (float)norm;
    if (coef != 1.0) {
        const float c = (float)coef;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            g[i] = g[i] * c;
    }
    return ND_OK;
}
