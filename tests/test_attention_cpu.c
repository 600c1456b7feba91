// The CPU attention (attention_forward / attention_backward, the twin every
// GPU attention kernel is tested against) against a plain double-precision
// causal softmax attention written here, over shapes that reach every edge
// of its tiles: sequence lengths below, at and past a multiple of the 64-row
// query tile, head sizes that fill part of, one or several 16-float vectors,
// one to three heads and images, 1 and 2 threads. And its exp against expf.
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu_ops.h"
#include "test.h"
#include "util/gemm_bf16.h"

// The larger of a and b, and NaN if either is (fmax would drop a NaN).
static double nan_max(double a, double b) { return isnan(a) || isnan(b) ? NAN : fmax(a, b); }

TEST(test_attention_exp_matches_expf) {
    // 65536 points evenly from 0 down to -104 (past expf's last denormal), then -inf.
    enum { N = 1 << 16 };
    static float x[N + 1], got[N + 1];
    for (int i = 0; i < N; i++) x[i] = -104.0f * (float)i / N;
    x[N] = -INFINITY;
    memcpy(got, x, sizeof x);
    exp_nonpositive(got, N + 1, false);
    double worst_ulp = 0.0, worst_tiny = 0.0;
    for (int i = 0; i < N; i++) {
        const float want = expf(x[i]);
        if (want >= FLT_MIN) {
            // ulp of want: the spacing of floats at its exponent (in double: it may be denormal).
            const double ulp = ldexp(1.0, ilogbf(want) - 23);
            worst_ulp = nan_max(worst_ulp, fabs((double)got[i] - want) / ulp);
        } else {
            worst_tiny = nan_max(worst_tiny, fabs((double)got[i] - want));
        }
    }
    CHECK(worst_ulp <= 2.0, "exp off expf by %.2f ulp above FLT_MIN", worst_ulp);
    CHECK(worst_tiny <= FLT_MIN, "exp off expf by %.3g below FLT_MIN", worst_tiny);
    CHECK(got[N] == 0.0f, "exp(-inf) = %g, not 0", got[N]);
    float nan = NAN;
    exp_nonpositive(&nan, 1, false);
    CHECK(isnan(nan), "exp(NaN) = %g, not NaN", nan);
}

// The bf16 attention's 2^x (exp2_coarse16): within 2.8e-6 relative of exp2
// above FLT_MIN, within FLT_MIN below, 0 below -150 and at -inf, NaN kept.
// (Its fp32 polynomial measures 2.72e-6 on [0, 1); the degree-3 one it
// replaced, 7.5e-5, or coefficients off in their fourth digit fail.)
TEST(test_attention_coarse_exp2_matches_exp2) {
    enum { N = 1 << 16 };
    static float x[N + 3], got[N + 3];
    for (int i = 0; i < N; i++) x[i] = -160.0f * (float)i / N;  // 0 down to past the last denormal (-149)
    x[N] = -151.0f;
    x[N + 1] = -1e30f;
    x[N + 2] = -INFINITY;
    memcpy(got, x, sizeof x);
    exp_nonpositive(got, N + 3, true);
    double worst_relative = 0.0, worst_tiny = 0.0;
    for (int i = 0; i < N; i++) {
        const double want = exp2((double)x[i]);
        if (want >= FLT_MIN) worst_relative = nan_max(worst_relative, fabs(got[i] - want) / want);
        else worst_tiny = nan_max(worst_tiny, fabs(got[i] - want));
    }
    CHECK(worst_relative <= 2.8e-6, "2^x off exp2 by %.3g relative above FLT_MIN", worst_relative);
    CHECK(worst_tiny <= FLT_MIN, "2^x off exp2 by %.3g below FLT_MIN", worst_tiny);
    CHECK(got[N] == 0.0f && got[N + 1] == 0.0f && got[N + 2] == 0.0f, "2^-151, 2^-1e30, 2^-inf = %g, %g, %g, not 0",
          got[N], got[N + 1], got[N + 2]);
    float nan = NAN;
    exp_nonpositive(&nan, 1, true);
    CHECK(isnan(nan), "2^NaN = %g, not NaN", nan);
    printf("      %.3g relative above FLT_MIN\n", worst_relative);
}

typedef struct {
    int B, T, C, NH;
} Shape;

// x rounded to bf16 and back.
static double rounded(float x) { return bf16_to_float(bf16_from_float(x)); }

// The naive reference in double for one head: y, lse and, from dy and the
// fp32 y under test (as the model passes its own y), dq, dk, dv into dqkv.
// bf16: every product's operands from q, k, v and dy rounded to bf16 as
// attention_forward_bf16 and attention_backward_bf16 have them (the scores
// bf16(q) . bf16(k), then scaled); the probabilities and dS stay exact, where
// the code under test rounds them too.
static void reference_head(const Shape *s, const float *qkv, const float *dy, const float *y32, int b, int h, bool bf16,
                           double *y, double *lse, double *dqkv) {
    const int T = s->T, C = s->C, hs = C / s->NH, ld = 3 * C;
    const double scale = 1.0 / sqrt((double)hs);
    double *P = xcalloc((size_t)T * T, sizeof(double)), *dP = xcalloc((size_t)T * T, sizeof(double));
#define Q(t, e) ((double)qkv[((size_t)b * T + (t)) * ld + h * hs + (e)])
#define K(t, e) ((double)qkv[((size_t)b * T + (t)) * ld + C + h * hs + (e)])
#define V(t, e) ((double)qkv[((size_t)b * T + (t)) * ld + 2 * C + h * hs + (e)])
#define DY(t, e) ((double)dy[((size_t)b * T + (t)) * C + h * hs + (e)])
// A product's operand as the code under test has it: rounded to bf16 with bf16.
#define OPERAND(x) (bf16 ? rounded((float)(x)) : (x))
    for (int t = 0; t < T; t++) {
        double mx = -INFINITY, sum = 0.0;
        for (int u = 0; u <= t; u++) {
            double dot = 0.0;
            for (int e = 0; e < hs; e++) dot += OPERAND(Q(t, e)) * OPERAND(K(u, e));
            dot *= scale;
            P[(size_t)t * T + u] = dot;
            mx = fmax(mx, dot);
        }
        for (int u = 0; u <= t; u++) sum += exp(P[(size_t)t * T + u] - mx);
        for (int u = 0; u <= t; u++) P[(size_t)t * T + u] = exp(P[(size_t)t * T + u] - mx) / sum;
        lse[((size_t)b * s->NH + h) * T + t] = mx + log(sum);
        for (int e = 0; e < hs; e++) {
            double acc = 0.0;
            for (int u = 0; u <= t; u++) acc += P[(size_t)t * T + u] * OPERAND(V(u, e));
            y[((size_t)b * T + t) * C + h * hs + e] = acc;
        }
    }
    // dS = P (dP - rowsum(dy y)) with dP = dy V^T; dq = dS K scale, dk = dS^T Q scale, dv = P^T dy.
    for (int t = 0; t < T; t++) {
        double D = 0.0;
        for (int e = 0; e < hs; e++) D += DY(t, e) * y32[((size_t)b * T + t) * C + h * hs + e];
        for (int u = 0; u <= t; u++) {
            double dot = 0.0;
            for (int e = 0; e < hs; e++) dot += OPERAND(DY(t, e)) * OPERAND(V(u, e));
            dP[(size_t)t * T + u] = P[(size_t)t * T + u] * (dot - D) * scale;
        }
    }
    for (int t = 0; t < T; t++)
        for (int e = 0; e < hs; e++) {
            double dq = 0.0, dk = 0.0, dv = 0.0;
            for (int u = 0; u <= t; u++) dq += dP[(size_t)t * T + u] * OPERAND(K(u, e));
            for (int u = t; u < T; u++) {
                dk += dP[(size_t)u * T + t] * OPERAND(Q(u, e));
                dv += P[(size_t)u * T + t] * OPERAND(DY(u, e));
            }
            double *row = dqkv + ((size_t)b * T + t) * ld + h * hs + e;
            row[0] = dq;
            row[C] = dk;
            row[2 * C] = dv;
        }
#undef Q
#undef K
#undef V
#undef DY
#undef OPERAND
    free(P);
    free(dP);
}

typedef struct {
    float *y, *lse, *dqkv;
    bool rounded_io_match;  // bf16: y and the gradients written only rounded, y read so (run_attention)
} AttentionRun;

// The bf16 model keeps y and the gradients only rounded: written so, they
// must be round_to_bf16's bits of the fp32 ones (y and lse of a forward pass
// writing y rounded; dq, dk, dv of a backward pass writing them rounded), and
// a backward pass reading y rounded must give the bits of one reading the
// same values as floats.
static bool rounded_io_matches(const Shape *s, const AttentionRun *r, const uint16_t *qkv_bf16, const float *dy,
                               float *scratch, int threads) {
    const size_t n_y = (size_t)s->B * s->T * s->C, n_lse = (size_t)s->B * s->NH * s->T, n_qkv = 3 * n_y;
    uint16_t *y_bf16 = xmalloc(n_y * sizeof(uint16_t)), *want = xmalloc(n_qkv * sizeof(uint16_t));
    uint16_t *got = xmalloc(n_qkv * sizeof(uint16_t));
    float *lse = xmalloc(n_lse * sizeof(float)), *y_values = xmalloc(n_y * sizeof(float));
    float *from_bf16 = xmalloc(n_qkv * sizeof(float)), *from_floats = xmalloc(n_qkv * sizeof(float));
    for (size_t i = 0; i < n_y; i++) y_bf16[i] = 0x7fc1;  // a NaN: left unwritten shows
    attention_forward_bf16(NULL, y_bf16, lse, NULL, qkv_bf16, scratch, s->B, s->T, s->C, s->NH, threads);
    round_to_bf16(want, r->y, n_y, 1);
    bool match = !memcmp(y_bf16, want, n_y * sizeof(uint16_t)) && !memcmp(lse, r->lse, n_lse * sizeof(float));
    for (size_t i = 0; i < n_y; i++) y_values[i] = bf16_to_float(y_bf16[i]);
    attention_backward_bf16(from_bf16, NULL, dy, NULL, y_bf16, NULL, qkv_bf16, r->lse, scratch, s->B, s->T, s->C, s->NH,
                            threads);
    attention_backward_bf16(from_floats, NULL, dy, y_values, NULL, NULL, qkv_bf16, r->lse, scratch, s->B, s->T, s->C,
                            s->NH, threads);
    match &= !memcmp(from_bf16, from_floats, n_qkv * sizeof(float));
    for (size_t i = 0; i < n_qkv; i++) got[i] = 0x7fc1;
    attention_backward_bf16(NULL, got, dy, r->y, NULL, NULL, qkv_bf16, r->lse, scratch, s->B, s->T, s->C, s->NH,
                            threads);
    round_to_bf16(want, r->dqkv, n_qkv, 1);
    match &= !memcmp(got, want, n_qkv * sizeof(uint16_t));
    free(y_bf16);
    free(want);
    free(got);
    free(lse);
    free(y_values);
    free(from_bf16);
    free(from_floats);
    return match;
}

// One forward and backward with `threads`, on NaN-filled scratch and outputs,
// so that a read of unwritten scratch or an output left unwritten shows;
// with the bf16 attention where qkv_bf16 is not NULL (qkv then NULL: it
// reads q, k and v from qkv_bf16 alone), whose rounded outputs and input are
// then checked (rounded_io_matches).
static AttentionRun run_attention(const Shape *s, const float *qkv, const uint16_t *qkv_bf16, const float *dy,
                                  int threads) {
    const size_t n_y = (size_t)s->B * s->T * s->C, n_lse = (size_t)s->B * s->NH * s->T, n_qkv = 3 * n_y;
    const size_t n_scratch = attention_scratch_floats(s->T, s->C, s->NH, threads);
    AttentionRun r = {xmalloc(n_y * sizeof(float)), xmalloc(n_lse * sizeof(float)), xmalloc(n_qkv * sizeof(float))};
    float *scratch = xmalloc(n_scratch * sizeof(float));
    for (size_t i = 0; i < n_scratch; i++) scratch[i] = NAN;
    for (size_t i = 0; i < n_y; i++) r.y[i] = NAN;
    for (size_t i = 0; i < n_lse; i++) r.lse[i] = NAN;
    for (size_t i = 0; i < n_qkv; i++) r.dqkv[i] = NAN;
    const float *fp32_qkv = qkv_bf16 ? NULL : qkv;
    attention_forward_bf16(r.y, NULL, r.lse, fp32_qkv, qkv_bf16, scratch, s->B, s->T, s->C, s->NH, threads);
    for (size_t i = 0; i < n_scratch; i++) scratch[i] = NAN;
    attention_backward_bf16(r.dqkv, NULL, dy, r.y, NULL, fp32_qkv, qkv_bf16, r.lse, scratch, s->B, s->T, s->C, s->NH,
                            threads);
    r.rounded_io_match = !qkv_bf16 || rounded_io_matches(s, &r, qkv_bf16, dy, scratch, threads);
    free(scratch);
    return r;
}

static void free_run(AttentionRun *r) {
    free(r->y);
    free(r->lse);
    free(r->dqkv);
}

static bool same_bits(const AttentionRun *a, const AttentionRun *b, const Shape *s) {
    const size_t n_y = (size_t)s->B * s->T * s->C, n_lse = (size_t)s->B * s->NH * s->T;
    return !memcmp(a->y, b->y, n_y * sizeof(float)) && !memcmp(a->lse, b->lse, n_lse * sizeof(float)) &&
           !memcmp(a->dqkv, b->dqkv, 3 * n_y * sizeof(float));
}

// One shape: fp32 against the double reference (relative to each output's
// largest entry: 2e-6 for y and lse, 5e-6 for dqkv; measured up to 2.3e-7,
// 7.7e-7 and 4.8e-7),
// the same bits from a second run with the same threads, and from 2 threads.
// On a single head (B = NH = 1: T 1, 17, 64 and 200 below) 2 threads take the
// backward's split path (key chunks and query tiles per thread), so its bits
// are checked against 1 thread's head-per-thread path.
// The largest errors of the bf16 shapes, for the test to print.
static double bf16_worst_y, bf16_worst_dqkv, bf16_worst_lse;

static void check_shape(const Shape *s, float spread, bool bf16) {
    const size_t n_y = (size_t)s->B * s->T * s->C, n_lse = (size_t)s->B * s->NH * s->T, n_qkv = 3 * n_y;
    float *qkv = xmalloc(n_qkv * sizeof(float)), *dy = xmalloc(n_y * sizeof(float));
    Rng rng;
    rng_init(&rng, 5 + s->T, (uint64_t)s->C * 7 + s->NH);
    for (size_t i = 0; i < n_qkv; i++) qkv[i] = spread * (float)rng_normal(&rng);
    for (size_t i = 0; i < n_y; i++) dy[i] = (float)rng_normal(&rng);
    uint16_t *qkv_bf16 = NULL;
    if (bf16) {
        qkv_bf16 = xmalloc(n_qkv * sizeof(uint16_t));
        round_to_bf16(qkv_bf16, qkv, n_qkv, 1);
    }
    AttentionRun one = run_attention(s, qkv, qkv_bf16, dy, 1), again = run_attention(s, qkv, qkv_bf16, dy, 1);
    AttentionRun two = run_attention(s, qkv, qkv_bf16, dy, 2), two_again = run_attention(s, qkv, qkv_bf16, dy, 2);
    double *y = xmalloc(n_y * sizeof(double)), *lse = xmalloc(n_lse * sizeof(double));
    double *dqkv = xmalloc(n_qkv * sizeof(double));
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->NH; h++) reference_head(s, qkv, dy, one.y, b, h, bf16, y, lse, dqkv);
    const double e_y = relative_error(one.y, y, n_y), e_lse = relative_error(one.lse, lse, n_lse);
    const double e_dqkv = relative_error(one.dqkv, dqkv, n_qkv);
    // bf16: the probabilities and dS rounded to bf16 in the products (2^-9
    // relative each) move y and dqkv by up to 1.6e-3 and 1.8e-3 of their
    // largest entries here; lse comes from fp32 sums of the coarse exp, 2.8e-6
    // relative each, so bf16's lse is checked absolutely as well: within
    // 2.8e-6 of the log of a sum within that, and 2e-6 relative for the fp32
    // arithmetic.
    const double tol_y = bf16 ? 5e-3 : 2e-6, tol_dqkv = bf16 ? 5e-3 : 5e-6;
    double largest_lse = 0.0;
    for (size_t i = 0; i < n_lse; i++) largest_lse = fmax(largest_lse, fabs(lse[i]));
    const double tol_lse = bf16 ? 2e-6 + 2.8e-6 / fmax(largest_lse, DBL_MIN) : 2e-6;
#define AT "%sB %d T %d C %d NH %d spread %g: "
    CHECK(e_y < tol_y, AT "attention output off the reference by %.2e", bf16 ? "bf16, " : "", s->B, s->T, s->C, s->NH,
          spread, e_y);
    CHECK(e_lse < tol_lse, AT "log-sum-exp off by %.2e", bf16 ? "bf16, " : "", s->B, s->T, s->C, s->NH, spread, e_lse);
    CHECK(e_dqkv < tol_dqkv, AT "dqkv off by %.2e", bf16 ? "bf16, " : "", s->B, s->T, s->C, s->NH, spread, e_dqkv);
#undef AT
    if (bf16) {
        bf16_worst_y = e_y > bf16_worst_y ? e_y : bf16_worst_y;
        bf16_worst_dqkv = e_dqkv > bf16_worst_dqkv ? e_dqkv : bf16_worst_dqkv;
        bf16_worst_lse = fmax(bf16_worst_lse, e_lse * largest_lse);
    }
    CHECK(one.rounded_io_match && two.rounded_io_match,
          "B %d T %d C %d NH %d: y or the gradients written rounded are not the fp32 ones' rounded bits, or y read "
          "rounded gives other bits than the same values as floats",
          s->B, s->T, s->C, s->NH);
    CHECK(same_bits(&one, &again, s), "B %d T %d C %d NH %d: two 1-thread runs differ", s->B, s->T, s->C, s->NH);
    CHECK(same_bits(&two, &two_again, s), "B %d T %d C %d NH %d: two 2-thread runs differ", s->B, s->T, s->C, s->NH);
    // Each (image, head, tile) is computed by one thread in a fixed order, so
    // even another thread count gives the same bits.
    CHECK(same_bits(&one, &two, s), "B %d T %d C %d NH %d: 1 and 2 threads differ", s->B, s->T, s->C, s->NH);
    free_run(&one);
    free_run(&again);
    free_run(&two);
    free_run(&two_again);
    free(qkv);
    free(dy);
    free(y);
    free(lse);
    free(dqkv);
    free(qkv_bf16);
}

// Every length with every head size, 1 to `most` heads and images in turn.
static void check_grid(const int *lengths, size_t num_lengths, const int *head_sizes, size_t num_head_sizes, int most,
                       bool bf16) {
    int n = 0;
    for (size_t t = 0; t < num_lengths; t++)
        for (size_t e = 0; e < num_head_sizes; e++, n++) {
            const int NH = 1 + n % most;
            const Shape s = {.B = 1 + (n / most) % most, .T = lengths[t], .C = head_sizes[e] * NH, .NH = NH};
            check_shape(&s, 1.0f, bf16);
        }
}

TEST(test_attention_against_double_reference) {
    const int lengths[] = {1, 2, 17, 63, 64, 65, 200}, head_sizes[] = {8, 16, 32, 64};
    check_grid(lengths, sizeof lengths / sizeof lengths[0], head_sizes, sizeof head_sizes / sizeof head_sizes[0], 3,
               false);
    // Head sizes off the 16-float vectors and the 4-wide blocks of the kernels.
    check_shape(&(Shape){.B = 2, .T = 70, .C = 3 * 5, .NH = 3}, 1.0f, false);
    check_shape(&(Shape){.B = 1, .T = 130, .C = 2 * 20, .NH = 2}, 1.0f, false);
    // Large scores: probabilities from 1 down to exp's underflow to 0.
    check_shape(&(Shape){.B = 2, .T = 129, .C = 32, .NH = 2}, 4.0f, false);
}

// --precision bf16 on an AVX512-BF16 CPU: every product of the attention on
// bf16 operands (q, k, v, dy, and the probabilities and dS), summed in fp32.
// Against the reference given the same bf16-rounded q, k, v and dy, with
// bf16 tolerances for y and dqkv (the rounded probabilities are the
// difference left) and fp32's for lse, on lengths and head sizes that reach
// the tiles' edges, the 4-key blocks' tail, odd lengths (a last key or query
// without a partner in its pair), an odd number of pairs per vector (head
// size 18) and the split path (one head, 2 threads).
TEST(test_attention_bf16_against_double_reference) {
    if (!attention_bf16_fits(2, 1)) {
        test_skip("this CPU has no AVX512-BF16");
        return;
    }
    const int lengths[] = {1, 17, 64, 65, 200}, head_sizes[] = {16, 18, 32, 64};
    check_grid(lengths, sizeof lengths / sizeof lengths[0], head_sizes, sizeof head_sizes / sizeof head_sizes[0], 2,
               true);
    check_shape(&(Shape){.B = 2, .T = 129, .C = 32, .NH = 2}, 4.0f, true);
    printf("      y at most %.3g, dqkv %.3g of their largest entries off the reference, lse %.3g\n", bf16_worst_y,
           bf16_worst_dqkv, bf16_worst_lse);
}
