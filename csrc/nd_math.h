/* nd_math.h — float32 exp, tanh, sigmoid, erfc and the activations built on them, as plain
 * branch-free C that GCC vectorizes.
 *
 * INTERNAL (not under csrc/kernels, so not fed to cffi). Every function is a static inline of
 * one float: a loop calling it over an array has no libm call and no branch (the ranges are
 * selects: both sides computed, one kept), so GCC vectorizes it for the target of the function
 * it is inlined into (kernels/fast_math.c, train_act.c, softmax.c build one copy per ISA, as
 * conv_dw.c does). The build is -std=c11, so no FMA contraction and no reassociation: every ISA
 * computes the same float operations in the same order and gives the same bits, and the
 * round-to-nearest trick (t + 1.5*2^23) - 1.5*2^23 is kept as written.
 *
 * Methods and accuracy (max relative error against float64 libm / scipy, measured over every
 * float32 input by the exhaustive harness quoted in tests/ops/test_fast_math.py; ulp = units in
 * the last place of the float32 result):
 *   nd_expf      e^x = 2^k e^r, k = round(x log2 e), r = x - k ln2 (Cody-Waite, ln2 in two
 *                parts), e^r by Cephes' degree-6 polynomial (1 + r + r^2 P(r)); 2^k applied as
 *                two exponent-bit factors, so subnormal results are rounded once and correctly
 *                scaled: exact 0 below -104, +inf above 88.72, 1.2e-7 (~1.5 ulp) between.
 *                nd_exp_hl(a, b) = e^(a + b) with b (|b| << 1) added after the reduction: the
 *                low part of an exponent that one float cannot hold (GELU's -x^2/2).
 *   nd_tanhf     |x| < 0.55: x + x^3 Q(x^2), Q a degree-5 least-squares fit (6.5e-8 in float);
 *                else sign(x) (1 - 2 / (e^2|x| + 1)): 1.3e-7 (~2 ulp); exactly +-1 past 9.01.
 *   nd_sigmoidf  (x >= 0 ? 1 : e) / (1 + e), e = e^-|x|: one rounding of e, one add, one divide,
 *                no overflow, subnormal results for x < -87: 1.9e-7 (~2 ulp).
 *   nd_erfcf     |z| < 0.5: 1 - z P(z^2) (erf's Taylor-like odd fit); else erfc|z| =
 *                e^-z^2 R(t), t = 1 / (1 + |z|/2), R a degree-9 fit of erfcx (float: 3e-7),
 *                and 2 - erfc|z| for z < 0; e^-z^2 from z's hi/lo split (z^2 to ~48 bits).
 *   nd_phif      Phi(x) = erfc(-x/sqrt2)/2 with e^(-x^2/2) split from x itself, not from the
 *                rounded x/sqrt2 (that rounding alone costs 2 x^2 ulp in the tail).
 * Non-finite values: NaN in gives NaN out (every clamp is `x < lo ? lo : x`, which a NaN fails;
 * every select keeps an arm computed from x); tanh(+-inf) = +-1, sigmoid(+-inf) = 1 / 0,
 * exp(-inf) = 0, exp(inf) = inf; the x-times activations (SiLU, GELU, Mish) give NaN at -inf
 * (-inf * 0), as PyTorch and nd_common.h say. Large finite inputs never overflow to NaN.
 * Not here: double precision, log (LogSoftmax's log-sum-exp is one log per position, libm).
 */
#ifndef ND_MATH_H
#define ND_MATH_H
#include <stdint.h>
#include <string.h>

#define ND_MATH_INLINE static inline __attribute__((always_inline))

ND_MATH_INLINE uint32_t nd_f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
ND_MATH_INLINE float nd_u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* c ? a : b as bit operations: GCC sinks an arm's multiply under a `?:` into a branch, which
 * then blocks vectorization below AVX-512 (no -fno-trapping-math); both arms are computed here */
ND_MATH_INLINE float nd_sel(int c, float a, float b)
{
    const uint32_t m = -(uint32_t)(c != 0);
    return nd_u2f((nd_f2u(a) & m) | (nd_f2u(b) & ~m));
}
ND_MATH_INLINE float nd_absf(float x) { return nd_u2f(nd_f2u(x) & 0x7FFFFFFFu); }
/* |m| with the sign of s */
ND_MATH_INLINE float nd_copysign(float m, float s)
{
    return nd_u2f((nd_f2u(m) & 0x7FFFFFFFu) | (nd_f2u(s) & 0x80000000u));
}

/* e^(a + b), |b| below ~1e-3 (or 0). See the header comment. */
ND_MATH_INLINE float nd_exp_hl(float a, float b)
{
    a = nd_sel(a < -104.0f, -104.0f, a);   /* NaN fails both tests and stays NaN */
    a = nd_sel(a > 89.0f, 89.0f, a);
    const float magic = 12582912.0f;   /* 1.5 * 2^23: adding it rounds to an integer */
    const float kr = a * 1.44269504088896341f + magic;
    const int32_t k = (int32_t)(nd_f2u(kr) - nd_f2u(magic));   /* the integer, from the low bits */
    const float kf = kr - magic;
    float r = a - kf * 0.693359375f;   /* 9-bit ln2 high part: kf * it is exact */
    r = r - kf * -2.12194440e-4f;
    r = r + b;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = (p * (r * r) + r) + 1.0f;
    /* 2^k, k in [-150, 128], as 2^k1 * 2^k2 with both normal: one rounding into subnormals,
     * overflow to inf past 88.72 */
    const int32_t k1 = k >> 1, k2 = k - k1;
    const float s1 = nd_u2f((uint32_t)(k1 + 127) << 23), s2 = nd_u2f((uint32_t)(k2 + 127) << 23);
    return (p * s1) * s2;
}

ND_MATH_INLINE float nd_expf(float x) { return nd_exp_hl(x, 0.0f); }

ND_MATH_INLINE float nd_tanhf(float x)
{
    const float ax = nd_absf(x), x2 = x * x;
    float q = 0.00242730903221334f;
    q = q * x2 + -0.00844009440653063f;
    q = q * x2 + 0.02179082748732227f;
    q = q * x2 + -0.05396074972962906f;
    q = q * x2 + 0.13333300185042563f;
    q = q * x2 + -0.3333333284293824f;
    const float small = nd_copysign(x + x * (x2 * q), x);   /* -0 + +0 would be +0 */
    const float e = nd_expf(ax + ax);   /* inf past 44: 2 / inf = 0, the result 1 */
    const float big = nd_copysign(1.0f - 2.0f / (e + 1.0f), x);
    return nd_sel(ax < 0.55f, small, big);    /* NaN: big, which is NaN */
}

/* (x >= 0 ? 1 : e) / (1 + e), e = e^-|x| */
ND_MATH_INLINE float nd_sigmoidf(float x)
{
    const float e = nd_expf(-nd_absf(x));
    return nd_sel(x >= 0.0f, 1.0f, e) / (1.0f + e);
}
/* x sigmoid(w) as (w >= 0 ? x : x e) / (1 + e), e = e^-|w|: no overflow of e^-w for w << 0 (the
 * result stays representable down to the subnormals); x = -inf with w = -inf: -inf * 0 = NaN */
ND_MATH_INLINE float nd_xsigf(float x, float w)
{
    const float e = nd_expf(-nd_absf(w));
    return nd_sel(w >= 0.0f, x, x * e) / (1.0f + e);
}
ND_MATH_INLINE float nd_siluf(float x) { return nd_xsigf(x, x); }

/* erfc(z) for |z| >= 0.5 from |z| = az and e^-z^2 (em): the upper branch of nd_erfcf / nd_phif */
ND_MATH_INLINE float nd_erfc_tail(float az, float em)
{
    const float t = 1.0f / (1.0f + 0.5f * az);
    float r = -7.3690479602099526e-02f;
    r = r * t + 3.4829061240983239e-01f;
    r = r * t + -6.0577714951723638e-01f;
    r = r * t + 4.0125073391992816e-01f;
    r = r * t + -1.0500194996485840e-01f;
    r = r * t + 2.3421767474140368e-01f;
    r = r * t + 2.3511817176791089e-01f;
    r = r * t + 2.8359822519724254e-01f;
    r = r * t + 2.8198399584224249e-01f;
    r = r * t + 3.5650922978058357e-06f;
    return em * r;
}

/* erf(z) / z for |z| < 0.5 */
ND_MATH_INLINE float nd_erf_small(float z2)
{
    float p = -7.7274966735639159e-04f;
    p = p * z2 + 5.2023099192785331e-03f;
    p = p * z2 + -2.6863520730113707e-02f;
    p = p * z2 + 1.1283777041900281e-01f;
    p = p * z2 + -3.7612638609120241e-01f;
    p = p * z2 + 1.1283791670859982e+00f;
    return p;
}

/* x^2 as hi + lo: hi = xh^2 exact (xh: x's top 12 significant bits), lo = (x - xh)(x + xh) */
ND_MATH_INLINE void nd_sq_hl(float x, float *hi, float *lo)
{
    const float xh = nd_u2f(nd_f2u(x) & 0xFFFFF000u);
    *hi = xh * xh;
    *lo = (x - xh) * (x + xh);
}

ND_MATH_INLINE float nd_erfcf(float z)
{
    float az = nd_absf(z);
    az = nd_sel(az > 10.5f, 10.5f, az);   /* erfc is 0 in float32 there (e^-110); NaN stays */
    const float small = 1.0f - z * nd_erf_small(z * z);
    float h, l;
    nd_sq_hl(az, &h, &l);
    const float tail = nd_erfc_tail(az, nd_exp_hl(-h, -l));
    const float big = nd_sel(z < 0.0f, 2.0f - tail, tail);
    return nd_sel(az < 0.5f, small, big);
}

/* Phi(x) = erfc(-x / sqrt 2) / 2 */
ND_MATH_INLINE float nd_phif(float x)
{
    const float z = x * -0.70710678118654752f;
    float az = nd_absf(z);
    az = nd_sel(az > 10.5f, 10.5f, az);
    const float small = 0.5f - 0.5f * (z * nd_erf_small(z * z));
    float xc = nd_absf(x);
    xc = nd_sel(xc > 14.8f, 14.8f, xc);   /* 14.8 / sqrt2 > 10.5 */
    float h, l;
    nd_sq_hl(xc, &h, &l);
    const float tail = 0.5f * nd_erfc_tail(az, nd_exp_hl(-0.5f * h, -0.5f * l));
    const float big = nd_sel(x > 0.0f, 1.0f - tail, tail);
    return nd_sel(az < 0.5f, small, big);
}

/* the standard normal density e^(-x^2/2) / sqrt(2 pi), e^ from x's hi/lo split */
ND_MATH_INLINE float nd_normpdf(float x)
{
    float ax = nd_absf(x), h, l;
    ax = nd_sel(ax > 15.0f, 15.0f, ax);   /* e^-112.5 = 0 in float32; NaN stays */
    nd_sq_hl(ax, &h, &l);
    return nd_exp_hl(-0.5f * h, -0.5f * l) * 0.39894228040143268f;
}

ND_MATH_INLINE float nd_geluf(float x) { return x * nd_phif(x); }   /* -inf: -inf * 0 = NaN */

/* x (1 + tanh u) / 2 = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): no cancellation for
 * x << 0; x^3 = +-inf gives x (x > 0) and -0 (x < 0, finite) */
ND_MATH_INLINE float nd_gelu_tanhf(float x)
{
    return nd_xsigf(x, 1.5957691216057308f * (x + 0.044715f * x * x * x));
}

/* min(max(v, 0), 6), NaN stays NaN */
ND_MATH_INLINE float nd_relu6f(float v) { return nd_sel(v < 0.0f, 0.0f, nd_sel(v > 6.0f, 6.0f, v)); }

/* x tanh(softplus x) = x m / (m + 2), m = e (e + 2), e = e^min(x, 20) (the ratio is 1 there) */
ND_MATH_INLINE float nd_mishf(float x)
{
    const float c = nd_sel(x > 20.0f, 20.0f, x);
    const float e = nd_expf(c), m = e * (e + 2.0f);
    return x * (m / (m + 2.0f));
}
#endif
