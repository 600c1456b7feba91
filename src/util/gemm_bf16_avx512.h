// Our own bf16 matrix products for CPUs with AVX512-BF16 (vdpbf16ps): the
// fp32 kernel's tiles (gemm_avx512.h) with pairs of bf16 steps per
// instruction. gemm_bf16 (gemm_bf16.h) splits a product over the threads
// and gives each part to gemm_bf16_avx512.
#ifndef IGPT_GEMM_BF16_AVX512_H
#define IGPT_GEMM_BF16_AVX512_H

#include "util/gemm.h"

// The product on the calling thread (beta 0: C is written without being
// read), on a CPU with AVX512-BF16 only (cpu_has_avx512_bf16, gemm_bf16.h).
void gemm_bf16_avx512(const GemmBf16 *g);

#endif
