// The CPU side of the Backend (model/backend.h): the fp32 reference model
// (model.c) with its Adam moments, and what data-parallel training needs of
// it: per-layer gradient sums over the job's ranks and, with ZeRO-1, only
// this rank's pieces of the moments (parallel/zero.h). The twin of the GPU
// model (model/gpu_model.h), function for function.
#ifndef IGPT_CPU_BACKEND_H
#define IGPT_CPU_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/model.h"
#include "parallel/zero.h"
#include "train/optim.h"

typedef struct {
    Model model;             // parameters, gradients and activations
    bool zero;               // ZeRO-1: the moments of this rank's pieces only
    ZeroLayout layout;       // ZeRO: this rank's pieces
    float *adam_m, *adam_v;  // whole (num_params each), or with ZeRO the pieces packed (layout.owned each)
    float *full_m, *full_v;  // ZeRO: the moments gathered for a checkpoint (made on the first one)
} CpuBackend;

void cpu_backend_create(CpuBackend *c, const ModelConfig *cfg, int max_batch, int threads, bool zero);
void cpu_backend_free(CpuBackend *c);
// Host memory a model of cfg will need, split as parameters + gradients +
// Adam state, and activations + scratch for batches of max_batch (bf16: with
// bf16 products, model_use_bf16_products).
void cpu_backend_memory(const ModelConfig *cfg, int max_batch, int threads, bool zero, bool bf16, size_t *state_bytes,
                        size_t *activation_bytes);

// Parameters and moments from full buffers (m, v NULL: zeros); ZeRO keeps its pieces of the moments.
void cpu_backend_set_state(CpuBackend *c, const float *params, const float *adam_m, const float *adam_v);
// Views of the full parameters and moments; ZeRO gathers every rank's pieces
// of the moments first (a collective: every rank calls it).
void cpu_backend_get_state(CpuBackend *c, const float **params, const float **adam_m, const float **adam_v);
double cpu_backend_grad_norm(const CpuBackend *c);
// AdamW; ZeRO: on this rank's pieces, then every rank's pieces of the weights to every rank.
void cpu_backend_adamw(CpuBackend *c, const OptimConfig *oc, int64_t step, float grad_scale);

// Starts summing layer `layer`'s gradients over the job's ranks (MPI), to
// overlap the rest of the backward pass; cpu_backend_sum_wait ends every sum.
void cpu_backend_sum_start(CpuBackend *c, int layer);
void cpu_backend_sum_wait(CpuBackend *c);
// ZeRO: sums the gradients over ranks, leaving each rank the sums on its
// pieces; returns the sum of squares of its pieces.
double cpu_backend_reduce_scatter_grads(CpuBackend *c);

#endif
