/* train_act.c — backward of the element-wise activations, PReLU, Softmax and LogSoftmax.
 *
 * dy, x, y, dx are n*size contiguous floats (element-wise), (N, C, HW) for PReLU,
 * (N, C, INNER) normalized over C for the softmaxes; in[0] = dy, in[1] = x or y (the header
 * says which). Each activation's dx is PyTorch's backward formula, in its order of
 * operations, and with its choice at the kinks and for NaN:
 *
 *   relu        y <= 0 ? 0 : dy                (threshold_backward on the output)
 *   leakyrelu   dy * (v > 0 ? 1 : slope)       (v = x; or y when slope >= 0: same sign test)
 *   sigmoid     dy * (1 - y) * y               tanh  dy * (1 - y*y)
 *   clip        x in [lo, hi] ? dy : 0         (torch.clamp: the bounds pass dy; NaN x gives 0)
 *   relu6/hardtanh  lo < y < hi ? dy : 0       (hardtanh_backward; y > lo iff x > lo)
 *   hardsigmoid -3 < x < 3 ? dy / 6 : 0; other alpha/beta: 0 < alpha x + beta < 1 ? dy alpha : 0
 *   hardswish   x <= -3 ? 0 : x >= 3 ? dy : dy (x/3 + 1/2)
 *   silu        dy s (1 + x (1 - s)), s = sigmoid(x)
 *   gelu        dy (cdf + x pdf) (cdf as erfc: no cancellation for x << 0); the tanh form
 *               dy (s + 2 x s (1 - s) u') with s = sigmoid(2u) = (1 + tanh u) / 2
 *   mish        dy (t + x s (1 - t^2)), t = tanh(softplus(x)), s = sigmoid(x)
 *   prelu       dx = dy (x > 0 ? 1 : w[c]);  dw[c] = sum (x > 0 ? 0 : x dy)
 *   softmax     dx = y (dy - sum_c dy y);  logsoftmax  dx = dy - e^y sum_c dy
 *
 * The exception: silu, gelu-tanh and mish compute 1 - s and 1 - t^2 without cancellation
 * (as sigmoid(-x), and 4 (m + 1) / (m + 2)^2; PyTorch's float32 gradients lose ~1e-6
 * absolute there for |x| of 4 to 9); their values at ±inf are PyTorch's NaN (inf * 0), and
 * every finite input gives a finite result.
 *
 * PyTorch's vectorized kernels (what runs on any real tensor) and its scalar tail loops
 * disagree on a NaN x for hardtanh (0 / dy) and hardswish (NaN / dy); this follows the
 * vectorized ones: a NaN x fails every test, so it gets 0 from hardtanh, relu6, clip and
 * hardsigmoid, dy from relu, dy slope from leakyrelu and prelu, NaN from hardswish.
 * Where PyTorch's derivative is a selected 0 (relu below 0, clip outside, ...) a NaN in dy
 * gives 0, as in PyTorch; everywhere else dy is multiplied, never selected away, so its NaN
 * flows. Where a select is needed both arms are computed first and then chosen between
 * (GCC if-converts a select of two computed values, not one whose arm does a multiply),
 * so the loops vectorize, the transcendental ones too: silu, gelu, mish and log-softmax's exp
 * call csrc/nd_math.h's branch-free float32 exp / Phi / normal density (no libm; ~2 ulp,
 * see there), the forward kernels' own math.
 *
 * ISA: one plain C body per family, inlined into a portable, an AVX2 and an AVX-512
 * function (conv_dw.c's pattern), picked from nd_ops()->level, so NETDSL_ISA reaches it.
 * The build is -std=c11, so no FMA contraction: every ISA gives the same bits.
 * Sums (PReLU's dw, softmax's dot products) run in double in a fixed order per output value
 * (dw: 8 running sums): deterministic, the same on every ISA and thread count. Threads: over chunks of ~16K elements above ~128K
 * (~16K for the transcendental ones), over channels (dw) and blocks of positions (softmax).
 * Not here: double precision, the fused epilogues of layers (training graphs are unfused).
 */
#include "kernels/train_act.h"

#include <math.h>

#include "dispatch.h"
#include "nd_math.h"

#define PAR_MIN 131072
#define CHUNK 16384
#define SM_BLK 64
#define TMP 256

enum { B_RELU, B_LEAKY, B_SIGMOID, B_TANH, B_CLAMP, B_HARDTANH, B_HSIG, B_HSIG6, B_HSWISH, B_SILU,
       B_GELU, B_GELU_TANH, B_MISH, B_PRELU_VEC };

#define INLINE static inline __attribute__((always_inline))

/* s = sigmoid(x) and r = 1 - s = sigmoid(-x) from one e^-|x|: no overflow, no cancellation;
 * x = NaN gives NaN, x = +-inf gives (1, 0) / (0, 1) exactly */
INLINE void sig2(float x, float *s, float *r)
{
    const float e = nd_expf(-nd_absf(x)), q = 1.0f / (1.0f + e), eq = e * q;
    const int pos = x >= 0.0f;
    *s = nd_sel(pos, q, eq);   /* bit selects: a `?:` with a product arm becomes a branch */
    *r = nd_sel(pos, eq, q);
}

/* the selects whose arm is a product, on up to TMP elements: the products go to t[] first
 * (GCC sinks a product used in one arm of a select into a branch, which it may then not
 * vectorize without -fno-trapping-math), then a select of two loaded values */
INLINE void select_block(float *dx, const float *g, const float *v, int64_t n, int op, float a, float b,
                         const float *wv)
{
    float t[TMP];
    switch (op) {
    case B_LEAKY:
        for (int64_t i = 0; i < n; i++) t[i] = g[i] * a;
        for (int64_t i = 0; i < n; i++) dx[i] = v[i] > 0.0f ? g[i] : t[i];
        break;
    case B_PRELU_VEC:
        for (int64_t i = 0; i < n; i++) t[i] = wv[i] * g[i];
        for (int64_t i = 0; i < n; i++) dx[i] = v[i] > 0.0f ? g[i] : t[i];
        break;
    case B_HSIG:
        for (int64_t i = 0; i < n; i++) t[i] = g[i] * a;
        for (int64_t i = 0; i < n; i++) {
            const float u = v[i] * a + b;
            dx[i] = ((u > 0.0f) & (u < 1.0f)) ? t[i] : 0.0f;
        }
        break;
    case B_HSIG6:
        for (int64_t i = 0; i < n; i++) t[i] = g[i] / 6.0f;
        for (int64_t i = 0; i < n; i++) dx[i] = ((v[i] > -3.0f) & (v[i] < 3.0f)) ? t[i] : 0.0f;
        break;
    case B_HSWISH:
        for (int64_t i = 0; i < n; i++) t[i] = g[i] * (v[i] / 3.0f + 0.5f);
        for (int64_t i = 0; i < n; i++) {
            const float r = v[i] >= 3.0f ? g[i] : t[i];
            dx[i] = v[i] <= -3.0f ? 0.0f : r;
        }
        break;
    default:
        break;
    }
}

/* dx[i] for n elements: g = dy, v = x or y; a, b = slope / (lo, hi) / (alpha, beta); wv = a
 * slope per element (B_PRELU_VEC). dx may be g: each index is read before it is written. */
INLINE void act_bwd_body(float *dx, const float *g, const float *v, int64_t n, int op, float a, float b,
                         const float *wv)
{
    switch (op) {
    case B_LEAKY: case B_PRELU_VEC: case B_HSIG: case B_HSIG6: case B_HSWISH:
        for (int64_t i0 = 0; i0 < n; i0 += TMP)
            select_block(dx + i0, g + i0, v + i0, n - i0 < TMP ? n - i0 : TMP, op, a, b, wv ? wv + i0 : NULL);
        break;
    case B_RELU:
        for (int64_t i = 0; i < n; i++) {
            const float gi = g[i];
            dx[i] = v[i] <= 0.0f ? 0.0f : gi;
        }
        break;
    case B_SIGMOID:
        for (int64_t i = 0; i < n; i++) dx[i] = g[i] * (1.0f - v[i]) * v[i];
        break;
    case B_TANH:
        for (int64_t i = 0; i < n; i++) dx[i] = g[i] * (1.0f - v[i] * v[i]);
        break;
    case B_CLAMP: {   /* an infinite bound is no bound: no test (a NaN x fails only a real one) */
        const int no_lo = !(a > -INFINITY), no_hi = !(b < INFINITY);
        for (int64_t i = 0; i < n; i++) {
            const float gi = g[i], vi = v[i];
            const int ok = (no_lo | (vi >= a)) & (no_hi | (vi <= b));
            dx[i] = ok ? gi : 0.0f;
        }
        break;
    }
    case B_HARDTANH:
        for (int64_t i = 0; i < n; i++) {
            const float gi = g[i], vi = v[i];
            dx[i] = ((vi > a) & (vi < b)) ? gi : 0.0f;
        }
        break;
    case B_SILU:   /* 1 - s as sigmoid(-x): no cancellation for x >> 0, 1 (not inf * 0) for x << 0 */
        for (int64_t i = 0; i < n; i++) {
            float s, r;
            sig2(v[i], &s, &r);
            dx[i] = g[i] * s * (1.0f + v[i] * r);
        }
        break;
    case B_GELU:
        for (int64_t i = 0; i < n; i++) {
            const float x = v[i];
            const float cdf = nd_phif(x);      /* erfc(-x/sqrt 2) / 2 */
            const float pdf = nd_normpdf(x);   /* e^(-x^2/2) / sqrt(2 pi), x^2 split: no rounding of it */
            dx[i] = g[i] * (cdf + x * pdf);
        }
        break;
    case B_GELU_TANH:
        /* y = x (1 + tanh u) / 2 = x s, s = sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3):
         * dx = dy (s + 2 x s (1 - s) u'), with 1 - s = sigmoid(-2u) computed as such: torch's
         * 0.5 (1 + t) and 1 - t^2 cancel for x << 0 (1e-6 off in float32 at x = -4) */
        for (int64_t i = 0; i < n; i++) {
            const float kb = 0.79788456080286536f, kk = 0.044715f;   /* sqrt(2/pi), torch's kappa */
            const float x = v[i], x2 = x * x;
            float s, r;
            sig2(2.0f * kb * (x + kk * x2 * x), &s, &r);
            dx[i] = g[i] * (s + x * (s * r) * (2.0f * kb * (1.0f + 3.0f * kk * x2)));
        }
        break;
    case B_MISH:
        /* t = tanh(softplus x) = m / (m + 2), m = e (e + 2), e = e^x, and 1 - t^2 = 4 (m + 1) / (m + 2)^2
         * (not 1 - t*t: it cancels for x >> 0); past x = 20 t is 1 and 1 - t^2 is 0 in float32
         * (e^40 would overflow m), as sigmoid(x) = e / (1 + e) is; a NaN x stays NaN (x > 20 is false) */
        for (int64_t i = 0; i < n; i++) {
            const float x = v[i];
            const int big = x > 20.0f;
            const float e = nd_expf(nd_sel(big, 20.0f, x)), m = e * (e + 2.0f), q = m + 2.0f;
            const float t = m / q, d = 4.0f * (m + 1.0f) / (q * q), s = e / (1.0f + e);
            dx[i] = g[i] * (t + x * s * nd_sel(big, 0.0f, d));
        }
        break;
    default:
        break;
    }
}

/* sum over n of (v > 0 ? 0 : v g), in double: the products of a block go to t[] first (a
 * select of two loaded values if-converts; one whose arm multiplies becomes a branch that
 * mispredicts on random signs), then 8 running sums (element i into sum i % 8, so the adds
 * do not wait on each other) added in a fixed order: the same on every ISA. stride: the
 * distance between consecutive values (vectors: the N values of one feature, C apart). */
INLINE double prelu_dw_body(const float *g, const float *v, int64_t n, int64_t stride)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float t[TMP];
    int64_t i0 = 0;
    for (; i0 < n; i0 += TMP) {
        const int64_t m = n - i0 < TMP ? n - i0 : TMP;
        const float *gi = g + i0 * stride, *vi = v + i0 * stride;
        if (stride == 1) for (int64_t i = 0; i < m; i++) t[i] = vi[i] * gi[i];
        else             for (int64_t i = 0; i < m; i++) t[i] = vi[i * stride] * gi[i * stride];
        for (int64_t i = 0; i < m; i++) t[i] = vi[i * stride] > 0.0f ? 0.0f : t[i];
        int64_t i = 0;
        for (; i + 8 <= m; i += 8)
            for (int k = 0; k < 8; k++) s[k] += (double)t[i + k];
        for (; i < m; i++) s[i % 8] += (double)t[i];
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* m positions of one softmax block, C rows I apart: dx = y (g - sum g y) or g - e^y sum g */
INLINE void softmax_bwd_body(float *dx, const float *g, const float *y, int64_t C, int64_t I, int64_t m,
                             int logsm)
{
    double s[SM_BLK];
    float sf[SM_BLK];
    for (int64_t j = 0; j < m; j++) s[j] = 0.0;
    if (logsm) {
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < m; j++) s[j] += (double)g[c * I + j];
    } else {
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < m; j++) s[j] += (double)g[c * I + j] * (double)y[c * I + j];
    }
    for (int64_t j = 0; j < m; j++) sf[j] = (float)s[j];
    if (logsm) {
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < m; j++) dx[c * I + j] = g[c * I + j] - nd_expf(y[c * I + j]) * sf[j];
    } else {
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < m; j++) dx[c * I + j] = y[c * I + j] * (g[c * I + j] - sf[j]);
    }
}

/* ---------------------------------------------------------------- the per-ISA copies */

#define ACT_ARGS float *dx, const float *g, const float *v, int64_t n, int op, float a, float b, const float *wv
#define DW_ARGS const float *g, const float *v, int64_t n, int64_t stride
#define SM_ARGS float *dx, const float *g, const float *y, int64_t C, int64_t I, int64_t m, int logsm

typedef struct {
    void (*act)(ACT_ARGS);
    double (*dw)(DW_ARGS);
    void (*sm)(SM_ARGS);
} bwd_ops;

#define DEFINE_ISA(suffix, attr)                                                                   \
    attr static void act_##suffix(ACT_ARGS) { act_bwd_body(dx, g, v, n, op, a, b, wv); }          \
    attr static double dw_##suffix(DW_ARGS) { return prelu_dw_body(g, v, n, stride); }            \
    attr static void sm_##suffix(SM_ARGS) { softmax_bwd_body(dx, g, y, C, I, m, logsm); }         \
    static const bwd_ops ops_##suffix = {act_##suffix, dw_##suffix, sm_##suffix};

ND_EACH_ISA(DEFINE_ISA)

static const bwd_ops *pick(void) { return ND_PICK_OPS(ops_); }

/* ---------------------------------------------------------------- element-wise drivers */

static nd_status act_run(int64_t n, int64_t size, float *out, const float *const *in, int op, float a,
                         float b, int libm)
{
    if (n <= 0 || size <= 0 || !ND_PROD_OK(n, size)) return ND_EINVAL;
    const bwd_ops *o = pick();
    const int64_t total = n * size, nch = (total + CHUNK - 1) / CHUNK;
    const float *g = in[0], *v = in[1];
#pragma omp parallel for schedule(dynamic, 1) if (total > (libm ? PAR_MIN / 8 : PAR_MIN))
    for (int64_t c = 0; c < nch; c++) {
        const int64_t i0 = c * CHUNK, m = total - i0 < CHUNK ? total - i0 : CHUNK;
        o->act(out + i0, g + i0, v + i0, m, op, a, b, NULL);
    }
    return ND_OK;
}

nd_status nd_relu_bwd_data_f32(const nd_relu_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return act_run(p->n, p->size, out, in, B_RELU, 0.0f, 0.0f, 0);
}

nd_status nd_leakyrelu_bwd_data_f32(const nd_leakyrelu_bwd_params *p, float *out, const float *const *in,
                                    const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->slope != p->slope) return ND_EINVAL;
    return act_run(p->n, p->size, out, in, B_LEAKY, p->slope, 0.0f, 0);
}

nd_status nd_sigmoid_bwd_data_f32(const nd_sigmoid_bwd_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return act_run(p->n, p->size, out, in, B_SIGMOID, 0.0f, 0.0f, 0);
}

nd_status nd_tanh_bwd_data_f32(const nd_tanh_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return act_run(p->n, p->size, out, in, B_TANH, 0.0f, 0.0f, 0);
}

nd_status nd_clip_bwd_data_f32(const nd_clip_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->lo != p->lo || p->hi != p->hi) return ND_EINVAL;
    return act_run(p->n, p->size, out, in, B_CLAMP, p->lo, p->hi, 0);
}

nd_status nd_hardtanh_bwd_data_f32(const nd_hardtanh_bwd_params *p, float *out, const float *const *in,
                                   const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (!(p->lo <= p->hi)) return ND_EINVAL;     /* Hardtanh refuses min_val > max_val; NaN too */
    return act_run(p->n, p->size, out, in, B_HARDTANH, p->lo, p->hi, 0);
}

nd_status nd_hardsigmoid_bwd_data_f32(const nd_hardsigmoid_bwd_params *p, float *out, const float *const *in,
                                      const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (!isfinite(p->alpha) || !isfinite(p->beta)) return ND_EINVAL;
    if (p->alpha == 1.0f / 6.0f && p->beta == 0.5f)   /* PyTorch's: the forward's relu6(x + 3) / 6 */
        return act_run(p->n, p->size, out, in, B_HSIG6, 0.0f, 0.0f, 0);
    return act_run(p->n, p->size, out, in, B_HSIG, p->alpha, p->beta, 0);
}

nd_status nd_actfn_bwd_data_f32(const nd_actfn_bwd_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    switch (p->act) {
    case ND_ACT_HARDSWISH: return act_run(p->n, p->size, out, in, B_HSWISH, 0.0f, 0.0f, 0);
    case ND_ACT_SILU: return act_run(p->n, p->size, out, in, B_SILU, 0.0f, 0.0f, 1);
    case ND_ACT_GELU: return act_run(p->n, p->size, out, in, B_GELU, 0.0f, 0.0f, 1);
    case ND_ACT_GELU_TANH: return act_run(p->n, p->size, out, in, B_GELU_TANH, 0.0f, 0.0f, 1);
    case ND_ACT_MISH: return act_run(p->n, p->size, out, in, B_MISH, 0.0f, 0.0f, 1);
    default: return ND_EINVAL;    /* the other activations have their own kernel above */
    }
}

/* ---------------------------------------------------------------- PReLU */

static int prelu_bad(const nd_prelu_bwd_params *p)
{
    return p->n <= 0 || p->c <= 0 || p->hw <= 0 || (p->nw != p->c && p->nw != 1) || !ND_PROD_OK(p->n, p->c, p->hw);
}

nd_status nd_prelu_bwd_data_f32(const nd_prelu_bwd_params *p, float *out, const float *const *in,
                                const float *w, const float *bias, float *ws)
{
    (void)bias; (void)ws;
    if (prelu_bad(p) || w == 0) return ND_EINVAL;
    const bwd_ops *o = pick();
    const float *g = in[0], *x = in[1];
    const int64_t C = p->c, HW = p->hw, shared = p->nw == 1;
    if (HW == 1 && !shared) {          /* vectors (N, F): a slope per element of a row */
#pragma omp parallel for schedule(static) if (p->n * C > PAR_MIN)
        for (int64_t b = 0; b < p->n; b++) o->act(out + b * C, g + b * C, x + b * C, C, B_PRELU_VEC, 0, 0, w);
        return ND_OK;
    }
    const int64_t planes = p->n * C, chunk = HW >= 8192 ? 1 : 8192 / HW;
#pragma omp parallel for schedule(dynamic, chunk) if (planes * HW > PAR_MIN)
    for (int64_t i = 0; i < planes; i++)
        o->act(out + i * HW, g + i * HW, x + i * HW, HW, B_LEAKY, w[shared ? 0 : i % C], 0.0f, NULL);
    return ND_OK;
}

nd_status nd_prelu_bwd_params_f32(const nd_prelu_bwd_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias;   /* the slopes' gradient does not depend on the slopes */
    if (prelu_bad(p) || (p->nw == 1 && p->c > 1 && ws == 0)) return ND_EINVAL;
    const bwd_ops *o = pick();
    const float *g = in[0], *x = in[1];
    const int64_t C = p->c, HW = p->hw, N = p->n;
    /* channel ch: sum over samples in order, each plane (HW contiguous, or one value for
     * vectors) in index order; nw == 1 then sums the channels' partial sums in order */
    float *dst = p->nw == 1 && C > 1 ? ws : out;
#pragma omp parallel for schedule(dynamic, 1) if (N * C * HW > PAR_MIN / 8)
    for (int64_t ch = 0; ch < C; ch++) {
        double s = 0.0;
        if (HW == 1)        /* vectors (N, F): the N values of a feature, C apart */
            s = o->dw(g + ch, x + ch, N, C);
        else
            for (int64_t b = 0; b < N; b++) s += o->dw(g + (b * C + ch) * HW, x + (b * C + ch) * HW, HW, 1);
        dst[ch] = (float)s;
    }
    if (dst == ws) {
        double s = 0.0;
        for (int64_t ch = 0; ch < C; ch++) s += (double)ws[ch];
        out[0] = (float)s;
    }
    return ND_OK;
}

/* ---------------------------------------------------------------- Softmax, LogSoftmax */

static nd_status softmax_bwd(const nd_softmax_bwd_params *p, float *out, const float *const *in, int logsm)
{
    if (p->n <= 0 || p->c <= 0 || p->inner <= 0 || !ND_PROD_OK(p->n, p->c, p->inner)) return ND_EINVAL;
    const bwd_ops *o = pick();
    const int64_t C = p->c, I = p->inner;
    const int64_t nblk = (I + SM_BLK - 1) / SM_BLK, tasks = p->n * nblk;
    const float *g = in[0], *y = in[1];
#pragma omp parallel for schedule(dynamic, 1) if (p->n * C * I > 32768)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / nblk, j0 = (t % nblk) * SM_BLK;
        const int64_t m = I - j0 < SM_BLK ? I - j0 : SM_BLK, off = b * C * I + j0;
        o->sm(out + off, g + off, y + off, C, I, m, logsm);
    }
    return ND_OK;
}

nd_status nd_softmax_bwd_data_f32(const nd_softmax_bwd_params *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return softmax_bwd(p, out, in, 0);
}

nd_status nd_logsoftmax_bwd_data_f32(const nd_logsoftmax_bwd_params *p, float *out, const float *const *in,
                                     const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    return softmax_bwd(p, out, in, 1);
}
