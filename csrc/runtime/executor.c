/* executor.c — the plan loop: one C call per inference, microseconds of overhead.
 *
 * Input pointers are rebuilt per record on the stack (arena + offset), so the
 * records stay valid for any arena the caller passes. At most 256 inputs
 * per record (Python checks); more is ND_EINVAL, never an overflow.
 */
#include "runtime/executor.h"

#include <stddef.h>

#ifdef _OPENMP
#include <omp.h>
#endif

enum { ND_EXEC_MAX_IN = 256 };

nd_status nd_run_plan(const nd_record *recs, int64_t n, float *arena, float *ws, int32_t threads,
                      int64_t *failed_index)
{
    if (failed_index)
        *failed_index = -1;
    if (n < 0 || (n > 0 && (!recs || !arena)))
        return ND_EINVAL;
#ifdef _OPENMP
    if (threads > 0)
        omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    const float *ins[ND_EXEC_MAX_IN];
    for (int64_t r = 0; r < n; r++) {
        const nd_record *rec = &recs[r];
        nd_status st = ND_EINVAL;
        if (rec->fn && rec->n_in >= 0 && rec->n_in <= ND_EXEC_MAX_IN && (rec->n_in == 0 || rec->in_offs)) {
            for (int32_t i = 0; i < rec->n_in; i++) ins[i] = arena + rec->in_offs[i];
            st = rec->fn(rec->params, arena + rec->out_off, ins, rec->w, rec->bias, ws ? ws + rec->ws_off : NULL);
        }
        if (st != ND_OK) {
            if (failed_index)
                *failed_index = r;
            return st;
        }
    }
    return ND_OK;
}
