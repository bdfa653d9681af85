/* fast_math.h — the raw float32 math of csrc/nd_math.h over a flat buffer, for the tests
 * (tests/ops/test_fast_math.py): y[i] = fn(x[i]) for fn one of exp, tanh, sigmoid, erfc,
 * Phi (the normal CDF), the normal density, n floats, on the ISA in use. In-place safe.
 * The activations themselves run through nd_act_apply (dispatch.h); this kernel only exposes
 * the building blocks no op reaches one by one.
 */
#ifndef ND_FAST_MATH_H
#define ND_FAST_MATH_H
#include "nd_common.h"

typedef enum {
    ND_FM_EXP = 0,
    ND_FM_TANH = 1,
    ND_FM_SIGMOID = 2,
    ND_FM_ERFC = 3,
    ND_FM_PHI = 4,
    ND_FM_NORMPDF = 5
} nd_fm_fn;

typedef struct {
    int64_t n;       /* floats */
    int32_t fn;      /* nd_fm_fn */
} nd_fastmath_params;

nd_status nd_fastmath_f32(const nd_fastmath_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws);
#endif
