/* simd.c — the portable bodies of nd_simd.h's primitives, and the selector.
 * Plain C the compiler vectorizes for the baseline (SSE2 on x86-64, NEON on ARM). GCC
 * will not if-convert a select one of whose arms is a multiply (it sinks the multiply into
 * the branch and then may not speculate it without -fno-trapping-math), so the leaky and
 * PReLU selects run in two passes over a chunk: the products into a stack buffer, then a
 * select between two loaded values, which it does vectorize. */
#include "nd_simd.h"

#include "dispatch.h"

static inline float red1(int op, float m, float v)
{
    if (op == ND_RED_SUM) return m + v;
    return op == ND_RED_MAX ? (((v > m) | (v != v)) ? v : m) : (((v < m) | (v != v)) ? v : m);
}

#define TMP 256

/* y[i] = sel(v[i]) ? v[i] : a * v[i] with sel "v > 0" (prelu) or "!(v < 0)" (leaky), chunked */
static void scaled_select(float *y, const float *v, float a, int64_t n, int prelu)
{
    float t[TMP];
    for (int64_t i0 = 0; i0 < n; i0 += TMP) {
        const int64_t m = n - i0 < TMP ? n - i0 : TMP;
        const float *vi = v + i0;
        float *yi = y + i0;
        for (int64_t i = 0; i < m; i++) t[i] = prelu ? a * vi[i] : vi[i] * a;
        if (prelu) for (int64_t i = 0; i < m; i++) yi[i] = vi[i] > 0.0f ? vi[i] : t[i];
        else       for (int64_t i = 0; i < m; i++) yi[i] = vi[i] < 0.0f ? t[i] : vi[i];
    }
}

static void affine_act_c(float *y, const float *x, float s, float t, int64_t n, int act)
{
    if (act == ND_ACT_RELU) {
        for (int64_t i = 0; i < n; i++) {
            const float v = x[i] * s + t;
            y[i] = v < 0.0f ? 0.0f : v;
        }
    } else if (act == ND_ACT_LEAKYRELU) {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * s + t;
        scaled_select(y, y, 0.01f, n, 0);
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * s + t;
        if (act != ND_ACT_NONE) nd_act_inplace(y, n, act);
    }
}

static void prelu_c(float *y, const float *x, float a, int64_t n) { scaled_select(y, x, a, n, 1); }

static void leaky_c(float *y, const float *x, float a, int64_t n)
{
    if (a == 0.0f) {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
        return;
    }
    scaled_select(y, x, a, n, 0);
}

static void accum_c(float *y, const float *x, float c, int64_t n, int mul)
{
    if (x) {
        if (mul) for (int64_t i = 0; i < n; i++) y[i] *= x[i];
        else     for (int64_t i = 0; i < n; i++) y[i] += x[i];
    } else {
        if (mul) for (int64_t i = 0; i < n; i++) y[i] *= c;
        else     for (int64_t i = 0; i < n; i++) y[i] += c;
    }
}

static void vred_c(float *y, const float *a, const float *x, int64_t n, int op)
{
    if (op == ND_RED_MAX) for (int64_t i = 0; i < n; i++) y[i] = red1(ND_RED_MAX, a[i], x[i]);
    else                  for (int64_t i = 0; i < n; i++) y[i] = red1(ND_RED_MIN, a[i], x[i]);
}

static void pool_row_c(float *y, const float *b, int64_t ow, int64_t kw, int64_t s, int op)
{
    for (int64_t j = 0; j < ow; j++) y[j] = b[j * s];
    for (int64_t k = 1; k < kw; k++) {
        const float *bk = b + k;
        if (op == ND_RED_MAX)      for (int64_t j = 0; j < ow; j++) y[j] = red1(ND_RED_MAX, y[j], bk[j * s]);
        else if (op == ND_RED_MIN) for (int64_t j = 0; j < ow; j++) y[j] = red1(ND_RED_MIN, y[j], bk[j * s]);
        else                       for (int64_t j = 0; j < ow; j++) y[j] = y[j] + bk[j * s];
    }
}

/* The AVX2 body's order: under 16 serial; else 8 lanes (lane k over x[i + k]), the lanes
 * in order, then the tail. (Max/min differ between orders only in which of +0/-0 wins.) */
static float hred_c(const float *x, int64_t n, int op)
{
    float m = x[0];
    if (n < 16) {
        for (int64_t i = 1; i < n; i++) m = red1(op, m, x[i]);
        return m;
    }
    float l[8];
    for (int k = 0; k < 8; k++) l[k] = x[k];
    int64_t i = 8;
    if (op == ND_RED_MAX)
        for (; i + 8 <= n; i += 8) {
            float v[8];
            for (int k = 0; k < 8; k++) v[k] = x[i + k];
            for (int k = 0; k < 8; k++) l[k] = ((v[k] > l[k]) | (v[k] != v[k])) ? v[k] : l[k];
        }
    else
        for (; i + 8 <= n; i += 8) {
            float v[8];
            for (int k = 0; k < 8; k++) v[k] = x[i + k];
            for (int k = 0; k < 8; k++) l[k] = ((v[k] < l[k]) | (v[k] != v[k])) ? v[k] : l[k];
        }
    m = l[0];
    for (int k = 1; k < 8; k++) m = red1(op, m, l[k]);
    for (; i < n; i++) m = red1(op, m, x[i]);
    return m;
}

/* 8 lane sums (as the AVX2 body), then a fixed tree: closer to the exact mean than one
 * serial accumulator. */
static float hsum_c(const float *x, int64_t n)
{
    float l[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) l[k] += x[i + k];
    for (int k = 0; i < n; i++, k++) l[k] += x[i];
    return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
}

const nd_simd_ops nd_simd_portable = {
    .affine_act = affine_act_c, .prelu = prelu_c, .leaky = leaky_c, .accum = accum_c,
    .vred = vred_c, .pool_row = pool_row_c, .hred = hred_c, .hsum = hsum_c,
};

const nd_simd_ops *nd_simd(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (nd_ops()->level >= ND_ISA_AVX2) return &nd_simd_avx2;   /* AVX-512 runs the AVX2 bodies */
#endif
    return &nd_simd_portable;
}
