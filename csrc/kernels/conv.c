/* conv.c — 2-D convolution as a GEMM per (image, group), or a direct depthwise kernel.
 *
 * x is (N,C,H,W), w is (OC,C/g,KH,KW), y is (N,OC,OH,OW). For image b and
 * group g, with cg = C/g input and og = OC/g output channels:
 *     Y_g (og, OH*OW) = W_g (og, cg*KH*KW) . im2col(X_g) (cg*KH*KW, OH*OW)
 * which is already the NCHW layout of y. Three algorithms, chosen from the
 * params alone (so nd_conv_ws_floats agrees with the kernel):
 *   - 1x1, stride 1, no padding: B is x itself, (cg, H*W) — no im2col;
 *   - depthwise (groups == C > 1): direct per-plane kernel (conv_dw.c), since a
 *     GEMM with K = KH*KW and M = OC/C would be all packing and no math;
 *   - otherwise: the GEMM driver packs B panels straight from the image
 *     (dispatch.h: nd_im2col), so there is no im2col buffer either;
 *   - the kernel covers the whole unpadded image (one output pixel, LeNet's
 *     C5) at batch <= 8: N x OC dot products on the raw weights (conv_fc);
 *   - small stride-1 convs (LeNet's C1/C3) on ISAs with a conv_row: direct,
 *     no packing (conv_direct);
 *   - transposed (groups == 1, small OH*OW — late ResNet/VGG stages, LeNet's
 *     C5): Y^T (N*OH*OW, OC) = im2col(X)^T . W^T with the batch folded into
 *     the rows, into the workspace, then transposed into NCHW. The micro-tile
 *     is MR pixels x NR channels, so a 7x7 map (49 pixels) no longer fills
 *     two 32-wide column panels to 77%, and OC (a multiple of 32) is the wide
 *     side. Chosen when it wastes clearly fewer tile cells (use_transposed).
 * Threads: each GEMM splits its output over threads; when there are many
 * small GEMMs (grouped convs) they run side by side, one thread each.
 * Bias and relu/leaky/relu6 are fused into the GEMM's store. A residual (in[1]) is
 * copied into y first and the GEMM accumulates onto it (C += A B), so the add
 * costs no extra pass for the activation; when the planner puts y in r's buffer
 * (r dies here: every ResNet block's last conv) it costs nothing at all.
 */
#include <string.h>
#include "kernels/conv.h"

#include "kernels/gemm.h"
#include "dispatch.h"
#include "winograd.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* y = act(y + r) over n values (r may be NULL: just the activation). */
static void add_residual_act(float *y, const float *r, int64_t n, int act)
{
    if (r)
        for (int64_t i = 0; i < n; i++)
            y[i] += r[i];
    nd_act_inplace(y, n, act);
}

static int bad_params(const nd_conv_params *p)
{
    return p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oc <= 0 || p->oh <= 0 ||
           p->ow <= 0 || p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 ||
           p->dw <= 0 || p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0 ||
           p->groups <= 0 || p->c % p->groups || p->oc % p->groups || !nd_act_ok(p->act) ||
           p->residual < 0 || p->residual > 1 ||
           !nd_axis_ok(p->h, p->oh, p->kh, p->sh, p->dh, p->pad_t, p->pad_b) ||
           !nd_axis_ok(p->w, p->ow, p->kw, p->sw, p->dw, p->pad_l, p->pad_r) ||
           !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->oc, p->oh, p->ow) ||
           !ND_PROD_OK(p->oc, p->c, p->kh, p->kw) || !ND_PROD_OK(p->n, p->oh, p->ow, p->c, p->kh, p->kw);
}

static int is_depthwise(const nd_conv_params *p) { return p->groups > 1 && p->groups == p->c; }

static inline int64_t rup(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

/* Winograd F(4x4,3x3) (conv_winograd.c): forced by algo 4 (where the geometry allows it)
 * or chosen on auto. The weights are then packed in its transformed form, so the kernel
 * takes it whenever the weights are prepacked (w_packed_mr > 0) and the GEMM otherwise. */
static int use_winograd(const nd_conv_params *p)
{
    return nd_wino_geom(p) && (p->algo == 4 || (p->algo == 0 && nd_wino_auto(p)));
}

/* ... for weights packed with this MR: on auto, a thin conv on a small map whose weights are
 * AVX-512's is left to the direct kernel (use_direct's thin rule), measured faster there
 * (Zen 5, 1 thread, DenseNet's 128->32: 14x14 0.095 vs 0.137 ms Winograd; 28x28 even,
 * 56x56 1.35 vs 1.16, so Winograd keeps those; 7x7 rows fill too few lanes for direct). */
static int use_winograd_mr(const nd_conv_params *p, int64_t mr)
{
    if (!use_winograd(p))
        return 0;
    const nd_isa_ops *o = nd_ops_for(ND_ISA_AVX512);
    const int thin_small = o && o->conv_row && mr == o->mr && p->oc <= 32 && p->oh * p->ow <= 256 &&
                           4 * p->ow >= 3 * rup(p->ow, 16);
    return p->algo == 4 || !thin_small;
}

/* The kernel covers the whole unpadded image (LeNet's C5: 16x5x5 -> 120x1x1):
 * im2col has one column per image and it is the image itself, so at small
 * batch Y (N, OC) = X (N, K) . W^T is N x OC dot products over contiguous
 * rows of x and of the unpacked w (the GEMM driver's FC path, gemm_dot): no
 * packing at all. Past 8 images the packed transposed GEMM is better. */
static int is_fc_like(const nd_conv_params *p)
{
    return (p->algo == 0 || p->algo == 5) && p->groups == 1 && p->n <= 8 && p->oh == 1 && p->ow == 1 && p->kh == p->h && p->kw == p->w &&
           p->pad_t == 0 && p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0 && p->dh == 1 && p->dw == 1;
}

/* The transposed GEMM for a micro-tile of mr x nr: when forced (algo 2), or on
 * auto when the share of useful cells in the padded tiles beats the plain
 * GEMM's by 8% (the transpose pass and the per-thread im2col pack it adds
 * cost a few percent). A function of the params and the tile only, so the
 * workspace size, the weight packing and the kernel agree. */
static int use_transposed(const nd_conv_params *p, int64_t mr, int64_t nr)
{
    if (p->groups != 1 || is_depthwise(p) || is_fc_like(p) || p->algo == 1 || p->algo == 3 || mr <= 0 || nr <= 0)
        return 0;
    if (p->algo == 2)
        return 1;
    const int64_t ohw = p->oh * p->ow, np = p->n * ohw;
    const double eff_g = (double)p->oc / rup(p->oc, mr) * (double)ohw / rup(ohw, nr);
    const double eff_t = (double)np / rup(np, mr) * (double)p->oc / rup(p->oc, nr);
    if (eff_t > 2.0 * eff_g)   /* e.g. LeNet's C5: one output pixel */
        return 1;
    /* Measured (Zen 4, 2 threads): 3x3 512->512 on 7x7 and 256->256 on 14x14
     * gain 18-25% at batch 8 and break even at batch 1; with few channels
     * (OC = 32: one column panel, the threads split the pixels and both pack
     * A) or a 1x1 kernel (the plain GEMM reads x without any packing) the
     * transposed form was 15-25% slower, so it needs both. */
    return p->oc >= 4 * nr && p->kh * p->kw > 1 && eff_t > 1.08 * eff_g;
}

/* the tile the kernel will use: the prepacked weights' ISA, else the one in use */
static void conv_tile(const nd_conv_params *p, int64_t *mr, int64_t *nr)
{
    if (p->w_packed_mr > 0) {
        *mr = p->w_packed_mr;
        *nr = nd_nr_for_mr(p->w_packed_mr);
    } else {
        *mr = nd_ops()->mr;
        *nr = nd_ops()->nr;
    }
}

static int64_t transposed_ws(const nd_conv_params *p, int T)
{
    const int64_t np = p->n * p->oh * p->ow, k = p->c * p->kh * p->kw;
    return rup(np * p->oc, 16) + nd_sgemm_ws(np, p->oc, k, T);
}

static int is_pointwise(const nd_conv_params *p)
{
    return p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->pad_t == 0 && p->pad_l == 0 &&
           p->pad_b == 0 && p->pad_r == 0 && p->oh == p->h && p->ow == p->w;
}

/* GEMMs run side by side when each is small and there are enough of them. */
static int side_by_side(const nd_conv_params *p, int T)
{
    const double flops = 2.0 * (double)(p->oc / p->groups) * (double)(p->oh * p->ow) *
                         (double)(p->c / p->groups * p->kh * p->kw);
    return T > 1 && p->n * p->groups >= T && flops < 2e7;
}

static int use_direct(const nd_conv_params *p, const nd_isa_ops *o);

int64_t nd_conv_ws_floats(const nd_conv_params *p)
{
    if (bad_params(p))
        return -1;
    if (is_depthwise(p))
        return 0;
    const int64_t m = p->oc / p->groups, n = p->oh * p->ow, k = p->c / p->groups * p->kh * p->kw;
    const int T = p->threads < 1 ? 1 : p->threads;
    int64_t ws = max64(nd_sgemm_ws(m, n, k, T), T * nd_sgemm_ws(m, n, k, 1));
    if (use_winograd(p))
        ws = max64(ws, nd_wino_ws_floats(p, T));
    const nd_isa_ops *o5 = nd_ops_for(ND_ISA_AVX512);
    if (p->sw == 2 && o5 && o5->conv_row_s2) {   /* conv_direct's split image, where it goes direct */
        nd_conv_params q = *p;
        q.w_packed_mr = (int32_t)o5->mr;   /* as the executor prepacks them */
        if (use_direct(&q, o5))
            ws = max64(ws, p->c * p->h * p->w + 16);
    }
    for (int lv = ND_ISA_PORTABLE; lv <= ND_ISA_AVX512; lv++) {   /* any ISA may run the plan */
        const nd_isa_ops *o = nd_ops_for(lv);
        if (o && use_transposed(p, o->mr, o->nr)) {
            ws = max64(ws, transposed_ws(p, T));
            break;
        }
    }
    return ws;
}

int64_t nd_conv_packed_w_floats(const nd_conv_params *p, int32_t mr)
{
    if (bad_params(p) || mr <= 0)
        return -1;
    if (is_depthwise(p))
        return 0;
    if (use_winograd_mr(p, mr))
        return nd_wino_packed_w_floats(p, mr);
    if (is_fc_like(p))
        return 0;
    const int64_t og = p->oc / p->groups, k = p->c / p->groups * p->kh * p->kw;
    const int64_t nr = nd_nr_for_mr(mr);
    if (use_transposed(p, mr, nr))   /* W^T as B panels */
        return rup(p->oc, nr) * k;
    return p->groups * ((og + mr - 1) / mr * mr) * k;
}

nd_status nd_conv_pack_w(const nd_conv_params *p, float *dst, const float *w, int32_t mr)
{
    if (nd_conv_packed_w_floats(p, mr) <= 0 || !dst || !w)
        return ND_EINVAL;
    if (use_winograd_mr(p, mr))
        return nd_wino_pack_w(p, dst, w, mr);
    const int64_t og = p->oc / p->groups, k = p->c / p->groups * p->kh * p->kw;
    const int64_t nr = nd_nr_for_mr(mr);
    if (use_transposed(p, mr, nr)) {   /* B(k, oc) = w[oc, k] */
        nd_pack_b_full(dst, w, k, p->oc, 1, k, nr);
        return ND_OK;
    }
    const int64_t per = (og + mr - 1) / mr * mr * k;
    for (int64_t g = 0; g < p->groups; g++) {
        nd_status s = nd_gemm_pack_a(dst + g * per, w + g * og * k, og, k, k, 1, mr);
        if (s != ND_OK)
            return s;
    }
    return ND_OK;
}

static nd_status conv_depthwise(const nd_conv_params *p, float *out, const float *x, const float *w,
                                const float *bias, const float *res)
{
    const nd_isa_ops *o = nd_ops();
    const int64_t mult = p->oc / p->c, planes = p->n * p->oc, HW = p->h * p->w, OHW = p->oh * p->ow;
    const int T = nd_threads(p->threads);
    (void)T; /* unused without OpenMP */
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && planes * OHW * p->kh * p->kw > 65536)
    for (int64_t pl = 0; pl < planes; pl++) {
        const int64_t b = pl / p->oc, oc = pl % p->oc, ic = oc / mult;
        float *y = out + pl * OHW;
        o->dw_plane(y, x + (b * p->c + ic) * HW, w + oc * p->kh * p->kw, bias ? bias[oc] : 0.0f,
                    res ? res + pl * OHW : NULL, p->act, p->h, p->w, p->oh, p->ow, p->kh, p->kw, p->sh,
                    p->sw, p->dh, p->dw, p->pad_t, p->pad_l);
    }
    return ND_OK;
}

/* The whole batch as one GEMM, Y^T = im2col(X)^T . W^T into the workspace,
 * then transposed into NCHW; the residual and the activation that must follow
 * it are applied in that pass (relu/leaky/sigmoid/tanh are fused otherwise). */
static nd_status conv_transposed(const nd_conv_params *p, float *out, const float *x, const float *w,
                                 const float *bias, const float *res, float *ws, int T)
{
    const int64_t OHW = p->oh * p->ow, np = p->n * OHW, OC = p->oc, K = p->c * p->kh * p->kw;
    float *t = ws;
    nd_im2col im = {x, p->c, p->h, p->w, p->kh, p->kw, p->sh, p->sw, p->dh, p->dw, p->pad_t, p->pad_l,
                    p->oh, p->ow, p->c * p->h * p->w};
    nd_gemm_desc d = {0};
    d.m = np;
    d.n = OC;
    d.k = K;
    d.a_im2col = &im;
    d.b.p = w;
    if (p->w_packed_mr > 0) {
        d.b.packed_nr = (int32_t)nd_nr_for_mr(p->w_packed_mr);
        d.b.rs = K;
        if (d.b.packed_nr <= 0)
            return ND_EINVAL;
    } else {
        d.b.rs = 1;
        d.b.cs = K;
    }
    d.c = t;
    d.ldc = OC;
    d.bias = bias;
    d.bias_mode = bias ? ND_BIAS_COL : ND_BIAS_NONE;
    d.act = res ? ND_ACT_NONE : p->act;
    nd_status st = nd_sgemm(&d, ws + rup(np * OC, 16), T);
    if (st != ND_OK)
        return st;
    const int64_t CB = 16, ncb = (OC + CB - 1) / CB, jobs = p->n * ncb;
    (void)T;
    /* 16 channels x all pixels of one image per job: reads whole cache lines of t, writes 16 rows */
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && np * OC > 100000)
    for (int64_t jb = 0; jb < jobs; jb++) {
        const int64_t b = jb / ncb, c0 = jb % ncb * CB, c1 = c0 + CB < OC ? c0 + CB : OC;
        const float *tb = t + b * OHW * OC;
        for (int64_t c = c0; c < c1; c++) {
            float *y = out + (b * OC + c) * OHW;
            if (res == out) {   /* y holds r (the planner's in place): y = act(r + t) */
                for (int64_t i = 0; i < OHW; i++)
                    y[i] += tb[i * OC + c];
                nd_act_inplace(y, OHW, p->act);
                continue;
            }
            for (int64_t i = 0; i < OHW; i++)
                y[i] = tb[i * OC + c];
            if (res)
                add_residual_act(y, res + (b * OC + c) * OHW, OHW, p->act);
        }
    }
    return ND_OK;
}

/* is_fc_like: y (N, OC) = x (N, K) . w^T (w unpacked, (OC, K) row-major). */
static nd_status conv_fc(const nd_conv_params *p, float *out, const float *x, const float *w,
                         const float *bias, const float *res, float *ws, int T)
{
    const int64_t K = p->c * p->h * p->w;
    nd_gemm_desc d = {0};
    d.m = p->n;
    d.n = p->oc;
    d.k = K;
    d.a.p = x;
    d.a.rs = K;
    d.a.cs = 1;
    d.b.p = w;
    d.b.rs = 1;
    d.b.cs = K;
    d.c = out;
    d.ldc = p->oc;
    if (res) {
        if (res != out)
            memcpy(out, res, (size_t)(p->n * p->oc) * sizeof(float));
        d.accumulate = 1;
    }
    d.bias = bias;
    d.bias_mode = bias ? ND_BIAS_COL : ND_BIAS_NONE;
    d.act = p->act;
    return nd_sgemm(&d, ws, T);
}

/* Direct convolution where im2col packing costs more than it saves: small
 * problems (LeNet's C1/C3: K = 25..150, rows of 10..28 pixels, thousands of
 * short copies per call) and thin ones (OC <= 32: DenseNet's 3x3 growth convs,
 * where every packed float serves only 32 rows of multiply-adds). The ISA's
 * conv_row reads the image in place, MR channels x one output row per call,
 * with the GEMM's packed A panels as weights (same prepacking, so the choice
 * is free at run time). Needs stride 1 along rows (vector loads) and rows of
 * >= 8 pixels; thin convs also >= 75% of the 16-lane chunks in use (14, 28,
 * 56 wide: 87.5%; 7 is not). Measured (Zen 4, 2 threads, 3x3 pad 1): 128->32
 * on 56/28/14 maps 137/105-123/60-70 -> 132-155/163/141-144 GFLOP/s; with
 * OC = 64..256 the GEMM stays 5-40% faster. (-> algo 3 forces it.) */
/* Stride 2 direct (conv_row_s2): the image stems (1-4 input channels), whose im2col GEMM
 * spends a third of its time packing (K = 27..196: each packed float serves only OC rows).
 * Measured (Zen 5, AVX-512), direct vs im2col GEMM: 3->64 7x7/2 on 224x224 1.17 vs 1.68 ms at
 * 1 thread, 0.65 vs 1.60 at 2, batch 8 5.3 vs 7.9 at 2; 3->32 3x3/2 0.18 vs 0.24 (1 thread).
 * With many channels the GEMM wins: 128->128 3x3/2 on 56x56 1.78 vs 1.42, 256->512 1x1/2
 * 3.1 vs 1.0 (per tap the direct loop reads one more row of another plane). Rows whose
 * 16-lane chunks are >= 75% used only: 112, 56, 28, 14 wide, not 7. */
static int s2_direct_pays(const nd_conv_params *p)
{
    return p->c <= 4 && p->ow >= 8 && 4 * p->ow >= 3 * rup(p->ow, 16);
}

static int use_direct(const nd_conv_params *p, const nd_isa_ops *o)
{
    if (!o->conv_row || p->w_packed_mr != o->mr || p->groups != 1 || is_depthwise(p) || p->kw > ND_CONV_ROW_KW ||
        !(p->sw == 1 || (p->sw == 2 && o->conv_row_s2)))
        return 0;
    if (p->algo == 3)
        return 1;
    if (p->sw == 2)   /* im2col of a stride-2 conv costs a third of its time or more */
        return s2_direct_pays(p);
    const int small = (double)p->oc * (double)(p->oh * p->ow) * (double)(p->c * p->kh * p->kw) < 1e6 &&
                      (o->level >= ND_ISA_AVX512 || !is_pointwise(p));   /* AVX2: not measured on 1x1 */
    /* thin: AVX-512 only; AVX2's conv_row (8-wide, MR = 6) lost to the GEMM and to Winograd
     * on DenseNet's 128->32 growth convs (Zen 3, 1 thread: 56x56 8.6 vs 5.1 / 4.3 ms, 28x28
     * 1.77 vs 1.47 / 1.20) and only wins the small ones (6->16 on 14x14: 18 vs 26 us) */
    const int thin = o->level >= ND_ISA_AVX512 && p->oc <= 32 && !is_pointwise(p) &&
                     4 * p->ow >= 3 * rup(p->ow, 16);
    return p->ow >= 8 && (small || thin);
}

static nd_status conv_direct_rows(const nd_conv_params *p, const nd_isa_ops *o, float *out, const float *x,
                                  const float *w, const float *bias, const float *res, int T)
{
    const int64_t MR = o->mr, K = p->c * p->kh * p->kw, OHW = p->oh * p->ow, CHW = p->c * p->h * p->w;
    const int64_t np = (p->oc + MR - 1) / MR, jobs = p->n * np * p->oh;
    const double macs = (double)p->n * (double)p->oc * (double)OHW * (double)K;
    const int flags = (res ? ND_UK_ACC : 0) | nd_uk_act_flag(p->act);
    /* an activation pass (tanh, sigmoid, ...) over a small output runs once at the end, over the
     * whole of it while it is in cache: per output row it was one call per channel and row, each
     * too short to fill the vectors (LeNet's C1/C3: 328 calls on rows of 28 and 10) */
    const int64_t outn = p->n * p->oc * OHW;
    const int act_after = nd_act_after_store(p->act) && outn <= 65536;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && macs >= 5e5)
    for (int64_t jb = 0; jb < jobs; jb++) {
        const int64_t b = jb / (np * p->oh), pi = jb / p->oh % np, oy = jb % p->oh;
        const int64_t c0 = pi * MR, mr = p->oc - c0 < MR ? p->oc - c0 : MR;
        const nd_im2col g = {x + b * CHW, p->c, p->h, p->w, p->kh, p->kw, p->sh, p->sw, p->dh, p->dw,
                             p->pad_t, p->pad_l, p->oh, p->ow, 0};
        float *y = out + (b * p->oc + c0) * OHW + oy * p->ow;
        if (res && res != out)
            for (int64_t i = 0; i < mr; i++)
                memcpy(y + i * OHW, res + (b * p->oc + c0 + i) * OHW + oy * p->ow, (size_t)p->ow * sizeof(float));
        o->conv_row(y, OHW, &g, w + c0 * K, mr, oy, bias ? bias + c0 : NULL, flags);
        if (nd_act_after_store(p->act) && !act_after)
            for (int64_t i = 0; i < mr; i++) nd_act_inplace(y + i * OHW, p->ow, p->act);
    }
    if (act_after)
        nd_act_inplace(out, outn, p->act);
    return ND_OK;
}

/* Is input row iy read by some output row (stride sh > 1 skips rows: a 1x1/2 reads every other one)? */
static int row_read(const nd_conv_params *p, int64_t iy)
{
    for (int64_t ki = 0; ki < p->kh; ki++) {
        const int64_t t = iy + p->pad_t - ki * p->dh;
        if (t >= 0 && t % p->sh == 0 && t / p->sh < p->oh)
            return 1;
    }
    return 0;
}

/* One image's rows (C*H of them, W wide) with each row's even columns first, then its odd ones:
 * the layout conv_row reads for stride 2 (each tap's 16 lanes one contiguous load). */
static void split_columns(float *d, const nd_conv_params *p, const float *x, int T)
{
    const int64_t H = p->h, W = p->w, WE = (W + 1) / 2, rows = p->c * H;
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && rows * W > 65536)
    for (int64_t r = 0; r < rows; r++) {
        if (!row_read(p, r % H))
            continue;
        const float *src = x + r * W;
        float *e = d + r * W, *od = e + WE;
        for (int64_t t = 0; t < W / 2; t++) {
            e[t] = src[2 * t];
            od[t] = src[2 * t + 1];
        }
        if (W & 1)
            e[W / 2] = src[W - 1];
    }
}

static nd_status conv_direct(const nd_conv_params *p, const nd_isa_ops *o, float *out, const float *x,
                             const float *w, const float *bias, const float *res, float *ws, int T)
{
    if (p->sw == 2) {   /* image by image: its rows split into even / odd columns in ws, then direct */
        nd_conv_params q = *p;
        q.n = 1;
        const int64_t CHW = p->c * p->h * p->w, OUT = p->oc * p->oh * p->ow;
        for (int64_t b = 0; b < p->n; b++) {
            split_columns(ws, p, x + b * CHW, T);
            nd_status st = conv_direct_rows(&q, o, out + b * OUT, ws, w, bias, res ? res + b * OUT : NULL, T);
            if (st != ND_OK)
                return st;
        }
        return ND_OK;
    }
    return conv_direct_rows(p, o, out, x, w, bias, res, T);
}

/* One (image, group) GEMM. */
static nd_status conv_gemm(const nd_conv_params *p, float *out, const float *x, const float *w,
                           const float *bias, const float *res, float *ws, int threads, int64_t b, int64_t g)
{
    const int64_t cg = p->c / p->groups, og = p->oc / p->groups, HW = p->h * p->w;
    const int64_t k = cg * p->kh * p->kw, OHW = p->oh * p->ow;
    const float *xg = x + (b * p->c + g * cg) * HW;
    nd_im2col im = {xg, cg, p->h, p->w, p->kh, p->kw, p->sh, p->sw, p->dh, p->dw, p->pad_t, p->pad_l,
                    p->oh, p->ow};
    nd_gemm_desc d = {0};
    d.m = og;
    d.n = OHW;
    d.k = k;
    if (p->w_packed_mr > 0) {
        const int64_t mr = p->w_packed_mr;
        d.a.p = w + g * ((og + mr - 1) / mr * mr) * k;
        d.a.packed_mr = p->w_packed_mr;
    } else {
        d.a.p = w + g * og * k;
        d.a.rs = k;
        d.a.cs = 1;
    }
    if (is_pointwise(p)) {
        d.b.p = xg;
        d.b.rs = HW;
        d.b.cs = 1;
    } else {
        d.b_im2col = &im;
    }
    d.c = out + (b * p->oc + g * og) * OHW;
    d.ldc = OHW;
    if (res) {   /* y starts as r (already, when the planner put y in r's buffer); the GEMM
                  * adds A B + bias, then the activation */
        if (res != out)
            memcpy(d.c, res + (b * p->oc + g * og) * OHW, (size_t)(og * OHW) * sizeof(float));
        d.accumulate = 1;
    }
    d.bias = bias ? bias + g * og : NULL;
    d.bias_mode = bias ? ND_BIAS_ROW : ND_BIAS_NONE;
    d.act = p->act;
    return nd_sgemm(&d, ws, threads);
}

nd_status nd_conv_f32(const nd_conv_params *p, float *out, const float *const *in, const float *w,
                      const float *bias, float *ws)
{
    if (!p || !out || !in || !in[0] || !w || bad_params(p))
        return ND_EINVAL;
    const float *res = p->residual ? in[1] : NULL;
    if (p->residual && (!res || (res == out && is_depthwise(p))))
        return ND_EINVAL;   /* y over r is fine (each y[i] reads r[i] once) but for depthwise */
    if (is_depthwise(p)) {
        if (p->w_packed_mr > 0)
            return ND_EUNSUPPORTED;
        return conv_depthwise(p, out, in[0], w, bias, res);
    }
    const int64_t og = p->oc / p->groups, k = p->c / p->groups * p->kh * p->kw;
    const int64_t jobs = p->n * p->groups;
    const int T = nd_threads(p->threads);
    (void)T; /* unused without OpenMP */
    if (p->w_packed_mr > 0 && use_winograd_mr(p, p->w_packed_mr))
        return nd_wino_run(p, out, in[0], w, bias, res, ws, T);
    if (is_fc_like(p) && p->w_packed_mr <= 0)
        return conv_fc(p, out, in[0], w, bias, res, ws, T);
    int64_t mr, nr;
    conv_tile(p, &mr, &nr);
    if (use_transposed(p, mr, nr))
        return conv_transposed(p, out, in[0], w, bias, res, ws, T);
    if ((p->algo == 0 || p->algo == 3 || p->algo == 5) && use_direct(p, nd_ops()))
        return conv_direct(p, nd_ops(), out, in[0], w, bias, res, ws, T);
    if (side_by_side(p, T)) {
        const int64_t per = nd_sgemm_ws(og, p->oh * p->ow, k, 1);
        nd_status st = ND_OK;
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
        for (int64_t j = 0; j < jobs; j++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            nd_status s = conv_gemm(p, out, in[0], w, bias, res, ws + tid * per, 1, j / p->groups,
                                    j % p->groups);
            if (s != ND_OK)
                st = s;
        }
        return st;
    }
    for (int64_t j = 0; j < jobs; j++) {
        nd_status s = conv_gemm(p, out, in[0], w, bias, res, ws, T, j / p->groups, j % p->groups);
        if (s != ND_OK)
            return s;
    }
    return ND_OK;
}

/* The algorithm nd_conv_f32 takes for these params (the profiler's "algorithm" column),
 * read from the same predicates, in the same order, as the kernel. mr > 0 with
 * p->w_packed_mr == 0 answers for the weights prepacked with that MR, as the executor
 * does whenever nd_conv_packed_w_floats says they can be; mr <= 0 takes p as it is.
 * 1 GEMM (im2col panels), 2 transposed GEMM, 3 direct, 4 Winograd (reserved),
 * 5 pointwise GEMM (1x1: B is x, no im2col), 6 depthwise, 7 fc-like (dot products);
 * -1 params the kernel rejects. Keep in step with nd_conv_f32. */
int32_t nd_conv_algo(const nd_conv_params *p, int32_t mr)
{
    if (!p || bad_params(p))
        return -1;
    nd_conv_params q = *p;
    if (q.w_packed_mr <= 0 && mr > 0 && nd_conv_packed_w_floats(&q, mr) > 0)
        q.w_packed_mr = mr;
    if (is_depthwise(&q))
        return q.w_packed_mr > 0 ? -1 : 6;
    if (q.w_packed_mr > 0 && use_winograd_mr(&q, q.w_packed_mr))
        return 4;
    if (is_fc_like(&q) && q.w_packed_mr <= 0)
        return 7;
    int64_t tmr, tnr;
    conv_tile(&q, &tmr, &tnr);
    if (use_transposed(&q, tmr, tnr))
        return 2;
    if ((q.algo == 0 || q.algo == 3 || q.algo == 5) && use_direct(&q, nd_ops()))
        return 3;
    if (is_pointwise(&q))
        return 5;
    return 1;
}
