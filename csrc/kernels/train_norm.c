/* train_norm.c — BatchNorm with batch statistics (forward and backward), LRN backward,
 * Dropout (seeded mask, forward and backward), float32 NCHW.
 *
 * BatchNorm: x is (N,C,HW) (vectors (N,F): hw = 1), M = N*HW values per channel. Training
 * forward, per channel: mean, biased var = mean((x - mean)^2) (two passes: one pass of sum and
 * sum of squares cancels when |mean| >> std), inv_std = 1/sqrt(var + eps),
 * y = (x - mean) inv_std gamma + beta; saved = mean[C], inv_std[C]. The running statistics
 * (the "buffers" input: running_mean[C], running_var[C]) are updated IN PLACE through
 * in[1], const cast away — that memory is the training arena's buffer region:
 *     running = (1 - momentum) running + momentum batch,  batch var UNBIASED (M/(M-1)),
 * as torch.nn.functional.batch_norm(training=True) does. M = 1 is refused (ND_EINVAL;
 * PyTorch raises too: no variance from one value).
 * Backward, with xhat = (x - mean) inv_std from the saved statistics:
 *     dgamma = sum(dy xhat) = inv_std sum(dy (x - mean)), dbeta = sum(dy),
 *     dx = gamma inv_std (dy - sum(dy)/M - xhat sum(dy xhat)/M).
 * Sums: float partial sums, vectorized, each taking ~16 values (48 at most) before it goes
 * into double (a plane of >= 32 floats: 32 lanes per channel, lane k taking the plane's
 * elements k mod 32; smaller planes: one float sum per position over up to 16 images), then
 * the doubles in a fixed order. The deviations x - mean are float, with the forward's double
 * mean split into two floats (x - hi is exact near the mean, then - lo), so no cancellation
 * when |mean| >> std; y and dx are float arithmetic on per-channel float constants. A float
 * partial sum overflows where a double would not only for |x| > ~5e36 or |x - mean| > ~2e18
 * (PyTorch's float sums too). Every body is one C source compiled per ISA (ND_EACH_ISA,
 * picked from nd_ops()->level), with no FMA contraction, so every ISA gives the same bits.
 * Threads: over blocks of channels whose partition depends on the shape only (no reduction
 * crosses threads: the result does not depend on the thread count), swept image by image,
 * sized to stay in L2 between the passes; one thread below 131072 values (ResNet-18's BN
 * at 32x32 batch 32, all 20 layers, 2 threads: from 8192 values 0.65 ms quiet but 4.4 ms with one
 * core busy, from 131072 0.77 / 2.2 ms; 1 thread 1.05 ms). NaN anywhere in a
 * channel's x or dy makes that channel's sums NaN, and so its whole dx (PyTorch does the
 * same); NaN in x makes that channel's y and running statistics NaN.
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
 * (PyTorch's momentum=None), SIMD for LRN backward and Dropout (plain loops; these run once
 * per training step), splitting one channel's BatchNorm over threads (C < threads leaves
 * threads idle).
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

#define INLINE static inline __attribute__((always_inline))
#define LANES 32        /* float partial sums per channel (forward) */
#define DLANES 16       /* double partial sums per channel (backward) */
#define SPAN 512        /* floats a channel's float lanes take before they go to double */
#define SMALL_R 16      /* images the small-plane path's float sums take before they go to double */
#define PBLK 256        /* positions per block in the small-plane path */
#define CBMAX 32        /* channels per block in the row path */
#define BLK_FLOATS 32768   /* a row-path block's N*cb*HW (128 KB: in L2 across the passes) */
#define BN_PAR_MIN 131072  /* values per call from which threads are used (see the top) */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Row accumulators, n <= SPAN floats into a channel's LANES float lanes f: lane k takes
 * r[32j + k], a last 16 go to lanes 0-15, the rest one a lane from lane 0. The order depends
 * on n only: the same on every ISA and thread count. The lane loops are `omp simd` (their
 * iterations are independent): left alone, GCC unrolls them and vectorizes the outer loop
 * instead, with interleaved loads and permutes; GNU C vectors of 16 floats were no better
 * (AVX2 split them through the stack). Without OpenMP the pragma is ignored: same sums. */
#define LANE_LOOP(n_, body)                                                                   \
    _Pragma("omp simd") for (int k = 0; k < (n_); k++) body

INLINE void acc_sum(float *f, const float *r, int64_t n)
{
    float a[LANES];
    for (int k = 0; k < LANES; k++) a[k] = f[k];
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) LANE_LOOP(32, { a[k] += r[i + k]; });
    if (i + 16 <= n) { LANE_LOOP(16, { a[k] += r[i + k]; }); i += 16; }
    for (int k = 0; i < n; i++, k++) a[k] += r[i];
    for (int k = 0; k < LANES; k++) f[k] = a[k];
}

/* ((r - mh) - ml)^2: the mean as two floats, so r - mh is exact near the mean */
INLINE void acc_ssd(float *f, const float *r, int64_t n, float mh, float ml)
{
    float a[LANES];
    for (int k = 0; k < LANES; k++) a[k] = f[k];
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) LANE_LOOP(32, { const float d = (r[i + k] - mh) - ml; a[k] += d * d; });
    if (i + 16 <= n) { LANE_LOOP(16, { const float d = (r[i + k] - mh) - ml; a[k] += d * d; }); i += 16; }
    for (int k = 0; i < n; i++, k++) {
        const float d = (r[i] - mh) - ml;
        a[k] += d * d;
    }
    for (int k = 0; k < LANES; k++) f[k] = a[k];
}

/* The backward's sums, in DLANES double lanes (lane k takes g[16j + k], the tail one a lane):
 * sa += g, sb += g (x - m), each term exact in double. Float sums were 4x cheaper here but a
 * dbeta that cancels to ~0 (a BatchNorm feeding a BatchNorm or a softmax) kept ~1e-6 of
 * rounding, and the training step's tests ask for the double result. */
INLINE void acc_bsums(double *sa, double *sb, const float *x, const float *g, int64_t n, float m)
{
    double a[DLANES], b[DLANES];
    const double md = m;
    for (int k = 0; k < DLANES; k++) a[k] = sa[k], b[k] = sb[k];
    int64_t i = 0;
    for (; i + DLANES <= n; i += DLANES)
        LANE_LOOP(DLANES, { a[k] += (double)g[i + k]; b[k] += (double)g[i + k] * ((double)x[i + k] - md); });
    for (int k = 0; i < n; i++, k++) a[k] += (double)g[i], b[k] += (double)g[i] * ((double)x[i] - md);
    for (int k = 0; k < DLANES; k++) sa[k] = a[k], sb[k] = b[k];
}

/* d[k] += float lane k, the lanes zeroed */
INLINE void flush(double *d, float *f)
{
    for (int k = 0; k < LANES; k++) d[k] += (double)f[k], f[k] = 0.0f;
}

/* the first L (a power of 2 >= 4) double lanes summed in a fixed tree */
INLINE double lanes_total(const double *d, int L)
{
    double t[LANES / 2];
    for (int k = 0; k < L / 2; k++) t[k] = d[k] + d[k + L / 2];
    for (int h = L / 4; h >= 1; h /= 2)
        for (int k = 0; k < h; k++) t[k] += t[k + h];
    return t[0];
}

/* The tasks: blocks of channels, the same for every thread count. A block's values, N strided
 * runs of cb*HW floats, are swept image by image (contiguous runs the prefetchers follow; one
 * channel's N rows, C*HW floats apart, alias in L1 sets), and a row-path block is sized to
 * stay in L2 across the passes. Planes of >= LANES floats: a channel's rows go into its float
 * lanes (acc_*), which go to its double lanes every SPAN floats (every R = SPAN/HW rows, or
 * every SPAN of a longer row). Smaller planes: each of the block's cb*HW <= PBLK positions
 * keeps a float sum over SMALL_R images at a time, then a double one; a channel's HW
 * positions are then added in order. */
static inline int64_t bn_cb(int64_t n, int64_t c, int64_t hw)
{
    int64_t cb = hw >= LANES ? BLK_FLOATS / (n * hw) : PBLK / hw;
    cb = cb < 1 ? 1 : hw >= LANES && cb > CBMAX ? CBMAX : cb;
    return cb < c ? cb : c;
}

/* whether image b ends a run of float sums (row path: R = SPAN/HW rows; a row longer than SPAN
 * flushes every piece) */
static inline int flush_after(int64_t b, int64_t n, int64_t r) { return (b + 1) % r == 0 || b == n - 1; }

INLINE void bn_fwd_body(const nd_batchnorm_train_params *p, float *y, float *saved, float *run_mean,
                        float *run_var, const float *x, const float *w, int64_t t)
{
    const int64_t N = p->n, C = p->c, HW = p->hw, M = N * HW, CB = bn_cb(N, C, HW);
    const int64_t c0 = t * CB, cb = min64(C - c0, CB);
    const double mom = p->momentum, eps = p->eps;
    double mean[PBLK], ss[PBLK];      /* per channel of the block (cb <= PBLK either way) */
    if (HW >= LANES) {
        const int64_t R = HW >= SPAN ? 1 : SPAN / HW;
        float fa[CBMAX][LANES];
        double da[CBMAX][LANES];
        float mh[CBMAX], ml[CBMAX], kf[CBMAX], bf[CBMAX];
        for (int pass = 0; pass < 2; pass++) {
            for (int64_t c = 0; c < cb; c++) {
                for (int k = 0; k < LANES; k++) fa[c][k] = 0.0f, da[c][k] = 0.0;
            }
            for (int64_t b = 0; b < N; b++) {
                const int fl = flush_after(b, N, R);
                for (int64_t c = 0; c < cb; c++) {
                    const float *r = x + (b * C + c0 + c) * HW;
                    for (int64_t i0 = 0; i0 < HW; i0 += SPAN) {
                        const int64_t m = min64(HW - i0, SPAN);
                        if (pass == 0) acc_sum(fa[c], r + i0, m);
                        else acc_ssd(fa[c], r + i0, m, mh[c], ml[c]);
                        if (fl || HW > SPAN) flush(da[c], fa[c]);
                    }
                }
            }
            for (int64_t c = 0; c < cb; c++) {
                if (pass == 0) {
                    mean[c] = lanes_total(da[c], LANES) / (double)M;
                    mh[c] = (float)mean[c], ml[c] = (float)(mean[c] - mh[c]);
                } else {
                    ss[c] = lanes_total(da[c], LANES);
                    kf[c] = (float)(w[c0 + c] / sqrt(ss[c] / (double)M + eps)), bf[c] = w[C + c0 + c];
                }
            }
        }
        for (int64_t b = 0; b < N; b++)
            for (int64_t c = 0; c < cb; c++) {
                const float *xp = x + (b * C + c0 + c) * HW;
                float *yp = y + (b * C + c0 + c) * HW;
                const float h = mh[c], l = ml[c], k = kf[c], be = bf[c];
                for (int64_t i = 0; i < HW; i++) yp[i] = ((xp[i] - h) - l) * k + be;
            }
    } else {
        const int64_t span = cb * HW;
        float fa[PBLK], mh[PBLK], ml[PBLK], kf[PBLK], bf[PBLK];
        double da[PBLK];
        for (int pass = 0; pass < 2; pass++) {
            for (int64_t j = 0; j < span; j++) fa[j] = 0.0f, da[j] = 0.0;
            for (int64_t b = 0; b < N; b++) {
                const float *r = x + (b * C + c0) * HW;
                if (pass == 0)
                    for (int64_t j = 0; j < span; j++) fa[j] += r[j];
                else
                    for (int64_t j = 0; j < span; j++) {
                        const float d = (r[j] - mh[j]) - ml[j];
                        fa[j] += d * d;
                    }
                if (flush_after(b, N, SMALL_R))
                    for (int64_t j = 0; j < span; j++) da[j] += (double)fa[j], fa[j] = 0.0f;
            }
            for (int64_t c = 0; c < cb; c++) {
                double s = 0.0;
                for (int64_t i = 0; i < HW; i++) s += da[c * HW + i];
                float h, l, k = 0.0f, be = 0.0f;
                if (pass == 0) {
                    mean[c] = s / (double)M;
                    h = (float)mean[c], l = (float)(mean[c] - h);
                } else {
                    ss[c] = s;
                    h = mh[c * HW], l = ml[c * HW];
                    k = (float)(w[c0 + c] / sqrt(s / (double)M + eps)), be = w[C + c0 + c];
                }
                for (int64_t i = 0; i < HW; i++) {
                    const int64_t j = c * HW + i;
                    mh[j] = h, ml[j] = l, kf[j] = k, bf[j] = be;
                }
            }
        }
        for (int64_t b = 0; b < N; b++) {
            const float *r = x + (b * C + c0) * HW;
            float *yp = y + (b * C + c0) * HW;
            for (int64_t j = 0; j < span; j++) yp[j] = ((r[j] - mh[j]) - ml[j]) * kf[j] + bf[j];
        }
    }
    for (int64_t c = 0; c < cb; c++) {
        const double m = mean[c], s2 = ss[c];
        saved[c0 + c] = (float)m;
        saved[C + c0 + c] = (float)(1.0 / sqrt(s2 / (double)M + eps));
        run_mean[c0 + c] = (float)((1.0 - mom) * run_mean[c0 + c] + mom * m);
        run_var[c0 + c] = (float)((1.0 - mom) * run_var[c0 + c] + mom * (s2 / (double)(M - 1)));
    }
}

/* Backward of task t (the forward's blocks): each channel's sum(dy) and sum(dy xhat) =
 * inv sum(dy (x - mean)), then dparams (when dp) and dx (when dx) */
INLINE void bn_bwd_body(const nd_batchnorm_bwd_params *p, float *dx, float *dp, const float *x,
                        const float *dy, const float *saved, const float *w, int64_t t)
{
    const int64_t N = p->n, C = p->c, HW = p->hw, CB = bn_cb(N, C, HW);
    const int64_t c0 = t * CB, cb = min64(C - c0, CB);
    const double M = (double)(N * HW);
    double sdy[PBLK], sdyx[PBLK];
    float kf[PBLK], mf[PBLK], mdf[PBLK], qf[PBLK];     /* per channel (row path), per position */
    if (HW >= LANES) {
        double da[CBMAX][DLANES], db[CBMAX][DLANES];
        for (int64_t c = 0; c < cb; c++)
            for (int k = 0; k < DLANES; k++) da[c][k] = db[c][k] = 0.0;
        for (int64_t b = 0; b < N; b++)
            for (int64_t c = 0; c < cb; c++) {
                const int64_t o = (b * C + c0 + c) * HW;
                acc_bsums(da[c], db[c], x + o, dy + o, HW, saved[c0 + c]);
            }
        for (int64_t c = 0; c < cb; c++) {
            sdy[c] = lanes_total(da[c], DLANES);
            sdyx[c] = lanes_total(db[c], DLANES) * (double)saved[C + c0 + c];
        }
        if (dx) {
            for (int64_t c = 0; c < cb; c++) {
                const double inv = saved[C + c0 + c];
                kf[c] = (float)(w[c0 + c] * inv), mdf[c] = (float)(sdy[c] / M);
                qf[c] = (float)(inv * (sdyx[c] / M));
            }
            for (int64_t b = 0; b < N; b++)
                for (int64_t c = 0; c < cb; c++) {
                    const int64_t o = (b * C + c0 + c) * HW;
                    const float *xp = x + o, *gp = dy + o;
                    float *d = dx + o;
                    const float k = kf[c], m = saved[c0 + c], md = mdf[c], q = qf[c];
                    for (int64_t i = 0; i < HW; i++) d[i] = k * ((gp[i] - md) - (xp[i] - m) * q);
                }
        }
    } else {
        const int64_t span = cb * HW;
        double da[PBLK], db[PBLK], mp[PBLK];
        for (int64_t j = 0; j < span; j++) {
            da[j] = db[j] = 0.0;
            mf[j] = saved[c0 + j / HW], mp[j] = mf[j];
        }
        for (int64_t b = 0; b < N; b++) {
            const float *xr = x + (b * C + c0) * HW, *gr = dy + (b * C + c0) * HW;
            for (int64_t j = 0; j < span; j++)
                da[j] += (double)gr[j], db[j] += (double)gr[j] * ((double)xr[j] - mp[j]);
        }
        for (int64_t c = 0; c < cb; c++) {
            double s = 0.0, s2 = 0.0;
            for (int64_t i = 0; i < HW; i++) s += da[c * HW + i], s2 += db[c * HW + i];
            sdy[c] = s;
            sdyx[c] = s2 * (double)saved[C + c0 + c];
        }
        if (dx) {
            for (int64_t c = 0; c < cb; c++) {
                const double inv = saved[C + c0 + c];
                const float k = (float)(w[c0 + c] * inv), md = (float)(sdy[c] / M);
                const float q = (float)(inv * (sdyx[c] / M));
                for (int64_t i = 0; i < HW; i++) {
                    const int64_t j = c * HW + i;
                    kf[j] = k, mdf[j] = md, qf[j] = q;
                }
            }
            for (int64_t b = 0; b < N; b++) {
                const float *xr = x + (b * C + c0) * HW, *gr = dy + (b * C + c0) * HW;
                float *dr = dx + (b * C + c0) * HW;
                for (int64_t j = 0; j < span; j++)
                    dr[j] = kf[j] * ((gr[j] - mdf[j]) - (xr[j] - mf[j]) * qf[j]);
            }
        }
    }
    if (dp)
        for (int64_t c = 0; c < cb; c++) {
            dp[c0 + c] = (float)sdyx[c];        /* dgamma */
            dp[C + c0 + c] = (float)sdy[c];     /* dbeta */
        }
}

/* ---------------------------------------------------------------- the per-ISA copies */

#define FWD_ARGS const nd_batchnorm_train_params *p, float *y, float *saved, float *rm, float *rv, \
                 const float *x, const float *w, int64_t t
#define BWD_ARGS const nd_batchnorm_bwd_params *p, float *dx, float *dp, const float *x, const float *dy, \
                 const float *saved, const float *w, int64_t t

typedef struct {
    void (*fwd)(FWD_ARGS);
    void (*bwd)(BWD_ARGS);
} bn_ops;

#define DEFINE_ISA(suffix, attr)                                                                    \
    attr static void fwd_##suffix(FWD_ARGS) { bn_fwd_body(p, y, saved, rm, rv, x, w, t); }        \
    attr static void bwd_##suffix(BWD_ARGS) { bn_bwd_body(p, dx, dp, x, dy, saved, w, t); }        \
    static const bn_ops ops_##suffix = {fwd_##suffix, bwd_##suffix};

ND_EACH_ISA(DEFINE_ISA)

static const bn_ops *pick(void) { return ND_PICK_OPS(ops_); }

/* tasks of a (N, C, HW) call: its blocks of channels */
static inline int64_t bn_tasks(int64_t n, int64_t c, int64_t hw)
{
    const int64_t cb = bn_cb(n, c, hw);
    return (c + cb - 1) / cb;
}

nd_status nd_batchnorm_train_f32(const nd_batchnorm_train_params *p, float *out, const float *const *in,
                                 const float *w, const float *bias, float *ws)
{
    (void)bias; (void)ws;
    if (bn_bad(p->n, p->c, p->hw) || !w || !(p->eps >= 0.0) || !(p->momentum >= 0.0 && p->momentum <= 1.0))
        return ND_EINVAL;
    const bn_ops *o = pick();
    const int64_t N = p->n, C = p->c, HW = p->hw, T = bn_tasks(N, C, HW);
    const float *x = in[0];
    float *run_mean = (float *)in[1], *run_var = run_mean + C;     /* the arena's buffers */
    float *y = out, *saved = out + N * C * HW;
#pragma omp parallel for schedule(dynamic, 1) if (T > 1 && N * C * HW >= BN_PAR_MIN)
    for (int64_t t = 0; t < T; t++) o->fwd(p, y, saved, run_mean, run_var, x, w, t);
    return ND_OK;
}

nd_status nd_batchnorm_bwd_data_f32(const nd_batchnorm_bwd_params *p, float *out, const float *const *in,
                                    const float *w, const float *bias, float *ws)
{
    (void)bias; (void)ws;
    if (bn_bad(p->n, p->c, p->hw) || !w) return ND_EINVAL;
    const bn_ops *o = pick();
    const int64_t T = bn_tasks(p->n, p->c, p->hw);
#pragma omp parallel for schedule(dynamic, 1) if (T > 1 && p->n * p->c * p->hw >= BN_PAR_MIN)
    for (int64_t t = 0; t < T; t++) o->bwd(p, out, NULL, in[0], in[1], in[2], w, t);
    return ND_OK;
}

nd_status nd_batchnorm_bwd_params_f32(const nd_batchnorm_bwd_params *p, float *out, const float *const *in,
                                      const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (bn_bad(p->n, p->c, p->hw)) return ND_EINVAL;
    const bn_ops *o = pick();
    const int64_t T = bn_tasks(p->n, p->c, p->hw);
#pragma omp parallel for schedule(dynamic, 1) if (T > 1 && p->n * p->c * p->hw >= BN_PAR_MIN)
    for (int64_t t = 0; t < T; t++) o->bwd(p, NULL, out, in[0], in[1], in[2], NULL, t);
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
