/* qgemm_avx2.c — the AVX2 int8 micro-kernel (6 x 64 as 16 sub-tiles of 3 x 8).
 *
 * vpmaddubsw (u8 x s8 -> s16, pairs summed with signed saturation) would be the fast
 * instruction, but 255 * 127 * 2 = 64770 does not fit in int16: real activations near 255
 * with large weights of one sign would saturate, and the result would differ from the exact
 * int32 sum the VNNI and portable paths give. This path takes the other usual fix: the
 * weights are packed as int16 at load (layout 2) and the activations widened to int16
 * (vpmovzxbw), then vpmaddwd (s16 x s16 -> s32, pairs summed, which cannot overflow here)
 * — exact, bit-equal to the other paths, at about half of vpmaddubsw's rate.
 *
 * Lanes: a widened 16-byte half of a B row holds 4 pixels x 4 k's; vpmaddwd against the
 * row's 4 weights (broadcast as 64 bits) leaves two partial sums per pixel (k0+k1, k2+k3);
 * the store adds the pairs (vphaddd) and puts the pixels back in order (vpermd).
 */
#include "qgemm.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2")))

/* 3 rows x 8 pixels at a time, named accumulators: 6 rows (or an array of vectors) did not
 * fit the 16 ymm registers and GCC spilled accumulators in the inner loop */
TGT void nd_quk_avx2(int64_t k4, const void *ap_, const uint8_t *bp, int32_t *acc)
{
    const int16_t *ap = (const int16_t *)ap_;
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    for (int sb = 0; sb < QNR / 8; sb++) {
        for (int r0 = 0; r0 < QMR; r0 += 3) {
            __m256i l0 = _mm256_setzero_si256(), h0 = l0;
            __m256i l1 = _mm256_setzero_si256(), h1 = l1;
            __m256i l2 = _mm256_setzero_si256(), h2 = l2;
            for (int64_t g = 0; g < k4; g++) {
                const uint8_t *b = bp + g * (QNR * 4) + sb * 32;
                const __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b));
                const __m256i hi = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + 16)));
                const int16_t *a = ap + g * (QMR * 4) + r0 * 4;
                {
                    int64_t w4;
                    memcpy(&w4, a + 0, 8);
                    const __m256i wv = _mm256_set1_epi64x(w4);
                    l0 = _mm256_add_epi32(l0, _mm256_madd_epi16(lo, wv));
                    h0 = _mm256_add_epi32(h0, _mm256_madd_epi16(hi, wv));
                }
                {
                    int64_t w4;
                    memcpy(&w4, a + 4, 8);
                    const __m256i wv = _mm256_set1_epi64x(w4);
                    l1 = _mm256_add_epi32(l1, _mm256_madd_epi16(lo, wv));
                    h1 = _mm256_add_epi32(h1, _mm256_madd_epi16(hi, wv));
                }
                {
                    int64_t w4;
                    memcpy(&w4, a + 8, 8);
                    const __m256i wv = _mm256_set1_epi64x(w4);
                    l2 = _mm256_add_epi32(l2, _mm256_madd_epi16(lo, wv));
                    h2 = _mm256_add_epi32(h2, _mm256_madd_epi16(hi, wv));
                }
            }
            _mm256_storeu_si256((__m256i *)(acc + (r0 + 0) * QNR + sb * 8), _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(l0, h0), order));
            _mm256_storeu_si256((__m256i *)(acc + (r0 + 1) * QNR + sb * 8), _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(l1, h1), order));
            _mm256_storeu_si256((__m256i *)(acc + (r0 + 2) * QNR + sb * 8), _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(l2, h2), order));
        }
    }
}
#endif

#if defined(__x86_64__) || defined(__i386__)
/* xq[i] = q8(x[i]) (kernels/qconv.c) for i < n, 8 at a time (see nd_quant_u8_avx512) */
__attribute__((target("avx2"))) void nd_quant_u8_avx2(uint8_t *xq, const float *x, int64_t n, float inv, float z)
{
    const __m256 vinv = _mm256_set1_ps(inv), vz = _mm256_set1_ps(z), lo = _mm256_setzero_ps(),
                 hi = _mm256_set1_ps(255.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv), vz);
        v = _mm256_blendv_ps(v, vz, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        const __m256i d = _mm256_cvtps_epi32(v);                    /* 0 .. 255 */
        const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
        const __m128i b8 = _mm_packus_epi16(w16, w16);
        _mm_storel_epi64((__m128i *)(xq + i), b8);
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
/* d[4x + q] = q8(rows[q][x]) for x < n (NULL row: z), 8 pixels at a time */
__attribute__((target("avx2"))) static inline __m128i q8v(const float *r, __m256 vinv, __m256 vz)
{
    __m256 v = vz;
    if (r) {
        v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(r), vinv), vz);
        v = _mm256_blendv_ps(v, vz, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(255.0f));
    }
    const __m256i d = _mm256_cvtps_epi32(v);
    const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
    return _mm_packus_epi16(w16, w16);               /* 8 bytes in the low half */
}

__attribute__((target("avx2"))) void nd_quant_rows4_avx2(uint8_t *d, const float *const *rows, int64_t n,
                                                         float inv, float z)
{
    const __m256 vinv = _mm256_set1_ps(inv), vz = _mm256_set1_ps(z);
    int64_t x = 0;
    for (; x + 8 <= n; x += 8) {
        const __m128i q0 = q8v(rows[0] ? rows[0] + x : NULL, vinv, vz), q1 = q8v(rows[1] ? rows[1] + x : NULL, vinv, vz);
        const __m128i q2 = q8v(rows[2] ? rows[2] + x : NULL, vinv, vz), q3 = q8v(rows[3] ? rows[3] + x : NULL, vinv, vz);
        const __m128i a = _mm_unpacklo_epi8(q0, q1), c = _mm_unpacklo_epi8(q2, q3);
        _mm_storeu_si128((__m128i *)(d + 4 * x), _mm_unpacklo_epi16(a, c));
        _mm_storeu_si128((__m128i *)(d + 4 * x + 16), _mm_unpackhi_epi16(a, c));
    }
    for (int q = 0; q < 4; q++)
        if (x < n)
            nd_quant_u8_strided(d + 4 * x + q, rows[q] ? rows[q] + x : NULL, n - x, inv, z);
}
#endif
