/* conv_dw.c — one output plane of a depthwise convolution, per ISA.
 *
 * y is (OH,OW), x is (H,W), w is (KH,KW): y = bias + sum_ij w[i,j] x[oy*sh-pt+i*dh, ox*sw-pl+j*dw].
 * Loop order: for each output row and tap, one axpy over the output row on
 * the columns whose input is inside the image (computed, not tested per
 * pixel), so with sw == 1 the inner loop is a contiguous multiply-add the
 * compiler vectorizes. The body is written once and inlined into three
 * functions compiled for different targets; dispatch.c picks one. The caller
 * (conv.c) applies the activation and does the threading over planes.
 */
#include "dispatch.h"

static inline __attribute__((always_inline)) void
dw_body(float *restrict y, const float *restrict x, const float *restrict w, float bias, int64_t H,
        int64_t W, int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t dh,
        int64_t dw, int64_t pt, int64_t pl)
{
    for (int64_t oy = 0; oy < OH; oy++) {
        float *restrict yr = y + oy * OW;
        for (int64_t ox = 0; ox < OW; ox++) yr[ox] = bias;
        for (int64_t i = 0; i < KH; i++) {
            const int64_t iy = oy * sh - pt + i * dh;
            if (iy < 0 || iy >= H)
                continue;
            const float *restrict xr = x + iy * W;
            for (int64_t j = 0; j < KW; j++) {
                const float wv = w[i * KW + j];
                const int64_t off = j * dw - pl;           /* ix = ox*sw + off */
                int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
                if (hi > OW) hi = OW;
                if (sw == 1) {
                    const float *restrict xs = xr + off;
                    for (int64_t ox = lo; ox < hi; ox++) yr[ox] += wv * xs[ox];
                } else {
                    for (int64_t ox = lo; ox < hi; ox++) yr[ox] += wv * xr[ox * sw + off];
                }
            }
        }
    }
}

#define DW_ARGS                                                                                    \
    float *y, const float *x, const float *w, float bias, int64_t h, int64_t w_, int64_t oh,       \
        int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,        \
        int64_t pt, int64_t pl
#define DW_CALL dw_body(y, x, w, bias, h, w_, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl)

#define DEFINE_DW(suffix, attr) attr void nd_dw_plane_##suffix(DW_ARGS) { DW_CALL; }
ND_EACH_ISA(DEFINE_DW)
