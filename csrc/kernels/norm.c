/* norm.c — inference-time normalisations, float32 NCHW.
 *
 * BatchNorm arrives folded (scale, shift per channel: the division by
 * sqrt(var+eps) was done once at plan time), so it is one multiply then one add
 * (not an FMA: every ISA rounds the same) per element over each (n,c) plane, with
 * the activation in the same sweep (csrc/nd_simd.h); parallel over planes, in-place safe.
 *
 * LRN normalises each value by the energy of `size` neighbouring channels at
 * the same pixel. As in softmax.c, a block of BLK neighbouring pixels is swept
 * channel by channel so every inner loop is contiguous; the window sum is
 * recomputed per channel (size is small, typically 5) rather than slid, which
 * would subtract large squares and lose precision. Reads neighbouring channels
 * of the input, so out must not alias in[0].
 */
#include "kernels/norm.h"

#include <math.h>

#include "dispatch.h"
#include "nd_simd.h"

#define BLK 64

nd_status nd_batchnorm_f32(const nd_batchnorm_params *p, float *out, const float *const *in,
                           const float *w, const float *bias, float *ws)
{
    (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0 || !nd_act_ok(p->act)) return ND_EINVAL;
    if (!w || !ND_PROD_OK(p->n, p->c, p->hw)) return ND_EINVAL;
    const int64_t C = p->c, HW = p->hw, planes = p->n * C, chunk = HW >= 8192 ? 1 : 8192 / HW;
    const float *x = in[0];
    const nd_simd_ops *S = nd_simd();
    const int act = p->act;
    /* y = act(x*s + t) in one pass per plane (nd_simd affine_act: multiply then add, relu /
     * leaky in the same sweep, sigmoid/tanh over the plane while it is in cache). Dynamic
     * chunks of ~8K elements: a thread on a busy core takes fewer. */
#pragma omp parallel for schedule(dynamic, chunk) if (planes * HW > 131072)
    for (int64_t pc = 0; pc < planes; pc++)
        S->affine_act(out + pc * HW, x + pc * HW, w[pc % C], bias ? bias[pc % C] : 0.0f, HW, act);
    return ND_OK;
}

nd_status nd_lrn_f32(const nd_lrn_params *p, float *out, const float *const *in,
                     const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0 || p->size <= 0) return ND_EINVAL;
    const int64_t C = p->c, HW = p->hw, before = p->size / 2, after = (p->size - 1) / 2;
    const int64_t nblk = (HW + BLK - 1) / BLK, tasks = p->n * nblk;
    const float a = p->alpha / (float)p->size, k = p->k, nb = -p->beta;
    const float *x = in[0];
#pragma omp parallel for schedule(dynamic, 1) if (p->n * C * HW * p->size > 262144)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / nblk, j0 = (t % nblk) * BLK;
        const int64_t m = HW - j0 < BLK ? HW - j0 : BLK;
        const float *xs = x + b * C * HW + j0;
        float *ys = out + b * C * HW + j0;
        float s[BLK];
        for (int64_t c = 0; c < C; c++) {
            const int64_t c0 = c - before < 0 ? 0 : c - before;
            const int64_t c1 = c + after >= C ? C - 1 : c + after;
            for (int64_t j = 0; j < m; j++) s[j] = 0.0f;
            for (int64_t cc = c0; cc <= c1; cc++)
                for (int64_t j = 0; j < m; j++) s[j] += xs[cc * HW + j] * xs[cc * HW + j];
            for (int64_t j = 0; j < m; j++) ys[c * HW + j] = xs[c * HW + j] * powf(k + a * s[j], nb);
        }
    }
    return ND_OK;
}
