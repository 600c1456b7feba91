// Explicit 16-float vectors (GCC's vector extensions: AVX-512 where the build
// targets it, split into narrower registers on other CPUs), and the 16 x 16
// transpose that the attention's tiles and the packed matrix products share
// (v16 by value draws GCC's ABI warning, -Wpsabi, on CPUs without AVX-512:
// pass pointers or use macros).
#ifndef IGPT_VEC16_H
#define IGPT_VEC16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
#define LANES 16

// The mask of the first `count` of 16 lanes (AVX-512's __mmask16): none when
// count <= 0, all when count >= 16.
static inline uint16_t first_lanes(int count) {
    return count >= LANES ? (uint16_t)0xffff : count <= 0 ? (uint16_t)0 : (uint16_t)((1u << count) - 1);
}

// A 16 x 16 block transposed in registers: m[r][c] becomes m[c][r]. Each
// round swaps the off-diagonal quarters of blocks half the size of the last
// round's (8 x 8, 4 x 4, 2 x 2, then single floats), rows s apart meeting in
// two-vector shuffles: 64 of them, where the tile's rows and lanes would
// otherwise cross one float at a time.
static inline __attribute__((always_inline)) void transpose16(v16 m[LANES]) {
    for (int i = 0; i < LANES; i++)
        if (!(i & 8)) {
            const v16 a = m[i], b = m[i + 8];
            m[i] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
            m[i + 8] = __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
        }
    for (int i = 0; i < LANES; i++)
        if (!(i & 4)) {
            const v16 a = m[i], b = m[i + 4];
            m[i] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
            m[i + 4] = __builtin_shufflevector(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        }
    for (int i = 0; i < LANES; i++)
        if (!(i & 2)) {
            const v16 a = m[i], b = m[i + 2];
            m[i] = __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
            m[i + 2] = __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
        }
    for (int i = 0; i < LANES; i += 2) {
        const v16 a = m[i], b = m[i + 1];
        m[i] = __builtin_shufflevector(a, b, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
        m[i + 1] = __builtin_shufflevector(a, b, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    }
}

// Rows [0, rows) of c (ldc apart), `cols` floats each, fetched for writing
// (prefetchw where the CPU has it; _mm_prefetch's _MM_HINT_ET0): a training
// step's C is cold (activations do not fit the caches), and a tile's stores
// would wait on it. The matrix products' tiles ask for the next tile's rows
// of C while one runs (the forward and d(input) products 5-13% faster with
// cold operands, dev/gemm_bench.c's shapes).
static inline void prefetch_for_writing(const float *c, size_t ldc, int rows, int cols) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j += LANES) __builtin_prefetch(c + i * ldc + j, 1, 3);
}

// 16 rows of 16 32-bit elements (floats, or words of two bf16) at src,
// src_stride bytes apart, written transposed as 16 rows of 64 bytes at dst,
// dst_stride bytes apart: dst row c holds element c of every source row.
// The packing of a transposed operand (the matrix products' B^T).
static inline __attribute__((always_inline)) void transpose16_copy(void *dst, size_t dst_stride, const void *src,
                                                                   size_t src_stride) {
    v16 m[LANES];
    for (int r = 0; r < LANES; r++) memcpy(&m[r], (const char *)src + r * src_stride, sizeof m[r]);
    transpose16(m);
    for (int r = 0; r < LANES; r++) memcpy((char *)dst + r * dst_stride, &m[r], sizeof m[r]);
}

#endif
