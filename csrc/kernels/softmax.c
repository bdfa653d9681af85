/* softmax.c — numerically stable Softmax / LogSoftmax over one axis.
 *
 * x is (N,C,INNER) (any axis: the builder folds the others into N and INNER).
 * For every (n, position) the C values sit INNER floats apart, so instead of
 * walking one strided column at a time we take a block of up to BLK neighbouring positions and sweep the channels row by row: every
 * inner loop is then contiguous and vectorizes, and the per-position max and
 * sum live in two small stack arrays (no workspace). For vectors INNER = 1
 * and the block is a single column, which is the plain loop.
 *
 * Stability: subtract the max before exp (exp never overflows; the largest
 * term is exactly 1, so the sum is >= 1 and its log is safe).
 * In-place: the max pass only reads; softmax writes exp(x - m) over x at the
 * same index it just read, then rescales out; log-softmax reads x for the sum
 * and writes only in the last pass. Both are safe with out == in[0].
 */
#include "kernels/softmax.h"

#include <math.h>

#define BLK 64

static nd_status softmax_impl(const nd_softmax_params *p, float *out, const float *x, int logsm)
{
    if (p->n <= 0 || p->c <= 0 || p->inner <= 0) return ND_EINVAL;
    const int64_t C = p->c, I = p->inner;
    const int64_t nblk = (I + BLK - 1) / BLK, tasks = p->n * nblk;
#pragma omp parallel for schedule(dynamic, 1) if (p->n * C * I > 32768)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / nblk, j0 = (t % nblk) * BLK;
        const int64_t m = I - j0 < BLK ? I - j0 : BLK;
        const float *xs = x + b * C * I + j0;
        float *ys = out + b * C * I + j0;
        float mx[BLK];
        double sum[BLK];     /* C terms summed one after another: in float32 a sum of C = 1000
                              * terms loses ~C·u = 6e-5 (numpy sums pairwise); double keeps it exact */
        for (int64_t j = 0; j < m; j++) { mx[j] = -INFINITY; sum[j] = 0.0; }
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < m; j++) mx[j] = xs[c * I + j] > mx[j] ? xs[c * I + j] : mx[j];
        if (logsm) {
            for (int64_t c = 0; c < C; c++)
                for (int64_t j = 0; j < m; j++) sum[j] += expf(xs[c * I + j] - mx[j]);
            float lse[BLK];                                       /* log-sum-exp minus the max */
            for (int64_t j = 0; j < m; j++) lse[j] = (float)log(sum[j]);
            for (int64_t c = 0; c < C; c++)
                for (int64_t j = 0; j < m; j++) ys[c * I + j] = (xs[c * I + j] - mx[j]) - lse[j];
        } else {
            for (int64_t c = 0; c < C; c++)
                for (int64_t j = 0; j < m; j++) {
                    float e = expf(xs[c * I + j] - mx[j]);
                    ys[c * I + j] = e;
                    sum[j] += e;
                }
            float inv[BLK];
            for (int64_t j = 0; j < m; j++) inv[j] = (float)(1.0 / sum[j]);
            for (int64_t c = 0; c < C; c++)
                for (int64_t j = 0; j < m; j++) ys[c * I + j] *= inv[j];
        }
    }
    return ND_OK;
}

nd_status nd_softmax_f32(const nd_softmax_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return softmax_impl(p, out, in[0], 0);
}

nd_status nd_logsoftmax_f32(const nd_logsoftmax_params *p, float *out, const float *const *in,
                            const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return softmax_impl(p, out, in[0], 1);
}
