/* conv_transpose.c — transposed convolution as GEMM + col2im, per (image, group).
 *
 * x is (N,C,H,W), w is (C,OC/g,KH,KW), y is (N,OC,OH,OW). For image b, group g
 * (cg = C/g inputs, og = OC/g outputs):
 *     col (og*KH*KW, H*W) = W_g^T . X_g       W_g = w[g*cg:(g+1)*cg] seen as (cg, og*KH*KW)
 * then col2im scatters row (o,i,j) of col, pixel (iy,ix), into
 * y[o, iy*sh - pt + i*dh, ix*sw - pl + j*dw] when that is inside (OH,OW).
 * The GEMM reads W_g transposed through strides (no copy); col lives in the
 * workspace. col2im is parallel over output channels: every contribution to
 * channel o comes from col rows (o,*,*), so threads never write the same cell.
 * The output is initialized with the bias; the activation runs last.
 */
#include "kernels/conv_transpose.h"

#include "dispatch.h"

static int bad_params(const nd_convtranspose_params *p)
{
    return p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oc <= 0 || p->oh <= 0 ||
           p->ow <= 0 || p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 ||
           p->dw <= 0 || p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0 ||
           p->groups <= 0 || p->c % p->groups || p->oc % p->groups || !nd_act_ok(p->act) ||
           /* the output is the window side here: indices iy*sh - pt + i*dh for iy < h */
           !nd_axis_ok(p->oh, p->h, p->kh, p->sh, p->dh, p->pad_t, p->pad_b) ||
           !nd_axis_ok(p->ow, p->w, p->kw, p->sw, p->dw, p->pad_l, p->pad_r) ||
           !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->oc, p->oh, p->ow) ||
           !ND_PROD_OK(p->c, p->oc, p->kh, p->kw) || !ND_PROD_OK(p->oc, p->kh, p->kw, p->h, p->w);
}

int64_t nd_convtranspose_ws_floats(const nd_convtranspose_params *p)
{
    if (bad_params(p))
        return -1;
    const int64_t og = p->oc / p->groups, m = og * p->kh * p->kw, n = p->h * p->w;
    return m * n + 16 + nd_sgemm_ws(m, n, p->c / p->groups, p->threads < 1 ? 1 : p->threads);
}

nd_status nd_convtranspose_f32(const nd_convtranspose_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    if (!p || !out || !in || !in[0] || !w || !ws || bad_params(p))
        return ND_EINVAL;
    const int64_t cg = p->c / p->groups, og = p->oc / p->groups, KK = p->kh * p->kw;
    const int64_t H = p->h, W = p->w, HW = H * W, OH = p->oh, OW = p->ow, OHW = OH * OW;
    const int64_t m = og * KK;
    float *col = ws;
    float *gws = ws + ((m * HW + 16) & ~(int64_t)15);
    const int T = nd_threads(p->threads);
    (void)T; /* unused without OpenMP */
    for (int64_t b = 0; b < p->n; b++) {
        for (int64_t g = 0; g < p->groups; g++) {
            nd_gemm_desc d = {0};
            d.m = m;
            d.n = HW;
            d.k = cg;
            d.a.p = w + g * cg * m;
            d.a.rs = 1;
            d.a.cs = m;
            d.b.p = in[0] + (b * p->c + g * cg) * HW;
            d.b.rs = HW;
            d.b.cs = 1;
            d.c = col;
            d.ldc = HW;
            nd_status s = nd_sgemm(&d, gws, p->threads);
            if (s != ND_OK)
                return s;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && og * OHW * KK > 32768)
            for (int64_t o = 0; o < og; o++) {
                const int64_t oc = g * og + o;
                float *y = out + (b * p->oc + oc) * OHW;
                const float bv = bias ? bias[oc] : 0.0f;
                for (int64_t t = 0; t < OHW; t++) y[t] = bv;
                for (int64_t i = 0; i < p->kh; i++)
                    for (int64_t j = 0; j < p->kw; j++) {
                        const float *cr = col + ((o * p->kh + i) * p->kw + j) * HW;
                        const int64_t offx = j * p->dw - p->pad_l;
                        /* ix range with 0 <= ix*sw + offx < OW */
                        int64_t lo = offx >= 0 ? 0 : (-offx + p->sw - 1) / p->sw;
                        int64_t hi = OW - 1 - offx < 0 ? 0 : (OW - 1 - offx) / p->sw + 1;
                        if (hi > W) hi = W;
                        for (int64_t iy = 0; iy < H; iy++) {
                            const int64_t oy = iy * p->sh - p->pad_t + i * p->dh;
                            if (oy < 0 || oy >= OH)
                                continue;
                            float *yr = y + oy * OW;
                            const float *xr = cr + iy * W;
                            if (p->sw == 1)
                                for (int64_t ix = lo; ix < hi; ix++) yr[ix + offx] += xr[ix];
                            else
                                for (int64_t ix = lo; ix < hi; ix++) yr[ix * p->sw + offx] += xr[ix];
                        }
                    }
                nd_act_inplace(y, OHW, p->act);
            }
        }
    }
    return ND_OK;
}
