// Batched L-BFGS (solver.h): every problem of a ProbeEvaluator minimised at
// once, each with its own history, line search and convergence test, while
// every evaluation computes all the problems still working together (one
// batch of large products). The vector math stays here on the host, in
// doubles, whichever evaluator computes the objective.
//
// Per problem, per iteration (Nocedal & Wright, algorithm 7.4/7.5):
//   d = -H g by the two-loop recursion over the last m pairs (s, y), H0 =
//       gamma I with gamma = s.y / y.y of the newest pair;
//   backtracking: t = 1 (the first iteration: 1 / ||g||), halved until
//       f(x + t d) <= f(x) + c1 t g.d (Armijo);
//   a pair is kept only when s.y > 1e-12 |s||y| (positive curvature);
//   done when ||g|| <= epsilon * max(1, ||x||), as liblbfgs tests.
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "probe/solver.h"
#include "util/blas.h"
#include "util/util.h"

enum { HISTORY = 10, MAX_HALVINGS = 40 };
static const double ARMIJO_C1 = 1e-4;

void probe_lbfgs_defaults(ProbeLbfgsOptions *opt) { *opt = (ProbeLbfgsOptions){.max_iters = 1000, .epsilon = 1e-6}; }

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// One problem's L-BFGS state; its vectors live in the solver's arrays.
typedef struct {
    double f, f0, dg0, step;  // f at x; at the line search's start x0; g0.d; the trial step
    int pairs, newest;        // history: count and ring position of the newest pair
    int halvings;
    bool done, searching;
} ProblemState;

typedef struct {
    int P;
    int64_t vars;
    double *x0, *g, *g0, *dir;  // P x vars each: start of the line search, gradient at x, at x0, direction
    double *S, *Y;              // HISTORY x P x vars: pairs, ring per problem
    double *rho, *alpha;        // HISTORY x P
    ProblemState *st;
} Lbfgs;

static double *pair_vec(double *base, const Lbfgs *L, int slot, int p) {
    return base + ((size_t)slot * L->P + p) * L->vars;
}

// dir = -H g by the two-loop recursion; the steepest descent with no pairs.
static void two_loop(Lbfgs *L, int p) {
    ProblemState *s = &L->st[p];
    const int64_t v = L->vars;
    double *q = L->dir + (size_t)p * v, *g = L->g + (size_t)p * v;
    for (int64_t i = 0; i < v; i++) q[i] = -g[i];
    int slot = s->newest;
    for (int h = 0; h < s->pairs; h++, slot = (slot + HISTORY - 1) % HISTORY) {
        const double a = L->rho[slot * L->P + p] * dot(pair_vec(L->S, L, slot, p), q, v);
        L->alpha[slot * L->P + p] = a;
        const double *y = pair_vec(L->Y, L, slot, p);
        for (int64_t i = 0; i < v; i++) q[i] -= a * y[i];
    }
    if (s->pairs > 0) {
        const double *y = pair_vec(L->Y, L, s->newest, p);
        const double gamma = 1.0 / (L->rho[s->newest * L->P + p] * dot(y, y, v));  // s.y / y.y
        for (int64_t i = 0; i < v; i++) q[i] *= gamma;
    }
    slot = (s->newest + HISTORY - (s->pairs - 1)) % HISTORY;  // oldest
    for (int h = 0; h < s->pairs; h++, slot = (slot + 1) % HISTORY) {
        const double b = L->rho[slot * L->P + p] * dot(pair_vec(L->Y, L, slot, p), q, v);
        const double *sv = pair_vec(L->S, L, slot, p);
        for (int64_t i = 0; i < v; i++) q[i] += (L->alpha[slot * L->P + p] - b) * sv[i];
    }
}

// Starts an iteration of problem p at x (in W): a direction, the first trial point.
static void begin_line_search(Lbfgs *L, int p, double *x) {
    ProblemState *s = &L->st[p];
    const int64_t v = L->vars;
    double *d = L->dir + (size_t)p * v, *g = L->g + (size_t)p * v;
    two_loop(L, p);
    s->dg0 = dot(g, d, v);
    if (!(s->dg0 < 0.0)) {  // not a descent direction (rounding): forget the history, go down the gradient
        s->pairs = 0;
        two_loop(L, p);
        s->dg0 = dot(g, d, v);
    }
    // Without pairs, liblbfgs tries 1 / ||d||; warm starts have small gradients, for which that overshoots by
    // orders of magnitude (a dozen halvings), so no longer than a unit step.
    s->step = s->pairs == 0 ? fmin(1.0, 1.0 / sqrt(dot(d, d, v))) : 1.0;
    s->f0 = s->f;
    s->halvings = 0;
    s->searching = true;
    memcpy(L->x0 + (size_t)p * v, x, (size_t)v * sizeof(double));
    memcpy(L->g0 + (size_t)p * v, g, (size_t)v * sizeof(double));
    for (int64_t i = 0; i < v; i++) x[i] = L->x0[(size_t)p * v + i] + s->step * d[i];
}

static bool converged(const double *x, const double *g, int64_t v, double epsilon, double *grad_norm) {
    *grad_norm = sqrt(dot(g, g, v));
    return *grad_norm <= epsilon * fmax(1.0, sqrt(dot(x, x, v)));
}

// The trial point of problem p was evaluated (f_new, G_new): accept it, or
// halve the step, or give up after MAX_HALVINGS (back to x0, which stays).
static void end_trial(Lbfgs *L, int p, double *x, double f_new, const double *g_new, int64_t held_new,
                      bool is_converged, double grad_norm, const ProbeLbfgsOptions *opt, ProbeFit *fit) {
    ProblemState *s = &L->st[p];
    const int64_t v = L->vars;
    const double *x0 = L->x0 + (size_t)p * v, *d = L->dir + (size_t)p * v;
    if (!(f_new <= s->f0 + ARMIJO_C1 * s->step * s->dg0)) {
        if (++s->halvings > MAX_HALVINGS) {
            memcpy(x, x0, (size_t)v * sizeof(double));  // x0's f, g and held-out count are still recorded
            s->searching = false;
            s->done = true;
            fit->status = PROBE_FIT_LINE_SEARCH_FAILED;
            return;
        }
        s->step *= 0.5;
        for (int64_t i = 0; i < v; i++) x[i] = x0[i] + s->step * d[i];
        return;
    }
    s->searching = false;
    s->f = f_new;
    double *g = L->g + (size_t)p * v;
    memcpy(g, g_new, (size_t)v * sizeof(double));
    fit->iters++;
    fit->objective = f_new;
    fit->heldout_correct = held_new;
    // The new pair: s = x - x0, y = g - g0.
    const int slot = (s->newest + 1) % HISTORY;
    double *sv = pair_vec(L->S, L, slot, p), *yv = pair_vec(L->Y, L, slot, p);
    const double *g0 = L->g0 + (size_t)p * v;
    for (int64_t i = 0; i < v; i++) {
        sv[i] = x[i] - x0[i];
        yv[i] = g[i] - g0[i];
    }
    const double sy = dot(sv, yv, v);
    if (sy > 1e-12 * sqrt(dot(sv, sv, v) * dot(yv, yv, v))) {
        s->newest = slot;
        L->rho[slot * L->P + p] = 1.0 / sy;
        if (s->pairs < HISTORY) s->pairs++;
    }
    fit->grad_norm = grad_norm;
    if (is_converged) {
        s->done = true;
        fit->status = PROBE_FIT_CONVERGED;
    } else if (opt->max_iters > 0 && fit->iters >= opt->max_iters) {
        s->done = true;
        fit->status = PROBE_FIT_MAX_ITERS;
    }
}

static void lbfgs_alloc(Lbfgs *L, int P, int64_t vars) {
    L->P = P;
    L->vars = vars;
    const size_t vec = (size_t)P * vars * sizeof(double);
    L->x0 = xmalloc(vec);
    L->g = xmalloc(vec);
    L->g0 = xmalloc(vec);
    L->dir = xmalloc(vec);
    L->S = xmalloc(HISTORY * vec);
    L->Y = xmalloc(HISTORY * vec);
    L->rho = xcalloc((size_t)HISTORY * P, sizeof(double));
    L->alpha = xcalloc((size_t)HISTORY * P, sizeof(double));
    L->st = xcalloc((size_t)P, sizeof(ProblemState));
}

static void lbfgs_free(Lbfgs *L) {
    free(L->x0);
    free(L->g);
    free(L->g0);
    free(L->dir);
    free(L->S);
    free(L->Y);
    free(L->rho);
    free(L->alpha);
    free(L->st);
}

// Between the variables of L-BFGS (v) and the evaluator's (w = M v, the
// biases as they are), block by block, for the blocks with an active problem.
typedef enum { V_TO_W, W_TO_V, GRADIENT_W_TO_V } Change;

static void change_variables(const ProbeBatchShape *sh, const ProbeLbfgsOptions *opt, const uint8_t *active, Change c,
                             const double *from, double *to) {
    const int d = sh->d, J = sh->per_block, rows = J * sh->k;
    const int64_t vars = probe_batch_vars(sh);
    for (int b = 0; b < sh->blocks; b++) {
        bool any = false;
        for (int j = 0; j < J; j++) any |= !active || active[b * J + j];
        if (!any) continue;
        const double *M = (c == W_TO_V ? opt->M_inv : opt->M) + (size_t)b * d * d;
        const double *src = from + (size_t)b * J * vars;
        double *dst = to + (size_t)b * J * vars;
        // Row vectors: w = v M^T, v = w M_inv^T, gradient in v = (gradient in w) M.
        gemm_f64(false, c != GRADIENT_W_TO_V, rows, d, d, 1.0, src, d + 1, M, d, 0.0, dst, d + 1);
        for (int r = 0; r < rows; r++) dst[(size_t)r * (d + 1) + d] = src[(size_t)r * (d + 1) + d];
    }
}

static double problem_epsilon(const ProbeLbfgsOptions *opt, int p) {
    return opt->epsilon_of ? opt->epsilon_of[p] : opt->epsilon;
}

void probe_lbfgs(ProbeEvaluator *e, const double *l2, const ProbeLbfgsOptions *opt, double *W, ProbeFit *fits) {
    const ProbeBatchShape *sh = &e->shape;
    const int P = probe_batch_problems(sh);
    const int64_t v = probe_batch_vars(sh);
    const bool changed = opt->M != NULL;
    Lbfgs L;
    lbfgs_alloc(&L, P, v);
    double *f = xmalloc((size_t)P * sizeof(double)), *G = xmalloc((size_t)P * v * sizeof(double));
    double *V = changed ? xmalloc((size_t)P * v * sizeof(double)) : W;   // the variables of L-BFGS
    double *GV = changed ? xmalloc((size_t)P * v * sizeof(double)) : G;  // the gradient in them
    int64_t *held = xcalloc((size_t)P, sizeof(int64_t));
    uint8_t *active = xmalloc((size_t)P);
    memset(active, 1, (size_t)P);
    if (changed) {  // W = M V exactly from now on, so a frozen problem's W never moves
        change_variables(sh, opt, NULL, W_TO_V, W, V);
        change_variables(sh, opt, NULL, V_TO_W, V, W);
    }
    e->evaluate(e, W, l2, active, f, G, held);
    if (changed) change_variables(sh, opt, NULL, GRADIENT_W_TO_V, G, GV);
    int working = 0;
    for (int p = 0; p < P; p++) {
        fits[p] = (ProbeFit){.objective = f[p], .heldout_correct = held[p], .evaluations = 1};
        L.st[p].f = f[p];
        memcpy(L.g + (size_t)p * v, GV + (size_t)p * v, (size_t)v * sizeof(double));
        L.st[p].done = converged(W + (size_t)p * v, G + (size_t)p * v, v, problem_epsilon(opt, p), &fits[p].grad_norm);
        working += !L.st[p].done;
    }
    while (working > 0) {
        // Each working problem not in a line search starts an iteration; then all trial points are evaluated together.
#pragma omp parallel for schedule(dynamic, 1)
        for (int p = 0; p < P; p++)
            if (!L.st[p].done && !L.st[p].searching) begin_line_search(&L, p, V + (size_t)p * v);
        for (int p = 0; p < P; p++) active[p] = L.st[p].searching;
        if (changed) change_variables(sh, opt, active, V_TO_W, V, W);
        e->evaluate(e, W, l2, active, f, G, held);
        if (changed) change_variables(sh, opt, active, GRADIENT_W_TO_V, G, GV);
#pragma omp parallel for schedule(dynamic, 1)
        for (int p = 0; p < P; p++) {
            if (!active[p]) continue;
            fits[p].evaluations++;
            double grad_norm;
            const bool conv = converged(W + (size_t)p * v, G + (size_t)p * v, v, problem_epsilon(opt, p), &grad_norm);
            end_trial(&L, p, V + (size_t)p * v, f[p], GV + (size_t)p * v, held[p], conv, grad_norm, opt, &fits[p]);
        }
        working = 0;
        for (int p = 0; p < P; p++) working += !L.st[p].done;
    }
    if (changed) {  // the final points (a failed line search went back to its start)
        change_variables(sh, opt, NULL, V_TO_W, V, W);
        free(V);
        free(GV);
    }
    free(f);
    free(G);
    free(held);
    free(active);
    lbfgs_free(&L);
}

void probe_gram(const double *X, int64_t rows, int d, double *C) {
    gemm_f64(true, false, d, d, (int)rows, 1.0 / (double)rows, X, d, X, d, 0.0, C, d);
}

void probe_preconditioner(const double *C, int d, double l2, double *M, double *M_inv) {
    // Cholesky: L L^T = C / 10 + (l2 + a little) I, L lower triangular, into M_inv's lower triangle.
    double *A = M_inv;
    double trace = 0.0;
    for (int i = 0; i < d; i++) trace += C[(size_t)i * d + i];
    const double jitter = 1e-8 * fmax(trace / d, 1e-12);  // constant features make C singular
    for (int i = 0; i < d; i++)
        for (int j = 0; j <= i; j++) {
            double sum = 0.1 * C[(size_t)i * d + j] + (i == j ? l2 + jitter : 0.0);
            for (int q = 0; q < j; q++) sum -= A[(size_t)i * d + q] * A[(size_t)j * d + q];
            A[(size_t)i * d + j] = i == j ? sqrt(fmax(sum, jitter)) : sum / A[(size_t)j * d + j];
        }
    // Linv = L^-1 (lower, by forward substitution), M = Linv^T.
    memset(M, 0, (size_t)d * d * sizeof(double));
    for (int c = 0; c < d; c++) {  // column c of Linv is stored as row c of M (M = Linv^T)
        double *col = M + (size_t)c * d;
        for (int i = c; i < d; i++) {
            double sum = i == c ? 1.0 : 0.0;
            for (int q = c; q < i; q++) sum -= A[(size_t)i * d + q] * col[q];
            col[i] = sum / A[(size_t)i * d + i];
        }
    }
    // M_inv = L^T: transpose L in place (upper triangle), zero below.
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) {
            A[(size_t)j * d + i] = A[(size_t)i * d + j];
            A[(size_t)i * d + j] = 0.0;
        }
}
