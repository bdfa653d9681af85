/* qgemm_avx2.c — the AVX2 int8 micro-kernel (6 x 64 as 8 sub-tiles of 6 x 8).
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

TGT void nd_quk_avx2(int64_t k4, const void *ap_, const uint8_t *bp, int32_t *acc)
{
    const int16_t *ap = (const int16_t *)ap_;
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    for (int sb = 0; sb < QNR / 8; sb++) {
        __m256i c[QMR][2];
        for (int i = 0; i < QMR; i++) c[i][0] = c[i][1] = _mm256_setzero_si256();
        for (int64_t g = 0; g < k4; g++) {
            const uint8_t *b = bp + g * (QNR * 4) + sb * 32;
            const __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b));
            const __m256i hi = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + 16)));
            const int16_t *a = ap + g * (QMR * 4);
            for (int i = 0; i < QMR; i++) {
                int64_t w4;
                memcpy(&w4, a + 4 * i, 8);
                const __m256i wv = _mm256_set1_epi64x(w4);
                c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(lo, wv));
                c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(hi, wv));
            }
        }
        for (int i = 0; i < QMR; i++) {
            const __m256i s = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(c[i][0], c[i][1]), order);
            _mm256_storeu_si256((__m256i *)(acc + i * QNR + sb * 8), s);
        }
    }
}
#endif
