// The linear-probe solver: against SciPy on a committed fixture, on
// separable data, and its standardisation.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "test.h"

void test_probe_solver_matches_scipy(void) {
    Fixture fx = {0};
    bool loaded = fixture_load("tests/fixtures/probe_reference.bin", &fx);
    CHECK(loaded, "tests/fixtures/probe_reference.bin loads (scripts/reference/probe_reference.py writes it)");
    if (!loaded) return;
    const FixtureArray *X = fixture_get(&fx, "X"), *y32 = fixture_get(&fx, "y"), *W = fixture_get(&fx, "W");
    const FixtureArray *pred = fixture_get(&fx, "predictions");
    const double l2 = *(const double *)fixture_get(&fx, "l2")->data;
    const double objective = *(const double *)fixture_get(&fx, "objective")->data;
    const int64_t n = X->dims[0];
    const int d = (int)X->dims[1], k = (int)W->dims[0];
    uint16_t *y = xmalloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) y[i] = (uint16_t)((const int32_t *)y32->data)[i];
    ProbeProblem p = {.n = n, .d = d, .k = k, .X = X->data, .y = y};
    ProbeSolverOptions opt;
    probe_solver_defaults(&opt);
    opt.l2 = l2;
    opt.epsilon = 1e-8;
    opt.threads = 2;
    LinearProbe m;
    probe_fit(&p, &opt, NULL, &m);
    // Tolerances: the 1e-5 relative on the objective; same predictions.
    CHECK(fabs(m.objective - objective) < 1e-5 * objective, "objective %.10f vs SciPy %.10f", m.objective, objective);
    CHECK(m.status >= 0, "liblbfgs status %d", m.status);
    CHECK(m.grad_norm < 1e-5, "converged: gradient norm %.2e", m.grad_norm);
    uint16_t *predictions = xmalloc((size_t)n * 2);
    probe_score(&m, &p, 2, NULL, predictions);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) differ += predictions[i] != ((const int32_t *)pred->data)[i];
    CHECK(differ == 0, "%lld predictions differ from SciPy's", (long long)differ);
    double werr = 0;
    for (size_t i = 0; i < W->count; i++) werr = fmax(werr, fabs(m.w[i] - ((const double *)W->data)[i]));
    CHECK(werr < 1e-3, "weights within 1e-3 of SciPy's (strictly convex problem): %.2e", werr);
    free(predictions);
    free(y);
    linear_probe_free(&m);
    fixture_free(&fx);
}

void test_probe_separable_data_is_solved(void) {
    // Two well-separated clusters per class in 5 dimensions: 100% accuracy.
    const int64_t n = 300;
    const int d = 5, k = 3;
    double *X = xmalloc((size_t)n * d * sizeof(double));
    uint16_t *y = xmalloc((size_t)n * 2);
    Rng rng;
    rng_init(&rng, 4, 0);
    for (int64_t i = 0; i < n; i++) {
        y[i] = (uint16_t)(i % k);
        for (int j = 0; j < d; j++) X[i * d + j] = (j == y[i] ? 6.0 : 0.0) + rng_uniform(&rng) - 0.5;
    }
    ProbeProblem p = {.n = n, .d = d, .k = k, .X = X, .y = y};
    ProbeSolverOptions opt;
    probe_solver_defaults(&opt);
    opt.l2 = 1e-4;
    LinearProbe m;
    probe_fit(&p, &opt, NULL, &m);
    double ce;
    double acc = probe_score(&m, &p, 2, &ce, NULL);
    CHECK(acc == 1.0, "separable classes: accuracy %.4f", acc);
    CHECK(ce < 0.05, "and confident: mean cross-entropy %.4f", ce);
    free(X);
    free(y);
    linear_probe_free(&m);
}

void test_probe_standardize(void) {
    // Rows of 3 features with stride 4 (a layer inside a wider feature row).
    float X[4 * 4] = {1, 10, 5, 99, 3, 10, 7, 99, 5, 10, 9, 99, 7, 10, 11, 99};
    double mean[3], inv_std[3], out[12];
    feature_stats(X, 4, 3, 4, mean, inv_std);
    CHECK(fabs(mean[0] - 4) < 1e-12 && fabs(mean[1] - 10) < 1e-12 && fabs(mean[2] - 8) < 1e-12, "means");
    CHECK(fabs(1 / inv_std[0] - sqrt(5.0)) < 1e-12, "population std");
    CHECK(inv_std[1] == 1e6, "a constant feature gets std 1e-6, not a division by zero");
    standardize(X, 4, 3, 4, mean, inv_std, out);
    CHECK(fabs(out[0] + 3 / sqrt(5.0)) < 1e-12 && out[1] == 0.0 && fabs(out[11] - 3 / sqrt(5.0)) < 1e-12,
          "standardised values");
}
