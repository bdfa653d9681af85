/* train_step.c — see train_step.h. A float is NaN or inf exactly when its exponent bits are
 * all ones; OR-ing (bits & exponent mask) == mask over the region is an integer reduction,
 * which the compiler vectorizes at any optimization setting (a float sum would have to keep
 * its order: one add per cycle on a region of ResNet-18's 11M gradients took 17 ms). */
#include "kernels/train_step.h"

#include <string.h>

nd_status nd_finite_guard_f32(const nd_finite_guard_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws)
{
    (void)out; (void)w; (void)bias; (void)ws;
    if (!p || p->count < 0 || (p->count > 0 && (!in || !in[0])))
        return ND_EINVAL;
    const float *x = in[0];
    const int64_t n = p->count;
    uint32_t bad = 0;
#ifdef _OPENMP
#pragma omp parallel for reduction(| : bad) if (n > (1 << 20))
#endif
    for (int64_t b = 0; b < n; b += 4096) {
        const int64_t e = b + 4096 < n ? b + 4096 : n;
        uint32_t acc = 0;
        for (int64_t i = b; i < e; i++) {
            uint32_t u;
            memcpy(&u, &x[i], sizeof u);
            acc |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
        }
        bad |= acc;
    }
    return bad ? ND_ENONFINITE : ND_OK;
}
