/* winograd.h — F(4x4, 3x3) Winograd convolution (kernels/conv_winograd.c).
 *
 * INTERNAL (not fed to cffi): kernels/conv.c routes a 3x3, stride-1,
 * undilated, ungrouped convolution here when its params ask for it
 * (algo 4) or the auto rule (nd_wino_auto) picks it. The weights are
 * transformed and packed once, at plan time, by nd_wino_pack_w: 36 GEMM
 * A-operands U[xi] (OC x C) = (G g G^T)[xi], each in the micro-kernel's
 * MR-row panels. Per chunk of 4x4 output tiles the run is three phases:
 * input transform V = B^T d B straight into packed B panels, 36 GEMMs
 * M[xi] = U[xi] . V[xi], output transform Y = A^T M A with bias, the
 * residual and the activation in its store.
 */
#ifndef ND_WINOGRAD_H
#define ND_WINOGRAD_H
#include "kernels/conv.h"

/* the geometry Winograd F(4x4,3x3) computes: 3x3, stride 1, dilation 1, groups 1 */
int nd_wino_geom(const nd_conv_params *p);
/* on algo 0: where it is measured to win (see conv_winograd.c) */
int nd_wino_auto(const nd_conv_params *p);
int64_t nd_wino_ws_floats(const nd_conv_params *p, int threads);
int64_t nd_wino_packed_w_floats(const nd_conv_params *p, int64_t mr);
nd_status nd_wino_pack_w(const nd_conv_params *p, float *dst, const float *w, int64_t mr);
nd_status nd_wino_run(const nd_conv_params *p, float *out, const float *x, const float *w, const float *bias,
                      const float *res, float *ws, int threads);
#endif
