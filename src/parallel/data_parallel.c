// Data parallelism (data_parallel.h) in two moves. During the backward pass
// of a step's last micro-batch, each layer's gradients start their sum
// across ranks as soon as they are final, so communication overlaps the
// layers still being computed; before the optimizer, the step waits for them
// (or, with ZeRO, reduce-scatters so each rank keeps the sums of its pieces).
#include "parallel/data_parallel.h"

#include <math.h>
#include <string.h>

#include "parallel/dist.h"
#include "train/optim.h"
#include "util/util.h"

void dp_init(DataParallel *dp, Backend *model) {
    memset(dp, 0, sizeof *dp);
    dp->model = model;
    // Launched by mpirun/srun (even as a job of one): gradients go through the
    // collectives, NCCL on GPUs.
    dp->collectives = dist_get()->mpi;
    if (dp->collectives) backend_collectives_init(model);
}

void dp_free(DataParallel *dp) {
    if (dp->collectives) backend_collectives_finalize(dp->model);
    memset(dp, 0, sizeof *dp);
}

// The backward pass's hook: layer `layer`'s gradients are final.
static void start_layer_sum(void *ctx, int layer) {
    DataParallel *dp = ctx;
    backend_sum_start(dp->model, layer);
}

void dp_backward(DataParallel *dp, const uint16_t *tokens, int batch, float loss_scale, bool last) {
    // Without ZeRO, the last micro-batch's layers are summed while the pass goes on.
    const bool overlap = last && !dp->model->zero && dp->collectives;
    backend_set_layer_hook(dp->model, overlap ? start_layer_sum : NULL, dp);
    backend_backward(dp->model, tokens, batch, loss_scale);
    backend_set_layer_hook(dp->model, NULL, NULL);
}

double dp_clip_and_step(DataParallel *dp, const OptimConfig *oc, int64_t step) {
    // ZeRO: each rank keeps the summed gradients of its pieces only, and the norm is their sum over ranks.
    if (dp->model->zero) {
        const double norm = sqrt(dist_sum_double(backend_reduce_scatter_grads(dp->model)));
        backend_adamw(dp->model, oc, step, clip_factor(oc, norm));
        return norm;
    }
    if (dp->collectives) backend_sum_wait(dp->model);
    return backend_clip_and_adamw(dp->model, oc, step);
}
