/* activation.c — element-wise activations over a flat float32 buffer.
 *
 * The tensor's shape does not matter: n*size contiguous floats in, the same
 * count out. Each element is read once and written once at the same index,
 * so out == in[0] (in-place) is safe. ReLU/LeakyReLU run nd_simd's per-ISA select
 * (csrc/nd_simd.h; the same result on every ISA). Sigmoid, Tanh, HardSwish, SiLU, GELU and
 * Mish run nd_act_apply (dispatch.h; kernels/fast_math.c: csrc/nd_math.h's branch-free float32
 * exp / tanh / erfc, vectorized per ISA, ~2 ulp, no libm), the fused epilogues' own code, so
 * standalone and fused agree bit for bit. NaN stays NaN, as in PyTorch.
 * Clip and HardSigmoid with arbitrary bounds / slopes are plain compare-and-select loops
 * (the compiler vectorizes them). Work goes out chunk by chunk; the parallel loop only fans
 * out above ~128K elements (~32K for the transcendental ones): below that, waking the thread
 * team costs more than the work; chunks go out dynamically.
 */
#include "kernels/activation.h"

#include <math.h>

#include "dispatch.h"
#include "nd_simd.h"

#define ACT_PAR_MIN 131072
#define ACT_CHUNK 16384   /* elements per dynamic grab: a thread on a busy core takes fewer */

/* y = relu / leaky(x) over total floats, chunked so a thread on a busy core takes fewer */
static void leaky_all(float *out, const float *x, float a, int64_t total)
{
    const nd_simd_ops *S = nd_simd();
    const int64_t nch = (total + ACT_CHUNK - 1) / ACT_CHUNK;
#pragma omp parallel for schedule(dynamic, 1) if (total > ACT_PAR_MIN)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t i0 = c * ACT_CHUNK, m = total - i0 < ACT_CHUNK ? total - i0 : ACT_CHUNK;
        S->leaky(out + i0, x + i0, a, m);
    }
}

static inline int bad(const nd_act_params *p)
{
    return p->n <= 0 || p->size <= 0 || !ND_PROD_OK(p->n, p->size);
}

nd_status nd_relu_f32(const nd_relu_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad(p)) return ND_EINVAL;
    leaky_all(out, in[0], 0.0f, p->n * p->size);   /* x < 0 ? 0 : x */
    return ND_OK;
}

nd_status nd_leakyrelu_f32(const nd_leakyrelu_params *p, float *out, const float *const *in,
                           const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad(p)) return ND_EINVAL;
    if (p->slope == 0.0f) {   /* nd_simd leaky reads slope 0 as ReLU; x * 0 differs (-inf -> NaN, -0) */
        const int64_t total = p->n * p->size;
        const float *x = in[0];
        const float a = p->slope;
#pragma omp parallel for schedule(static) if (total > ACT_PAR_MIN)
        for (int64_t i = 0; i < total; i++) out[i] = x[i] < 0.0f ? x[i] * a : x[i];
        return ND_OK;
    }
    leaky_all(out, in[0], p->slope, p->n * p->size);   /* x < 0 ? x * slope : x */
    return ND_OK;
}

/* y = act(x) over total floats through nd_act_apply, chunk by chunk */
static void apply_all(float *out, const float *x, int act, int64_t total)
{
    const int64_t nch = (total + ACT_CHUNK - 1) / ACT_CHUNK;
#pragma omp parallel for schedule(dynamic, 1) if (total > ACT_PAR_MIN / 4)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t i0 = c * ACT_CHUNK, m = total - i0 < ACT_CHUNK ? total - i0 : ACT_CHUNK;
        nd_act_apply(out + i0, x + i0, m, act);
    }
}

nd_status nd_sigmoid_f32(const nd_sigmoid_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad(p)) return ND_EINVAL;
    apply_all(out, in[0], ND_ACT_SIGMOID, p->n * p->size);   /* sigmoid(+-inf) = 1 / 0 exactly */
    return ND_OK;
}

nd_status nd_tanh_f32(const nd_tanh_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bad(p)) return ND_EINVAL;
    apply_all(out, in[0], ND_ACT_TANH, p->n * p->size);
    return ND_OK;
}

static inline int badn(int64_t n, int64_t size)
{
    return n <= 0 || size <= 0 || !ND_PROD_OK(n, size);
}

nd_status nd_clip_f32(const nd_clip_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (badn(p->n, p->size) || p->lo != p->lo || p->hi != p->hi) return ND_EINVAL;
    const int64_t total = p->n * p->size;
    const float *x = in[0];
    const float lo = p->lo, hi = p->hi;
#pragma omp parallel for schedule(static) if (total > ACT_PAR_MIN)
    for (int64_t i = 0; i < total; i++) {
        float v = x[i] < lo ? lo : x[i];   /* NaN < lo and NaN > hi are false: NaN stays */
        out[i] = v > hi ? hi : v;
    }
    return ND_OK;
}

nd_status nd_hardsigmoid_f32(const nd_hardsigmoid_params *p, float *out, const float *const *in,
                             const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (badn(p->n, p->size) || !isfinite(p->alpha) || !isfinite(p->beta)) return ND_EINVAL;
    if (p->alpha == 1.0f / 6.0f && p->beta == 0.5f) {   /* PyTorch's: the fused epilogue's code */
        const nd_actfn_params q = {p->n, p->size, ND_ACT_HARDSIGMOID};
        return nd_actfn_f32(&q, out, in, w, bias, ws);
    }
    const int64_t total = p->n * p->size;
    const float *x = in[0];
    const float a = p->alpha, b = p->beta;
#pragma omp parallel for schedule(static) if (total > ACT_PAR_MIN)
    for (int64_t i = 0; i < total; i++) {
        const float t = x[i] * a + b;
        const float v = t < 0.0f ? 0.0f : t;
        out[i] = v > 1.0f ? 1.0f : v;
    }
    return ND_OK;
}

nd_status nd_actfn_f32(const nd_actfn_params *p, float *out, const float *const *in,
                       const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (badn(p->n, p->size) || !nd_act_ok(p->act)) return ND_EINVAL;
    apply_all(out, in[0], p->act, p->n * p->size);
    return ND_OK;
}
