// One fp32 matrix product's arguments, as gemm_f32 (blas.h) takes them:
// row-major C = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n.
#ifndef IGPT_GEMM_H
#define IGPT_GEMM_H

#include <stdbool.h>

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

#endif
