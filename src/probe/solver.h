// The batched probe solver's objective: many multinomial logistic
// regressions (probe.h's problem) evaluated together, so that one step of all
// of them is a few large matrix products instead of many thin ones.
//
// A batch is `blocks` feature matrices (one per layer: n rows of d
// standardised features, the same n images and labels) and `per_block`
// problems on each, which share the block's matrix and differ in the rows
// they fit and in their L2 strength. Problem p = b * per_block + j fits the
// rows whose fold is not j: with folds 0..K-1 and per_block = K + 1, problems
// 0..K-1 are the K cross-validation fits and problem K fits every row; the
// rows of fold j are problem j's held-out rows, scored at every evaluation.
// A single hold-out is K = 1 with the other rows in fold -1 (never held out).
//
// Parameters: P = blocks * per_block problems of k x (d + 1) doubles each
// (row c: class c's d weights, then its bias), problem after problem, so the
// k * per_block weight rows of a block are one row-major matrix of stride
// d + 1 (the products read them in place).
#ifndef IGPT_PROBE_SOLVER_H
#define IGPT_PROBE_SOLVER_H

#include <stdint.h>

typedef struct {
    int64_t n;           // rows (images)
    int d, k;            // features per row, classes
    int blocks;          // feature matrices (layers)
    int per_block;       // problems per block
    const uint16_t *y;   // n labels in [0, k)
    const int8_t *fold;  // n folds in [-1, per_block); NULL: no row is held out
} ProbeBatchShape;

static inline int probe_batch_problems(const ProbeBatchShape *s) { return s->blocks * s->per_block; }
static inline int64_t probe_batch_vars(const ProbeBatchShape *s) { return (int64_t)s->k * (s->d + 1); }

// What one evaluation gives for every active problem p (inactive ones are
// left untouched):
//   f[p] = mean over its fitted rows of -log softmax(x W_p^T + b_p)[y]
//          + l2[p] / 2 * ||W_p||^2                    (biases not penalised)
//   G[p] = the gradient of f[p], k x (d + 1)
//   heldout_correct[p] = its held-out rows (fold == j) whose largest logit is
//          their label's (ties: the lowest class, as probe_score); NULL: not wanted
// Deterministic: the same inputs give the same bits, whatever the threads.
typedef struct ProbeEvaluator ProbeEvaluator;
struct ProbeEvaluator {
    ProbeBatchShape shape;
    void (*evaluate)(ProbeEvaluator *e, const double *W, const double *l2, const uint8_t *active, double *f, double *G,
                     int64_t *heldout_correct);
    void (*destroy)(ProbeEvaluator *e);
    void *impl;
};

// Rows of each problem: n_fit[p] fitted, n_held[p] held out (count_rows fills
// both, P entries each). A problem that fits no row is an error (die).
void probe_batch_count_rows(const ProbeBatchShape *s, int64_t *n_fit, int64_t *n_held);

// On the CPU: X holds the blocks' matrices one after the other (blocks x n x
// d doubles, standardised), borrowed for the evaluator's life. BLAS for the
// products, OpenMP over rows for the rest, with `threads` threads.
ProbeEvaluator *probe_cpu_evaluator_create(const ProbeBatchShape *shape, const double *X, int threads);
// On the GPU (cuda/probe_solver.cu): the same X copied to the device once;
// the products in fp64 by cuBLASLt. NULL, with *why set, where this build or
// machine has no GPU.
ProbeEvaluator *probe_gpu_evaluator_create(const ProbeBatchShape *shape, const double *X, const char **why);
void probe_evaluator_free(ProbeEvaluator *e);

// The CPU twin of the GPU's row kernel, for the rows [row0, row1) of one
// block: logits Z (rows x per_block*k, row stride ldz) in, biases added from
// W_block; per row and problem j, the softmax's cross-entropy into
// row_loss[i * per_block + j] (0 for rows j does not fit), the residual
// (softmax - onehot(y)) / n_fit[j] in place of the logits for fitted rows (0
// for the others), and held[i * per_block + j] = 1 when j holds row i out and
// predicts it right (else 0).
void probe_rows_softmax_residual(const ProbeBatchShape *s, int64_t row0, int64_t row1, const double *W_block,
                                 const int64_t *n_fit_block, double *Z, int64_t ldz, double *row_loss, uint8_t *held);

// --- The batched L-BFGS driver (lbfgs.c) ------------------------------------------------

typedef struct {
    int max_iters;             // iterations (accepted steps) per problem; 0: until converged
    double epsilon;            // converged when ||g|| <= epsilon * max(1, ||w||) (liblbfgs's test)
    const double *epsilon_of;  // P entries: problem p's own epsilon (NULL: epsilon for all)
    // A linear change of variables per block (NULL: none): each class's d
    // weights are w = M v, and L-BFGS runs on v; blocks x d x d each, M and
    // its inverse. The objective and its optimum are the same; the
    // convergence test is on the gradient in w.
    const double *M, *M_inv;
} ProbeLbfgsOptions;

enum { PROBE_FIT_CONVERGED = 0, PROBE_FIT_MAX_ITERS = 1, PROBE_FIT_LINE_SEARCH_FAILED = 2 };

// One problem's fit, at its final point.
typedef struct {
    double objective, grad_norm;
    int64_t heldout_correct;  // its held-out rows predicted right
    int iters, evaluations;
    int status;  // PROBE_FIT_*: a failed line search (40 halvings) stops at the best point found
} ProbeFit;

void probe_lbfgs_defaults(ProbeLbfgsOptions *opt);
// Minimises every problem of e from W (P x vars: the warm start in, the
// solutions out), problem p with L2 strength l2[p]. Every evaluation computes
// the problems still working together; finished ones are frozen. History 10,
// backtracking Armijo line search (c1 = 1e-4, halving). Deterministic.
void probe_lbfgs(ProbeEvaluator *e, const double *l2, const ProbeLbfgsOptions *opt, double *W, ProbeFit *fits);

// The preconditioner of a block: C = X^T X / rows over its first `rows` rows
// (d x d; a sample is enough), then M = L^-T, M_inv = L^T with
// L L^T = C / 10 + l2 I, which makes the Hessian of the objective in v near
// the identity (the softmax's curvature is about a tenth of C's).
void probe_gram(const double *X, int64_t rows, int d, double *C);
void probe_preconditioner(const double *C, int d, double l2, double *M, double *M_inv);

#endif
