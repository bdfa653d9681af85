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
 * exp is csrc/nd_math.h's branch-free float32 one (~1 ulp, no libm), so the loops vectorize:
 * the block body is inlined into a portable, an AVX2 and an AVX-512 function (conv_dw.c's
 * pattern), picked from nd_ops()->level; no FMA contraction (-std=c11), so each ISA gives the
 * same bits. log-softmax's log is one libm call per position.
 */
#include "kernels/softmax.h"

#include <math.h>

#include "dispatch.h"
#include "nd_math.h"

#define BLK 64

/* one block: m <= BLK positions of one sample, C rows I apart */
static inline __attribute__((always_inline)) void sm_block(float *ys, const float *xs, int64_t C, int64_t I,
                                                           int64_t m, int logsm)
{
    if (I == 1) {   /* one contiguous row (vectors): the exps of BLK values at a time, then their sum */
        float mv = -INFINITY, t[BLK];
        double sv = 0.0;
        for (int64_t c = 0; c < C; c++) mv = xs[c] > mv ? xs[c] : mv;
        for (int64_t c0 = 0; c0 < C; c0 += BLK) {
            const int64_t k = C - c0 < BLK ? C - c0 : BLK;
            for (int64_t c = 0; c < k; c++) t[c] = nd_expf(xs[c0 + c] - mv);
            for (int64_t c = 0; c < k; c++) sv += t[c];
            if (!logsm)
                for (int64_t c = 0; c < k; c++) ys[c0 + c] = t[c];
        }
        if (logsm) {
            const float lse = (float)log(sv);
            for (int64_t c = 0; c < C; c++) ys[c] = (xs[c] - mv) - lse;
        } else {
            const float inv = (float)(1.0 / sv);
            for (int64_t c = 0; c < C; c++) ys[c] *= inv;
        }
        return;
    }
    float mx[BLK];
    double sum[BLK];     /* C terms summed one after another: in float32 a sum of C = 1000
                          * terms loses ~C·u = 6e-5 (numpy sums pairwise); double keeps it exact */
    for (int64_t j = 0; j < m; j++) { mx[j] = -INFINITY; sum[j] = 0.0; }
    for (int64_t c = 0; c < C; c++)
        for (int64_t j = 0; j < m; j++) mx[j] = xs[c * I + j] > mx[j] ? xs[c * I + j] : mx[j];
    if (logsm) {
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < m; j++) sum[j] += nd_expf(xs[c * I + j] - mx[j]);
        float lse[BLK];                                       /* log-sum-exp minus the max */
        for (int64_t j = 0; j < m; j++) lse[j] = (float)log(sum[j]);
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < m; j++) ys[c * I + j] = (xs[c * I + j] - mx[j]) - lse[j];
    } else {
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < m; j++) {
                float e = nd_expf(xs[c * I + j] - mx[j]);
                ys[c * I + j] = e;
                sum[j] += e;
            }
        float inv[BLK];
        for (int64_t j = 0; j < m; j++) inv[j] = (float)(1.0 / sum[j]);
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < m; j++) ys[c * I + j] *= inv[j];
    }
}

#define SM_ARGS float *ys, const float *xs, int64_t C, int64_t I, int64_t m, int logsm
typedef void (*sm_fn)(SM_ARGS);
#define DEFINE_SM(suffix, attr) attr static void sm_##suffix(SM_ARGS) { sm_block(ys, xs, C, I, m, logsm); }
ND_EACH_ISA(DEFINE_SM)

static sm_fn pick(void)
{
#if defined(__x86_64__) || defined(__i386__)
    switch (nd_ops()->level) {
    case ND_ISA_AVX512: return sm_avx512;
    case ND_ISA_AVX2: return sm_avx2;
    default: break;
    }
#endif
    return sm_portable;
}

static nd_status softmax_impl(const nd_softmax_params *p, float *out, const float *x, int logsm)
{
    if (p->n <= 0 || p->c <= 0 || p->inner <= 0) return ND_EINVAL;
    const int64_t C = p->c, I = p->inner;
    const int64_t nblk = (I + BLK - 1) / BLK, tasks = p->n * nblk;
    const sm_fn blk = pick();
    if (I == 1) {   /* vectors: a task is the rows of ~4K values, not one short row */
        const int64_t rows = C >= 4096 ? 1 : 4096 / C, ntask = (p->n + rows - 1) / rows;
#pragma omp parallel for schedule(dynamic, 1) if (p->n * C > 32768)
        for (int64_t t = 0; t < ntask; t++) {
            const int64_t b1 = (t + 1) * rows < p->n ? (t + 1) * rows : p->n;
            for (int64_t b = t * rows; b < b1; b++) blk(out + b * C, x + b * C, C, 1, 1, logsm);
        }
        return ND_OK;
    }
#pragma omp parallel for schedule(dynamic, 1) if (p->n * C * I > 32768)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / nblk, j0 = (t % nblk) * BLK;
        const int64_t m = I - j0 < BLK ? I - j0 : BLK;
        blk(out + b * C * I + j0, x + b * C * I + j0, C, I, m, logsm);
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
