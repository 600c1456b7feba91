// The batched probe objective on the CPU (solver.h). Per block: one product
// for every problem's logits (n x d by d x per_block*k), the softmax rows,
// one product for every problem's gradient (per_block*k x n by n x d). Sums
// over rows run in a fixed order, so the bits do not depend on the threads.
#include "probe/solver.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/blas.h"
#include "util/util.h"

void probe_batch_count_rows(const ProbeBatchShape *s, int64_t *n_fit, int64_t *n_held) {
    const int P = probe_batch_problems(s);
    int64_t *held_per_fold = xcalloc((size_t)s->per_block, sizeof(int64_t));
    for (int64_t i = 0; s->fold && i < s->n; i++) {
        const int f = s->fold[i];
        if (f < -1 || f >= s->per_block)
            die("internal: probe row %lld has fold %d of %d", (long long)i, f, s->per_block);
        if (f >= 0) held_per_fold[f]++;
    }
    for (int p = 0; p < P; p++) {
        const int j = p % s->per_block;
        n_held[p] = held_per_fold[j];
        n_fit[p] = s->n - held_per_fold[j];
        if (n_fit[p] <= 0) die("internal: probe problem %d fits no row", p);
    }
    free(held_per_fold);
}

// The row kernel for the problems listed in `which` (J of them): problem
// which[u]'s logits are columns [u*k, (u+1)*k) of Z, its results column u
// of row_loss and held (J per row).
static void rows_softmax_residual(const ProbeBatchShape *s, int64_t row0, int64_t row1, const double *W_block,
                                  const int64_t *n_fit_block, const int *which, int J, double *Z, int64_t ldz,
                                  double *row_loss, uint8_t *held) {
    const int k = s->k, d = s->d;
    for (int64_t i = row0; i < row1; i++) {
        const int fold = s->fold ? s->fold[i] : -1, label = s->y[i];
        for (int u = 0; u < J; u++) {
            const int j = which[u];
            double *z = Z + i * ldz + (int64_t)u * k;
            const double *W = W_block + (size_t)j * k * (d + 1);
            double mx = -INFINITY;
            int best = 0;
            for (int c = 0; c < k; c++) {
                z[c] += W[(size_t)c * (d + 1) + d];
                if (z[c] > z[best]) best = c;
                mx = fmax(mx, z[c]);
            }
            if (fold == j) {  // held out: scored, not fitted
                held[i * J + u] = best == label;
                row_loss[i * J + u] = 0.0;
                for (int c = 0; c < k; c++) z[c] = 0.0;
                continue;
            }
            held[i * J + u] = 0;
            // Each exp once (a fifth of an evaluation's time went to exp): the same values as computing it twice.
            const double z_label = z[label];
            double sum = 0.0;
            for (int c = 0; c < k; c++) {
                z[c] = exp(z[c] - mx);
                sum += z[c];
            }
            row_loss[i * J + u] = mx + log(sum) - z_label;
            const double inv_n = 1.0 / (double)n_fit_block[j];
            for (int c = 0; c < k; c++) z[c] = (z[c] / sum - (c == label)) * inv_n;
        }
    }
}

void probe_rows_softmax_residual(const ProbeBatchShape *s, int64_t row0, int64_t row1, const double *W_block,
                                 const int64_t *n_fit_block, double *Z, int64_t ldz, double *row_loss, uint8_t *held) {
    int *all = xmalloc((size_t)s->per_block * sizeof(int));
    for (int j = 0; j < s->per_block; j++) all[j] = j;
    rows_softmax_residual(s, row0, row1, W_block, n_fit_block, all, s->per_block, Z, ldz, row_loss, held);
    free(all);
}

typedef struct {
    const double *X;  // blocks x n x d
    int threads;
    int64_t *n_fit, *n_held;
    double *Z;            // n x per_block*k: logits, then residuals
    double *row_loss;     // n x per_block
    uint8_t *held;        // n x per_block
    int *which;           // per_block: a block's active problems
    double *Wc, *Gc;      // per_block x vars: their weights and gradients side by side
    double *col_sums;     // per_block*k bias gradients, then per_block losses
    int64_t *col_counts;  // per_block held-out rows predicted right
} CpuEvaluator;

// One block's active problems: their logits, residuals and gradients by two
// products over the block's rows, with columns only for the active ones.
static void cpu_evaluate_block(ProbeEvaluator *e, int b, const double *W, const double *l2, const uint8_t *active,
                               double *f, double *G, int64_t *heldout_correct) {
    const ProbeBatchShape *s = &e->shape;
    CpuEvaluator *c = e->impl;
    const int k = s->k, d = s->d, J = s->per_block;
    const int64_t n = s->n, vars = probe_batch_vars(s);
    int m = 0;
    for (int j = 0; j < J; j++)
        if (active[b * J + j]) c->which[m++] = j;
    if (m == 0) return;
    const double *X = c->X + (size_t)b * n * d, *Wb = W + (size_t)b * J * vars;
    double *Gb = G + (size_t)b * J * vars;
    // Finished problems drop out of the products: the active ones' weights side by side.
    const double *Wm = Wb;
    double *Gm = Gb;
    if (m < J) {
        for (int u = 0; u < m; u++) memcpy(c->Wc + u * vars, Wb + c->which[u] * vars, (size_t)vars * sizeof(double));
        Wm = c->Wc;
        Gm = c->Gc;
    }
    const int cols = m * k;
    blas_set_threads(c->threads);
    gemm_f64(false, true, (int)n, cols, d, 1.0, X, d, Wm, d + 1, 0.0, c->Z, cols);
    const int64_t chunk = 256;
#pragma omp parallel for schedule(static) num_threads(c->threads)
    for (int64_t r = 0; r < n; r += chunk)
        rows_softmax_residual(s, r, r + chunk < n ? r + chunk : n, Wb, c->n_fit + (size_t)b * J, c->which, m, c->Z,
                              cols, c->row_loss, c->held);
    gemm_f64(true, false, cols, d, (int)n, 1.0, c->Z, cols, X, d, 0.0, Gm, d + 1);
    // The sums over rows, one pass over each array row by row: every column
    // still adds its rows in order (the same bits), but a pass per column
    // read Z with a stride of `cols` doubles, a cache line per element.
    double *bias = c->col_sums, *loss = c->col_sums + cols;
    int64_t *correct = c->col_counts;
    memset(c->col_sums, 0, (size_t)(cols + m) * sizeof(double));
    memset(correct, 0, (size_t)m * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {  // fixed order
        const double *z = c->Z + i * cols;
        for (int q = 0; q < cols; q++) bias[q] += z[q];
        for (int u = 0; u < m; u++) {
            loss[u] += c->row_loss[i * m + u];
            correct[u] += c->held[i * m + u];
        }
    }
    for (int u = 0; u < m; u++) {
        const int j = c->which[u], p = b * J + j;
        double penalty = 0.0;
        double *g = Gb + (size_t)j * vars;
        if (Gm != Gb) memcpy(g, Gm + u * vars, (size_t)vars * sizeof(double));
        for (int cl = 0; cl < k; cl++) {
            const double *w = Wb + (size_t)j * vars + (size_t)cl * (d + 1);
            double *gc = g + (size_t)cl * (d + 1);
            gc[d] = bias[u * k + cl];
            for (int q = 0; q < d; q++) {
                gc[q] += l2[p] * w[q];
                penalty += w[q] * w[q];
            }
        }
        f[p] = loss[u] / (double)c->n_fit[p] + 0.5 * l2[p] * penalty;
        if (heldout_correct) heldout_correct[p] = correct[u];
    }
}

static void cpu_evaluate(ProbeEvaluator *e, const double *W, const double *l2, const uint8_t *active, double *f,
                         double *G, int64_t *heldout_correct) {
    for (int b = 0; b < e->shape.blocks; b++) cpu_evaluate_block(e, b, W, l2, active, f, G, heldout_correct);
}

static void cpu_destroy(ProbeEvaluator *e) {
    CpuEvaluator *c = e->impl;
    free(c->n_fit);
    free(c->n_held);
    free(c->Z);
    free(c->row_loss);
    free(c->held);
    free(c->which);
    free(c->Wc);
    free(c->Gc);
    free(c->col_sums);
    free(c->col_counts);
    free(c);
    free(e);
}

ProbeEvaluator *probe_cpu_evaluator_create(const ProbeBatchShape *shape, const double *X, int threads) {
    const int P = probe_batch_problems(shape);
    CpuEvaluator *c = xcalloc(1, sizeof *c);
    c->X = X;
    c->threads = resolve_threads(threads);
    c->n_fit = xmalloc((size_t)P * sizeof(int64_t));
    c->n_held = xmalloc((size_t)P * sizeof(int64_t));
    probe_batch_count_rows(shape, c->n_fit, c->n_held);
    c->Z = xmalloc((size_t)shape->n * shape->per_block * shape->k * sizeof(double));
    c->row_loss = xmalloc((size_t)shape->n * shape->per_block * sizeof(double));
    c->held = xmalloc((size_t)shape->n * shape->per_block);
    c->which = xmalloc((size_t)shape->per_block * sizeof(int));
    c->Wc = xmalloc((size_t)shape->per_block * probe_batch_vars(shape) * sizeof(double));
    c->Gc = xmalloc((size_t)shape->per_block * probe_batch_vars(shape) * sizeof(double));
    c->col_sums = xmalloc((size_t)shape->per_block * (shape->k + 1) * sizeof(double));
    c->col_counts = xmalloc((size_t)shape->per_block * sizeof(int64_t));
    ProbeEvaluator *e = xcalloc(1, sizeof *e);
    *e = (ProbeEvaluator){.shape = *shape, .evaluate = cpu_evaluate, .destroy = cpu_destroy, .impl = c};
    return e;
}

void probe_evaluator_free(ProbeEvaluator *e) {
    if (e) e->destroy(e);
}
