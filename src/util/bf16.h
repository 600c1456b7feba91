// One float rounded to bf16 (the top half of a float), on its bits: for C,
// C++ and CUDA host code alike (util/gemm_bf16.h and util/bf16_simd.h take it
// from here).
#ifndef IGPT_BF16_H
#define IGPT_BF16_H

#include <stdint.h>
#include <string.h>

// x rounded to the nearest bf16, ties to even, on the bits: adding 0x7fff
// plus the lowest kept bit carries into the kept half exactly when the
// dropped half is above a half ulp, or at a half ulp with an odd kept half.
// A NaN could carry into the infinity pattern, so it keeps its top half with
// the quiet bit set.
static inline uint16_t bf16_from_float(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

// A bf16 as the float it is (exact).
static inline float bf16_to_float(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}
#endif
