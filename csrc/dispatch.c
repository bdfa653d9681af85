/* dispatch.c — choose the instruction set once, at load.
 *
 * One pointer to an `nd_isa_ops` table (dispatch.h) is set from cpuid the
 * first time anything asks (a constructor asks at load): AVX-512 when the CPU
 * and OS support avx512f (+dq/bw/vl are not needed), else AVX2 with FMA, else
 * the portable C path. NETDSL_ISA=portable|avx2|avx512 caps the level, which
 * is how the tests reach every path on one machine; asking for a level the
 * CPU lacks gives the best level below it, never an illegal instruction.
 * Non-x86 builds only have the portable table.
 *
 * Also here: the OpenMP queries declared in nd_common.h. OpenMP is optional;
 * without it every kernel runs on the calling thread.
 */
#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static const nd_isa_ops *volatile g_ops;   /* set once; plain pointer stores are atomic here */

static int cpu_level(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return ND_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return ND_ISA_AVX2;
#endif
    return ND_ISA_PORTABLE;
}

const nd_isa_ops *nd_ops_for(int level)
{
    switch (level) {
#if defined(__x86_64__) || defined(__i386__)
    case ND_ISA_AVX512: return &nd_ops_avx512;
    case ND_ISA_AVX2: return &nd_ops_avx2;
#endif
    case ND_ISA_PORTABLE: return &nd_ops_portable;
    default: return NULL;
    }
}

static int env_level(void)
{
    const char *s = getenv("NETDSL_ISA");
    if (!s || !*s)
        return ND_ISA_AVX512;
    if (!strcmp(s, "portable") || !strcmp(s, "generic") || !strcmp(s, "c"))
        return ND_ISA_PORTABLE;
    if (!strcmp(s, "avx2"))
        return ND_ISA_AVX2;
    return ND_ISA_AVX512;   /* "avx512" or anything else: the best available */
}

int nd_set_isa(int level)
{
    int best = cpu_level();
    if (level > best)
        level = best;
    if (level < ND_ISA_PORTABLE)
        level = ND_ISA_PORTABLE;
    g_ops = nd_ops_for(level);
    return level;
}

/* NETDSL_GEMM_BLOCKS=mc,kc,nc overrides every table's cache blocks (tuning
 * only; read once, before any plan sizes its workspace). */
static void env_blocks(void)
{
    const char *s = getenv("NETDSL_GEMM_BLOCKS");
    long mc, kc, nc;
    if (!s || sscanf(s, "%ld,%ld,%ld", &mc, &kc, &nc) != 3 || mc <= 0 || kc <= 0 || nc <= 0)
        return;
    for (int lv = ND_ISA_PORTABLE; lv <= ND_ISA_AVX512; lv++) {
        nd_isa_ops *o = (nd_isa_ops *)nd_ops_for(lv);
        if (!o)
            continue;
        o->mc = (mc + o->mr - 1) / o->mr * o->mr;
        o->kc = kc;
        o->nc = (nc + o->nr - 1) / o->nr * o->nr;
    }
}

/* Every table's act_vec becomes kernels/fast_math.c's pass for its level: one vectorized
 * float32 math (nd_math.h) for the epilogues, the standalone kernels and nd_act1, whatever
 * the table was initialized with. Idempotent; runs before g_ops is first published. */
static void install_act_passes(void)
{
    for (int lv = ND_ISA_PORTABLE; lv <= ND_ISA_AVX512; lv++) {
        nd_isa_ops *o = (nd_isa_ops *)nd_ops_for(lv);
        if (o)
            o->act_vec = nd_act_pass_for(lv);
    }
}

const nd_isa_ops *nd_ops(void)
{
    const nd_isa_ops *o = g_ops;
    if (!o) {
        install_act_passes();
        env_blocks();
        nd_set_isa(env_level());
        o = g_ops;
    }
    return o;
}

__attribute__((constructor)) static void nd_dispatch_init(void) { (void)nd_ops(); }

int nd_isa_level(void) { return nd_ops()->level; }

int nd_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int nd_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int nd_threads(int cap)
{
    int t = nd_max_threads();
    if (cap < 1)
        cap = 1;    /* a workspace sized for no threads holds one thread's share */
    if (t > cap)
        t = cap;
    return t < 1 ? 1 : t;
}
