// The iGPT model on a GPU (cuda/gpu_model.cu): the same configuration,
// parameter layout and math as the CPU reference (src/model/model.c), with
// parameters kept as fp32 master weights plus a bf16 copy that the kernels
// read (or fp32 only, the debugging mode), fp32 gradients and Adam state,
// and activations in the storage type. Built by nvcc for a real GPU, by g++
// for the interpret mode (cuda/interpret/interpret.h), or as a stub that
// reports that the build has no CUDA backend (src/model/gpu_stub.c).
#ifndef IGPT_GPU_MODEL_H
#define IGPT_GPU_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "train/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { GPU_BF16 = 0, GPU_FP32 = 1 } GpuPrecision;
// Which attention kernels run: the tensor-core ones (cuda/flash_attention.cu:
// bf16, head sizes 32, 64, 128), the portable ones (cuda/attention.cu: any
// precision, head sizes 16 to 128), or auto (tensor cores where they apply).
typedef enum { GPU_ATTENTION_AUTO = 0, GPU_ATTENTION_FLASH = 1, GPU_ATTENTION_PORTABLE = 2 } GpuAttention;
typedef struct GpuModel GpuModel;

// Usable GPUs: 0 without one (or in a build without the CUDA backend); the
// interpret mode reports one. *why (when not NULL) says why there is none.
int gpu_device_count(const char **why);
// A line naming the device (e.g. "NVIDIA H200, 139.8 GiB").
const char *gpu_device_name(void);
// Device memory the model needs, in bytes, split as parameters + gradients +
// optimizer state, and activations + scratch for batches of max_batch.
void gpu_model_memory(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute, bool zero,
                      size_t *state_bytes, size_t *activation_bytes);
// Free and total device memory in bytes.
void gpu_memory_info(size_t *free_bytes, size_t *total_bytes);

// recompute: keep only each block's input for backward and recompute the
// rest there (activation memory ~1/10, one more forward pass per step);
// such a model gives no probe features. zero: ZeRO-1 across the job's ranks
// (parallel/zero.h): this rank keeps the fp32 master weights and Adam moments
// of its pieces of every layer only (1/world of each); the weights the
// kernels read stay whole. Dies, saying what to change, when the GPU has too
// little free memory.
GpuModel *gpu_model_create(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute, bool zero);
void gpu_model_free(GpuModel *m);
// The kernels `asked` resolves to for a model of cfg in that precision
// (FLASH or PORTABLE); dies, saying why, when FLASH is asked and does not apply.
GpuAttention gpu_attention_kernels(const ModelConfig *cfg, GpuPrecision precision, GpuAttention asked);
// Makes the model use those kernels (a new model uses GPU_ATTENTION_AUTO).
void gpu_model_set_attention(GpuModel *m, GpuAttention asked);

// Parameters and Adam moments from full host buffers in the layout of
// param_tensors (m, v NULL: zeros); a ZeRO model keeps its pieces of the
// master weights and moments.
void gpu_model_set_state(GpuModel *m, const float *params, const float *adam_m, const float *adam_v);
// Host views of the full parameters and moments (valid until the next call);
// a ZeRO model gathers every rank's pieces (a collective: every rank calls it).
void gpu_model_get_state(GpuModel *m, const float **params, const float **adam_m, const float **adam_v);
// The parameters only (the moments untouched), and the gradients back (tests).
void gpu_model_set_params(GpuModel *m, const float *params);
void gpu_model_get_grads(const GpuModel *m, float *grads);

void gpu_model_zero_grads(GpuModel *m);
// As model_forward / model_backward.
double gpu_model_forward(GpuModel *m, const uint16_t *tokens, int batch);
void gpu_model_backward(GpuModel *m, const uint16_t *tokens, int batch, float loss_scale);
// The global gradient norm (fp64 accumulation).
double gpu_model_grad_norm(GpuModel *m);
// One AdamW step (optim.c's scalars, per tensor decay as on the CPU); a ZeRO
// model updates its pieces, then every rank's pieces of the weights the
// kernels read go to every rank.
void gpu_model_adamw(GpuModel *m, const OptimConfig *oc, int64_t step, float grad_scale);
// The gradient norm, its clip factor (optim.c's clip_factor) and the AdamW
// step queued together, the factor read by AdamW from device memory (no wait
// for the host in between); returns the norm, read after the step, for the
// log. Without ZeRO only (a ZeRO norm sums over ranks on the host). The
// caller stops on a non-finite norm as before; the step it took is not saved.
double gpu_model_clip_and_adamw(GpuModel *m, const OptimConfig *oc, int64_t step);
// As model_features, into a host buffer B x (L+1) x C.
void gpu_model_features(GpuModel *m, int batch, float *features);

// --- Incremental decoding (cuda/decode.cu): sampling and the compressor ------------------
// The GPU twin of model/decode.h: one position at a time for a batch of
// sequences, with each layer's keys and values cached on the device (in the
// storage type). gpu_model_decode_create allocates the cache for up to
// max_batch sequences (once; freed with the model); begin starts `batch`
// sequences at position 0; each step runs the next position, whose input
// is prev[b] (pixel pos-1; ignored at position 0), and returns that
// position's logits in a host buffer, batch x V fp32 (valid until the next
// step). The same launches for the same batch give the same bits on one GPU.
void gpu_model_decode_create(GpuModel *m, int max_batch);
void gpu_model_decode_begin(GpuModel *m, int batch);
const float *gpu_model_decode_step(GpuModel *m, const uint16_t *prev);

// Called during backward for each layer (L .. -1) as soon as its gradient
// kernels are queued (work queued after them by gpu_model_sum_start runs
// after them).
void gpu_model_set_layer_hook(GpuModel *m, void (*hook)(void *ctx, int layer), void *ctx);

// --- Several processes (cuda/collectives.cu) ------------------------------------------
// Makes this process use GPU local_rank (mod the GPUs it sees); call before
// anything else touches the GPU.
void gpu_use_device(int local_rank);
// The NCCL communicator of the job (rank 0 makes the id, MPI broadcasts it).
// The interpret mode sums over MPI instead, its device memory being host memory.
void gpu_collectives_init(int rank, int world);
void gpu_collectives_finalize(void);
// Starts summing layer `layer`'s gradients (layer_param_range) over all
// ranks, on a communication stream that first waits for the work queued so
// far: overlaps the backward pass.
void gpu_model_sum_start(GpuModel *m, int layer);
// Waits for every started sum; a failed or stuck collective (IGPT_NCCL_TIMEOUT
// seconds, default 600) ends the job with a message.
void gpu_model_sum_wait(GpuModel *m);
// ZeRO: sums the gradients over ranks, leaving each rank the sums on its
// pieces; returns the sum of squares of its pieces.
double gpu_model_reduce_scatter_grads(GpuModel *m);

// Milliseconds per call of the attention forward and backward kernels (bf16)
// on batch_heads heads of T x head_size, causal (after one warm-up call): the
// kernels `asked` resolves to for a bf16 model of that head size
// (gpu_attention_kernels), which it returns (FLASH or PORTABLE).
GpuAttention gpu_time_attention(GpuAttention asked, int batch_heads, int T, int head_size, int iterations,
                                double *forward_ms, double *backward_ms);

#ifdef __cplusplus
}
#endif

#endif
