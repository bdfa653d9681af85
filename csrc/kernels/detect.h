/* detect.h — Darknet detection heads decoded into box rows (netdsl/ops/detect.py).
 * x is (N, A*(5+K), H, W); out is (N, A*H*W, 5+K), rows in (anchor, row, col) order,
 * each (x, y, w, h, objectness, K class values). Not in-place (the layouts differ).
 */
#ifndef ND_DETECT_H
#define ND_DETECT_H
#include "nd_common.h"

#define ND_DETECT_MAX_ANCHORS 32   /* the anchor array below holds 2 x this */

typedef struct {
    int64_t n, anchors, classes, h, w;
    int32_t region;          /* 0: [yolo] (anchors in pixels of the image), 1: [region] (in cells) */
    int32_t softmax;         /* region only: softmax over the classes (else the raw values) */
    float scale_xy;          /* yolo: Darknet's scale_x_y */
    float image_h, image_w;  /* yolo: the network input size the anchors are divided by */
    float anchor[64];   /* (w, h) pairs */
} nd_detect_params;

nd_status nd_detect_f32(const nd_detect_params *p, float *out, const float *const *in,
                        const float *w, const float *bias, float *ws);
#endif
