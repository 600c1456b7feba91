// The CUDA backend's operations, one per CPU reference operation of
// model/cpu_ops.h (same names with a gpu_ prefix, same shapes and
// semantics), each tested against it in tests/cuda/. All pointers are device
// pointers. floatX is the storage type of activations and parameter copies: bf16
// (training) or float (the debugging mode); arithmetic is fp32 throughout,
// gradients of parameters are fp32. Every reduction has a fixed order, so
// results are bitwise reproducible from run to run.
#ifndef IGPT_CUDA_KERNELS_CUH
#define IGPT_CUDA_KERNELS_CUH

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.cuh"

extern "C" {
#include "model/config.h"
#include "train/optim.h"
}

// --- Embedding -----------------------------------------------------------------------
// out[b, 0] = sos + wpe[0]; out[b, t] = wte[tokens[b, t-1]] + wpe[t]
template <typename floatX>
void gpu_encoder_forward(floatX *out, const uint16_t *tokens, const floatX *wte, const floatX *wpe, const floatX *sos,
                         int B, int T, int C, cudaStream_t stream);
// Rows of the batch grouped by the token that feeds them, for a deterministic
// backward pass: rows[offsets[v] .. offsets[v+1]) are the (b*T + t), t >= 1,
// with tokens[b, t-1] == v, in increasing order. Host arrays: offsets V+1,
// rows B*(T-1).
void token_rows_by_value(const uint16_t *tokens, int B, int T, int V, int *offsets, int *rows);
// Adds into dwte, dwpe, dsos (fp32); offsets/rows from token_rows_by_value, on
// the device. A token's rows are summed in chunks of ENCODER_BACKWARD_CHUNK,
// then the chunks in order: deterministic; the CPU's bits when no token
// feeds more rows than one chunk. scratch: gpu_encoder_backward_scratch floats.
#define ENCODER_BACKWARD_CHUNK 256
template <typename floatX>
void gpu_encoder_backward(float *dwte, float *dwpe, float *dsos, const floatX *dout, const int *offsets,
                          const int *rows, int B, int T, int C, int V, float *scratch, cudaStream_t stream);
size_t gpu_encoder_backward_scratch(int B, int T, int C, int V);

// --- Norms, fused with the residual add ----------------------------------------------
// x = a + b (b may be NULL: x = a); resid_out = x when not NULL; out = norm(x)
// with mean (LayerNorm only, may be NULL) and rstd per row kept for backward.
// bias may be NULL (the iGPT norm has none).
template <typename floatX>
void gpu_residual_norm_forward(NormKind kind, floatX *resid_out, floatX *out, float *mean, float *rstd, const floatX *a,
                               const floatX *b, const floatX *gain, const floatX *bias, int N, int C,
                               cudaStream_t stream);
// dinp += d/d(inp) (dinp in floatX); dgain (and dbias when not NULL) += their
// gradients (fp32). scratch: gpu_norm_backward_scratch(N, C) floats.
template <typename floatX>
void gpu_norm_backward(NormKind kind, floatX *dinp, float *dgain, float *dbias, const floatX *dout, const floatX *inp,
                       const float *mean, const float *rstd, const floatX *gain, int N, int C, float *scratch,
                       cudaStream_t stream);
size_t gpu_norm_backward_scratch(int N, int C);

// --- Elementwise ------------------------------------------------------------------------
template <typename floatX>
void gpu_gelu_forward(floatX *out, const floatX *inp, size_t n, cudaStream_t stream);
// dinp = dout * gelu'(inp); dinp may alias dout.
template <typename floatX>
void gpu_gelu_backward(floatX *dinp, const floatX *inp, const floatX *dout, size_t n, cudaStream_t stream);
template <typename Dst, typename Src>
void gpu_cast(Dst *dst, const Src *src, size_t n, cudaStream_t stream);

// --- Softmax -------------------------------------------------------------------------------
// out[n] = softmax(inp[n]) over V columns (out may alias inp).
template <typename floatX>
void gpu_softmax_rows(floatX *out, const floatX *inp, int N, int V, cudaStream_t stream);
// losses[n] = -log softmax(logits[n])[targets[n]] (fp32); the logits are
// kept (CE_LOSSES_ONLY), become the probabilities (CE_PROBABILITIES, as
// softmax_crossentropy_forward), or become d(grad_scale * sum of
// losses)/d(logits) (CE_GRADIENT: forward and softmax_crossentropy_backward fused).
enum CrossEntropyOutput { CE_LOSSES_ONLY = 0, CE_PROBABILITIES = 1, CE_GRADIENT = 2 };
template <typename floatX>
void gpu_softmax_crossentropy(floatX *logits, float *losses, const uint16_t *targets, int N, int V,
                              CrossEntropyOutput output, float grad_scale, cudaStream_t stream);
// out[b * out_stride + c] = mean over t of inp[b, t, c] (probe features, as model_features).
template <typename floatX>
void gpu_mean_over_positions(float *out, size_t out_stride, const floatX *inp, int B, int T, int C,
                             cudaStream_t stream);

// --- Matrix products (cuda/matmul.cu: cuBLASLt; the CPU's BLAS in the interpret mode) ---
// out (N x OC) = inp (N x IC) @ W^T
template <typename floatX>
void gpu_matmul_forward(floatX *out, const floatX *inp, const floatX *W, int N, int IC, int OC, cudaStream_t stream);
// dinp = dout @ W (overwritten; skipped when NULL); dW (fp32) += dout^T @ inp
template <typename floatX>
void gpu_matmul_backward(floatX *dinp, float *dW, const floatX *dout, const floatX *inp, const floatX *W, int N, int IC,
                         int OC, cudaStream_t stream);

// --- The probe solver's objective (cuda/probe_solver.cu; src/probe/solver.h), fp64 ---------
// probe_rows_softmax_residual (solver.c) for every row of one block: Z (n x
// per_block*k, row stride per_block*k) holds the logits without biases and
// becomes the residuals; row_loss and held (n x per_block) as there. fold may be NULL.
void gpu_probe_rows_softmax_residual(double *Z, double *row_loss, uint8_t *held, const double *W_block,
                                     const int64_t *n_fit_block, const uint16_t *y, const int8_t *fold, int64_t n,
                                     int d, int k, int per_block, cudaStream_t stream);
// cpu_evaluate's per-problem tail for the active problems of one block (one
// thread block each, fixed-order sums): f, held-out hits, the bias
// gradients (column sums of Z) into G_block, and the L2 terms added to it.
void gpu_probe_finish(double *f_block, int64_t *hits_block, double *G_block, const double *W_block, const double *Z,
                      const double *row_loss, const uint8_t *held, const int64_t *n_fit_block, const double *l2_block,
                      const uint8_t *active_block, int64_t n, int d, int k, int per_block, cudaStream_t stream);

// --- Attention (cuda/attention.cu) ---------------------------------------------------------
// Causal multi-head attention over qkv (B x T x 3C: q | k | v, head h at
// columns h*hs..); writes atty (B x T x C) and the log-sum-exp of every
// attention row, lse (B x NH x T, fp32). Head sizes 16, 32, 64, 96, 128.
bool gpu_attention_supports(int head_size);
template <typename floatX>
void gpu_attention_forward(floatX *atty, float *lse, const floatX *qkv, int B, int T, int C, int NH,
                           cudaStream_t stream);
// dqkv (overwritten) from datty, recomputing the probabilities from lse;
// row_dot: B x NH x T floats of scratch.
template <typename floatX>
void gpu_attention_backward(floatX *dqkv, float *row_dot, const floatX *datty, const floatX *atty, const floatX *qkv,
                            const float *lse, int B, int T, int C, int NH, cudaStream_t stream);

// --- Incremental decoding (cuda/decode.cu; the CPU twins in model/decode.h) -----------------
// One position t of B sequences. The embedding: out[b] (B x C) = sos + wpe[0]
// at t = 0, else wte[prev[b]] + wpe[t] (prev: B tokens on the device).
template <typename floatX>
void gpu_encoder_decode_forward(floatX *out, const uint16_t *prev, const floatX *wte, const floatX *wpe,
                                const floatX *sos, int B, int t, int C, cudaStream_t stream);
// The attention of position t: stores its k and v (from qkv, B x 3C) at
// position t of the caches (B x T x C each, sequence b at b*T*C, head h at
// columns h*hs), then attends each (sequence, head)'s query to positions
// 0..t (online softmax in fp32, a fixed order); atty: B x C. Head sizes as
// gpu_attention_supports; qkv and the caches 16-byte aligned.
template <typename floatX>
void gpu_attention_decode_forward(floatX *atty, const floatX *qkv, floatX *k_cache, floatX *v_cache, int B, int t,
                                  int T, int C, int NH, cudaStream_t stream);

// --- Attention on tensor cores (cuda/flash_attention.cu) -------------------------------------
// The same operations for bf16 storage and head sizes 32, 64, 128, FlashAttention-2
// style (mma.sync, ldmatrix, cp.async): same arguments, same lse layout;
// the backward pass writes row_dot (its D = rowsum(datty * atty)) in its dQ
// kernel. Deterministic like the portable kernels (no atomics).
bool gpu_flash_attention_supports(int head_size);
void gpu_flash_attention_forward(bf16 *atty, float *lse, const bf16 *qkv, int B, int T, int C, int NH,
                                 cudaStream_t stream);
void gpu_flash_attention_backward(bf16 *dqkv, float *row_dot, const bf16 *datty, const bf16 *atty, const bf16 *qkv,
                                  const float *lse, int B, int T, int C, int NH, cudaStream_t stream);

// --- Optimizer ---------------------------------------------------------------------------
// AdamW on fp32 master weights (optim.c's adamw_update_range) for every
// tensor in one launch. The elements to update are a table of spans (on the
// device): gradients and the weights the kernels read at flat indices
// [flat, flat + count), master weights and Adam m, v at [packed, packed +
// count) (the same without ZeRO; a ZeRO rank's pieces packed), decaying or
// not. g = grads * scale (scale = *device_scale when not NULL, the clip
// factor computed on the device, else grad_scale); params = params * decay -
// step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps); copy (floatX, may be NULL)
// receives the new weights in the storage type.
#define ADAMW_PACK 4
struct AdamWSpan {
    size_t flat, packed, count;
    size_t work;  // where the span's elements start in the launch (a multiple of ADAMW_PACK)
    int decays;
};
// Appends a span (merged into the last one when it continues it with the same decay).
void adamw_add_span(std::vector<AdamWSpan> *spans, size_t flat, size_t packed, size_t count, bool decays);
// The launch's work items: the end of the last span's, padded to ADAMW_PACK.
size_t adamw_work(const std::vector<AdamWSpan> &spans);
template <typename floatX>
void gpu_adamw(float *master, floatX *copy, const float *grads, float *adam_m, float *adam_v, const AdamWSpan *spans,
               int num_spans, size_t work, const AdamWScalars &s, float grad_scale, const float *device_scale,
               cudaStream_t stream);
// *total (device; += with accumulate) = the sum of squares of n floats,
// accumulated in fp64 in an order that depends only on n; clip_scale
// (device, may be NULL) = clip_factor (optim.c) of the norm sqrt(*total) for
// grad_clip, so AdamW can read it without a trip through the host.
// scratch: GPU_SUM_BLOCKS doubles on the device.
#define GPU_SUM_BLOCKS 512
void gpu_sum_squares(double *total, float *clip_scale, const float *x, size_t n, bool accumulate, double grad_clip,
                     double *scratch, cudaStream_t stream);

#endif
