// One matrix product's arguments: row-major C = alpha op(A) op(B) + beta C,
// op(A) m x k, op(B) k x n; in fp32 as gemm_f32 (blas.h) takes them, or with
// bf16 operands as gemm_bf16 (gemm_bf16.h) does.
#ifndef IGPT_GEMM_H
#define IGPT_GEMM_H

#include <stdbool.h>
#include <stddef.h>
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
// (C is not read) or 1. C_bf16, unless NULL: C rounded to bf16 goes there
// instead (ldc apart; C is NULL, beta 0, and k at most GEMM_BF16_BLOCK_K, so
// that each sum is whole when its tile stores it).
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
    uint16_t *C_bf16;
} GemmBf16;
// Steps of k per block of the bf16 kernel (gemm_bf16_avx512.c).
#define GEMM_BF16_BLOCK_K 512

// Part p of `parts` of a product as the threads split it (gemm_part, blas.h;
// gemm_bf16_all): rows of C from op(A)'s rows, or, when C is wider than tall,
// its columns from op(B)'s columns; the boundaries on multiples of 32 where
// the size allows. The part is m x n (0 when empty), its A, B and C start
// a, b and c elements into the product's (of any element type).
typedef struct {
    int m, n;
    size_t a, b, c;
} GemmPartAt;
GemmPartAt gemm_part_at(int m, int n, bool trans_a, bool trans_b, int lda, int ldb, int ldc, int p, int parts);
// part = that part of *g, a Gemm (gemm_bf16.c's product_part does the same
// for a GemmBf16, whose C may be C_bf16).
#define GEMM_TAKE_PART(part, g, p, parts)                                                                         \
    do {                                                                                                          \
        const GemmPartAt at_ =                                                                                    \
            gemm_part_at((g)->m, (g)->n, (g)->trans_a, (g)->trans_b, (g)->lda, (g)->ldb, (g)->ldc, (p), (parts)); \
        (part) = *(g);                                                                                            \
        (part).m = at_.m;                                                                                         \
        (part).n = at_.n;                                                                                         \
        (part).A = (g)->A + at_.a;                                                                                \
        (part).B = (g)->B + at_.b;                                                                                \
        (part).C = (g)->C + at_.c;                                                                                \
    } while (0)
// Whether an m x n x k product is worth splitting over `threads` threads
// (enough work for each to pay its share of a parallel region).
bool gemm_worth_splitting(int m, int n, int k, int threads);

// The calling thread's scratch for a product's packed operands, 64-byte
// aligned, at least `bytes` long: grown when a product needs more, kept for
// the next (each OpenMP thread packs its own). Valid until the thread's next
// call.
void *gemm_scratch(size_t bytes);

#endif
