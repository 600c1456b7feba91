// Data parallelism for the training loop (docs/multi-gpu.md): every rank
// holds the whole model, computes gradients on its share of each global
// batch, and the gradients are summed across ranks; optionally (ZeRO-1) the
// optimizer state is split so that each rank owns and updates 1/world of
// every layer (parallel/zero.h). Written once over the Backend's primitives
// (model/backend.h), for the CPU and GPUs alike. With one process this is
// the plain backend, step for step.
#ifndef IGPT_DATA_PARALLEL_H
#define IGPT_DATA_PARALLEL_H

#include <stdbool.h>

#include "model/backend.h"
#include "train/optim.h"

typedef struct {
    Backend *model;
    bool zero;         // ZeRO-1: gradients reduce-scattered, each rank updates its pieces
    bool collectives;  // launched by mpirun/srun: gradients summed over ranks (MPI / NCCL)
    bool overlap;      // the backward pass in flight starts the gradient sums per layer
} DataParallel;

// zero must be the model's BackendOptions.zero.
void dp_init(DataParallel *dp, Backend *model, bool zero);
void dp_free(DataParallel *dp);
// Parameters and Adam moments from the checkpoint's full buffers (m, v NULL: zeros).
void dp_set_state(DataParallel *dp, const float *params, const float *adam_m, const float *adam_v);
// Full buffers for a checkpoint (every rank must call it: with ZeRO the
// pieces are gathered).
void dp_get_state(DataParallel *dp, const float **params, const float **adam_m, const float **adam_v);
// backward for one micro-batch; `last` marks the step's last one, whose
// layers start their all-reduce as soon as they are done.
void dp_backward(DataParallel *dp, const uint16_t *tokens, int batch, float loss_scale, bool last);
// Finishes summing the gradients over ranks; returns their global norm.
double dp_finish_gradients(DataParallel *dp);
void dp_adamw(DataParallel *dp, const OptimConfig *oc, int64_t step, float grad_scale);

#endif
