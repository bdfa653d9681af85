/* fc.c — fully connected layer on the GEMM driver.
 *
 * y (N,OUT) = x (N,IN) . w^T with w (OUT,IN): GEMM with A = x and B = w read
 * transposed through strides. Up to batch 8 the driver takes its dot-product
 * path (each weight row read once from memory and dotted with every sample:
 * FC at small batch is bound by reading the weights); larger batches pack
 * and run the micro-kernel. Bias per column, activation fused.
 */
#include "kernels/fc.h"

#include "dispatch.h"

static int bad_params(const nd_fc_params *p)
{
    return p->n < 0 || p->in_features < 0 || p->out_features <= 0 || !nd_act_ok(p->act);
}

int64_t nd_fc_ws_floats(const nd_fc_params *p)
{
    if (bad_params(p))
        return -1;
    return nd_sgemm_ws(p->n, p->out_features, p->in_features, p->threads < 1 ? 1 : p->threads);
}

nd_status nd_fc_f32(const nd_fc_params *p, float *out, const float *const *in, const float *w,
                    const float *bias, float *ws)
{
    if (!p || !out || !in || !in[0] || !w || bad_params(p))
        return ND_EINVAL;
    nd_gemm_desc d = {0};
    d.m = p->n;
    d.n = p->out_features;
    d.k = p->in_features;
    d.a.p = in[0];
    d.a.rs = p->in_features;
    d.a.cs = 1;
    d.b.p = w;
    d.b.rs = 1;
    d.b.cs = p->in_features;
    d.c = out;
    d.ldc = p->out_features;
    d.bias = bias;
    d.bias_mode = bias ? ND_BIAS_COL : ND_BIAS_NONE;
    d.act = p->act;
    return nd_sgemm(&d, ws, p->threads);
}
