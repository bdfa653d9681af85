/* nd_pad.h — what Pad and Crop share with their backward kernels (kernels/pad.c,
 * kernels/train_resize.c): the pad modes, the source index of a padded index, and the
 * parameter checks. Not in the cffi cdef (only nd_common.h and the headers under kernels/
 * and runtime/ are); it needs kernels/pad.h and dispatch.h included first. */
#ifndef ND_PAD_GEOMETRY_H
#define ND_PAD_GEOMETRY_H

enum { PAD_CONSTANT = 0, PAD_REFLECT = 1, PAD_REPLICATE = 2 };

/* The source index for padded index i (may be outside [0, n)); -1 means "fill". */
static inline int64_t src_index(int64_t i, int64_t n, int mode)
{
    if (i >= 0 && i < n) return i;
    if (mode == PAD_CONSTANT) return -1;
    if (mode == PAD_REPLICATE) return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i;   /* reflect; pad < n checked by pad_check */
}

/* ND_OK, or why a Pad of these params cannot run (reflect needs pad < size) */
static inline nd_status pad_check(const nd_pad_params *p)
{
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 ||
        p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0 ||
        !nd_axis_ok(p->h, p->h, 1, 1, 1, p->pad_t, p->pad_b) || !nd_axis_ok(p->w, p->w, 1, 1, 1, p->pad_l, p->pad_r) ||
        !ND_PROD_OK(p->n, p->c, p->h + p->pad_t + p->pad_b, p->w + p->pad_l + p->pad_r) ||
        !ND_PROD_OK(p->n, p->c, p->h, p->w))
        return ND_EINVAL;
    if (p->mode < PAD_CONSTANT || p->mode > PAD_REPLICATE) return ND_EUNSUPPORTED;
    if (p->mode == PAD_REFLECT && (p->pad_t >= p->h || p->pad_b >= p->h || p->pad_l >= p->w || p->pad_r >= p->w))
        return ND_EINVAL;
    return ND_OK;
}

/* 1 when a Crop window of these params does not lie inside its input */
static inline int crop_bad(const nd_crop_params *p)
{
    return p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oh <= 0 || p->ow <= 0 ||
           p->off_h < 0 || p->off_w < 0 || p->off_h > p->h || p->off_w > p->w ||
           p->oh > p->h - p->off_h || p->ow > p->w - p->off_w || !ND_PROD_OK(p->n, p->c, p->h, p->w);
}
#endif
