/* train_step.c — see train_step.h. x - x is 0 for every finite x and NaN for NaN and inf,
 * so one sum of (x - x) over the region is finite exactly when every value is: a branch-free
 * loop the compiler vectorizes (no isfinite() per element, which -ffast-math could drop). */
#include "kernels/train_step.h"

nd_status nd_finite_guard_f32(const nd_finite_guard_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws)
{
    (void)out; (void)w; (void)bias; (void)ws;
    if (!p || p->count < 0 || (p->count > 0 && (!in || !in[0])))
        return ND_EINVAL;
    const float *x = in[0];
    float acc = 0.0f;
#ifdef _OPENMP
#pragma omp parallel for reduction(+ : acc) if (p->count > (1 << 18))
#endif
    for (int64_t i = 0; i < p->count; i++)
        acc += x[i] - x[i];
    return acc == 0.0f ? ND_OK : ND_ENONFINITE;
}
