/* qgemm_avx512.c — the AVX-512 VNNI int8 micro-kernel (6 x 64, vpdpbusd).
 *
 * Per 4 k's: four 64-byte loads of the packed B panel (64 pixels x 4 uint8), and for each of
 * the 6 rows one broadcast of its 4 int8 weights (an embedded {1to16} broadcast) into four
 * vpdpbusd: 24 independent int32 accumulators, 24 x 64 multiply-adds per 10 loads. vpdpbusd
 * takes its unsigned operand first: the activations are the uint8 side, the weights int8.
 * It sums 4 products into int32 without any intermediate saturation, so the result is exact
 * (the AVX2 path below 512 bits has to widen to int16 for the same guarantee).
 */
#include "qgemm.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vnni")))

int nd_cpu_has_vnni(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
}

/* 24 named accumulators: with an array of vectors GCC kept them on the stack */
TGT void nd_quk_vnni(int64_t k4, const void *ap_, const uint8_t *bp, int32_t *acc)
{
    const int8_t *ap = (const int8_t *)ap_;
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00;
    __m512i c10 = _mm512_setzero_si512(), c11 = c10, c12 = c10, c13 = c10;
    __m512i c20 = _mm512_setzero_si512(), c21 = c20, c22 = c20, c23 = c20;
    __m512i c30 = _mm512_setzero_si512(), c31 = c30, c32 = c30, c33 = c30;
    __m512i c40 = _mm512_setzero_si512(), c41 = c40, c42 = c40, c43 = c40;
    __m512i c50 = _mm512_setzero_si512(), c51 = c50, c52 = c50, c53 = c50;
    for (int64_t g = 0; g < k4; g++) {
        const uint8_t *b = bp + g * (QNR * 4);
        const __m512i b0 = _mm512_loadu_si512((const void *)b);
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
        const __m512i b2 = _mm512_loadu_si512((const void *)(b + 128));
        const __m512i b3 = _mm512_loadu_si512((const void *)(b + 192));
        const int8_t *a = ap + g * (QMR * 4);
        /* row i: its 4 int8 weights broadcast, into its four accumulators */
#define ROW(i, c0, c1, c2, c3)                                                                     \
    do {                                                                                           \
        int32_t w4;                                                                                \
        memcpy(&w4, a + 4 * (i), 4);                                                               \
        const __m512i wv = _mm512_set1_epi32(w4);                                                  \
        c0 = _mm512_dpbusd_epi32(c0, b0, wv);                                                      \
        c1 = _mm512_dpbusd_epi32(c1, b1, wv);                                                      \
        c2 = _mm512_dpbusd_epi32(c2, b2, wv);                                                      \
        c3 = _mm512_dpbusd_epi32(c3, b3, wv);                                                      \
    } while (0)
        ROW(0, c00, c01, c02, c03);
        ROW(1, c10, c11, c12, c13);
        ROW(2, c20, c21, c22, c23);
        ROW(3, c30, c31, c32, c33);
        ROW(4, c40, c41, c42, c43);
        ROW(5, c50, c51, c52, c53);
#undef ROW
    }
#define ST(i, v0, v1, v2, v3)                                                                      \
    do {                                                                                           \
        _mm512_storeu_si512((void *)(acc + (i) * QNR), v0);                                        \
        _mm512_storeu_si512((void *)(acc + (i) * QNR + 16), v1);                                   \
        _mm512_storeu_si512((void *)(acc + (i) * QNR + 32), v2);                                   \
        _mm512_storeu_si512((void *)(acc + (i) * QNR + 48), v3);                                   \
    } while (0)
    ST(0, c00, c01, c02, c03);
    ST(1, c10, c11, c12, c13);
    ST(2, c20, c21, c22, c23);
    ST(3, c30, c31, c32, c33);
    ST(4, c40, c41, c42, c43);
    ST(5, c50, c51, c52, c53);
#undef ST
}
#endif

#if defined(__x86_64__) || defined(__i386__)
/* xq[i] = q8(x[i]) (kernels/qconv.c) for i < n, 16 at a time: the scalar form has branches
 * GCC does not vectorize. vcvtps2dq rounds half to even (the default MXCSR), as q8's 1.5 * 2^23
 * trick does, and the NaN lanes take z before the clamp, so every lane equals q8. */
__attribute__((target("avx512f"))) void nd_quant_u8_avx512(uint8_t *xq, const float *x, int64_t n, float inv, float z)
{
    const __m512 vinv = _mm512_set1_ps(inv), vz = _mm512_set1_ps(z), lo = _mm512_setzero_ps(),
                 hi = _mm512_set1_ps(255.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv), vz);
        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), vz);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        _mm_storeu_si128((__m128i *)(xq + i), _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    for (; i < n; i++) {
        float v = x[i] * inv;
        v = v + z;
        v = v == v ? v : z;
        v = v < 0.0f ? 0.0f : v;
        v = v > 255.0f ? 255.0f : v;
        xq[i] = (uint8_t)(int32_t)((v + 12582912.0f) - 12582912.0f);
    }
}
#endif

#if defined(__x86_64__) || defined(__i386__)
/* d[4x + q] = q8(rows[q][x]) for x < n (NULL row: z): 16 pixels of 4 channels quantized, then
 * interleaved by bytes and by pairs into 64 bytes (kernels/qconv.c's direct layout) */
__attribute__((target("avx512f"))) static inline __m128i q16(const float *r, __m512 vinv, __m512 vz)
{
    if (!r)
        return _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(vz));
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(r), vinv), vz);
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), vz);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
    return _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v));
}

__attribute__((target("avx512f"))) void nd_quant_rows4_avx512(uint8_t *d, const float *const *rows, int64_t n,
                                                              float inv, float z)
{
    const __m512 vinv = _mm512_set1_ps(inv), vz = _mm512_set1_ps(z);
    int64_t x = 0;
    for (; x + 16 <= n; x += 16) {
        const __m128i q0 = q16(rows[0] ? rows[0] + x : NULL, vinv, vz), q1 = q16(rows[1] ? rows[1] + x : NULL, vinv, vz);
        const __m128i q2 = q16(rows[2] ? rows[2] + x : NULL, vinv, vz), q3 = q16(rows[3] ? rows[3] + x : NULL, vinv, vz);
        const __m128i a = _mm_unpacklo_epi8(q0, q1), b = _mm_unpackhi_epi8(q0, q1);
        const __m128i c = _mm_unpacklo_epi8(q2, q3), e = _mm_unpackhi_epi8(q2, q3);
        _mm_storeu_si128((__m128i *)(d + 4 * x), _mm_unpacklo_epi16(a, c));
        _mm_storeu_si128((__m128i *)(d + 4 * x + 16), _mm_unpackhi_epi16(a, c));
        _mm_storeu_si128((__m128i *)(d + 4 * x + 32), _mm_unpacklo_epi16(b, e));
        _mm_storeu_si128((__m128i *)(d + 4 * x + 48), _mm_unpackhi_epi16(b, e));
    }
    if (x < n) {                        /* the tail: masked loads (no read past the rows), then n - x pixels */
        const __mmask16 k = (__mmask16)((1u << (n - x)) - 1);
        __m128i q[4];
        for (int c = 0; c < 4; c++) {
            if (!rows[c]) {
                q[c] = _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(vz));
                continue;
            }
            __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, rows[c] + x), vinv), vz);
            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), vz);
            v = _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
            q[c] = _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v));
        }
        const __m128i a = _mm_unpacklo_epi8(q[0], q[1]), b = _mm_unpackhi_epi8(q[0], q[1]);
        const __m128i c = _mm_unpacklo_epi8(q[2], q[3]), e = _mm_unpackhi_epi8(q[2], q[3]);
        uint8_t tmp[64];
        _mm_storeu_si128((__m128i *)tmp, _mm_unpacklo_epi16(a, c));
        _mm_storeu_si128((__m128i *)(tmp + 16), _mm_unpackhi_epi16(a, c));
        _mm_storeu_si128((__m128i *)(tmp + 32), _mm_unpacklo_epi16(b, e));
        _mm_storeu_si128((__m128i *)(tmp + 48), _mm_unpackhi_epi16(b, e));
        memcpy(d + 4 * x, tmp, (size_t)(4 * (n - x)));
    }
}
#endif

#if defined(__x86_64__) || defined(__i386__)
/* One epilogue row of kernels/qconv.c, 16 values at a time with masks (runs are often 7 or
 * 14 long): v = ((float)(a[j] - cm) * sc + bi), + the residual (float32, or uint8 read as
 * ((float)r - rz) * rs), relu when asked, then stored as float32 or quantized (q8 with oinv,
 * oz) as uint8 — the same float32 operations as the scalar form, each rounded (no FMA).
 * vmaxps(0, v) returns v for a NaN v (its second operand), as `v < 0 ? 0 : v` does, and -0
 * for -0. rkind: 0 none, 1 float32, 2 uint8. */
__attribute__((target("avx512f"))) void nd_qepi_row_avx512(void *y, const void *r, int rkind, const int32_t *a,
                                                           int64_t len, int32_t cm, float sc, float bi, int relu,
                                                           int out_u8, float oinv, float oz, float rs, float rz)
{
    const __m512i vcm = _mm512_set1_epi32(cm);
    const __m512 vsc = _mm512_set1_ps(sc), vbi = _mm512_set1_ps(bi), zero = _mm512_setzero_ps();
    const __m512 vinv = _mm512_set1_ps(oinv), vz = _mm512_set1_ps(oz), hi = _mm512_set1_ps(255.0f);
    const __m512 vrs = _mm512_set1_ps(rs), vrz = _mm512_set1_ps(rz);
    for (int64_t j = 0; j < len; j += 16) {
        const int64_t n = len - j >= 16 ? 16 : len - j;
        const __mmask16 k = n == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
        const __m512i acc = _mm512_maskz_loadu_epi32(k, a + j);
        __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, vcm));
        v = _mm512_add_ps(_mm512_mul_ps(v, vsc), vbi);
        if (rkind == 1) {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, (const float *)r + j));
        } else if (rkind == 2) {
            __m128i r16;
            if (n == 16) {
                r16 = _mm_loadu_si128((const __m128i *)((const uint8_t *)r + j));
            } else {                    /* the tail: no read past the row */
                uint8_t t[16] = {0};
                for (int64_t e = 0; e < n; e++) t[e] = ((const uint8_t *)r)[j + e];
                r16 = _mm_loadu_si128((const __m128i *)t);
            }
            const __m512 rv = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(r16));
            v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_sub_ps(rv, vrz), vrs));
        }
        if (relu)
            v = _mm512_max_ps(zero, v);
        if (!out_u8) {
            _mm512_mask_storeu_ps((float *)y + j, k, v);
            continue;
        }
        v = _mm512_add_ps(_mm512_mul_ps(v, vinv), vz);
        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), vz);
        v = _mm512_min_ps(_mm512_max_ps(v, zero), hi);
        const __m128i q = _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v));
        if (n == 16) {
            _mm_storeu_si128((__m128i *)((uint8_t *)y + j), q);
        } else {
            uint8_t t[16];
            _mm_storeu_si128((__m128i *)t, q);
            for (int64_t e = 0; e < n; e++) ((uint8_t *)y)[j + e] = t[e];
        }
    }
}
#endif
