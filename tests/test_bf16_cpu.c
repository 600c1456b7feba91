// The CPU's bf16 products (--device cpu --precision bf16, util/gemm_bf16.h):
// the rounding against a rounding done another way, the products against
// double sums of the same bf16 values, and the whole model and 50 training
// steps against the fp32 reference within the GPU's bf16 tolerances
// (tests/cuda/test_model.cu, docs/cuda.md "Tolerances").
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/cpu_ops.h"
#include "model/model.h"
#include "model/params.h"
#include "test.h"
#include "train/optim.h"
#include "util/gemm_bf16.h"

static float float_of_bits(uint32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

// The nearest bf16 found by distance: the two bf16 values around x (x's bits
// cut to 16, and one step away from zero) compared in double, a tie going to
// the even one; past the largest bf16, infinity. Finite x only.
static uint16_t nearest_bf16_by_distance(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    const uint16_t below = (uint16_t)(bits >> 16), above = (uint16_t)(below + 1);
    // Past the largest bf16 the step up is 2^128 as an unbounded exponent has it
    // (IEEE 754: rounded so, then overflowed to infinity).
    const bool above_is_inf = (above & 0x7fffu) == 0x7f80u;
    const double above_value = above_is_inf ? copysign(ldexp(1.0, 128), x) : bf16_to_float(above);
    const double to_below = fabs((double)x - bf16_to_float(below)), to_above = fabs(above_value - (double)x);
    if (to_below != to_above) return to_below < to_above ? below : above;
    return (below & 1) ? above : below;
}

TEST(test_round_to_bf16_is_nearest_ties_to_even) {
    enum { N = 200000 };
    float *x = xmalloc(N * sizeof(float));
    uint16_t *got = xmalloc(N * sizeof(uint16_t));
    Rng rng;
    rng_init(&rng, 5, 0);
    const uint32_t edges[] = {0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u,
                              0xbf808000u, 0x7f7fffffu, 0x7f7f8000u, 0x00800000u, 0x80000000u};
    const int num_edges = (int)(sizeof edges / sizeof edges[0]);
    for (int i = 0; i < N; i++) {
        uint32_t bits = i < num_edges ? edges[i] : (uint32_t)rng_below(&rng, 1u << 31) * 2u + (uint32_t)(i & 1);
        if ((bits & 0x7f800000u) == 0x7f800000u) bits &= 0xbfffffffu;  // finite only here; inf and NaN below
        // No subnormals: the tests run as ./igpt does, with them flushed to zero (flush_denormals_to_zero), which
        // would make the reference's double arithmetic see 0 where the rounding sees their bits.
        if ((bits & 0x7f800000u) == 0 && (bits & 0x7fffffu)) bits |= 0x00800000u;
        x[i] = float_of_bits(bits);
    }
    round_to_bf16(got, x, N, 2);
    int wrong = 0, first_wrong = -1;
    for (int i = 0; i < N; i++)
        if (got[i] != nearest_bf16_by_distance(x[i]) && wrong++ == 0) first_wrong = i;
    CHECK(wrong == 0, "%d of %d roundings differ from the nearest bf16; first: %a -> 0x%04x, want 0x%04x", wrong, N,
          first_wrong >= 0 ? x[first_wrong] : 0.0f, first_wrong >= 0 ? got[first_wrong] : 0,
          first_wrong >= 0 ? nearest_bf16_by_distance(x[first_wrong]) : 0);
    // Ties: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 and goes to the even 1;
    // 1 + 3 * 2^-8 goes up to the even 1 + 2^-6; past the largest bf16 is inf.
    CHECK(got[1] == 0x3f80 && got[2] == 0x3f82 && got[6] == 0x7f80, "ties to even and overflow: 0x%04x 0x%04x 0x%04x",
          got[1], got[2], got[6]);
    const float specials[] = {INFINITY, -INFINITY, NAN, float_of_bits(0x7f800001u), float_of_bits(0xffffffffu)};
    uint16_t out[5];
    round_to_bf16(out, specials, 5, 1);
    CHECK(out[0] == 0x7f80 && out[1] == 0xff80, "infinities stay: 0x%04x 0x%04x", out[0], out[1]);
    for (int i = 2; i < 5; i++)
        CHECK(isnan(bf16_to_float(out[i])), "NaN %d stays NaN (a carry would make it inf): 0x%04x", i, out[i]);
    free(x);
    free(got);
}

// round_to_bf16 gives bf16_from_float's bits on every class of float: each
// sign, exponent and top mantissa half (65,536 patterns), each with low halves
// below, at and above the tie and at the ends, subnormals and NaNs included,
// on a length with a partial last vector. Where the CPU has AVX512-BF16 this
// checks vcvtneps2bf16's path (util/bf16_simd.h), whose instruction takes a
// subnormal as zero: the vectors with one must take the long way.
TEST(test_round_to_bf16_gives_bf16_from_float_bits) {
    static const uint32_t lows[] = {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu};
    enum { HIGHS = 1 << 16, LOWS = sizeof lows / sizeof lows[0], N = HIGHS * LOWS - 5 };
    float *x = xmalloc(N * sizeof(float));
    uint16_t *got = xmalloc(N * sizeof(uint16_t));
    for (int i = 0; i < N; i++) x[i] = float_of_bits((uint32_t)(i / LOWS) << 16 | lows[i % LOWS]);
    round_to_bf16(got, x, N, 2);
    int wrong = 0, first_wrong = -1;
    for (int i = 0; i < N; i++)
        if (got[i] != bf16_from_float(x[i]) && wrong++ == 0) first_wrong = i;
    uint32_t bits = 0;
    if (first_wrong >= 0) memcpy(&bits, &x[first_wrong], sizeof bits);
    CHECK(wrong == 0, "%d of %d roundings differ from bf16_from_float; first: 0x%08x -> 0x%04x, want 0x%04x", wrong, N,
          bits, first_wrong >= 0 ? got[first_wrong] : 0, first_wrong >= 0 ? bf16_from_float(x[first_wrong]) : 0);
    free(x);
    free(got);
}

// Without flushing (MXCSR's FTZ and DAZ off on both threads), GELU's outputs
// for inputs around FLT_MIN are subnormal: its rounding, which skips the
// subnormal check only where results are flushed (util/bf16_simd.h), must
// still give round_to_bf16's bits of gelu_forward's values.
TEST(test_bf16_gelu_rounding_without_flushing) {
    enum { N = 16 * 8 + 3 };
    float x[N], want[N];
    uint16_t got[N], rounded[N];
    // x normal, just above FLT_MIN; x sigmoid(1.702 x) ~ x / 2 below it.
    for (int i = 0; i < N; i++) x[i] = (i % 3 ? 1.0f : -1.0f) * ldexpf(1.0f + (float)i / 256.0f, -126);
    // Both ways OpenMP runtimes treat MXCSR: clang's libomp hands the
    // master's to its workers at every fork (and puts back the master's own at
    // the join, so setting it inside a region does not last); gcc's libgomp
    // leaves each thread its own, so the workers set theirs.
    const unsigned saved_master = _mm_getcsr();
    _mm_setcsr(saved_master & ~0x8040u);
    unsigned saved[2] = {0, 0};
#pragma omp parallel num_threads(2)
    {
        const int t = omp_get_thread_num();
        saved[t] = _mm_getcsr();
        _mm_setcsr(saved[t] & ~0x8040u);
    }
    gelu_forward(want, x, N, 2);
    gelu_forward_bf16(got, x, NULL, N, 2);
#pragma omp parallel num_threads(2)
    _mm_setcsr(saved[omp_get_thread_num()]);
    _mm_setcsr(saved_master);
    round_to_bf16(rounded, want, N, 1);
    int subnormal = 0;  // on the bits: with DAZ back on, a comparison would see a subnormal as 0
    for (int i = 0; i < N; i++) {
        uint32_t bits;
        memcpy(&bits, &want[i], sizeof bits);
        subnormal += (bits & 0x7f800000u) == 0 && (bits & 0x7fffffu) != 0;
    }
    CHECK(subnormal == N, "only %d of %d outputs are subnormal: flushing still on?", subnormal, N);
    CHECK(!memcmp(got, rounded, sizeof got), "GELU's rounding differs from round_to_bf16 around subnormals");
}

// The bf16 model's producers round as they write (GELU forward and
// backward, the norms, the loss's gradient): each gives round_to_bf16's bits
// of the fp32 values its fp32 twin writes, on a length with a partial last
// vector. The loss's gradient with scale 1 passes the probabilities through
// unchanged (minus 1 at the target), and GELU's gradient at x = 0 is dout / 2
// exactly (a tie stays a tie): through them the edges of the rounding (ties,
// the largest finite values, infinities, NaN) reach the fused rounding.
static void fill_normal(float *x, size_t n, float mean, float std, Rng *rng) {
    for (size_t i = 0; i < n; i++) x[i] = mean + std * (float)rng_normal(rng);
}

TEST(test_fused_bf16_rounding_matches_round_to_bf16) {
    enum { N = 16 * 13 + 7 };
    Rng rng;
    rng_init(&rng, 41, 0);
    // The NaNs: a carry would make 0x7fffffff -0 and 0xffffffff +0.
    const uint32_t edges[] = {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0xbf808000u, 0x7f7fffffu,
                              0x7f7f8000u, 0x7f800000u, 0xff800000u, 0x7fc00001u, 0x7fffffffu, 0xffffffffu};
    const int num_edges = (int)(sizeof edges / sizeof edges[0]);
    float *x = xmalloc(N * sizeof(float)), *dy = xmalloc(N * sizeof(float)), *want = xmalloc(N * sizeof(float));
    uint16_t *got = xmalloc(N * sizeof(uint16_t)), *rounded = xmalloc(N * sizeof(uint16_t));
    fill_normal(x, N, 0, 3, &rng);
    fill_normal(dy, N, 0, 1, &rng);
    int mismatches = 0;
    // GELU forward; then backward with x = 0 on the first entries, dout twice an edge value.
    gelu_forward(want, x, N, 2);
    gelu_forward_bf16(got, x, NULL, N, 2);
    round_to_bf16(rounded, want, N, 1);
    mismatches += memcmp(got, rounded, N * sizeof(uint16_t)) != 0;
    for (int i = 0; i < num_edges; i++) {
        x[i] = 0.0f;
        dy[i] = float_of_bits(edges[i]);
    }
    gelu_backward(want, x, dy, N, 2);
    gelu_backward_bf16(got, x, NULL, dy, N, 2);
    round_to_bf16(rounded, want, N, 1);
    mismatches += 2 * (memcmp(got, rounded, N * sizeof(uint16_t)) != 0);
    for (int i = 0; i < num_edges; i++)
        CHECK(want[i] == 0.5f * float_of_bits(edges[i]) || isnan(want[i]), "GELU's gradient at 0 is dout / 2 (%d)", i);
    // The loss's gradient: rows of V = 29 (a partial vector), edges among the probabilities.
    enum { V = 29, ROWS = N / V };
    const uint16_t targets[ROWS] = {0, 28, 5, 16, 17, 3, 9};
    memcpy(want, dy, N * sizeof(float));
    for (int i = 0; i < num_edges; i++) want[i + 1] = float_of_bits(edges[i]);
    memcpy(x, want, N * sizeof(float));
    softmax_crossentropy_backward_bf16(got, x, targets, ROWS, V, 1.0f, 2);
    softmax_crossentropy_backward(want, targets, ROWS, V, 1.0f, 2);
    round_to_bf16(rounded, want, (size_t)ROWS * V, 1);
    mismatches += 4 * (memcmp(got, rounded, (size_t)ROWS * V * sizeof(uint16_t)) != 0);
    // The norms: 9 rows of C = 23.
    fill_normal(x, N, 0.5f, 2, &rng);
    float gain[23], mean[9], rstd[9], copy[9 * 23];
    for (int c = 0; c < 23; c++) gain[c] = 1.0f + 0.01f * (float)c;
    norm_forward_rounded(NORM_LAYERNORM, want, got, mean, rstd, x, copy, gain, gain, 9, 23, 2);
    round_to_bf16(rounded, want, 9 * 23, 1);
    mismatches += 8 * (memcmp(got, rounded, 9 * 23 * sizeof(uint16_t)) != 0);
    mismatches += 16 * (memcmp(copy, x, sizeof copy) != 0);
    // The norm's backward pass: dinp (added to) and its rounded copy.
    float dinp[9 * 23], dgain[23] = {0}, dbias[23] = {0};
    fill_normal(dinp, 9 * 23, 0, 1, &rng);
    memset(got, 0xff, 9 * 23 * sizeof(uint16_t));
    norm_backward_rounded(NORM_LAYERNORM, dinp, got, dgain, dbias, dy, x, mean, rstd, gain, 9, 23, 2);
    round_to_bf16(rounded, dinp, 9 * 23, 1);
    mismatches += 32 * (memcmp(got, rounded, 9 * 23 * sizeof(uint16_t)) != 0);
    CHECK(mismatches == 0,
          "fused rounding differs from round_to_bf16 (1: GELU, 2: its gradient, 4: the loss's, 8: norm, 32: its "
          "gradient; 16: the norm's copy of its input differs from it)"
          ": %d",
          mismatches);
    free(x);
    free(dy);
    free(want);
    free(got);
    free(rounded);
}

// GELU from a bf16 input (the bf16 model's fc, as its product writes it): the
// bits of the same GELU given the input's values as floats, forward and
// backward, on a length with a partial last vector.
TEST(test_bf16_gelu_from_bf16_input) {
    enum { N = 16 * 9 + 5 };
    Rng rng;
    rng_init(&rng, 43, 0);
    float x[N], dy[N];
    uint16_t x_bf16[N], got[N], want[N];
    fill_normal(x, N, 0, 3, &rng);
    fill_normal(dy, N, 0, 1, &rng);
    round_to_bf16(x_bf16, x, N, 1);
    for (int i = 0; i < N; i++) x[i] = bf16_to_float(x_bf16[i]);
    gelu_forward_bf16(got, NULL, x_bf16, N, 2);
    gelu_forward_bf16(want, x, NULL, N, 2);
    CHECK(!memcmp(got, want, sizeof got), "GELU from bf16 differs from GELU of the same values as floats");
    gelu_backward_bf16(got, NULL, x_bf16, dy, N, 2);
    gelu_backward_bf16(want, x, NULL, dy, N, 2);
    CHECK(!memcmp(got, want, sizeof got), "GELU's gradient from bf16 differs from that of the same values as floats");
}

// op(A) op(B) in double from the bf16 values, A and B stored as gemm_bf16 reads them.
static double reference_entry(bool trans_a, bool trans_b, int i, int j, int k, const uint16_t *A, int lda,
                              const uint16_t *B, int ldb, double *magnitude) {
    double sum = 0.0, size = 0.0;
    for (int p = 0; p < k; p++) {
        const double a = bf16_to_float(trans_a ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]);
        const double b = bf16_to_float(trans_b ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]);
        sum += a * b;
        size += fabs(a * b);
    }
    *magnitude = size;
    return sum;
}

// A bf16 NaN: in the padding of A's and B's rows, where a product that read
// past op(A)'s or op(B)'s last step (the partner of an odd k's lone step)
// would turn C into NaN.
enum { BF16_NAN = 0x7fc0 };

static void check_product(bool trans_a, bool trans_b, int m, int n, int k, float beta, Rng *rng) {
    const int pad = 3;  // leading dimensions wider than the matrices
    const int a_rows = trans_a ? k : m, a_cols = trans_a ? m : k, b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    const int lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
    float *a32 = xmalloc((size_t)a_rows * lda * sizeof(float)), *b32 = xmalloc((size_t)b_rows * ldb * sizeof(float));
    uint16_t *A = xmalloc((size_t)a_rows * lda * sizeof(uint16_t)), *B = xmalloc((size_t)b_rows * ldb * 2);
    float *C = xmalloc((size_t)m * ldc * sizeof(float)), *before = xmalloc((size_t)m * ldc * sizeof(float));
    for (size_t i = 0; i < (size_t)a_rows * lda; i++) a32[i] = (float)rng_normal(rng);
    for (size_t i = 0; i < (size_t)b_rows * ldb; i++) b32[i] = (float)rng_normal(rng);
    for (size_t i = 0; i < (size_t)m * ldc; i++) before[i] = C[i] = (float)rng_normal(rng);
    round_to_bf16(A, a32, (size_t)a_rows * lda, 2);
    round_to_bf16(B, b32, (size_t)b_rows * ldb, 2);
    for (int r = 0; r < a_rows; r++)
        for (int c = a_cols; c < lda; c++) A[(size_t)r * lda + c] = BF16_NAN;
    for (int r = 0; r < b_rows; r++)
        for (int c = b_cols; c < ldb; c++) B[(size_t)r * ldb + c] = BF16_NAN;
    if (beta == 0.0f) C[0] = C[(size_t)(m - 1) * ldc + n - 1] = NAN;  // not read: beta 0 overwrites
    gemm_bf16(trans_a, trans_b, m, n, k, A, lda, B, ldb, beta, C, ldc);
    // Tolerance: k exact products (bf16 x bf16 fits in fp32) and C, summed in
    // fp32 in any order and blocking, err by at most (k + 1) 2^-24 of the sum
    // of their sizes (to first order). Leaving out one of k similar terms
    // errs by about 1/k of it: 2^24 / k^2 times the tolerance (16 at k = 1030).
    const double tolerance = (k + 2) * 0x1p-24;
    double worst = 0.0;
    bool padding_kept = true;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double size;
            const double want = reference_entry(trans_a, trans_b, i, j, k, A, lda, B, ldb, &size) +
                                (beta != 0.0f ? before[(size_t)i * ldc + j] : 0.0);
            size += beta != 0.0f ? fabs(before[(size_t)i * ldc + j]) : 0.0;
            const double err = fabs(C[(size_t)i * ldc + j] - want) / (size > 0 ? size : 1.0);
            worst = err > worst || isnan(err) ? err : worst;
        }
        for (int j = n; j < ldc; j++) padding_kept &= C[(size_t)i * ldc + j] == before[(size_t)i * ldc + j];
    }
    CHECK(worst <= tolerance, "gemm_bf16 %c%c %dx%dx%d beta %g: error %.3g of the sum of sizes (tolerance %.3g)",
          trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, beta, worst, tolerance);
    CHECK(padding_kept, "gemm_bf16 %c%c %dx%dx%d wrote past n in C's rows", trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m,
          n, k);
    free(a32);
    free(b32);
    free(A);
    free(B);
    free(C);
    free(before);
}

// The shapes cross the kernel's edges (gemm_bf16_avx512.c): k odd and even
// around its blocks of 512 steps and the transposes' 32, m around tiles of 6
// and blocks of 384 rows, n around panels of 64 and the transposes' 16.
TEST(test_gemm_bf16_matches_double_sums_of_the_bf16_values) {
    Rng rng;
    rng_init(&rng, 9, 0);
    const int shapes[][3] = {{7, 13, 33},    {1, 1, 1},      {6, 64, 2},    {5, 65, 3},      {64, 96, 128},
                             {130, 70, 150}, {13, 130, 512}, {40, 70, 513}, {385, 64, 1030}, {12, 200, 31}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int acc = 0; acc < 2; acc++)
                check_product(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], (float)acc, &rng);
    // k = 0: an empty sum; beta 0 clears C, beta 1 keeps it.
    float C[4] = {1, 2, 3, 4};
    uint16_t none[1] = {0};
    gemm_bf16(false, false, 2, 2, 0, none, 1, none, 2, 1.0f, C, 2);
    CHECK(C[0] == 1 && C[3] == 4, "k = 0, beta 1 keeps C");
    gemm_bf16(false, false, 2, 2, 0, none, 1, none, 2, 0.0f, C, 2);
    CHECK(C[0] == 0 && C[1] == 0 && C[2] == 0 && C[3] == 0, "k = 0, beta 0 clears C");
}

// C_bf16 (beta 0, k within one block): the bits of round_to_bf16 of the fp32
// C the same product writes, each transposition, on 1 and 3 threads, with
// rows padded (the padding kept), shapes across the tiles' and panels' edges,
// odd k, k = 0 and k = 512, and operands small enough (1e-19: products near
// FLT_MIN) that exact sums would be subnormal, which the kernel's sums never
// are (gemm_bf16_avx512.c's store_tile_bf16).
TEST(test_gemm_bf16_rounded_c_is_round_to_bf16_of_c) {
    const int threads = omp_get_max_threads();
    const int shapes[][3] = {{7, 13, 33}, {1, 1, 1}, {6, 64, 2}, {13, 130, 512}, {40, 70, 0}, {300, 97, 64}};
    enum { PAD = 3 };
    const uint16_t SENTINEL = 0xbeef;
    Rng rng;
    rng_init(&rng, 41, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 16; t++) {
            const bool ta = t & 1, tb = t & 2, tiny_values = t & 8;
            const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], ldc = n + PAD;
            const size_t na = (size_t)m * k + 1, nb = (size_t)k * n + 1, nc = (size_t)m * ldc;
            float *x = xmalloc((na > nb ? na : nb) * sizeof(float)), *C = xmalloc(nc * sizeof(float));
            uint16_t *A = xmalloc(na * sizeof(uint16_t)), *B = xmalloc(nb * sizeof(uint16_t));
            uint16_t *want = xmalloc(nc * sizeof(uint16_t)), *got = xmalloc(nc * sizeof(uint16_t));
            const float scale = tiny_values ? 1e-19f : 1.0f;
            fill_uniform(x, na, scale, &rng);
            round_to_bf16(A, x, na, 1);
            fill_uniform(x, nb, scale, &rng);
            round_to_bf16(B, x, nb, 1);
            omp_set_num_threads(t & 4 ? 3 : 1);
            gemm_bf16(ta, tb, m, n, k, A, ta ? m : k, B, tb ? k : n, 0.0f, C, ldc);
            round_to_bf16(want, C, nc, 1);
            for (size_t i = 0; i < nc; i++) got[i] = SENTINEL;
            const GemmBf16 g = {ta, tb, m, n, k, A, ta ? m : k, B, tb ? k : n, 0.0f, NULL, ldc, got};
            gemm_bf16_all(&g, 1);
            bool same = true, padding_kept = true;
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) same &= got[(size_t)i * ldc + j] == want[(size_t)i * ldc + j];
                for (int j = n; j < ldc; j++) padding_kept &= got[(size_t)i * ldc + j] == SENTINEL;
            }
            CHECK(same, "%dx%dx%d %c%c, %d threads%s: C_bf16 is not round_to_bf16 of C", m, n, k, ta ? 'T' : 'N',
                  tb ? 'T' : 'N', t & 4 ? 3 : 1, tiny_values ? ", tiny values" : "");
            CHECK(padding_kept, "%dx%dx%d: C_bf16 written past n", m, n, k);
            free(x);
            free(C);
            free(A);
            free(B);
            free(want);
            free(got);
        }
    omp_set_num_threads(threads);
}

// Every element sums its products in one order whatever the split of C over
// the threads: 1 and 3 threads give the same bits, each transposition, C
// split by rows (500 x 300) and by columns (300 x 500).
TEST(test_gemm_bf16_same_bits_for_any_thread_count) {
    const int threads = omp_get_max_threads();
    const int big = 500, k = 271;
    Rng rng;
    rng_init(&rng, 31, 0);
    float *x = xmalloc((size_t)big * k * sizeof(float));
    uint16_t *A = xmalloc((size_t)big * k * sizeof(uint16_t)), *B = xmalloc((size_t)big * k * sizeof(uint16_t));
    float *C1 = xmalloc((size_t)big * big * sizeof(float)), *C3 = xmalloc((size_t)big * big * sizeof(float));
    fill_uniform(x, (size_t)big * k, 1.0f, &rng);
    round_to_bf16(A, x, (size_t)big * k, 1);
    fill_uniform(x, (size_t)big * k, 1.0f, &rng);
    round_to_bf16(B, x, (size_t)big * k, 1);
    for (int t = 0; t < 8; t++) {
        const bool ta = t & 1, tb = t & 2;
        const int m = t & 4 ? 300 : big, n = t & 4 ? big : 300;
        omp_set_num_threads(1);
        gemm_bf16(ta, tb, m, n, k, A, ta ? m : k, B, tb ? k : n, 0.0f, C1, n);
        omp_set_num_threads(3);
        gemm_bf16(ta, tb, m, n, k, A, ta ? m : k, B, tb ? k : n, 0.0f, C3, n);
        CHECK(!memcmp(C1, C3, (size_t)m * n * sizeof(float)), "%dx%d, trans_a %d trans_b %d: 1 and 3 threads differ", m,
              n, ta, tb);
    }
    omp_set_num_threads(threads);
    free(x);
    free(A);
    free(B);
    free(C1);
    free(C3);
}

// --- The whole model ----------------------------------------------------------

static ModelConfig small_config(NormKind norm) {
    // T = 72 crosses an attention block; V = 13 < 4C.
    ModelConfig cfg = {.vocab_size = 13,
                       .seq_len = 72,
                       .image_height = 9,
                       .image_width = 8,
                       .d_model = 32,
                       .n_layer = 2,
                       .n_head = 2,
                       .norm = norm};
    return cfg;
}

typedef struct {
    double loss;
    float *grads;
} Step;

static Step one_step(const ModelConfig *cfg, const float *params, const uint16_t *tokens, int B, bool bf16) {
    Model m;
    model_create(&m, cfg, B, 2);
    if (bf16) model_use_bf16_products(&m);
    memcpy(m.params, params, m.num_params * sizeof(float));
    model_zero_grads(&m);
    Step s = {model_forward(&m, tokens, B), xmalloc(m.num_params * sizeof(float))};
    model_backward(&m, tokens, B, 1.0f / (float)(B * cfg->seq_len));
    memcpy(s.grads, m.grads, m.num_params * sizeof(float));
    model_free(&m);
    return s;
}

static double frobenius_difference(const float *got, const float *want, size_t n, double *largest_rel) {
    double diff = 0.0, size = 0.0, largest = 0.0, largest_want = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)got[i] - want[i];
        diff += d * d;
        size += (double)want[i] * want[i];
        largest = fmax(largest, fabs(d));
        largest_want = fmax(largest_want, fabs(want[i]));
    }
    *largest_rel = largest / (largest_want > 1.0 ? largest_want : 1.0);
    return sqrt(diff) / (size > 0 ? sqrt(size) : 1.0);
}

// One step, bf16 products against the fp32 model given the same bf16-rounded
// parameters (the GPU test's comparison): loss 2e-2 relative, each gradient
// tensor 2e-2 relative Frobenius and 1e-1 of its largest entry. Only the
// products' operands are rounded here, so the errors are well inside those
// (measured: see the message). They must also be there at all: a bf16 model
// that ran its products in fp32 would match the reference to ~1e-6 (its own
// rounding noise), so the gradients must differ by more than 1e-4.
TEST(test_model_bf16_products_step_within_gpu_bf16_tolerances) {
    // Cases: both norms (head size 16: bf16 attention where the CPU has it),
    // head size 15, whose attention stays fp32 (no whole pairs), and C = 544,
    // past one block of the products' k, whose qkv and fc go through fp32
    // scratch to be rounded (model.c, product_forward_rounded).
    for (int kind = 0; kind < 4; kind++) {
        ModelConfig cfg = small_config(kind == 1 ? NORM_LAYERNORM : NORM_IGPT);
        if (kind == 2) cfg.d_model = 30;
        if (kind == 3) {
            cfg.d_model = 544;
            cfg.n_layer = 1;
        }
        const int B = 3;
        const size_t P = param_count(&cfg);
        float *params = xmalloc(P * sizeof(float));
        Rng rng;
        rng_init(&rng, 31 + kind, 0);
        // Not 0 (w_head = 0 would hide paths); smaller for the wide model, whose sums of C terms would grow.
        const double spread = kind == 3 ? 0.3 * sqrt(32.0 / cfg.d_model) : 0.3;
        for (size_t i = 0; i < P; i++) params[i] = (float)(spread * rng_normal(&rng));
        uint16_t *h = xmalloc(P * sizeof(uint16_t));
        round_to_bf16(h, params, P, 2);
        for (size_t i = 0; i < P; i++) params[i] = bf16_to_float(h[i]);
        uint16_t tokens[3 * 72];
        for (int i = 0; i < B * cfg.seq_len; i++) tokens[i] = (uint16_t)rng_below(&rng, (uint32_t)cfg.vocab_size);
        const Step want = one_step(&cfg, params, tokens, B, false), got = one_step(&cfg, params, tokens, B, true);
        const double loss_err = fabs(got.loss - want.loss) / want.loss;
        CHECK(loss_err < 2e-2, "%s: bf16 loss %.6f, fp32 %.6f", norm_kind_name(cfg.norm), got.loss, want.loss);
        const int nt = param_tensors(&cfg, NULL);
        TensorInfo *t = xcalloc((size_t)nt, sizeof *t);
        param_tensors(&cfg, t);
        double worst = 0.0, all_largest = 0.0;
        for (int i = 0; i < nt; i++) {
            double largest;
            const double err =
                frobenius_difference(got.grads + t[i].offset, want.grads + t[i].offset, t[i].count, &largest);
            CHECK(err < 2e-2 && largest < 1e-1, "%s: gradient of %s differs by %.3g (rel. Frobenius), %.3g (largest)",
                  norm_kind_name(cfg.norm), t[i].name, err, largest);
            worst = fmax(worst, err);
            all_largest = fmax(all_largest, largest);
        }
        double unused;
        const double whole = frobenius_difference(got.grads, want.grads, P, &unused);
        CHECK(whole > 1e-4, "%s: the bf16 model's gradients are the fp32 ones (%.3g apart): its products ran in fp32",
              norm_kind_name(cfg.norm), whole);
        printf("      %s, head size %d: loss %.3g relative, gradients at most %.3g (rel. Frobenius), whole %.3g\n",
               norm_kind_name(cfg.norm), cfg.d_model / cfg.n_head, loss_err, worst, whole);
        free(t);
        free(h);
        free(params);
        free(want.grads);
        free(got.grads);
    }
}

// 50 AdamW steps (clipped) from the same start: the bf16 loss curve within
// 5e-3 of fp32's over the first 10 steps and 5e-2 over all, the GPU's bf16
// tolerances (tests/cuda/test_model.cu); and a second bf16 run repeats the
// first bitwise.
static void training_curve(const ModelConfig *cfg, bool bf16, const uint16_t *tokens, int B, int steps,
                           double *losses) {
    Model m;
    model_create(&m, cfg, B, 2);
    if (bf16) model_use_bf16_products(&m);
    model_init_params(cfg, m.params, 3);
    OptimConfig oc;
    optim_config_defaults(&oc);
    oc.lr = 3e-3;
    oc.total_steps = steps;
    oc.warmup_steps = 5;
    oc.weight_decay = 0.01;
    float *am = xcalloc(m.num_params, sizeof(float)), *av = xcalloc(m.num_params, sizeof(float));
    for (int s = 0; s < steps; s++) {
        const uint16_t *batch = tokens + (size_t)(s % 4) * B * cfg->seq_len;
        model_zero_grads(&m);
        losses[s] = model_forward(&m, batch, B);
        model_backward(&m, batch, B, 1.0f / (float)(B * cfg->seq_len));
        adamw_update(&oc, cfg, s, m.params, m.grads, am, av, clip_factor(&oc, global_norm(m.grads, m.num_params, 2)),
                     2);
    }
    free(am);
    free(av);
    model_free(&m);
}

TEST(test_model_bf16_products_training_follows_fp32) {
    const ModelConfig cfg = small_config(NORM_IGPT);
    enum { B = 4, STEPS = 50 };
    uint16_t *tokens = xmalloc((size_t)4 * B * cfg.seq_len * sizeof(uint16_t));
    Rng rng;
    rng_init(&rng, 77, 0);
    for (int i = 0; i < 4 * B * cfg.seq_len; i++) tokens[i] = (uint16_t)(rng_below(&rng, 4) + (i % 9 == 0 ? 8 : 0));
    double fp32[STEPS], bf16[STEPS], again[STEPS];
    training_curve(&cfg, false, tokens, B, STEPS, fp32);
    training_curve(&cfg, true, tokens, B, STEPS, bf16);
    training_curve(&cfg, true, tokens, B, STEPS, again);
    CHECK(fp32[STEPS - 1] < 0.8 * fp32[0], "the fp32 run did not learn (%.3f -> %.3f)", fp32[0], fp32[STEPS - 1]);
    double early = 0.0, all = 0.0;
    for (int s = 0; s < STEPS; s++) {
        const double err = fabs(bf16[s] - fp32[s]) / fp32[s];
        if (s < 10) early = fmax(early, err);
        all = fmax(all, err);
    }
    CHECK(early < 5e-3, "bf16 loss curve, first 10 steps: %.3g relative from fp32", early);
    CHECK(all < 5e-2, "bf16 loss curve: %.3g relative from fp32", all);
    CHECK(!memcmp(bf16, again, sizeof bf16), "two bf16 runs from the same start gave different losses");
    printf("      fp32 %.4f -> %.4f, bf16 %.4f -> %.4f; at most %.3g relative (first 10 steps %.3g)\n", fp32[0],
           fp32[STEPS - 1], bf16[0], bf16[STEPS - 1], all, early);
    free(tokens);
}

// --- ./igpt ---------------------------------------------------------------------

#define TINY_BF16 "--device cpu --precision bf16 --d-model 16 --n-layer 1 --n-head 2 --batch 4 --quiet"

// Training on the CPU in bf16 as a user runs it: run.json says bf16, and 3
// steps + --resume + 3 steps are bitwise the 6-step run. Where this build or
// CPU has no fast bf16 products, the option is refused, saying why. Without
// --precision the CPU stays the fp32 reference.
TEST(test_cli_cpu_bf16_training_records_and_resumes) {
    CHECK(run_igpt("bench --mode train --device cpu --config tiny --side 8 --batch 1 --steps 1 --warmup-steps 0 "
                   "--quiet") == 0 &&
              strstr(cli_stdout(), "\"precision\": \"fp32\""),
          "the CPU's default precision is fp32: %s%s", cli_stdout(), cli_stderr());
    char *data = small_prepared_data();
    const char *why = gemm_bf16_unavailable();
    if (why) {
        expect_failure(run_igpt("train --data %s --out %s --steps 2 " TINY_BF16, data, test_path("refused")), 1,
                       "--precision bf16 on the CPU", NULL);
        CHECK(strstr(cli_stderr(), why), "says why: %s", cli_stderr());
        test_skip(why);
        free(data);
        return;
    }
    CHECK(run_igpt("train --data %s --out %s --steps 6 --eval-images 4 " TINY_BF16, data, test_path("straight")) == 0,
          "straight run: %s", cli_stderr());
    CHECK(run_igpt("train --data %s --out %s --steps 6 --eval-images 4 --stop-at 3 " TINY_BF16, data,
                   test_path("resumed")) == 0,
          "first half: %s", cli_stderr());
    CHECK(run_igpt("train --data %s --out %s --resume --device cpu --precision bf16", data, test_path("resumed")) == 0,
          "resume: %s", cli_stderr());
    CHECK(files_equal(test_path("straight/checkpoint-00000006.bin"), test_path("resumed/checkpoint-00000006.bin")),
          "3 steps + resume + 3 steps in bf16 is bitwise the 6-step run");
    size_t n;
    char *json = (char *)read_whole_file(test_path("straight/run.json"), &n);
    CHECK(strstr(json, "\"precision\": \"bf16\""), "run.json records bf16: %s", json);
    free(json);
    CHECK(run_igpt("bench --mode train --device cpu --precision bf16 --config tiny --side 8 --batch 1 --steps 1 "
                   "--warmup-steps 0 --quiet") == 0 &&
              strstr(cli_stdout(), "\"precision\": \"bf16\""),
          "bench says bf16: %s%s", cli_stdout(), cli_stderr());
    free(data);
}
