// One matrix product's arguments: row-major C = alpha op(A) op(B) + beta C,
// op(A) m x k, op(B) k x n; in fp32 as gemm_f32 (blas.h) takes them, or with
// bf16 operands as gemm_bf16 (gemm_bf16.h) does.
#ifndef IGPT_GEMM_H
#define IGPT_GEMM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    bool trans_a, trans_b;
    int m, n, k;
    float alpha;
    const float *A;
    int lda;
    const float *B;
    int ldb;
    float beta;
    float *C;
    int ldc;
} Gemm;

// bf16 A and B (the top half of a float), fp32 sums and C; alpha 1, beta 0
// (C is not read) or 1.
typedef struct {
    bool trans_a, trans_b;
    int m, n, k;
    const uint16_t *A;
    int lda;
    const uint16_t *B;
    int ldb;
    float beta;
    float *C;
    int ldc;
} GemmBf16;

// Part p of `parts` of a product's C as the threads split it (gemm_part,
// blas.h; gemm_bf16_all): rows [from, to) of C, or, when C is wider than
// tall, its columns; the boundaries on multiples of 32 where the size allows.
// from == to when the part is empty.
typedef struct {
    bool by_rows;
    int from, to;
} GemmSlice;
GemmSlice gemm_slice(int m, int n, int p, int parts);

#endif
