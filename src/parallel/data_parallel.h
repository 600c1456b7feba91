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
#include <stdint.h>

#include "model/backend.h"
#include "train/optim.h"

// The state and the optimizer step need nothing of their own here: with
// ZeRO, backend_set_state keeps this rank's pieces, backend_get_state gathers
// them for a checkpoint (every rank must call it), and backend_adamw updates
// the pieces and all-gathers the weights.
typedef struct {
    Backend *model;    // its BackendOptions.zero says whether the optimizer state is split (ZeRO-1)
    bool collectives;  // launched by mpirun/srun: gradients summed over ranks (MPI / NCCL)
} DataParallel;

void dp_init(DataParallel *dp, Backend *model);
void dp_free(DataParallel *dp);
// backward for one micro-batch; `last` marks the step's last one, whose
// layers start their all-reduce as soon as they are done (without ZeRO).
void dp_backward(DataParallel *dp, const uint16_t *tokens, int batch, float loss_scale, bool last);
// The optimizer step: finishes summing the gradients over ranks (with ZeRO:
// each rank keeps the sums of its pieces), clips them to their global norm
// and takes the AdamW step (backend_clip_and_adamw); returns the norm. A
// non-finite norm: the caller stops without saving the step.
double dp_clip_and_step(DataParallel *dp, const OptimConfig *oc, int64_t step);

#endif
