/* train_merge.c — backward of Add, Mul, Concat, Slice; the zero gradient.
 *
 * Add / Mul, output (N, C, HW): the gradient of input i is dy (Add) or dy times the product
 * of the other inputs (Mul: dy * x_a * x_b ..., in input order, the per-channel and
 * per-sample operands as one scalar per plane), written whole when input i is full size,
 * else summed over the plane (per-channel operand, (N, C)) or over the sample (per-sample,
 * (N,)): the adjoint of the broadcast. The products are formed CH floats at a time in a
 * stack buffer with nd_simd's accum (per ISA, the same bits on every ISA); the sums run in
 * double, chunk by chunk in a fixed order (8 running sums per chunk), one output value per
 * task, so they do not depend on the ISA or the thread count. NaN in dy or in an input
 * flows through the multiplies and the sums. Threads: over plane chunks (full), planes
 * (per-channel) or samples (per-sample).
 *
 * Concat: input i's gradient is its block of dy (one memcpy per outer position, the
 * forward's layout). Slice: dy on the kept channels, zeros on the others. Copies keep NaN
 * and inf bit for bit. Not in-place (the merges' dx are separate buffers), except that a
 * full-size Add/Mul gradient may be written over dy.
 */
#include "kernels/train_merge.h"

#include <string.h>

#include "dispatch.h"
#include "nd_simd.h"

#define CH 512
#define PAR_MIN 131072

static int eltwise_bad(const nd_eltwise_bwd_params *p)
{
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0 || p->ninputs <= 0 || p->ninputs > 128 || p->wrt < 0 ||
        p->wrt >= p->ninputs || !ND_PROD_OK(p->n, p->c, p->hw))
        return 1;
    for (int64_t i = 0; i < p->ninputs; i++)
        if (p->bcast[i] < 0 || p->bcast[i] > 2) return 1;
    return 0;
}

/* acc[0..m) = dy * (Mul: the other inputs) on elements j0 .. j0+m of plane pc; acc may be dy */
static void grad_chunk(float *acc, const nd_eltwise_bwd_params *p, const float *const *in, int mul,
                       int64_t pc, int64_t j0, int64_t m, const nd_simd_ops *S)
{
    const int64_t HW = p->hw, C = p->c;
    const float *g = in[0] + pc * HW + j0;
    if (acc != g) memcpy(acc, g, (size_t)m * sizeof(float));
    if (!mul) return;
    for (int64_t j = 0, r = 1; j < p->ninputs; j++) {
        if (j == p->wrt) continue;
        const float *x = in[r++];
        const int bc = p->bcast[j];
        if (bc) S->accum(acc, NULL, bc == 1 ? x[pc] : x[pc / C], m, 1);
        else    S->accum(acc, x + pc * HW + j0, 0.0f, m, 1);
    }
}

/* sum of x[0..n) in double: 8 running sums (x[i] into sum i % 8: the adds do not wait on each
 * other), added in a fixed order at the end; the same bits on every ISA and thread count */
static double sum_f64(const float *x, int64_t n)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += (double)x[i + k];
    double r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) r += (double)x[i];
    return r;
}

/* the sum over plane pc of dy (times the others), in double */
static double plane_sum(const nd_eltwise_bwd_params *p, const float *const *in, int mul, int64_t pc,
                        const nd_simd_ops *S)
{
    float acc[CH];
    double s = 0.0;
    for (int64_t j0 = 0; j0 < p->hw; j0 += CH) {
        const int64_t m = p->hw - j0 < CH ? p->hw - j0 : CH;
        if (mul) {
            grad_chunk(acc, p, in, mul, pc, j0, m, S);
            s += sum_f64(acc, m);
        } else {
            s += sum_f64(in[0] + pc * p->hw + j0, m);   /* Add: dy itself, no copy */
        }
    }
    return s;
}

static nd_status eltwise_bwd(const nd_eltwise_bwd_params *p, float *out, const float *const *in, int mul)
{
    if (eltwise_bad(p)) return ND_EINVAL;
    const nd_simd_ops *S = nd_simd();
    const int64_t C = p->c, HW = p->hw, planes = p->n * C;
    const int work = planes * HW > PAR_MIN / (mul ? p->ninputs : 1);   /* no product: no overflow */
    switch (p->bcast[p->wrt]) {
    case 0: {
        const int64_t nch = (HW + CH - 1) / CH, tasks = planes * nch;
        const int64_t chunk = nch >= 16 ? 1 : 16 / nch;
#pragma omp parallel for schedule(dynamic, chunk) if (work)
        for (int64_t t = 0; t < tasks; t++) {
            const int64_t pc = t / nch, j0 = (t % nch) * CH, m = HW - j0 < CH ? HW - j0 : CH;
            grad_chunk(out + pc * HW + j0, p, in, mul, pc, j0, m, S);
        }
        break;
    }
    case 1:
#pragma omp parallel for schedule(dynamic, 16) if (work)
        for (int64_t pc = 0; pc < planes; pc++) out[pc] = (float)plane_sum(p, in, mul, pc, S);
        break;
    default:
#pragma omp parallel for schedule(dynamic, 1) if (work)
        for (int64_t b = 0; b < p->n; b++) {
            double s = 0.0;
            for (int64_t c = 0; c < C; c++) s += plane_sum(p, in, mul, b * C + c, S);
            out[b] = (float)s;
        }
        break;
    }
    return ND_OK;
}

nd_status nd_add_bwd_data_f32(const nd_add_bwd_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return eltwise_bwd(p, out, in, 0);
}

nd_status nd_mul_bwd_data_f32(const nd_mul_bwd_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return eltwise_bwd(p, out, in, 1);
}

nd_status nd_concat_bwd_data_f32(const nd_concat_bwd_params *p, float *out, const float *const *in,
                                 const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->inner <= 0 || p->off < 0 || p->total < p->inner || p->off > p->total - p->inner ||
        !ND_PROD_OK(p->n, p->total))
        return ND_EINVAL;
    const float *g = in[0];
    const int64_t L = p->inner, T = p->total, off = p->off;
#pragma omp parallel for schedule(static) if (p->n * L > 4 * PAR_MIN)
    for (int64_t b = 0; b < p->n; b++) memcpy(out + b * L, g + b * T + off, (size_t)L * sizeof(float));
    return ND_OK;
}

nd_status nd_slice_bwd_data_f32(const nd_slice_bwd_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->inner <= 0 || p->start < 0 || p->stop <= p->start ||
        p->stop > p->c || !ND_PROD_OK(p->n, p->c, p->inner))
        return ND_EINVAL;
    const int64_t I = p->inner, per = p->c * I, a = p->start * I, block = (p->stop - p->start) * I;
    const float *g = in[0];
#pragma omp parallel for schedule(static) if (p->n * per > 4 * PAR_MIN)
    for (int64_t b = 0; b < p->n; b++) {
        float *x = out + b * per;
        memset(x, 0, (size_t)a * sizeof(float));
        memcpy(x + a, g + b * block, (size_t)block * sizeof(float));
        memset(x + a + block, 0, (size_t)(per - a - block) * sizeof(float));
    }
    return ND_OK;
}

nd_status nd_zero_bwd_f32(const nd_zero_bwd_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws)
{
    (void)in; (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->size <= 0 || !ND_PROD_OK(p->n, p->size)) return ND_EINVAL;
    memset(out, 0, (size_t)(p->n * p->size) * sizeof(float));
    return ND_OK;
}
