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

TGT void nd_quk_vnni(int64_t k4, const void *ap_, const uint8_t *bp, int32_t *acc)
{
    const int8_t *ap = (const int8_t *)ap_;
    __m512i c[QMR][4];
    for (int i = 0; i < QMR; i++)
        for (int v = 0; v < 4; v++) c[i][v] = _mm512_setzero_si512();
    for (int64_t g = 0; g < k4; g++) {
        const uint8_t *b = bp + g * (QNR * 4);
        const __m512i b0 = _mm512_loadu_si512((const void *)b);
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
        const __m512i b2 = _mm512_loadu_si512((const void *)(b + 128));
        const __m512i b3 = _mm512_loadu_si512((const void *)(b + 192));
        const int8_t *a = ap + g * (QMR * 4);
        for (int i = 0; i < QMR; i++) {
            int32_t w4;
            memcpy(&w4, a + 4 * i, 4);
            const __m512i wv = _mm512_set1_epi32(w4);
            c[i][0] = _mm512_dpbusd_epi32(c[i][0], b0, wv);
            c[i][1] = _mm512_dpbusd_epi32(c[i][1], b1, wv);
            c[i][2] = _mm512_dpbusd_epi32(c[i][2], b2, wv);
            c[i][3] = _mm512_dpbusd_epi32(c[i][3], b3, wv);
        }
    }
    for (int i = 0; i < QMR; i++)
        for (int v = 0; v < 4; v++) _mm512_storeu_si512((void *)(acc + i * QNR + 16 * v), c[i][v]);
}
#endif
