/* prelu.c — PReLU over (N, C, HW) float32, one slope per channel (or one shared).
 *
 * x is (N,C,HW), w is (C,) or (1,): y[n,c,i] = x > 0 ? x : w[c]·x. Per (n, c) plane the
 * slope is a constant, so the inner loop is a compare, a multiply and a blend over
 * contiguous floats: nd_simd's prelu (csrc/nd_simd.h), portable C or AVX2 intrinsics by
 * the ISA in use. (The earlier plain-C body compiled per target never vectorized: without
 * -fno-trapping-math GCC will not if-convert a conditional multiply, so it branched on the
 * sign, ~5 ns per element on random signs.)
 *
 * NaN: the select is written `x > 0 ? x : a*x`, never `x < 0 ? a*x : x` or max/min:
 * NaN > 0 is false, so NaN takes the a·x branch and a·NaN is NaN (PyTorch's result).
 * Each element is read once and written once at the same index: out == in[0] is safe.
 * Planes are spread over threads only above ~128K elements (waking the team costs more),
 * in dynamic chunks of ~8K elements.
 */
#include "kernels/prelu.h"
#include "dispatch.h"
#include "nd_simd.h"

#define PRELU_PAR_MIN 131072

nd_status nd_prelu_f32(const nd_prelu_params *p, float *out, const float *const *in,
                       const float *w, const float *bias, float *ws)
{
    (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0 || w == 0 || (p->nw != p->c && p->nw != 1) ||
        !ND_PROD_OK(p->n, p->c, p->hw))
        return ND_EINVAL;
    const nd_simd_ops *S = nd_simd();
    const float *x = in[0];
    const int64_t planes = p->n * p->c, hw = p->hw, c = p->c, shared = p->nw == 1;
    const int64_t chunk = hw >= 8192 ? 1 : 8192 / hw;
#pragma omp parallel for schedule(dynamic, chunk) if (planes * hw > PRELU_PAR_MIN)
    for (int64_t i = 0; i < planes; i++)
        S->prelu(out + i * hw, x + i * hw, w[shared ? 0 : i % c], hw);
    return ND_OK;
}
