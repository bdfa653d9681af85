/* train_conv.c — backward kernels of Conv, ConvTranspose, Local and FC, on the forward's GEMM.
 *
 * Conv: x is (N,C,H,W), w is (OC,C/g,KH,KW), dy is (N,OC,OH,OW); per group g (cg = C/g,
 * og = OC/g, Kg = cg*KH*KW, P = OH*OW):
 *   dW_g (og, Kg) = sum_b dY_bg (og, P) . im2col(X_bg)^T (P, Kg)      db = sum of dy
 *   dX_bg         = col2im(W_g^T (Kg, og) . dY_bg (og, P))
 * Algorithms, chosen from the params alone (the workspace functions agree):
 *   - dx of a stride-1 conv whose pads are smaller than the (dilated) kernel is itself a
 *     forward conv: dy padded by k-1-p, correlated with the weights flipped and transposed,
 *     (C, og, KH, KW). It runs through nd_conv_f32 with those weights packed into the
 *     workspace as the executor would prepack them, so it gets the tuned forward paths
 *     (Winograd for 3x3 over enough tiles — its weight transform is paid every call here —,
 *     pointwise for 1x1) and writes dx directly: no column buffer, no scatter;
 *   - other dx (strided, or small maps): GEMM into a column buffer, the batch folded into
 *     the GEMM's width (up to `fold` images' dy side by side) when maps are small, then
 *     col2im adds every column into a zeroed dx, parallel over input planes (a plane's
 *     columns are its own rows: no races);
 *   - dW: the reduction runs over output pixels, which the driver's implicit im2col cannot
 *     supply (it reduces over taps), so the columns are built in the workspace, transposed
 *     (one row per pixel, taps contiguous: the GEMM's B panels are then row copies, ~1.4x
 *     faster than packing K-major columns through strides), over blocks of output pixels
 *     that run on across images (late ResNet stages: 7x7 maps still give deep GEMMs).
 *     Threads take whole blocks (single-thread GEMMs into per-thread partial dW, summed in
 *     thread order). 1x1 stride-1 unpadded convs on large maps read x in place;
 *   - depthwise (groups == C): direct loops, parallel over planes (dx) or channels (dW),
 *     since a GEMM with og = C/g = 1 rows would be all packing.
 * ConvTranspose is Conv's adjoint with the same weight array: its dx is the forward conv of
 * dy (nd_conv_f32, no flip: w (C, OC/g, KH, KW) is a conv weight with C outputs), and its
 * dW is Conv's dW with x and dy swapping roles (dy is the windowed side).
 * Local: per output position p, dW_p (OC, K) = dY_p^T (OC, N) . patches_p (N, K) and
 * dpatches_p (N, K) = dY_p (N, OC) . W_p (OC, K), one single-thread GEMM per position,
 * positions in parallel; dpatches go to the workspace, then col2im per input plane.
 * FC: dx = dy . W, dW = dy^T . x, db = sum over the batch of dy.
 *
 * Threads: the dx GEMMs take all threads (the driver splits their output), the blocked dW
 * splits blocks; copies, col2im and reductions are OpenMP loops over disjoint outputs. So
 * results depend on the thread count only through rounding (the GEMM's blocking, dW's
 * partial sums).
 * NaN/inf: every product is formed, as in the im2col GEMM PyTorch's backward runs; padded
 * taps multiply zeros, so a NaN in dy reaches every tap of its filter's dW (the direct
 * depthwise loops add 0*dy for the taps they skip to keep that).
 * Not done: fused activations or residuals (the training graph is unfused), float64.
 */
#include <math.h>
#include <string.h>

#include "kernels/train_conv.h"
#include "kernels/conv.h"
#include "dispatch.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define KMIN 1024                  /* pixels a folded dx GEMM spans, at least (and 1x1 dW in place) */
#define FOLD_BUDGET ((int64_t)1 << 22)   /* floats of columns + dy copies that folding may take */
#define DW_BLOCK ((int64_t)1 << 20)      /* floats of one dW column block: deep GEMMs (2^20 beat 2^17-2^18 by 5-25%) */
#define DW_KMIN 64                 /* pixels one dW GEMM reduces over, at least */
#define WINO_TILES 192             /* 4x4 tiles over which Winograd's per-step weight transform pays */
#define PM_FOLD 8                  /* folds of at least this many images run pixel-major (see gather_pm) */
#define SMALL_MAP 400              /* below: dx by the folded GEMM + col2im rather than a conv per image */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t rup16(int64_t a) { return (a + 31) / 16 * 16; }   /* + room to align */

static float *align64(float *p)
{
    uintptr_t u = (uintptr_t)p;
    return (float *)((u + 63) & ~(uintptr_t)63);
}

/* the output columns ox with 0 <= ox*s + off < size: [*lo, *hi) within [0, n) */
static inline void col_range(int64_t off, int64_t s, int64_t size, int64_t n, int64_t *lo, int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = size - 1 - off < 0 ? 0 : (size - 1 - off) / s + 1;
    *lo = min64(a, n);
    *hi = max64(*lo, min64(b, n));
}

/* ------------------------------------------------------------- geometry */

static int bad_conv(const nd_conv_bwd_params *p)
{
    return p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oc <= 0 || p->oh <= 0 ||
           p->ow <= 0 || p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 ||
           p->dw <= 0 || p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0 ||
           p->groups <= 0 || p->c % p->groups || p->oc % p->groups || p->bias < 0 || p->bias > 1 ||
           p->algo < 0 || p->algo > 3 ||
           !nd_axis_ok(p->h, p->oh, p->kh, p->sh, p->dh, p->pad_t, p->pad_b) ||
           !nd_axis_ok(p->w, p->ow, p->kw, p->sw, p->dw, p->pad_l, p->pad_r) ||
           !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->oc, p->oh, p->ow) ||
           !ND_PROD_OK(p->oc, p->c, p->kh, p->kw) || !ND_PROD_OK(p->n, p->oh, p->ow, p->c, p->kh, p->kw);
}

static int is_dw(const nd_conv_bwd_params *p) { return p->groups > 1 && p->groups == p->c; }

static int is_pointwise(const nd_conv_bwd_params *p)
{
    return p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->pad_t == 0 && p->pad_l == 0 &&
           p->pad_b == 0 && p->pad_r == 0 && p->oh == p->h && p->ow == p->w;
}

/* The forward conv params of geometry q (x (n,c,h,w) -> (n,oc,oh,ow)), unfused. */
static nd_conv_params fwd_params(const nd_conv_bwd_params *q)
{
    nd_conv_params f;
    memset(&f, 0, sizeof f);
    f.n = q->n; f.c = q->c; f.h = q->h; f.w = q->w;
    f.oc = q->oc; f.oh = q->oh; f.ow = q->ow;
    f.kh = q->kh; f.kw = q->kw; f.sh = q->sh; f.sw = q->sw; f.dh = q->dh; f.dw = q->dw;
    f.pad_t = q->pad_t; f.pad_l = q->pad_l; f.pad_b = q->pad_b; f.pad_r = q->pad_r;
    f.groups = q->groups;
    f.act = ND_ACT_NONE;
    f.threads = q->threads;
    return f;
}

/* The conv whose forward is Conv p's dx (stride 1): x' = dy (n, oc, oh, ow) padded by
 * d(k-1) - p, weights flipped (C, og, KH, KW), output dx (n, c, h, w). 0 when p has none. */
static int dx_as_conv(const nd_conv_bwd_params *p, nd_conv_bwd_params *q)
{
    const int64_t keh = p->dh * (p->kh - 1), kew = p->dw * (p->kw - 1);
    if (p->sh != 1 || p->sw != 1 || p->pad_t > keh || p->pad_b > keh || p->pad_l > kew || p->pad_r > kew ||
        p->oh != p->h + p->pad_t + p->pad_b - keh || p->ow != p->w + p->pad_l + p->pad_r - kew)
        return 0;
    if (is_dw(p) && p->oc != p->c)      /* the flipped conv would be og = 1 GEMMs: direct instead */
        return 0;
    *q = *p;
    q->c = p->oc; q->h = p->oh; q->w = p->ow;
    q->oc = p->c; q->oh = p->h; q->ow = p->w;
    q->pad_t = keh - p->pad_t; q->pad_b = keh - p->pad_b;
    q->pad_l = kew - p->pad_l; q->pad_r = kew - p->pad_r;
    q->bias = 0;
    q->algo = 0;
    return !bad_conv(q);
}

static nd_conv_params fwd_params(const nd_conv_bwd_params *q);

/* The forward algorithm to ask nd_conv_f32 for, running conv q every step with fresh
 * weights: auto (0), except that Winograd's weight transform, done at plan time for
 * inference, is paid on every call here, so it only pays over enough 4x4 tiles (measured,
 * AVX-512, 1 thread: 64->64 on 56x56 and 128->128 on 28x28 at batch 4 gain 15-25% over the
 * GEMM; 256->256 on 14x14 at batch 4 (64 tiles) and 512->512 on 7x7 up to batch 16 lose
 * 1.5-3x); below that auto without Winograd (5: the transposed GEMM or the direct kernel
 * where they apply; 1 would force the plain GEMM, 1.3-1.5x slower on ResNet's 4x4 and 2x2
 * maps at batch 32). Depends on the params only (not the ISA). */
static int32_t inner_algo(const nd_conv_bwd_params *q)
{
    nd_conv_params f = fwd_params(q);
    if (nd_conv_algo(&f, (int32_t)nd_ops_for(ND_ISA_PORTABLE)->mr) != 4)
        return 0;
    return q->n * ((q->oh + 3) / 4) * ((q->ow + 3) / 4) >= WINO_TILES ? 0 : 5;
}

static int dx_algo(const nd_conv_bwd_params *p)
{
    nd_conv_bwd_params q;
    if (p->algo == 3 && is_dw(p))
        return 3;
    if (p->algo == 2)
        return 2;
    if (!dx_as_conv(p, &q))
        return is_dw(p) ? 3 : 2;
    if (p->algo == 1 || is_dw(p) || (p->kh == 1 && p->kw == 1))
        return 1;
    nd_conv_params f = fwd_params(&q);
    if (nd_conv_algo(&f, (int32_t)nd_ops_for(ND_ISA_PORTABLE)->mr) == 4 && inner_algo(&q) == 0)
        return 1;                        /* Winograd, over enough tiles */
    /* a conv per image with the plain GEMM, or the batch folded into one GEMM + col2im:
     * the fold wins on small maps (256->256 on 14x14: 8.5 vs 10.2 ms at batch 4, 512->512
     * on 7x7: 9.7 vs 18.8), the conv from 28x28 up (8.4 vs 10.1) */
    return p->h * p->w < SMALL_MAP ? 2 : 1;
}

static int dw_algo(const nd_conv_bwd_params *p)
{
    if (is_dw(p))
        return 3;
    return is_pointwise(p) && p->n > 0 && p->oh * p->ow >= KMIN ? 2 : 1;
}

/* images whose columns share one GEMM (see the opening comment): 1 when a map alone has
 * >= KMIN pixels, else enough for KMIN, within FOLD_BUDGET floats (always >= 1) */
static int64_t fold_of(const nd_conv_bwd_params *p)
{
    const int64_t P = p->oh * p->ow;
    const int64_t per = (p->c * p->kh * p->kw + p->oc) * P;
    int64_t k = (KMIN + P - 1) / P;
    k = min64(k, max64(1, FOLD_BUDGET / max64(per, 1)));
    return max64(1, min64(k, p->n));
}

/* ------------------------------------------------------------- forward conv on the workspace */

/* floats of weights nd_conv_pack_w may write for f, over every compiled-in ISA */
static int64_t packed_max(const nd_conv_params *f)
{
    int64_t m = 0;
    for (int lv = ND_ISA_PORTABLE; lv <= ND_ISA_AVX512; lv++) {
        const nd_isa_ops *o = nd_ops_for(lv);
        if (o)
            m = max64(m, nd_conv_packed_w_floats(f, (int32_t)o->mr));
    }
    return m;
}

/* room for the packed weights of q's forward conv: any ISA, Winograd or the GEMM fallback */
static int64_t packed_room(const nd_conv_bwd_params *q)
{
    nd_conv_params f = fwd_params(q);
    int64_t a = packed_max(&f);
    f.algo = 1;
    return rup16(max64(a, packed_max(&f)));
}

static int64_t fwd_ws(const nd_conv_bwd_params *q)
{
    nd_conv_params f = fwd_params(q);
    int64_t a = nd_conv_ws_floats(&f);
    f.algo = 1;                          /* the GEMM fallback for non-finite weights */
    int64_t b = nd_conv_ws_floats(&f);
    if (a < 0 || b < 0)
        return -1;
    return packed_room(q) + max64(a, b) + 16;
}

/* out = conv_q(x) with unpacked weights w (q->oc, q->c/g, KH, KW): the weights are packed
 * into ws for the ISA in use (what the executor does at plan time for inference) and
 * nd_conv_f32 runs on the rest. Non-finite weights take the GEMM, as prepack_weight does. */
/* 1 when none of w[0..n) is NaN or inf: an OR over the exponent bits (all ones + 1 carries
 * into the sign bit), which vectorizes; threads take equal chunks */
static int all_finite(const float *w, int64_t n, int T)
{
    uint32_t bad = 0;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) reduction(| : bad) if (T > 1 && n > 262144)
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, w + i, sizeof u);
        bad |= ((u & 0x7f800000u) + 0x00800000u) & 0x80000000u;
    }
    return bad == 0;
}

/* out = conv_q(x) + bias with unpacked weights w (q->oc, q->c/g, KH, KW). Where the chosen
 * path reads prepacked weights (Winograd, direct, the per-image GEMM, whose A would otherwise
 * be packed once per image) they are packed into ws for the ISA in use, what the executor
 * does at plan time for inference; the transposed GEMM (small maps, the batch folded into one
 * GEMM) packs its weight panels once per call anyway, split over the threads, so it reads w
 * as it is. Non-finite weights take the GEMM, as prepack_weight does. */
static nd_status fwd_conv(const nd_conv_bwd_params *q, float *out, const float *x, const float *w,
                          const float *bias, float *ws)
{
    nd_conv_params f = fwd_params(q);
    const int64_t nw = q->oc * (q->c / q->groups) * q->kh * q->kw;
    const int32_t mr = (int32_t)nd_ops()->mr;
    const float *ins[2] = {x, NULL};
    f.algo = inner_algo(q);
    if (nd_conv_algo(&f, mr) == 2)
        return nd_conv_f32(&f, out, ins, w, bias, align64(ws + packed_room(q)));
    if (f.algo != 5 && !all_finite(w, nw, nd_threads(q->threads)))
        f.algo = 1;
    float *pw = align64(ws);
    float *rest = ws + packed_room(q);
    const float *wuse = w;
    if (nd_conv_packed_w_floats(&f, mr) > 0) {
        nd_status s = nd_conv_pack_w(&f, pw, w, mr);
        if (s != ND_OK)
            return s;
        f.w_packed_mr = mr;
        wuse = pw;
    }
    return nd_conv_f32(&f, out, ins, wuse, bias, align64(rest));
}

/* ------------------------------------------------------------- taps that only read padding */

/* [*i0, *i1): the kernel taps along one axis that some output reads inside the input
 * (0 <= o*s - p0 + i*d < size for some o < out); 0 when there are none */
static int reach(int64_t size, int64_t out, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t *i0, int64_t *i1)
{
    *i0 = -1;
    *i1 = -1;
    for (int64_t i = 0; i < k; i++) {
        const int64_t lo = i * d - p0, omin = lo >= 0 ? 0 : (-lo + s - 1) / s;
        if (omin < out && omin * s + lo < size) {
            if (*i0 < 0)
                *i0 = i;
            *i1 = i + 1;
        }
    }
    return *i0 >= 0;
}

/* The same conv with its kernel cut to the taps any output reads inside the image (the rest
 * multiply padding only): a 3x3 pad-1 conv on a 1x1 map (ResNet's last stage at 32x32
 * input) is a 1x1 conv with the centre taps, 9x fewer multiply-adds. 1 when t differs
 * from p; *i0, *j0: the first kept tap. Not for depthwise (its direct loops skip padding). */
static int trim_of(const nd_conv_bwd_params *p, nd_conv_bwd_params *t, int64_t *i0, int64_t *j0)
{
    int64_t a0, a1, b0, b1;
    if (is_dw(p) || !reach(p->h, p->oh, p->kh, p->sh, p->dh, p->pad_t, &a0, &a1) ||
        !reach(p->w, p->ow, p->kw, p->sw, p->dw, p->pad_l, &b0, &b1) || (a1 - a0 == p->kh && b1 - b0 == p->kw))
        return 0;
    *t = *p;
    t->kh = a1 - a0;
    t->kw = b1 - b0;
    t->pad_t = p->pad_t - a0 * p->dh;
    t->pad_b = p->pad_b - (p->kh - a1) * p->dh;
    t->pad_l = p->pad_l - b0 * p->dw;
    t->pad_r = p->pad_r - (p->kw - b1) * p->dw;
    if (t->pad_t < 0 || t->pad_b < 0 || t->pad_l < 0 || t->pad_r < 0 || bad_conv(t))
        return 0;
    *i0 = a0;
    *j0 = b0;
    return 1;
}

/* wt (OC, C/g, t->kh, t->kw) = the kept taps of w (OC, C/g, KH, KW); 0 when a dropped tap is
 * not finite (then the full conv runs, so a NaN weight still reaches what it multiplies).
 * One pass over w (the whole of it is read: ResNet's 512x512x3x3 is 9 MB), planes in parallel. */
static int trim_weights(const nd_conv_bwd_params *p, const nd_conv_bwd_params *t, int64_t i0, int64_t j0,
                        float *wt, const float *w, int T)
{
    /* Blocks of PB planes: the finite check as one flat loop over the block (it vectorizes; a
     * loop of KK taps per plane did not), then the kept taps copied from the block while it
     * is in L1, as plain loads (no memcpy call per plane), geometry in locals (wt's stores
     * may alias *t under -fno-strict-aliasing). */
    enum { PB = 256 };
    const int64_t planes = p->oc * (p->c / p->groups), KW = p->kw, KK = p->kh * KW;
    const int64_t TKH = t->kh, TKW = t->kw, tk = TKH * TKW, off0 = i0 * KW + j0;
    const int64_t nb = (planes + PB - 1) / PB;
    uint32_t bad = 0;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) reduction(| : bad) if (T > 1 && planes * KK > 262144)
    for (int64_t blk = 0; blk < nb; blk++) {
        const int64_t p0 = blk * PB, p1 = p0 + PB < planes ? p0 + PB : planes;
        const float *src = w + p0 * KK;
        uint32_t b = 0;
        for (int64_t k = 0; k < (p1 - p0) * KK; k++) {  /* every tap: a kept non-finite one is as good a reason */
            uint32_t u;
            memcpy(&u, src + k, sizeof u);
            b |= ((u & 0x7f800000u) + 0x00800000u) & 0x80000000u;
        }
        bad |= b;
        if (tk == 1) {
            for (int64_t pl = p0; pl < p1; pl++) wt[pl] = w[pl * KK + off0];
        } else {
            for (int64_t pl = p0; pl < p1; pl++)
                for (int64_t i = 0; i < TKH; i++)
                    for (int64_t j = 0; j < TKW; j++)
                        wt[pl * tk + i * TKW + j] = w[pl * KK + off0 + i * KW + j];
        }
    }
    return bad == 0;
}

static int64_t trim_w_floats(const nd_conv_bwd_params *t) { return rup16(t->oc * (t->c / t->groups) * t->kh * t->kw); }

/* ------------------------------------------------------------- the training forward */

int64_t nd_conv_train_fwd_ws_floats(const nd_conv_bwd_params *p)
{
    if (!p || bad_conv(p))
        return -1;
    nd_conv_bwd_params t;
    int64_t i0, j0;
    const int64_t full = fwd_ws(p);
    if (full < 0 || !trim_of(p, &t, &i0, &j0))
        return full;
    const int64_t tw = fwd_ws(&t);
    return tw < 0 ? full : max64(full, trim_w_floats(&t) + tw);
}

nd_status nd_conv_train_fwd_f32(const nd_conv_bwd_params *p, float *out, const float *const *in, const float *w,
                                const float *bias, float *ws)
{
    (void)bias;
    if (!p || !out || !in || !in[0] || !w || !ws || bad_conv(p))
        return ND_EINVAL;
    if (p->n == 0)
        return ND_OK;
    const float *b = p->bias ? w + p->oc * (p->c / p->groups) * p->kh * p->kw : NULL;
    nd_conv_bwd_params t;
    int64_t i0, j0;
    if (trim_of(p, &t, &i0, &j0) && fwd_ws(&t) >= 0) {
        float *wt = align64(ws);
        if (trim_weights(p, &t, i0, j0, wt, w, nd_threads(p->threads)))
            return fwd_conv(&t, out, in[0], wt, b, ws + trim_w_floats(&t));
    }
    return fwd_conv(p, out, in[0], w, b, ws);
}

/* ------------------------------------------------------------- copies, im2col, col2im */

/* dst (oc, nb*P): images b0.. of src (n, oc, P) side by side, so a GEMM sees one matrix */
static void gather_images(float *dst, const float *src, int64_t oc, int64_t P, int64_t b0, int64_t nb, int T)
{
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && oc * nb * P > 65536)
    for (int64_t job = 0; job < oc * nb; job++) {
        const int64_t o = job / nb, bb = job % nb;
        memcpy(dst + o * nb * P + bb * P, src + ((b0 + bb) * oc + o) * P, (size_t)P * sizeof(float));
    }
}

/* dx[b0+bb, c] = the sum of col rows (c, i, j) at their taps; planes zeroed first */
static void col2im_planes(const nd_conv_bwd_params *p, float *dx, const float *col, int64_t b0, int64_t nb, int T)
{
    const int64_t KK = p->kh * p->kw, P = p->oh * p->ow, LD = nb * P, H = p->h, W = p->w, OW = p->ow;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && p->c * KK * LD > 32768)
    for (int64_t job = 0; job < p->c * nb; job++) {
        const int64_t c = job / nb, bb = job % nb;
        float *xp = dx + ((b0 + bb) * p->c + c) * H * W;
        memset(xp, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t i = 0; i < p->kh; i++)
            for (int64_t j = 0; j < p->kw; j++) {
                const float *src = col + ((c * p->kh + i) * p->kw + j) * LD + bb * P;
                const int64_t off = j * p->dw - p->pad_l;
                int64_t lo, hi;
                col_range(off, p->sw, W, OW, &lo, &hi);
                for (int64_t oy = 0; oy < p->oh; oy++) {
                    const int64_t iy = oy * p->sh - p->pad_t + i * p->dh;
                    if (iy < 0 || iy >= H)
                        continue;
                    float *xr = xp + iy * W;
                    const float *sr = src + oy * OW;
                    if (p->sw == 1)
                        for (int64_t ox = lo; ox < hi; ox++) xr[ox + off] += sr[ox];
                    else
                        for (int64_t ox = lo; ox < hi; ox++) xr[ox * p->sw + off] += sr[ox];
                }
            }
    }
}

/* db[o] = sum over images and pixels of dy (n, oc, P): 16 float lanes per row, summed in double */
static void bias_grad(float *db, const float *dy, int64_t n, int64_t oc, int64_t P, int T)
{
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n * oc * P > 65536)
    for (int64_t o = 0; o < oc; o++) {
        double s = 0.0;
        for (int64_t b = 0; b < n; b++) {
            const float *r = dy + (b * oc + o) * P;
            float acc[16] = {0};
            int64_t i = 0;
            for (; i + 16 <= P; i += 16)
                for (int k = 0; k < 16; k++) acc[k] += r[i + k];
            for (; i < P; i++) acc[0] += r[i];
            for (int k = 0; k < 16; k++) s += acc[k];
        }
        db[o] = (float)s;
    }
}

/* ---- pixel-major folds (fold >= PM_FOLD images: maps of ~11x11 and below). The GEMM's
 * columns run pixel by pixel, the nb images of a pixel side by side (column pp*nb + bb), so
 * col2im adds runs of (pixels of an output row) x nb contiguous floats — one vector axpy per
 * tap and output row — into a per-thread tile (H*W, nb) of one input channel, in L1, which is
 * then transposed into the nb dx planes. Image-major columns gave scalar adds over rows of
 * 2-8 floats (ResNet-18's 8x8..2x2 maps: 40% of the dx). Each dx value still gets its taps
 * in the order (i, j), from zero, as col2im_planes adds them (a + 1*b is a + b exactly). */

/* floats of one thread's tile: (H*W, nb) for nb <= fold, + room to align */
static int64_t pm_tile_floats(const nd_conv_bwd_params *p, int64_t nb) { return rup16(p->h * p->w * nb); }

/* dst (oc, P*nb): dst[o, pp*nb + bb] = src[b0 + bb, o, pp] */
static void gather_pm(float *dst, const float *src, int64_t oc, int64_t P, int64_t b0, int64_t nb, int T)
{
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && oc * nb * P > 65536)
    for (int64_t o = 0; o < oc; o++) {
        float *d = dst + o * nb * P;
        for (int64_t bb = 0; bb < nb; bb++) {
            const float *s = src + ((b0 + bb) * oc + o) * P;
            for (int64_t pp = 0; pp < P; pp++) d[pp * nb + bb] = s[pp];
        }
    }
}

/* dx[b0+bb, c] from pixel-major col (C*KH*KW, P*nb), channels split over the threads, thread
 * t's tile at tiles + t * tf */
static void col2im_pm(const nd_conv_bwd_params *p, float *dx, const float *col, int64_t b0, int64_t nb,
                      float *tiles, int64_t tf, int T)
{
    const nd_isa_ops *o = nd_ops();
    const int64_t P = p->oh * p->ow, LD = nb * P, H = p->h, W = p->w, HW = H * W, OW = p->ow, C = p->c;
    const int64_t KH = p->kh, KW = p->kw, SH = p->sh, SW = p->sw;
    (void)T;
#pragma omp parallel num_threads(T) if (T > 1 && C * KH * KW * LD > 32768)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *tile = tiles + tid * tf;
#pragma omp for schedule(static)
        for (int64_t c = 0; c < C; c++) {
            memset(tile, 0, (size_t)(HW * nb) * sizeof(float));
            for (int64_t i = 0; i < KH; i++)
                for (int64_t j = 0; j < KW; j++) {
                    const float *src = col + ((c * KH + i) * KW + j) * LD;
                    const int64_t off = j * p->dw - p->pad_l;
                    int64_t lo, hi;
                    col_range(off, SW, W, OW, &lo, &hi);
                    if (lo >= hi)
                        continue;
                    for (int64_t oy = 0; oy < p->oh; oy++) {
                        const int64_t iy = oy * SH - p->pad_t + i * p->dh;
                        if (iy < 0 || iy >= H)
                            continue;
                        float *tr = tile + iy * W * nb;
                        const float *sr = src + oy * OW * nb;
                        if (SW == 1)
                            o->axpy(tr + (lo + off) * nb, 1.0f, sr + lo * nb, (hi - lo) * nb);
                        else
                            for (int64_t ox = lo; ox < hi; ox++) o->axpy(tr + (ox * SW + off) * nb, 1.0f, sr + ox * nb, nb);
                    }
                }
            for (int64_t bb = 0; bb < nb; bb++) {
                float *xp = dx + ((b0 + bb) * C + c) * HW;
                for (int64_t q = 0; q < HW; q++) xp[q] = tile[q * nb + bb];
            }
        }
    }
}

/* ------------------------------------------------------------- Conv dx */

/* GEMM + col2im, `fold` images per GEMM */
static int64_t dx_gemm_ws(const nd_conv_bwd_params *p)
{
    const int64_t nb = fold_of(p), P = p->oh * p->ow, KK = p->kh * p->kw;
    const int64_t og = p->oc / p->groups, Kg = p->c / p->groups * KK;
    const int T = p->threads < 1 ? 1 : p->threads;
    return rup16(p->c * KK * nb * P) + (nb > 1 ? rup16(p->oc * nb * P) : 0) + nd_sgemm_ws(Kg, nb * P, og, T) +
           (nb >= PM_FOLD ? T * pm_tile_floats(p, nb) + 16 : 0);
}

static nd_status dx_gemm(const nd_conv_bwd_params *p, float *dx, const float *dy, const float *w, float *ws, int T)
{
    const int64_t fold = fold_of(p), P = p->oh * p->ow, KK = p->kh * p->kw;
    const int64_t cg = p->c / p->groups, og = p->oc / p->groups, Kg = cg * KK;
    float *col = align64(ws);
    float *dyt = ws + rup16(p->c * KK * fold * P);
    float *gws = dyt + (fold > 1 ? rup16(p->oc * fold * P) : 0);
    const int pm = fold >= PM_FOLD;
    const int64_t tf = pm_tile_floats(p, fold);
    float *tiles = align64(gws + nd_sgemm_ws(Kg, fold * P, og, T));
    for (int64_t b0 = 0; b0 < p->n; b0 += fold) {
        const int64_t nb = min64(fold, p->n - b0), LD = nb * P;
        const float *src = dy + b0 * p->oc * P;
        if (nb > 1) {
            dyt = align64(dyt);
            if (pm)
                gather_pm(dyt, dy, p->oc, P, b0, nb, T);
            else
                gather_images(dyt, dy, p->oc, P, b0, nb, T);
            src = dyt;
        }
        for (int64_t g = 0; g < p->groups; g++) {
            nd_gemm_desc d = {0};
            d.m = Kg;                      /* A = W_g^T: element (t, o) = w[(g*og + o)*Kg + t] */
            d.n = LD;
            d.k = og;
            d.a.p = w + g * og * Kg;
            d.a.rs = 1;
            d.a.cs = Kg;
            d.b.p = src + g * og * LD;     /* rows of one image are LD = P apart, too */
            d.b.rs = LD;
            d.b.cs = 1;
            d.c = col + g * Kg * LD;
            d.ldc = LD;
            nd_status s = nd_sgemm(&d, gws, T);
            if (s != ND_OK)
                return s;
        }
        if (pm)
            col2im_pm(p, dx, col, b0, nb, tiles, tf, T);
        else
            col2im_planes(p, dx, col, b0, nb, T);
    }
    return ND_OK;
}

/* depthwise: dx[b, ic] = sum over its mult output channels and taps of w * dy, scattered as
 * axpys along output rows (the forward's dw_plane loop, transposed) */
static void dx_depthwise(const nd_conv_bwd_params *p, float *dx, const float *dy, const float *w, int T)
{
    const nd_isa_ops *o = nd_ops();
    const int64_t mult = p->oc / p->c, H = p->h, W = p->w, OW = p->ow, P = p->oh * p->ow, KK = p->kh * p->kw;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && p->n * p->oc * P * KK > 65536)
    for (int64_t pl = 0; pl < p->n * p->c; pl++) {
        const int64_t b = pl / p->c, ic = pl % p->c;
        float *xp = dx + pl * H * W;
        memset(xp, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t m = 0; m < mult; m++) {
            const int64_t oc = ic * mult + m;
            const float *dyp = dy + (b * p->oc + oc) * P, *wk = w + oc * KK;
            for (int64_t i = 0; i < p->kh; i++)
                for (int64_t oy = 0; oy < p->oh; oy++) {
                    const int64_t iy = oy * p->sh - p->pad_t + i * p->dh;
                    if (iy < 0 || iy >= H)
                        continue;
                    float *xr = xp + iy * W;
                    const float *dr = dyp + oy * OW;
                    for (int64_t j = 0; j < p->kw; j++) {
                        const float wv = wk[i * p->kw + j];
                        const int64_t off = j * p->dw - p->pad_l;
                        int64_t lo, hi;
                        col_range(off, p->sw, W, OW, &lo, &hi);
                        if (p->sw == 1)
                            o->axpy(xr + off + lo, wv, dr + lo, hi - lo);
                        else
                            for (int64_t ox = lo; ox < hi; ox++) xr[ox * p->sw + off] += wv * dr[ox];
                    }
                }
        }
    }
}

static int64_t dx_ws(const nd_conv_bwd_params *p)
{
    nd_conv_bwd_params q;
    switch (dx_algo(p)) {
    case 1: {
        dx_as_conv(p, &q);
        const int64_t f = fwd_ws(&q);
        return f < 0 ? -1 : rup16(p->oc * (p->c / p->groups) * p->kh * p->kw) + f;
    }
    case 2: return dx_gemm_ws(p);
    default: return 0;
    }
}

/* dx and dW run on the trimmed conv (trim_of) when it differs: the same gradients (a dropped
 * tap's column of the im2col matrix is all zeros), with its weights / its dW in the workspace */
int64_t nd_conv_bwd_data_ws_floats(const nd_conv_bwd_params *p)
{
    if (!p || bad_conv(p))
        return -1;
    nd_conv_bwd_params t;
    int64_t i0, j0;
    const int64_t full = dx_ws(p);
    if (full < 0 || !trim_of(p, &t, &i0, &j0))
        return full;
    const int64_t tw = dx_ws(&t);
    return tw < 0 ? full : max64(full, trim_w_floats(&t) + tw);
}

int32_t nd_conv_bwd_data_algo(const nd_conv_bwd_params *p)
{
    if (!p || bad_conv(p))
        return -1;
    nd_conv_bwd_params t;
    int64_t i0, j0;
    if (trim_of(p, &t, &i0, &j0) && dx_ws(&t) >= 0)
        p = &t;                         /* (finite weights assumed) */
    const int a = dx_algo(p);
    nd_conv_bwd_params q;
    if (a == 1 && dx_as_conv(p, &q) && inner_algo(&q) == 0) {
        nd_conv_params f = fwd_params(&q);
        if (nd_conv_algo(&f, (int32_t)nd_ops_for(ND_ISA_PORTABLE)->mr) == 4)
            return 4;
    }
    return a;
}

/* wf[(g*cg + c), o, i, j] = w[(g*og + o), c, KH-1-i, KW-1-j]: per group a transpose of
 * (og x cg) planes of KK taps, each plane's taps reversed. Tiles of TB x TB planes, so both
 * sides stay in cache (a row-by-row loop wrote with a stride of og*KK floats: 1.1 ms of the
 * 1.4 ms dx of ResNet's 512x512 conv on a 1x1 map, serial), the tiles split over the threads. */
static void flip_weights(const nd_conv_bwd_params *p, float *wf, const float *w, int T)
{
    enum { TB = 16 };
    const int64_t cg = p->c / p->groups, og = p->oc / p->groups, KK = p->kh * p->kw;
    const int64_t to = (og + TB - 1) / TB, tc = (cg + TB - 1) / TB, tiles = p->groups * to * tc;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && og * cg * p->groups * KK > 65536)
    for (int64_t job = 0; job < tiles; job++) {
        const int64_t g = job / (to * tc), o0 = (job / tc) % to * TB, c0 = job % tc * TB;
        const int64_t o1 = min64(o0 + TB, og), c1 = min64(c0 + TB, cg);
        for (int64_t c = c0; c < c1; c++)
            for (int64_t o = o0; o < o1; o++) {
                const float *src = w + ((g * og + o) * cg + c) * KK;
                float *dst = wf + ((g * cg + c) * og + o) * KK;
                for (int64_t t = 0; t < KK; t++) dst[t] = src[KK - 1 - t];
            }
    }
}

static nd_status dx_run(const nd_conv_bwd_params *p, float *out, const float *const *in, const float *w, float *ws)
{
    const int T = nd_threads(p->threads);
    const int algo = dx_algo(p);
    if (algo == 3) {
        dx_depthwise(p, out, in[0], w, T);
        return ND_OK;
    }
    if (!ws)
        return ND_EINVAL;
    if (algo == 2)
        return dx_gemm(p, out, in[0], w, ws, T);
    nd_conv_bwd_params q;
    dx_as_conv(p, &q);
    const int64_t cg = p->c / p->groups, KK = p->kh * p->kw;
    float *wf = align64(ws);
    flip_weights(p, wf, w, T);
    return fwd_conv(&q, out, in[0], wf, NULL, ws + rup16(p->oc * cg * KK));
}

nd_status nd_conv_bwd_data_f32(const nd_conv_bwd_params *p, float *out, const float *const *in, const float *w,
                               const float *bias, float *ws)
{
    (void)bias;
    if (!p || !out || !in || !in[0] || !w || bad_conv(p))
        return ND_EINVAL;
    if (p->n == 0)
        return ND_OK;
    nd_conv_bwd_params t;
    int64_t i0, j0;
    if (ws && trim_of(p, &t, &i0, &j0) && dx_ws(&t) >= 0) {
        float *wt = align64(ws);
        if (trim_weights(p, &t, i0, j0, wt, w, nd_threads(p->threads)))
            return dx_run(&t, out, in, wt, ws + trim_w_floats(&t));
    }
    return dx_run(p, out, in, w, ws);
}

/* ------------------------------------------------------------- Conv dW */

/* pixels per dW block: columns of about DW_BLOCK floats, at
 * least DW_KMIN; with T threads the blocks are cut equal and their count a multiple of T.
 * dw_block_max bounds it for every T (the workspace). */
static int64_t dw_block_max(const nd_conv_bwd_params *p)
{
    const int64_t ck = p->c * p->kh * p->kw, total = p->n * p->oh * p->ow;
    return max64(1, min64(max64(DW_BLOCK / ck, DW_KMIN), total));
}

static int64_t dw_block(const nd_conv_bwd_params *p, int T)
{
    const int64_t total = p->n * p->oh * p->ow, L0 = dw_block_max(p);
    int64_t nb = (total + L0 - 1) / L0;
    nb = (nb + T - 1) / T * T;
    return max64(1, (total + nb - 1) / nb);
}

/* the block's pixels q in [q0, q0 + L) (q = b*P + oy*OW + ox) cut into runs on one output row */
typedef struct { int64_t q, b, oy, ox, len; } run_t;

static int64_t runs_of(const nd_conv_bwd_params *p, int64_t q0, int64_t L, run_t *r, int64_t cap)
{
    const int64_t P = p->oh * p->ow;
    int64_t n = 0;
    for (int64_t q = q0; q < q0 + L && n < cap;) {
        const int64_t b = q / P, pp = q % P, oy = pp / p->ow, ox = pp % p->ow;
        const int64_t len = min64(p->ow - ox, q0 + L - q);
        r[n].q = q - q0; r[n].b = b; r[n].oy = oy; r[n].ox = ox; r[n].len = len;
        n++;
        q += len;
    }
    return n;
}

/* ---- dW columns from a zero-padded copy of the image (small maps, KH*KW > 1). On maps a
 * few pixels wide most pixels have a tap in the padding or a 4-float copy that would read
 * past the row, which block_pixels copies tap by tap with bounds checks (ResNet-18's 8x8..2x2
 * maps: ~40% of the dW). With the image's channels [c0, c1) padded to (Hp, Wp) = (pt + H + pb,
 * pl + W + pr) every tap of every output pixel is inside (the window fits the padded map, as
 * nd_axis_ok checks), so each (c, i) is one straight copy; the padding holds zeros, the
 * values block_pixels writes for padded taps. */
static int use_pad(const nd_conv_bwd_params *p) { return p->kh * p->kw > 1 && p->h * p->w < SMALL_MAP; }

/* floats of the padded copy of nch channels: + 4 of slack, which 4-float copies may read */
static int64_t pad_room(const nd_conv_bwd_params *p, int64_t nch)
{
    if (!use_pad(p))
        return 0;
    return rup16(nch * (p->pad_t + p->h + p->pad_b) * (p->pad_l + p->w + p->pad_r) + 4);
}

/* dst (nch, Hp, Wp) = channels of img (nch, H, W), zero-padded, then 4 zeros */
static void pad_image(const nd_conv_bwd_params *p, float *dst, const float *img, int64_t nch)
{
    const int64_t H = p->h, W = p->w, PT = p->pad_t, PL = p->pad_l, PR = p->pad_r;
    const int64_t Hp = PT + H + p->pad_b, Wp = PL + W + PR;
    memset(dst, 0, (size_t)(nch * Hp * Wp + 4) * sizeof(float));
    for (int64_t c = 0; c < nch; c++)
        for (int64_t y = 0; y < H; y++)
            memcpy(dst + (c * Hp + PT + y) * Wp + PL, img + (c * H + y) * W, (size_t)W * sizeof(float));
}

/* block_pixels' colT from padded copies (pad: pad_room(p, c1 - c0) floats), one thread. With
 * dw == 1 a kernel row is copied 4 floats at a time, spilling into the next cells, which are
 * written next; only the block's very last pixel is copied exactly (its spill would leave colT). */
static void block_pixels_pad(const nd_conv_bwd_params *p, float *colT, const float *x, const run_t *rs, int64_t nr,
                             int64_t c0, int64_t c1, float *pad)
{
    const int64_t KH = p->kh, KW = p->kw, KK = KH * KW, NC = c1 - c0, CK = NC * KK, HW = p->h * p->w;
    const int64_t Hp = p->pad_t + p->h + p->pad_b, Wp = p->pad_l + p->w + p->pad_r, PP = Hp * Wp;
    const int64_t SH = p->sh, SW = p->sw, RH = p->dh * Wp, KW4 = (KW + 3) / 4 * 4;
    int64_t cur = -1;
    for (int64_t k = 0; k < nr; k++) {
        const run_t *r = rs + k;
        if (r->b != cur) {
            pad_image(p, pad, x + (r->b * p->c + c0) * HW, NC);
            cur = r->b;
        }
        float *d = colT + r->q * CK;
        const int64_t end = r->ox + r->len;
        for (int64_t ox = r->ox; ox < end; ox++) {
            const float *px = pad + r->oy * SH * Wp + ox * SW;
            const int spill = p->dw == 1 && (k + 1 < nr || ox + 1 < end);
            if (spill && KH == 3 && KW == 3) {   /* the common 3x3: unrolled (loop overhead was most of it) */
                for (int64_t c = 0; c < NC; c++, px += PP, d += 9) {
                    memcpy(d, px, 4 * sizeof(float));
                    memcpy(d + 3, px + RH, 4 * sizeof(float));
                    memcpy(d + 6, px + 2 * RH, 4 * sizeof(float));
                }
                continue;
            }
            if (spill) {
                for (int64_t c = 0; c < NC; c++, px += PP)
                    for (int64_t i = 0; i < KH; i++, d += KW) {
                        const float *rr = px + i * RH;
                        for (int64_t q = 0; q < KW4; q += 4) memcpy(d + q, rr + q, 4 * sizeof(float));
                    }
                continue;
            }
            for (int64_t c = 0; c < NC; c++, px += PP)
                for (int64_t i = 0; i < KH; i++, d += KW) {
                    const float *rr = px + i * RH;
                    for (int64_t j = 0; j < KW; j++) d[j] = rr[j * p->dw];
                }
        }
    }
}

/* colT (L, (c1-c0)*KH*KW) of one block: row r->q + u for pixel (r->oy, r->ox + u) of image
 * r->b, column (c - c0, i, j) for the channels c0 <= c < c1 — im2col transposed, so the dW GEMM's B panels are plain row copies.
 * Along a run the output row is fixed, so which kernel rows are inside is known up front.
 * A pixel's taps (c, i, 0..KW) are one run of an input row: inside the image and with
 * dw == 1 it is copied 4 floats at a time, the last copy spilling into the next cells,
 * which are written next (in order); the very last pixel of a run is copied exactly, so
 * runs (threads) never spill into each other, and no copy reads past its input row. */
static void block_pixels(const nd_conv_bwd_params *p, float *colT, const float *x, const run_t *rs, int64_t nr,
                         int64_t c0, int64_t c1, int T)
{
    const int64_t KK = p->kh * p->kw, CK = (c1 - c0) * KK, H = p->h, W = p->w, HW = H * W, KW = p->kw;
    const int64_t KW4 = (KW + 3) / 4 * 4, KH = p->kh;
    int64_t lo4, hi4;                /* pixels whose 4-float copies stay inside the row */
    col_range(-p->pad_l, p->sw, W - (KW4 - 1), p->ow, &lo4, &hi4);
    if (p->dw != 1)
        lo4 = hi4 = 0;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && nr > 1 && CK * nr * p->ow > 65536)
    for (int64_t k = 0; k < nr; k++) {
        const run_t *r = rs + k;
        const float *img = x + (r->b * p->c + c0) * HW;
        int64_t rowoff[64];          /* iy * W per kernel row, -1 outside (KH <= 64 here, see below) */
        for (int64_t i = 0; i < KH && i < 64; i++) {
            const int64_t iy = r->oy * p->sh - p->pad_t + i * p->dh;
            rowoff[i] = iy >= 0 && iy < H ? iy * W : -1;
        }
        float *d = colT + r->q * CK;
        const int64_t end = r->ox + r->len;
        for (int64_t ox = r->ox; ox < end; ox++) {
            const int64_t ix0 = ox * p->sw - p->pad_l;
            if (KH <= 64 && ox >= lo4 && ox < hi4 && ox + 1 < end) {
                const float *px = img + ix0;
                for (int64_t c = c0; c < c1; c++, px += HW)
                    for (int64_t i = 0; i < KH; i++, d += KW) {
                        if (rowoff[i] < 0) {
                            for (int64_t j = 0; j < KW; j++) d[j] = 0.0f;
                        } else {
                            const float *rr = px + rowoff[i];
                            for (int64_t q = 0; q < KW4; q += 4) memcpy(d + q, rr + q, 4 * sizeof(float));
                        }
                    }
                continue;
            }
            for (int64_t c = c0; c < c1; c++) {
                const float *plane = img + (c - c0) * HW;
                for (int64_t i = 0; i < KH; i++, d += KW) {
                    const int64_t iy = r->oy * p->sh - p->pad_t + i * p->dh;
                    if (iy < 0 || iy >= H) {
                        for (int64_t j = 0; j < KW; j++) d[j] = 0.0f;
                        continue;
                    }
                    const float *rr = plane + iy * W;
                    for (int64_t j = 0; j < KW; j++) {
                        const int64_t ix = ix0 + j * p->dw;
                        d[j] = ix >= 0 && ix < W ? rr[ix] : 0.0f;
                    }
                }
            }
        }
    }
}

static void block_dy(const nd_conv_bwd_params *p, float *dst, const float *dy, const run_t *rs, int64_t nr, int64_t L, int T)
{
    const int64_t P = p->oh * p->ow;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && p->oc * L > 65536)
    for (int64_t o = 0; o < p->oc; o++)
        for (int64_t k = 0; k < nr; k++) {
            const run_t *r = rs + k;
            memcpy(dst + o * L + r->q, dy + (r->b * p->oc + o) * P + r->oy * p->ow + r->ox, (size_t)r->len * sizeof(float));
        }
}

/* one thread's share of the blocked dW: columns, dy copy, runs, GEMM workspace, partial dW */
static int64_t dw_thread_ws(const nd_conv_bwd_params *p)
{
    const int64_t L = dw_block_max(p), CK = p->c * p->kh * p->kw, cap = L / p->ow + 3;
    const int64_t og = p->oc / p->groups, Kg = CK / p->groups;
    return rup16(CK * L) + rup16(p->oc * L) + rup16(cap * (int64_t)(sizeof(run_t) / sizeof(float))) +
           nd_sgemm_ws(og, Kg, L, 1) + rup16(p->oc * Kg) + pad_room(p, p->c);
}

static int64_t chan_ws(const nd_conv_bwd_params *p);

static int64_t dw_gemm_ws(const nd_conv_bwd_params *p)
{
    const int64_t og = p->oc / p->groups, Kg = p->c / p->groups * p->kh * p->kw;
    const int T = p->threads < 1 ? 1 : p->threads;
    if (dw_algo(p) == 2)
        return nd_sgemm_ws(og, Kg, p->oh * p->ow, T);
    return max64(T * dw_thread_ws(p) + 16, chan_ws(p));
}

/* thread t's partial dW in the blocked dW's workspace (the layout dw_thread_ws sizes) */
static float *dw_partial(const nd_conv_bwd_params *p, float *ws, int t, int64_t L0, int64_t cap, int64_t og,
                         int64_t Kg)
{
    const int64_t CK = p->c * p->kh * p->kw;
    float *base = ws + t * dw_thread_ws(p);
    return align64(base + rup16(CK * L0) + rup16(p->oc * L0) + rup16(cap * (int64_t)(sizeof(run_t) / sizeof(float))) +
                   nd_sgemm_ws(og, Kg, L0, 1));
}

/* ---- dW split by input channels (groups == 1): thread t owns the dW columns of channels
 * [C*t/T, C*(t+1)/T) and runs every block of pixels over them, so there is no partial dW, no
 * reduction and no barrier per block; only the dy operand is shared. Blocks lie inside one
 * image when a map has at least L pixels (dy read in place, rows P apart); on smaller maps
 * they run across images and dy is first gathered whole into (OC, N*P) in the workspace. */

/* pixels per block with T channel parts: ~DW_BLOCK floats of one thread's columns */
static int64_t chan_L(const nd_conv_bwd_params *p, int T)
{
    const int64_t kt = (p->c + T - 1) / T * p->kh * p->kw, total = p->n * p->oh * p->ow;
    return max64(1, min64(max64(DW_BLOCK / kt, DW_KMIN), total));
}

/* the channel split runs when every part keeps >= 128 taps (4 AVX-512 column panels) */
static int use_chan(const nd_conv_bwd_params *p, int T)
{
    return p->groups == 1 && p->c >= T && p->c / T * p->kh * p->kw >= 128;
}

static int64_t chan_thread_ws(const nd_conv_bwd_params *p, int T)
{
    const int64_t kt = (p->c + T - 1) / T * p->kh * p->kw, L = chan_L(p, T), cap = L / p->ow + 3;
    return rup16(kt * L) + rup16(cap * (int64_t)(sizeof(run_t) / sizeof(float))) + nd_sgemm_ws(p->oc, kt, L, 1) +
           pad_room(p, (p->c + T - 1) / T);
}

/* dy gathered as (OC, N*P): needed when a map is smaller than a block (chan_L grows with T,
 * so sizing it for the cap covers every T below) */
static int chan_gather(const nd_conv_bwd_params *p, int T) { return p->oh * p->ow < chan_L(p, T); }

static int64_t chan_ws(const nd_conv_bwd_params *p)
{
    const int cap = p->threads < 1 ? 1 : p->threads;
    int64_t m = 0;
    for (int T = 1; T <= cap; T++)
        if (use_chan(p, T))
            m = max64(m, T * chan_thread_ws(p, T));
    if (m == 0)
        return -1;
    return m + (chan_gather(p, cap) ? rup16(p->oc * p->n * p->oh * p->ow) : 0) + 16;
}

static nd_status dw_chan(const nd_conv_bwd_params *p, float *dw, const float *dy, const float *x, float *ws, int T)
{
    const int64_t P = p->oh * p->ow, KK = p->kh * p->kw, CK = p->c * KK, total = p->n * P, OC = p->oc;
    nd_status st = ND_OK;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        /* sizes from the team actually running (nt <= T; the workspace covers every count) */
        const int64_t L0 = chan_L(p, nt), cap = L0 / p->ow + 3, per = chan_thread_ws(p, nt);
        const int gather = chan_gather(p, nt);
        /* blocks: across images (gather) or ceil(P / L0) per image, of equal length */
        const int64_t nbi = gather ? 1 : (P + L0 - 1) / L0, Li = (P + nbi - 1) / nbi;
        const int64_t nblk = gather ? (total + L0 - 1) / L0 : p->n * nbi;
        float *dyT = align64(ws);
        float *tws = gather ? ws + rup16(OC * total) : ws;
        if (gather) {                    /* dyT[o, b*P + pp] = dy[b, o, pp] */
#pragma omp for schedule(static)
            for (int64_t job = 0; job < OC * p->n; job++) {
                const int64_t o = job / p->n, b = job % p->n;
                memcpy(dyT + o * total + b * P, dy + (b * OC + o) * P, (size_t)P * sizeof(float));
            }
        }
        const int64_t c0 = p->c * tid / nt, c1 = p->c * (tid + 1) / nt, kt = (c1 - c0) * KK;
        float *base = tws + tid * per;
        float *col = align64(base);
        run_t *rs = (run_t *)align64(base + rup16(kt * L0));
        float *gws = base + rup16(kt * L0) + rup16(cap * (int64_t)(sizeof(run_t) / sizeof(float)));
        for (int64_t blk = 0; blk < nblk && kt > 0; blk++) {
            int64_t q0, L;
            nd_gemm_desc d = {0};
            if (gather) {
                q0 = blk * L0;
                L = min64(L0, total - q0);
                d.a.p = dyT + q0;
                d.a.rs = total;
            } else {
                const int64_t b = blk / nbi, s0 = blk % nbi * Li;
                q0 = b * P + s0;
                L = min64(Li, P - s0);
                d.a.p = dy + b * OC * P + s0;
                d.a.rs = P;
            }
            const int64_t nr = runs_of(p, q0, L, rs, cap);
            if (use_pad(p))
                block_pixels_pad(p, col, x, rs, nr, c0, c1, base + per - pad_room(p, (p->c + nt - 1) / nt));
            else
                block_pixels(p, col, x, rs, nr, c0, c1, 1);
            d.m = OC;
            d.n = kt;
            d.k = L;
            d.a.cs = 1;
            d.b.p = col;                     /* B (pixel, tap): rows of colT */
            d.b.rs = kt;
            d.b.cs = 1;
            d.c = dw + c0 * KK;
            d.ldc = CK;
            d.accumulate = blk > 0;
            nd_status s = nd_sgemm(&d, gws, 1);
            if (s != ND_OK) {
#pragma omp critical(nd_dw_chan)
                st = s;
            }
        }
    }
    return st;
}

/* dw (OC, C/g, KH, KW) of the conv p, x (n, c, h, w), dy (n, oc, oh, ow).
 * 1x1 on a large map: one GEMM per image on x in place, all threads in each.
 * Otherwise blocks of L output pixels (running on across images), a static share per
 * thread: each builds its block's columns and dy copy and runs single-thread GEMMs into
 * its own partial dW (thread 0's is dw itself), which are then summed in a fixed order.
 * One parallel region: the columns are read by the core that wrote them, and on a busy
 * machine no thread waits at a join per block (measured, 2 shared cores: the same blocks
 * with the GEMM's own thread split ran 1.3-2x slower than on one thread). */
static nd_status dw_gemm(const nd_conv_bwd_params *p, float *dw, const float *dy, const float *x, float *ws, int T)
{
    const int64_t P = p->oh * p->ow, CK = p->c * p->kh * p->kw, total = p->n * P;
    const int64_t cg = p->c / p->groups, og = p->oc / p->groups, Kg = cg * p->kh * p->kw, nw = p->oc * Kg;
    if (dw_algo(p) == 2) {               /* B (pixel, c) = x[b, c, pixel] */
        for (int64_t b = 0; b < p->n; b++)
            for (int64_t g = 0; g < p->groups; g++) {
                nd_gemm_desc d = {0};
                d.m = og;
                d.n = cg;
                d.k = P;
                d.a.p = dy + (b * p->oc + g * og) * P;
                d.a.rs = P;
                d.a.cs = 1;
                d.b.p = x + (b * p->c + g * cg) * P;
                d.b.rs = 1;
                d.b.cs = P;
                d.c = dw + g * og * cg;
                d.ldc = cg;
                d.accumulate = b > 0;
                nd_status s = nd_sgemm(&d, ws, T);
                if (s != ND_OK)
                    return s;
            }
        return ND_OK;
    }
    if (use_chan(p, T))
        return dw_chan(p, dw, dy, x, ws, T);
    const int64_t L0 = dw_block(p, T), nblk = (total + L0 - 1) / L0, cap = dw_block_max(p) / p->ow + 3;
    const int64_t per = dw_thread_ws(p);
    nd_status st = ND_OK;
    int nt = 1;
#pragma omp parallel num_threads(T) if (T > 1 && nblk > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#pragma omp single
        nt = omp_get_num_threads();
#endif
        float *base = ws + tid * per;
        float *col = align64(base);
        float *dyt = align64(base + rup16(CK * L0));
        run_t *rs = (run_t *)align64(base + rup16(CK * L0) + rup16(p->oc * L0));
        float *gws = base + rup16(CK * L0) + rup16(p->oc * L0) + rup16(cap * (int64_t)(sizeof(run_t) / sizeof(float)));
        float *part = tid == 0 ? dw : dw_partial(p, ws, tid, L0, cap, og, Kg);
        memset(part, 0, (size_t)nw * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblk; blk++) {
            const int64_t q0 = blk * L0, L = min64(L0, total - q0);
            const int64_t nr = runs_of(p, q0, L, rs, cap);
            block_dy(p, dyt, dy, rs, nr, L, 1);
            if (use_pad(p))
                block_pixels_pad(p, col, x, rs, nr, 0, p->c, base + per - pad_room(p, p->c));
            else
                block_pixels(p, col, x, rs, nr, 0, p->c, 1);
            for (int64_t g = 0; g < p->groups; g++) {
                nd_gemm_desc d = {0};
                d.m = og;
                d.n = Kg;
                d.k = L;
                d.a.p = dyt + g * og * L;
                d.a.rs = L;
                d.a.cs = 1;
                d.b.p = col + g * Kg;      /* B (pixel, tap): rows of colT */
                d.b.rs = CK;
                d.b.cs = 1;
                d.c = part + g * og * Kg;
                d.ldc = Kg;
                d.accumulate = 1;
                nd_status s = nd_sgemm(&d, gws, 1);
                if (s != ND_OK)
                    st = s;
            }
        }
        /* after the loop's implicit barrier every partial is complete: sum them into dw,
         * thread by thread (a fixed order) */
        for (int t = 1; t < nt; t++) {
            const float *pt = dw_partial(p, ws, t, L0, cap, og, Kg);
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nw; i++) dw[i] += pt[i];
        }
    }
    return st;
}

/* depthwise dW[oc, i, j] = sum over images and pixels of dy[b, oc] * x[b, ic] at the tap;
 * taps that read padding add 0*dy (NaN for a NaN/inf dy), as the im2col GEMM would */
static void dw_depthwise(const nd_conv_bwd_params *p, float *dw, const float *dy, const float *x, int T)
{
    const nd_isa_ops *o = nd_ops();
    const int64_t mult = p->oc / p->c, H = p->h, W = p->w, OW = p->ow, P = p->oh * p->ow, KK = p->kh * p->kw;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && p->n * p->oc * P * KK > 65536)
    for (int64_t oc = 0; oc < p->oc; oc++) {
        const int64_t ic = oc / mult;
        float *acc = dw + oc * KK;
        for (int64_t t = 0; t < KK; t++) acc[t] = 0.0f;
        for (int64_t b = 0; b < p->n; b++) {
            const float *dyp = dy + (b * p->oc + oc) * P, *xp = x + (b * p->c + ic) * H * W;
            for (int64_t i = 0; i < p->kh; i++)
                for (int64_t j = 0; j < p->kw; j++) {
                    const int64_t off = j * p->dw - p->pad_l;
                    int64_t lo, hi;
                    col_range(off, p->sw, W, OW, &lo, &hi);
                    float s = 0.0f, pad = 0.0f;
                    for (int64_t oy = 0; oy < p->oh; oy++) {
                        const int64_t iy = oy * p->sh - p->pad_t + i * p->dh;
                        const float *dr = dyp + oy * OW;
                        if (iy < 0 || iy >= H) {
                            for (int64_t ox = 0; ox < OW; ox++) pad += dr[ox] - dr[ox];
                            continue;
                        }
                        const float *xr = xp + iy * W;
                        for (int64_t ox = 0; ox < lo; ox++) pad += dr[ox] - dr[ox];
                        for (int64_t ox = hi; ox < OW; ox++) pad += dr[ox] - dr[ox];
                        if (p->sw == 1)
                            s += o->dot(dr + lo, xr + lo + off, hi - lo);
                        else
                            for (int64_t ox = lo; ox < hi; ox++) s += dr[ox] * xr[ox * p->sw + off];
                    }
                    acc[i * p->kw + j] += s + pad;
                }
        }
    }
}

static int64_t dw_ws(const nd_conv_bwd_params *p) { return dw_algo(p) == 3 ? 0 : dw_gemm_ws(p); }

int64_t nd_conv_bwd_params_ws_floats(const nd_conv_bwd_params *p)
{
    if (!p || bad_conv(p))
        return -1;
    nd_conv_bwd_params t;
    int64_t i0, j0;
    const int64_t full = dw_ws(p);
    if (full < 0 || !trim_of(p, &t, &i0, &j0))
        return full;
    const int64_t tw = dw_ws(&t);
    return tw < 0 ? full : max64(full, trim_w_floats(&t) + tw);
}

int32_t nd_conv_bwd_params_algo(const nd_conv_bwd_params *p)
{
    if (!p || bad_conv(p))
        return -1;
    nd_conv_bwd_params t;
    int64_t i0, j0;
    if (trim_of(p, &t, &i0, &j0) && dw_ws(&t) >= 0)
        p = &t;
    return dw_algo(p);
}

static nd_status dw_run(const nd_conv_bwd_params *p, float *dw, const float *dy, const float *x, float *ws, int T)
{
    if (dw_algo(p) == 3) {
        dw_depthwise(p, dw, dy, x, T);
        return ND_OK;
    }
    if (!ws)
        return ND_EINVAL;
    return dw_gemm(p, dw, dy, x, ws, T);
}

/* dW of p from the trimmed conv t's dW (wt): kept taps copied, every dropped tap of filter o
 * gets what its all-zero im2col column gives: the sum over pixels of dy * 0, i.e. 0, or NaN
 * where that filter's dy holds a NaN or inf */
static void untrim_dw(const nd_conv_bwd_params *p, const nd_conv_bwd_params *t, int64_t i0, int64_t j0, float *dw,
                      const float *wt, const float *dy, int T)
{
    const int64_t cg = p->c / p->groups, KH = p->kh, KW = p->kw, P = p->oh * p->ow;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && p->oc * cg * KH * KW > 65536)
    for (int64_t o = 0; o < p->oc; o++) {
        float z = 0.0f;
        for (int64_t b = 0; b < p->n; b++) {
            const float *r = dy + (b * p->oc + o) * P;
            for (int64_t i = 0; i < P; i++) z += r[i] - r[i];   /* 0, or NaN from a NaN / inf */
        }
        float *d = dw + o * cg * KH * KW;    /* filter o: z everywhere (one vector fill), then the kept taps */
        for (int64_t k = 0; k < cg * KH * KW; k++) d[k] = z;
        const int64_t TKH = t->kh, TKW = t->kw, off0 = i0 * KW + j0;   /* locals: d may alias *t */
        for (int64_t c = 0; c < cg; c++) {
            const float *src = wt + (o * cg + c) * TKH * TKW;
            for (int64_t i = 0; i < TKH; i++)
                for (int64_t j = 0; j < TKW; j++) d[c * KH * KW + off0 + i * KW + j] = src[i * TKW + j];
        }
    }
}

nd_status nd_conv_bwd_params_f32(const nd_conv_bwd_params *p, float *out, const float *const *in, const float *w,
                                 const float *bias, float *ws)
{
    (void)w;
    (void)bias;
    if (!p || !out || !in || !in[0] || !in[1] || bad_conv(p))
        return ND_EINVAL;
    const int T = nd_threads(p->threads);
    const int64_t nw = p->oc * (p->c / p->groups) * p->kh * p->kw;
    if (p->n == 0) {
        memset(out, 0, (size_t)(nw + (p->bias ? p->oc : 0)) * sizeof(float));
        return ND_OK;
    }
    nd_conv_bwd_params t;
    int64_t i0, j0;
    nd_status s;
    if (ws && trim_of(p, &t, &i0, &j0) && dw_ws(&t) >= 0) {
        float *wt = align64(ws);
        s = dw_run(&t, wt, in[0], in[1], ws + trim_w_floats(&t), T);
        if (s != ND_OK)
            return s;
        untrim_dw(p, &t, i0, j0, out, wt, in[0], T);
    } else {
        s = dw_run(p, out, in[0], in[1], ws, T);
        if (s != ND_OK)
            return s;
    }
    if (p->bias)
        bias_grad(out + nw, in[0], p->n, p->oc, p->oh * p->ow, T);
    return ND_OK;
}

/* ------------------------------------------------------------- ConvTranspose */

static int bad_convt(const nd_convtranspose_bwd_params *p)
{
    return p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oc <= 0 || p->oh <= 0 ||
           p->ow <= 0 || p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 ||
           p->dw <= 0 || p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0 ||
           p->groups <= 0 || p->c % p->groups || p->oc % p->groups || p->bias < 0 || p->bias > 1 ||
           !nd_axis_ok(p->oh, p->h, p->kh, p->sh, p->dh, p->pad_t, p->pad_b) ||
           !nd_axis_ok(p->ow, p->w, p->kw, p->sw, p->dw, p->pad_l, p->pad_r) ||
           !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->oc, p->oh, p->ow) ||
           !ND_PROD_OK(p->c, p->oc, p->kh, p->kw) || !ND_PROD_OK(p->n, p->h, p->w, p->oc, p->kh, p->kw);
}

/* The conv that ConvTranspose t is the adjoint of: input = t's output (n, oc, oh, ow),
 * output = t's input (n, c, h, w), same weight, stride, dilation, top/left pads; the
 * bottom/right pad only has to keep the window count right: the taps past the crop (and
 * output_padding's extra rows) read zeros, as the crop gives them no gradient. */
static int convt_as_conv(const nd_convtranspose_bwd_params *t, nd_conv_bwd_params *q)
{
    if (bad_convt(t))
        return 0;
    memset(q, 0, sizeof *q);
    q->n = t->n; q->c = t->oc; q->h = t->oh; q->w = t->ow;
    q->oc = t->c; q->oh = t->h; q->ow = t->w;
    q->kh = t->kh; q->kw = t->kw; q->sh = t->sh; q->sw = t->sw; q->dh = t->dh; q->dw = t->dw;
    q->pad_t = t->pad_t;
    q->pad_l = t->pad_l;
    q->pad_b = max64(0, (t->h - 1) * t->sh + t->dh * (t->kh - 1) + 1 - t->oh - t->pad_t);
    q->pad_r = max64(0, (t->w - 1) * t->sw + t->dw * (t->kw - 1) + 1 - t->ow - t->pad_l);
    q->groups = t->groups;
    q->threads = t->threads;
    return !bad_conv(q);
}

int64_t nd_convtranspose_bwd_data_ws_floats(const nd_convtranspose_bwd_params *p)
{
    nd_conv_bwd_params q;
    if (!p || !convt_as_conv(p, &q))
        return -1;
    return fwd_ws(&q);
}

nd_status nd_convtranspose_bwd_data_f32(const nd_convtranspose_bwd_params *p, float *out,
                                        const float *const *in, const float *w, const float *bias,
                                        float *ws)
{
    (void)bias;
    nd_conv_bwd_params q;
    if (!p || !out || !in || !in[0] || !w || !ws || !convt_as_conv(p, &q))
        return ND_EINVAL;
    if (p->n == 0)
        return ND_OK;
    return fwd_conv(&q, out, in[0], w, NULL, ws);
}

int64_t nd_convtranspose_bwd_params_ws_floats(const nd_convtranspose_bwd_params *p)
{
    nd_conv_bwd_params q;
    if (!p || !convt_as_conv(p, &q))
        return -1;
    return dw_algo(&q) == 3 ? 0 : dw_gemm_ws(&q);
}

nd_status nd_convtranspose_bwd_params_f32(const nd_convtranspose_bwd_params *p, float *out,
                                          const float *const *in, const float *w, const float *bias,
                                          float *ws)
{
    (void)w;
    (void)bias;
    nd_conv_bwd_params q;
    if (!p || !out || !in || !in[0] || !in[1] || !convt_as_conv(p, &q))
        return ND_EINVAL;
    const int T = nd_threads(p->threads);
    const int64_t nw = p->c * (p->oc / p->groups) * p->kh * p->kw;
    if (p->n == 0) {
        memset(out, 0, (size_t)(nw + (p->bias ? p->oc : 0)) * sizeof(float));
        return ND_OK;
    }
    /* the adjoint conv's "x" is dy and its "dy" is x: its dW (C, OC/g, KH, KW) is ours */
    if (dw_algo(&q) == 3) {
        dw_depthwise(&q, out, in[1], in[0], T);
    } else {
        if (!ws)
            return ND_EINVAL;
        nd_status s = dw_gemm(&q, out, in[1], in[0], ws, T);
        if (s != ND_OK)
            return s;
    }
    if (p->bias)
        bias_grad(out + nw, in[0], p->n, p->oc, p->oh * p->ow, T);
    return ND_OK;
}

/* ------------------------------------------------------------- Local */

static int bad_local(const nd_local_bwd_params *p)
{
    return p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oc <= 0 || p->oh <= 0 ||
           p->ow <= 0 || p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 ||
           p->dw <= 0 || p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0 ||
           p->bias < 0 || p->bias > 1 ||
           !nd_axis_ok(p->h, p->oh, p->kh, p->sh, p->dh, p->pad_t, p->pad_b) ||
           !nd_axis_ok(p->w, p->ow, p->kw, p->sw, p->dw, p->pad_l, p->pad_r) ||
           !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->oc, p->oh, p->ow) ||
           !ND_PROD_OK(p->oh, p->ow, p->oc, p->c, p->kh, p->kw) ||
           !ND_PROD_OK(p->n, p->oh, p->ow, p->c, p->kh, p->kw) ||
           !ND_PROD_OK(p->threads < 1 ? 1 : p->threads, p->n, p->c, p->kh, p->kw);
}

/* one thread's share: a patch buffer (N, K) and a single-thread GEMM workspace */
static int64_t local_thread_ws(const nd_local_bwd_params *p)
{
    const int64_t K = p->c * p->kh * p->kw;
    return rup16(p->n * K) + max64(nd_sgemm_ws(p->oc, K, p->n, 1), nd_sgemm_ws(p->n, K, p->oc, 1));
}

static int64_t local_T(const nd_local_bwd_params *p) { return p->threads < 1 ? 1 : p->threads; }

/* patch (N, K) of output position (oy, ox): row b = x[b] under the window, zeros in the padding */
static void local_patch(const nd_local_bwd_params *p, float *d, const float *x, int64_t oy, int64_t ox)
{
    const int64_t HW = p->h * p->w;
    for (int64_t b = 0; b < p->n; b++)
        for (int64_t c = 0; c < p->c; c++)
            for (int64_t i = 0; i < p->kh; i++) {
                const int64_t iy = oy * p->sh - p->pad_t + i * p->dh;
                for (int64_t j = 0; j < p->kw; j++) {
                    const int64_t ix = ox * p->sw - p->pad_l + j * p->dw;
                    *d++ = (iy >= 0 && iy < p->h && ix >= 0 && ix < p->w) ? x[(b * p->c + c) * HW + iy * p->w + ix]
                                                                           : 0.0f;
                }
            }
}

int64_t nd_local_bwd_data_ws_floats(const nd_local_bwd_params *p)
{
    if (!p || bad_local(p))
        return -1;
    const int64_t K = p->c * p->kh * p->kw, P = p->oh * p->ow;
    return rup16(p->n * P * K) + local_T(p) * local_thread_ws(p) + 16;
}

int64_t nd_local_bwd_params_ws_floats(const nd_local_bwd_params *p)
{
    if (!p || bad_local(p))
        return -1;
    return local_T(p) * local_thread_ws(p) + 16;
}

nd_status nd_local_bwd_data_f32(const nd_local_bwd_params *p, float *out, const float *const *in, const float *w,
                                const float *bias, float *ws)
{
    (void)bias;
    if (!p || !out || !in || !in[0] || !w || !ws || bad_local(p))
        return ND_EINVAL;
    const int64_t K = p->c * p->kh * p->kw, P = p->oh * p->ow, KK = p->kh * p->kw, N = p->n;
    const int64_t H = p->h, W = p->w, per = local_thread_ws(p);
    const int T = nd_threads(p->threads);
    const float *dy = in[0];
    float *dcols = align64(ws);           /* (N, P, K) */
    float *tws = ws + rup16(N * P * K);
    nd_status st = ND_OK;
    (void)T;
#pragma omp parallel num_threads(T) if (T > 1 && N * P * p->oc * K > 65536)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *gws = tws + tid * per;
#pragma omp for schedule(static)
        for (int64_t pos = 0; pos < P; pos++) {
            nd_gemm_desc d = {0};
            d.m = N;                        /* A (b, o) = dy[b, o, pos] */
            d.n = K;
            d.k = p->oc;
            d.a.p = dy + pos;
            d.a.rs = p->oc * P;
            d.a.cs = P;
            d.b.p = w + pos * p->oc * K;
            d.b.rs = K;
            d.b.cs = 1;
            d.c = dcols + pos * K;
            d.ldc = P * K;
            nd_status s = nd_sgemm(&d, gws, 1);
            if (s != ND_OK)
                st = s;
        }
    }
    if (st != ND_OK)
        return st;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && N * P * K > 32768)
    for (int64_t pl = 0; pl < N * p->c; pl++) {
        const int64_t b = pl / p->c, c = pl % p->c;
        float *xp = out + pl * H * W;
        memset(xp, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t pos = 0; pos < P; pos++) {
            const int64_t oy = pos / p->ow, ox = pos % p->ow;
            const float *src = dcols + (b * P + pos) * K + c * KK;
            for (int64_t i = 0; i < p->kh; i++) {
                const int64_t iy = oy * p->sh - p->pad_t + i * p->dh;
                if (iy < 0 || iy >= H)
                    continue;
                for (int64_t j = 0; j < p->kw; j++) {
                    const int64_t ix = ox * p->sw - p->pad_l + j * p->dw;
                    if (ix >= 0 && ix < W)
                        xp[iy * W + ix] += src[i * p->kw + j];
                }
            }
        }
    }
    return ND_OK;
}

nd_status nd_local_bwd_params_f32(const nd_local_bwd_params *p, float *out, const float *const *in, const float *w,
                                  const float *bias, float *ws)
{
    (void)w;
    (void)bias;
    if (!p || !out || !in || !in[0] || !in[1] || !ws || bad_local(p))
        return ND_EINVAL;
    const int64_t K = p->c * p->kh * p->kw, P = p->oh * p->ow, N = p->n, OC = p->oc, per = local_thread_ws(p);
    const int T = nd_threads(p->threads);
    const float *dy = in[0], *x = in[1];
    float *db = p->bias ? out + P * OC * K : NULL;
    nd_status st = ND_OK;
    (void)T;
#pragma omp parallel num_threads(T) if (T > 1 && N * P * OC * K > 65536)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *patch = align64(ws + tid * per);
        float *gws = ws + tid * per + rup16(N * K);
#pragma omp for schedule(static)
        for (int64_t pos = 0; pos < P; pos++) {
            float *dwp = out + pos * OC * K;
            if (N == 0) {
                memset(dwp, 0, (size_t)(OC * K) * sizeof(float));
            } else {
                local_patch(p, patch, x, pos / p->ow, pos % p->ow);
                nd_gemm_desc d = {0};
                d.m = OC;                   /* A (o, b) = dy[b, o, pos] */
                d.n = K;
                d.k = N;
                d.a.p = dy + pos;
                d.a.rs = P;
                d.a.cs = OC * P;
                d.b.p = patch;
                d.b.rs = K;
                d.b.cs = 1;
                d.c = dwp;
                d.ldc = K;
                nd_status s = nd_sgemm(&d, gws, 1);
                if (s != ND_OK)
                    st = s;
            }
            if (db)
                for (int64_t o = 0; o < OC; o++) {
                    float s = 0.0f;
                    for (int64_t b = 0; b < N; b++) s += dy[(b * OC + o) * P + pos];
                    db[o * P + pos] = s;
                }
        }
    }
    return st;
}

/* ------------------------------------------------------------- FC */

static int bad_fc(const nd_fc_bwd_params *p)
{
    return p->n < 0 || p->in_features < 0 || p->out_features <= 0 || p->bias < 0 || p->bias > 1 ||
           !ND_PROD_OK(p->n, p->in_features) || !ND_PROD_OK(p->n, p->out_features) ||
           !ND_PROD_OK(p->in_features, p->out_features);
}

int64_t nd_fc_bwd_data_ws_floats(const nd_fc_bwd_params *p)
{
    if (!p || bad_fc(p))
        return -1;
    return nd_sgemm_ws(p->n, p->in_features, p->out_features, p->threads < 1 ? 1 : p->threads);
}

int64_t nd_fc_bwd_params_ws_floats(const nd_fc_bwd_params *p)
{
    if (!p || bad_fc(p))
        return -1;
    return nd_sgemm_ws(p->out_features, p->in_features, p->n, p->threads < 1 ? 1 : p->threads);
}

nd_status nd_fc_bwd_data_f32(const nd_fc_bwd_params *p, float *out, const float *const *in, const float *w,
                             const float *bias, float *ws)
{
    (void)bias;
    if (!p || !out || !in || !in[0] || !w || bad_fc(p))
        return ND_EINVAL;
    nd_gemm_desc d = {0};          /* dx (N, IN) = dy (N, OUT) . W (OUT, IN) */
    d.m = p->n;
    d.n = p->in_features;
    d.k = p->out_features;
    d.a.p = in[0];
    d.a.rs = p->out_features;
    d.a.cs = 1;
    d.b.p = w;
    d.b.rs = p->in_features;
    d.b.cs = 1;
    d.c = out;
    d.ldc = p->in_features;
    return nd_sgemm(&d, ws, p->threads);
}

nd_status nd_fc_bwd_params_f32(const nd_fc_bwd_params *p, float *out, const float *const *in, const float *w,
                               const float *bias, float *ws)
{
    (void)w;
    (void)bias;
    if (!p || !out || !in || !in[0] || !in[1] || bad_fc(p))
        return ND_EINVAL;
    const int64_t N = p->n, IN = p->in_features, OUT = p->out_features;
    const float *dy = in[0];
    nd_gemm_desc d = {0};          /* dW (OUT, IN) = dy^T (OUT, N) . x (N, IN) */
    d.m = OUT;
    d.n = IN;
    d.k = N;
    d.a.p = dy;
    d.a.rs = 1;
    d.a.cs = OUT;
    d.b.p = in[1];
    d.b.rs = IN;
    d.b.cs = 1;
    d.c = out;
    d.ldc = IN;
    nd_status s = nd_sgemm(&d, ws, p->threads);
    if (s != ND_OK)
        return s;
    if (p->bias) {
        float *db = out + OUT * IN;
        for (int64_t o = 0; o < OUT; o++) db[o] = 0.0f;
        for (int64_t b = 0; b < N; b++)
            for (int64_t o = 0; o < OUT; o++) db[o] += dy[b * OUT + o];
    }
    return ND_OK;
}
