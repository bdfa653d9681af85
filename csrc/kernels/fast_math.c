/* fast_math.c — the activations' vector passes: y = act(x) over a flat buffer, one plain C
 * body (csrc/nd_math.h's branch-free float32 exp / tanh / sigmoid / erfc, no libm) inlined
 * into a portable, an AVX2+FMA and an AVX-512 function (conv_dw.c's pattern), picked from
 * nd_ops()->level, so NETDSL_ISA and nd_set_isa reach each.
 *
 * Shapes: n contiguous floats in, n out, same index; y == x (in place) is safe. GCC
 * vectorizes every loop (the act switch sits outside them); -std=c11 means no FMA
 * contraction, so all three copies give the same bits, and the same bits as the scalar
 * definition nd_act1 (dispatch.h), which calls the same nd_math.h functions: the fused
 * epilogues (nd_act_inplace: every table's act_vec is set to these at load, dispatch.c), the
 * Winograd epilogue (nd_act1 per value) and the standalone kernels (activation.c) agree exactly.
 * Also nd_fastmath_f32, the raw functions for the tests. Not here: relu / leaky (nd_simd.h's
 * selects), threads (the callers split the work), training backward (train_act.c).
 */
#include "kernels/fast_math.h"

#include "dispatch.h"
#include "nd_math.h"

#define INLINE static inline __attribute__((always_inline))

INLINE void act_body(float *y, const float *x, int64_t n, int act)
{
    switch (act) {
    case ND_ACT_SIGMOID:    for (int64_t i = 0; i < n; i++) y[i] = nd_sigmoidf(x[i]); break;
    case ND_ACT_TANH:       for (int64_t i = 0; i < n; i++) y[i] = nd_tanhf(x[i]); break;
    case ND_ACT_RELU6:      for (int64_t i = 0; i < n; i++) y[i] = nd_relu6_1(x[i]); break;
    case ND_ACT_HARDSIGMOID: for (int64_t i = 0; i < n; i++) y[i] = nd_relu6_1(x[i] + 3.0f) / 6.0f; break;
    case ND_ACT_HARDSWISH:  for (int64_t i = 0; i < n; i++) y[i] = x[i] * (nd_relu6_1(x[i] + 3.0f) / 6.0f); break;
    case ND_ACT_SILU:       for (int64_t i = 0; i < n; i++) y[i] = nd_siluf(x[i]); break;
    case ND_ACT_GELU:       for (int64_t i = 0; i < n; i++) y[i] = nd_geluf(x[i]); break;
    case ND_ACT_MISH:       for (int64_t i = 0; i < n; i++) y[i] = nd_mishf(x[i]); break;
    case ND_ACT_GELU_TANH:  for (int64_t i = 0; i < n; i++) y[i] = nd_gelu_tanhf(x[i]); break;
    default:                for (int64_t i = 0; i < n; i++) y[i] = nd_act1(x[i], act); break;
    }
}

INLINE void fm_body(float *y, const float *x, int64_t n, int fn)
{
    switch (fn) {
    case ND_FM_EXP:     for (int64_t i = 0; i < n; i++) y[i] = nd_expf(x[i]); break;
    case ND_FM_TANH:    for (int64_t i = 0; i < n; i++) y[i] = nd_tanhf(x[i]); break;
    case ND_FM_SIGMOID: for (int64_t i = 0; i < n; i++) y[i] = nd_sigmoidf(x[i]); break;
    case ND_FM_ERFC:    for (int64_t i = 0; i < n; i++) y[i] = nd_erfcf(x[i]); break;
    case ND_FM_PHI:     for (int64_t i = 0; i < n; i++) y[i] = nd_phif(x[i]); break;
    case ND_FM_NORMPDF: for (int64_t i = 0; i < n; i++) y[i] = nd_normpdf(x[i]); break;
    default: break;
    }
}

#define ACT_ARGS float *y, const float *x, int64_t n, int act
#define FM_ARGS float *y, const float *x, int64_t n, int fn
#define DEFINE_ISA(suffix, attr)                                                   \
    attr void nd_act_apply_##suffix(ACT_ARGS) { act_body(y, x, n, act); }        \
    attr static void act_pass_##suffix(float *y, int64_t n, int act) { act_body(y, y, n, act); } \
    attr static void fm_##suffix(FM_ARGS) { fm_body(y, x, n, fn); }

ND_EACH_ISA(DEFINE_ISA)

float nd_act1_math(float v, int act)
{
    switch (act) {
    case ND_ACT_SIGMOID: return nd_sigmoidf(v);
    case ND_ACT_TANH: return nd_tanhf(v);
    case ND_ACT_SILU: return nd_siluf(v);
    case ND_ACT_GELU: return nd_geluf(v);
    case ND_ACT_MISH: return nd_mishf(v);
    case ND_ACT_GELU_TANH: return nd_gelu_tanhf(v);
    default: return v;
    }
}

void nd_act_apply(float *y, const float *x, int64_t n, int act)
{
#if defined(__x86_64__) || defined(__i386__)
    switch (nd_ops()->level) {
    case ND_ISA_AVX512: nd_act_apply_avx512(y, x, n, act); return;
    case ND_ISA_AVX2: nd_act_apply_avx2(y, x, n, act); return;
    default: break;
    }
#endif
    nd_act_apply_portable(y, x, n, act);
}

nd_act_pass_fn nd_act_pass_for(int level)
{
#if defined(__x86_64__) || defined(__i386__)
    if (level == ND_ISA_AVX512) return act_pass_avx512;
    if (level == ND_ISA_AVX2) return act_pass_avx2;
#endif
    (void)level;
    return act_pass_portable;
}

nd_status nd_fastmath_f32(const nd_fastmath_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->fn < ND_FM_EXP || p->fn > ND_FM_NORMPDF) return ND_EINVAL;
#if defined(__x86_64__) || defined(__i386__)
    switch (nd_ops()->level) {
    case ND_ISA_AVX512: fm_avx512(out, in[0], p->n, p->fn); return ND_OK;
    case ND_ISA_AVX2: fm_avx2(out, in[0], p->n, p->fn); return ND_OK;
    default: break;
    }
#endif
    fm_portable(out, in[0], p->n, p->fn);
    return ND_OK;
}
