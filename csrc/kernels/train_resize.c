/* train_resize.c — backward of Upsample, Pad and Crop, float32 NCHW: the adjoints.
 *
 * dy is the forward output (N,C,OH,OW), dx the forward input (N,C,H,W). Each forward output
 * pixel is a weighted sum of input pixels, so dx[i] = sum over the outputs o that read i of
 * weight(o, i) dy[o]: per plane, dx is zeroed and every output pixel scatters into it.
 *   Upsample nearest: o reads one pixel, src = floor(dst * in / out) per axis (integer
 *     arithmetic, as resize.c); bilinear: four pixels with weights (1-ly)(1-lx), (1-ly)lx,
 *     ly(1-lx), ly lx, the coordinates computed exactly as resize.c (in double). A zero
 *     weight still multiplies dy (0 * NaN is NaN), as PyTorch's upsample_bilinear2d_backward.
 *   Pad: the interior of dy is copied into dx, then (reflect, replicate) every border pixel
 *     is added to the pixel it was copied from; constant borders have no source.
 *   Crop: dx is dy inside the window and 0 outside.
 * Sums are float32, in output order (Upsample: at most ceil(OH/H) * ceil(OW/W) terms per
 * pixel, 4x that for bilinear; Pad: at most 4). Planes are independent: threads over them.
 * Not here: the other interpolation modes (resize.c has none).
 */
#include "kernels/train_resize.h"

#include <string.h>

#include "dispatch.h"

#define NCOL 2048

/* resize.c's coordinate rule, unchanged (both files must agree; the oracle tests check) */
static inline void linear_src(int64_t dst, double scale, int64_t in, int ac, int64_t *i0, int64_t *i1, float *l1)
{
    double s = ac ? (double)dst * scale : ((double)dst + 0.5) * scale - 0.5;
    if (s < 0.0) s = 0.0;
    int64_t a = (int64_t)s;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a < in - 1 ? a + 1 : a;
    *l1 = (float)(s - (double)a);
}

static inline double axis_scale(int64_t in, int64_t out, int ac)
{
    if (ac) return out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0;
    return (double)in / (double)out;
}

static void upsample_plane(float *xp, const float *gp, const nd_upsample_bwd_params *p, const int32_t *c0,
                           const int32_t *c1, const float *l1, double rh, double rw)
{
    const int64_t H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    const int ac = p->align_corners;
    memset(xp, 0, (size_t)(H * W) * sizeof(float));
    for (int64_t oy = 0; oy < OH; oy++) {
        const float *g = gp + oy * OW;
        if (p->mode == 0) {
            float *r = xp + (oy * H / OH) * W;
            if (c0)
                for (int64_t ox = 0; ox < OW; ox++) r[c0[ox]] += g[ox];
            else
                for (int64_t ox = 0; ox < OW; ox++) r[ox * W / OW] += g[ox];
            continue;
        }
        int64_t y0, y1;
        float ly;
        linear_src(oy, rh, H, ac, &y0, &y1, &ly);
        const float wt = 1.0f - ly;
        float *r0 = xp + y0 * W, *r1 = xp + y1 * W;
        for (int64_t ox = 0; ox < OW; ox++) {
            int64_t x0, x1;
            float lx;
            if (c0) {
                x0 = c0[ox];
                x1 = c1[ox];
                lx = l1[ox];
            } else {
                linear_src(ox, rw, W, ac, &x0, &x1, &lx);
            }
            const float lx0 = 1.0f - lx;
            const float t = g[ox] * wt, b = g[ox] * ly;
            r0[x0] += t * lx0;
            r0[x1] += t * lx;
            r1[x0] += b * lx0;
            r1[x1] += b * lx;
        }
    }
}

nd_status nd_upsample_bwd_data_f32(const nd_upsample_bwd_params *p, float *out, const float *const *in,
                                   const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oh <= 0 || p->ow <= 0 ||
        !ND_PROD_OK(p->n, p->c, p->h, p->w) || !ND_PROD_OK(p->n, p->c, p->oh, p->ow) ||
        !ND_PROD_OK(p->oh, p->h) || !ND_PROD_OK(p->ow, p->w))
        return ND_EINVAL;
    if (p->mode != 0 && p->mode != 1) return ND_EUNSUPPORTED;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    const int ac = p->align_corners;
    const double rh = axis_scale(H, OH, ac), rw = axis_scale(W, OW, ac);
    const int tabled = OW <= NCOL && W <= INT32_MAX;
    int32_t c0[NCOL], c1[NCOL];   /* the column taps, shared read-only by the threads */
    float l1[NCOL];
    if (tabled)
        for (int64_t ox = 0; ox < OW; ox++) {
            if (p->mode == 0) {
                c0[ox] = (int32_t)(ox * W / OW);
            } else {
                int64_t a, b;
                linear_src(ox, rw, W, ac, &a, &b, &l1[ox]);
                c0[ox] = (int32_t)a;
                c1[ox] = (int32_t)b;
            }
        }
    const int64_t chunk = OH * OW >= 16384 ? 1 : 16384 / (OH * OW);
    const float *g = in[0];
#pragma omp parallel for schedule(dynamic, chunk) if (planes * OH * OW > 131072)
    for (int64_t pc = 0; pc < planes; pc++)
        upsample_plane(out + pc * H * W, g + pc * OH * OW, p, tabled ? c0 : NULL, tabled ? c1 : NULL,
                       tabled ? l1 : NULL, rh, rw);
    return ND_OK;
}

enum { PAD_CONSTANT = 0, PAD_REFLECT = 1, PAD_REPLICATE = 2 };

/* pad.c's source index of padded index i (-1: filled with the constant) */
static inline int64_t src_index(int64_t i, int64_t n, int mode)
{
    if (i >= 0 && i < n) return i;
    if (mode == PAD_CONSTANT) return -1;
    if (mode == PAD_REPLICATE) return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i;
}

nd_status nd_pad_bwd_data_f32(const nd_pad_bwd_params *p, float *out, const float *const *in,
                              const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 ||
        p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0 ||
        !nd_axis_ok(p->h, p->h, 1, 1, 1, p->pad_t, p->pad_b) || !nd_axis_ok(p->w, p->w, 1, 1, 1, p->pad_l, p->pad_r) ||
        !ND_PROD_OK(p->n, p->c, p->h + p->pad_t + p->pad_b, p->w + p->pad_l + p->pad_r) ||
        !ND_PROD_OK(p->n, p->c, p->h, p->w))
        return ND_EINVAL;
    if (p->mode < PAD_CONSTANT || p->mode > PAD_REPLICATE) return ND_EUNSUPPORTED;
    if (p->mode == PAD_REFLECT && (p->pad_t >= p->h || p->pad_b >= p->h || p->pad_l >= p->w || p->pad_r >= p->w))
        return ND_EINVAL;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, T = p->pad_t, L = p->pad_l, R = p->pad_r;
    const int64_t OH = H + T + p->pad_b, OW = W + L + R;
    const int mode = p->mode;
    const int64_t chunk = OH * OW >= 16384 ? 1 : 16384 / (OH * OW);
    const float *g = in[0];
#pragma omp parallel for schedule(dynamic, chunk) if (planes * OH * OW > 131072)
    for (int64_t pc = 0; pc < planes; pc++) {
        const float *gp = g + pc * OH * OW;
        float *xp = out + pc * H * W;
        for (int64_t iy = 0; iy < H; iy++)
            memcpy(xp + iy * W, gp + (iy + T) * OW + L, (size_t)W * sizeof(float));
        if (mode == PAD_CONSTANT) continue;
        for (int64_t oy = 0; oy < OH; oy++) {
            const float *gr = gp + oy * OW;
            float *xr = xp + src_index(oy - T, H, mode) * W;
            if (oy < T || oy >= T + H) {      /* a border row: all of it folds back */
                for (int64_t ox = 0; ox < OW; ox++) xr[src_index(ox - L, W, mode)] += gr[ox];
            } else {                          /* an interior row: its left and right borders */
                for (int64_t j = 0; j < L; j++) xr[src_index(j - L, W, mode)] += gr[j];
                for (int64_t j = 0; j < R; j++) xr[src_index(W + j, W, mode)] += gr[L + W + j];
            }
        }
    }
    return ND_OK;
}

nd_status nd_crop_bwd_data_f32(const nd_crop_bwd_params *p, float *out, const float *const *in,
                               const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oh <= 0 || p->ow <= 0 ||
        p->off_h < 0 || p->off_w < 0 || p->off_h > p->h || p->off_w > p->w ||
        p->oh > p->h - p->off_h || p->ow > p->w - p->off_w || !ND_PROD_OK(p->n, p->c, p->h, p->w))
        return ND_EINVAL;
    const int64_t planes = p->n * p->c, H = p->h, W = p->w, OH = p->oh, OW = p->ow;
    const int64_t chunk = H * W >= 16384 ? 1 : 16384 / (H * W);
    const float *g = in[0];
#pragma omp parallel for schedule(dynamic, chunk) if (planes * H * W > 262144)
    for (int64_t pc = 0; pc < planes; pc++) {
        float *xp = out + pc * H * W;
        memset(xp, 0, (size_t)(H * W) * sizeof(float));
        float *win = xp + p->off_h * W + p->off_w;
        for (int64_t oy = 0; oy < OH; oy++)
            memcpy(win + oy * W, g + pc * OH * OW + oy * OW, (size_t)OW * sizeof(float));
    }
    return ND_OK;
}
