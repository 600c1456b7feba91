// Our own fp32 matrix products, where the build targets AVX-512: gemm_f32 runs
// them in place of OpenBLAS's there (the forward pass and d(input):
// 1.01x-1.26x OpenBLAS's speed at the `xs` model's shapes, 1.25x-1.93x at
// `tiny`'s, operands cold on 2 threads: dev/gemm_bench.c; the weight
// gradients 0.99x-1.07x at `xs`'s). Elsewhere OpenBLAS's.
#ifndef IGPT_GEMM_AVX512_H
#define IGPT_GEMM_AVX512_H

#include <stdbool.h>

#include "util/gemm.h"

// Whether gemm_f32 gives this product to gemm_avx512: a build for AVX-512,
// and C at least 32 columns wide (a tile is 64; a narrower C would waste most
// of it).
bool gemm_avx512_suits(const Gemm *g);
// The steps of k the kernel sums per block: each block's sum starts from 0
// and is then added to C, blocks in order (gemm_f32_all splits a weight
// gradient's k on these boundaries and keeps that order).
#define GEMM_F32_BLOCK_K 256
// The product on the calling thread, as gemm_f32 defines it (beta == 0
// writes C without reading it), any product in a build for AVX-512.
void gemm_avx512(const Gemm *g);

#endif
