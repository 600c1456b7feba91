// Linear probes: multinomial logistic regression with an L2 penalty, fit by
// L-BFGS (liblbfgs) with BLAS for the products, as iGPT probes CIFAR features.
#ifndef IGPT_PROBE_H
#define IGPT_PROBE_H

#include <stdint.h>

#include "probe/features.h"

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
    int status;  // liblbfgs return code (0, 1, 2: converged)
} LinearProbe;

void probe_solver_defaults(ProbeSolverOptions *opt);
// NULL when this build can fit probes; else why not (a GPU-only build has no
// liblbfgs, and its probe_fit dies with this message).
const char *probe_solver_missing(void);
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

// The protocol of `./igpt probe` for one layer of a feature set: standardise
// with the training statistics, choose the L2 strength on a seeded, class-
// stratified 10% hold-out of the training images (strongest first, each fit
// warm-started from the previous), refit on all training images, score on eval.
typedef struct {
    const double *l2_grid;
    int num_l2;
    int max_iters;
    uint64_t seed;  // of the hold-out
    int threads;
} ProbeProtocol;

typedef struct {
    double accuracy, eval_loss, l2, holdout_accuracy, grad_norm;
    int iters;  // of the final fit
} ProbeLayerResult;

void probe_layer(const FeatureSet *train, const FeatureSet *eval, int layer, const ProbeProtocol *protocol,
                 ProbeLayerResult *result);
// NULL when every number of a layer's result is finite, else the name of one
// that is not ("evaluation loss"): the solver met numbers it cannot fit, and
// such a result is an error, never a result.
const char *probe_result_not_finite(const ProbeLayerResult *result);

#endif
