// 16 floats rounded to bf16 at once by AVX512-BF16's vcvtneps2bf16, with
// bf16_from_float's bits (util/bf16.h): the instruction rounds to nearest
// even and quiets a NaN as it does, but takes a subnormal input as zero, so a
// vector that holds one takes the long way. Checked against bf16_from_float
// over every float (a scratch program) and over every sign, exponent and top
// half of the mantissa (tests/test_bf16_cpu.c). A third of the instructions
// of the same rounding on the bits, which bound the bf16 model's producers
// (GELU, the norms, the loss's gradient, round_to_bf16). Only in functions
// built for the instruction (BF16_TARGET), called where the CPU has it
// (cpu_has_avx512_bf16); C files only.
#ifndef IGPT_BF16_SIMD_H
#define IGPT_BF16_SIMD_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util/bf16.h"

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// True when the calling thread's arithmetic flushes subnormal results to zero
// (MXCSR's FTZ: ./igpt and its tests set it, util.h flush_denormals_to_zero):
// then a value it computed is never subnormal, and its vectors need no check.
static inline bool results_flushed_to_zero(void) { return (_mm_getcsr() & 0x8000u) != 0; }

// may_be_subnormal false: the caller knows no lane is (results_flushed_to_zero
// and the values computed here), which saves a fifth of the bf16 GELU's time
// (in cache).
BF16_TARGET static inline __attribute__((always_inline)) void store16_bf16(uint16_t *dst, const __m512 *xp,
                                                                           bool may_be_subnormal) {
    const __m512 x = *xp;
    if (!may_be_subnormal) {
        const __m256bh rounded = _mm512_cvtneps_pbh(x);
        memcpy(dst, &rounded, sizeof rounded);
        return;
    }
    // Subnormal: 0 < |x|'s bits < 2^-126's, that is |x|'s bits - 1 < 0x7fffff unsigned (0 wraps to the top).
    const __m512i magnitude = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff));
    const __mmask16 subnormal =
        _mm512_cmplt_epu32_mask(_mm512_sub_epi32(magnitude, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7fffff));
    if (__builtin_expect(subnormal != 0, 0)) {
        float lanes[16];
        _mm512_storeu_ps(lanes, x);
        for (int i = 0; i < 16; i++) dst[i] = bf16_from_float(lanes[i]);
        return;
    }
    const __m256bh rounded = _mm512_cvtneps_pbh(x);
    memcpy(dst, &rounded, sizeof rounded);
}

#endif
