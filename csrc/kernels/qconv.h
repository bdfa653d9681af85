/* qconv.h — int8 convolution and fully connected layers (post-training quantization).
 *
 * x is float32 (N,C,H,W) — an FC's (N,IN) is (N,IN,1,1) —, y is float32 (N,OC,OH,OW), groups 1.
 * The input is quantized to uint8 with the calibrated (1/scale, zero point) as it is packed,
 * the products are u8 x s8 summed in int32 (exact), and the epilogue makes float32 again:
 *     y = act((float)(acc - comp[m]) * scale[m] + bias[m] [+ r])
 * with scale[m] = s_x * s_w[m] and comp[m] = zero * sum_k Wq[m,k] (netdsl/quant/numerics.py is
 * the oracle, bit for bit). residual: in[1] is r (N,OC,OH,OW), must not alias y.
 *
 * w is one blob built at load by netdsl/quant/pack.py (the weights are packed once):
 *     A panels (layout 1: int8, layout 2: int16), ocp x kp values, then at byte a_bytes:
 *     float scale[ocp], float bias[ocp], int32 comp[ocp]   (ocp = OC rounded up to MR)
 * with k = (tap i*KW + j, channel c), channels padded to cp (a multiple of 4) and
 * kp = KH*KW*cp; a panel holds MR rows k-major in groups of 4 (for each 4 k's, MR x 4 values).
 * bias (the pointer) is unused: NULL.
 * in_u8 / out_u8 hand uint8 tensors from one int8 layer to the next (netdsl/quant/model.py
 * decides where): the values are those the float32 hand-off gives, bit for bit, since the
 * consumer would quantize the producer's float32 output with the same q8.
 */
#ifndef ND_QCONV_H
#define ND_QCONV_H
#include "nd_common.h"

typedef struct {
    int64_t n, c, h, w;          /* input, batch included */
    int64_t oc, oh, ow;
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int64_t cp;                  /* channels padded to a multiple of 4 */
    int64_t a_bytes;             /* offset of scale/bias/comp in the blob (64-aligned) */
    float in_inv_scale;          /* 1 / s_x */
    int32_t in_zero;             /* 0 .. 255 */
    int32_t act;                 /* nd_act: none, relu, relu6 (any nd_act is accepted) */
    int32_t residual;            /* 1: add in[1] before the activation */
    int32_t threads;             /* the workspace was sized for this many threads (>= 1) */
    int32_t layout;              /* 1: A int8 (VNNI, portable), 2: A int16 (AVX2 vpmaddwd) */
    int32_t in_u8;               /* 1: in[0] already holds the input as uint8 NCHW, quantized with
                                  * (in_inv_scale, in_zero) by the int8 layer before (out_u8) */
    int32_t out_u8;              /* 1: y is written as uint8 NCHW, quantized after the activation with
                                  * (out_inv_scale, out_zero): the next int8 layers' input */
    float out_inv_scale;
    int32_t out_zero;
    int32_t res_u8;              /* 1: the residual in[1] is uint8, real value (r - res_zero) * res_scale */
    float res_scale;
    int32_t res_zero;
} nd_qconv_params;

nd_status nd_qconv_f32(const nd_qconv_params *p, float *out, const float *const *in,
                       const float *w, const float *bias, float *ws);
int64_t nd_qconv_ws_floats(const nd_qconv_params *p);
/* MR of the A panels (6), and the layout the ISA in use runs fastest (1 or 2) */
int32_t nd_qconv_mr(void);
int32_t nd_qconv_layout(void);
/* which micro-kernel nd_qconv_f32 runs for this layout on the ISA in use:
 * 0 portable, 1 AVX2 (vpmaddwd on widened int16), 2 AVX-512 VNNI (vpdpbusd) */
int32_t nd_qconv_path(int32_t layout);
#endif
