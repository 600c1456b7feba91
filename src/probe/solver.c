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

void probe_rows_softmax_residual(const ProbeBatchShape *s, int64_t row0, int64_t row1, const double *W_block,
                                 const int64_t *n_fit_block, double *Z, int64_t ldz, double *row_loss, uint8_t *held) {
    const int k = s->k, d = s->d, J = s->per_block;
    for (int64_t i = row0; i < row1; i++) {
        const int fold = s->fold ? s->fold[i] : -1, label = s->y[i];
        for (int j = 0; j < J; j++) {
            double *z = Z + i * ldz + (int64_t)j * k;
            const double *W = W_block + (size_t)j * k * (d + 1);
            double mx = -INFINITY;
            int best = 0;
            for (int c = 0; c < k; c++) {
                z[c] += W[(size_t)c * (d + 1) + d];
                if (z[c] > z[best]) best = c;
                mx = fmax(mx, z[c]);
            }
            if (fold == j) {  // held out: scored, not fitted
                held[i * J + j] = best == label;
                row_loss[i * J + j] = 0.0;
                for (int c = 0; c < k; c++) z[c] = 0.0;
                continue;
            }
            held[i * J + j] = 0;
            double sum = 0.0;
            for (int c = 0; c < k; c++) sum += exp(z[c] - mx);
            row_loss[i * J + j] = mx + log(sum) - z[label];
            const double inv_n = 1.0 / (double)n_fit_block[j];
            for (int c = 0; c < k; c++) z[c] = (exp(z[c] - mx) / sum - (c == label)) * inv_n;
        }
    }
}

typedef struct {
    const double *X;  // blocks x n x d
    int threads;
    int64_t *n_fit, *n_held;
    double *Z;         // n x per_block*k: logits, then residuals
    double *row_loss;  // n x per_block
    uint8_t *held;     // n x per_block
} CpuEvaluator;

static void cpu_evaluate(ProbeEvaluator *e, const double *W, const double *l2, const uint8_t *active, double *f,
                         double *G, int64_t *heldout_correct) {
    const ProbeBatchShape *s = &e->shape;
    CpuEvaluator *c = e->impl;
    const int k = s->k, d = s->d, J = s->per_block, cols = J * k;
    const int64_t n = s->n, vars = probe_batch_vars(s);
    for (int b = 0; b < s->blocks; b++) {
        bool any = false;
        for (int j = 0; j < J; j++) any |= active[b * J + j] != 0;
        if (!any) continue;  // a block's problems are computed together, or not at all
        const double *X = c->X + (size_t)b * n * d, *Wb = W + (size_t)b * J * vars;
        double *Gb = G + (size_t)b * J * vars;
        blas_set_threads(c->threads);
        gemm_f64(false, true, (int)n, cols, d, 1.0, X, d, Wb, d + 1, 0.0, c->Z, cols);
        const int64_t chunk = 256;
#pragma omp parallel for schedule(static) num_threads(c->threads)
        for (int64_t r = 0; r < n; r += chunk)
            probe_rows_softmax_residual(s, r, r + chunk < n ? r + chunk : n, Wb, c->n_fit + (size_t)b * J, c->Z, cols,
                                        c->row_loss, c->held);
        gemm_f64(true, false, cols, d, (int)n, 1.0, c->Z, cols, X, d, 0.0, Gb, d + 1);
        for (int j = 0; j < J; j++) {
            const int p = b * J + j;
            if (!active[p]) continue;
            double loss = 0.0, penalty = 0.0;
            int64_t correct = 0;
            for (int64_t i = 0; i < n; i++) {  // fixed order
                loss += c->row_loss[i * J + j];
                correct += c->held[i * J + j];
            }
            for (int cl = 0; cl < k; cl++) {
                const double *w = Wb + (size_t)j * vars + (size_t)cl * (d + 1);
                double *g = Gb + (size_t)j * vars + (size_t)cl * (d + 1);
                double bias = 0.0;
                for (int64_t i = 0; i < n; i++) bias += c->Z[i * cols + (int64_t)j * k + cl];
                g[d] = bias;
                for (int q = 0; q < d; q++) {
                    g[q] += l2[p] * w[q];
                    penalty += w[q] * w[q];
                }
            }
            f[p] = loss / (double)c->n_fit[p] + 0.5 * l2[p] * penalty;
            if (heldout_correct) heldout_correct[p] = correct;
        }
    }
}

static void cpu_destroy(ProbeEvaluator *e) {
    CpuEvaluator *c = e->impl;
    free(c->n_fit);
    free(c->n_held);
    free(c->Z);
    free(c->row_loss);
    free(c->held);
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
    ProbeEvaluator *e = xcalloc(1, sizeof *e);
    *e = (ProbeEvaluator){.shape = *shape, .evaluate = cpu_evaluate, .destroy = cpu_destroy, .impl = c};
    return e;
}

void probe_evaluator_free(ProbeEvaluator *e) {
    if (e) e->destroy(e);
}
