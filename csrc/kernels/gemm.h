/* gemm.h — single-precision GEMM, the engine under Conv, ConvTranspose and FC.
 *
 * nd_gemm_f32 is a kernel like any other (tests, and a plan may call it):
 *     out (M,N) = A (M,K) . B (K,N)  (+ bias per row or per column)  then act
 * with A = in[0] (stored (K,M) when trans_a) and B = w (stored (N,K) when
 * trans_b), all row-major and dense. The driver behind it (csrc/dispatch.h:
 * nd_sgemm) packs panels into the workspace, blocks for the caches, runs a
 * register-blocked micro-kernel for the ISA in use and splits the work over
 * OpenMP threads; M <= 8 with B stored (N,K) (FC at small batch) and M <= 2
 * take a dot / axpy path that never packs.
 */
#ifndef ND_GEMM_H
#define ND_GEMM_H
#include "nd_common.h"

typedef struct {
    int64_t m, n, k;
    int32_t trans_a;      /* A is stored (K,M) */
    int32_t trans_b;      /* B is stored (N,K) */
    int32_t bias_mode;    /* 0 none, 1 bias[m] per row, 2 bias[n] per column */
    int32_t act;          /* nd_act (nd_common.h) */
    int32_t threads;      /* the workspace was sized for this many threads (>= 1) */
    int32_t a_packed_mr;  /* > 0: in[0] holds A prepacked by nd_gemm_pack_a with this MR */
} nd_gemm_params;

nd_status nd_gemm_f32(const nd_gemm_params *p, float *out, const float *const *in,
                      const float *w, const float *bias, float *ws);

/* Workspace floats nd_gemm_f32 needs for these sizes with up to `threads`
 * threads, valid for every ISA level (so nd_set_isa never invalidates a plan). */
int64_t nd_gemm_ws_floats(int64_t m, int64_t n, int64_t k, int32_t threads);

/* Prepacking a constant A (weights) once at plan time: the row-panel height
 * of the ISA in use, the floats a packed copy takes, and the packing itself
 * (element (i,k) of the source is a[i*rs + k*cs]). */
int32_t nd_gemm_mr(void);
int64_t nd_gemm_packed_a_floats(int64_t m, int64_t k, int32_t mr);
nd_status nd_gemm_pack_a(float *dst, const float *a, int64_t m, int64_t k, int64_t rs, int64_t cs,
                         int32_t mr);
#endif
