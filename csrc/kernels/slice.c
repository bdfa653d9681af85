/* slice.c — channels [start, stop) of x (N, C, INNER): one contiguous block per sample.
 *
 * A sample's kept channels are (stop-start)*INNER consecutive floats, so the copy is one
 * memcpy per sample; copies keep NaN and inf bit for bit. Plain C for every ISA (memcpy is
 * already the fastest copy libc has). Not in-place: out is a separate buffer.
 */
#include "kernels/slice.h"
#include "dispatch.h"

#include <string.h>

nd_status nd_slice_f32(const nd_slice_params *p, float *out, const float *const *in,
                       const float *w, const float *bias, float *ws)
{
    (void)w; (void)bias; (void)ws;
    if (p->n <= 0 || p->c <= 0 || p->inner <= 0 || p->start < 0 || p->stop <= p->start ||
        p->stop > p->c || !ND_PROD_OK(p->n, p->c, p->inner))
        return ND_EINVAL;
    const int64_t block = (p->stop - p->start) * p->inner;
    for (int64_t b = 0; b < p->n; b++)
        memcpy(out + b * block, in[0] + (b * p->c + p->start) * p->inner, (size_t)block * sizeof(float));
    return ND_OK;
}
