/* gemm.c — the SGEMM driver (packing, cache blocking, threads, small-M paths)
 * and the portable micro-kernel. Per-ISA micro-kernels: gemm_avx2.c, gemm_avx512.c.
 *
 * C (M,N) row-major = A (M,K) . B (K,N), operands strided (dispatch.h: nd_mat)
 * or, for B, the implicit im2col matrix of an image (nd_im2col), which is
 * packed straight from the image so convolutions never materialize im2col.
 *
 * Loop nest (BLIS): per thread, for each NC block of its columns, for each KC
 * slice of K: pack B (kc x nc) into NR-wide panels; for each MC block of its
 * rows: pack A (mc x kc) into MR-high panels (or point into a prepacked A);
 * then for every NR panel, for every MR panel: one micro-kernel call. A
 * micro-panel of B (kc x NR) stays in L1 while the MR panels of A stream from
 * L2; the packed B block lives in L2/L3.
 *
 * Threads: the output is cut into tn x tm rectangles on panel boundaries,
 * columns first (conv: many output pixels, few channels; FC: many outputs).
 * Each thread packs its own B and A: no barriers, no shared buffers; the
 * cost is A packed once per thread, which is K*M floats against M*N*K/T
 * multiply-adds. Bias is folded into the first K slice, relu/leaky/relu6 into the
 * last store; the other activations (sigmoid, tanh, ...) are a pass over each finished
 * C block's rows (mc x nc, in L2), not per tile row (too short to fill the vectors).
 *
 * Not done: beta other than 0/1, alpha, column-strided C, complex/double.
 */
#include "kernels/gemm.h"

#include <math.h>
#include <string.h>

#include "dispatch.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define ALIGN_F 16 /* floats: 64 bytes */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t rup(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

static float *align64(float *p)
{
    uintptr_t u = (uintptr_t)p;
    return (float *)((u + 63) & ~(uintptr_t)63);
}

/* ------------------------------------------------------------- epilogues */

/* Every comparison is written so that NaN fails it and falls through to the
 * value itself: `y < 0 ? 0 : y`, never `y > 0 ? y : 0` (which turns NaN into 0).
 * The transcendental ones run the ISA table's act_vec, kernels/fast_math.c's vectorized
 * nd_math.h pass (installed by dispatch.c), bit-equal to the scalar nd_act1 (dispatch.h). */
void nd_act_inplace(float *y, int64_t n, int act)
{
    if (act == ND_ACT_NONE) return;
    if (nd_act_is_pass(act)) {
        const nd_isa_ops *o = nd_ops();
        if (o->act_vec) {
            o->act_vec(y, n, act);
            return;
        }
    }
    switch (act) {
    case ND_ACT_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = y[i] < 0.0f ? 0.0f : y[i];
        break;
    case ND_ACT_LEAKYRELU:
        for (int64_t i = 0; i < n; i++) y[i] = y[i] < 0.0f ? 0.01f * y[i] : y[i];
        break;
    default:
        if (nd_act_ok(act))
            for (int64_t i = 0; i < n; i++) y[i] = nd_act1(y[i], act);
        break;
    }
}

/* ------------------------------------------------------------- portable ISA */

enum { P_MR = 4, P_NR = 16 };

/* Plain C: the compiler vectorizes the j loops with whatever the baseline ISA has. */
static void uk_portable(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                        int64_t mr, int64_t nr, const float *brow, const float *bcol, int flags,
                        const float *apf)
{
    float t[P_MR][P_NR];
    (void)apf;
    memset(t, 0, sizeof t);
    for (int64_t k = 0; k < kc; k++) {
        for (int i = 0; i < P_MR; i++) {
            const float a = ap[i];
            for (int j = 0; j < P_NR; j++) t[i][j] += a * bp[j];
        }
        ap += P_MR;
        bp += P_NR;
    }
    for (int64_t i = 0; i < mr; i++) {
        float *cr = c + i * ldc;
        for (int64_t j = 0; j < nr; j++) {
            float v = t[i][j];
            if (flags & ND_UK_ACC) v += cr[j];
            if (brow) v += brow[i];
            if (bcol) v += bcol[j];
            if (flags & ND_UK_RELU) v = v < 0.0f ? 0.0f : v;           /* NaN stays NaN */
            if (flags & ND_UK_LEAKY) v = v < 0.0f ? 0.01f * v : v;
            if (flags & ND_UK_RELU6) v = nd_relu6f(v);
            cr[j] = v;
        }
    }
}

static float dot_portable(const float *a, const float *b, int64_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void axpy_portable(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void nd_dw_plane_portable(float *y, const float *x, const float *w, float bias, const float *r,
                          int act, int64_t h, int64_t w_, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                          int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl);

nd_isa_ops nd_ops_portable = {
    .level = ND_ISA_PORTABLE, .name = "portable",
    .mr = P_MR, .nr = P_NR, .mc = 128, .kc = 256, .nc = 1024,
    .ukernel = uk_portable, .dot = dot_portable, .axpy = axpy_portable,
    .im2col_panel = nd_im2col_panel_portable,
    .dw_plane = nd_dw_plane_portable,
};

/* ------------------------------------------------------------- packing */

/* A rows [i0, i0+mc) x cols [k0, k0+kc) into MR-high k-major panels, zero-padded. */
static void pack_a(float *dst, const nd_mat *a, int64_t K, int64_t i0, int64_t mc, int64_t k0,
                   int64_t kc, int64_t MR)
{
    for (int64_t ip = 0; ip < mc; ip += MR) {
        const int64_t mr = min64(MR, mc - ip);
        float *d = dst + ip * kc;
        if (a->packed_mr > 0) {   /* repack from another MR's panels (rare: ISA changed) */
            const int64_t P = a->packed_mr;
            for (int64_t k = 0; k < kc; k++)
                for (int64_t i = 0; i < mr; i++) {
                    int64_t r = i0 + ip + i;
                    d[k * MR + i] = a->p[(r / P) * P * K + (k0 + k) * P + r % P];
                }
        } else if (a->cs == 1) {
            for (int64_t i = 0; i < mr; i++) {
                const float *s = a->p + (i0 + ip + i) * a->rs + k0;
                for (int64_t k = 0; k < kc; k++) d[k * MR + i] = s[k];
            }
        } else if (a->rs == 1) {   /* A transposed in memory (W^T of the conv dx): rows of MR floats */
            for (int64_t k = 0; k < kc; k++)
                memcpy(d + k * MR, a->p + i0 + ip + (k0 + k) * a->cs, (size_t)mr * sizeof(float));
        } else {
            for (int64_t k = 0; k < kc; k++) {
                const float *s = a->p + (i0 + ip) * a->rs + (k0 + k) * a->cs;
                for (int64_t i = 0; i < mr; i++) d[k * MR + i] = s[i * a->rs];
            }
        }
        if (mr < MR)
            for (int64_t k = 0; k < kc; k++)
                for (int64_t i = mr; i < MR; i++) d[k * MR + i] = 0.0f;
    }
}

/* B rows [k0, k0+kc) x cols [j0, j0+nc) into NR-wide k-major panels, zero-padded. */
static void pack_b_mat(float *dst, const nd_mat *b, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                       int64_t NR)
{
    if (b->packed_nr <= 0 && b->cs == 1) {
        /* KB source rows at a time, each read as one sequential run of nc floats: panel by
         * panel it was kc streams of NR floats, more than the hardware prefetchers follow
         * (a 256 -> 64 1x1 conv at batch 8 waited on memory); row by row, the writes 4*kc*NR
         * bytes apart fell into the same L1 sets */
        enum { KB = 8 };
        for (int64_t kb = 0; kb < kc; kb += KB) {
            const int64_t kn = min64(KB, kc - kb);
            for (int64_t jp = 0; jp < nc; jp += NR) {
                const int64_t nr = min64(NR, nc - jp);
                float *d = dst + jp * kc + kb * NR;
                const float *s = b->p + (k0 + kb) * b->rs + j0 + jp;
                for (int64_t k = 0; k < kn; k++) {
                    memcpy(d + k * NR, s + k * b->rs, (size_t)nr * sizeof(float));
                    for (int64_t j = nr; j < NR; j++) d[k * NR + j] = 0.0f;
                }
            }
        }
        return;
    }
    for (int64_t jp = 0; jp < nc; jp += NR) {
        const int64_t nr = min64(NR, nc - jp);
        float *d = dst + jp * kc;
        if (b->packed_nr > 0) {   /* repack from another NR's panels (rare: ISA changed) */
            const int64_t P = b->packed_nr, K = b->rs;   /* rs holds the full K here */
            for (int64_t k = 0; k < kc; k++)
                for (int64_t j = 0; j < NR; j++) {
                    const int64_t c = j0 + jp + j;
                    d[k * NR + j] = j < nr ? b->p[(c / P) * P * K + (k0 + k) * P + c % P] : 0.0f;
                }
        } else {
            for (int64_t j = 0; j < nr; j++) {
                const float *s = b->p + (j0 + jp + j) * b->cs + k0 * b->rs;
                for (int64_t k = 0; k < kc; k++) d[k * NR + j] = s[k * b->rs];
            }
            for (int64_t k = 0; k < kc; k++)
                for (int64_t j = nr; j < NR; j++) d[k * NR + j] = 0.0f;
        }
    }
}

/* im2col B straight from the image. A panel's columns are output pixels
 * n..n+nr, which split into runs on one output row (nd_im2col_seg); along a
 * run the input column advances by sw, so with sw == 1 each (k, run) is one
 * copy between two zero fills. The per-k copies are the ISA's im2col_panel
 * (AVX-512: masked loads/stores, one or two per run, no scalar tails). */
static void pack_b_im2col(float *dst, const nd_im2col *g, int64_t k0, int64_t kc, int64_t j0,
                          int64_t nc, int64_t NR)
{
    const int64_t OHW = g->oh * g->ow;
    const nd_isa_ops *o = nd_ops();
    nd_im2col_seg seg[64]; /* NR <= 64 */
    for (int64_t jp = 0; jp < nc; jp += NR) {
        const int64_t nr = min64(NR, nc - jp);
        int64_t ns = 0;
        for (int64_t j = 0; j < nr;) {
            const int64_t nn = j0 + jp + j, b = g->img_stride ? nn / OHW : 0, n = nn - b * OHW;
            const int64_t oy = n / g->ow, ox = n % g->ow;
            const int64_t len = min64(nr - j, g->ow - ox);
            seg[ns].img = b * g->img_stride;
            seg[ns].j = j;
            seg[ns].len = len;
            seg[ns].iy = oy * g->sh - g->pt;
            seg[ns].ix = ox * g->sw - g->pl;
            ns++;
            j += len;
        }
        o->im2col_panel(dst + jp * kc, g, seg, ns, nr, NR, k0, kc);
    }
}

void nd_im2col_panel_portable(float *d, const nd_im2col *g, const nd_im2col_seg *seg, int64_t ns, int64_t nr,
                              int64_t NR, int64_t k0, int64_t kc)
{
    const int64_t H = g->h, W = g->w, KK = g->kh * g->kw;
    int64_t c = k0 / KK, r = k0 % KK, ki = r / g->kw, kj = r % g->kw;
    for (int64_t k = 0; k < kc; k++) {
        const float *img = g->x + c * H * W;
        const int64_t dy = ki * g->dh, dx = kj * g->dw;
        float *drow = d + k * NR;
        for (int64_t s = 0; s < ns; s++) {
            float *o = drow + seg[s].j;
            const int64_t len = seg[s].len, iy = seg[s].iy + dy, ix = seg[s].ix + dx;
            if (iy < 0 || iy >= H) {
                for (int64_t t = 0; t < len; t++) o[t] = 0.0f;
                continue;
            }
            const float *row = img + seg[s].img + iy * W;
            if (g->sw == 1) {
                /* valid t: 0 <= ix + t < W */
                const int64_t lo = min64(len, max64(0, -ix)), hi = max64(lo, min64(len, W - ix));
                for (int64_t t = 0; t < lo; t++) o[t] = 0.0f;
                const float *src = row + ix;
                for (int64_t t = lo; t < hi; t++) o[t] = src[t];   /* short runs: no memcpy call */
                for (int64_t t = hi; t < len; t++) o[t] = 0.0f;
            } else {
                for (int64_t t = 0; t < len; t++) {
                    const int64_t xx = ix + t * g->sw;
                    o[t] = (xx >= 0 && xx < W) ? row[xx] : 0.0f;
                }
            }
        }
        for (int64_t j = nr; j < NR; j++) drow[j] = 0.0f;
        if (++kj == g->kw) {
            kj = 0;
            if (++ki == g->kh) {
                ki = 0;
                c++;
            }
        }
    }
}

/* ------------------------------------------------------------- driver */

int64_t nd_nr_for_mr(int64_t mr)
{
    for (int lv = ND_ISA_PORTABLE; lv <= ND_ISA_AVX512; lv++) {
        const nd_isa_ops *o = nd_ops_for(lv);
        if (o && o->mr == mr) return o->nr;
    }
    return 0;
}

void nd_pack_b_full(float *dst, const float *src, int64_t k, int64_t n, int64_t rs, int64_t cs, int64_t nr)
{
    const nd_mat b = {src, rs, cs, 0, 0};
    /* one K-deep slice per panel: the layout [panel][k][NR] that gemm_rect indexes */
    for (int64_t j = 0; j < n; j += nr)
        pack_b_mat(dst + j * k, &b, 0, k, j, min64(nr, n - j), nr);
}

static int64_t per_thread_ws(const nd_isa_ops *o, int64_t m, int64_t n, int64_t k)
{
    const int64_t kc = min64(o->kc, max64(k, 1));
    const int64_t mc = min64(o->mc, rup(max64(m, 1), o->mr));
    const int64_t nc = min64(o->nc, rup(max64(n, 1), o->nr));
    return mc * kc + kc * nc + 2 * ALIGN_F;
}

int64_t nd_sgemm_ws(int64_t m, int64_t n, int64_t k, int threads)
{
    int64_t best = 0;
    for (int lv = ND_ISA_PORTABLE; lv <= ND_ISA_AVX512; lv++) {
        const nd_isa_ops *o = nd_ops_for(lv);
        if (o) best = max64(best, per_thread_ws(o, m, n, k));
    }
    return best * (threads < 1 ? 1 : threads) + ALIGN_F;
}

/* One thread's rectangle [i0,i1) x [j0,j1) of C; i0 % MR == 0, j0 % NR == 0. */
static void gemm_rect(const nd_gemm_desc *d, const nd_isa_ops *o, float *ws, int64_t i0, int64_t i1,
                      int64_t j0, int64_t j1)
{
    const int64_t MR = o->mr, NR = o->nr, K = d->k;
    const int64_t kcb = min64(o->kc, K);
    const int64_t mcb = min64(o->mc, rup(d->m, MR));
    float *abuf = align64(ws);
    float *bbuf = align64(abuf + mcb * kcb);
    const int prepacked = !d->a_im2col && d->a.packed_mr == MR;
    const int b_prepacked = !d->b_im2col && d->b.packed_nr == NR;
    const int act = d->act;
    const int lastflags = nd_uk_act_flag(act);

    for (int64_t jc = j0; jc < j1; jc += o->nc) {
        const int64_t nc = min64(o->nc, j1 - jc);
        for (int64_t pc = 0; pc < K; pc += o->kc) {
            const int64_t kc = min64(o->kc, K - pc);
            const int first = pc == 0, last = pc + kc == K;
            const float *bblk = bbuf;
            int64_t bstride = NR * kc; /* floats between consecutive NR panels */
            if (b_prepacked) {
                bblk = d->b.p + (jc / NR) * NR * K + pc * NR;
                bstride = NR * K;
            } else if (d->b_im2col) {
                pack_b_im2col(bbuf, d->b_im2col, pc, kc, jc, nc, NR);
            } else {
                pack_b_mat(bbuf, &d->b, pc, kc, jc, nc, NR);
            }
            for (int64_t ic = i0; ic < i1; ic += o->mc) {
                const int64_t mc = min64(o->mc, i1 - ic);
                const float *apan;
                int64_t astride; /* floats between consecutive MR panels */
                if (prepacked) {
                    apan = d->a.p + (ic / MR) * MR * K + pc * MR;
                    astride = MR * K;
                } else {
                    if (d->a_im2col)   /* A = im2col^T: its MR-row panels are im2col's MR-column panels */
                        pack_b_im2col(abuf, d->a_im2col, pc, kc, ic, mc, MR);
                    else
                        pack_a(abuf, &d->a, K, ic, mc, pc, kc, MR);
                    apan = abuf;
                    astride = MR * kc;
                }
                /* Prepacked weights come from memory on their first use, in streams of 1-32 KB
                 * that the hardware prefetchers lose at every 4 KB page, so each micro-kernel
                 * call prefetches MR x kc floats of what a later call reads. Weights as A
                 * (the plain GEMM): on the first pass over the block's panels, the panel the
                 * next call reads (the last one: the next block's first). Weights as B (the
                 * transposed conv GEMM): the first NR / MR calls of an NR panel fetch the
                 * next NR panel, the last NR panel's fetch the next K slice's first. */
                const int64_t npan = (mc + MR - 1) / MR;
                const float *anext = prepacked && ic + mc < i1 ? apan + npan * astride : NULL;
                const float *bnext_slice =
                    b_prepacked && pc + kc < K ? d->b.p + (jc / NR) * NR * K + (pc + kc) * NR : NULL;
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = min64(NR, nc - jr), j = jc + jr;
                    const float *bp = bblk + (jr / NR) * bstride;
                    const float *bnext = !b_prepacked ? NULL : jr + NR < nc ? bp + bstride : bnext_slice;
                    const float *bcol = (first && d->bias_mode == ND_BIAS_COL) ? d->bias + j : NULL;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        const int64_t mr = min64(MR, mc - ir), i = ic + ir;
                        const float *brow = (first && d->bias_mode == ND_BIAS_ROW) ? d->bias + i : NULL;
                        int flags = (!first || d->accumulate) ? ND_UK_ACC : 0;
                        if (last) flags |= lastflags;
                        float *c = d->c + i * d->ldc + j;
                        const float *ap = apan + (ir / MR) * astride, *apf = ap;
                        if (prepacked && jr == 0)
                            apf = ir + MR < mc ? ap + astride : anext ? anext : ap;
                        else if (bnext && ir < NR)
                            apf = bnext + ir * kc;   /* chunk ir / MR of MR * kc floats */
                        if (first && jr + NR < nc)   /* the tile this row panel meets next */
                            for (int64_t r = 0; r < mr; r++) {
                                const char *cn = (const char *)(c + r * d->ldc + NR);
                                __builtin_prefetch(cn, 1, 3);
                                __builtin_prefetch(cn + 64, 1, 3);
                                __builtin_prefetch(cn + 124, 1, 3);
                            }
                        o->ukernel(kc, ap, bp, c, d->ldc, mr, nr, brow, bcol, flags, apf);
                    }
                }
                /* an activation the store does not do, over the block's finished rows (nc floats
                 * each: per 32-float tile row the calls cost more than the math) */
                if (last && nd_act_after_store(act))
                    for (int64_t r = ic; r < ic + mc; r++) nd_act_inplace(d->c + r * d->ldc + jc, nc, act);
            }
        }
    }
}

/* M <= 8, B stored (N,K), A rows contiguous: C[i,j] = dot(A row i, B row j). FC at small batch. */
static void gemm_dot(const nd_gemm_desc *d, const nd_isa_ops *o, int T)
{
    const int64_t M = d->m, N = d->n, K = d->k;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int64_t j = 0; j < N; j++) {
        const float *bj = d->b.p + j * d->b.cs;
        for (int64_t i = 0; i < M; i++) {
            float v = o->dot(d->a.p + i * d->a.rs, bj, K);
            float *c = d->c + i * d->ldc + j;
            if (d->accumulate) v += *c;
            if (d->bias_mode == ND_BIAS_ROW) v += d->bias[i];
            if (d->bias_mode == ND_BIAS_COL) v += d->bias[j];
            *c = v;
        }
    }
    if (d->act != ND_ACT_NONE)   /* one vectorized pass per row, not a call per element */
        for (int64_t i = 0; i < M; i++) nd_act_inplace(d->c + i * d->ldc, N, d->act);
}

/* M <= 2, B row-major: each row of C is a sum of K scaled rows of B, column chunks per thread. */
static void gemm_axpy(const nd_gemm_desc *d, const nd_isa_ops *o, int T)
{
    const int64_t M = d->m, N = d->n, K = d->k, CH = 512;
    const int64_t nchunks = (N + CH - 1) / CH;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        const int64_t j0 = ch * CH, len = min64(CH, N - j0);
        for (int64_t i = 0; i < M; i++) {
            float *c = d->c + i * d->ldc + j0;
            if (!d->accumulate)
                for (int64_t j = 0; j < len; j++) c[j] = 0.0f;
            if (d->bias_mode == ND_BIAS_ROW)
                for (int64_t j = 0; j < len; j++) c[j] += d->bias[i];
            if (d->bias_mode == ND_BIAS_COL)
                for (int64_t j = 0; j < len; j++) c[j] += d->bias[j0 + j];
            const float *ai = d->a.p + i * d->a.rs;
            for (int64_t k = 0; k < K; k++)
                o->axpy(c, ai[k * d->a.cs], d->b.p + k * d->b.rs + j0, len);
            nd_act_inplace(c, len, d->act);
        }
    }
}

/* Cut the output into tn column strips x tm row strips (tn * tm <= T) so that
 * each thread packs the least: a thread packs all of A for its rows (nothing
 * when A is prepacked) and all of B for its columns. Ties go to columns.
 * (Counting the work in whole tiles of the largest strip, which favours row
 * splits when the column panels split unevenly, was measured slower on
 * ResNet's 14x14 convs: im2col packing costs more than the idle tiles.) */
static void split(int64_t T, int64_t pm, int64_t pn, int64_t M, int64_t N, int64_t K, int a_prepacked,
                  int b_prepacked, int64_t *tn, int64_t *tm)
{
    double best = -1;
    *tn = 1;
    *tm = 1;
    for (int64_t a = T; a >= 1; a--) {          /* a column strips */
        const int64_t b = T / a;                 /* row strips */
        if (a > pn || b > pm)
            continue;
        /* per-thread packing, plus the idle share when the grid leaves threads out */
        const double pack = (a_prepacked ? 0.0 : (double)M * K / b) + (b_prepacked ? 0.0 : (double)K * N / a);
        const double work = (double)M * N * K / (double)(a * b);
        const double cost = pack + work / 8.0;   /* ~8 multiply-adds cost one packed float */
        if (best < 0 || cost < best) {
            best = cost;
            *tn = a;
            *tm = b;
        }
    }
}

nd_status nd_sgemm(const nd_gemm_desc *d, float *ws, int threads)
{
    if (d->m < 0 || d->n < 0 || d->k < 0 || !nd_act_ok(d->act))
        return ND_EINVAL;
    if (d->m == 0 || d->n == 0)
        return ND_OK;
    const nd_isa_ops *o = nd_ops();
    const int64_t M = d->m, N = d->n, K = d->k;
    if (K == 0) {   /* C = bias (+C), then act */
        for (int64_t i = 0; i < M; i++) {
            float *c = d->c + i * d->ldc;
            for (int64_t j = 0; j < N; j++) {
                float v = d->accumulate ? c[j] : 0.0f;
                if (d->bias_mode == ND_BIAS_ROW) v += d->bias[i];
                if (d->bias_mode == ND_BIAS_COL) v += d->bias[j];
                c[j] = v;
            }
            nd_act_inplace(c, N, d->act);
        }
        return ND_OK;
    }
    /* Below ~1 MFLOP a second thread costs more than it saves. */
    int T = nd_threads(threads);
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    if (flops < 2e6) T = 1;

    if (!d->b_im2col && !d->a_im2col && d->a.packed_mr == 0 && d->b.packed_nr == 0 && d->a.cs == 1) {
        if (M <= 8 && d->b.rs == 1) {
            gemm_dot(d, o, T);
            return ND_OK;
        }
        if (M <= 2 && d->b.cs == 1) {
            gemm_axpy(d, o, T);
            return ND_OK;
        }
    }
    if (!ws)
        return ND_EINVAL;

    const int64_t MR = o->mr, NR = o->nr;
    const int64_t pm = (M + MR - 1) / MR, pn = (N + NR - 1) / NR; /* panels */
    const int64_t per = per_thread_ws(o, M, N, K);
    float *ws0 = align64(ws);
    if (T > pm * pn) T = (int)(pm * pn);
#pragma omp parallel num_threads(T) if (T > 1)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int64_t tn, tm;
        split(nt, pm, pn, M, N, K, !d->a_im2col && d->a.packed_mr == MR,
              !d->b_im2col && d->b.packed_nr == NR, &tn, &tm);
        if (tid < tn * tm) {
            const int64_t tj = tid % tn, ti = tid / tn;
            const int64_t pj0 = pn * tj / tn, pj1 = pn * (tj + 1) / tn;
            const int64_t pi0 = pm * ti / tm, pi1 = pm * (ti + 1) / tm;
            const int64_t j0 = pj0 * NR, j1 = min64(N, pj1 * NR);
            const int64_t i0 = pi0 * MR, i1 = min64(M, pi1 * MR);
            if (j1 > j0 && i1 > i0)
                gemm_rect(d, o, ws0 + tid * per, i0, i1, j0, j1);
        }
    }
    return ND_OK;
}

/* ------------------------------------------------------------- the kernel */

nd_status nd_gemm_f32(const nd_gemm_params *p, float *out, const float *const *in, const float *w,
                      const float *bias, float *ws)
{
    if (!p || !out || !in || !in[0] || !w || p->m < 0 || p->n < 0 || p->k < 0 || p->bias_mode < 0 ||
        p->bias_mode > 2 || (p->bias_mode && !bias) || !ND_PROD_OK(p->m, p->n) || !ND_PROD_OK(p->m, p->k) ||
        !ND_PROD_OK(p->k, p->n))
        return ND_EINVAL;
    nd_gemm_desc d = {0};
    d.m = p->m;
    d.n = p->n;
    d.k = p->k;
    d.a.p = in[0];
    if (p->a_packed_mr > 0) {
        d.a.packed_mr = p->a_packed_mr;
    } else if (p->trans_a) {
        d.a.rs = 1;
        d.a.cs = p->m;
    } else {
        d.a.rs = p->k;
        d.a.cs = 1;
    }
    d.b.p = w;
    if (p->trans_b) {
        d.b.rs = 1;
        d.b.cs = p->k;
    } else {
        d.b.rs = p->n;
        d.b.cs = 1;
    }
    d.c = out;
    d.ldc = p->n;
    d.bias = bias;
    d.bias_mode = p->bias_mode;
    d.act = p->act;
    return nd_sgemm(&d, ws, p->threads);
}

int64_t nd_gemm_ws_floats(int64_t m, int64_t n, int64_t k, int32_t threads)
{
    return nd_sgemm_ws(m, n, k, threads);
}

int32_t nd_gemm_mr(void) { return (int32_t)nd_ops()->mr; }

int64_t nd_gemm_packed_a_floats(int64_t m, int64_t k, int32_t mr)
{
    if (mr <= 0 || m < 0 || k < 0)
        return -1;
    return rup(m, mr) * k;
}

nd_status nd_gemm_pack_a(float *dst, const float *a, int64_t m, int64_t k, int64_t rs, int64_t cs,
                         int32_t mr)
{
    if (!dst || !a || mr <= 0 || m < 0 || k < 0)
        return ND_EINVAL;
    const nd_mat src = {a, rs, cs, 0, 0};
    /* one K-wide slice per panel keeps the layout [panel][k][MR] that gemm_rect indexes */
    for (int64_t i = 0; i < m; i += mr)
        pack_a(dst + i * k, &src, k, i, min64(mr, m - i), 0, k, mr);
    return ND_OK;
}
