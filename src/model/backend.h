// One interface over the two implementations of the model, so that the
// training loop, evaluation, data parallelism and probe features are written
// once: the fp32 CPU reference (model/cpu_backend.h over model/model.h) and
// the CUDA backend (model/gpu_model.h). Both take the same configuration,
// parameter layout and host buffers in the checkpoint's layout; only the math
// and where it runs differ.
//
// Each function below is one line that calls the CPU or the GPU function of
// the same name: two implementations do not need a table of function
// pointers, and the direct calls let a reader (and grep) go straight from
// backend_forward to model_forward and gpu_model_forward.
#ifndef IGPT_BACKEND_H
#define IGPT_BACKEND_H

#include <stdbool.h>

#include "model/config.h"
#include "model/cpu_backend.h"
#include "model/decode.h"
#include "model/gpu_model.h"
#include "train/optim.h"

typedef enum { DEVICE_CPU = 0, DEVICE_CUDA = 1 } DeviceKind;

// How and where a model runs.
typedef struct {
    DeviceKind device;
    GpuPrecision precision;  // bf16 or fp32; CPU: bf16 = the matrix products' operands (model_use_bf16_products)
    GpuAttention attention;  // CUDA only: tensor-core or portable attention kernels
    bool recompute;          // CUDA only: activation recomputation (gpu_model_create)
    bool zero;               // ZeRO-1: this rank keeps only its pieces of the optimizer state
                             // (parallel/zero.h; CPU: the Adam moments; GPU: also the fp32 master weights)
    int threads;             // CPU worker threads
} BackendOptions;

typedef struct {
    DeviceKind device;
    ModelConfig cfg;
    size_t num_params;
    bool zero;  // BackendOptions.zero
    // backend_clip_and_adamw on the device: CUDA without ZeRO, unless the
    // environment has IGPT_CLIP_ON_HOST=1 (tests compare the two ways).
    bool clip_on_device;
    CpuBackend cpu;       // DEVICE_CPU
    DecodeState *decode;  // DEVICE_CPU: backend_decode_create's cache
    GpuModel *gpu;        // DEVICE_CUDA
} Backend;

// "auto" (CUDA when a GPU is usable, else the CPU), "cpu" or "cuda"; dies
// with the reason when "cuda" is asked for and unavailable.
DeviceKind backend_choose_device(const char *name);
const char *device_name(DeviceKind device);
// Parses "bf16" / "fp32", or "auto": bf16 on a GPU, fp32 (the reference) on
// the CPU; false if none.
bool parse_precision(const char *name, DeviceKind device, GpuPrecision *out);
// "bf16" or "fp32", as parse_precision reads it.
const char *precision_name(GpuPrecision precision);
// Parses "auto" / "flash" / "portable"; false if none; and back.
bool parse_attention(const char *name, GpuAttention *out);
const char *attention_name(GpuAttention attention);

void backend_create(Backend *b, const BackendOptions *opt, const ModelConfig *cfg, int max_batch);
void backend_free(Backend *b);
// One line about the device, precision and the memory a model of cfg will
// need for batches of max_batch images, printed before it is allocated.
void backend_plan(const BackendOptions *opt, const ModelConfig *cfg, int max_batch, char *out, size_t cap);

// Parameters and Adam moments from the checkpoint's full host buffers (m, v
// NULL: zeros); with ZeRO this rank keeps its pieces of them.
void backend_set_state(Backend *b, const float *params, const float *adam_m, const float *adam_v);
// Host views of the full parameters and Adam moments for a checkpoint (valid
// until the next call that changes them): copied back from a GPU; with ZeRO
// every rank's pieces are gathered, so every rank must call it.
void backend_get_state(Backend *b, const float **params, const float **adam_m, const float **adam_v);

void backend_zero_grads(Backend *b);
double backend_forward(Backend *b, const uint16_t *tokens, int batch);
void backend_backward(Backend *b, const uint16_t *tokens, int batch, float loss_scale);
double backend_grad_norm(Backend *b);
// One AdamW step; with ZeRO, on this rank's pieces, then every rank's pieces
// of the weights to every rank (an all-gather).
void backend_adamw(Backend *b, const OptimConfig *oc, int64_t step, float grad_scale);
// The optimizer step of a model without ZeRO: clips the gradients to their
// global norm (optim.c's clip_factor), takes the AdamW step and returns the
// norm for the log. On a GPU the norm, factor and step are queued together
// with no wait for the host in between (gpu_model_clip_and_adamw: the same
// bits as through the host). A non-finite norm: the caller stops without
// saving the step. (ZeRO sums the norm over ranks: dp_clip_and_step.)
double backend_clip_and_adamw(Backend *b, const OptimConfig *oc, int64_t step);
// Probe features of the last forward pass (B x (L+1) x C), as model_features.
void backend_features(Backend *b, int batch, float *features);

// --- Incremental decoding: sampling and the compressor -----------------------------
// A key/value cache for up to max_batch sequences (model/decode.h on the CPU,
// cuda/decode.cu on a GPU), made once; backend_free frees it.
void backend_decode_create(Backend *b, int max_batch);
// Starts `batch` sequences (1..max_batch) at position 0.
void backend_decode_begin(Backend *b, int batch);
// Runs the next position of every sequence, whose previous pixel is prev[b]
// (ignored at position 0); returns that position's logits, batch x V in host
// memory, valid until the next step. On the CPU the bits depend only on the
// parameters and each sequence's own pixels (model/decode.h); on a GPU, on
// those and the batch (the same launches give the same bits).
const float *backend_decode_step(Backend *b, const uint16_t *prev);

// --- Several processes (parallel/data_parallel.c) -----------------------------------------
// Joins the job's gradient collectives: the NCCL communicator on GPUs (every
// rank calls it); nothing on the CPU, whose collectives are MPI's (parallel/dist.h).
void backend_collectives_init(Backend *b);
void backend_collectives_finalize(Backend *b);
// A function the backward pass calls as soon as each layer's gradients are
// final (layer L, L-1, .., 0, then -1 = the embeddings); NULL to stop.
void backend_set_layer_hook(Backend *b, void (*hook)(void *ctx, int layer), void *ctx);
// Starts summing layer `layer`'s gradients (layer_param_range) over the job's
// ranks (MPI on the CPU, NCCL on GPUs), overlapping what runs next;
// backend_sum_wait waits for every sum started.
void backend_sum_start(Backend *b, int layer);
void backend_sum_wait(Backend *b);
// ZeRO: sums the gradients over ranks and leaves each rank the sums of its
// pieces; returns the sum of squares of those pieces.
double backend_reduce_scatter_grads(Backend *b);

#endif
