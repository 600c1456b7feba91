// bf16 matrix products on the CPU (--device cpu --precision bf16): row-major
// C = op(A) op(B) + beta C with A and B in bf16 (the top half of a float,
// rounded to nearest even), sums and C in fp32, as the GPU's bf16 products
// have them. Our own kernel runs them where the CPU has AVX512-BF16
// (gemm_bf16_avx512.h: vdpbf16ps, about twice our fp32 products' speed on the
// same cores, README); elsewhere plain loops do, right but slow (the tests'
// path on such CPUs; --precision bf16 refuses them, gemm_bf16_unavailable).
#ifndef IGPT_GEMM_BF16_H
#define IGPT_GEMM_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/bf16.h"
#include "util/gemm.h"

// NULL when this CPU runs bf16 products fast; else why not ("this CPU has no
// AVX512-BF16 ...").
const char *gemm_bf16_unavailable(void);
// True when the CPU has AVX512-BF16 (vdpbf16ps): what the bf16 products and
// the attention's bf16 kernels need to pay.
bool cpu_has_avx512_bf16(void);

// out[i] = bf16_from_float(x[i]), threads threads; round_span_to_bf16 on
// the calling thread. 16 at a time by vcvtneps2bf16 where the CPU has it
// (util/bf16_simd.h), the same bits.
void round_to_bf16(uint16_t *out, const float *x, size_t n, int threads);
void round_span_to_bf16(uint16_t *out, const float *x, size_t n);
// rows x cols values of a wider matrix, each row's first ld apart in x and in
// out, threads threads.
void round_rows_to_bf16(uint16_t *out, const float *x, size_t ld, size_t rows, size_t cols, int threads);

// C (m x n, ldc) = op(A) op(B) + beta C, beta 0 (C is not read) or 1
// (gemm_bf16_all: or C_bf16 = bf16(op(A) op(B)), util/gemm.h).
// op(A) is m x k, op(B) k x n; trans_* reads the stored row-major matrix
// transposed. Runs on OpenMP's threads (omp_set_num_threads), each on its
// part of C (gemm_part_at, util/gemm.h); every element sums in the same order
// however many, so the result does not depend on the thread count.
void gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, const uint16_t *A, int lda, const uint16_t *B, int ldb,
               float beta, float *C, int ldc);
// Several independent products (none writes what another reads), each as
// gemm_bf16 computes it, in one parallel region where separate calls would
// start and end one each.
void gemm_bf16_all(const GemmBf16 *products, int count);

#endif
