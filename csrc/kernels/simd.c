/* simd.c — the portable bodies of nd_simd.h's primitives, and the selector.
 * Plain C the compiler may vectorize for the baseline (SSE2 on x86-64); every select is
 * written so that the untaken arm has no side effect (both arms computed), which is what
 * lets GCC if-convert it without -fno-trapping-math. */
#include "nd_simd.h"

#include "dispatch.h"

static inline float red1(int op, float m, float v)
{
    if (op == ND_RED_SUM) return m + v;
    return op == ND_RED_MAX ? (((v > m) | (v != v)) ? v : m) : (((v < m) | (v != v)) ? v : m);
}

static void affine_act_c(float *y, const float *x, float s, float t, int64_t n, int act)
{
    if (act == ND_ACT_RELU) {
        for (int64_t i = 0; i < n; i++) {
            const float v = x[i] * s + t;
            y[i] = v < 0.0f ? 0.0f : v;
        }
    } else if (act == ND_ACT_LEAKYRELU) {
        for (int64_t i = 0; i < n; i++) {
            const float v = x[i] * s + t, lv = v * 0.01f;
            y[i] = v < 0.0f ? lv : v;
        }
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * s + t;
        if (act != ND_ACT_NONE) nd_act_inplace(y, n, act);
    }
}

static void prelu_c(float *y, const float *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i], av = a * v;
        y[i] = v > 0.0f ? v : av;
    }
}

static void leaky_c(float *y, const float *x, float a, int64_t n)
{
    if (a == 0.0f) {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i], av = v * a;
        y[i] = v < 0.0f ? av : v;
    }
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

static float hred_c(const float *x, int64_t n, int op)
{
    float m = x[0];
    for (int64_t i = 1; i < n; i++) m = red1(op, m, x[i]);
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
