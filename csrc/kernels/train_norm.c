/* train_norm.c — BatchNorm with batch statistics (forward and backward), LRN backward,
 * Dropout (seeded mask, forward and backward), float32 NCHW.
 *
 * BatchNorm: x is (N,C,HW) (vectors (N,F): hw = 1), M = N*HW values per channel. Training
 * forward, per channel: mean, biased var = mean((x - mean)^2) (two passes, in double: one
 * pass of sum and sum of squares cancels when |mean| >> std), inv_std = 1/sqrt(var + eps),
 * y = (x - mean) inv_std gamma + beta; saved = mean[C], inv_std[C]. The running statistics
 * (the "buffers" input: running_mean[C], running_var[C]) are updated IN PLACE through
 * in[1], const cast away — that memory is the training arena's buffer region:
 *     running = (1 - momentum) running + momentum batch,  batch var UNBIASED (M/(M-1)),
 * as torch.nn.functional.batch_norm(training=True) does. M = 1 is refused (ND_EINVAL;
 * PyTorch raises too: no variance from one value).
 * Backward, with xhat = (x - mean) inv_std from the saved statistics:
 *     dgamma = sum(dy xhat), dbeta = sum(dy),
 *     dx = gamma inv_std (dy - sum(dy)/M - xhat sum(dy xhat)/M).
 * Each channel's sums run in double over its N planes; parallel over channels (the planes
 * of one channel are N strided runs of HW floats), so no reduction crosses threads and the
 * result does not depend on the thread count. NaN anywhere in a channel's x or dy makes
 * that channel's sums NaN, and so its whole dx (PyTorch does the same).
 *
 * LRN backward (PyTorch LocalResponseNorm, norm.c): D_c = k + a sum_{c' in W(c)} x_c'^2,
 * a = alpha/size, W(c) = [c - size/2, c + (size-1)/2] clipped, y_c = x_c D_c^-beta. Then
 *     dx_j = dy_j D_j^-beta - 2 a beta x_j sum_{c : j in W(c)} dy_c x_c D_c^(-beta-1),
 * and j in W(c) iff c in [j - (size-1)/2, j + size/2] (the window reversed: even sizes are
 * lopsided). Blocks of pixels are swept channel by channel as in the forward; each channel's
 * D^-beta and t_c = dy_c x_c D_c^(-beta-1) go into a ring of the last min(size, C) channels
 * on the stack (RING floats each), and channel j is finished as soon as t of j + size/2 is
 * known. Window sums are recomputed, not slid (a sliding sum subtracts large squares). One
 * powf per value. min(size, C) > RING is ND_EUNSUPPORTED (the Python rule refuses it first).
 *
 * Dropout: value e (flat index over the whole batch) is kept iff nd_rand_uniform(seed, e)
 * >= p, so P(keep) = 1 - p (to 2^-24) and the mask depends on (seed, e) only — not on the
 * thread count or the loop order. saved = scale = keep ? 1/(1-p) : 0; y = x scale, dx =
 * dy scale: multiplications, as PyTorch's dropout, so a NaN or inf meets the zero and gives
 * NaN (x scale is NaN where x is inf and dropped).
 * Not done here: eval-mode (frozen) BatchNorm backward, cumulative running averages
 * (PyTorch's momentum=None), SIMD (these run once per training step).
 */
#include "kernels/train_norm.h"

#include <math.h>
#include <string.h>

#include "dispatch.h"
#include "nd_random.h"

#define BLK 64
#define RING 4096

static inline int bn_bad(int64_t n, int64_t c, int64_t hw)
{
    return n <= 0 || c <= 0 || hw <= 0 || !ND_PROD_OK(n, c, hw) || n * hw < 2;
}

nd_status nd_batchnorm_train_f32(const nd_batchnorm_train_params *p, float *out, const float *const *in,
                                 const float *w, const float *bias, float *ws)
{
    (void)bias; (void)ws;
    if (bn_bad(p->n, p->c, p->hw) || !w || !(p->eps >= 0.0) || !(p->momentum >= 0.0 && p->momentum <= 1.0))
        return ND_EINVAL;
    const int64_t N = p->n, C = p->c, HW = p->hw, M = N * HW;
    const float *x = in[0];
    float *run_mean = (float *)in[1], *run_var = run_mean + C;     /* the arena's buffers */
    float *y = out, *saved = out + N * C * HW;
    const double mom = p->momentum, eps = p->eps;
#pragma omp parallel for schedule(dynamic, 1) if (N * C * HW > 131072)
    for (int64_t c = 0; c < C; c++) {
        double s = 0.0, ss = 0.0;
        for (int64_t b = 0; b < N; b++) {
            const float *xp = x + (b * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) s += xp[i];
        }
        const double mean = s / (double)M;
        for (int64_t b = 0; b < N; b++) {
            const float *xp = x + (b * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) {
                const double d = xp[i] - mean;
                ss += d * d;
            }
        }
        const double var = ss / (double)M, inv = 1.0 / sqrt(var + eps);
        const double g = w[c], be = w[C + c];
        for (int64_t b = 0; b < N; b++) {
            const float *xp = x + (b * C + c) * HW;
            float *yp = y + (b * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) yp[i] = (float)((xp[i] - mean) * inv * g + be);
        }
        saved[c] = (float)mean;
        saved[C + c] = (float)inv;
        run_mean[c] = (float)((1.0 - mom) * run_mean[c] + mom * mean);
        run_var[c] = (float)((1.0 - mom) * run_var[c] + mom * (ss / (double)(M - 1)));
    }
    return ND_OK;
}

/* sum(dy) and sum(dy xhat) of channel c, in double */
static inline void bn_sums(const nd_batchnorm_bwd_params *p, int64_t c, const float *x, const float *dy,
                           double mean, double inv, double *sdy, double *sdyx)
{
    const int64_t C = p->c, HW = p->hw;
    double a = 0.0, b2 = 0.0;
    for (int64_t b = 0; b < p->n; b++) {
        const float *xp = x + (b * C + c) * HW, *gp = dy + (b * C + c) * HW;
        for (int64_t i = 0; i < HW; i++) {
            a += gp[i];
            b2 += gp[i] * ((xp[i] - mean) * inv);
        }
    }
    *sdy = a;
    *sdyx = b2;
}

nd_status nd_batchnorm_bwd_data_f32(const nd_batchnorm_bwd_params *p, float *out, const float *const *in,
                                    const float *w, const float *bias, float *ws)
{
    (void)bias; (void)ws;
    if (bn_bad(p->n, p->c, p->hw) || !w) return ND_EINVAL;
    const int64_t N = p->n, C = p->c, HW = p->hw;
    const double M = (double)(N * HW);
    const float *x = in[0], *dy = in[1], *saved = in[2];
#pragma omp parallel for schedule(dynamic, 1) if (N * C * HW > 131072)
    for (int64_t c = 0; c < C; c++) {
        const double mean = saved[c], inv = saved[C + c];
        double sdy, sdyx;
        bn_sums(p, c, x, dy, mean, inv, &sdy, &sdyx);
        const double k = w[c] * inv, mdy = sdy / M, mdyx = sdyx / M;
        for (int64_t b = 0; b < N; b++) {
            const float *xp = x + (b * C + c) * HW, *gp = dy + (b * C + c) * HW;
            float *dp = out + (b * C + c) * HW;
            for (int64_t i = 0; i < HW; i++)
                dp[i] = (float)(k * (gp[i] - mdy - (xp[i] - mean) * inv * mdyx));
        }
    }
    return ND_OK;
}

nd_status nd_batchnorm_bwd_params_f32(const nd_batchnorm_bwd_params *p, float *out, const float *const *in,
                                      const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bn_bad(p->n, p->c, p->hw)) return ND_EINVAL;
    const int64_t C = p->c;
    const float *x = in[0], *dy = in[1], *saved = in[2];
#pragma omp parallel for schedule(dynamic, 1) if (p->n * C * p->hw > 131072)
    for (int64_t c = 0; c < C; c++) {
        double sdy, sdyx;
        bn_sums(p, c, x, dy, saved[c], saved[C + c], &sdy, &sdyx);
        out[c] = (float)sdyx;          /* dgamma */
        out[C + c] = (float)sdy;       /* dbeta */
    }
    return ND_OK;
}

nd_status nd_lrn_bwd_data_f32(const nd_lrn_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0 || p->size <= 0 || !ND_PROD_OK(p->n, p->c, p->hw)) return ND_EINVAL;
    const int64_t C = p->c, HW = p->hw, before = p->size / 2, after = (p->size - 1) / 2;
    const int64_t depth = p->size < C ? p->size : C;               /* live channels of the ring */
    if (depth > RING) return ND_EUNSUPPORTED;
    const int64_t bw = RING / depth < BLK ? RING / depth : BLK;   /* pixels per block */
    const int64_t nblk = (HW + bw - 1) / bw, tasks = p->n * nblk;
    const float a = p->alpha / (float)p->size, k = p->k, nb = -p->beta, cf = 2.0f * a * p->beta;
    const float *x = in[0], *dy = in[1];
#pragma omp parallel for schedule(dynamic, 1) if (p->n * C * HW * p->size > 262144)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / nblk, j0 = (t % nblk) * bw;
        const int64_t m = HW - j0 < bw ? HW - j0 : bw;
        const float *xs = x + b * C * HW + j0, *gs = dy + b * C * HW + j0;
        float *ds = out + b * C * HW + j0;
        float pw[RING], tr[RING];      /* ring slots of m floats: D^-beta and t per channel */
        for (int64_t c = 0; c < C + before; c++) {
            if (c < C) {
                const int64_t c0 = c - before < 0 ? 0 : c - before;
                const int64_t c1 = c + after >= C ? C - 1 : c + after;
                float *ps = pw + (c % depth) * m, *ts = tr + (c % depth) * m;
                for (int64_t j = 0; j < m; j++) ps[j] = 0.0f;
                for (int64_t cc = c0; cc <= c1; cc++)
                    for (int64_t j = 0; j < m; j++) ps[j] += xs[cc * HW + j] * xs[cc * HW + j];
                for (int64_t j = 0; j < m; j++) {
                    const float d = k + a * ps[j], q = powf(d, nb);
                    ps[j] = q;
                    ts[j] = gs[c * HW + j] * xs[c * HW + j] * (q / d);
                }
            }
            const int64_t jc = c - before;                           /* the channel now complete */
            if (jc < 0) continue;
            const int64_t lo = jc - after < 0 ? 0 : jc - after, hi = c < C ? c : C - 1;
            float acc[BLK];
            for (int64_t j = 0; j < m; j++) acc[j] = 0.0f;
            for (int64_t cc = lo; cc <= hi; cc++) {
                const float *ts = tr + (cc % depth) * m;
                for (int64_t j = 0; j < m; j++) acc[j] += ts[j];
            }
            const float *ps = pw + (jc % depth) * m;
            for (int64_t j = 0; j < m; j++)
                ds[jc * HW + j] = gs[jc * HW + j] * ps[j] - cf * xs[jc * HW + j] * acc[j];
        }
    }
    return ND_OK;
}

nd_status nd_dropout_train_f32(const nd_dropout_train_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->size <= 0 || !ND_PROD_OK(p->n, p->size) || !(p->p >= 0.0f && p->p < 1.0f))
        return ND_EINVAL;
    const int64_t total = p->n * p->size;
    const float drop = p->p, scale = 1.0f / (1.0f - p->p);
    const uint64_t seed = p->seed;
    const float *x = in[0];
    float *y = out, *mask = out + total;
#pragma omp parallel for schedule(static) if (total > 262144)
    for (int64_t e = 0; e < total; e++) {
        const float s = nd_rand_uniform(seed, (uint64_t)e) >= drop ? scale : 0.0f;
        mask[e] = s;
        y[e] = x[e] * s;
    }
    return ND_OK;
}

nd_status nd_dropout_bwd_data_f32(const nd_dropout_bwd_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->size <= 0 || !ND_PROD_OK(p->n, p->size)) return ND_EINVAL;
    const int64_t total = p->n * p->size;
    const float *dy = in[0], *mask = in[1];
#pragma omp parallel for schedule(static) if (total > 262144)
    for (int64_t e = 0; e < total; e++) out[e] = dy[e] * mask[e];
    return ND_OK;
}
