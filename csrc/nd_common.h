/* nd_common.h — what every netdsl kernel shares.
 *
 * Conventions (see STYLE.md): a kernel is a free function
 *     nd_status nd_<op>_f32(const nd_<op>_params *p, float *out, const float *const *in,
 *                           const float *w, const float *bias, float *ws);
 * outputs first, then inputs, then weights; `in` is an array of input
 * pointers (one for most ops, several for concat/add/mul) so that every
 * kernel has this one signature and the executor can call any of them
 * through `nd_kernel_fn` — STYLE.md's single `const float *in` would need
 * a second signature and a table of adapters. `p` is a POD filled at plan
 * time (batch size included); sizes are int64_t and were validated
 * (overflow-checked) in Python before the call; kernels never allocate,
 * print, exit or assert: they return a status.
 *
 * This header and every header in csrc/kernels are also fed to cffi's cdef with
 * lines starting with '#' removed, so keep declarations cdef-friendly:
 * plain structs, int64_t/int32_t/float/double, prototypes, no macros in them.
 */
#ifndef ND_COMMON_H
#define ND_COMMON_H
#include <stdint.h>

typedef enum {
    ND_OK = 0,
    ND_EINVAL = 1,      /* a size or parameter out of range */
    ND_EUNSUPPORTED = 2, /* a combination this kernel does not implement */
    ND_ENONFINITE = 3    /* a NaN or inf where the plan asked for finite values (training's guard) */
} nd_status;

typedef nd_status (*nd_kernel_fn)(const void *p, float *out, const float *const *in,
                                  const float *w, const float *bias, float *ws);

/* The fused activations, one set for every kernel that takes an `act` field
 * (conv, conv_transpose, local, fc, gemm, add, mul, batchnorm). Python reads the
 * codes through cffi (lib.ND_ACT_RELU, ...): the activation table
 * (netdsl/ops/activations.py) names the enum value of each `act`, and
 * netdsl/runtime/kparams/conv.py act_code reads it.
 * Every activation keeps NaN (a NaN in gives a NaN out, as in PyTorch), and
 * relu(-inf) = 0, sigmoid(+-inf) = 1 / 0, tanh(+-inf) = +-1. LEAKYRELU's
 * fused slope is 0.01 (PyTorch's default); the standalone kernel takes any.
 * RELU6 .. MISH are PyTorch's formulas: relu6 = min(max(x, 0), 6), hardsigmoid =
 * relu6(x + 3) / 6, hardswish = x relu6(x + 3) / 6, silu = x / (1 + e^-x), gelu =
 * x (1 + erf(x / sqrt 2)) / 2, mish = x tanh(log(1 + e^x)); the x-times ones give NaN at
 * -inf (-inf * 0), as PyTorch does. GELU_TANH (x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2)
 * is for the standalone GELU(approximate=tanh) kernel only: not in the activation table, no
 * layer fuses it. */
typedef enum {
    ND_ACT_NONE = 0,
    ND_ACT_RELU = 1,
    ND_ACT_LEAKYRELU = 2,
    ND_ACT_SIGMOID = 3,
    ND_ACT_TANH = 4,
    ND_ACT_RELU6 = 5,
    ND_ACT_HARDSIGMOID = 6,
    ND_ACT_HARDSWISH = 7,
    ND_ACT_SILU = 8,
    ND_ACT_GELU = 9,
    ND_ACT_MISH = 10,
    ND_ACT_GELU_TANH = 11
} nd_act;

/* ISA levels, chosen once at load (csrc/dispatch.c); NETDSL_ISA overrides. */
typedef enum { ND_ISA_PORTABLE = 0, ND_ISA_AVX2 = 1, ND_ISA_AVX512 = 2 } nd_isa;

int nd_isa_level(void);            /* the level in use */
int nd_set_isa(int level);         /* force a level (tests); returns the level actually set */
int nd_max_threads(void);          /* OpenMP's thread count, 1 without OpenMP */
int nd_has_openmp(void);
#endif
