// Scratch harness (not built by make): the fp32 matrix products of one layer
// of a model (qkv, attn_proj, fc, fc_proj; forward, d(input) and d(weight)),
// as gemm_f32 computes them (our own for AVX-512 where they suit, else
// OpenBLAS's) against OpenBLAS's on the same parts (gemm_part), taken in
// turns; with bf16, against gemm_bf16's (util/gemm_bf16.h) on the same
// values rounded to bf16 (the CPU needs AVX512-BF16).
//   make NVCC= CHECK_CXX=
//   cc -O3 -march=native -fopenmp -Isrc dev/gemm_bench.c build/libigpt.a
//     -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -lz -lm -o /tmp/gemm_bench (one line)
//   env -u OPENBLAS_CORETYPE /tmp/gemm_bench TOKENS C THREADS [cold] [bf16]
// (`xs` at 16x16, batch 8: 2048 256 2; `tiny` at 16x16, batch 16: 4096 64 2.)
// cold: 64 MiB written before every product, so that its operands come from
// memory as in a training step (whose activations do not fit the caches);
// else they are warm from the repeat before. GFLOP/s, best of 7.
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/blas.h"
#include "util/gemm_bf16.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *random_floats(size_t n) {
    float *x = malloc(n * sizeof(float));
    if (!x) abort();
    for (size_t i = 0; i < n; i++) x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return x;
}

static float *junk;
static void evict_caches(int threads) {
    const size_t n = (size_t)16 << 20;
    if (!junk) junk = random_floats(n);
#pragma omp parallel for num_threads(threads)
    for (size_t i = 0; i < n; i++) junk[i] += 1.0f;
}

static uint16_t *rounded(const float *x, size_t n) {
    uint16_t *h = malloc(n * sizeof(uint16_t));
    if (!h) abort();
    round_to_bf16(h, x, n, 1);
    return h;
}

// The same product with bf16 operands: A and B are x's, W's or y's rounded copies.
static void bf16_product(const Gemm *g, const float *const floats[3], uint16_t *const halves[3]) {
    const uint16_t *A = NULL, *B = NULL;
    for (int i = 0; i < 3; i++) {
        if (g->A == floats[i]) A = halves[i];
        if (g->B == floats[i]) B = halves[i];
    }
    gemm_bf16(g->trans_a, g->trans_b, g->m, g->n, g->k, A, g->lda, B, g->ldb, g->beta, g->C, g->ldc);
}

static enum CBLAS_TRANSPOSE op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

// OpenBLAS on each thread's part, the parts gemm_f32_all makes.
static void openblas_split(const Gemm *g, int threads) {
#pragma omp parallel num_threads(threads)
    {
        const Gemm part = gemm_part(g, omp_get_thread_num(), omp_get_num_threads());
        if (part.m > 0 && part.n > 0)
            cblas_sgemm(CblasRowMajor, op(part.trans_a), op(part.trans_b), part.m, part.n, part.k, part.alpha, part.A,
                        part.lda, part.B, part.ldb, part.beta, part.C, part.ldc);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s TOKENS C THREADS [cold] [bf16]\n", argv[0]);
        return 2;
    }
    const int N = atoi(argv[1]), C = atoi(argv[2]), threads = atoi(argv[3]);
    bool cold = false, bf16 = false;
    for (int i = 4; i < argc; i++) {
        cold |= !strcmp(argv[i], "cold");
        bf16 |= !strcmp(argv[i], "bf16");
    }
    omp_set_num_threads(threads);
    blas_set_threads(threads);
    const char *names[] = {"qkv", "attn_proj", "fc", "fc_proj"};
    const int outs[] = {3 * C, C, 4 * C, C}, ins[] = {C, C, C, 4 * C};
    double total[2] = {0.0, 0.0};
    printf("%d tokens, C %d, %d threads, operands %s; GFLOP/s, best of 7\n", N, C, threads,
           cold ? "cold (caches evicted)" : "warm");
    // ratio: how many times faster gemm_f32 is than OpenBLAS, or gemm_bf16 than gemm_f32.
    printf("%-10s %-9s %18s %10s %10s %7s\n", "product", "part", "m x n x k", "gemm_f32", bf16 ? "gemm_bf16" : "OpenBLAS",
           "ratio");
    for (int l = 0; l < 4; l++) {
        const int OC = outs[l], IC = ins[l];
        float *x = random_floats((size_t)N * IC), *W = random_floats((size_t)OC * IC);
        float *y = random_floats((size_t)N * OC), *dx = random_floats((size_t)N * IC);
        float *dW = random_floats((size_t)OC * IC);
        const float *const floats[3] = {x, W, y};
        uint16_t *const halves[3] = {bf16 ? rounded(x, (size_t)N * IC) : NULL, bf16 ? rounded(W, (size_t)OC * IC) : NULL,
                                     bf16 ? rounded(y, (size_t)N * OC) : NULL};
        // matmul_forward and matmul_backward's products (cpu_ops.c).
        const Gemm products[3] = {{false, true, N, OC, IC, 1.0f, x, IC, W, IC, 0.0f, y, OC},
                                  {false, false, N, IC, OC, 1.0f, y, OC, W, IC, 0.0f, dx, IC},
                                  {true, false, OC, IC, N, 1.0f, y, OC, x, IC, 1.0f, dW, IC}};
        const char *parts[] = {"forward", "d(input)", "d(weight)"};
        for (int q = 0; q < 3; q++) {
            double best[2] = {1e30, 1e30};
            for (int rep = 0; rep < 7; rep++)
                for (int which = 0; which < 2; which++) {
                    if (cold) evict_caches(threads);
                    const double t0 = now();
                    if (which == 0) gemm_f32_all(&products[q], 1);
                    else if (bf16) bf16_product(&products[q], floats, halves);
                    else openblas_split(&products[q], threads);
                    const double t = now() - t0;
                    if (t < best[which]) best[which] = t;
                }
            const Gemm *g = &products[q];
            const double flops = 2.0 * g->m * g->n * g->k;
            total[0] += best[0];
            total[1] += best[1];
            printf("%-10s %-9s %6d x%5d x%5d %10.1f %10.1f %6.2fx\n", names[l], parts[q], g->m, g->n, g->k,
                   flops / best[0] * 1e-9, flops / best[1] * 1e-9, bf16 ? best[0] / best[1] : best[1] / best[0]);
        }
        for (int i = 0; i < 3; i++) free(halves[i]);
        free(x);
        free(W);
        free(y);
        free(dx);
        free(dW);
    }
    printf("all twelve: gemm_f32 %.3f ms, %s %.3f ms (%.2fx)\n", total[0] * 1e3, bf16 ? "gemm_bf16" : "OpenBLAS",
           total[1] * 1e3, bf16 ? total[0] / total[1] : total[1] / total[0]);
    return 0;
}
