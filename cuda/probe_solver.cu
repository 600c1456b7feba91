// The batched probe objective (src/probe/solver.h) on the GPU, in fp64: the
// same arithmetic as src/probe/solver.c's CPU evaluator, with the features
// kept on the device for the evaluator's life. Per block with an active
// problem, one evaluation is
//   1. logits Z = X W^T for all the block's problems (cuBLASLt, fp64),
//   2. the row kernel (twin: probe_rows_softmax_residual): biases, softmax,
//      per-row losses, held-out hits, residuals in place of the logits,
//   3. the gradient G = Z^T X (cuBLASLt, fp64, written in place at stride d + 1),
//   4. the finish kernel, one thread block per problem: loss and held-out
//      sums over rows, bias gradients (column sums of Z), the L2 terms, f.
// Every sum has a fixed order (per-thread strides, then a fixed tree in
// shared memory; cuBLASLt with one plan per product shape), so two
// evaluations give the same bits, and a problem's results do not depend on
// which other blocks are active (each block's products have the same shape
// and alignment, hence the same algorithm).
//
// Device memory (doubles are 8 bytes; strides rounded up to 32 doubles, so
// that every block starts 256-byte aligned):
//   X      blocks x round32(n d) x 8          the features (4.6 GB for 25 x 45,000 x 512)
//   W, G   2 x blocks x round32(per_block k (d + 1)) x 8
//   Z      n x per_block k x 8                one block's logits/residuals
//   rows   n x per_block x 9                  per-row losses (8) and hits (1)
//   labels n x 3                              y (2) and fold (1)
//   small  P x 33                             n_fit, l2, f, hits, active
//   cuBLASLt workspace (32 MiB)
// probe_gpu_evaluator_create checks the sum against the free memory first.
#include <cmath>
#include <cstdio>
#include <vector>

#include "kernels.cuh"

extern "C" {
#include "model/gpu_model.h"
#include "probe/solver.h"
#include "util/blas.h"
#include "util/util.h"
}

#ifndef IGPT_INTERPRET
#include <cublasLt.h>
#endif

// --- Kernels -------------------------------------------------------------------------------

// One thread per (row i, problem j) of a block: probe_rows_softmax_residual's
// loop body for item i * J + j (so row_loss and held are written coalesced).
__global__ void probe_rows_kernel(double *Z, double *row_loss, uint8_t *held, const double *W_block,
                                  const int64_t *n_fit_block, const uint16_t *y, const int8_t *fold, int64_t n, int d,
                                  int k, int J) {
    const size_t item = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (item >= (size_t)n * J) return;
    const size_t i = item / J;
    const int j = (int)(item % J), label = y[i], row_fold = fold ? fold[i] : -1;
    double *z = Z + i * (size_t)J * k + (size_t)j * k;
    const double *W = W_block + (size_t)j * k * (d + 1);
    double mx = -INFINITY;
    int best = 0;
    for (int c = 0; c < k; c++) {
        z[c] += W[(size_t)c * (d + 1) + d];
        if (z[c] > z[best]) best = c;
        mx = fmax(mx, z[c]);
    }
    if (row_fold == j) {  // held out: scored, not fitted
        held[item] = best == label;
        row_loss[item] = 0.0;
        for (int c = 0; c < k; c++) z[c] = 0.0;
        return;
    }
    held[item] = 0;
    double sum = 0.0;
    for (int c = 0; c < k; c++) sum += exp(z[c] - mx);
    row_loss[item] = mx + log(sum) - z[label];
    const double inv_n = 1.0 / (double)n_fit_block[j];
    for (int c = 0; c < k; c++) z[c] = (exp(z[c] - mx) / sum - (c == label)) * inv_n;
}

#define PROBE_FINISH_THREADS 256

// The sum of every thread's x over the block, by a fixed tree (the same
// order on every run); every thread gets it. scratch: PROBE_FINISH_THREADS
// values of shared memory; the call is a barrier.
template <typename T>
__device__ T probe_block_sum(T x, T *scratch) {
    const int t = threadIdx.x;
    scratch[t] = x;
    __syncthreads();
    for (int half = PROBE_FINISH_THREADS / 2; half > 0; half /= 2) {
        if (t < half) scratch[t] += scratch[t + half];
        __syncthreads();
    }
    const T total = scratch[0];
    __syncthreads();  // scratch is free again for the next call
    return total;
}

// One thread block per problem j of a block (inactive ones return at once):
// cpu_evaluate's per-problem tail. G_block holds the gradient product's
// weights part; the bias gradients and the L2 terms are added here.
__global__ void __launch_bounds__(PROBE_FINISH_THREADS)
    probe_finish_kernel(double *f_block, int64_t *hits_block, double *G_block, const double *W_block, const double *Z,
                        const double *row_loss, const uint8_t *held, const int64_t *n_fit_block, const double *l2_block,
                        const uint8_t *active_block, int64_t n, int d, int k, int J) {
    __shared__ double sums[PROBE_FINISH_THREADS];
    __shared__ long long counts[PROBE_FINISH_THREADS];
    const int j = blockIdx.x, t = threadIdx.x;
    if (!active_block[j]) return;  // the whole thread block leaves: no barrier is split
    const size_t vars = (size_t)k * (d + 1), cols = (size_t)J * k;
    double loss = 0.0;
    long long hits = 0;
    for (size_t i = t; i < (size_t)n; i += PROBE_FINISH_THREADS) {
        loss += row_loss[i * J + j];
        hits += held[i * J + j];
    }
    loss = probe_block_sum(loss, sums);
    hits = probe_block_sum(hits, counts);
    double *G = G_block + (size_t)j * vars;
    const double *W = W_block + (size_t)j * vars;
    for (int c = 0; c < k; c++) {  // bias gradient: the column sum of the residuals
        double bias = 0.0;
        for (size_t i = t; i < (size_t)n; i += PROBE_FINISH_THREADS) bias += Z[i * cols + (size_t)j * k + c];
        bias = probe_block_sum(bias, sums);
        if (t == 0) G[(size_t)c * (d + 1) + d] = bias;
    }
    const double l2 = l2_block[j];
    double penalty = 0.0;
    for (size_t q = t; q < (size_t)k * d; q += PROBE_FINISH_THREADS) {
        const size_t at = q / d * (d + 1) + q % d;
        G[at] += l2 * W[at];
        penalty += W[at] * W[at];
    }
    penalty = probe_block_sum(penalty, sums);
    if (t == 0) {
        f_block[j] = loss / (double)n_fit_block[j] + 0.5 * l2 * penalty;
        hits_block[j] = hits;
    }
}

void gpu_probe_rows_softmax_residual(double *Z, double *row_loss, uint8_t *held, const double *W_block,
                                     const int64_t *n_fit_block, const uint16_t *y, const int8_t *fold, int64_t n,
                                     int d, int k, int per_block, cudaStream_t stream) {
    const size_t items = (size_t)n * per_block;
    if (items == 0) return;
    LAUNCH(probe_rows_kernel, dim3(ceil_div(items, 256)), dim3(256), 0, stream, Z, row_loss, held, W_block, n_fit_block,
           y, fold, n, d, k, per_block);
}

void gpu_probe_finish(double *f_block, int64_t *hits_block, double *G_block, const double *W_block, const double *Z,
                      const double *row_loss, const uint8_t *held, const int64_t *n_fit_block, const double *l2_block,
                      const uint8_t *active_block, int64_t n, int d, int k, int per_block, cudaStream_t stream) {
    LAUNCH(probe_finish_kernel, dim3(per_block), dim3(PROBE_FINISH_THREADS), 0, stream, f_block, hits_block, G_block,
           W_block, Z, row_loss, held, n_fit_block, l2_block, active_block, n, d, k, per_block);
}

// --- Products ------------------------------------------------------------------------------
// D (m x n, column-major, leading dimension ldd) = op(A) op(B), in fp64, as
// cuBLASLt sees it: A stored (trans_a ? k x m : m x k) with leading
// dimension lda, B likewise. Row-major X (r x c, stride s) is column-major
// X^T (c x r, ld s), so each call below is the transposed row-major product.
struct ProbeProduct {
    bool trans_a, trans_b;
    int m, n, k, lda, ldb, ldd;
#ifndef IGPT_INTERPRET
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
#endif
};

static ProbeProduct probe_product_shape(bool trans_a, bool trans_b, int m, int n, int k, int lda, int ldb, int ldd) {
    ProbeProduct p{};
    p.trans_a = trans_a;
    p.trans_b = trans_b;
    p.m = m;
    p.n = n;
    p.k = k;
    p.lda = lda;
    p.ldb = ldb;
    p.ldd = ldd;
    return p;
}

#ifdef IGPT_INTERPRET
// The CPU's BLAS serves the product: column-major D = op(A) op(B) is
// row-major D^T = op(B)^T op(A)^T, so the arguments (transposes, leading
// dimensions) are the ones a GPU gets, checked by the same tests.
static void probe_product_plan(ProbeProduct *, void *, size_t) {}
static void probe_product_release(ProbeProduct *) {}
static void probe_product_run(const ProbeProduct &p, const double *A, const double *B, double *D, void *, void *,
                              size_t, cudaStream_t) {
    gemm_f64(p.trans_b, p.trans_a, p.n, p.m, p.k, 1.0, B, p.ldb, A, p.lda, 0.0, D, p.ldd);
}
#else
static void probe_lt_check(cublasStatus_t status, const char *what, int line) {
    if (status != CUBLAS_STATUS_SUCCESS)
        die("cuBLASLt error %d in %s (cuda/probe_solver.cu:%d)", (int)status, what, line);
}
#define PROBE_LT_CHECK(call) probe_lt_check((call), #call, __LINE__)

// Descriptors and the heuristic's algorithm, once per evaluator: every
// block's product has this shape, and 256-byte aligned operands.
static void probe_product_plan(ProbeProduct *p, void *handle, size_t workspace_bytes) {
    cublasLtHandle_t lt = static_cast<cublasLtHandle_t>(handle);
    PROBE_LT_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_64F, CUDA_R_64F));
    const cublasOperation_t op_a = p->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                            op_b = p->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    PROBE_LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    PROBE_LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    PROBE_LT_CHECK(
        cublasLtMatrixLayoutCreate(&p->la, CUDA_R_64F, p->trans_a ? p->k : p->m, p->trans_a ? p->m : p->k, p->lda));
    PROBE_LT_CHECK(
        cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_64F, p->trans_b ? p->n : p->k, p->trans_b ? p->k : p->n, p->ldb));
    PROBE_LT_CHECK(cublasLtMatrixLayoutCreate(&p->ld, CUDA_R_64F, p->m, p->n, p->ldd));
    cublasLtMatmulPreference_t pref;
    PROBE_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    PROBE_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                        &workspace_bytes, sizeof workspace_bytes));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    PROBE_LT_CHECK(
        cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->la, p->lb, p->ld, p->ld, pref, 1, &heuristic, &found));
    if (found == 0) die("cuBLASLt has no fp64 algorithm for the probe's %d x %d x %d product", p->m, p->n, p->k);
    p->algo = heuristic.algo;
    cublasLtMatmulPreferenceDestroy(pref);
}

static void probe_product_release(ProbeProduct *p) {
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->ld);
    cublasLtMatmulDescDestroy(p->desc);
}

static void probe_product_run(const ProbeProduct &p, const double *A, const double *B, double *D, void *handle,
                              void *workspace, size_t workspace_bytes, cudaStream_t stream) {
    const double alpha = 1.0, beta = 0.0;
    PROBE_LT_CHECK(cublasLtMatmul(static_cast<cublasLtHandle_t>(handle), p.desc, &alpha, A, p.la, B, p.lb, &beta, D,
                                  p.ld, D, p.ld, &p.algo, workspace, workspace_bytes, stream));
}
#endif

// --- The evaluator -------------------------------------------------------------------------

static const size_t probe_workspace_bytes = 32u << 20;

struct GpuProbeEvaluator {
    size_t x_stride, w_stride;  // doubles between blocks of X, and of W and G (multiples of 32)
    double *X, *W, *G, *Z, *row_loss, *l2, *f;
    uint8_t *held, *active;
    int64_t *n_fit, *hits;
    uint16_t *y;
    int8_t *fold;  // NULL: no row is held out
    ProbeProduct logits, gradient;
    void *lt_handle, *workspace;
    cudaStream_t stream;
    std::vector<double> f_host;  // f and hits of every problem, before the active ones are handed out
    std::vector<int64_t> hits_host;
};

// The formula of the header comment, in bytes.
static size_t probe_gpu_bytes(const ProbeBatchShape *s, size_t x_stride, size_t w_stride) {
    const size_t n = (size_t)s->n, J = (size_t)s->per_block, P = (size_t)probe_batch_problems(s);
    return (size_t)s->blocks * (x_stride + 2 * w_stride) * sizeof(double) + n * J * s->k * sizeof(double) +
           n * J * (sizeof(double) + 1) + n * 3 + P * 33 + probe_workspace_bytes;
}

template <typename T>
static T *probe_upload(const T *host, size_t count) {
    T *device = nullptr;
    CUDA_CHECK(cudaMalloc(&device, count * sizeof(T)));
    if (host) CUDA_CHECK(cudaMemcpy(device, host, count * sizeof(T), cudaMemcpyHostToDevice));
    return device;
}

static void gpu_probe_evaluate(ProbeEvaluator *e, const double *W, const double *l2, const uint8_t *active, double *f,
                               double *G, int64_t *heldout_correct) {
    const ProbeBatchShape *s = &e->shape;
    GpuProbeEvaluator *g = static_cast<GpuProbeEvaluator *>(e->impl);
    const int J = s->per_block, P = probe_batch_problems(s);
    const size_t vars = (size_t)probe_batch_vars(s), block_vars = (size_t)J * vars;
    cudaStream_t st = g->stream;
    CUDA_CHECK(cudaMemcpyAsync(g->l2, l2, (size_t)P * sizeof(double), cudaMemcpyHostToDevice, st));
    CUDA_CHECK(cudaMemcpyAsync(g->active, active, (size_t)P, cudaMemcpyHostToDevice, st));
    std::vector<bool> block_active((size_t)s->blocks, false);
    for (int p = 0; p < P; p++) block_active[(size_t)(p / J)] = block_active[(size_t)(p / J)] || active[p];
    for (int b = 0; b < s->blocks; b++) {
        if (!block_active[(size_t)b]) continue;  // a block's problems are computed together, or not at all
        const double *X = g->X + (size_t)b * g->x_stride;
        double *Wb = g->W + (size_t)b * g->w_stride, *Gb = g->G + (size_t)b * g->w_stride;
        CUDA_CHECK(
            cudaMemcpyAsync(Wb, W + (size_t)b * block_vars, block_vars * sizeof(double), cudaMemcpyHostToDevice, st));
        probe_product_run(g->logits, Wb, X, g->Z, g->lt_handle, g->workspace, probe_workspace_bytes, st);
        gpu_probe_rows_softmax_residual(g->Z, g->row_loss, g->held, Wb, g->n_fit + (size_t)b * J, g->y, g->fold, s->n,
                                        s->d, s->k, J, st);
        probe_product_run(g->gradient, X, g->Z, Gb, g->lt_handle, g->workspace, probe_workspace_bytes, st);
        gpu_probe_finish(g->f + (size_t)b * J, g->hits + (size_t)b * J, Gb, Wb, g->Z, g->row_loss, g->held,
                         g->n_fit + (size_t)b * J, g->l2 + (size_t)b * J, g->active + (size_t)b * J, s->n, s->d, s->k,
                         J, st);
    }
    CUDA_CHECK(cudaMemcpyAsync(g->f_host.data(), g->f, (size_t)P * sizeof(double), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaMemcpyAsync(g->hits_host.data(), g->hits, (size_t)P * sizeof(int64_t), cudaMemcpyDeviceToHost, st));
    // Only the active problems' gradients come back (inactive ones stay as
    // the caller left them), a run of consecutive active problems of a block in one copy.
    for (int p = 0; p < P;) {
        int end = p;
        while (end < P && active[end] && (end == p || end % J != 0)) end++;
        if (end == p) {
            p++;
            continue;
        }
        const double *from = g->G + (size_t)(p / J) * g->w_stride + (size_t)(p % J) * vars;
        CUDA_CHECK(cudaMemcpyAsync(G + (size_t)p * vars, from, (size_t)(end - p) * vars * sizeof(double),
                                   cudaMemcpyDeviceToHost, st));
        p = end;
    }
    CUDA_CHECK(cudaStreamSynchronize(st));
    for (int p = 0; p < P; p++) {
        if (!active[p]) continue;
        f[p] = g->f_host[(size_t)p];
        if (heldout_correct) heldout_correct[p] = g->hits_host[(size_t)p];
    }
}

static void gpu_probe_destroy(ProbeEvaluator *e) {
    GpuProbeEvaluator *g = static_cast<GpuProbeEvaluator *>(e->impl);
    CUDA_CHECK(cudaStreamSynchronize(g->stream));
    void *buffers[] = {g->X,    g->W,      g->G,     g->Z,    g->row_loss, g->l2,   g->f,
                       g->held, g->active, g->n_fit, g->hits, g->y,        g->fold, g->workspace};
    for (void *buffer : buffers)
        if (buffer) CUDA_CHECK(cudaFree(buffer));
    probe_product_release(&g->logits);
    probe_product_release(&g->gradient);
#ifndef IGPT_INTERPRET
    cublasLtDestroy(static_cast<cublasLtHandle_t>(g->lt_handle));
#endif
    CUDA_CHECK(cudaStreamDestroy(g->stream));
    delete g;
    free(e);
}

// Whether the evaluator fits in the GPU's free memory; else *why says what it needs.
static bool probe_gpu_fits(const ProbeBatchShape *s, size_t x_stride, size_t w_stride, const char **why) {
    static char message[256];  // (not thread_local: the checker builds take those for __shared__ arrays)
    size_t free_bytes = 0, total_bytes = 0;
    gpu_memory_info(&free_bytes, &total_bytes);
    const size_t need = probe_gpu_bytes(s, x_stride, w_stride);
    if (need <= free_bytes) return true;
    char need_text[32], free_text[32], x_text[32];
    snprintf(message, sizeof message,
             "the probe's %d blocks of %lld x %d features need %s of GPU memory (%s of it the features), but %s are "
             "free",
             s->blocks, (long long)s->n, s->d, format_bytes((double)need, need_text, sizeof need_text),
             format_bytes((double)s->blocks * x_stride * sizeof(double), x_text, sizeof x_text),
             format_bytes((double)free_bytes, free_text, sizeof free_text));
    *why = message;
    return false;
}

extern "C" ProbeEvaluator *probe_gpu_evaluator_create(const ProbeBatchShape *shape, const double *X, const char **why) {
    const ProbeBatchShape *s = shape;
    if (gpu_device_count(why) == 0) return nullptr;
    if (s->n <= 0 || s->n > INT32_MAX || s->d <= 0 || s->k <= 0 || s->blocks <= 0 || s->per_block <= 0 ||
        (int64_t)s->per_block * s->k > INT32_MAX / 2)
        die("internal: probe batch of %lld rows, %d features, %d classes, %d x %d problems", (long long)s->n, s->d,
            s->k, s->blocks, s->per_block);
    const int P = probe_batch_problems(s), J = s->per_block, cols = J * s->k, d = s->d;
    const size_t n = (size_t)s->n, x_stride = round_up(n * d, 32), w_stride = round_up((size_t)J * s->k * (d + 1), 32);
    if (!probe_gpu_fits(s, x_stride, w_stride, why)) return nullptr;
    std::vector<int64_t> n_fit((size_t)P), n_held((size_t)P);
    probe_batch_count_rows(s, n_fit.data(), n_held.data());

    GpuProbeEvaluator *g = new GpuProbeEvaluator();
    g->x_stride = x_stride;
    g->w_stride = w_stride;
    CUDA_CHECK(cudaStreamCreate(&g->stream));
    g->X = probe_upload<double>(nullptr, (size_t)s->blocks * x_stride);
    for (int b = 0; b < s->blocks; b++)  // block by block: each starts 256-byte aligned
        CUDA_CHECK(cudaMemcpy(g->X + (size_t)b * x_stride, X + (size_t)b * n * d, n * d * sizeof(double),
                              cudaMemcpyHostToDevice));
    g->W = probe_upload<double>(nullptr, (size_t)s->blocks * w_stride);
    g->G = probe_upload<double>(nullptr, (size_t)s->blocks * w_stride);
    g->Z = probe_upload<double>(nullptr, n * cols);
    g->row_loss = probe_upload<double>(nullptr, n * J);
    g->held = probe_upload<uint8_t>(nullptr, n * J);
    g->y = probe_upload(s->y, n);
    g->fold = s->fold ? probe_upload(s->fold, n) : nullptr;
    g->n_fit = probe_upload(n_fit.data(), (size_t)P);
    g->l2 = probe_upload<double>(nullptr, (size_t)P);
    g->f = probe_upload<double>(nullptr, (size_t)P);
    g->hits = probe_upload<int64_t>(nullptr, (size_t)P);
    g->active = probe_upload<uint8_t>(nullptr, (size_t)P);
    g->f_host.resize((size_t)P);
    g->hits_host.resize((size_t)P);
    // Z^T (cols x n) = W (cols x d, stride d + 1) X^T; G^T (d x cols, ld d + 1) = X^T (d x n) Z (n x cols).
    g->logits = probe_product_shape(true, false, cols, (int)n, d, d + 1, d, cols);
    g->gradient = probe_product_shape(false, true, d, cols, (int)n, d, cols, d + 1);
#ifndef IGPT_INTERPRET
    cublasLtHandle_t lt;
    PROBE_LT_CHECK(cublasLtCreate(&lt));
    g->lt_handle = lt;
    CUDA_CHECK(cudaMalloc(&g->workspace, probe_workspace_bytes));
#endif
    probe_product_plan(&g->logits, g->lt_handle, probe_workspace_bytes);
    probe_product_plan(&g->gradient, g->lt_handle, probe_workspace_bytes);

    ProbeEvaluator *e = static_cast<ProbeEvaluator *>(xcalloc(1, sizeof *e));
    *e = ProbeEvaluator{*shape, gpu_probe_evaluate, gpu_probe_destroy, g};
    return e;
}
