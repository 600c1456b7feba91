// The matrix products (blas.h): OpenBLAS's, or plain loops in a GPU-only build.
#include "util/blas.h"

#include <stddef.h>
#include <strings.h>

#ifndef IGPT_NO_BLAS
#include <cblas.h>
#endif

// One row of C at a time, so rows are independent (threads split them, and
// the result does not depend on how many). Without B transposed, each element
// of op(A)'s row scales a row of B into C's row: unit strides the compiler
// vectorises. With B transposed, each element of C is the dot product of two
// rows, four of them at a time. beta == 0 overwrites C without reading it, as BLAS does. The f64
// version below is the same loops in doubles.
void plain_gemm_f32(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    const bool worth_threads = (double)m * n * k > 1e6;
#pragma omp parallel for schedule(static) if (worth_threads)
    for (int i = 0; i < m; i++) {
        float *c = C + (size_t)i * ldc;
        const float *a = trans_a ? A + i : A + (size_t)i * lda;  // op(A)'s row i: a[p * a_step]
        const size_t a_step = trans_a ? (size_t)lda : 1;
        for (int j = 0; j < n; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        if (!trans_b) {
            for (int p = 0; p < k; p++) {
                const float scale = alpha * a[p * a_step];
                const float *b = B + (size_t)p * ldb;
#pragma omp simd
                for (int j = 0; j < n; j++) c[j] += scale * b[j];
            }
        } else {
            // Four columns at a time: each element of A's row is loaded once for four products.
            int j = 0;
            for (; j + 4 <= n; j += 4) {
                const float *b0 = B + (size_t)j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
                float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
                for (int p = 0; p < k; p++) {
                    const float x = a[p * a_step];
                    s0 += x * b0[p];
                    s1 += x * b1[p];
                    s2 += x * b2[p];
                    s3 += x * b3[p];
                }
                c[j] += alpha * s0;
                c[j + 1] += alpha * s1;
                c[j + 2] += alpha * s2;
                c[j + 3] += alpha * s3;
            }
            for (; j < n; j++) {
                const float *b = B + (size_t)j * ldb;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int p = 0; p < k; p++) dot += a[p * a_step] * b[p];
                c[j] += alpha * dot;
            }
        }
    }
}

void plain_gemm_f64(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double *A, int lda,
                    const double *B, int ldb, double beta, double *C, int ldc) {
    const bool worth_threads = (double)m * n * k > 1e6;
#pragma omp parallel for schedule(static) if (worth_threads)
    for (int i = 0; i < m; i++) {
        double *c = C + (size_t)i * ldc;
        const double *a = trans_a ? A + i : A + (size_t)i * lda;
        const size_t a_step = trans_a ? (size_t)lda : 1;
        for (int j = 0; j < n; j++) c[j] = beta == 0.0 ? 0.0 : beta * c[j];
        if (!trans_b) {
            for (int p = 0; p < k; p++) {
                const double scale = alpha * a[p * a_step];
                const double *b = B + (size_t)p * ldb;
#pragma omp simd
                for (int j = 0; j < n; j++) c[j] += scale * b[j];
            }
        } else {
            // Four columns at a time: each element of A's row is loaded once for four products.
            int j = 0;
            for (; j + 4 <= n; j += 4) {
                const double *b0 = B + (size_t)j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
                double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
                for (int p = 0; p < k; p++) {
                    const double x = a[p * a_step];
                    s0 += x * b0[p];
                    s1 += x * b1[p];
                    s2 += x * b2[p];
                    s3 += x * b3[p];
                }
                c[j] += alpha * s0;
                c[j + 1] += alpha * s1;
                c[j + 2] += alpha * s2;
                c[j + 3] += alpha * s3;
            }
            for (; j < n; j++) {
                const double *b = B + (size_t)j * ldb;
                double dot = 0.0;
#pragma omp simd reduction(+ : dot)
                for (int p = 0; p < k; p++) dot += a[p * a_step] * b[p];
                c[j] += alpha * dot;
            }
        }
    }
}

#ifdef IGPT_NO_BLAS
void gemm_f32(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc) {
    plain_gemm_f32(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_f64(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double *A, int lda, const double *B,
              int ldb, double beta, double *C, int ldc) {
    plain_gemm_f64(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
void blas_set_threads(int threads) { (void)threads; }  // the loops use OpenMP's thread count
const char *blas_better_coretype(void) { return NULL; }
const char *blas_core_name(void) { return "plain loops"; }
#else
static enum CBLAS_TRANSPOSE op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }
void gemm_f32(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, op(trans_a), op(trans_b), m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_f64(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double *A, int lda, const double *B,
              int ldb, double beta, double *C, int ldc) {
    cblas_dgemm(CblasRowMajor, op(trans_a), op(trans_b), m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
void blas_set_threads(int threads) { openblas_set_num_threads(threads); }

const char *blas_core_name(void) { return openblas_get_corename(); }

// OpenBLAS picks its kernels by the CPU's model number, and a model it does not
// know (a new Xeon, or a virtual machine that hides the model) gets the oldest
// x86-64 kernels ("Prescott": SSE3, no AVX), 3x slower than the AVX-512 ones on
// the same cores (make bench-cpu on a 2-core Xeon VM: 465 vs 1,480 tokens/s for
// xs). When it did that on a CPU with AVX2 or AVX-512, this names the kernels
// the CPU can run; OPENBLAS_CORETYPE chooses them (main.c).
const char *blas_better_coretype(void) {
    static const char *const modern[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};
    const char *core = openblas_get_corename();
    for (size_t i = 0; core && i < sizeof modern / sizeof modern[0]; i++)
        if (!strcasecmp(core, modern[i])) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}
#endif
