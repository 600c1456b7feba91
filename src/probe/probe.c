// The probe solver (probe.h). Logistic regression is convex, so L-BFGS finds
// its one optimum; the features are standardised with the training images'
// statistics first, so one grid of L2 strengths suits every layer. The L2
// strength is chosen on a seeded, class-stratified hold-out, then the probe is
// refit on all the training images and scored once on the evaluation split.
#include "probe/probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifndef IGPT_NO_LBFGS
#include <lbfgs.h>
#endif

#include "data/images.h"
#include "util/blas.h"
#include "util/util.h"

void probe_solver_defaults(ProbeSolverOptions *opt) {
    *opt = (ProbeSolverOptions){.l2 = 1e-3, .max_iters = 1000, .epsilon = 1e-6, .threads = 0};
}

typedef struct {
    const ProbeProblem *p;
    const ProbeSolverOptions *opt;
    double *logits;  // n x k
    double *row_loss;
    int iters;
} Objective;

// logits = X W^T + b for the n rows.
static void compute_logits(const ProbeProblem *p, const double *w, double *logits, int threads) {
    const int k = p->k, d = p->d;
    gemm_f64(false, true, (int)p->n, k, d, 1.0, p->X, d, w, d + 1, 0.0, logits, k);
#pragma omp parallel for num_threads(threads)
    for (int64_t i = 0; i < p->n; i++)
        for (int c = 0; c < k; c++) logits[i * k + c] += w[(size_t)c * (d + 1) + d];
}

// Softmax of each row in place; row_loss[i] = -log p[i][y_i].
static void softmax_rows(const ProbeProblem *p, double *logits, double *row_loss, int threads) {
    const int k = p->k;
#pragma omp parallel for num_threads(threads)
    for (int64_t i = 0; i < p->n; i++) {
        double *z = logits + i * k, mx = -INFINITY, sum = 0.0;
        for (int c = 0; c < k; c++) mx = fmax(mx, z[c]);
        for (int c = 0; c < k; c++) sum += exp(z[c] - mx);
        if (row_loss) row_loss[i] = mx + log(sum) - z[p->y[i]];
        for (int c = 0; c < k; c++) z[c] = exp(z[c] - mx) / sum;
    }
}

#ifdef IGPT_NO_LBFGS
const char *probe_solver_missing(void) {
    return "this igpt was built without liblbfgs (make GPU_ONLY=1), so it cannot fit probes";
}

void probe_fit(const ProbeProblem *p, const ProbeSolverOptions *opt, const double *w_init, LinearProbe *out) {
    (void)p, (void)opt, (void)w_init, (void)out;
    die("%s", probe_solver_missing());
}
#else
const char *probe_solver_missing(void) { return NULL; }

static int record_progress(void *instance, const lbfgsfloatval_t *x, const lbfgsfloatval_t *g, const lbfgsfloatval_t fx,
                           const lbfgsfloatval_t xnorm, const lbfgsfloatval_t gnorm, const lbfgsfloatval_t step, int n,
                           int k, int ls) {
    (void)x, (void)g, (void)fx, (void)xnorm, (void)gnorm, (void)step, (void)n, (void)ls;
    ((Objective *)instance)->iters = k;
    return 0;
}

static lbfgsfloatval_t evaluate(void *instance, const lbfgsfloatval_t *w, lbfgsfloatval_t *g, const int nvars,
                                const lbfgsfloatval_t step) {
    (void)nvars, (void)step;
    Objective *o = instance;
    const ProbeProblem *p = o->p;
    const int k = p->k, d = p->d, threads = o->opt->threads;
    compute_logits(p, w, o->logits, threads);
    softmax_rows(p, o->logits, o->row_loss, threads);
    double loss = 0.0;
    for (int64_t i = 0; i < p->n; i++) loss += o->row_loss[i];  // fixed order
    loss /= (double)p->n;
    // G = (P - Y) / n, in place; dW = G^T X; db = column sums of G.
    const double inv_n = 1.0 / (double)p->n;
#pragma omp parallel for num_threads(threads)
    for (int64_t i = 0; i < p->n; i++) {
        o->logits[i * k + p->y[i]] -= 1.0;
        for (int c = 0; c < k; c++) o->logits[i * k + c] *= inv_n;
    }
    gemm_f64(true, false, k, d, (int)p->n, 1.0, o->logits, k, p->X, d, 0.0, g, d + 1);
    double penalty = 0.0;
    for (int c = 0; c < k; c++) {
        double *wc = (double *)w + (size_t)c * (d + 1), *gc = g + (size_t)c * (d + 1);
        double b = 0.0;
        for (int64_t i = 0; i < p->n; i++) b += o->logits[i * k + c];
        gc[d] = b;
        for (int j = 0; j < d; j++) {
            gc[j] += o->opt->l2 * wc[j];
            penalty += wc[j] * wc[j];
        }
    }
    return loss + 0.5 * o->opt->l2 * penalty;
}

void probe_fit(const ProbeProblem *p, const ProbeSolverOptions *opt_in, const double *w_init, LinearProbe *out) {
    ProbeSolverOptions opt = *opt_in;
    opt.threads = resolve_threads(opt.threads);
    const int nvars = p->k * (p->d + 1);
    lbfgsfloatval_t *w = lbfgs_malloc(nvars);
    if (!w) die("out of memory for the probe's %d parameters", nvars);
    for (int i = 0; i < nvars; i++) w[i] = w_init ? w_init[i] : 0.0;
    Objective o = {.p = p,
                   .opt = &opt,
                   .logits = xmalloc((size_t)p->n * p->k * sizeof(double)),
                   .row_loss = xmalloc((size_t)p->n * sizeof(double))};
    lbfgs_parameter_t param;
    lbfgs_parameter_init(&param);
    param.epsilon = opt.epsilon;
    param.max_iterations = opt.max_iters;
    param.m = 10;
    lbfgsfloatval_t fx = 0.0;
    out->status = lbfgs(nvars, w, &fx, evaluate, record_progress, &o, &param);
    // Final objective and gradient norm at the returned point.
    double *g = xmalloc((size_t)nvars * sizeof(double));
    out->objective = evaluate(&o, w, g, nvars, 0);
    double gn = 0.0;
    for (int i = 0; i < nvars; i++) gn += g[i] * g[i];
    out->grad_norm = sqrt(gn);
    out->d = p->d;
    out->k = p->k;
    out->w = xmalloc((size_t)nvars * sizeof(double));
    memcpy(out->w, w, (size_t)nvars * sizeof(double));
    out->iters = o.iters;
    free(g);
    free(o.logits);
    free(o.row_loss);
    lbfgs_free(w);
}

#endif

double probe_score(const LinearProbe *m, const ProbeProblem *p, int threads, double *mean_ce, uint16_t *predictions) {
    threads = resolve_threads(threads);
    double *logits = xmalloc((size_t)p->n * p->k * sizeof(double));
    double *row_loss = xmalloc((size_t)p->n * sizeof(double));
    compute_logits(p, m->w, logits, threads);
    int64_t correct = 0;
    for (int64_t i = 0; i < p->n; i++) {
        int best = 0;
        for (int c = 1; c < p->k; c++)
            if (logits[i * p->k + c] > logits[i * p->k + best]) best = c;
        correct += best == p->y[i];
        if (predictions) predictions[i] = (uint16_t)best;
    }
    softmax_rows(p, logits, row_loss, threads);
    if (mean_ce) {
        double s = 0.0;
        for (int64_t i = 0; i < p->n; i++) s += row_loss[i];
        *mean_ce = s / (double)p->n;
    }
    free(logits);
    free(row_loss);
    return (double)correct / (double)p->n;
}

void linear_probe_free(LinearProbe *m) {
    free(m->w);
    m->w = NULL;
}

void feature_stats(const float *X, int64_t n, int d, int64_t stride, double *mean, double *inv_std) {
    for (int j = 0; j < d; j++) mean[j] = inv_std[j] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mean[j] += X[i * stride + j];
    for (int j = 0; j < d; j++) mean[j] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            double c = X[i * stride + j] - mean[j];
            inv_std[j] += c * c;
        }
    for (int j = 0; j < d; j++) inv_std[j] = 1.0 / fmax(sqrt(inv_std[j] / (double)n), 1e-6);
}

void standardize(const float *X, int64_t n, int d, int64_t stride, const double *mean, const double *inv_std,
                 double *out) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) out[i * d + j] = (X[i * stride + j] - mean[j]) * inv_std[j];
}

// --- The probe protocol for one layer ------------------------------------------------

// Rows of one layer's features, standardised with `mean`/`inv_std`, for the
// images whose mask entry equals keep (all when mask is NULL).
static double *layer_matrix(const FeatureSet *fs, int layer, const double *mean, const double *inv_std,
                            const uint8_t *mask, uint8_t keep, int64_t *rows, uint16_t **labels) {
    int64_t n = 0;
    for (int64_t i = 0; i < fs->count; i++) n += !mask || mask[i] == keep;
    double *X = xmalloc((size_t)n * fs->dim * sizeof(double));
    *labels = xmalloc((size_t)n * 2);
    const int64_t stride = (int64_t)fs->layers * fs->dim;
    int64_t r = 0;
    for (int64_t i = 0; i < fs->count; i++) {
        if (mask && mask[i] != keep) continue;
        standardize(fs->values + i * stride + (int64_t)layer * fs->dim, 1, fs->dim, stride, mean, inv_std,
                    X + r * fs->dim);
        (*labels)[r++] = fs->labels[i];
    }
    *rows = n;
    return X;
}

// The grid of L2 strengths, strongest first: each fit then starts from the
// previous, more constrained solution.
static double *l2_strongest_first(const ProbeProtocol *a) {
    double *order = xmalloc((size_t)a->num_l2 * sizeof(double));
    memcpy(order, a->l2_grid, (size_t)a->num_l2 * sizeof(double));
    for (int i = 0; i < a->num_l2; i++)
        for (int j = i + 1; j < a->num_l2; j++)
            if (order[j] > order[i]) {
                const double t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    return order;
}

// The L2 strength of the grid whose probe, fitted on 90% of the training
// images, scores best on the other 10% (seeded, class-stratified); ties keep
// the stronger penalty. *best gets that probe (the refit's warm start) and
// *holdout_accuracy its score.
static double choose_l2(const FeatureSet *train, int layer, const double *mean, const double *inv_std,
                        const ProbeProtocol *a, ProbeSolverOptions opt, LinearProbe *best, double *holdout_accuracy) {
    const int d = train->dim, k = train->num_classes;
    uint8_t *held = xcalloc((size_t)train->count, 1);
    stratified_split(train->labels, train->count, k, train->count / 10 > 0 ? train->count / 10 : 1, a->seed, held);
    int64_t n_fit, n_hold;
    uint16_t *y_fit, *y_hold;
    double *X_fit = layer_matrix(train, layer, mean, inv_std, held, 0, &n_fit, &y_fit);
    double *X_hold = layer_matrix(train, layer, mean, inv_std, held, 1, &n_hold, &y_hold);
    const ProbeProblem fit = {n_fit, d, k, X_fit, y_fit}, hold = {n_hold, d, k, X_hold, y_hold};
    double *order = l2_strongest_first(a);
    LinearProbe current = {0};
    double best_l2 = order[0];
    *best = (LinearProbe){0};
    *holdout_accuracy = -1.0;
    for (int i = 0; i < a->num_l2; i++) {
        opt.l2 = order[i];
        double *warm_start = current.w;  // probe_fit gives current new weights: free the old ones
        probe_fit(&fit, &opt, warm_start, &current);
        free(warm_start);
        const double acc = probe_score(&current, &hold, opt.threads, NULL, NULL);
        if (acc > *holdout_accuracy) {
            *holdout_accuracy = acc;
            best_l2 = order[i];
            linear_probe_free(best);
            *best = current;
            best->w = xmalloc((size_t)k * (d + 1) * sizeof(double));
            memcpy(best->w, current.w, (size_t)k * (d + 1) * sizeof(double));
        }
    }
    linear_probe_free(&current);
    free(order);
    free(X_fit);
    free(y_fit);
    free(X_hold);
    free(y_hold);
    free(held);
    return best_l2;
}

void probe_layer(const FeatureSet *train, const FeatureSet *eval, int layer, const ProbeProtocol *a,
                 ProbeLayerResult *res) {
    const int d = train->dim, k = train->num_classes;
    double *mean = xmalloc((size_t)d * sizeof(double));
    double *inv_std = xmalloc((size_t)d * sizeof(double));
    feature_stats(train->values + (int64_t)layer * d, train->count, d, (int64_t)train->layers * d, mean, inv_std);
    ProbeSolverOptions opt;
    probe_solver_defaults(&opt);
    opt.max_iters = a->max_iters;
    opt.threads = resolve_threads(a->threads);
    LinearProbe chosen;
    opt.l2 = choose_l2(train, layer, mean, inv_std, a, opt, &chosen, &res->holdout_accuracy);
    // Refit on every training image with the chosen strength, then score on the evaluation images.
    int64_t n_all, n_eval;
    uint16_t *y_all, *y_eval;
    double *X_all = layer_matrix(train, layer, mean, inv_std, NULL, 0, &n_all, &y_all);
    double *X_eval = layer_matrix(eval, layer, mean, inv_std, NULL, 0, &n_eval, &y_eval);
    const ProbeProblem all = {n_all, d, k, X_all, y_all}, ev = {n_eval, d, k, X_eval, y_eval};
    LinearProbe final;
    probe_fit(&all, &opt, chosen.w, &final);
    res->accuracy = probe_score(&final, &ev, opt.threads, &res->eval_loss, NULL);
    res->l2 = opt.l2;
    res->grad_norm = final.grad_norm;
    res->iters = final.iters;
    free(X_all);
    free(y_all);
    free(X_eval);
    free(y_eval);
    free(mean);
    free(inv_std);
    linear_probe_free(&chosen);
    linear_probe_free(&final);
}

const char *probe_result_not_finite(const ProbeLayerResult *r) {
    if (!isfinite(r->accuracy)) return "accuracy";
    if (!isfinite(r->eval_loss)) return "evaluation loss";
    if (!isfinite(r->holdout_accuracy)) return "hold-out accuracy";
    if (!isfinite(r->grad_norm)) return "gradient norm";
    if (!isfinite(r->l2)) return "L2 strength";
    return NULL;
}
