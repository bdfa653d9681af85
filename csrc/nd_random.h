/* nd_random.h — the counter-based random numbers of the training kernels (Dropout masks,
 * stochastic pooling's samples).
 *
 * A value is a pure function of (seed, index): splitmix64 of seed ^ (index * golden ratio).
 * So a mask does not depend on the number of threads or on the order the loop runs in, and
 * the session makes a new mask each step by passing a new seed. Not in the cffi cdef (only
 * nd_common.h and the headers under kernels/ and runtime/ are): kernels include it.
 */
#ifndef ND_RANDOM_H
#define ND_RANDOM_H
#include <stdint.h>

static inline uint64_t nd_rand_u64(uint64_t seed, uint64_t index)
{
    uint64_t z = seed ^ (index * 0x9E3779B97F4A7C15ull);
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1): the top 24 bits, so every value is an exact float */
static inline float nd_rand_uniform(uint64_t seed, uint64_t index)
{
    return (float)(nd_rand_u64(seed, index) >> 40) * (1.0f / 16777216.0f);
}
#endif
