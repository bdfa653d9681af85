/* nd_simd.h — per-ISA vector primitives of the element-wise, pooling and BN kernels.
 *
 * INTERNAL (not under csrc/kernels, so not fed to cffi). The GEMM path has its table in
 * dispatch.h (nd_isa_ops); the data-movement / element-wise kernels (pool.c, norm.c,
 * merge.c, activation.c, prelu.c) call these row primitives instead, picked by
 * nd_simd() from the ISA level in use (nd_ops()->level), so NETDSL_ISA and nd_set_isa()
 * reach every body. Bodies: csrc/kernels/simd.c (portable C) and simd_avx2.c (AVX2
 * intrinsics). An AVX-512 machine runs the AVX2 bodies (these loops are memory bound;
 * no separate AVX-512 code to keep untested).
 *
 * Semantics are the portable C's, bit for bit: every primitive performs the same float
 * operations in the same order per element (no FMA contraction: mul then add); the
 * reductions hsum / hred run in 8 lanes then a fixed order on both ISAs (reordered
 * against a serial loop, identical across ISAs; tests/ops/test_simd_kernels.py checks
 * the bits). Max/min are
 * `(v > m) | (v != v) ? v : m` (NaN sticky, the first of equal values kept), written in
 * AVX2 as blendv(max_ps(v, m), v, unord(v, v)): max_ps(a, b) is `a > b ? a : b`, so the
 * blend only adds "v is NaN -> v".
 */
#ifndef ND_SIMD_H
#define ND_SIMD_H
#include <stdint.h>

#include "nd_common.h"

enum { ND_RED_MAX = 0, ND_RED_MIN = 1, ND_RED_SUM = 2 };   /* SUM: pool_row only */

typedef struct {
    /* y[i] = act(x[i] * s + t), act an nd_act (relu/leaky fused, sigmoid/tanh after); y may be x */
    void (*affine_act)(float *y, const float *x, float s, float t, int64_t n, int act);
    /* y[i] = x[i] > 0 ? x[i] : a * x[i] (PReLU); y may be x */
    void (*prelu)(float *y, const float *x, float a, int64_t n);
    /* y[i] = x[i] < 0 ? x[i] * a : x[i]  (a = 0: ReLU, exactly x < 0 ? 0 : x); y may be x */
    void (*leaky)(float *y, const float *x, float a, int64_t n);
    /* y[i] = y[i] op x[i] for op = + (mul 0) or * (mul 1); x == NULL: the scalar c instead */
    void (*accum)(float *y, const float *x, float c, int64_t n, int mul);
    /* y[i] = red(a[i], x[i]) (ND_RED_MAX / MIN, NaN sticky); y may be a */
    void (*vred)(float *y, const float *a, const float *x, int64_t n, int op);
    /* one row of a window max/min/sum: y[j] = red_{k < kw} b[j*s + k] (k = 0, 1, ... in
     * order), j < ow; b holds (ow-1)*s + kw floats plus 16 readable ones (the caller pads
     * with the identity; the stride-2 loads read one float past the last one used) */
    void (*pool_row)(float *y, const float *b, int64_t ow, int64_t kw, int64_t s, int op);
    /* red over x[0..n), n >= 1, NaN sticky */
    float (*hred)(const float *x, int64_t n, int op);
    /* sum of x[0..n) (lane-parallel order; not bit-equal across ISAs) */
    float (*hsum)(const float *x, int64_t n);
} nd_simd_ops;

const nd_simd_ops *nd_simd(void);          /* the table for the ISA level in use */
extern const nd_simd_ops nd_simd_portable;
#if defined(__x86_64__) || defined(__i386__)
extern const nd_simd_ops nd_simd_avx2;
#endif
#endif
