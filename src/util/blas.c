// The matrix products (blas.h): our own for AVX-512 (gemm_avx512.c) where they
// suit, else OpenBLAS's; plain loops in a GPU-only build.
#include "util/blas.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/gemm_avx512.h"
#include "util/util.h"

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

void gemm_f32(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc) {
    const Gemm product = {trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc};
    gemm_f32_all(&product, 1);
}

// Part p of `parts` of [0, n), the boundaries on multiples of 32 (whole
// blocks of OpenBLAS's kernels) where n allows.
static int part_start(int n, int p, int parts) {
    if (p == parts) return n;
    const int at = (int)((long long)n * p / parts);
    return n >= 32 * parts ? at / 32 * 32 : at;
}

// A row where a part of [0, m) may start: i rounded down to a multiple of
// 32 where m has at least two such, so that parts keep whole tiles.
static int part_row(int m, int i) { return m >= 64 ? i / 32 * 32 : i; }

GemmPartAt gemm_part_at(int m, int n, bool trans_a, bool trans_b, int lda, int ldb, int ldc, int p, int parts) {
    GemmPartAt at = {m, n, 0, 0, 0};
    if (m >= n) {
        const int from = part_start(m, p, parts);
        at.m = part_start(m, p + 1, parts) - from;
        at.a = trans_a ? (size_t)from : (size_t)from * lda;
        at.c = (size_t)from * ldc;
    } else {
        const int from = part_start(n, p, parts);
        at.n = part_start(n, p + 1, parts) - from;
        at.b = trans_b ? (size_t)from * ldb : (size_t)from;
        at.c = (size_t)from;
    }
    return at;
}

// OpenBLAS's own threshold for threads: 4 x 65536 multiply-adds a thread.
bool gemm_worth_splitting(int m, int n, int k, int threads) {
    return threads >= 2 && (double)m * n * k >= 262144.0 * threads;
}

Gemm gemm_part(const Gemm *g, int p, int parts) {
    Gemm part;
    GEMM_TAKE_PART(part, g, p, parts);
    return part;
}

static _Thread_local void *scratch;
static _Thread_local size_t scratch_bytes;

void *gemm_scratch(size_t bytes) {
    if (bytes > scratch_bytes) {
        free(scratch);
        scratch_bytes = round_up(bytes, 64);
        scratch = aligned_alloc(64, scratch_bytes);
        if (!scratch) die("out of memory for a matrix product's packed operands (%zu bytes)", scratch_bytes);
    }
    return scratch;
}

#ifdef IGPT_NO_BLAS
void gemm_f32_all(const Gemm *products, int count) {
    for (int i = 0; i < count; i++) {
        const Gemm *g = &products[i];
        plain_gemm_f32(g->trans_a, g->trans_b, g->m, g->n, g->k, g->alpha, g->A, g->lda, g->B, g->ldb, g->beta, g->C,
                       g->ldc);
    }
}
bool gemm_f32_splits_over_k(const Gemm *g, int threads) {
    (void)g;
    (void)threads;
    return false;
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

// OpenBLAS's own threads share the packed panels of a product and wait on
// each other for them (yielding the CPU: 2-3% of a training step in the
// scheduler, more on a busy machine). So the threads split a large product
// here instead, each calling OpenBLAS on its own part (inside a parallel
// region OpenBLAS runs on the calling thread alone) and packing its own copy
// of the operand the parts share: C's rows, or its columns when C is wider
// than tall (the weight gradients' OC x IC with OC < IC). Training steps
// 4-12% faster on 2 threads. The parts are fixed by the sizes and the thread
// count, so a run still repeats bitwise with the same threads (and with any
// where our kernel computes every part: gemm_avx512.h).

static bool worth_splitting(const Gemm *g, int threads) { return gemm_worth_splitting(g->m, g->n, g->k, threads); }

static void whole_product(const Gemm *g) {
    if (gemm_avx512_suits(g)) {
        gemm_avx512(g);
        return;
    }
    cblas_sgemm(CblasRowMajor, op(g->trans_a), op(g->trans_b), g->m, g->n, g->k, g->alpha, g->A, g->lda, g->B, g->ldb,
                g->beta, g->C, g->ldc);
}

static void product_part(const Gemm *g, int p, int parts) {
    const Gemm part = gemm_part(g, p, parts);
    if (part.m > 0 && part.n > 0) whole_product(&part);
}

// The weight gradients (dout^T x inp: A transposed, C = OC x IC small, k = the
// tokens long): split by rows of C, each thread packs all of op(B) (the layer's
// input) and its rows of A^T; split over k, each packs only its steps' part of
// both, but writes the sums of the kernel's blocks of k (GEMM_F32_BLOCK_K
// steps), each from 0 into a buffer, and after a barrier each thread adds its
// rows of C from them, blocks in order, exactly as gemm_avx512 adds its blocks
// on one thread: the same bits with any thread count, either way. The threads
// take the split that has each of them read and write fewer floats: on 2
// threads the rows (an `xs` weight gradient moves 2.6M floats a thread split by
// rows, 5.2M over k: alone 1.06x faster, whole `xs` steps 1.01x), on many the
// blocks of k (16 threads: 1.2M against 0.7M; not measured here). Over k too
// where a split by columns would leave parts our kernel does not take (narrower
// than 32 columns: OpenBLAS's would give other bits). The number of blocks, or
// 0 where the product is split by rows or columns (a single block, more than
// 16 MiB of blocks' sums, or fewer floats to move that way).
static int k_blocks(const Gemm *g, int threads) {
    const int blocks = (g->k + GEMM_F32_BLOCK_K - 1) / GEMM_F32_BLOCK_K;
    const bool suits =
        g->trans_a && gemm_avx512_suits(g) && blocks >= 2 && (size_t)blocks * g->m * g->n <= ((size_t)4 << 20);
    if (!suits) return 0;
    bool by_columns = false;  // the split gemm_part makes, and whether our kernel takes every part of it
    for (int p = 0; p < threads; p++) {
        const Gemm part = gemm_part(g, p, threads);
        if (part.m > 0 && part.n > 0 && !gemm_avx512_suits(&part)) return blocks;
        by_columns |= part.n < g->n;
    }
    const double m = g->m, n = g->n, k = g->k;
    const double over_k = (k * (m + n) + 2.0 * m * n * blocks) / threads;
    const double by_parts = by_columns ? k * (m + n / threads) : k * (m / threads + n);
    return over_k < by_parts ? blocks : 0;
}

bool gemm_f32_splits_over_k(const Gemm *g, int threads) {
    return gemm_worth_splitting(g->m, g->n, g->k, threads) && k_blocks(g, threads) > 0;
}

// Rows [i0, i1) of block b's sum, alpha op(A) op(B) over its steps, into sum
// (m x n, rows n apart).
static void sum_k_block_rows(const Gemm *g, int b, int i0, int i1, float *sum) {
    const int p0 = b * GEMM_F32_BLOCK_K, kc = g->k - p0 < GEMM_F32_BLOCK_K ? g->k - p0 : GEMM_F32_BLOCK_K;
    const Gemm block = {g->trans_a,
                        g->trans_b,
                        i1 - i0,
                        g->n,
                        kc,
                        g->alpha,
                        g->A + (size_t)p0 * g->lda + i0,  // op(A)'s rows are A's columns
                        g->lda,
                        g->trans_b ? g->B + p0 : g->B + (size_t)p0 * g->ldb,
                        g->ldb,
                        0.0f,
                        sum + (size_t)i0 * g->n,
                        g->n};
    gemm_avx512(&block);
}

// Part p of the blocks' sums: the blocks' rows taken in order, block by
// block, cut into equal shares (at multiples of 32 rows where a block has
// enough), so that every thread has as much to do whatever the number of
// blocks, and packs B only for the blocks its share meets. (Whole blocks to
// each thread left some with one block more than others: 3 against 2 with 5
// blocks on 2 threads, or 2 against 1 with 17 on 16.)
static void sum_k_blocks_part(const Gemm *g, int blocks, float *sums, int p, int parts) {
    const long long rows = (long long)blocks * g->m;
    const long long from = rows * p / parts, to = rows * (p + 1) / parts;
    for (int b = (int)(from / g->m); b < blocks && (long long)b * g->m < to; b++) {
        const long long first = (long long)b * g->m;
        const int i0 = from > first ? part_row(g->m, (int)(from - first)) : 0;
        const int i1 = to < first + g->m ? part_row(g->m, (int)(to - first)) : g->m;
        if (i0 < i1) sum_k_block_rows(g, b, i0, i1, sums + (size_t)b * g->m * g->n);
    }
}

// Rows [from, to) of C from the blocks' sums as gemm_avx512's tiles add them:
// the first block's sum + beta C (one fused multiply-add; C not read where
// beta is 0), then each next sum added.
static void add_k_blocks(const Gemm *g, int blocks, const float *sums, int from, int to) {
    const size_t block_floats = (size_t)g->m * g->n;
    for (int i = from; i < to; i++) {
        float *c = g->C + (size_t)i * g->ldc;
        const float *s = sums + (size_t)i * g->n;
        if (g->beta == 0.0f) memcpy(c, s, (size_t)g->n * sizeof(float));
        else
            for (int j = 0; j < g->n; j++) c[j] = fmaf(g->beta, c[j], s[j]);
        for (int b = 1; b < blocks; b++)
            for (int j = 0; j < g->n; j++) c[j] = s[b * block_floats + j] + c[j];
    }
}

// The calling thread's buffer of blocks' sums, grown when needed.
static float *k_block_sums(size_t floats) {
    static _Thread_local float *sums;
    static _Thread_local size_t capacity;
    if (floats > capacity) {
        free(sums);
        sums = xmalloc(floats * sizeof(float));
        capacity = floats;
    }
    return sums;
}

// Part p of every product worth splitting: its rows or columns, or its
// blocks of k (sums, the first of its blocks' sums); after_barrier, the
// rows p of C from those blocks.
static void run_parts(const Gemm *products, int count, int threads, int p, float *sums, bool after_barrier) {
    for (int i = 0; i < count; i++) {
        const Gemm *g = &products[i];
        if (!worth_splitting(g, threads)) continue;
        const int blocks = k_blocks(g, threads);
        if (after_barrier && blocks)
            add_k_blocks(g, blocks, sums, part_start(g->m, p, threads), part_start(g->m, p + 1, threads));
        else if (blocks) sum_k_blocks_part(g, blocks, sums, p, threads);
        else if (!after_barrier) product_part(g, p, threads);
        if (blocks) sums += (size_t)blocks * g->m * g->n;  // (sums is NULL when no product has blocks)
    }
}

// The products too small to split first, each whole; then one region for the
// rest: part p of each on thread p, and the parts of threads the team did not
// get (it may have fewer) on the threads it has; then, where a product was
// split over k, a barrier and its rows of C from the blocks' sums.
void gemm_f32_all(const Gemm *products, int count) {
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    int split = 0;
    size_t sum_floats = 0;
    for (int i = 0; i < count; i++) {
        if (!worth_splitting(&products[i], threads)) {
            whole_product(&products[i]);
            continue;
        }
        split++;
        sum_floats += (size_t)k_blocks(&products[i], threads) * products[i].m * products[i].n;
    }
    if (!split) return;
    float *sums = sum_floats ? k_block_sums(sum_floats) : NULL;
#pragma omp parallel num_threads(threads)
    {
        for (int p = omp_get_thread_num(); p < threads; p += omp_get_num_threads())
            run_parts(products, count, threads, p, sums, false);
        if (sums) {
#pragma omp barrier
            for (int p = omp_get_thread_num(); p < threads; p += omp_get_num_threads())
                run_parts(products, count, threads, p, sums, true);
        }
    }
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

const char *omp_wait_for(int others) {
    return others == 0 ? "GOMP_SPINCOUNT=" OMP_SPIN_TURNS : "OMP_WAIT_POLICY=passive";
}

// The fewest tasks other than this one that were runnable over ten looks at
// /proc/loadavg 2 ms apart (its fourth field, "running/total", counts this
// process), so that one that runs for a moment (a program starting at the
// other end of a pipe) does not count; -1 when the file cannot be read.
static int fewest_other_runnable(void) {
    int fewest = -1;
    for (int look = 0; look < 10 && fewest != 0; look++) {
        if (look) usleep(2000);
        FILE *f = fopen("/proc/loadavg", "r");
        if (!f) return -1;
        int running = 0;
        const bool read = fscanf(f, "%*f %*f %*f %d/", &running) == 1 && running >= 1;
        fclose(f);
        if (!read) return -1;
        if (fewest < 0 || running - 1 < fewest) fewest = running - 1;
    }
    return fewest;
}

// Two settings of the libraries that they read once, when they are loaded,
// before main; so the program starts again with them set (same process, same
// pid; by its own path, so that ps and pgrep still call it igpt). Each only
// when the user did not set it.
//
// OpenMP threads that reach the end of a parallel region first wait for the
// others. Sleeping at once (OMP_WAIT_POLICY=passive), each region costs two
// wake-ups, ~75 us on a virtual machine whose idle vCPUs halt (2 threads,
// dev/omp_region_bench.c), and a step of `tiny` has 47 regions (70 with bf16
// products): a seventh of it. Spinning, they take the cores a busy neighbour
// needs: beside one, `tiny` ran 1.3x faster with threads that sleep at once
// than with a short spin, and several times faster than with a long one. So
// when no other task was runnable as igpt started, its threads spin a little
// before they sleep (GOMP_SPINCOUNT=3000: ~75 us of PAUSE on Zen 5), and
// otherwise they sleep at once; OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the
// user is kept (README, "Threads on a shared machine").
//
// OpenBLAS gives a CPU whose model it does not know its oldest kernels, 3x
// slower; OPENBLAS_CORETYPE then names the ones the CPU can run (below). The
// test programs start the same way, so that they compute as ./igpt does.
void start_again_with_library_settings(char **argv) {
    const bool set_wait = !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT");
    const char *coretype = getenv("OPENBLAS_CORETYPE") ? NULL : blas_better_coretype();
    if (!set_wait && !coretype) return;
    char self[4096];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0 || len >= (ssize_t)sizeof self - 1) return;  // no /proc: the libraries' defaults
    self[len] = '\0';
    char wait[64] = "";
    if (set_wait) {  // "NAME=value" into the environment
        snprintf(wait, sizeof wait, "%s", omp_wait_for(fewest_other_runnable()));
        char *value = strchr(wait, '=');
        *value++ = '\0';
        if (setenv(wait, value, 1) != 0) return;
    }
    if (coretype && setenv("OPENBLAS_CORETYPE", coretype, 1) != 0) return;
    execv(self, argv);
    // Could not start again: the libraries' defaults, and nothing said to the children.
    if (set_wait) unsetenv(wait);
    if (coretype) unsetenv("OPENBLAS_CORETYPE");
}

const char *omp_wait_setting(void) {
    static char setting[96];
    const char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    if (spin && policy) snprintf(setting, sizeof setting, "OMP_WAIT_POLICY=%.30s GOMP_SPINCOUNT=%.30s", policy, spin);
    else if (spin) snprintf(setting, sizeof setting, "GOMP_SPINCOUNT=%.60s", spin);
    else if (policy) snprintf(setting, sizeof setting, "OMP_WAIT_POLICY=%.60s", policy);
    else snprintf(setting, sizeof setting, "libgomp's default");
    return setting;
}
