/* qgemm.h — INTERNAL (not fed to cffi): the int8 micro-kernel contract of kernels/qconv.c.
 *
 * Tile: QMR = 6 output channels x QNR = 64 output pixels of int32. Packed A (weights, at
 * load): per 4 k's, QMR rows x 4 values (int8 for layout 1, int16 for layout 2). Packed B
 * (uint8 activations, per call): per 4 k's, QNR pixels x 4 bytes, so one 32-bit lane of a
 * vector holds the 4 k's of one pixel — what vpdpbusd sums. A micro-kernel runs the whole
 * K (no K blocking: a B panel is at most 64 x KH*KW*CP bytes, 295 KB for a 3x3x512 conv,
 * which stays in L2) and stores the full tile to `acc` (row i at acc + i*QNR).
 */
#ifndef ND_QGEMM_H
#define ND_QGEMM_H
#include <stdint.h>

enum { QMR = 6, QNR = 64 };

/* d[4x] = q8(r[x]) for x < n (kernels/qconv.c's scalar quantization), r NULL: the zero point z */
void nd_quant_u8_strided(uint8_t *d, const float *r, int64_t n, float inv, float z);

typedef void (*nd_quk_fn)(int64_t k4, const void *ap, const uint8_t *bp, int32_t *acc);

void nd_quk_l1_portable(int64_t k4, const void *ap, const uint8_t *bp, int32_t *acc);
void nd_quk_l2_portable(int64_t k4, const void *ap, const uint8_t *bp, int32_t *acc);
#if defined(__x86_64__) || defined(__i386__)
void nd_quk_avx2(int64_t k4, const void *ap, const uint8_t *bp, int32_t *acc);
void nd_quk_vnni(int64_t k4, const void *ap, const uint8_t *bp, int32_t *acc);
int nd_cpu_has_vnni(void);
void nd_quant_u8_avx2(uint8_t *xq, const float *x, int64_t n, float inv, float z);
void nd_quant_u8_avx512(uint8_t *xq, const float *x, int64_t n, float inv, float z);
void nd_qepi_row_avx512(void *y, const void *r, int rkind, const int32_t *a, int64_t len, int32_t cm, float sc,
                        float bi, int relu, int out_u8, float oinv, float oz, float rs, float rz);
void nd_quant_rows4_avx2(uint8_t *d, const float *const *rows, int64_t n, float inv, float z);
void nd_quant_rows4_avx512(uint8_t *d, const float *const *rows, int64_t n, float inv, float z);
#endif
#endif
