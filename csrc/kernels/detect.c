/* detect.c — YOLO [yolo] / [region] box decoding, as Darknet's yolo_layer.c / region_layer.c.
 *
 * x is (N, A*(5+K), H, W): anchor a's entries e sit in channel a*(5+K) + e, each an H*W plane.
 * out is (N, A*H*W, 5+K): one row per (a, row, col). Per box:
 *   yolo    x = (col + s*sig(tx) - (s-1)/2)/W, y likewise, w = exp(tw)*aw/image_w, h likewise,
 *           objectness and classes sig(t)
 *   region  x = (col + sig(tx))/W, w = exp(tw)*aw/W, objectness sig(to), classes softmax(t)
 * The kernel is tiny next to the conv that feeds it (~0.1% of a YOLO's time), so it is one
 * plain C body for every ISA: the reads stride by H*W, the writes are contiguous rows.
 * NaN stays NaN: sig(NaN) and exp(NaN) are NaN; the softmax max skips NaN (a > m is false)
 * and the NaN then reaches every class through the sum, as in numpy.
 */
#include "kernels/detect.h"

#include "dispatch.h"

#include <math.h>

static inline float sigm(float t) { return 1.0f / (1.0f + expf(-t)); }

nd_status nd_detect_f32(const nd_detect_params *p, float *out, const float *const *in,
                        const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->anchors <= 0 || p->anchors > ND_DETECT_MAX_ANCHORS || p->classes <= 0 ||
        p->h <= 0 || p->w <= 0 || !(p->image_h > 0) || !(p->image_w > 0) ||
        !ND_PROD_OK(p->n, p->anchors * (5 + p->classes), p->h * p->w))
        return ND_EINVAL;
    const int64_t A = p->anchors, K = p->classes, E = 5 + K, H = p->h, W = p->w, HW = H * W;
    const float s = p->scale_xy, off = 0.5f * (s - 1.0f);
    const int64_t tasks = p->n * A;
#pragma omp parallel for schedule(static) if (tasks * HW * E > 65536)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / A, a = t % A;
        const float *x = in[0] + (b * A + a) * E * HW;
        float *y = out + (b * A + a) * HW * E;
        const float aw = p->anchor[2 * a], ah = p->anchor[2 * a + 1];
        for (int64_t r = 0; r < H; r++)
            for (int64_t c = 0; c < W; c++) {
                const int64_t i = r * W + c;
                float *row = y + i * E;
                if (p->region) {
                    row[0] = ((float)c + sigm(x[i])) / (float)W;
                    row[1] = ((float)r + sigm(x[HW + i])) / (float)H;
                    row[2] = expf(x[2 * HW + i]) * aw / (float)W;
                    row[3] = expf(x[3 * HW + i]) * ah / (float)H;
                } else {
                    row[0] = ((float)c + s * sigm(x[i]) - off) / (float)W;
                    row[1] = ((float)r + s * sigm(x[HW + i]) - off) / (float)H;
                    row[2] = expf(x[2 * HW + i]) * aw / p->image_w;
                    row[3] = expf(x[3 * HW + i]) * ah / p->image_h;
                }
                row[4] = sigm(x[4 * HW + i]);
                const float *cl = x + 5 * HW + i;
                if (!p->region) {
                    for (int64_t k = 0; k < K; k++) row[5 + k] = sigm(cl[k * HW]);
                } else if (p->softmax) {
                    float m = -INFINITY;
                    for (int64_t k = 0; k < K; k++) m = cl[k * HW] > m ? cl[k * HW] : m;
                    double sum = 0.0;
                    for (int64_t k = 0; k < K; k++) {
                        float e = expf(cl[k * HW] - m);
                        row[5 + k] = e;
                        sum += e;
                    }
                    const float inv = (float)(1.0 / sum);
                    for (int64_t k = 0; k < K; k++) row[5 + k] *= inv;
                } else {
                    for (int64_t k = 0; k < K; k++) row[5 + k] = cl[k * HW];
                }
            }
    }
    return ND_OK;
}
