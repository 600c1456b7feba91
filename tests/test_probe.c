// The linear-probe solver: against SciPy on a committed fixture, on
// separable data, and its standardisation.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/model.h"
#include "probe/features.h"
#include "probe/probe.h"
#include "probe/solver.h"
#include "test.h"
#include "train/checkpoint.h"
#include "util/json.h"

TEST(test_probe_solver_matches_scipy) {
    Fixture fx = {0};
    bool loaded = fixture_load("tests/fixtures/probe_reference.bin", &fx);
    CHECK(loaded, "tests/fixtures/probe_reference.bin loads (tests/reference/probe_reference.py writes it)");
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

TEST(test_probe_separable_data_is_solved) {
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

// --- The batched solver (solver.h) ------------------------------------------------------

// n rows of d features in `blocks` blocks (each block its own mix of the
// same classes), labels i % k: overlapping classes, a strictly convex problem.
static double *batch_features(int64_t n, int d, int k, int blocks, uint64_t seed, uint16_t *y) {
    double *X = xmalloc((size_t)blocks * n * d * sizeof(double));
    Rng rng;
    rng_init(&rng, seed, 0);
    for (int64_t i = 0; i < n; i++) y[i] = (uint16_t)(i % k);
    for (int b = 0; b < blocks; b++)
        for (int64_t i = 0; i < n; i++)
            for (int q = 0; q < d; q++)
                X[((size_t)b * n + i) * d + q] = ((q + b) % k == y[i] ? 0.8 : 0.0) + rng_normal(&rng);
    return X;
}

// The fixture again, through probe_lbfgs with the preconditioner: the change
// of variables must not move the optimum.
TEST(test_probe_preconditioned_solver_matches_scipy) {
    Fixture fx = {0};
    CHECK(fixture_load("tests/fixtures/probe_reference.bin", &fx), "fixture loads");
    const FixtureArray *X = fixture_get(&fx, "X"), *y32 = fixture_get(&fx, "y"), *Wref = fixture_get(&fx, "W");
    const double l2 = *(const double *)fixture_get(&fx, "l2")->data;
    const double objective = *(const double *)fixture_get(&fx, "objective")->data;
    const int64_t n = X->dims[0];
    const int d = (int)X->dims[1], k = (int)Wref->dims[0];
    uint16_t *y = xmalloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) y[i] = (uint16_t)((const int32_t *)y32->data)[i];
    const ProbeBatchShape shape = {.n = n, .d = d, .k = k, .blocks = 1, .per_block = 1, .y = y};
    ProbeEvaluator *e = probe_cpu_evaluator_create(&shape, X->data, 2);
    double *C = xmalloc((size_t)d * d * sizeof(double)), *M = xmalloc((size_t)d * d * sizeof(double)),
           *M_inv = xmalloc((size_t)d * d * sizeof(double));
    probe_gram(X->data, n, d, C);
    probe_preconditioner(C, d, l2, M, M_inv);
    double err = 0.0;  // M M_inv = I
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double sum = 0.0;
            for (int q = 0; q < d; q++) sum += M[i * d + q] * M_inv[q * d + j];
            err = fmax(err, fabs(sum - (i == j)));
        }
    CHECK(err < 1e-10, "M and M_inv are inverses: %.2e", err);
    ProbeLbfgsOptions opt = {.max_iters = 1000, .epsilon = 1e-8, .M = M, .M_inv = M_inv};
    double *W = xcalloc(Wref->count, sizeof(double));
    ProbeFit fit;
    probe_lbfgs(e, &l2, &opt, W, &fit);
    CHECK(fabs(fit.objective - objective) < 1e-5 * objective, "objective %.10f vs SciPy %.10f", fit.objective,
          objective);
    double werr = 0;
    for (size_t i = 0; i < Wref->count; i++) werr = fmax(werr, fabs(W[i] - ((const double *)Wref->data)[i]));
    CHECK(werr < 1e-3, "weights within 1e-3 of SciPy's: %.2e (%d iterations)", werr, fit.iters);
    probe_evaluator_free(e);
    free(W);
    free(C);
    free(M);
    free(M_inv);
    free(y);
    fixture_free(&fx);
}

// The evaluator's gradient against central differences of its objective, with
// folds (so rows held out of some problems) and different L2 strengths.
TEST(test_probe_evaluator_gradient) {
    enum { N = 30, D = 4, K = 3, BLOCKS = 2, J = 3 };
    uint16_t y[N];
    int8_t fold[N];
    double *X = batch_features(N, D, K, BLOCKS, 3, y);
    for (int i = 0; i < N; i++) fold[i] = (int8_t)(i % 3 == 0 ? -1 : i % 2);  // folds -1, 0, 1; problem 2 fits all
    const ProbeBatchShape shape = {.n = N, .d = D, .k = K, .blocks = BLOCKS, .per_block = J, .y = y, .fold = fold};
    const int P = BLOCKS * J, V = K * (D + 1);
    ProbeEvaluator *e = probe_cpu_evaluator_create(&shape, X, 2);
    double W[BLOCKS * J * K * (D + 1)], G[BLOCKS * J * K * (D + 1)], G2[BLOCKS * J * K * (D + 1)], f[BLOCKS * J],
        fp[BLOCKS * J], fm[BLOCKS * J], l2[BLOCKS * J];
    uint8_t active[BLOCKS * J];
    Rng rng;
    rng_init(&rng, 5, 0);
    for (int i = 0; i < P * V; i++) W[i] = 0.5 * rng_normal(&rng);
    for (int p = 0; p < P; p++) {
        l2[p] = 0.01 * (p + 1);
        active[p] = 1;
    }
    e->evaluate(e, W, l2, active, f, G, NULL);
    double worst = 0.0;
    const double h = 1e-6;
    for (int i = 0; i < V; i++) {
        for (int p = 0; p < P; p++) W[p * V + i] += h;
        e->evaluate(e, W, l2, active, fp, G2, NULL);
        for (int p = 0; p < P; p++) W[p * V + i] -= 2 * h;
        e->evaluate(e, W, l2, active, fm, G2, NULL);
        for (int p = 0; p < P; p++) {
            W[p * V + i] += h;
            worst = fmax(worst, fabs((fp[p] - fm[p]) / (2 * h) - G[p * V + i]));
        }
    }
    CHECK(worst < 1e-7, "gradient = central differences of the objective, every weight and bias: %.2e", worst);
    probe_evaluator_free(e);
    free(X);
}

// Several blocks, folds and L2 strengths in one batch: each problem ends where
// it ends solved alone on its own rows, and its held-out count is probe_score's.
TEST(test_probe_batch_equals_problems_alone) {
    enum { N = 120, D = 5, K = 3, BLOCKS = 2, FOLDS = 3, J = FOLDS + 1 };
    uint16_t y[N];
    int8_t fold[N];
    double *X = batch_features(N, D, K, BLOCKS, 11, y);
    probe_assign_folds(y, N, K, FOLDS, 9, fold);
    const ProbeBatchShape shape = {.n = N, .d = D, .k = K, .blocks = BLOCKS, .per_block = J, .y = y, .fold = fold};
    const int P = BLOCKS * J, V = K * (D + 1);
    double W[BLOCKS * J * K * (D + 1)] = {0}, l2[BLOCKS * J];
    for (int p = 0; p < P; p++) l2[p] = p % 2 ? 0.3 : 0.003;  // neighbours differ: they finish at other times
    ProbeEvaluator *e = probe_cpu_evaluator_create(&shape, X, 2);
    ProbeFit fits[BLOCKS * J];
    const ProbeLbfgsOptions opt = {.max_iters = 1000, .epsilon = 1e-9};
    probe_lbfgs(e, l2, &opt, W, fits);
    probe_evaluator_free(e);
    double worst = 0.0;
    int wrong_counts = 0, unconverged = 0;
    for (int p = 0; p < P; p++) {
        const int b = p / J, j = p % J;
        double *Xa = xmalloc((size_t)N * D * sizeof(double)), *Xh = xmalloc((size_t)N * D * sizeof(double));
        uint16_t ya[N], yh[N];
        int64_t na = 0, nh = 0;
        for (int i = 0; i < N; i++) {
            const double *row = X + ((size_t)b * N + i) * D;
            if (fold[i] == j) {
                memcpy(Xh + nh * D, row, D * sizeof(double));
                yh[nh++] = y[i];
            } else {
                memcpy(Xa + na * D, row, D * sizeof(double));
                ya[na++] = y[i];
            }
        }
        const ProbeProblem alone = {na, D, K, Xa, ya}, held = {nh, D, K, Xh, yh};
        ProbeSolverOptions o;
        probe_solver_defaults(&o);
        o.l2 = l2[p];
        o.epsilon = 1e-9;
        o.threads = 1;
        LinearProbe m;
        probe_fit(&alone, &o, NULL, &m);
        for (int i = 0; i < V; i++) worst = fmax(worst, fabs(m.w[i] - W[p * V + i]));
        unconverged += fits[p].status != PROBE_FIT_CONVERGED;
        if (nh > 0) {
            const LinearProbe batch = {.d = D, .k = K, .w = W + p * V};
            const double acc = probe_score(&batch, &held, 1, NULL, NULL);
            wrong_counts += llround(acc * (double)nh) != fits[p].heldout_correct;
        } else {
            wrong_counts += fits[p].heldout_correct != 0;
        }
        linear_probe_free(&m);
        free(Xa);
        free(Xh);
    }
    CHECK(unconverged == 0, "every problem of the batch converged: %d did not", unconverged);
    CHECK(worst < 1e-6, "batched and alone: the same weights within 1e-6 (both to |g| < 1e-9): %.2e", worst);
    CHECK(wrong_counts == 0, "held-out counts = probe_score on the held-out rows: %d differ", wrong_counts);
    free(X);
}

TEST(test_probe_folds_stratified_and_seeded) {
    enum { N = 1003, K = 7, FOLDS = 5 };
    uint16_t y[N];
    int8_t a[N], b[N], c[N];
    for (int i = 0; i < N; i++) y[i] = (uint16_t)((i * 37 + i / 3) % K);
    probe_assign_folds(y, N, K, FOLDS, 42, a);
    probe_assign_folds(y, N, K, FOLDS, 42, b);
    probe_assign_folds(y, N, K, FOLDS, 43, c);
    int64_t size[FOLDS] = {0}, per[K][FOLDS] = {{0}}, cls[K] = {0};
    int bad = 0, moved = 0;
    for (int i = 0; i < N; i++) {
        bad += a[i] < 0 || a[i] >= FOLDS;
        if (a[i] < 0 || a[i] >= FOLDS) continue;
        size[a[i]]++;
        per[y[i]][a[i]]++;
        cls[y[i]]++;
        moved += a[i] != c[i];
    }
    CHECK(bad == 0, "every row in a fold");
    int64_t lo = N, hi = 0, spread = 0;
    for (int f = 0; f < FOLDS; f++) {
        lo = size[f] < lo ? size[f] : lo;
        hi = size[f] > hi ? size[f] : hi;
    }
    for (int k = 0; k < K; k++)
        for (int f = 0; f < FOLDS; f++) {
            const int64_t d = llabs(per[k][f] * FOLDS - cls[k]);
            spread = d > spread ? d : spread;
        }
    CHECK(hi - lo <= 1, "fold sizes within one row: %lld..%lld", (long long)lo, (long long)hi);
    CHECK(spread < FOLDS, "each class's share of each fold within one row of 1/%d", FOLDS);
    CHECK(memcmp(a, b, N) == 0, "the same seed, the same folds");
    CHECK(moved > N / 2, "another seed, other folds: %d rows moved", moved);
}

// --select kfold against SciPy (tests/reference/probe_reference.py): the
// cross-validation accuracy at each L2 of the grid, the chosen L2, and the
// evaluation accuracy of the fit on all rows at it, for a fixed fold assignment.
TEST(test_probe_kfold_selection_matches_scipy) {
    Fixture fx = {0};
    bool loaded = fixture_load("tests/fixtures/probe_kfold.bin", &fx);
    CHECK(loaded, "tests/fixtures/probe_kfold.bin loads (tests/reference/probe_reference.py writes it)");
    if (!loaded) return;
    const FixtureArray *X = fixture_get(&fx, "X"), *y32 = fixture_get(&fx, "y"), *Xe = fixture_get(&fx, "X_eval"),
                       *ye32 = fixture_get(&fx, "y_eval"), *f32 = fixture_get(&fx, "fold"),
                       *grid = fixture_get(&fx, "l2"), *cv = fixture_get(&fx, "cv_accuracy");
    const double chosen = *(const double *)fixture_get(&fx, "chosen_l2")->data;
    const double eval_accuracy = *(const double *)fixture_get(&fx, "eval_accuracy")->data;
    const int64_t n = X->dims[0], n_eval = Xe->dims[0];
    const int d = (int)X->dims[1];
    uint16_t *y = xmalloc((size_t)n * 2), *ye = xmalloc((size_t)n_eval * 2);
    int8_t *fold = xmalloc((size_t)n);
    int folds = 0;
    for (int64_t i = 0; i < n; i++) {
        y[i] = (uint16_t)((const int32_t *)y32->data)[i];
        fold[i] = (int8_t)((const int32_t *)f32->data)[i];
        folds = fold[i] + 1 > folds ? fold[i] + 1 : folds;
    }
    for (int64_t i = 0; i < n_eval; i++) ye[i] = (uint16_t)((const int32_t *)ye32->data)[i];
    FeatureSet train = {.count = n, .layers = 1, .dim = d, .num_classes = 3, .labels = y, .values = X->data};
    FeatureSet eval = {.count = n_eval, .layers = 1, .dim = d, .num_classes = 3, .labels = ye, .values = Xe->data};
    const ProbeProtocol protocol = {.l2_grid = grid->data,
                                    .num_l2 = (int)grid->count,
                                    .max_iters = 1000,
                                    .threads = 2,
                                    .select = PROBE_SELECT_KFOLD,
                                    .folds = folds,
                                    .fold = fold};
    ProbeLayerResult r;
    probe_layers(&train, NULL, &eval, &protocol, &r);
    int differ = 0;
    for (int g = 0; g < protocol.num_l2; g++)
        differ += llround(r.holdout_by_l2[g] * n) != llround(((const double *)cv->data)[g] * n);
    CHECK(differ == 0, "CV accuracy at every L2 as SciPy's (%d differ; at the chosen %.4f)", differ,
          r.holdout_accuracy);
    CHECK(r.l2 == chosen, "chosen L2 %g, SciPy %g", r.l2, chosen);
    CHECK(llround(r.accuracy * n_eval) == llround(eval_accuracy * n_eval), "eval accuracy %.4f, SciPy %.4f", r.accuracy,
          eval_accuracy);
    CHECK(fabs(r.accuracy_se - sqrt(r.accuracy * (1 - r.accuracy) / n_eval)) < 1e-12 && r.eval_images == n_eval &&
              r.holdout_images == n,
          "standard errors from the counts");
    CHECK(!r.l2_at_grid_end, "an interior choice is not flagged");
    // Two strengths so strong that only the biases fit: the same CV accuracy, and the stronger is chosen
    // (the grid given weakest first: the walk orders it), at the grid's end.
    const double strong[] = {1e3, 1e4};
    ProbeProtocol tie = protocol;
    tie.l2_grid = strong;
    tie.num_l2 = 2;
    probe_layers(&train, NULL, &eval, &tie, &r);
    CHECK(r.holdout_by_l2[0] == r.holdout_by_l2[1] && r.l2 == 1e4 && r.l2_at_grid_end,
          "a tie keeps the stronger L2, flagged at the grid's end: %g (%.4f, %.4f)", r.l2, r.holdout_by_l2[0],
          r.holdout_by_l2[1]);
    free(y);
    free(ye);
    free(fold);
    fixture_free(&fx);
}

// The path's fits stop early (probe.c's PATH_EPSILON); the probe each layer
// keeps is polished to the solver's tolerance: the fit probe_fit makes alone
// at the chosen strength, to 1e-6 of ||w|| in gradient norm.
TEST(test_probe_chosen_probe_is_polished) {
    enum { N = 600, D = 8, K = 3, L = 2 };
    uint16_t y[N];
    double *X = batch_features(N, D, K, L, 21, y);
    float *values = xmalloc((size_t)N * L * D * sizeof(float));
    for (int l = 0; l < L; l++)
        for (int i = 0; i < N; i++)
            for (int q = 0; q < D; q++) values[((size_t)i * L + l) * D + q] = (float)X[((size_t)l * N + i) * D + q];
    FeatureSet train = {.count = N, .layers = L, .dim = D, .num_classes = K, .labels = y, .values = values};
    const double grid[] = {0.1, 1e-3, 1e-5};
    const ProbeProtocol protocol = {.l2_grid = grid,
                                    .num_l2 = 3,
                                    .max_iters = 1000,
                                    .seed = 3,
                                    .threads = 2,
                                    .select = PROBE_SELECT_KFOLD,
                                    .folds = 3};
    ProbeLayerResult r[L];
    probe_layers(&train, NULL, &train, &protocol, r);
    for (int l = 0; l < L; l++) {
        double mean[D], inv_std[D], *Xs = xmalloc((size_t)N * D * sizeof(double));
        feature_stats(values + l * D, N, D, L * D, mean, inv_std);
        standardize(values + l * D, N, D, L * D, mean, inv_std, Xs);
        const ProbeProblem problem = {N, D, K, Xs, y};
        ProbeSolverOptions opt;
        probe_solver_defaults(&opt);
        opt.l2 = r[l].l2;
        opt.epsilon = 1e-10;
        LinearProbe alone;
        probe_fit(&problem, &opt, NULL, &alone);
        double norm = 0.0, loss = 0.0;
        for (int i = 0; i < K * (D + 1); i++) norm += alone.w[i] * alone.w[i];
        const double accuracy = probe_score(&alone, &problem, 2, &loss, NULL);
        CHECK(r[l].grad_norm <= 1e-6 * fmax(1.0, sqrt(norm)),
              "layer %d: the kept probe's gradient %.2e within 1e-6 of ||w|| = %.2f", l, r[l].grad_norm, sqrt(norm));
        CHECK(r[l].accuracy == accuracy && fabs(r[l].eval_loss - loss) <= 1e-6 * loss,
              "layer %d: scored as the fit alone (accuracy %.4f vs %.4f, loss %.12f vs %.12f)", l, r[l].accuracy,
              accuracy, r[l].eval_loss, loss);
        linear_probe_free(&alone);
        free(Xs);
    }
    free(values);
    free(X);
}

TEST(test_probe_standardize) {
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

// --- ./igpt probe end to end -------------------------------------------------------

// A tiny run on 40 CIFAR-style 8x8 images with 16 colors: checkpoints at steps 3 and 6.
static char *probe_fixture_run(const char *name, int colors) {
    make_cifar_batches(test_path("cifar"), 8, 4);
    char *data = xstrdup(test_path("data-%d", colors));
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --colors %d --val 10 --no-preview --quiet",
                   test_path("cifar"), data, colors) == 0,
          "prepare: %s", cli_stderr());
    CHECK(
        run_igpt(
            "train --device cpu --data %s --out %s --steps 6 --checkpoint-every 3 --d-model 16 --n-layer 2 --n-head 2 "
            "--batch 4 --quiet",
            data, test_path("%s", name)) == 0,
        "train: %s", cli_stderr());
    return data;
}

TEST(test_probe_cli_checkpoint_and_run) {
    char *data = probe_fixture_run("run", 16);
    const char *ckpt = test_path("run/checkpoint-00000006.bin");
    // With the --l2 grid of the --run below, which then keeps this result.
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data, ckpt) == 0, "probe: %s",
          cli_stderr());
    CHECK(path_exists(test_path("run/probe/probe-00000006.csv")) &&
              path_exists(test_path("run/probe/probe-00000006.json")),
          "results written beside the run");
    char *csv = (char *)read_whole_file(test_path("run/probe/probe-00000006.csv"), NULL);
    int rows = 0;
    for (char *p = csv; p && *p; p++) rows += *p == '\n';
    CHECK(rows == 1 + 3, "header + one row per layer (L+1 = 3): %d lines", rows);
    free(csv);

    // The cached features are the model's: recompute them in-process for the same images.
    FeatureSet cached;
    features_load(test_path("run/probe/features-00000006-val.bin"), &cached);
    CheckpointMeta meta;
    float *params, *am, *av;
    checkpoint_load(ckpt, &meta, &params, &am, &av);
    Model m;
    model_create(&m, &meta.model, 10, 2);
    memcpy(m.params, params, m.num_params * 4);
    TokenDataset val;
    dataset_read(test_path("data-16/val.bin"), &val);
    model_forward(&m, val.tokens, (int)val.count);
    float *direct = xmalloc((size_t)val.count * 3 * 16 * 4);
    model_features(&m, (int)val.count, direct);
    CHECK(cached.count == val.count && cached.layers == 3 && cached.dim == 16, "feature file shape");
    double worst = 0;
    for (size_t i = 0; i < (size_t)val.count * 3 * 16; i++) worst = fmax(worst, fabs(direct[i] - cached.values[i]));
    CHECK(worst == 0.0, "cached features equal the forward pass's (max difference %.2e)", worst);
    CHECK(memcmp(cached.labels, val.labels, (size_t)val.count * 2) == 0, "with the images' labels");
    free(direct);
    free(params);
    free(am);
    free(av);
    model_free(&m);
    dataset_free(&val);
    features_free(&cached);

    // A whole run: step 0 (random init) and step 3 are new, step 6 is skipped.
    CHECK(run_igpt("probe --device cpu --data %s --run %s --l2 0.1 --quiet", data, test_path("run")) == 0,
          "probe --run: %s", cli_stderr());
    CHECK(path_exists(test_path("run/probe/probe-00000000.csv")) &&
              path_exists(test_path("run/probe/probe-00000003.csv")),
          "random init and every checkpoint probed");
    CHECK(strstr(cli_stdout(), "step 6") == NULL && strstr(cli_stdout(), "recomputing") == NULL,
          "a checkpoint already probed with these settings is skipped: %s", cli_stdout());
    char *table = (char *)read_whole_file(test_path("run/probe/probes.csv"), NULL);
    CHECK(table && strstr(table,
                          "step,eval_gen_loss,best_layer,best_accuracy,acc_layer_0,acc_layer_1,acc_layer_2,"
                          "eval_images,best_accuracy_se\n"),
          "run table header: %s", table ? table : "(missing)");
    // Random init has a zero head: uniform predictions, log(16) = 2.772589 nats/token.
    CHECK(table && strstr(table, "\n0,2.77258") && strstr(table, "\n3,") && strstr(table, "\n6,"),
          "rows for steps 0, 3 and 6: %s", table ? table : "");
    free(table);
    CHECK(run_igpt("probe --device cpu --data %s --baseline pixels --l2 1 --quiet", data) == 0 &&
              path_exists(test_path("data-16/probe/baseline-pixels.csv")),
          "pixel baseline: %s", cli_stderr());
    free(data);
}

TEST(test_probe_cli_bad_input) {
    char *data = probe_fixture_run("run", 16);
    char *data8 = probe_fixture_run("run8", 8);
    // Checkpoint and data with different palettes.
    int status = run_igpt("probe --device cpu --data %s --checkpoint %s --quiet", data8,
                          test_path("run/checkpoint-00000006.bin"));
    CHECK(status == 1 && strstr(cli_stderr(), "is a model of 16 colors at 8x8, but"), "color mismatch: %s",
          cli_stderr());
    // Missing evaluation split.
    unlink(test_path("data-16/test.bin"));
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --eval test --quiet", data,
                      test_path("run/checkpoint-00000006.bin"));
    CHECK(status == 1 && strstr(cli_stderr(), "test.bin: no such file"), "missing split: %s", cli_stderr());
    // A feature file of another model in the cache.
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data,
                   test_path("run/checkpoint-00000003.bin")) == 0,
          "probe step 3");
    make_directories(test_path("other/probe"));
    size_t n;
    uint8_t *f = read_whole_file(test_path("run/probe/features-00000003-train.bin"), &n);
    write_whole_file(test_path("other/probe/features-00000006-train.bin"), f, n);
    free(f);
    // The cache is derived data: features of another model are said and recomputed, not used.
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --out %s --l2 0.1 --quiet", data,
                      test_path("run/checkpoint-00000006.bin"), test_path("other/probe"));
    CHECK(
        status == 0 && strstr(cli_stdout(), "features-00000006-train.bin holds features of another model: recomputing"),
        "foreign features: %d %s %s", status, cli_stdout(), cli_stderr());
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --out %s --l2 0.1 --quiet", data,
                   test_path("run/checkpoint-00000006.bin"), test_path("clean/probe")) == 0,
          "probe step 6 in a clean folder: %s", cli_stderr());
    CHECK(files_equal(test_path("other/probe/features-00000006-train.bin"),
                      test_path("clean/probe/features-00000006-train.bin")) &&
              files_equal(test_path("other/probe/probe-00000006.csv"), test_path("clean/probe/probe-00000006.csv")),
          "and the recomputed features and results are those of a clean folder");
    CHECK(run_igpt("probe --device cpu --data %s --quiet", data) == 2, "no model given");
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --select val --quiet", data,
                      test_path("run/checkpoint-00000006.bin"));
    CHECK(status == 2 && strstr(cli_stderr(), "--select val") && strstr(cli_stderr(), "--eval test"),
          "--select val scores on test: without --eval test, a usage error: %d %s", status, cli_stderr());
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --folds 1 --quiet", data,
                      test_path("run/checkpoint-00000006.bin"));
    CHECK(status == 2 && strstr(cli_stderr(), "--folds"), "--folds 1: a usage error: %d %s", status, cli_stderr());
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --folds 20 --train-images 10 --quiet", data,
                      test_path("run/checkpoint-00000006.bin"));
    CHECK(status == 1 && strstr(cli_stderr(), "20-fold cross-validation needs 2 to 10 folds"),
          "more folds than training images: an error: %d %s", status, cli_stderr());
    CHECK(run_igpt("probe --device cpu --data %s --baseline edges", data) == 2, "unknown baseline");
    CHECK(run_igpt("probe --device cpu --data %s --run %s --quiet", data, test_path("nowhere")) == 1,
          "missing run folder");
    // A failed probe leaves no folder it would have made (the default: beside what is probed).
    CHECK(!path_exists(test_path("nowhere")), "no %s/probe left behind", test_path("nowhere"));
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --quiet", data, test_path("gone/c.bin"));
    CHECK(status == 1 && !path_exists(test_path("gone")), "a missing checkpoint leaves no folder: %d %s", status,
          cli_stderr());
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --out %s --quiet", data, test_path("gone/c.bin"),
                      test_path("made/by/probe"));
    CHECK(status == 1 && !path_exists(test_path("made")), "nor an --out folder: %d %s", status, cli_stderr());
    // A write that fails after the folders were made (a file-size limit stands in for a full disk): they go again.
    char *full = xasprintf(
        "sh -c \"ulimit -f 1; trap '' XFSZ; exec ./igpt probe --device cpu --data %s --checkpoint %s --out %s/ "
        "--l2 0.1 --quiet\" 2>%s",
        data, test_path("run/checkpoint-00000006.bin"), test_path("made/by/probe"), test_path("full.err"));
    status = system(full);
    char *err = (char *)read_whole_file(test_path("full.err"), NULL);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1 && err && strstr(err, "File too large") &&
              !path_exists(test_path("made")),
          "a failed write leaves no folder it made: %d %s", status, err ? err : "");
    free(err);
    free(full);
    free(data);
    free(data8);
}

// The paper's protocol: L2 chosen on all of val.bin, the probe refit on
// train + val, scored on test; recorded as such, the final norm named.
TEST(test_probe_select_val_on_test) {
    char *data = probe_fixture_run("run", 16);
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --eval test --select val --l2 1,0.01", data,
                   test_path("run/checkpoint-00000006.bin")) == 0,
          "probe --eval test --select val: %s", cli_stderr());
    CHECK(strstr(cli_stdout(), "test images (L2 on 10 val images, refit on train + val;") &&
              strstr(cli_stdout(), "% \u00b1 ") && strstr(cli_stderr(), "layer 2/2 (final norm)"),
          "the summary names the split, the selection and the error bar: %s %s", cli_stdout(), cli_stderr());
    CHECK(path_exists(test_path("run/probe/features-00000006-val.bin")) &&
              path_exists(test_path("run/probe/features-00000006-test.bin")),
          "val and test features cached");
    cJSON *root = json_read_file(test_path("run/probe/probe-00000006.json"));
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(root, "settings");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    const cJSON *last = cJSON_GetArrayItem(layers, 2);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(last, "name");
    const cJSON *by_l2 = cJSON_GetObjectItemCaseSensitive(last, "holdout_by_l2");
    CHECK(root && json_number(settings, "val_images") == 10 &&
              strcmp(cJSON_GetObjectItemCaseSensitive(settings, "select")->valuestring, "val") == 0,
          "settings record the selection and the val images");
    CHECK(cJSON_IsString(name) && strcmp(name->valuestring, "final norm") == 0, "the last layer is the final norm");
    CHECK(cJSON_GetArraySize(by_l2) == 2 && json_number(last, "holdout_images") == 10,
          "the selection accuracy at every L2, on the 10 val images");
    cJSON_Delete(root);
    free(data);
}

// A probe's JSON stays valid JSON when the checkpoint's path has a double
// quote in it, and the run table reads the accuracies back from it.
TEST(test_probe_json_with_quote_in_path) {
    char *data = probe_fixture_run("run", 16);
    char *run = xstrdup(test_path("r\"un"));
    make_directories(run);
    size_t n;
    uint8_t *checkpoint = read_whole_file(test_path("run/checkpoint-00000006.bin"), &n);
    char *copy = xasprintf("%s/checkpoint-00000006.bin", run);
    write_whole_file(copy, checkpoint, n);
    CHECK(run_igpt("probe --device cpu --data %s --run '%s' --l2 0.1 --quiet", data, run) == 0, "probe --run: %s",
          cli_stderr());
    char *results = xasprintf("%s/probe/probe-00000006.json", run);
    cJSON *root = json_read_file(results);
    CHECK(root != NULL, "%s parses as JSON", results);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    CHECK(cJSON_IsString(model) && strcmp(model->valuestring, copy) == 0, "model: the checkpoint's path");
    cJSON_Delete(root);
    char *table_path = xasprintf("%s/probe/probes.csv", run);
    char *table = (char *)read_whole_file(table_path, NULL);
    CHECK(table && strstr(table, "\n0,2.77258") && strstr(table, "\n6,"), "rows for steps 0 and 6: %s",
          table ? table : "(missing)");
    free(table);
    free(table_path);
    free(results);
    free(copy);
    free(checkpoint);
    free(run);
    free(data);
}

TEST(test_train_probes_as_it_goes) {
    make_cifar_batches(test_path("cifar"), 8, 4);
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --colors 16 --val 10 --no-preview --quiet",
                   test_path("cifar"), test_path("data")) == 0,
          "prepare");
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 6 --checkpoint-every 100 --probe-every 3 "
                   "--probe-train-images 20 "
                   "--d-model 16 --n-layer 1 --n-head 2 --batch 4 --quiet",
                   test_path("data"), test_path("run")) == 0,
          "train with --probe-every: %s", cli_stderr());
    CHECK(path_exists(test_path("run/checkpoint-00000003.bin")), "a checkpoint is written for each probe");
    CHECK(path_exists(test_path("run/probe/probe-00000003.json")) &&
              path_exists(test_path("run/probe/probe-00000006.json")),
          "steps 3 and 6 probed during training");
    char *json = (char *)read_whole_file(test_path("run/probe/probe-00000003.json"), NULL);
    CHECK(json && strstr(json, "\"train_images\": 20"), "with the probe options passed on: %s", json ? json : "");
    free(json);
}

// A checkpoint with NaN parameters gives NaN features: the probe says so,
// naming the checkpoint and the layer, exits 1 and writes nothing; the same
// for NaN values in a feature cache whose CRCs are right.
TEST(test_probe_refuses_non_finite_features) {
    char *data = probe_fixture_run("run", 16);
    CheckpointMeta meta;
    checkpoint_read_meta(test_path("run/checkpoint-00000006.bin"), &meta);
    // checkpoint_save refuses to write a non-finite state, so the NaNs are planted in the
    // file's bytes and both CRCs made right again: a damaged file as the reader meets it.
    size_t n;
    uint8_t *bytes = read_whole_file(test_path("run/checkpoint-00000006.bin"), &n);
    const float nan = NAN;
    for (size_t i = meta.num_params / 2; i < meta.num_params; i++)  // the later layers' parameters
        memcpy(bytes + 256 + 4 * i, &nan, 4);                       // after the 256-byte header
    reseal_checkpoint(bytes, n);
    make_directories(test_path("nan"));
    const char *bad = test_path("nan/checkpoint-00000006.bin");
    write_whole_file(bad, bytes, n);
    free(bytes);
    int status = run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data, bad);
    CHECK(status == 1 && strstr(cli_stderr(), bad) && strstr(cli_stderr(), "layer ") &&
              strstr(cli_stderr(), "non-finite values (NaN or infinity)"),
          "NaN parameters: an error naming the checkpoint and the layer: %d %s", status, cli_stderr());
    CHECK(!path_exists(test_path("nan/probe")), "and no results folder, no feature cache");
    // Features cached with their CRCs right but a NaN inside.
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data,
                   test_path("run/checkpoint-00000006.bin")) == 0,
          "probe step 6: %s", cli_stderr());
    const char *cache = test_path("run/probe/features-00000006-val.bin");
    FeatureSet fs;
    features_load(cache, &fs);
    fs.values[fs.dim + 3] = INFINITY;  // image 0, layer 1
    features_save(cache, &fs);
    features_free(&fs);
    unlink(test_path("run/probe/probe-00000006.csv"));
    unlink(test_path("run/probe/probe-00000006.json"));
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data,
                      test_path("run/checkpoint-00000006.bin"));
    CHECK(status == 1 && strstr(cli_stderr(), cache) && strstr(cli_stderr(), "layer 1's features") &&
              strstr(cli_stderr(), "hold 1 non-finite values"),
          "a NaN in the cache: an error naming the file, the layer and the count: %d %s", status, cli_stderr());
    CHECK(!path_exists(test_path("run/probe/probe-00000006.csv")), "no result written");
    free(data);
}

// The solver's own numbers: a result with a NaN loss is named, never taken.
TEST(test_probe_result_not_finite_is_named) {
    enum { N = 40, D = 3 };
    float train_values[N * D], eval_values[N * D];
    uint16_t labels[N];
    for (int i = 0; i < N; i++) {
        labels[i] = (uint16_t)(i % 2);
        for (int j = 0; j < D; j++)
            train_values[i * D + j] = eval_values[i * D + j] = (float)(labels[i] * 2 + j) + 0.1f * (float)(i % 5);
    }
    FeatureSet train = {.count = N, .layers = 1, .dim = D, .num_classes = 2, .labels = labels, .values = train_values};
    FeatureSet eval = train;
    eval.values = eval_values;
    const double grid[] = {0.1};
    const ProbeProtocol protocol = {.l2_grid = grid,
                                    .num_l2 = 1,
                                    .max_iters = 100,
                                    .seed = 1,
                                    .threads = 1,
                                    .select = PROBE_SELECT_KFOLD,
                                    .folds = 5};
    ProbeLayerResult r;
    probe_layers(&train, NULL, &eval, &protocol, &r);
    CHECK(probe_result_not_finite(&r) == NULL, "finite features: a finite result (accuracy %.3f)", r.accuracy);
    eval_values[5] = NAN;
    probe_layers(&train, NULL, &eval, &protocol, &r);
    const char *bad = probe_result_not_finite(&r);
    CHECK(bad && strcmp(bad, "evaluation loss") == 0, "a NaN feature: the evaluation loss is named: %s",
          bad ? bad : "(nothing)");
}

// probe --run keeps a result only when the settings that made it are the
// same; any other is said in one line and recomputed.
TEST(test_probe_results_tied_to_settings) {
    char *data = probe_fixture_run("run", 16);
#define PROBE_RUN "probe --device cpu --data %s --run %s --quiet"
    const char *run = test_path("run");
    CHECK(run_igpt(PROBE_RUN " --l2 0.1", data, run) == 0, "first probe: %s", cli_stderr());
    CHECK(run_igpt(PROBE_RUN " --l2 0.1", data, run) == 0 && !strstr(cli_stdout(), "best layer") &&
              !strstr(cli_stdout(), "recomputing"),
          "the same settings again: every result kept: %s", cli_stdout());
    struct {
        const char *flags, *said;
    } changes[] = {
        {"--l2 0.1,0.01", "probe-00000003.csv was made with --l2 0.1, now 0.1,0.01: recomputing"},
        {"--l2 0.1,0.01 --train-images 20", "probe-00000003.csv was made with --train-images 30, now 20: recomputing"},
        {"--l2 0.1,0.01 --train-images 20 --eval-images 5", "was made with --eval-images 10, now 5: recomputing"},
        {"--l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7", "was made with --seed 1234, now 7: recomputing"},
        {"--l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7 --max-iters 50",
         "was made with --max-iters 1000, now 50: recomputing"},
        {"--l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7 --max-iters 50 --folds 3",
         "was made with --folds 5, now 3: recomputing"},
        {"--l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7 --max-iters 50 --select holdout",
         "was made with --select kfold, now holdout: recomputing"},
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        CHECK(run_igpt(PROBE_RUN " %s", data, run, changes[i].flags) == 0 && strstr(cli_stdout(), changes[i].said) &&
                  strstr(cli_stdout(), "step 0: best layer") && strstr(cli_stdout(), "step 6: best layer"),
              "%s: every step recomputed: %s %s", changes[i].flags, cli_stdout(), cli_stderr());
    }
    char *json = (char *)read_whole_file(test_path("run/probe/probe-00000006.json"), NULL);
    CHECK(json && strstr(json, "\"l2\": [0.1, 0.01]") && strstr(json, "\"seed\": \"7\"") &&
              strstr(json, "\"train_images\": 20"),
          "the result records its settings: %s", json ? json : "(missing)");
    free(json);
    // Another checkpoint in its place (a run trained again into the same folder), and a result without its record.
    size_t n;
    uint8_t *other = read_whole_file(test_path("run/checkpoint-00000006.bin"), &n);
    write_whole_file(test_path("run/checkpoint-00000003.bin"), other, n);
    free(other);
    unlink(test_path("run/probe/probe-00000000.json"));
    CHECK(
        run_igpt(PROBE_RUN " --l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7 --max-iters 50 --select holdout",
                 data, run) == 0 &&
            strstr(cli_stdout(), "probe-00000003.csv was made from other parameters than its checkpoint holds now") &&
            strstr(cli_stdout(), "features-00000003-train.bin holds features of another model: recomputing") &&
            strstr(cli_stdout(), "probe-00000000.csv was made by a probe that left no readable .json record") &&
            !strstr(cli_stdout(), "step 6: best layer"),
        "other parameters and a missing record: recomputed, step 6 kept: %s %s", cli_stdout(), cli_stderr());
    // A checkpoint rotated away: its result stays in the table while the settings match, and is never touched.
    unlink(test_path("run/checkpoint-00000003.bin"));
    CHECK(
        run_igpt(PROBE_RUN " --l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7 --max-iters 50 --select holdout",
                 data, run) == 0,
        "probe --run: %s", cli_stderr());
    char *table = (char *)read_whole_file(test_path("run/probe/probes.csv"), NULL);
    CHECK(table && strstr(table, "\n0,") && strstr(table, "\n3,") && strstr(table, "\n6,"),
          "the table keeps step 3, made with these settings: %s", table ? table : "(missing)");
    free(table);
    CHECK(
        run_igpt(PROBE_RUN " --l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 8 --max-iters 50 --select holdout",
                 data, run) == 0 &&
            strstr(cli_stdout(),
                   "probe-00000003.json (its checkpoint is gone) was made with --seed 7, now 8: left "
                   "out of"),
        "with other settings it is left out, in one line: %s", cli_stdout());
    table = (char *)read_whole_file(test_path("run/probe/probes.csv"), NULL);
    CHECK(table && !strstr(table, "\n3,") && strstr(table, "\n6,") &&
              path_exists(test_path("run/probe/probe-00000003.json")),
          "and kept on disk: %s", table ? table : "(missing)");
    free(table);
#undef PROBE_RUN
    free(data);
}
