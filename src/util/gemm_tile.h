// What the tiles of our two AVX-512 kernels share (gemm_avx512.c for fp32,
// gemm_bf16_avx512.c for bf16 operands): their shape, and how a tile's sums
// go into C.
#ifndef IGPT_GEMM_TILE_H
#define IGPT_GEMM_TILE_H

#ifdef __x86_64__
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

// Rows of C per tile: 6 x 4 vectors of sums, 4 of B and a broadcast take 29
// of the 32 vector registers.
#define GEMM_TILE_ROWS 6

// Rows [0, rows) of a tile's sums into C (rows ldc apart), vector v of each
// row masked by columns[v]: alpha sum + beta C where read_c, else alpha sum.
// The bf16 kernel's alpha and beta are 1: sum * 1 is the sum, and the fused
// multiply-add 1 * C + sum rounds as C + sum does. Inlined with rows
// constant, so that the sums stay in registers; built for AVX-512 whatever
// the file's target (the bf16 kernel's functions carry their own).
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void store_tile(
    __m512 sum[GEMM_TILE_ROWS][4], int rows, float *c, size_t ldc, const __mmask16 columns[4], float alpha, float beta,
    bool read_c) {
    const __m512 alphas = _mm512_set1_ps(alpha), betas = _mm512_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < GEMM_TILE_ROWS; i++)
        if (i < rows)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                float *ci = c + i * ldc + v * 16;
                __m512 out = _mm512_mul_ps(sum[i][v], alphas);
                if (read_c) out = _mm512_fmadd_ps(betas, _mm512_maskz_loadu_ps(columns[v], ci), out);
                _mm512_mask_storeu_ps(ci, columns[v], out);
            }
}
#endif

#endif
