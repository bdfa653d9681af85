/* prelu.c — PReLU over (N, C, HW) float32, one slope per channel (or one shared).
 *
 * x is (N,C,HW), w is (C,) or (1,): y[n,c,i] = x > 0 ? x : w[c]·x. Per (n, c) plane the
 * slope is a constant, so the inner loop is a compare, a multiply and a blend over
 * contiguous floats: written once (prelu_plane) and compiled three times, for the
 * portable baseline, AVX2 and AVX-512 (as conv_dw.c does); the ISA in use picks one at
 * call time (nd_isa_level), so no dispatch table entry is needed.
 *
 * NaN: the select is written `x > 0 ? x : a*x`, never `x < 0 ? a*x : x` or max/min:
 * NaN > 0 is false, so NaN takes the a·x branch and a·NaN is NaN (PyTorch's result).
 * Each element is read once and written once at the same index: out == in[0] is safe.
 * Planes are spread over threads only above ~64K elements (waking the team costs more).
 */
#include "kernels/prelu.h"
#include "dispatch.h"

#define PRELU_PAR_MIN 65536

/* No `restrict`: y may be x (in place). Element i is read before it is written and no
 * other element is touched, so there is no loop-carried dependence: `omp simd` says so. */
static inline __attribute__((always_inline)) void
prelu_plane(float *y, const float *x, float a, int64_t hw)
{
#pragma omp simd
    for (int64_t i = 0; i < hw; i++) {
        const float v = x[i];
        y[i] = v > 0.0f ? v : a * v;
    }
}

#define PRELU_ARGS float *y, const float *x, float a, int64_t hw
static void plane_portable(PRELU_ARGS) { prelu_plane(y, x, a, hw); }
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma"))) static void plane_avx2(PRELU_ARGS) { prelu_plane(y, x, a, hw); }
#if defined(__clang__)
#define PRELU_512 "avx512f"
#else
#define PRELU_512 "avx512f,prefer-vector-width=512"
#endif
__attribute__((target(PRELU_512))) static void plane_avx512(PRELU_ARGS) { prelu_plane(y, x, a, hw); }
#endif

nd_status nd_prelu_f32(const nd_prelu_params *p, float *out, const float *const *in,
                       const float *w, const float *bias, float *ws)
{
    (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0 || w == 0 || (p->nw != p->c && p->nw != 1) ||
        !ND_PROD_OK(p->n, p->c, p->hw))
        return ND_EINVAL;
    void (*plane)(PRELU_ARGS) = plane_portable;
#if defined(__x86_64__) || defined(__i386__)
    const int level = nd_isa_level();
    if (level >= ND_ISA_AVX512)
        plane = plane_avx512;
    else if (level >= ND_ISA_AVX2)
        plane = plane_avx2;
#endif
    const float *x = in[0];
    const int64_t planes = p->n * p->c, hw = p->hw, c = p->c, shared = p->nw == 1;
#pragma omp parallel for schedule(static) if (planes * hw > PRELU_PAR_MIN)
    for (int64_t i = 0; i < planes; i++)
        plane(out + i * hw, x + i * hw, w[shared ? 0 : i % c], hw);
    return ND_OK;
}
