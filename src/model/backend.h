// One interface over the two implementations of the model, so that the
// training loop, evaluation and probe features are written once: the fp32
// CPU reference (src/model.c) and the CUDA backend (include/gpu_model.h).
// Both take the same configuration, parameter layout and host buffers in
// the checkpoint's layout; only the math and where it runs differ.
#ifndef IGPT_BACKEND_H
#define IGPT_BACKEND_H

#include <stdbool.h>

#include "model/gpu_model.h"
#include "model/model.h"
#include "train/optim.h"

typedef enum { DEVICE_CPU = 0, DEVICE_CUDA = 1 } DeviceKind;

// How and where a model runs.
typedef struct {
    DeviceKind device;
    GpuPrecision precision;  // CUDA only
    bool recompute;          // CUDA only: activation recomputation (gpu_model_create)
    bool zero;               // ZeRO-1: the optimizer state is split across ranks and kept by
                             // data_parallel.c (CPU) or in pieces by the GPU model
    int threads;             // CPU worker threads
} BackendOptions;

typedef struct {
    DeviceKind device;
    ModelConfig cfg;
    size_t num_params;
    int threads;
    Model cpu;            // DEVICE_CPU
    float *adam;          // DEVICE_CPU: first moments, then second moments (2 x num_params)
    GpuModel *gpu;        // DEVICE_CUDA
    float *host_state;    // DEVICE_CUDA: params, m, v staged for checkpoints (3 x num_params; made when first needed)
} Backend;

// "auto" (CUDA when a GPU is usable, else the CPU), "cpu" or "cuda"; dies
// with the reason when "cuda" is asked for and unavailable.
DeviceKind backend_choose_device(const char *name);
const char *device_name(DeviceKind device);
// Parses "bf16" / "fp32"; false if neither.
bool parse_precision(const char *name, GpuPrecision *out);

void backend_create(Backend *b, const BackendOptions *opt, const ModelConfig *cfg, int max_batch);
void backend_free(Backend *b);
// One line about the device, precision and the memory a model of cfg will
// need for batches of max_batch images, printed before it is allocated.
void backend_plan(const BackendOptions *opt, const ModelConfig *cfg, int max_batch, char *out, size_t cap);

// Parameters and Adam moments from host buffers (m, v NULL: zeros).
void backend_set_state(Backend *b, const float *params, const float *adam_m, const float *adam_v);
// Host views of the parameters and Adam moments (valid until the next call
// that changes them); on a GPU they are copied back first.
void backend_get_state(Backend *b, const float **params, const float **adam_m, const float **adam_v);
// Starts summing gradients [offset, offset + n) over the job's ranks (MPI on
// the CPU, NCCL on GPUs), overlapping what runs next; backend_sum_wait ends them.
void backend_sum_start(Backend *b, size_t offset, size_t n);
void backend_sum_wait(Backend *b);
// A function the backward pass calls as soon as each layer's gradients are
// final (Model.on_layer_grads); NULL to stop.
void backend_set_layer_hook(Backend *b, void (*hook)(void *ctx, int layer), void *ctx);

void backend_zero_grads(Backend *b);
double backend_forward(Backend *b, const uint16_t *tokens, int batch);
void backend_backward(Backend *b, const uint16_t *tokens, int batch, float loss_scale);
double backend_grad_norm(Backend *b);
void backend_adamw(Backend *b, const OptimConfig *oc, int64_t step, float grad_scale);
// Probe features of the last forward pass (B x (L+1) x C), as model_features.
void backend_features(Backend *b, int batch, float *features);

#endif
