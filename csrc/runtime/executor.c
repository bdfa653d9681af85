/* executor.c — the plan loop: one C call per inference, microseconds of overhead.
 *
 * Input pointers are rebuilt per record on the stack (arena + offset), so the
 * records stay valid for any arena the caller passes. At most 256 inputs
 * per record (Python checks); more is ND_EINVAL, never an overflow.
 *
 * Threads: `threads` > 0 sets OpenMP's count for this call only; the calling
 * thread's previous count is restored on return, so a run at 1 thread (a tiny
 * plan, netdsl/runtime/session.py) does not change what omp_get_max_threads()
 * and the next model see.
 *
 * Also here: what the environment said about OpenMP's waiting when the
 * kernels loaded (netdsl/runtime/lib.py sets OMP_WAIT_POLICY just before
 * loading them; libgomp reads it in its own constructor, which runs before
 * this library's), so Python and the tests can see what libgomp saw.
 */
#include "runtime/executor.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

enum { ND_EXEC_MAX_IN = 256, ND_ENV_LEN = 64 };

static char g_env[2][ND_ENV_LEN];

static void env_copy(char *dst, const char *name)
{
    const char *s = getenv(name);
    if (!s)
        s = "";
    strncpy(dst, s, ND_ENV_LEN - 1);
    dst[ND_ENV_LEN - 1] = '\0';
}

__attribute__((constructor)) static void nd_exec_init(void)
{
    env_copy(g_env[0], "OMP_WAIT_POLICY");
    env_copy(g_env[1], "GOMP_SPINCOUNT");
}

const char *nd_exec_load_env(int which)
{
    return (which == 0 || which == 1) ? g_env[which] : "";
}

/* seconds on a steady clock: OpenMP's wall clock, or C11's timespec_get without OpenMP */
static double now_s(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#else
    struct timespec t;
    timespec_get(&t, TIME_UTC);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
#endif
}

static nd_status run_records(const nd_record *recs, int64_t n, float *arena, float *ws, int64_t *failed_index,
                             double *stamps)
{
    const float *ins[ND_EXEC_MAX_IN];
    for (int64_t r = 0; r < n; r++) {
        const nd_record *rec = &recs[r];
        nd_status st = ND_EINVAL;
        if (rec->fn && rec->n_in >= 0 && rec->n_in <= ND_EXEC_MAX_IN && (rec->n_in == 0 || rec->in_offs)) {
            for (int32_t i = 0; i < rec->n_in; i++) ins[i] = arena + rec->in_offs[i];
            st = rec->fn(rec->params, arena + rec->out_off, ins, rec->w, rec->bias, ws ? ws + rec->ws_off : NULL);
        }
        if (stamps)
            stamps[r + 1] = now_s();
        if (st != ND_OK) {
            if (failed_index)
                *failed_index = r;
            return st;
        }
    }
    return ND_OK;
}

static nd_status run_plan(const nd_record *recs, int64_t n, float *arena, float *ws, int32_t threads,
                          int64_t *failed_index, double *stamps)
{
    if (failed_index)
        *failed_index = -1;
    if (n < 0 || (n > 0 && (!recs || !arena)))
        return ND_EINVAL;
#ifdef _OPENMP
    int prev = omp_get_max_threads();
    int set = threads > 0 && threads != prev;
    if (set)
        omp_set_num_threads(threads);
    nd_status st = run_records(recs, n, arena, ws, failed_index, stamps);
    if (set)
        omp_set_num_threads(prev);
    return st;
#else
    (void)threads;
    return run_records(recs, n, arena, ws, failed_index, stamps);
#endif
}

nd_status nd_run_plan(const nd_record *recs, int64_t n, float *arena, float *ws, int32_t threads,
                      int64_t *failed_index)
{
    return run_plan(recs, n, arena, ws, threads, failed_index, NULL);
}

nd_status nd_run_plan_timed(const nd_record *recs, int64_t n, float *arena, float *ws, int32_t threads,
                            int64_t *failed_index, double *stamps)
{
    if (!stamps)
        return ND_EINVAL;
    stamps[0] = now_s();
    return run_plan(recs, n, arena, ws, threads, failed_index, stamps);
}
