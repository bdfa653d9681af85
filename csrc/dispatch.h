/* dispatch.h — the per-ISA function table and the internal SGEMM driver.
 *
 * INTERNAL: this header is not fed to cffi (only nd_common.h, kernels/<op>.h and
 * runtime/<name>.h are), so it may use anything C11 allows. csrc/dispatch.c fills
 * one `nd_isa_ops` table at load from cpuid (portable -> AVX2+FMA -> AVX-512),
 * NETDSL_ISA=portable|avx2|avx512 caps it, nd_set_isa() changes it for tests.
 *
 * The GEMM contract (MLAS/BLIS style): the driver in kernels/gemm.c owns
 * packing, cache blocking, the thread split and the small-M paths; an ISA
 * only provides a register-blocked micro-kernel over packed panels plus a
 * few vector primitives. Packed A: panels of MR rows, k-major (for each k,
 * MR floats). Packed B: panels of NR columns, k-major (for each k, NR floats).
 * Panels are zero-padded past the matrix edge, so the micro-kernel always
 * computes a full MR x NR tile and only the store is partial.
 */
#ifndef ND_DISPATCH_H
#define ND_DISPATCH_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "nd_common.h"
#include "nd_math.h"

/* micro-kernel flags */
enum {
    ND_UK_ACC = 1,    /* add the existing C tile */
    ND_UK_RELU = 2,   /* t < 0 ? 0 : t before the store (NaN stays NaN) */
    ND_UK_LEAKY = 4,  /* t < 0 ? 0.01 t : t before the store */
    ND_UK_RELU6 = 8   /* min(max(t, 0), 6) before the store (NaN stays NaN, -0 stays -0: nd_relu6f) */
};

/* a valid nd_act code (the kernels' parameter checks) */
static inline int nd_act_ok(int64_t act) { return act >= ND_ACT_NONE && act <= ND_ACT_GELU_TANH; }
/* the micro-kernel store flag that performs act, 0 when the micro-kernels do not fuse it */
static inline int nd_uk_act_flag(int act)
{
    return act == ND_ACT_RELU ? ND_UK_RELU : act == ND_ACT_LEAKYRELU ? ND_UK_LEAKY : act == ND_ACT_RELU6 ? ND_UK_RELU6 : 0;
}
/* act runs as a pass over the stored tile (sigmoid, tanh and every later code), not in the
 * micro-kernel's store (relu/leaky are fused there; relu6 too: nd_act_after_store) */
static inline int nd_act_is_pass(int act) { return act >= ND_ACT_SIGMOID && act <= ND_ACT_GELU_TANH; }
/* a pass act that a micro-kernel's store does not do (relu6 it does): run it over the stored tile */
static inline int nd_act_after_store(int act) { return nd_act_is_pass(act) && !nd_uk_act_flag(act); }

/* act of one value, the scalar definition every path agrees with: nd_math.h's float32 exp /
 * tanh / sigmoid / erfc (no libm; max errors there), the same code the vector passes
 * (kernels/fast_math.c) run, so a value gets the same bits whichever path computes it. Every
 * comparison is written so that NaN fails it and falls through to the value itself
 * (`v < 0 ? 0 : v`, never `v > 0 ? v : 0`); the x-times forms give NaN at -inf, as PyTorch. */
static inline float nd_relu6_1(float v) { return nd_relu6f(v); }   /* min(max(v, 0), 6) */
/* the transcendental cases of nd_act1, out of line (kernels/fast_math.c): inlined into a
 * per-value loop (the Winograd store) their branch-free bodies made a 3x3 conv 20x slower */
float nd_act1_math(float v, int act);
static inline float nd_act1(float v, int act)
{
    switch (act) {
    case ND_ACT_NONE: return v;
    case ND_ACT_RELU: return v < 0.0f ? 0.0f : v;
    case ND_ACT_LEAKYRELU: return v < 0.0f ? 0.01f * v : v;
    case ND_ACT_RELU6: return nd_relu6_1(v);
    case ND_ACT_HARDSIGMOID: return nd_relu6_1(v + 3.0f) / 6.0f;
    case ND_ACT_HARDSWISH: return v * (nd_relu6_1(v + 3.0f) / 6.0f);   /* not (v * 6) / 6: no overflow */
    default: return nd_act1_math(v, act);   /* sigmoid, tanh, silu, gelu (x Phi(x), Phi from erfc),
                                               mish, gelu_tanh (x sigmoid(2u)): nd_math.h */
    }
}

/* y = act(x) over n floats (y may be x), any nd_act, on the ISA in use: kernels/fast_math.c's
 * vectorized passes, bit-equal to nd_act1 per value. The standalone activation kernels call it. */
void nd_act_apply(float *y, const float *x, int64_t n, int act);
/* the in-place pass of one ISA level; dispatch.c installs it as every table's act_vec */
typedef void (*nd_act_pass_fn)(float *y, int64_t n, int act);
nd_act_pass_fn nd_act_pass_for(int level);

/* Index arithmetic limits. Every index a window kernel forms along one axis (o*s - p0 + i*d
 * for o < out, i < k, the clipping sums p + s - 1, size + p - k, ..., and the AVX-512 paths'
 * byte offsets, 4x those) is bounded in magnitude by 4 * (out*s + p0 + p1 + k*d + size + s).
 * Keeping that sum under ND_INDEX_MAX / 4 = 2^58, and products of sizes under ND_INDEX_MAX
 * = 2^60, means no signed overflow can happen, whatever
 * the compiler flags (-fno-wrapv, -ftrapv). The Python planner refuses such layers first
 * (netdsl/runtime/kparams/__init__.py: check_window); these checks are the kernels' own. */
#define ND_INDEX_MAX ((int64_t)1 << 60)

/* 1 when a * b >= 0 fits under ND_INDEX_MAX (a, b >= 0), storing it in *r */
static inline int nd_mul_ok(int64_t a, int64_t b, int64_t *r)
{
    return a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, r) && *r <= ND_INDEX_MAX;
}

/* the bound above for one axis of a window op (input `size`, `out` outputs, kernel k, stride s,
 * dilation d, pads p0/p1; for a transposed conv, size and out swap roles) */
static inline int nd_axis_ok(int64_t size, int64_t out, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1)
{
    int64_t os, kd;
    if (!nd_mul_ok(out, s, &os) || !nd_mul_ok(k, d, &kd))
        return 0;
    if (size < 0 || size > ND_INDEX_MAX || p0 < 0 || p0 > ND_INDEX_MAX || p1 < 0 || p1 > ND_INDEX_MAX)
        return 0;
    return os + p0 + p1 + kd + size + s <= ND_INDEX_MAX / 4;   /* six terms <= 2^60: no overflow */
}

/* 1 when the product of n >= 0 sizes stays under ND_INDEX_MAX */
static inline int nd_prod_ok(int n, const int64_t *f)
{
    int64_t r = 1;
    for (int i = 0; i < n; i++)
        if (!nd_mul_ok(r, f[i], &r))
            return 0;
    return 1;
}
#define ND_PROD_OK(...) nd_prod_ok((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

/* T = A(MR x kc) * B(kc x NR) from packed panels; T += C if ND_UK_ACC; T += brow[i]
 * per row and bcol[j] per column when non-NULL (only the first mr / nr are read);
 * relu/leaky/relu6 (flags); store the top-left mr x nr of T into C (row stride ldc).
 * apf: the A panel the next call reads (MR x kc floats), prefetched while this one
 * runs, or ap itself when there is nothing to fetch (a hint only: never read). */
typedef void (*nd_ukernel_fn)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                              int64_t mr, int64_t nr, const float *brow, const float *bcol, int flags,
                              const float *apf);

struct nd_im2col_s;
/* One run of an im2col panel's columns that lie on one output row of one
 * image: panel columns [j, j+len), input row iy and column ix for tap (0, 0),
 * the image at x + img. kernels/gemm.c cuts panels into these. */
typedef struct {
    int64_t j, len, iy, ix, img;
} nd_im2col_seg;

typedef struct {
    int level;                 /* nd_isa */
    const char *name;
    int64_t mr, nr;            /* micro-tile */
    int64_t mc, kc, nc;        /* cache blocks: mc % mr == 0, nc % nr == 0 */
    nd_ukernel_fn ukernel;
    float (*dot)(const float *a, const float *b, int64_t n);
    void (*axpy)(float *y, float a, const float *x, int64_t n);      /* y += a x */
    /* y = act(y) for every pass act (nd_act_is_pass: sigmoid, tanh, relu6 .. gelu_tanh), vectorized
     * (GEMM/conv epilogues); NULL: scalar nd_act1. dispatch.c sets it in every table to
     * kernels/fast_math.c's pass for that level (nd_act_pass_for), replacing the tables' own
     * initial values; it gives nd_act1's values exactly, NaN and +-inf lanes included. */
    void (*act_vec)(float *y, int64_t n, int act);
    /* Direct convolution (kernels/conv.c: use_direct): output row oy of the
     * mr <= MR channels whose weights are the packed A panel ap (K = c*kh*kw, MR per k),
     * image and geometry in g (x is one image); y[i*ldy + ox], ox < g->ow; brow: bias per
     * channel or NULL; flags ND_UK_*. NULL: the ISA has none (the GEMM runs instead).
     * g->sw is 1, or 2 on ISAs with conv_row_s2: then every row of g->x holds the image
     * row's even columns, then its odd ones (conv.c's split_columns). */
    void (*conv_row)(float *y, int64_t ldy, const struct nd_im2col_s *g, const float *ap, int64_t mr,
                     int64_t oy, const float *brow, int flags);
    int conv_row_s2;           /* conv_row takes g->sw == 2 (split rows) */
#define ND_CONV_ROW_KW 16      /* conv_row: g->kw <= this */
    /* kc k-rows (from k0) of one NR-wide im2col panel cut into segments: see kernels/gemm.c */
    void (*im2col_panel)(float *d, const struct nd_im2col_s *g, const nd_im2col_seg *seg, int64_t ns,
                         int64_t nr, int64_t NR, int64_t k0, int64_t kc);
    /* one output plane of a depthwise convolution, y = act(conv + r) (r may be NULL), see
     * kernels/conv_dw.c */
    void (*dw_plane)(float *y, const float *x, const float *w, float bias, const float *r,
                     int act, int64_t h, int64_t w_, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                     int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl);
} nd_isa_ops;

const nd_isa_ops *nd_ops(void);                 /* the table in use */
const nd_isa_ops *nd_ops_for(int level);        /* a compiled-in table, or NULL */

extern nd_isa_ops nd_ops_portable;
#if defined(__x86_64__) || defined(__i386__)
extern nd_isa_ops nd_ops_avx2;
extern nd_isa_ops nd_ops_avx512;
#endif

/* One plain C body compiled per ISA (kernels/conv_dw.c's pattern): the target attributes,
 * and ND_EACH_ISA(DEFINE), which expands DEFINE(portable, ), DEFINE(avx2, <target>) and
 * DEFINE(avx512, <target>) where x86 has them. GCC is asked for 512-bit vectors on
 * AVX-512 (it prefers 256 by default); clang has no such option. */
#if defined(__x86_64__) || defined(__i386__)
#define ND_TARGET_AVX2 __attribute__((target("avx2,fma")))
#if defined(__clang__)
#define ND_TARGET_AVX512 __attribute__((target("avx512f,fma")))
#else
#define ND_TARGET_AVX512 __attribute__((target("avx512f,fma,prefer-vector-width=512")))
#endif
#define ND_EACH_ISA(DEFINE) DEFINE(portable, ) DEFINE(avx2, ND_TARGET_AVX2) DEFINE(avx512, ND_TARGET_AVX512)
/* &prefix##avx512, &prefix##avx2 or &prefix##portable: the table DEFINE made for the ISA in use */
#define ND_PICK_OPS(prefix)                                                                        \
    (nd_ops()->level == ND_ISA_AVX512 ? &prefix##avx512                                            \
     : nd_ops()->level == ND_ISA_AVX2 ? &prefix##avx2                                              \
                                      : &prefix##portable)
#else
#define ND_EACH_ISA(DEFINE) DEFINE(portable, )
#define ND_PICK_OPS(prefix) (&prefix##portable)
#endif

/* ------------------------------------------------------------- SGEMM driver */

/* A strided matrix operand: element (r, c) = p[r * rs + c * cs]. For A,
 * packed_mr > 0 says p already holds A packed in panels of packed_mr rows over
 * the full K (nd_gemm_pack_a); the driver uses it in place when the ISA's MR
 * matches and repacks otherwise. */
typedef struct {
    const float *p;
    int64_t rs, cs;
    int32_t packed_mr;
    int32_t packed_nr;         /* B only: p holds B packed in panels of packed_nr columns over the full K */
} nd_mat;

/* B given implicitly as the im2col matrix of one image (channels of one
 * group): B(k, n) with k = (c, i, j) over (C, KH, KW) and n = (oy, ox) over
 * (OH, OW) is x[c, oy*sh - pt + i*dh, ox*sw - pl + j*dw], 0 outside. The
 * driver packs B panels straight from the image: no im2col buffer. With
 * img_stride > 0, n runs on over further images (n = b*OH*OW + oy*OW + ox,
 * image b at x + b*img_stride): the batch folded into one GEMM dimension.
 * The same matrix transposed can be A (nd_gemm_desc.a_im2col): row n, col k. */
typedef struct nd_im2col_s {
    const float *x;
    int64_t c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
    int64_t img_stride;
} nd_im2col;

void nd_im2col_panel_portable(float *d, const nd_im2col *g, const nd_im2col_seg *seg, int64_t ns, int64_t nr,
                              int64_t NR, int64_t k0, int64_t kc);

enum { ND_BIAS_NONE = 0, ND_BIAS_ROW = 1, ND_BIAS_COL = 2 };

typedef struct {
    int64_t m, n, k;
    nd_mat a;
    nd_mat b;                  /* ignored when b_im2col is set */
    const nd_im2col *b_im2col;
    const nd_im2col *a_im2col; /* A(n, k) = im2col(n, k): the transposed conv GEMM; a is ignored */
    float *c;                  /* row-major, row stride ldc */
    int64_t ldc;
    const float *bias;
    int32_t bias_mode;         /* ND_BIAS_* */
    int32_t act;               /* nd_act (nd_common.h) */
    int32_t accumulate;        /* C += A B (bias still added) */
} nd_gemm_desc;

/* C = A B (+ bias) then act. ws holds at least nd_sgemm_ws(m, n, k, threads)
 * floats; `threads` is the most threads the driver may use (it uses fewer on
 * small problems). Returns ND_EINVAL on a bad size. */
nd_status nd_sgemm(const nd_gemm_desc *d, float *ws, int threads);
int64_t nd_sgemm_ws(int64_t m, int64_t n, int64_t k, int threads);
/* the NR of the compiled-in table whose MR is mr (MRs differ per ISA), 0 if none */
int64_t nd_nr_for_mr(int64_t mr);
/* B (K x N) = src(k, j) = src[k*rs + j*cs] packed into NR-wide k-major panels over the full K */
void nd_pack_b_full(float *dst, const float *src, int64_t k, int64_t n, int64_t rs, int64_t cs, int64_t nr);

/* y = act(y) (an nd_act) in place, vectorized when the ISA has it; keeps NaN. Every epilogue
 * that the micro-kernels do not fuse goes through here. */
void nd_act_inplace(float *y, int64_t n, int act);
/* threads an OpenMP region may use now, capped by the workspace's `cap` */
int nd_threads(int cap);
#endif
