// bf16 matrix products (gemm_bf16.h): our own kernel (gemm_bf16_avx512.c)
// where the CPU has AVX512-BF16, split over the threads here; and the rounding
// of their operands.
#include "util/gemm_bf16.h"

#include <omp.h>
#include <string.h>

#include "util/bf16_simd.h"
#include "util/gemm_bf16_avx512.h"
#include "util/util.h"

bool cpu_has_avx512_bf16(void) {
    // Asked by every block of the bf16 model's rounding: the answer is kept (relaxed atomics: every thread finds
    // the same).
    static int known = -1;
    int has = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
        __atomic_store_n(&known, has, __ATOMIC_RELAXED);
    }
    return has;
}

BF16_TARGET static void round_rows_fast(uint16_t *out, const float *x, size_t ld, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * ld;
        uint16_t *row_out = out + r * ld;
        const size_t whole = cols / 16 * 16;
        for (size_t i = 0; i < whole; i += 16) {
            const __m512 v = _mm512_loadu_ps(row + i);
            store16_bf16(row_out + i, &v, true);
        }
        for (size_t i = whole; i < cols; i++) row_out[i] = bf16_from_float(row[i]);
    }
}

// rows x cols values, rows ld apart in x and in out, on the calling thread.
static void round_rows(uint16_t *out, const float *x, size_t ld, size_t rows, size_t cols) {
    if (cpu_has_avx512_bf16()) {
        round_rows_fast(out, x, ld, rows, cols);
        return;
    }
    for (size_t r = 0; r < rows; r++)
#pragma omp simd
        for (size_t i = 0; i < cols; i++) out[r * ld + i] = bf16_from_float(x[r * ld + i]);
}

void round_span_to_bf16(uint16_t *out, const float *x, size_t n) { round_rows(out, x, n, 1, n); }

// A part of the rows per thread.
void round_rows_to_bf16(uint16_t *out, const float *x, size_t ld, size_t rows, size_t cols, int threads) {
    if (rows * cols < 65536 || threads < 2) {
        round_rows(out, x, ld, rows, cols);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const size_t parts = (size_t)omp_get_num_threads(), p = (size_t)omp_get_thread_num();
        const size_t from = rows * p / parts, to = rows * (p + 1) / parts;
        round_rows(out + from * ld, x + from * ld, ld, to - from, cols);
    }
}

// As rows of 1,024 (the threads share the rows), the last n mod 1,024 after.
void round_to_bf16(uint16_t *out, const float *x, size_t n, int threads) {
    enum { ROW = 1024 };
    const size_t rows = n / ROW;
    round_rows_to_bf16(out, x, ROW, rows, ROW, threads);
    round_span_to_bf16(out + rows * ROW, x + rows * ROW, n - rows * ROW);
}

// Where the CPU lacks AVX512-BF16 (the tests' path there: right, slow): each
// element's exact products summed in fp32, in order.
static void plain_product(const GemmBf16 *g) {
    for (int i = 0; i < g->m; i++)
        for (int j = 0; j < g->n; j++) {
            float sum = 0.0f;
            for (int p = 0; p < g->k; p++) {
                const uint16_t a = g->trans_a ? g->A[(size_t)p * g->lda + i] : g->A[(size_t)i * g->lda + p];
                const uint16_t b = g->trans_b ? g->B[(size_t)j * g->ldb + p] : g->B[(size_t)p * g->ldb + j];
                sum += bf16_to_float(a) * bf16_to_float(b);
            }
            if (g->C_bf16) {
                g->C_bf16[(size_t)i * g->ldc + j] = bf16_from_float(sum);
                continue;
            }
            float *c = g->C + (size_t)i * g->ldc + j;
            *c = g->beta != 0.0f ? *c + sum : sum;
        }
}

static void whole_product(const GemmBf16 *g) {
    if (cpu_has_avx512_bf16()) gemm_bf16_avx512(g);
    else plain_product(g);
}

// Part p of `parts`, as gemm_f32 splits its products (util/gemm.h); its C
// in C or in C_bf16, whichever the product writes.
static GemmBf16 product_part(const GemmBf16 *g, int p, int parts) {
    const GemmPartAt at = gemm_part_at(g->m, g->n, g->trans_a, g->trans_b, g->lda, g->ldb, g->ldc, p, parts);
    GemmBf16 part = *g;
    part.m = at.m;
    part.n = at.n;
    part.A = g->A + at.a;
    part.B = g->B + at.b;
    part.C = g->C ? g->C + at.c : NULL;
    part.C_bf16 = g->C_bf16 ? g->C_bf16 + at.c : NULL;
    return part;
}

static bool worth_splitting(const GemmBf16 *g, int threads) { return gemm_worth_splitting(g->m, g->n, g->k, threads); }

static void check_product(const GemmBf16 *g) {
    if (g->beta != 0.0f && g->beta != 1.0f) die("internal: gemm_bf16 takes beta 0 or 1, got %g", g->beta);
    if (!g->C == !g->C_bf16) die("internal: gemm_bf16 writes C or C_bf16, one of them");
    if (g->C_bf16 && (g->beta != 0.0f || g->k > GEMM_BF16_BLOCK_K))
        die("internal: gemm_bf16 rounds C into C_bf16 only with beta 0 and k <= %d (k = %d)", GEMM_BF16_BLOCK_K, g->k);
}

// As gemm_f32_all (util/blas.c): the products not worth splitting first, each
// whole; then one region for the rest, part p of each on thread p.
void gemm_bf16_all(const GemmBf16 *products, int count) {
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    int split = 0;
    for (int i = 0; i < count; i++) {
        check_product(&products[i]);
        if (products[i].m <= 0 || products[i].n <= 0) continue;
        if (worth_splitting(&products[i], threads)) split++;
        else whole_product(&products[i]);
    }
    if (!split) return;
#pragma omp parallel num_threads(threads)
    for (int p = omp_get_thread_num(); p < threads; p += omp_get_num_threads())
        for (int i = 0; i < count; i++)
            if (products[i].m > 0 && products[i].n > 0 && worth_splitting(&products[i], threads)) {
                const GemmBf16 part = product_part(&products[i], p, threads);
                if (part.m > 0 && part.n > 0) whole_product(&part);
            }
}

const char *gemm_bf16_unavailable(void) {
    if (!cpu_has_avx512_bf16())
        return "this CPU has no AVX512-BF16, so bf16 products would be emulated, slower than fp32 (use --precision "
               "fp32)";
    return NULL;
}

void gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, const uint16_t *A, int lda, const uint16_t *B, int ldb,
               float beta, float *C, int ldc) {
    const GemmBf16 g = {trans_a, trans_b, m, n, k, A, lda, B, ldb, beta, C, ldc};
    gemm_bf16_all(&g, 1);
}
