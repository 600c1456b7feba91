// The matrix products of the CPU reference and the probe solver: row-major
// C = alpha op(A) op(B) + beta C, where op transposes when asked and op(A) is
// m x k, op(B) k x n. A full build hands them to OpenBLAS, or to our own
// (gemm_avx512.h) where the build targets AVX-512.
// A GPU-only build (make GPU_ONLY=1, for a GPU machine that has the CUDA
// toolkit and nothing else) defines IGPT_NO_BLAS and uses the plain loops
// below: slower, but the CPU reference the GPU tests compare against is then
// still there.
//
// The plain loops are in every build, so that a test compares them with
// OpenBLAS on every `make test`.
#ifndef IGPT_BLAS_H
#define IGPT_BLAS_H

#include <stdbool.h>

#include "util/gemm.h"

void gemm_f32(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);
// Several independent products (none writes what another reads), each as
// gemm_f32 computes it (the same parts on the same threads, so the same
// bits), in one parallel region where separate calls would start and end one
// each.
void gemm_f32_all(const Gemm *products, int count);
// Part p of `parts` of a product as gemm_f32_all splits it: rows [from, to)
// of C from op(A)'s rows, or, when C is wider than tall, its columns from
// op(B)'s columns; the boundaries on multiples of 32 where the size allows.
// m or n is 0 when the part is empty.
Gemm gemm_part(const Gemm *g, int p, int parts);
// Whether gemm_f32_all splits this product over k on `threads` threads (a
// weight gradient where that has each thread move fewer floats: blas.c)
// rather than by gemm_part.
bool gemm_f32_splits_over_k(const Gemm *g, int threads);
void gemm_f64(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double *A, int lda, const double *B,
              int ldb, double beta, double *C, int ldc);
// Threads of the products outside our own parallel regions.
void blas_set_threads(int threads);
// The OPENBLAS_CORETYPE this CPU should have when OpenBLAS fell back to kernels
// older than the CPU (it does not know the CPU's model); NULL when its choice is
// fine, or in a build without OpenBLAS.
const char *blas_better_coretype(void);
// The kernels the products run: OpenBLAS's name for them ("SkylakeX"), or
// "plain loops" in a build without OpenBLAS.
const char *blas_core_name(void);
// Starts the program again (execv, same pid) with how OpenMP's threads wait
// (omp_wait_for: a short spin when nothing else was runnable, else passive)
// and the OPENBLAS_CORETYPE above, each unless the user set it; returns when
// there is nothing to set (or no way to start again). First thing in main.
void start_again_with_library_settings(char **argv);
// The PAUSE turns a waiting thread spins before it sleeps, when it spins.
#define OMP_SPIN_TURNS "3000"
// "GOMP_SPINCOUNT=3000" when no other task was runnable as igpt started
// (others == 0: every CPU free for its threads), else
// "OMP_WAIT_POLICY=passive"; others < 0 means not known.
const char *omp_wait_for(int others);
// How this process's OpenMP threads wait, as its environment says
// ("GOMP_SPINCOUNT=3000", "OMP_WAIT_POLICY=passive", both when both are set,
// "libgomp's default").
const char *omp_wait_setting(void);

// The plain C versions (OpenMP over the rows of C once the product is large).
void plain_gemm_f32(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);
void plain_gemm_f64(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double *A, int lda,
                    const double *B, int ldb, double beta, double *C, int ldc);

#endif
