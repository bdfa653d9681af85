/* train_loss.c — loss, accuracy count and d(mean loss)/d(output) in one pass.
 *
 * Shapes: CE logits x are (N,K,INNER) and labels (N,INNER) (INNER = H*W for per-pixel CE,
 * 1 for vectors); MSE / BCE output z and targets t are (N,SIZE). out = [d (like x or z) |
 * loss | correct]. Sums (the loss, softmax's denominator) are accumulated in double: the
 * loss of a 50000-image epoch or a 512x512 segmentation map is a sum of millions of terms.
 *
 * CE: for each position, m = max_k x_k, s = sum_k e^(x_k - m) (so exp never overflows and
 * s >= 1), lse = m + log s. With label smoothing eps (torch's definition) the target is
 * q = (1 - eps) one_hot(y) + eps / K, so
 *     loss = lse - (1 - eps) x_y - (eps / K) sum_k x_k,    d x_k = (softmax_k - q_k) / (N*INNER).
 * The eps term is left out when eps == 0, as torch does: a -inf logit then costs nothing
 * (0 * -inf would make the loss NaN). The positions are walked in blocks of up to BLK
 * neighbours sweeping the classes row by row (as softmax.c does), so per-pixel CE reads
 * contiguous rows; d holds e^(x_k - m) between the two passes (no workspace).
 * correct counts the positions whose first argmax is the label.
 *
 * BCE with logits: loss = max(z,0) - z t + log1p(e^-|z|) (never overflows), d z =
 * (sigmoid(z) - t) / count with sigmoid from the same e^-|z|; correct counts (z > 0) == (t > 0.5).
 * MSE: loss = mean (z - t)^2, d z = 2 (z - t) / count; correct is 0.
 *
 * NaN: a NaN output makes the loss NaN (and its d): the max skips it but e^(NaN - m) puts it
 * in s; BCE's max(z,0) drops it but -z t and log1p keep it. Labels were validated in Python
 * (netdsl/train/losses.py); a label outside [0, K) or not an integer still returns ND_EINVAL
 * here (never an out-of-range read) after the pass. Deliberately not here: class weights,
 * ignore_index, reductions other than the mean.
 */
#include "kernels/train_loss.h"

#include <math.h>

#define BLK 64

nd_status nd_loss_ce_f32(const nd_loss_ce_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->k < 2 || p->k > (1 << 24) || p->inner <= 0 ||
        !(p->label_smoothing >= 0.0 && p->label_smoothing <= 1.0))
        return ND_EINVAL;
    const int64_t K = p->k, I = p->inner, nblk = (I + BLK - 1) / BLK, tasks = p->n * nblk;
    const float *x = in[0], *lab = in[1];
    const double eps = p->label_smoothing, npos = (double)p->n * (double)I;
    const float inv = (float)(1.0 / npos);
    const float q_off = (float)(eps / (double)K), q_on = (float)(1.0 - eps + eps / (double)K);
    double loss = 0.0;
    int64_t correct = 0;
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+:loss, correct) reduction(|:bad) \
    if (p->n * K * I > 32768)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / nblk, j0 = (t % nblk) * BLK;
        const int64_t m = I - j0 < BLK ? I - j0 : BLK;
        const float *xs = x + b * K * I + j0, *ls = lab + b * I + j0;
        float *ds = out + b * K * I + j0;
        float mx[BLK], rs[BLK];
        double sum[BLK], sx[BLK];
        int64_t y[BLK], am[BLK];
        for (int64_t j = 0; j < m; j++) {
            const float l = ls[j];
            if (!(l >= 0.0f && l < (float)K) || l != floorf(l)) {
                bad = 1;
                y[j] = -1;
            } else {
                y[j] = (int64_t)l;
            }
            mx[j] = -INFINITY;
            am[j] = 0;
            sum[j] = 0.0;
            sx[j] = 0.0;
        }
        for (int64_t c = 0; c < K; c++)
            for (int64_t j = 0; j < m; j++) {
                const float v = xs[c * I + j];
                if (v > mx[j]) {
                    mx[j] = v;
                    am[j] = c;
                }
                sx[j] += v;
            }
        for (int64_t c = 0; c < K; c++)
            for (int64_t j = 0; j < m; j++) {
                const float e = expf(xs[c * I + j] - mx[j]);
                ds[c * I + j] = e;
                sum[j] += e;
            }
        for (int64_t j = 0; j < m; j++) {
            rs[j] = (float)(1.0 / sum[j]);
            if (y[j] < 0)
                continue;
            double l = (double)mx[j] + log(sum[j]) - (1.0 - eps) * (double)xs[y[j] * I + j];
            if (eps > 0.0)
                l -= eps / (double)K * sx[j];
            loss += l;
            correct += am[j] == y[j];
        }
        for (int64_t c = 0; c < K; c++)
            for (int64_t j = 0; j < m; j++)
                ds[c * I + j] = (ds[c * I + j] * rs[j] - (c == y[j] ? q_on : q_off)) * inv;
    }
    const int64_t total = p->n * K * I;
    out[total] = (float)(loss / npos);
    out[total + 1] = (float)correct;
    return bad ? ND_EINVAL : ND_OK;
}

nd_status nd_loss_mse_f32(const nd_loss_mse_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->size <= 0)
        return ND_EINVAL;
    const int64_t count = p->n * p->size;
    const float *z = in[0], *t = in[1];
    const float scale = (float)(2.0 / (double)count);
    double loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+:loss) if (count > 65536)
    for (int64_t i = 0; i < count; i++) {
        const float r = z[i] - t[i];
        out[i] = scale * r;
        loss += (double)r * (double)r;
    }
    out[count] = (float)(loss / (double)count);
    out[count + 1] = 0.0f;
    return ND_OK;
}

nd_status nd_loss_bce_f32(const nd_loss_bce_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->size <= 0)
        return ND_EINVAL;
    const int64_t count = p->n * p->size;
    const float *z = in[0], *t = in[1];
    const float inv = (float)(1.0 / (double)count);
    double loss = 0.0;
    int64_t correct = 0;
#pragma omp parallel for schedule(static) reduction(+:loss, correct) if (count > 65536)
    for (int64_t i = 0; i < count; i++) {
        const float zi = z[i], ti = t[i];
        const float e = expf(-fabsf(zi));                  /* in (0, 1]: no overflow */
        loss += (double)(zi > 0.0f ? zi : 0.0f) - (double)zi * (double)ti + log1p((double)e);
        const float s = zi >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        out[i] = (s - ti) * inv;
        correct += (zi > 0.0f) == (ti > 0.5f);
    }
    out[count] = (float)(loss / (double)count);
    out[count + 1] = (float)correct;
    return ND_OK;
}
