// What a GPU-only build (make GPU_ONLY=1) uses in place of the libraries a
// bare GPU machine lacks, checked here against those libraries: the plain
// matrix products against OpenBLAS, the table CRC-32 against zlib, the scan
// of log lines against cJSON.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "test.h"
#include "util/blas.h"
#include "util/json.h"

// Largest |a - b| over the m x n block, relative to the largest |b|.
static double block_rel_diff(const float *a, const float *b, int m, int n, int ld) {
    double diff = 0.0, scale = 1e-30;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            const double x = a[(size_t)i * ld + j], y = b[(size_t)i * ld + j];
            if (!(fabs(x - y) <= diff)) diff = fabs(x - y);  // NaN shows as NaN
            scale = fmax(scale, fabs(y));
        }
    return diff / scale;
}

// Every transposition, odd sizes, leading dimensions wider than the rows
// (sub-matrices, as attention uses), alpha and beta as the callers pass them,
// and products big enough to be split across threads: by C's rows (130 x 120)
// and by its columns (60 x 200), in 3 parts, so that they are uneven.
TEST(test_plain_gemm_matches_openblas) {
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 9, 33}, {64, 48, 40}, {130, 120, 100}, {60, 200, 100}};
    const int threads = omp_get_max_threads();
    omp_set_num_threads(3);
    const float betas[] = {0.0f, 1.0f, 0.5f};
    Rng rng;
    rng_init(&rng, 7, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int trans = 0; trans < 4; trans++)
            for (int bi = 0; bi < 3; bi++) {
                const bool ta = trans & 1, tb = trans & 2;
                const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
                const size_t a_size = (size_t)(ta ? k : m) * lda, b_size = (size_t)(tb ? n : k) * ldb;
                float *A = xmalloc(a_size * sizeof(float)), *B = xmalloc(b_size * sizeof(float));
                float *C = xmalloc((size_t)m * ldc * sizeof(float)), *ref = xmalloc((size_t)m * ldc * sizeof(float));
                fill_uniform(A, a_size, 1.0f, &rng);
                fill_uniform(B, b_size, 1.0f, &rng);
                fill_uniform(ref, (size_t)m * ldc, 1.0f, &rng);
                // beta = 0 must not read C: NaN there stays out of the result.
                if (betas[bi] == 0.0f) ref[0] = NAN;
                memcpy(C, ref, (size_t)m * ldc * sizeof(float));
                gemm_f32(ta, tb, m, n, k, 0.75f, A, lda, B, ldb, betas[bi], ref, ldc);
                plain_gemm_f32(ta, tb, m, n, k, 0.75f, A, lda, B, ldb, betas[bi], C, ldc);
                const double d = block_rel_diff(C, ref, m, n, ldc);
                CHECK(d <= 1e-5, "f32 %dx%dx%d trans_a %d trans_b %d beta %g: relative difference %.2e", m, n, k, ta,
                      tb, betas[bi], d);
                free(A);
                free(B);
                free(C);
                free(ref);
            }
    omp_set_num_threads(threads);
}

// Several products in one region (gemm_f32_all) give each product's bits
// from gemm_f32 alone: one split by C's rows, one by its columns, one too
// small to split, on 3 threads.
TEST(test_gemm_all_matches_separate_products) {
    const int threads = omp_get_max_threads();
    omp_set_num_threads(3);
    const int shapes[][3] = {{130, 120, 100}, {60, 200, 100}, {5, 7, 9}};
    enum { COUNT = 3 };
    Gemm all[COUNT];
    float *alone[COUNT];
    Rng rng;
    rng_init(&rng, 11, 0);
    for (int i = 0; i < COUNT; i++) {
        const int m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
        const bool ta = i == 1, tb = i != 1;
        float *A = xmalloc((size_t)m * k * sizeof(float)), *B = xmalloc((size_t)k * n * sizeof(float));
        float *C = xmalloc((size_t)m * n * sizeof(float));
        fill_uniform(A, (size_t)m * k, 1.0f, &rng);
        fill_uniform(B, (size_t)k * n, 1.0f, &rng);
        fill_uniform(C, (size_t)m * n, 1.0f, &rng);
        alone[i] = xmalloc((size_t)m * n * sizeof(float));
        memcpy(alone[i], C, (size_t)m * n * sizeof(float));
        all[i] = (Gemm){ta, tb, m, n, k, 0.5f, A, ta ? m : k, B, tb ? k : n, 1.0f, C, n};
        gemm_f32(ta, tb, m, n, k, 0.5f, A, ta ? m : k, B, tb ? k : n, 1.0f, alone[i], n);
    }
    gemm_f32_all(all, COUNT);
    for (int i = 0; i < COUNT; i++) {
        CHECK(!memcmp(all[i].C, alone[i], (size_t)all[i].m * all[i].n * sizeof(float)),
              "product %d (%dx%dx%d) in one region differs from gemm_f32 alone", i, all[i].m, all[i].n, all[i].k);
        free((float *)all[i].A);
        free((float *)all[i].B);
        free(all[i].C);
        free(alone[i]);
    }
    omp_set_num_threads(threads);
}

TEST(test_plain_gemm_f64_matches_openblas) {
    Rng rng;
    rng_init(&rng, 8, 0);
    const int m = 37, n = 10, k = 129;
    for (int trans = 0; trans < 4; trans++) {
        const bool ta = trans & 1, tb = trans & 2;
        const int lda = ta ? m : k, ldb = tb ? k : n;
        double *A = xmalloc((size_t)m * k * sizeof(double)), *B = xmalloc((size_t)k * n * sizeof(double));
        double *C = xcalloc((size_t)m * n, sizeof(double)), *ref = xcalloc((size_t)m * n, sizeof(double));
        for (int i = 0; i < m * k; i++) A[i] = rng_normal(&rng);
        for (int i = 0; i < k * n; i++) B[i] = rng_normal(&rng);
        gemm_f64(ta, tb, m, n, k, 1.0, A, lda, B, ldb, 0.0, ref, n);
        plain_gemm_f64(ta, tb, m, n, k, 1.0, A, lda, B, ldb, 0.0, C, n);
        double worst = 0.0;
        for (int i = 0; i < m * n; i++) worst = fmax(worst, fabs(C[i] - ref[i]));
        CHECK(worst <= 1e-11, "f64 trans_a %d trans_b %d: largest difference %.2e", ta, tb, worst);
        free(A);
        free(B);
        free(C);
        free(ref);
    }
}

TEST(test_plain_crc32_matches_zlib) {
    CHECK(crc32_plain_update(0, "123456789", 9) == 0xCBF43926u, "the CRC-32 check value of \"123456789\"");
    uint8_t data[4099];
    Rng rng;
    rng_init(&rng, 9, 0);
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)rng_below(&rng, 256);
    const size_t lengths[] = {0, 1, 2, 7, 64, 1000, sizeof data};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        const uint32_t want = (uint32_t)crc32(0, data, (uInt)lengths[i]);
        CHECK(crc32_plain_update(0, data, lengths[i]) == want, "%zu bytes", lengths[i]);
    }
    // Continued in pieces, as checkpoints are (parameters, then Adam's moments).
    uint32_t pieces = crc32_plain_update(0, data, 1000);
    pieces = crc32_plain_update(pieces, data + 1000, sizeof data - 1000);
    CHECK(pieces == (uint32_t)crc32(0, data, sizeof data), "continued from a CRC");
}

// Lines as ./igpt train writes log.jsonl, read by the scan and by cJSON.
TEST(test_json_scan_number_matches_cjson) {
    const char *lines[] = {
        "{\"step\": 12, \"loss\": 3.25, \"bits_per_token\": 4.69, \"lr\": 0.003, \"grad_norm\": 1.5e-02}\n",
        "{\"step\": 200, \"val_loss\": 2.75}\n",
        "{\"step\": 300, \"checkpoint\": \"checkpoint-00000300.bin\"}\n",
        "{\"steps\": 5, \"loss\": null, \"lr\": -1e-3}\n",
        "not json at all\n",
    };
    const char *keys[] = {"step", "loss", "val_loss", "lr", "grad_norm", "missing"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const size_t len = strlen(lines[i]);
            const double scan = json_scan_number(lines[i], len, keys[k]);
            const double parsed = json_line_number(lines[i], len, keys[k]);
            CHECK(scan == parsed || (isnan(scan) && isnan(parsed)), "line %zu, %s: scan %g, cJSON %g", i, keys[k], scan,
                  parsed);
        }
    // The scan stops at the line's end, even when the text goes on.
    const char *two = "{\"step\": 1}\n{\"step\": 2}\n";
    CHECK(isnan(json_scan_number(two, 4, "step")), "a key past the line's end is not read");
}
