// The probe solver (probe.h). Logistic regression is convex, so L-BFGS finds
// its one optimum; the features are standardised with the training images'
// statistics first, so one grid of L2 strengths suits every layer. All layers
// and all of a strength's fits (cross-validation folds, the fit on every
// training image) are solved together by the batched L-BFGS of solver.h.
#include "probe/probe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/images.h"
#include "util/blas.h"
#include "util/util.h"

void probe_solver_defaults(ProbeSolverOptions *opt) {
    *opt = (ProbeSolverOptions){.l2 = 1e-3, .max_iters = 1000, .epsilon = 1e-6, .threads = 0};
}

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

// One problem alone: a batch of one block and one problem fitting every row.
void probe_fit(const ProbeProblem *p, const ProbeSolverOptions *opt, const double *w_init, LinearProbe *out) {
    const ProbeBatchShape shape = {.n = p->n, .d = p->d, .k = p->k, .blocks = 1, .per_block = 1, .y = p->y};
    const int64_t vars = probe_batch_vars(&shape);
    ProbeEvaluator *e = probe_cpu_evaluator_create(&shape, p->X, opt->threads);
    *out = (LinearProbe){.d = p->d, .k = p->k, .w = xcalloc((size_t)vars, sizeof(double))};
    if (w_init) memcpy(out->w, w_init, (size_t)vars * sizeof(double));
    const ProbeLbfgsOptions lopt = {.max_iters = opt->max_iters, .epsilon = opt->epsilon};
    ProbeFit fit;
    probe_lbfgs(e, &opt->l2, &lopt, out->w, &fit);
    out->objective = fit.objective;
    out->grad_norm = fit.grad_norm;
    out->iters = fit.iters;
    out->status = fit.status;
    probe_evaluator_free(e);
}

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

int probe_default_l2(double *grid) {
    int n = 0;
    for (const char *t = PROBE_DEFAULT_L2; *t && n < PROBE_MAX_L2; n++) {
        char *end;
        grid[n] = strtod(t, &end);
        t = *end == ',' ? end + 1 : end;
    }
    return n;
}

// --- The protocol -----------------------------------------------------------------------

void probe_assign_folds(const uint16_t *labels, int64_t n, int num_classes, int folds, uint64_t seed, int8_t *fold) {
    if (folds < 1 || folds > 127) die("internal: %d folds", folds);
    // Rows grouped by class (counting sort, file order within a class), each class then shuffled.
    int64_t *start = xcalloc((size_t)num_classes + 1, sizeof(int64_t)), *rows = xmalloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) start[labels[i] + 1]++;
    for (int c = 0; c < num_classes; c++) start[c + 1] += start[c];
    int64_t *next = xmalloc((size_t)num_classes * sizeof(int64_t));
    memcpy(next, start, (size_t)num_classes * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) rows[next[labels[i]]++] = i;
    Rng rng;
    rng_init(&rng, seed, 0x666f6c64ull /* "fold" */);
    for (int c = 0; c < num_classes; c++) {
        int64_t *r = rows + start[c];
        for (int64_t i = start[c + 1] - start[c] - 1; i > 0; i--) {  // Fisher-Yates
            const int64_t j = (int64_t)rng_below(&rng, (uint64_t)i + 1), t = r[i];
            r[i] = r[j];
            r[j] = t;
        }
    }
    // Dealt in turn, continuing across classes: class shares and fold sizes even to within one row.
    for (int64_t i = 0; i < n; i++) fold[rows[i]] = (int8_t)(i % folds);
    free(start);
    free(rows);
    free(next);
}

// Every layer's rows standardised with that layer's training statistics: blocks x n x d.
static double *standardized_layers(const FeatureSet *fs, const double *mean, const double *inv_std) {
    const int d = fs->dim;
    double *X = xmalloc((size_t)fs->layers * fs->count * d * sizeof(double));
    for (int l = 0; l < fs->layers; l++)
        standardize(fs->values + (int64_t)l * d, fs->count, d, (int64_t)fs->layers * d, mean + (size_t)l * d,
                    inv_std + (size_t)l * d, X + (size_t)l * fs->count * d);
    return X;
}

// Grid indices, strongest first: each value's fits then start from a more constrained solution.
static void strongest_first(const ProbeProtocol *a, int *order) {
    for (int i = 0; i < a->num_l2; i++) order[i] = i;
    for (int i = 0; i < a->num_l2; i++)
        for (int j = i + 1; j < a->num_l2; j++)
            if (a->l2_grid[order[j]] > a->l2_grid[order[i]]) {
                const int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
}

// The batch of the selection: its folds (NULL for val) and problems per layer.
static int8_t *selection_folds(const FeatureSet *train, const ProbeProtocol *a, int *per_block, int64_t *held) {
    const int64_t n = train->count;
    if (a->select == PROBE_SELECT_VAL) {
        *per_block = 1;
        *held = 0;
        return NULL;
    }
    int8_t *fold = xmalloc((size_t)n);
    if (a->select == PROBE_SELECT_KFOLD) {
        if (a->folds < 2 || a->folds > n)
            die("%d-fold cross-validation needs 2 to %lld folds (one image each at least)", a->folds, (long long)n);
        if (a->fold) memcpy(fold, a->fold, (size_t)n);
        else probe_assign_folds(train->labels, n, train->num_classes, a->folds, a->seed, fold);
        *per_block = a->folds + 1;
        *held = n;
        return fold;
    }
    uint8_t *is_held = xmalloc((size_t)n);
    *held = n / 10 > 0 ? n / 10 : 1;
    stratified_split(train->labels, n, train->num_classes, *held, a->seed, is_held);
    for (int64_t i = 0; i < n; i++) fold[i] = is_held[i] ? 0 : -1;
    free(is_held);
    *per_block = 2;
    return fold;
}

// Per block: the Gram matrix of a sample of its rows (the preconditioner's start).
typedef struct {
    int blocks, d;
    double *C, *M, *M_inv;  // blocks x d x d each
} Preconditioner;

static void preconditioner_init(Preconditioner *pc, const ProbeBatchShape *sh, const double *X, bool plain) {
    *pc = (Preconditioner){.blocks = sh->blocks, .d = sh->d};
    if (plain) return;
    const size_t dd = (size_t)sh->d * sh->d;
    pc->C = xmalloc(sh->blocks * dd * sizeof(double));
    pc->M = xmalloc(sh->blocks * dd * sizeof(double));
    pc->M_inv = xmalloc(sh->blocks * dd * sizeof(double));
    const int64_t sample = sh->n < 4096 + 4 * (int64_t)sh->d ? sh->n : 4096 + 4 * (int64_t)sh->d;
    for (int b = 0; b < sh->blocks; b++) probe_gram(X + (size_t)b * sh->n * sh->d, sample, sh->d, pc->C + b * dd);
}

// Tolerances (||gradient|| <= epsilon * max(1, ||weights||)). A probe is fitted
// to PROBE_EPSILON. The path's fits only rank the strengths and warm-start the
// next one, so they may stop sooner: at path_epsilon(l2), at most
// PATH_EPSILON (about a third fewer evaluations than PROBE_EPSILON), and each
// layer's chosen probe is then polished to PROBE_EPSILON.
#define PROBE_EPSILON 1e-6
#define PATH_EPSILON 1e-5

// Moving from the previous strength to l2 changes the gradient at the warm
// start by about l2 * w (the grid's steps are a large fraction of l2): with
// a tolerance above l2 the fit would not move at all and every weak strength
// would score as the last one that did. So the path's tolerance is l2 itself
// between PROBE_EPSILON and PATH_EPSILON.
static double path_epsilon(double l2) { return fmin(PATH_EPSILON, fmax(l2, PROBE_EPSILON)); }

// The L-BFGS options for block strengths l2_block (blocks entries).
static ProbeLbfgsOptions lbfgs_options(const ProbeProtocol *a, Preconditioner *pc, const double *l2_block) {
    ProbeLbfgsOptions opt = {.max_iters = a->max_iters, .epsilon = PROBE_EPSILON};
    if (!pc->C) return opt;
    const size_t dd = (size_t)pc->d * pc->d;
#pragma omp parallel for schedule(dynamic, 1) num_threads(a->threads)
    for (int b = 0; b < pc->blocks; b++)
        probe_preconditioner(pc->C + b * dd, pc->d, l2_block[b], pc->M + b * dd, pc->M_inv + b * dd);
    opt.M = pc->M;
    opt.M_inv = pc->M_inv;
    return opt;
}

static void preconditioner_free(Preconditioner *pc) {
    free(pc->C);
    free(pc->M);
    free(pc->M_inv);
}

static ProbeEvaluator *make_evaluator(const ProbeProtocol *a, const ProbeBatchShape *shape, const double *X) {
    return a->make_evaluator ? a->make_evaluator(shape, X, a->threads)
                             : probe_cpu_evaluator_create(shape, X, a->threads);
}

// Accuracy of probe w (k x (d+1)) on layer l of fs, standardised like the training images.
static double layer_score(const FeatureSet *fs, int l, const double *mean, const double *inv_std, const double *w,
                          int threads, double *mean_ce) {
    const int d = fs->dim;
    double *X = xmalloc((size_t)fs->count * d * sizeof(double));
    standardize(fs->values + (int64_t)l * d, fs->count, d, (int64_t)fs->layers * d, mean, inv_std, X);
    const ProbeProblem p = {fs->count, d, fs->num_classes, X, fs->labels};
    const LinearProbe m = {.d = d, .k = fs->num_classes, .w = (double *)w};
    const double acc = probe_score(&m, &p, threads, mean_ce, NULL);
    free(X);
    return acc;
}

typedef struct {
    const FeatureSet *train, *val;
    const double *mean, *inv_std;  // layers x d
    int64_t vars;
    int per_block;
    int64_t held;    // rows scored by the selection fits (kfold, holdout)
    double *W;       // every problem's weights (the warm start of the next strength)
    double *chosen;  // layers x vars: each layer's probe at its best strength so far
    ProbeFit *fits;
} Path;

// After the fits at grid value g: each layer's selection accuracy; the layer's
// probe (its all-rows fit) is kept when that accuracy beats the best so far.
static void score_strength(Path *pa, const ProbeProtocol *a, int g, ProbeLayerResult *r) {
    const int J = pa->per_block, last = J - 1;
    for (int l = 0; l < pa->train->layers; l++) {
        const double *w_all = pa->W + ((size_t)l * J + last) * pa->vars;
        double acc;
        if (a->select == PROBE_SELECT_VAL) {
            acc = layer_score(pa->val, l, pa->mean + (size_t)l * pa->train->dim,
                              pa->inv_std + (size_t)l * pa->train->dim, w_all, a->threads, NULL);
        } else {
            int64_t correct = 0;
            for (int j = 0; j < last; j++) correct += pa->fits[l * J + j].heldout_correct;
            acc = (double)correct / (double)pa->held;
        }
        r[l].holdout_by_l2[g] = acc;
        if (acc > r[l].holdout_accuracy) {  // strictly: ties keep the stronger, met first
            r[l].holdout_accuracy = acc;
            r[l].l2 = a->l2_grid[g];
            memcpy(pa->chosen + (size_t)l * pa->vars, w_all, (size_t)pa->vars * sizeof(double));
            r[l].iters = pa->fits[l * J + last].iters;
            r[l].grad_norm = pa->fits[l * J + last].grad_norm;
        }
    }
}

// Each layer's chosen probe from the path's tolerance to PROBE_EPSILON: its
// all-rows fit again at its chosen strength, from where the path left it. The
// other problems stop after the first evaluation (epsilon infinite).
static void polish_chosen(Path *pa, const ProbeProtocol *a, ProbeEvaluator *e, Preconditioner *pc, double *l2,
                          double *l2_block, double *epsilon_of, ProbeLayerResult *r) {
    const int J = pa->per_block, last = J - 1, L = pa->train->layers;
    for (int l = 0; l < L; l++) {
        for (int j = 0; j < J; j++) {
            l2[l * J + j] = r[l].l2;
            epsilon_of[l * J + j] = j == last ? PROBE_EPSILON : INFINITY;
        }
        l2_block[l] = r[l].l2;
        memcpy(pa->W + ((size_t)l * J + last) * pa->vars, pa->chosen + (size_t)l * pa->vars,
               (size_t)pa->vars * sizeof(double));
    }
    ProbeLbfgsOptions opt = lbfgs_options(a, pc, l2_block);
    opt.epsilon_of = epsilon_of;
    const double t0 = now_seconds();
    probe_lbfgs(e, l2, &opt, pa->W, pa->fits);
    int evals = 0;
    for (int l = 0; l < L; l++) {
        const ProbeFit *fit = &pa->fits[l * J + last];
        memcpy(pa->chosen + (size_t)l * pa->vars, pa->W + ((size_t)l * J + last) * pa->vars,
               (size_t)pa->vars * sizeof(double));
        r[l].iters += fit->iters;
        r[l].grad_norm = fit->grad_norm;
        evals = fit->evaluations > evals ? fit->evaluations : evals;
    }
    for (int l = 0; l < L; l++) r[l].path_evaluations += evals;
    if (a->verbose)
        fprintf(stderr, "probe: the chosen probes to the final tolerance: %d layers, %d evaluations, %.1f s\n", L,
                evals, now_seconds() - t0);
}

// Walks the grid strongest first; each layer's chosen probe into pa->chosen.
static void walk_grid(Path *pa, const ProbeProtocol *a, const int8_t *fold, const double *X, ProbeLayerResult *r) {
    const FeatureSet *t = pa->train;
    const ProbeBatchShape shape = {.n = t->count,
                                   .d = t->dim,
                                   .k = t->num_classes,
                                   .blocks = t->layers,
                                   .per_block = pa->per_block,
                                   .y = t->labels,
                                   .fold = fold};
    const int P = probe_batch_problems(&shape);
    ProbeEvaluator *e = make_evaluator(a, &shape, X);
    double *l2 = xmalloc((size_t)P * sizeof(double)), *l2_block = xmalloc((size_t)t->layers * sizeof(double));
    Preconditioner pc;
    preconditioner_init(&pc, &shape, X, a->plain);
    double *epsilon_of = xmalloc((size_t)P * sizeof(double));
    int order[PROBE_MAX_L2];
    strongest_first(a, order);
    for (int i = 0; i < a->num_l2; i++) {
        const int g = order[i];
        const double t0 = now_seconds();
        for (int p = 0; p < P; p++) {
            l2[p] = a->l2_grid[g];
            epsilon_of[p] = path_epsilon(l2[p]);
        }
        for (int b = 0; b < t->layers; b++) l2_block[b] = a->l2_grid[g];
        ProbeLbfgsOptions opt = lbfgs_options(a, &pc, l2_block);
        opt.epsilon_of = epsilon_of;
        probe_lbfgs(e, l2, &opt, pa->W, pa->fits);
        score_strength(pa, a, g, r);
        int most = 0, evals = 0;
        for (int p = 0; p < P; p++) {
            most = pa->fits[p].iters > most ? pa->fits[p].iters : most;
            evals = pa->fits[p].evaluations > evals ? pa->fits[p].evaluations : evals;
        }
        for (int b = 0; b < t->layers; b++) r[b].path_evaluations += evals;
        if (a->verbose)
            fprintf(stderr, "probe: L2 %g (%d/%d): %d problems, at most %d iterations, %d evaluations, %.1f s\n",
                    a->l2_grid[g], i + 1, a->num_l2, P, most, evals, now_seconds() - t0);
    }
    if (a->select != PROBE_SELECT_VAL) polish_chosen(pa, a, e, &pc, l2, l2_block, epsilon_of, r);
    free(l2);
    free(l2_block);
    free(epsilon_of);
    preconditioner_free(&pc);
    probe_evaluator_free(e);
}

// --select val: each layer's probe refit on training + validation images at its chosen strength.
static void refit_with_val(Path *pa, const ProbeProtocol *a, ProbeLayerResult *r) {
    const FeatureSet *t = pa->train, *v = pa->val;
    const int L = t->layers, d = t->dim;
    const int64_t n = t->count + v->count;
    double *X = xmalloc((size_t)L * n * d * sizeof(double));
    uint16_t *y = xmalloc((size_t)n * sizeof(uint16_t));
    memcpy(y, t->labels, (size_t)t->count * sizeof(uint16_t));
    memcpy(y + t->count, v->labels, (size_t)v->count * sizeof(uint16_t));
    for (int l = 0; l < L; l++) {
        double *Xl = X + (size_t)l * n * d;
        const double *mean = pa->mean + (size_t)l * d, *inv_std = pa->inv_std + (size_t)l * d;
        standardize(t->values + (int64_t)l * d, t->count, d, (int64_t)L * d, mean, inv_std, Xl);
        standardize(v->values + (int64_t)l * d, v->count, d, (int64_t)L * d, mean, inv_std, Xl + (size_t)t->count * d);
    }
    const ProbeBatchShape shape = {.n = n, .d = d, .k = t->num_classes, .blocks = L, .per_block = 1, .y = y};
    ProbeEvaluator *e = make_evaluator(a, &shape, X);
    double *l2 = xmalloc((size_t)L * sizeof(double));
    for (int l = 0; l < L; l++) l2[l] = r[l].l2;
    Preconditioner pc;
    preconditioner_init(&pc, &shape, X, a->plain);
    const ProbeLbfgsOptions opt = lbfgs_options(a, &pc, l2);
    probe_lbfgs(e, l2, &opt, pa->chosen, pa->fits);
    preconditioner_free(&pc);
    for (int l = 0; l < L; l++) {
        r[l].iters = pa->fits[l].iters;
        r[l].grad_norm = pa->fits[l].grad_norm;
    }
    probe_evaluator_free(e);
    free(l2);
    free(X);
    free(y);
}

static void check_protocol(const FeatureSet *train, const FeatureSet *val, const FeatureSet *eval,
                           const ProbeProtocol *a) {
    if (a->num_l2 < 1 || a->num_l2 > PROBE_MAX_L2) die("internal: %d L2 strengths", a->num_l2);
    if ((a->select == PROBE_SELECT_VAL) != (val != NULL)) die("internal: validation features with --select val only");
    const FeatureSet *other[] = {val, eval};
    for (int i = 0; i < 2; i++)
        if (other[i] && (other[i]->layers != train->layers || other[i]->dim != train->dim ||
                         other[i]->num_classes != train->num_classes))
            die("internal: feature sets of other shapes");
}

static double standard_error(double accuracy, int64_t n) {
    return n > 0 ? sqrt(accuracy * (1.0 - accuracy) / (double)n) : NAN;
}

void probe_layers(const FeatureSet *train, const FeatureSet *val, const FeatureSet *eval, const ProbeProtocol *a,
                  ProbeLayerResult *r) {
    check_protocol(train, val, eval, a);
    const int L = train->layers, d = train->dim, k = train->num_classes;
    double *mean = xmalloc((size_t)L * d * sizeof(double)), *inv_std = xmalloc((size_t)L * d * sizeof(double));
    for (int l = 0; l < L; l++)
        feature_stats(train->values + (int64_t)l * d, train->count, d, (int64_t)L * d, mean + (size_t)l * d,
                      inv_std + (size_t)l * d);
    Path pa = {.train = train, .val = val, .mean = mean, .inv_std = inv_std, .vars = (int64_t)k * (d + 1)};
    int8_t *fold = selection_folds(train, a, &pa.per_block, &pa.held);
    const int P = L * pa.per_block;
    pa.W = xcalloc((size_t)P * pa.vars, sizeof(double));
    pa.chosen = xcalloc((size_t)L * pa.vars, sizeof(double));
    pa.fits = xcalloc((size_t)P, sizeof(ProbeFit));
    for (int l = 0; l < L; l++) r[l] = (ProbeLayerResult){.holdout_accuracy = -1.0, .l2 = a->l2_grid[0]};
    double *X = standardized_layers(train, mean, inv_std);
    walk_grid(&pa, a, fold, X, r);
    free(X);
    if (a->select == PROBE_SELECT_VAL) refit_with_val(&pa, a, r);
    double strongest = a->l2_grid[0], weakest = a->l2_grid[0];
    for (int i = 1; i < a->num_l2; i++) {
        strongest = fmax(strongest, a->l2_grid[i]);
        weakest = fmin(weakest, a->l2_grid[i]);
    }
    for (int l = 0; l < L; l++) {
        r[l].accuracy = layer_score(eval, l, mean + (size_t)l * d, inv_std + (size_t)l * d,
                                    pa.chosen + (size_t)l * pa.vars, a->threads, &r[l].eval_loss);
        r[l].eval_images = eval->count;
        r[l].holdout_images = a->select == PROBE_SELECT_VAL ? val->count : pa.held;
        r[l].accuracy_se = standard_error(r[l].accuracy, r[l].eval_images);
        r[l].holdout_se = standard_error(r[l].holdout_accuracy, r[l].holdout_images);
        r[l].l2_at_grid_end = a->num_l2 > 1 && (r[l].l2 == strongest || r[l].l2 == weakest);
    }
    free(fold);
    free(pa.W);
    free(pa.chosen);
    free(pa.fits);
    free(mean);
    free(inv_std);
}

const char *probe_result_not_finite(const ProbeLayerResult *r) {
    if (!isfinite(r->accuracy)) return "accuracy";
    if (!isfinite(r->eval_loss)) return "evaluation loss";
    if (!isfinite(r->holdout_accuracy)) return "hold-out accuracy";
    if (!isfinite(r->grad_norm)) return "gradient norm";
    if (!isfinite(r->l2)) return "L2 strength";
    return NULL;
}
