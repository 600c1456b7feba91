// Our own fp32 products (util/gemm_avx512.c) against sums in doubles, at the
// shapes where its blocking has edges: k across its blocks of 256 steps, C's
// rows across tiles of 6 and blocks of 384, its columns across panels of 64
// (and the 16 x 16 blocks of a transposed B's packing).
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "util/blas.h"
#include "util/gemm_avx512.h"

// alpha op(A) op(B) + beta C in doubles, and the largest |error| of C
// relative to the sum of |terms| of its element (the bound fp32 sums
// obey, about k x 2^-24 of it at worst).
static double worst_error(const Gemm *g, const float *c_before) {
    double worst = 0.0;
    for (int i = 0; i < g->m; i++)
        for (int j = 0; j < g->n; j++) {
            double sum = 0.0, magnitude = 0.0;
            for (int p = 0; p < g->k; p++) {
                const double a = g->trans_a ? g->A[(size_t)p * g->lda + i] : g->A[(size_t)i * g->lda + p];
                const double b = g->trans_b ? g->B[(size_t)j * g->ldb + p] : g->B[(size_t)p * g->ldb + j];
                sum += a * b;
                magnitude += fabs(a * b);
            }
            const double before = c_before[(size_t)i * g->ldc + j];
            const double want = g->alpha * sum + (g->beta == 0.0f ? 0.0 : g->beta * before);
            const double bound = fabs(g->alpha) * magnitude + fabs(g->beta * before) + 1e-30;
            const double error = fabs(g->C[(size_t)i * g->ldc + j] - want) / bound;
            if (!(error <= worst)) worst = error;  // NaN shows as NaN
        }
    return worst;
}

TEST(test_gemm_avx512_matches_double_sums) {
    Gemm probe = {.m = 1, .n = 64, .k = 1};
    if (!gemm_avx512_suits(&probe)) {
        test_skip("this build does not target AVX-512 (OpenBLAS computes every product)");
        return;
    }
    // m, n, k: tiles whole and partial, one row, blocks of k and rows crossed
    // (the last both at once: a transposed A is packed again for each).
    const int shapes[][3] = {{1, 32, 1},     {5, 33, 15},    {6, 64, 16},   {7, 65, 17},   {13, 127, 255},
                             {12, 128, 256}, {19, 100, 257}, {390, 70, 40}, {40, 96, 600}, {391, 70, 300}};
    const float alphas[] = {1.0f, 0.75f}, betas[] = {0.0f, 1.0f, 0.5f};
    Rng rng;
    rng_init(&rng, 23, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int trans = 0; trans < 4; trans++)
            for (int ab = 0; ab < 6; ab++) {
                const bool ta = trans & 1, tb = trans & 2;
                const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
                const size_t a_size = (size_t)(ta ? k : m) * lda, b_size = (size_t)(tb ? n : k) * ldb;
                const size_t c_size = (size_t)m * ldc;
                float *A = xmalloc(a_size * sizeof(float)), *B = xmalloc(b_size * sizeof(float));
                float *C = xmalloc(c_size * sizeof(float)), *before = xmalloc(c_size * sizeof(float));
                fill_uniform(A, a_size, 1.0f, &rng);
                fill_uniform(B, b_size, 1.0f, &rng);
                fill_uniform(C, c_size, 1.0f, &rng);
                const float beta = betas[ab % 3];
                if (beta == 0.0f) C[0] = NAN;  // beta = 0 must not read C
                memcpy(before, C, c_size * sizeof(float));
                const Gemm g = {ta, tb, m, n, k, alphas[ab / 3], A, lda, B, ldb, beta, C, ldc};
                gemm_avx512(&g);
                const double error = worst_error(&g, before);
                CHECK(error <= 1e-6 * (k + 2), "%dx%dx%d trans_a %d trans_b %d alpha %g beta %g: error %.2e", m, n, k,
                      ta, tb, g.alpha, beta, error);
                // The padding between rows (ldc > n) is not C's: left as it was.
                bool padding_kept = true;
                for (int i = 0; i < m; i++)
                    padding_kept &= !memcmp(C + (size_t)i * ldc + n, before + (size_t)i * ldc + n,
                                            (size_t)(ldc - n) * sizeof(float));
                CHECK(padding_kept, "%dx%dx%d trans_a %d trans_b %d: wrote past C's columns", m, n, k, ta, tb);
                free(A);
                free(B);
                free(C);
                free(before);
            }
}

// Each element sums its products in one order whatever the thread split, so
// gemm_f32 gives the same bits on 1 thread and on 3 where our products compute
// it: each transposition, and a weight gradient's shape (C small, k long) on
// 2, 3 and 4 threads, with beta 0, 1 and 0.3 and alpha 0.75 (the first
// block's fused multiply-add with beta C), split both ways (blas.c): by rows
// or columns of C, and over k, whose blocks the threads share and add in
// order (8, 3 and 2 blocks: the threads' shares cut blocks between rows, and
// fewer blocks than threads).
TEST(test_gemm_f32_same_bits_for_any_thread_count) {
    Gemm probe = {.m = 1, .n = 64, .k = 1};
    if (!gemm_avx512_suits(&probe)) {
        test_skip("this build does not target AVX-512: OpenBLAS's bits may depend on the split");
        return;
    }
    const int threads = omp_get_max_threads();
    const int m = 500, n = 300, k = 270;
    Rng rng;
    rng_init(&rng, 29, 0);
    float *A = xmalloc((size_t)m * k * sizeof(float)), *B = xmalloc((size_t)k * n * sizeof(float));
    float *C1 = xmalloc((size_t)m * n * sizeof(float)), *C3 = xmalloc((size_t)m * n * sizeof(float));
    fill_uniform(A, (size_t)m * k, 1.0f, &rng);
    fill_uniform(B, (size_t)k * n, 1.0f, &rng);
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        omp_set_num_threads(1);
        gemm_f32(ta, tb, m, n, k, 1.0f, A, ta ? m : k, B, tb ? k : n, 0.0f, C1, n);
        omp_set_num_threads(3);
        gemm_f32(ta, tb, m, n, k, 1.0f, A, ta ? m : k, B, tb ? k : n, 0.0f, C3, n);
        CHECK(!memcmp(C1, C3, (size_t)m * n * sizeof(float)), "trans_a %d trans_b %d: 1 and 3 threads differ", ta, tb);
    }
    // dW (oc x 70) += dout^T inp over up to 2001 positions: 8, 3 or 2 blocks of k.
    const int max_oc = 100, ic = 70, max_tokens = 2001;
    float *dout = xmalloc((size_t)max_tokens * max_oc * sizeof(float));
    float *inp = xmalloc((size_t)max_tokens * ic * sizeof(float));
    fill_uniform(dout, (size_t)max_tokens * max_oc, 1.0f, &rng);
    fill_uniform(inp, (size_t)max_tokens * ic, 1.0f, &rng);
    const float betas[] = {0.0f, 1.0f, 0.3f};
    const int shapes[][2] = {{40, 2001}, {100, 700}, {40, 300}, {100, 300}};  // oc, tokens
    bool split_over_k = false, split_by_rows = false;
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < 3; i++)
            for (int t = 2; t <= 4; t++) {
                const int oc = shapes[s][0], tokens = shapes[s][1];
                fill_uniform(C1, (size_t)oc * ic, 1.0f, &rng);
                memcpy(C3, C1, (size_t)oc * ic * sizeof(float));
                omp_set_num_threads(1);
                gemm_f32(true, false, oc, ic, tokens, 0.75f, dout, oc, inp, ic, betas[i], C1, ic);
                omp_set_num_threads(t);
                gemm_f32(true, false, oc, ic, tokens, 0.75f, dout, oc, inp, ic, betas[i], C3, ic);
                CHECK(!memcmp(C1, C3, (size_t)oc * ic * sizeof(float)),
                      "d(weight) %d x %d x %d, beta %g: 1 and %d threads differ", oc, ic, tokens, betas[i], t);
                const Gemm g = {true, false, oc, ic, tokens, 0.75f, dout, oc, inp, ic, betas[i], C3, ic};
                if (!gemm_worth_splitting(oc, ic, tokens, t)) continue;
                if (gemm_f32_splits_over_k(&g, t)) split_over_k = true;
                else split_by_rows = true;
            }
    CHECK(split_over_k && split_by_rows, "the weight gradients' shapes split over k (%d) and by rows (%d)",
          split_over_k, split_by_rows);
    omp_set_num_threads(threads);
    free(A);
    free(B);
    free(C1);
    free(C3);
    free(dout);
    free(inp);
}
