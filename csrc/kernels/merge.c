/* merge.c — Concat, Add, Mul over several float32 inputs.
 *
 * Concat along channels of NCHW tensors is, per sample, the inputs' (C_i,H,W)
 * blocks laid end to end, so it is one memcpy per (sample, input); the
 * spatial size never enters. Along another axis the same holds per outer
 * position (the builder folds the axes before the joined one into n).
 * Parallel over those copies (over outer positions when the blocks are short).
 *
 * Add/Mul combine input pointers element by element. They accumulate a chunk
 * of CH elements in a stack buffer over all inputs and only then store it,
 * so out may alias any full-size input (an in-place residual add) and every
 * inner loop is a contiguous, vectorizable a[i] op= b[i]. A per-channel
 * operand (an SE block's (C,1,1) gate) or per-sample operand is one scalar per
 * plane. Parallel over (sample, channel) planes, chunked within a plane.
 */
#include "kernels/merge.h"

#include <string.h>

#include "dispatch.h"
#include "nd_simd.h"

#define CH 512

nd_status nd_concat_f32(const nd_concat_params *p, float *out, const float *const *in,
                        const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->ninputs <= 0 || p->ninputs > ND_MERGE_MAX_INPUTS) return ND_EINVAL;
    const int64_t k = p->ninputs;
    int64_t off[ND_MERGE_MAX_INPUTS], total = 0;
    for (int64_t i = 0; i < k; i++) {
        if (p->inner[i] <= 0) return ND_EINVAL;
        off[i] = total;
        total += p->inner[i];
    }
    if (!ND_PROD_OK(p->n, total)) return ND_EINVAL;
    if (total < 4096) {
        /* short blocks (a concat along H or W: n folds the batch and the axes before the
         * joined one): one outer position per task, its inputs copied in turn */
#pragma omp parallel for schedule(static) if (p->n * total > 262144)
        for (int64_t b = 0; b < p->n; b++)
            for (int64_t i = 0; i < k; i++)
                memcpy(out + b * total + off[i], in[i] + b * p->inner[i], (size_t)p->inner[i] * sizeof(float));
        return ND_OK;
    }
    const int64_t tasks = p->n * k;
#pragma omp parallel for schedule(dynamic, 1) if (p->n * total > 262144)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / k, i = t % k;
        memcpy(out + b * total + off[i], in[i] + b * p->inner[i], (size_t)p->inner[i] * sizeof(float));
    }
    return ND_OK;
}

static nd_status eltwise(const nd_eltwise_params *p, float *out, const float *const *in, int mul)
{
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0 || p->ninputs <= 0 || p->ninputs > ND_MERGE_MAX_INPUTS ||
        !nd_act_ok(p->act))
        return ND_EINVAL;
    if (!ND_PROD_OK(p->n, p->c, p->hw)) return ND_EINVAL;
    const int64_t C = p->c, HW = p->hw, planes = p->n * C, k = p->ninputs;
    for (int64_t i = 0; i < k; i++)
        if (p->bcast[i] < 0 || p->bcast[i] > 2) return ND_EINVAL;
    const int64_t nch = (HW + CH - 1) / CH, tasks = planes * nch;
    const int64_t chunk = nch >= 16 ? 1 : 16 / nch;     /* ~8K elements per grab */
    const nd_simd_ops *S = nd_simd();
    const int act = p->act;
#pragma omp parallel for schedule(dynamic, chunk) if (planes * HW * k > 131072)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t pc = t / nch, j0 = (t % nch) * CH, m = HW - j0 < CH ? HW - j0 : CH;
        float acc[CH];
        for (int64_t i = 0; i < k; i++) {
            const int bc = p->bcast[i];
            if (bc) {
                const float v = bc == 1 ? in[i][pc] : in[i][pc / C];
                if (i == 0) for (int64_t j = 0; j < m; j++) acc[j] = v;
                else        S->accum(acc, NULL, v, m, mul);
            } else {
                const float *x = in[i] + pc * HW + j0;
                if (i == 0) for (int64_t j = 0; j < m; j++) acc[j] = x[j];
                else        S->accum(acc, x, 0.0f, m, mul);
            }
        }
        float *y = out + pc * HW + j0;
        if (act == ND_ACT_RELU) {
            S->leaky(y, acc, 0.0f, m);     /* relu (x < 0 ? 0 : x: NaN stays NaN) and the store in one sweep */
        } else {
            if (act != ND_ACT_NONE) nd_act_inplace(acc, m, act);   /* NaN stays NaN */
            memcpy(y, acc, (size_t)m * sizeof(float));
        }
    }
    return ND_OK;
}

nd_status nd_add_f32(const nd_add_params *p, float *out, const float *const *in,
                     const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return eltwise(p, out, in, 0);
}

nd_status nd_mul_f32(const nd_mul_params *p, float *out, const float *const *in,
                     const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return eltwise(p, out, in, 1);
}
