// Linear probes: multinomial logistic regression with an L2 penalty, fit by
// our batched L-BFGS (solver.h) with BLAS for the products, as iGPT probes
// CIFAR features.
#ifndef IGPT_PROBE_H
#define IGPT_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#include "probe/features.h"
#include "probe/solver.h"

// n examples of d features (row-major doubles, usually standardised) and
// labels in [0, k).
typedef struct {
    int64_t n;
    int d, k;
    const double *X;
    const uint16_t *y;
} ProbeProblem;

typedef struct {
    double l2;       // objective = mean cross-entropy + l2/2 * ||W||^2 (biases not penalised)
    int max_iters;   // 0: until convergence
    double epsilon;  // converged when ||gradient|| < epsilon * max(1, ||parameters||)
    int threads;
} ProbeSolverOptions;

typedef struct {
    int d, k;
    double *w;         // k x (d + 1): row c holds class c's weights, then its bias
    double objective;  // at the solution
    double grad_norm;  // final gradient norm
    int iters;
    int status;  // PROBE_FIT_* (solver.h)
} LinearProbe;

void probe_solver_defaults(ProbeSolverOptions *opt);
// Fits from w_init (k x (d+1), NULL = zeros). Deterministic.
void probe_fit(const ProbeProblem *p, const ProbeSolverOptions *opt, const double *w_init, LinearProbe *out);
// Accuracy in [0, 1]; mean cross-entropy (without the penalty) into *mean_ce
// and predicted classes into *predictions when not NULL.
double probe_score(const LinearProbe *m, const ProbeProblem *p, int threads, double *mean_ce, uint16_t *predictions);
void linear_probe_free(LinearProbe *m);

// Standardisation: per-feature mean and 1/std (std floored at 1e-6) of n rows
// of d floats with row stride `stride`; then X_out = (X - mean) * inv_std as doubles.
void feature_stats(const float *X, int64_t n, int d, int64_t stride, double *mean, double *inv_std);
void standardize(const float *X, int64_t n, int d, int64_t stride, const double *mean, const double *inv_std,
                 double *out);

// The protocol of `./igpt probe`, for every layer of a feature set at once:
// standardise each layer with the training statistics, then walk the L2 grid
// strongest first, each value's fits warm-started from the previous value's
// solutions, all layers' problems solved together (solver.h). The L2 strength
// of each layer is the one whose selection accuracy is best (ties: the
// stronger):
//   kfold:   K-fold cross-validation on the training images (seeded, class-
//            stratified folds); the fit on all of them at that strength is
//            the probe (fitted along, at every strength);
//   holdout: a seeded, class-stratified 10% of the training images held out
//            (the other 90% fitted); the probe is again the fit on all of them;
//   val:     fit on the training images, scored on the validation images;
//            the probe is then refit on training + validation images.
// The probe is scored once on the evaluation images.
// The default grid (--l2): half decades from 1 down to 1e-7. Measured on a
// d=128 model's 9 layers (CIFAR-10 16x16, 4,500 training images, 5-fold CV)
// the choices were 3e-6..3e-3, never above 3e-3; the best strength falls
// about as 1/n, so 45,000 images want ~10x weaker: the grid reaches 1e-7.
#define PROBE_DEFAULT_L2 "1,0.3,0.1,0.03,0.01,0.003,0.001,3e-4,1e-4,3e-5,1e-5,3e-6,1e-6,3e-7,1e-7"
// The default grid's values into grid (PROBE_MAX_L2 at most); returns their count.
int probe_default_l2(double *grid);
typedef enum { PROBE_SELECT_KFOLD, PROBE_SELECT_HOLDOUT, PROBE_SELECT_VAL } ProbeSelect;
enum { PROBE_MAX_L2 = 16 };

// Makes the evaluator of a batch (X: blocks x n x d, borrowed); NULL in
// ProbeProtocol: the CPU one.
typedef ProbeEvaluator *(*ProbeEvaluatorMaker)(const ProbeBatchShape *shape, const double *X, int threads);

typedef struct {
    const double *l2_grid;
    int num_l2;     // at most PROBE_MAX_L2
    int max_iters;  // L-BFGS iterations per fit and strength
    uint64_t seed;  // of the folds or the hold-out
    int threads;    // CPU threads
    ProbeSelect select;
    int folds;  // kfold's K (>= 2)
    ProbeEvaluatorMaker make_evaluator;
    bool verbose;        // a line on stderr per L2 strength
    bool plain;          // L-BFGS without the preconditioner (solver.h; to compare)
    const int8_t *fold;  // kfold: this assignment of the training rows instead of the seeded one (tests)
} ProbeProtocol;

typedef struct {
    double accuracy, accuracy_se;         // on the evaluation images, and its binomial standard error
    double eval_loss;                     // mean cross-entropy on them
    double l2;                            // chosen
    double holdout_accuracy, holdout_se;  // the selection's accuracy at that strength (CV, hold-out or val)
    double holdout_by_l2[PROBE_MAX_L2];   // ... at each strength, in the grid's order
    bool l2_at_grid_end;                  // the choice is the grid's strongest or weakest value
    double grad_norm;                     // of the probe's fit
    int iters;                            // of the probe's fit at the chosen strength (from its warm start)
    int64_t eval_images, holdout_images;  // the counts behind the two standard errors
    int path_evaluations;                 // evaluations of the whole batch along the grid (the same for every layer)
} ProbeLayerResult;

// Results for each of train->layers layers. val: the validation features,
// only for PROBE_SELECT_VAL (else NULL). Dies on bad settings.
void probe_layers(const FeatureSet *train, const FeatureSet *val, const FeatureSet *eval, const ProbeProtocol *protocol,
                  ProbeLayerResult *results);
// Seeded, class-stratified folds: each class's rows shuffled, then dealt to
// folds 0..folds-1 in turn (continuing from class to class), so every fold
// holds each class's share within one row and sizes within one of n/folds.
void probe_assign_folds(const uint16_t *labels, int64_t n, int num_classes, int folds, uint64_t seed, int8_t *fold);
// NULL when every number of a layer's result is finite, else the name of one
// that is not ("evaluation loss"): the solver met numbers it cannot fit, and
// such a result is an error, never a result.
const char *probe_result_not_finite(const ProbeLayerResult *result);

#endif
