/* train_resize.h — backward kernels of Upsample (nearest, bilinear), Pad (constant, reflect,
 * replicate) and Crop: the adjoints of the forward index maps. Each takes its forward op's
 * params struct; in[0] = dy, the forward output's shape; out = dx, the forward input's shape.
 */
#ifndef ND_TRAIN_RESIZE_H
#define ND_TRAIN_RESIZE_H
#include "nd_common.h"
#include "kernels/pad.h"
#include "kernels/resize.h"

typedef nd_upsample_params nd_upsample_bwd_params;   /* dy (N,C,OH,OW) -> dx (N,C,H,W) */
typedef nd_pad_params nd_pad_bwd_params;             /* dy (N,C,H+t+b,W+l+r) -> dx (N,C,H,W) */
typedef nd_crop_params nd_crop_bwd_params;           /* dy (N,C,OH,OW) -> dx (N,C,H,W) */

nd_status nd_upsample_bwd_data_f32(const nd_upsample_bwd_params *p, float *out, const float *const *in,
                                   const float *w, const float *bias, float *ws);
nd_status nd_pad_bwd_data_f32(const nd_pad_bwd_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws);
nd_status nd_crop_bwd_data_f32(const nd_crop_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws);
#endif
