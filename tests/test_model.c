// Model tests: parameter layout, every layer's backward against central
// finite differences, attention against a naive double-precision reference,
// and the whole model's gradient.
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/cpu_ops.h"
#include "model/model.h"
#include "model/params.h"
#include "test.h"

static void fill_normal(float *x, size_t n, float mean, float std, Rng *rng) {
    for (size_t i = 0; i < n; i++) {
        double u1 = rng_uniform(rng) + 1e-12, u2 = rng_uniform(rng);
        x[i] = mean + std * (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
    }
}

// Compares an analytic gradient with central differences of `loss` on up to
// `samples` coordinates of x (all when samples >= n). Returns the largest
// error relative to the largest gradient entry: max |fd - g| / max |g|.
typedef double (*LossFn)(void *ctx);
static double fd_relative_error(float *x, const float *grad, size_t n, LossFn loss, void *ctx, float h, size_t samples,
                                Rng *rng) {
    double max_grad = 1e-12, max_err = 0.0;
    for (size_t i = 0; i < n; i++) max_grad = fmax(max_grad, fabs(grad[i]));
    size_t count = samples < n ? samples : n;
    for (size_t s = 0; s < count; s++) {
        size_t i = samples < n ? (size_t)rng_below(rng, n) : s;
        float keep = x[i];
        x[i] = keep + h;
        double up = loss(ctx);
        x[i] = keep - h;
        double down = loss(ctx);
        x[i] = keep;
        double fd = (up - down) / (2.0 * h);
        max_err = fmax(max_err, fabs(fd - grad[i]));
    }
    return max_err / max_grad;
}

// Probe loss: sum of out * R for a fixed random R, so every output matters.
static double weighted_sum(const float *out, const float *R, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}

// --- norm ------------------------------------------------------------------------

typedef struct {
    NormKind kind;
    int N, C;
    float *x, *g, *b, *out, *mean, *rstd, *R;
} NormCase;

static double norm_loss(void *p) {
    NormCase *c = p;
    norm_forward(c->kind, c->out, c->mean, c->rstd, c->x, c->g, c->b, c->N, c->C, 1);
    return weighted_sum(c->out, c->R, (size_t)c->N * c->C);
}

TEST(test_op_norm_backward_finite_differences) {
    for (int kind = 0; kind < 2; kind++) {
        NormCase c = {.kind = (NormKind)kind, .N = 5, .C = 12};
        size_t n = (size_t)c.N * c.C;
        Rng rng;
        rng_init(&rng, 100 + kind, 0);
        c.x = xmalloc(n * 4);
        c.out = xmalloc(n * 4);
        c.R = xmalloc(n * 4);
        c.g = xmalloc(c.C * 4);
        c.b = kind ? xmalloc(c.C * 4) : NULL;
        c.mean = xmalloc(c.N * 4);
        c.rstd = xmalloc(c.N * 4);
        fill_normal(c.x, n, 0.3f, 1.0f, &rng);
        fill_normal(c.R, n, 0, 1, &rng);
        fill_normal(c.g, c.C, 1, 0.3f, &rng);
        if (c.b) fill_normal(c.b, c.C, 0, 0.3f, &rng);
        float *dx = xcalloc(n, 4), *dg = xcalloc(c.C, 4), *db = xcalloc(c.C, 4);
        norm_loss(&c);
        norm_backward(c.kind, dx, dg, kind ? db : NULL, c.R, c.x, c.mean, c.rstd, c.g, c.N, c.C, 2);
        // Tolerance: fp32 central differences with h = 1e-2 on O(1) values.
        double ex = fd_relative_error(c.x, dx, n, norm_loss, &c, 1e-2f, n, &rng);
        double eg = fd_relative_error(c.g, dg, c.C, norm_loss, &c, 1e-2f, c.C, &rng);
        CHECK(ex < 2e-3, "%s norm d/dx relative error %.2e", norm_kind_name(c.kind), ex);
        CHECK(eg < 2e-3, "%s norm d/dgain relative error %.2e", norm_kind_name(c.kind), eg);
        if (kind) {
            double eb = fd_relative_error(c.b, db, c.C, norm_loss, &c, 1e-2f, c.C, &rng);
            CHECK(eb < 2e-3, "layernorm d/dbias relative error %.2e", eb);
        }
        // Forward against the definition, computed in double.
        norm_loss(&c);  // the finite differences left perturbed outputs behind
        double worst = 0;
        for (int r = 0; r < c.N; r++) {
            double mu = 0, ss = 0;
            for (int k = 0; k < c.C; k++) mu += kind ? c.x[r * c.C + k] / (double)c.C : 0.0;
            for (int k = 0; k < c.C; k++) ss += pow(c.x[r * c.C + k] - mu, 2) / c.C;
            for (int k = 0; k < c.C; k++) {
                double y = (c.x[r * c.C + k] - mu) / sqrt(ss + 1e-5) * c.g[k] + (kind ? c.b[k] : 0.0);
                worst = fmax(worst, fabs(y - c.out[r * c.C + k]));
            }
        }
        CHECK(worst < 1e-5, "%s norm forward off the definition by %.2e", norm_kind_name(c.kind), worst);
        free(c.x);
        free(c.out);
        free(c.R);
        free(c.g);
        free(c.b);
        free(c.mean);
        free(c.rstd);
        free(dx);
        free(dg);
        free(db);
    }
}

// The gain and bias gradients over many rows (norm_backward sums them in
// blocks of rows, then the blocks: 300 rows make three, the last partial),
// added to what the gradients held, against double sums; and the same bits
// on 1 and 3 threads.
TEST(test_op_norm_backward_sums_rows_in_blocks) {
    enum { N = 300, C = 20 };
    Rng rng;
    rng_init(&rng, 31, 0);
    float *x = xmalloc(N * C * 4), *dy = xmalloc(N * C * 4), *y = xmalloc(N * C * 4), *g = xmalloc(C * 4);
    float *mean = xmalloc(N * 4), *rstd = xmalloc(N * 4), *start = xmalloc(C * 4);
    fill_normal(x, N * C, 0.3f, 1.0f, &rng);
    fill_normal(dy, N * C, 0, 1, &rng);
    fill_normal(g, C, 1, 0.3f, &rng);
    fill_normal(start, C, 0, 1, &rng);
    norm_forward(NORM_LAYERNORM, y, mean, rstd, x, g, g, N, C, 1);
    float *dx[2], *dg[2], *db[2];
    const int threads[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
        dx[t] = xcalloc(N * C, 4);
        dg[t] = xmalloc(C * 4);
        db[t] = xmalloc(C * 4);
        memcpy(dg[t], start, C * 4);
        memcpy(db[t], start, C * 4);
        norm_backward(NORM_LAYERNORM, dx[t], dg[t], db[t], dy, x, mean, rstd, g, N, C, threads[t]);
    }
    double worst = 0;
    for (int c = 0; c < C; c++) {
        double want_g = start[c], want_b = start[c], scale = 0;
        for (int n = 0; n < N; n++) {
            const double term = (double)dy[n * C + c] * (x[n * C + c] - mean[n]) * rstd[n];
            want_g += term;
            want_b += dy[n * C + c];
            scale += fabs(term) + fabs(dy[n * C + c]);
        }
        worst = fmax(worst, fmax(fabs(dg[0][c] - want_g), fabs(db[0][c] - want_b)) / scale);
    }
    CHECK(worst < 1e-6, "gain and bias gradients off the double sums by %.2e of the sum of magnitudes", worst);
    CHECK(memcmp(dx[0], dx[1], N * C * 4) == 0 && memcmp(dg[0], dg[1], C * 4) == 0 && memcmp(db[0], db[1], C * 4) == 0,
          "norm_backward's bits differ between 1 and 3 threads");
    for (int t = 0; t < 2; t++) {
        free(dx[t]);
        free(dg[t]);
        free(db[t]);
    }
    free(x);
    free(dy);
    free(y);
    free(g);
    free(mean);
    free(rstd);
    free(start);
}

// --- gelu, softmax + cross-entropy, matmul, encoder -----------------------------------

typedef struct {
    size_t n;
    float *x, *out, *R;
} GeluCase;

static double gelu_loss(void *p) {
    GeluCase *c = p;
    gelu_forward(c->out, c->x, c->n, 1);
    return weighted_sum(c->out, c->R, c->n);
}

TEST(test_op_gelu_backward_finite_differences) {
    GeluCase c = {.n = 200};
    Rng rng;
    rng_init(&rng, 7, 0);
    c.x = xmalloc(c.n * 4);
    c.out = xmalloc(c.n * 4);
    c.R = xmalloc(c.n * 4);
    fill_normal(c.x, c.n, 0, 2, &rng);
    fill_normal(c.R, c.n, 0, 1, &rng);
    float *dx = xmalloc(c.n * 4);
    gelu_backward(dx, c.x, c.R, c.n, 2);
    double e = fd_relative_error(c.x, dx, c.n, gelu_loss, &c, 1e-2f, c.n, &rng);
    CHECK(e < 1e-3, "gelu relative error %.2e", e);
    gelu_loss(&c);
    CHECK(fabsf(c.out[0] - c.x[0] / (1.0f + expf(-1.702f * c.x[0]))) < 1e-6f, "gelu is x sigmoid(1.702 x)");
    // Both in one sweep (the fp32 backward pass's), in place as model.c calls it: the same bits.
    float *both = xmalloc(c.n * 4), *grad = xmalloc(c.n * 4);
    memcpy(grad, c.R, c.n * 4);
    gelu_forward_backward(both, grad, c.x, grad, c.n, 2);
    CHECK(memcmp(both, c.out, c.n * 4) == 0, "gelu_forward_backward's output differs from gelu_forward's");
    CHECK(memcmp(grad, dx, c.n * 4) == 0, "gelu_forward_backward's gradient differs from gelu_backward's");
    free(both);
    free(grad);
    free(c.x);
    free(c.out);
    free(c.R);
    free(dx);
}

// The vectorised GELU (exp16, the training pass's) against x sigmoid(1.702 x)
// in double: the forward within 1e-6 relative, the derivative within 1.5e-6
// (exp16's 2 ulp and an ulp for each division and product after it),
// past both ends of exp16's range (below z = 1.702 x = -87.3 it flushes e^z to
// 0: errors under 1e-30 count as none) and with a tail that fills part of a
// vector; NaN stays NaN.
TEST(test_op_gelu_matches_double_reference) {
    enum { N = 20011 };
    static float x[N], y[N], dy[N], dx[N];
    for (int i = 0; i < N; i++) {
        x[i] = -110.0f + 220.0f * (float)i / (N - 1);
        dy[i] = 1.0f - 2.0f * (float)(i % 7) / 6.0f;
    }
    x[N - 1] = NAN;
    gelu_forward(y, x, N, 2);
    gelu_backward(dx, x, dy, N, 2);
    double worst_y = 0, worst_dx = 0;
    for (int i = 0; i < N - 1; i++) {
        // z = 1.702 x rounded to float as both GELUs take it (in e^z its rounding would be 4e-6 at x = -40).
        const double xd = x[i], z = (double)(1.702f * x[i]), s = 1.0 / (1.0 + exp(-z));
        const double want_y = xd * s, want_dx = dy[i] * (s + z * s * (1.0 - s));
        // The derivative relative to the sizes it is the sum of (its terms may cancel).
        const double dx_size = fabs(dy[i]) * (s + fabs(z) * s * (1 - s));
        worst_y = fmax(worst_y, fabs(y[i] - want_y) / fmax(fabs(want_y), 1e-30));
        worst_dx = fmax(worst_dx, fabs(dx[i] - want_dx) / fmax(dx_size, 1e-30));
    }
    CHECK(worst_y < 1e-6, "gelu off x sigmoid(1.702 x) by %.2e relative", worst_y);
    CHECK(worst_dx < 1.5e-6, "gelu' off its double value by %.2e relative", worst_dx);
    CHECK(isnan(y[N - 1]) && isnan(dx[N - 1]), "gelu(NaN) = %g, gelu'(NaN) dy = %g: not NaN", y[N - 1], dx[N - 1]);
}

typedef struct {
    int N, V;
    float *logits, *work, *losses;
    uint16_t *targets;
} CeCase;

static double ce_loss(void *p) {
    CeCase *c = p;
    memcpy(c->work, c->logits, (size_t)c->N * c->V * 4);
    return softmax_crossentropy_forward(c->work, c->losses, c->targets, c->N, c->V, 1);
}

TEST(test_op_softmax_crossentropy_finite_differences) {
    CeCase c = {.N = 6, .V = 9};
    Rng rng;
    rng_init(&rng, 8, 0);
    size_t n = (size_t)c.N * c.V;
    c.logits = xmalloc(n * 4);
    c.work = xmalloc(n * 4);
    c.losses = xmalloc(c.N * 4);
    c.targets = xmalloc(c.N * 2);
    fill_normal(c.logits, n, 0, 3, &rng);
    for (int i = 0; i < c.N; i++) c.targets[i] = (uint16_t)rng_below(&rng, c.V);
    double loss = ce_loss(&c);
    double expect = 0;
    for (int i = 0; i < c.N; i++) {
        double s = 0;
        for (int v = 0; v < c.V; v++) s += exp(c.logits[i * c.V + v]);
        expect += (log(s) - c.logits[i * c.V + c.targets[i]]) / c.N;
    }
    CHECK(fabs(loss - expect) < 1e-5, "mean cross-entropy %.7f vs %.7f", loss, expect);
    softmax_crossentropy_backward(c.work, c.targets, c.N, c.V, 1.0f / c.N, 2);
    float *grad = xmalloc(n * 4);
    memcpy(grad, c.work, n * 4);
    double e = fd_relative_error(c.logits, grad, n, ce_loss, &c, 1e-2f, n, &rng);
    CHECK(e < 2e-3, "softmax cross-entropy relative error %.2e", e);
    free(c.logits);
    free(c.work);
    free(c.losses);
    free(c.targets);
    free(grad);
}

// The vectorised softmax against double, for rows of whole 16-float vectors, a
// tail and a row shorter than a vector: probabilities within 2e-6 relative
// (exp16's 2 ulp, the sum's and the division's roundings), losses within 1e-5.
TEST(test_op_softmax_crossentropy_matches_double) {
    const int widths[] = {512, 517, 9};
    for (int w = 0; w < 3; w++) {
        const int N = 5, V = widths[w];
        float *z = xmalloc((size_t)N * V * 4), *p = xmalloc((size_t)N * V * 4), losses[5];
        uint16_t targets[5];
        Rng rng;
        rng_init(&rng, 30 + w, 0);
        fill_normal(z, (size_t)N * V, 0, 4, &rng);
        for (int n = 0; n < N; n++) targets[n] = (uint16_t)rng_below(&rng, V);
        memcpy(p, z, (size_t)N * V * 4);
        softmax_crossentropy_forward(p, losses, targets, N, V, 2);
        double worst_p = 0, worst_loss = 0;
        for (int n = 0; n < N; n++) {
            const float *zn = z + (size_t)n * V;
            double mx = -INFINITY, sum = 0;
            for (int i = 0; i < V; i++) mx = fmax(mx, zn[i]);
            for (int i = 0; i < V; i++) sum += exp(zn[i] - mx);
            for (int i = 0; i < V; i++) {
                const double want = exp(zn[i] - mx) / sum;
                worst_p = fmax(worst_p, fabs(p[(size_t)n * V + i] - want) / want);
            }
            worst_loss = fmax(worst_loss, fabs(losses[n] - (mx + log(sum) - zn[targets[n]])));
        }
        CHECK(worst_p < 2e-6, "V %d: probabilities off by %.2e relative", V, worst_p);
        CHECK(worst_loss < 1e-5, "V %d: losses off by %.2e", V, worst_loss);
        free(z);
        free(p);
    }
}

typedef struct {
    int N, IC, OC;
    float *x, *W, *out, *R;
} MatmulCase;

static double matmul_loss(void *p) {
    MatmulCase *c = p;
    matmul_forward(c->out, c->x, c->W, c->N, c->IC, c->OC, false);
    return weighted_sum(c->out, c->R, (size_t)c->N * c->OC);
}

TEST(test_op_matmul_backward_finite_differences) {
    MatmulCase c = {.N = 7, .IC = 5, .OC = 6};
    Rng rng;
    rng_init(&rng, 9, 0);
    c.x = xmalloc(35 * 4);
    c.W = xmalloc(30 * 4);
    c.out = xmalloc(42 * 4);
    c.R = xmalloc(42 * 4);
    fill_normal(c.x, 35, 0, 1, &rng);
    fill_normal(c.W, 30, 0, 1, &rng);
    fill_normal(c.R, 42, 0, 1, &rng);
    float *dx = xmalloc(35 * 4), *dW = xcalloc(30, 4);
    matmul_backward(dx, dW, c.R, c.x, c.W, c.N, c.IC, c.OC);
    double ex = fd_relative_error(c.x, dx, 35, matmul_loss, &c, 1e-2f, 35, &rng);
    double ew = fd_relative_error(c.W, dW, 30, matmul_loss, &c, 1e-2f, 30, &rng);
    CHECK(ex < 1e-3 && ew < 1e-3, "matmul relative errors %.2e %.2e", ex, ew);
    // With add, the product goes on top of what out held (the residual connections), in double here.
    float *sum = xmalloc(42 * 4);
    memcpy(sum, c.R, 42 * 4);
    matmul_forward(sum, c.x, c.W, c.N, c.IC, c.OC, true);
    double worst = 0;
    for (int n = 0; n < c.N; n++)
        for (int o = 0; o < c.OC; o++) {
            double want = c.R[n * c.OC + o];
            for (int i = 0; i < c.IC; i++) want += (double)c.x[n * c.IC + i] * c.W[o * c.IC + i];
            worst = fmax(worst, fabs(sum[n * c.OC + o] - want));
        }
    CHECK(worst < 1e-5, "matmul_forward with add off by %.2e", worst);
    free(sum);
    free(c.x);
    free(c.W);
    free(c.out);
    free(c.R);
    free(dx);
    free(dW);
}

TEST(test_op_encoder_backward) {
    ModelConfig cfg = {.vocab_size = 5,
                       .seq_len = 6,
                       .image_height = 2,
                       .image_width = 3,
                       .d_model = 4,
                       .n_layer = 1,
                       .n_head = 1,
                       .norm = NORM_IGPT};
    size_t np = param_count(&cfg);
    float *params = xcalloc(np, 4), *grads = xcalloc(np, 4);
    ParamPointers p, g;
    param_pointers(&cfg, params, &p);
    param_pointers(&cfg, grads, &g);
    Rng rng;
    rng_init(&rng, 10, 0);
    fill_normal(params, np, 0, 1, &rng);
    const int B = 2, T = 6, C = 4;
    uint16_t tokens[12] = {1, 4, 4, 0, 2, 3, 3, 3, 1, 0, 0, 4};
    float out[48], dout[48];
    encoder_forward(out, tokens, &p, B, T, C, 2);
    // out[b, t] = (t == 0 ? sos : wte[x[b, t-1]]) + wpe[t]
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                float e = t == 0 ? p.sos[c] : p.wte[tokens[b * T + t - 1] * C + c];
                bad += out[(b * T + t) * C + c] != e + p.wpe[t * C + c];
            }
    CHECK(bad == 0, "encoder forward: shifted tokens plus positions, sos first");
    fill_normal(dout, 48, 0, 1, &rng);
    encoder_backward(&g, dout, tokens, B, T, C, 2);
    // The gradient is linear: compare with a direct scatter in double.
    double dwte[20] = {0}, dwpe[24] = {0}, dsos[4] = {0}, worst = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double d = dout[(b * T + t) * C + c];
                if (t == 0) dsos[c] += d;
                else dwte[tokens[b * T + t - 1] * C + c] += d;
                dwpe[t * C + c] += d;
            }
    for (int i = 0; i < 20; i++) worst = fmax(worst, fabs(dwte[i] - g.wte[i]));
    for (int i = 0; i < 24; i++) worst = fmax(worst, fabs(dwpe[i] - g.wpe[i]));
    for (int i = 0; i < 4; i++) worst = fmax(worst, fabs(dsos[i] - g.sos[i]));
    CHECK(worst < 1e-5, "encoder backward off by %.2e", worst);
    param_pointers_free(&p);
    param_pointers_free(&g);
    free(params);
    free(grads);
}

// --- attention -----------------------------------------------------------------------

typedef struct {
    int B, T, C, NH;
    float *qkv, *atty, *lse, *scratch, *R;
} AttCase;

static double attention_loss(void *p) {
    AttCase *c = p;
    attention_forward(c->atty, c->lse, c->qkv, c->scratch, c->B, c->T, c->C, c->NH, 1);
    return weighted_sum(c->atty, c->R, (size_t)c->B * c->T * c->C);
}

TEST(test_op_attention_against_naive_and_finite_differences) {
    // T = 70 spans two query blocks of 64, so block boundaries are covered.
    AttCase c = {.B = 2, .T = 70, .C = 8, .NH = 2};
    const int hs = c.C / c.NH;
    size_t nqkv = (size_t)c.B * c.T * 3 * c.C, ny = (size_t)c.B * c.T * c.C;
    Rng rng;
    rng_init(&rng, 11, 0);
    c.qkv = xmalloc(nqkv * 4);
    c.atty = xmalloc(ny * 4);
    c.R = xmalloc(ny * 4);
    c.lse = xmalloc((size_t)c.B * c.NH * c.T * 4);
    c.scratch = xmalloc(attention_scratch_floats(c.T, c.C, c.NH, 2) * sizeof(float));
    fill_normal(c.qkv, nqkv, 0, 1.5f, &rng);
    fill_normal(c.R, ny, 0, 1, &rng);
    attention_loss(&c);
    // Naive reference in double: full score matrix, causal softmax.
    double worst = 0, worst_lse = 0;
    double *s = xmalloc((size_t)c.T * sizeof(double));
    for (int b = 0; b < c.B; b++)
        for (int h = 0; h < c.NH; h++)
            for (int t = 0; t < c.T; t++) {
                const float *q = c.qkv + ((size_t)b * c.T + t) * 3 * c.C + h * hs;
                double mx = -1e300, sum = 0;
                for (int u = 0; u <= t; u++) {
                    const float *k = c.qkv + ((size_t)b * c.T + u) * 3 * c.C + c.C + h * hs;
                    s[u] = 0;
                    for (int e = 0; e < hs; e++) s[u] += (double)q[e] * k[e];
                    s[u] /= sqrt((double)hs);
                    mx = fmax(mx, s[u]);
                }
                for (int u = 0; u <= t; u++) sum += exp(s[u] - mx);
                worst_lse = fmax(worst_lse, fabs(mx + log(sum) - c.lse[((size_t)b * c.NH + h) * c.T + t]));
                for (int e = 0; e < hs; e++) {
                    double y = 0;
                    for (int u = 0; u <= t; u++)
                        y += exp(s[u] - mx) / sum * c.qkv[((size_t)b * c.T + u) * 3 * c.C + 2 * c.C + h * hs + e];
                    worst = fmax(worst, fabs(y - c.atty[((size_t)b * c.T + t) * c.C + h * hs + e]));
                }
            }
    CHECK(worst < 1e-5, "attention output off the naive reference by %.2e", worst);
    CHECK(worst_lse < 1e-5, "attention log-sum-exp off by %.2e", worst_lse);
    float *dqkv = xmalloc(nqkv * 4);
    attention_backward(dqkv, c.R, c.atty, c.qkv, c.lse, c.scratch, c.B, c.T, c.C, c.NH, 2);
    double e = fd_relative_error(c.qkv, dqkv, nqkv, attention_loss, &c, 1e-2f, 600, &rng);
    CHECK(e < 5e-3, "attention backward relative error %.2e", e);
    free(s);
    free(c.qkv);
    free(c.atty);
    free(c.R);
    free(c.lse);
    free(c.scratch);
    free(dqkv);
}

// --- whole model -------------------------------------------------------------------

typedef struct {
    Model *m;
    const uint16_t *tokens;
    int B;
} ModelCase;

static double model_loss(void *p) {
    ModelCase *c = p;
    return model_forward(c->m, c->tokens, c->B);
}

TEST(test_model_gradient_finite_differences) {
    for (int kind = 0; kind < 2; kind++) {
        // 9x8 image: T = 72 crosses an attention block boundary.
        ModelConfig cfg = {.vocab_size = 11,
                           .seq_len = 72,
                           .image_height = 9,
                           .image_width = 8,
                           .d_model = 8,
                           .n_layer = 2,
                           .n_head = 2,
                           .norm = (NormKind)kind};
        Model m;
        model_create(&m, &cfg, 2, 2);
        Rng rng;
        rng_init(&rng, 20 + kind, 0);
        fill_normal(m.params, m.num_params, 0, 0.3f, &rng);  // not the init: w_head = 0 hides most paths
        uint16_t tokens[144];
        for (int i = 0; i < 144; i++) tokens[i] = (uint16_t)rng_below(&rng, 11);
        ModelCase c = {&m, tokens, 2};
        model_forward(&m, tokens, 2);
        model_zero_grads(&m);
        model_backward(&m, tokens, 2, 1.0f / (2 * 72));
        float *grad = xmalloc(m.num_params * 4);
        memcpy(grad, m.grads, m.num_params * 4);
        // Every tensor gets sampled: check each one's coordinates separately.
        int nt = param_tensors(&cfg, NULL);
        TensorInfo *t = xcalloc((size_t)nt, sizeof *t);
        param_tensors(&cfg, t);
        for (int i = 0; i < nt; i++) {
            double e = fd_relative_error(m.params + t[i].offset, grad + t[i].offset, t[i].count, model_loss, &c, 1e-2f,
                                         40, &rng);
            // Tolerance: fp32 forward, h = 1e-2, relative to the tensor's largest gradient.
            CHECK(e < 2e-2, "%s model: %s gradient relative error %.2e", norm_kind_name(cfg.norm), t[i].name, e);
        }
        free(t);
        free(grad);
        model_free(&m);
    }
}

TEST(test_model_features_are_pooled_norm_outputs) {
    ModelConfig cfg = {.vocab_size = 7,
                       .seq_len = 6,
                       .image_height = 2,
                       .image_width = 3,
                       .d_model = 8,
                       .n_layer = 2,
                       .n_head = 2,
                       .norm = NORM_IGPT};
    Model m;
    model_create(&m, &cfg, 3, 2);
    model_init_params(&cfg, m.params, 5);
    uint16_t tokens[18];
    for (int i = 0; i < 18; i++) tokens[i] = (uint16_t)(i * 5 % 7);
    model_forward(&m, tokens, 3);
    float features[3 * 3 * 8];
    model_features(&m, 3, features);
    // Layer 0's feature: mean over positions of norm1(embedding) computed by hand.
    double worst = 0;
    for (int b = 0; b < 3; b++)
        for (int c = 0; c < 8; c++) {
            double acc = 0;
            for (int t = 0; t < 6; t++) {
                const float *e = t == 0 ? m.p.sos : m.p.wte + tokens[b * 6 + t - 1] * 8;
                double ss = 0;
                for (int k = 0; k < 8; k++) ss += pow(e[k] + m.p.wpe[t * 8 + k], 2) / 8;
                acc += (e[c] + m.p.wpe[t * 8 + c]) / sqrt(ss + 1e-5) * m.p.layers[0].ln1_g[c] / 6;
            }
            worst = fmax(worst, fabs(acc - features[(b * 3 + 0) * 8 + c]));
        }
    CHECK(worst < 1e-5, "layer-0 features off by %.2e", worst);
    model_free(&m);
}

// Every buffer of the model starts on a cache line (xcalloc_aligned), so that
// rows of C floats, C a multiple of 16, are whole AVX-512 vectors in whole
// lines; a plain big calloc starts 16 bytes into a page.
TEST(test_model_buffers_start_on_cache_lines) {
    for (size_t n = 1; n < 300000; n = n * 7 + 3) {
        unsigned char *p = xcalloc_aligned(n, 3);
        bool zero = true;
        for (size_t i = 0; i < n * 3; i++) zero &= p[i] == 0;
        CHECK((uintptr_t)p % 64 == 0 && zero, "xcalloc_aligned(%zu, 3): %p, zeroed %d", n, (void *)p, zero);
        memset(p, 0xff, n * 3);  // the whole size is usable (ASan and valgrind see past it)
        xfree_aligned(p);
    }
    xfree_aligned(NULL);
    ModelConfig cfg = {.vocab_size = 512, .seq_len = 64, .image_height = 8, .image_width = 8, .norm = NORM_IGPT};
    CHECK(model_config_named("tiny", &cfg), "config tiny exists");
    Model m;
    model_create(&m, &cfg, 3, 2);
    model_use_bf16_products(&m);
    const void *buffers[] = {m.params,      m.grads,     m.act_memory, m.scratch,  m.params_bf16,
                             m.inputs_bf16, m.grad_bf16, m.fc_bf16,    m.act.resid};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        CHECK((uintptr_t)buffers[i] % 64 == 0, "buffer %zu at %p", i, buffers[i]);
    model_free(&m);
}

TEST(test_model_param_count_and_layout) {
    ModelConfig s = {.vocab_size = 512, .seq_len = 1024, .image_height = 32, .image_width = 32, .norm = NORM_IGPT};
    CHECK(model_config_named("s", &s), "config s exists");
    size_t n = param_count(&s);
    CHECK(n == 76571648, "iGPT-S at 32x32 with 512 colors: %zu parameters (paper: 76.6M)", n);
    CHECK(!model_config_named("xxl", &s), "unknown names are refused");
    // Layers are contiguous slices, in order, covering the whole buffer.
    ModelConfig c = {.vocab_size = 9,
                     .seq_len = 4,
                     .image_height = 2,
                     .image_width = 2,
                     .d_model = 8,
                     .n_layer = 3,
                     .n_head = 2,
                     .norm = NORM_LAYERNORM};
    size_t prev_end = 0, begin, end;
    for (int l = -1; l <= c.n_layer; l++) {
        layer_param_range(&c, l, &begin, &end);
        CHECK(begin == prev_end, "slice %d starts where the previous ends (%zu vs %zu)", l, begin, prev_end);
        prev_end = end;
    }
    CHECK(prev_end == param_count(&c), "slices cover the buffer");
    size_t per_layer = 12 * 64 + 4 * 8;  // 12 C^2 + gains and biases of two LayerNorms
    layer_param_range(&c, 1, &begin, &end);
    CHECK(end - begin == per_layer, "a LayerNorm layer holds %zu floats, expected %zu", end - begin, per_layer);
}
