/* pool.c — window pools and global pools, float32 NCHW.
 *
 * x is (N,C,H,W), y is (N,C,OH,OW). Output cell (oy,ox) looks at padded rows
 * [oy*sh - pad_t, +kh) and columns [ox*sw - pad_l, +kw), clipped to the input
 * for reading. Padding semantics follow PyTorch:
 *   max/min     padded cells never win (PyTorch pads max with -inf);
 *   avg         padded cells are zeros; the divisor counts them only with
 *               count_include_pad, and then only up to pad_b/pad_r — the extra
 *               cells a ceil_mode window hangs past the padding never count;
 *   stochastic  (inference, Zeiler & Fergus) sum(a_i * p_i), p_i = a_i/sum(a),
 *               over the real cells only; 0 when the window sums to 0.
 * A window with no real cell (only possible with pad >= kernel, which PyTorch
 * forbids) gives 0 for every pool.
 *
 * Parallel over the N*C planes: they are independent, usually many, and one
 * plane of a typical CNN fits in L2, so overlapping windows reread rows from
 * cache; no tiling. Not done here: dilation, NHWC, argmax indices.
 */
#include "kernels/pool.h"

#include <math.h>
#include <string.h>

enum { POOL_MAX, POOL_MIN, POOL_AVG, POOL_STOCH };

/* The clipped range [*lo, *hi) of a window starting at padded index o*s - pad. */
static inline void window_range(int64_t o, int64_t s, int64_t pad, int64_t k, int64_t size,
                                int64_t *lo, int64_t *hi, int64_t *start)
{
    int64_t a = o * s - pad, b = a + k;
    *start = a;
    *lo = a < 0 ? 0 : a;
    *hi = b > size ? size : b;
}

/* `op` is a constant at every call site, so the switch folds away once inlined. */
static inline __attribute__((always_inline)) nd_status
pool2d(const nd_pool_params *p, float *out, const float *in, int op)
{
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oh <= 0 || p->ow <= 0 ||
        p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0)
        return ND_EINVAL;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    /* The divisor limit for count_include_pad: the padded extent, not the ceil overhang. */
    const int64_t hp = H + p->pad_b, wp = W + p->pad_r;
#pragma omp parallel for schedule(static) if (planes * OH * OW * p->kh * p->kw > 32768)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *x = in + pc * H * W;
        float *y = out + pc * OH * OW;
        for (int64_t oy = 0; oy < OH; oy++) {
            int64_t y0, y1, ys;
            window_range(oy, p->sh, p->pad_t, p->kh, H, &y0, &y1, &ys);
            for (int64_t ox = 0; ox < OW; ox++) {
                int64_t x0, x1, xs;
                window_range(ox, p->sw, p->pad_l, p->kw, W, &x0, &x1, &xs);
                float r = 0.0f;
                if (y0 < y1 && x0 < x1) {
                    switch (op) {
                    case POOL_MAX: {
                        float m = -INFINITY;
                        for (int64_t i = y0; i < y1; i++)
                            for (int64_t j = x0; j < x1; j++) {
                                float v = x[i * W + j];
                                if (v > m || isnan(v)) m = v;   /* NaN propagates, as in PyTorch */
                            }
                        r = m;
                        break;
                    }
                    case POOL_MIN: {
                        float m = INFINITY;
                        for (int64_t i = y0; i < y1; i++)
                            for (int64_t j = x0; j < x1; j++) {
                                float v = x[i * W + j];
                                if (v < m || isnan(v)) m = v;
                            }
                        r = m;
                        break;
                    }
                    case POOL_AVG: {
                        float s = 0.0f;
                        for (int64_t i = y0; i < y1; i++)
                            for (int64_t j = x0; j < x1; j++) s += x[i * W + j];
                        int64_t cnt;
                        if (p->count_include_pad) {
                            int64_t ye = ys + p->kh < hp ? ys + p->kh : hp;
                            int64_t xe = xs + p->kw < wp ? xs + p->kw : wp;
                            cnt = (ye - ys) * (xe - xs);
                        } else {
                            cnt = (y1 - y0) * (x1 - x0);
                        }
                        r = s / (float)cnt;
                        break;
                    }
                    default: { /* POOL_STOCH */
                        float s = 0.0f, s2 = 0.0f;
                        for (int64_t i = y0; i < y1; i++)
                            for (int64_t j = x0; j < x1; j++) {
                                float v = x[i * W + j];
                                s += v;
                                s2 += v * v;
                            }
                        r = s != 0.0f ? s2 / s : 0.0f;
                        break;
                    }
                    }
                }
                y[oy * OW + ox] = r;
            }
        }
    }
    return ND_OK;
}

nd_status nd_maxpool_f32(const nd_maxpool_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return pool2d(p, out, in[0], POOL_MAX);
}

nd_status nd_minpool_f32(const nd_minpool_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return pool2d(p, out, in[0], POOL_MIN);
}

nd_status nd_avgpool_f32(const nd_avgpool_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return pool2d(p, out, in[0], POOL_AVG);
}

nd_status nd_stochasticpool_f32(const nd_stochasticpool_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return pool2d(p, out, in[0], POOL_STOCH);
}

/* x is (N,C,HW) -> y (N,C). The sum runs in 8 float lanes (omp simd), which is
 * both faster and closer to the exact mean than one serial float accumulator. */
nd_status nd_globalavgpool_f32(const nd_globalavgpool_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0) return ND_EINVAL;
    const int64_t planes = p->n * p->c, hw = p->hw;
    const float *x = in[0];
#pragma omp parallel for schedule(static) if (planes * hw > 32768)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *xp = x + pc * hw;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < hw; i++) s += xp[i];
        out[pc] = s / (float)hw;
    }
    return ND_OK;
}

nd_status nd_globalmaxpool_f32(const nd_globalmaxpool_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->hw <= 0) return ND_EINVAL;
    const int64_t planes = p->n * p->c, hw = p->hw;
    const float *x = in[0];
#pragma omp parallel for schedule(static) if (planes * hw > 32768)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *xp = x + pc * hw;
        float m = xp[0];
        for (int64_t i = 1; i < hw; i++)
            if (xp[i] > m || isnan(xp[i])) m = xp[i];
        out[pc] = m;
    }
    return ND_OK;
}
