/* conv_local.c — locally connected layer: one small GEMV per output position.
 *
 * x is (N,C,H,W), w is (P = OH*OW, OC, K = C*KH*KW), y is (N,OC,OH,OW).
 * For position p: gather the N input patches (N, K) into the thread's
 * workspace (zeros for padding), then y[b, o, p] = dot(w[p, o], patch[b]).
 * Each weight row is read once per position and reused from L1 for the whole
 * batch; the layer is memory-bound on its (large, unshared) weights, so there
 * is no packing. Parallel over positions; each thread owns N*K floats of ws.
 */
#include "kernels/conv_local.h"

#include "dispatch.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static int bad_params(const nd_local_params *p)
{
    return p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oc <= 0 || p->oh <= 0 ||
           p->ow <= 0 || p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 ||
           p->dw <= 0 || p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0 ||
           !nd_act_ok(p->act) ||
           !nd_axis_ok(p->h, p->oh, p->kh, p->sh, p->dh, p->pad_t, p->pad_b) ||
           !nd_axis_ok(p->w, p->ow, p->kw, p->sw, p->dw, p->pad_l, p->pad_r) ||
           !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->oc, p->oh, p->ow) ||
           !ND_PROD_OK(p->oh, p->ow, p->oc, p->c, p->kh, p->kw) ||
           !ND_PROD_OK(p->threads < 1 ? 1 : p->threads, p->n, p->c, p->kh, p->kw);
}

int64_t nd_local_ws_floats(const nd_local_params *p)
{
    if (bad_params(p))
        return -1;
    return (p->threads < 1 ? 1 : p->threads) * (p->n * p->c * p->kh * p->kw + 16);
}

nd_status nd_local_f32(const nd_local_params *p, float *out, const float *const *in, const float *w,
                       const float *bias, float *ws)
{
    if (!p || !out || !in || !in[0] || !w || bad_params(p) || (p->n > 0 && !ws))
        return ND_EINVAL;
    const nd_isa_ops *o = nd_ops();
    const int64_t K = p->c * p->kh * p->kw, P = p->oh * p->ow, HW = p->h * p->w, N = p->n;
    const int T = nd_threads(p->threads);
    (void)T; /* unused without OpenMP */
    const float *x = in[0];
#pragma omp parallel num_threads(T) if (T > 1 && N * P * p->oc * K > 65536)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *patch = ws + tid * (N * K + 16);
#pragma omp for schedule(static)
        for (int64_t pos = 0; pos < P; pos++) {
            const int64_t oy = pos / p->ow, ox = pos % p->ow;
            for (int64_t b = 0; b < N; b++) {
                float *d = patch + b * K;
                for (int64_t c = 0; c < p->c; c++)
                    for (int64_t i = 0; i < p->kh; i++) {
                        const int64_t iy = oy * p->sh - p->pad_t + i * p->dh;
                        for (int64_t j = 0; j < p->kw; j++) {
                            const int64_t ix = ox * p->sw - p->pad_l + j * p->dw;
                            *d++ = (iy >= 0 && iy < p->h && ix >= 0 && ix < p->w)
                                       ? x[(b * p->c + c) * HW + iy * p->w + ix]
                                       : 0.0f;
                        }
                    }
            }
            const float *wp = w + pos * p->oc * K;
            for (int64_t oc = 0; oc < p->oc; oc++)
                for (int64_t b = 0; b < N; b++) {
                    float v = o->dot(wp + oc * K, patch + b * K, K);
                    if (bias) v += bias[oc * P + pos];
                    float *y = out + (b * p->oc + oc) * P + pos;
                    *y = v;
                    if (p->act != ND_ACT_NONE) nd_act_inplace(y, 1, p->act);   /* a call per value */
                }
        }
    }
    return ND_OK;
}
