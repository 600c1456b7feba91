// The analytic cost model of bench/step_costs.h. FLOPs count a multiply-add
// as 2 and a transcendental function as 1; bytes count each tensor read or
// written once (what a kernel cannot avoid moving through DRAM, however well
// it caches), with activations in the storage type (X bytes) and
// statistics, gradients of parameters and optimizer state in fp32.
#include "step_costs.h"

#include <math.h>
#include <stdio.h>

#include "model/params.h"
#include "util/util.h"

// H200 SXM: bf16 dense products as cuBLASLt measured them (the datasheet's
// 989 is not reached), fp32 FMAs on CUDA cores (132 SMs x 128 lanes x 2 x
// 1.98 GHz), and a device-to-device copy's bandwidth (datasheet 4.8 TB/s).
const Roofline roofline_h200 = {"H200", 790e12, 67e12, 4.3e12};

// FLOPs per element of the elementwise kernels (fp32, CUDA cores), counted from cuda/layers.cu.
#define NORM_FORWARD_FLOPS 8.0     // residual add, mean, variance (sub, fma), normalise, gain (bias)
#define NORM_BACKWARD_FLOPS 12.0   // dout * gain, two row sums, the combination; gain/bias partials
#define GELU_FORWARD_FLOPS 5.0     // x * sigmoid(1.702 x): mul, exp, add, divide, mul
#define GELU_BACKWARD_FLOPS 10.0   // the sigmoid again, s + 1.702 x s (1 - s), times dout
#define SOFTMAX_CE_FLOPS 4.0       // max, exp of the difference, sum (the loss: once per row)
#define SOFTMAX_CE_GRAD_FLOPS 6.0  // and (p - onehot) * scale, in place
#define ADAMW_FLOPS 14.0           // m, v, bias correction, sqrt, divide, decay, step, the bf16 copy
#define NORM_CHUNK_ROWS 256.0      // rows per partial sum of the gain/bias gradients (cuda/layers.cu)

typedef struct {
    KernelCost *rows;
    int n;
    double X;             // bytes per stored activation: 2 (bf16) or 4
    bool products_on_tc;  // matrix products on tensor cores (bf16), or CUDA cores (fp32)
} Costs;

static KernelCost *add_row(Costs *c, const char *name, int launches, double flops, double bytes, bool tensor_cores) {
    if (c->n >= STEP_COSTS_MAX) die("internal: more than %d rows of kernel costs", STEP_COSTS_MAX);
    KernelCost *k = &c->rows[c->n++];
    *k = (KernelCost){.launches = launches, .flops = flops, .bytes = bytes, .tensor_cores = tensor_cores};
    snprintf(k->name, sizeof k->name, "%s", name);
    return k;
}

// out (N x OC) = inp (N x IC) W^T: 2 N IC OC FLOPs, all counted by MFU unless recomputed.
static void matmul_forward(Costs *c, const char *name, int launches, double N, double IC, double OC, bool counted) {
    const double flops = 2.0 * N * IC * OC * launches;
    KernelCost *k = add_row(c, name, launches, flops, (N * IC + IC * OC + N * OC) * c->X * launches, c->products_on_tc);
    k->model_flops = counted ? flops : 0.0;
}

// dinp = dout W and dW += dout^T inp (fp32, read and written): two products, 4 N IC OC FLOPs, dout read by both.
static void matmul_backward(Costs *c, const char *name, int launches, double N, double IC, double OC) {
    const double flops = 4.0 * N * IC * OC * launches;
    const double bytes = (2.0 * N * OC + OC * IC + 2.0 * N * IC) * c->X + 2.0 * OC * IC * 4.0;
    KernelCost *k = add_row(c, name, launches, flops, bytes * launches, c->products_on_tc);
    k->model_flops = flops;
}

// Causal attention of B x NH heads of T x hs (C = NH hs): Q K^T and P V, 2 T^2 hs FLOPs each per head, halved by
// the mask: 2 B T^2 C. Reads q, k, v; writes y and the log-sum-exp.
static void attention_forward(Costs *c, const char *name, int launches, double B, double T, double C, double NH,
                              bool counted) {
    const double flops = 2.0 * B * T * T * C * launches;
    KernelCost *k =
        add_row(c, name, launches, flops, (4.0 * B * T * C * c->X + 4.0 * B * NH * T) * launches, c->products_on_tc);
    k->model_flops = counted ? flops : 0.0;
}

// Backward: scores recomputed, dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: 5 products, 2.5x the forward;
// MFU counts the 4 that are not recomputed. (Separate dQ and dK/dV passes recompute the scores and dP twice:
// 3.5x.) Reads q, k, v, y, dy, lse; writes dq, dk, dv; the row dots dO.O written and read once.
static void attention_backward(Costs *c, int launches, double B, double T, double C, double NH) {
    const double forward = 2.0 * B * T * T * C * launches;
    KernelCost *k = add_row(c, "attention_backward (row dot, dQ, dK/dV)", launches, 2.5 * forward,
                            (8.0 * B * T * C * c->X + 12.0 * B * NH * T) * launches, c->products_on_tc);
    k->model_flops = 2.0 * forward;
}

// x = a + b (with_add), out = norm(x), and the row statistics (mean for LayerNorm, rstd).
static void norm_forward(Costs *c, const char *name, int launches, double N, double C, bool layernorm, bool with_add) {
    const double tensors = with_add ? 4.0 : 2.0;  // a, b in; x, out back; or inp in, out back
    const double bytes = tensors * N * C * c->X + (layernorm ? 2.0 : 1.0) * (C * c->X + 4.0 * N);
    add_row(c, name, launches, NORM_FORWARD_FLOPS * N * C * launches, bytes * launches, false);
}

// dinp += ... (read and written), dout and inp read; gain/bias gradients through partial sums per chunk of rows.
static void norm_backward(Costs *c, int launches, double N, double C, bool layernorm) {
    const double params = layernorm ? 2.0 : 1.0, chunks = ceil(N / NORM_CHUNK_ROWS);
    const double bytes =
        4.0 * N * C * c->X + params * 4.0 * N + C * c->X + params * 2.0 * chunks * C * 4.0 + params * 2.0 * C * 4.0;
    add_row(c, "norm_backward (3 kernels)", launches, NORM_BACKWARD_FLOPS * N * C * launches, bytes * launches, false);
}

// Elementwise over n values: `tensors` of n read or written, `flops` per value.
static void elementwise(Costs *c, const char *name, int launches, double n, double tensors, double flops) {
    add_row(c, name, launches, flops * n * launches, tensors * n * c->X * launches, false);
}

// Embedding: out[b, t] = wte[token] + wpe[t] (the table's rows read once: at most V of them).
static void encoder_forward(Costs *c, double N, double T, double C, double V) {
    const double rows_read = (V < N ? V : N) + T + 1.0;
    add_row(c, "encoder_forward", 1, N * C, 2.0 * N + (rows_read + N) * C * c->X, false);
}

// dwte, dwpe, dsos += the rows of dout (fp32, read and written), rows grouped by token (ints).
static void encoder_backward(Costs *c, double N, double T, double C, double V) {
    const double bytes = N * C * c->X + 4.0 * (N + V + 1.0) + 2.0 * 4.0 * (V + T + 1.0) * C;
    add_row(c, "encoder_backward", 1, 2.0 * N * C, bytes, false);
}

// The forward pass of blocks 0..L-1 (counted: MFU counts them; recomputed in backward: it does not).
static void blocks_forward(Costs *c, const ModelConfig *cfg, double B, bool counted) {
    const int L = cfg->n_layer;
    const double T = cfg->seq_len, C = cfg->d_model, NH = cfg->n_head, N = B * T;
    const bool ln = cfg->norm == NORM_LAYERNORM;
    if (!counted) norm_forward(c, "recompute: residual_norm_forward", L, N, C, ln, false);
    matmul_forward(c, counted ? "matmul qkv (C -> 3C)" : "recompute: matmul qkv", L, N, C, 3 * C, counted);
    attention_forward(c, counted ? "attention_forward" : "recompute: attention_forward", L, B, T, C, NH, counted);
    matmul_forward(c, counted ? "matmul attn proj (C -> C)" : "recompute: matmul attn proj", L, N, C, C, counted);
    norm_forward(c, counted ? "residual_norm_forward (add + norm)" : "recompute: residual_norm_forward (add)",
                 counted ? 2 * L : L, N, C, ln, true);
    matmul_forward(c, counted ? "matmul fc (C -> 4C)" : "recompute: matmul fc", L, N, C, 4 * C, counted);
    if (!counted) return;  // the recomputation stops at fc: the backward recomputes GELU itself
    elementwise(c, "gelu_forward", L, 4 * N * C, 2.0, GELU_FORWARD_FLOPS);
    matmul_forward(c, "matmul fc proj (4C -> C)", L, N, 4 * C, C, true);
}

static void step_backward(Costs *c, const ModelConfig *cfg, double B, bool recompute) {
    const int L = cfg->n_layer;
    const double T = cfg->seq_len, C = cfg->d_model, V = cfg->vocab_size, NH = cfg->n_head, N = B * T;
    add_row(c, "softmax_crossentropy (gradient)", 1, SOFTMAX_CE_GRAD_FLOPS * N * V, 2.0 * N * V * c->X + 6.0 * N,
            false);
    matmul_backward(c, "matmul_backward head", 1, N, C, V);
    add_row(c, "memset dresid", 1, 0.0, N * C * c->X, false);
    norm_backward(c, 2 * L + 1, N, C, cfg->norm == NORM_LAYERNORM);
    if (recompute) blocks_forward(c, cfg, B, false);
    elementwise(c, "gelu_forward (recomputed for backward)", L, 4 * N * C, 2.0, GELU_FORWARD_FLOPS);
    matmul_backward(c, "matmul_backward fc proj", L, N, 4 * C, C);
    elementwise(c, "gelu_backward", L, 4 * N * C, 3.0, GELU_BACKWARD_FLOPS);
    matmul_backward(c, "matmul_backward fc", L, N, C, 4 * C);
    matmul_backward(c, "matmul_backward attn proj", L, N, C, C);
    attention_backward(c, L, B, T, C, NH);
    matmul_backward(c, "matmul_backward qkv", L, N, C, 3 * C);
    encoder_backward(c, N, T, C, V);
}

int step_kernel_costs(const ModelConfig *cfg, int batch, int storage_bytes, bool recompute, bool optimizer,
                      KernelCost *out) {
    Costs c = {.rows = out, .X = storage_bytes, .products_on_tc = storage_bytes == 2};
    const double B = batch, T = cfg->seq_len, C = cfg->d_model, V = cfg->vocab_size, N = B * T;
    const double P = (double)param_count(cfg);
    add_row(&c, "memset grads (zero_grads)", 1, 0.0, 4.0 * P, false);
    encoder_forward(&c, N, T, C, V);
    norm_forward(&c, "residual_norm_forward (block 0)", 1, N, C, cfg->norm == NORM_LAYERNORM, false);
    blocks_forward(&c, cfg, B, true);
    matmul_forward(&c, "matmul head (C -> V)", 1, N, C, V, true);
    add_row(&c, "softmax_crossentropy (losses)", 1, SOFTMAX_CE_FLOPS * N * V, N * V * c.X + 6.0 * N, false);
    step_backward(&c, cfg, B, recompute);
    if (optimizer) {
        add_row(&c, "sum_squares (gradient norm)", 1, 2.0 * P, 4.0 * P, false);
        // master weights, gradients, m, v read; master, m, v written; and the bf16 copy.
        const double copy = storage_bytes == 2 ? 2.0 : 0.0;
        add_row(&c, "adamw (one launch per tensor)", param_tensors(cfg, NULL), ADAMW_FLOPS * P, (28.0 + copy) * P,
                false);
    }
    return c.n;
}

int attention_kernel_costs(int batch_heads, int T, int head_size, int storage_bytes, KernelCost *out) {
    Costs c = {.rows = out, .X = storage_bytes, .products_on_tc = storage_bytes == 2};
    // One head per "batch" entry, as bench/gpu_bench.cu lays them out.
    attention_forward(&c, "attention_forward", 1, batch_heads, T, head_size, 1, true);
    attention_backward(&c, 1, batch_heads, T, head_size, 1);
    return c.n;
}

double kernel_roofline_seconds(const KernelCost *k, const Roofline *r) {
    const double compute = k->flops / (k->tensor_cores ? r->tensor_flops : r->cuda_core_flops);
    const double memory = k->bytes / r->bytes_per_s;
    return compute > memory ? compute : memory;
}

// 6 per weight of every matrix product (2 forward, 4 backward), plus causal attention's two T x T products:
// 2 T C per token per layer forward (half of the full 4 T C), x 3.
double training_flops_per_token(const ModelConfig *cfg) {
    const double C = cfg->d_model, L = cfg->n_layer, V = cfg->vocab_size, T = cfg->seq_len;
    const double matmul_weights = L * 12.0 * C * C + V * C;
    return 6.0 * matmul_weights + 6.0 * L * T * C;
}

// Which ceiling bounds a kernel on r.
static const char *bound_by(const KernelCost *k, const Roofline *r) {
    const double compute = k->flops / (k->tensor_cores ? r->tensor_flops : r->cuda_core_flops);
    if (compute > k->bytes / r->bytes_per_s) return k->tensor_cores ? "tensor" : "fp32";
    return "memory";
}

void print_kernel_costs(FILE *f, const KernelCost *rows, int n, const Roofline *r, double measured_s) {
    double total_s = 0.0, flops = 0.0, model_flops = 0.0, bytes = 0.0;
    for (int i = 0; i < n; i++) total_s += kernel_roofline_seconds(&rows[i], r);
    fprintf(f,
            "kernel costs (analytic: each tensor moved once); roofline on %s: %.0f TFLOP/s tensor cores, "
            "%.0f TFLOP/s fp32, %.1f TB/s\n",
            r->name, r->tensor_flops / 1e12, r->cuda_core_flops / 1e12, r->bytes_per_s / 1e12);
    fprintf(f, "%-42s %8s %10s %10s %8s %7s %11s %6s\n", "kernel", "launches", "GFLOP", "MB", "FLOP/B", "bound",
            "roofline ms", "share");
    for (int i = 0; i < n; i++) {
        const KernelCost *k = &rows[i];
        const double s = kernel_roofline_seconds(k, r);
        fprintf(f, "%-42s %8d %10.4g %10.4g %8.1f %7s %11.4g %5.1f%%\n", k->name, k->launches, k->flops / 1e9,
                k->bytes / 1e6, k->bytes > 0 ? k->flops / k->bytes : 0.0, bound_by(k, r), 1e3 * s,
                total_s > 0 ? 100.0 * s / total_s : 0.0);
        flops += k->flops;
        model_flops += k->model_flops;
        bytes += k->bytes;
    }
    fprintf(f, "%-42s %8s %10.4g %10.4g %8.1f %7s %11.4g\n", "total", "", flops / 1e9, bytes / 1e6,
            bytes > 0 ? flops / bytes : 0.0, "", 1e3 * total_s);
    fprintf(f, "MFU counts %.4g GFLOP of these (matrix products, none recomputed)\n", model_flops / 1e9);
    if (measured_s > 0)
        fprintf(f, "measured %.4g ms: %.2fx the roofline's %.4g ms\n", 1e3 * measured_s, measured_s / total_s,
                1e3 * total_s);
}
