/* executor.h — run a whole plan in one call into C.
 *
 * A plan is an array of records, one per kernel call, in execution order.
 * Every activation buffer lives in one arena (offsets in floats); weights
 * are pointers into arrays Python owns and keeps alive; each record's
 * workspace is ws + ws_off. The executor only calls kernels: it allocates,
 * frees and checks nothing that Python did not already check.
 */
#ifndef ND_EXECUTOR_H
#define ND_EXECUTOR_H
#include "nd_common.h"

typedef struct {
    nd_kernel_fn fn;             /* e.g. (nd_kernel_fn)nd_conv_f32 */
    const void *params;          /* its nd_<op>_params */
    int64_t out_off;             /* output: arena + out_off */
    const int64_t *in_offs;      /* inputs: arena + in_offs[i], i < n_in */
    int32_t n_in;                /* 0 .. 256 */
    int32_t flags;               /* reserved, 0 */
    const float *w;              /* weights or NULL */
    const float *bias;           /* bias or NULL */
    int64_t ws_off;              /* workspace: ws + ws_off (ws may be NULL if no kernel needs one) */
} nd_record;

/* Runs recs[0..n) in order with `threads` OpenMP threads (<= 0: OpenMP's
 * current count; the caller's count is restored on return). Stops at the
 * first kernel that fails: returns its status and stores its index in
 * *failed_index (when not NULL; -1 on success). */
nd_status nd_run_plan(const nd_record *recs, int64_t n, float *arena, float *ws, int32_t threads,
                      int64_t *failed_index);

/* nd_run_plan, timed: stamps (n + 1 doubles) gets seconds on a steady clock (its zero is
 * arbitrary) at the start and after each record, so record r took stamps[r+1] - stamps[r],
 * timed where it runs, inside the plan, with the caches and threads as the plan leaves them. */
nd_status nd_run_plan_timed(const nd_record *recs, int64_t n, float *arena, float *ws, int32_t threads,
                            int64_t *failed_index, double *stamps);

/* OMP_WAIT_POLICY (which = 0) or GOMP_SPINCOUNT (1) as the environment had
 * it when the kernels loaded, i.e. what libgomp read; "" when unset. */
const char *nd_exec_load_env(int which);
#endif
