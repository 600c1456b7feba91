#include "parallel/data_parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/dist.h"
#include "util/util.h"

void dp_init(DataParallel *dp, Backend *model, bool zero) {
    memset(dp, 0, sizeof *dp);
    dp->model = model;
    dp->zero = zero;
    const Dist *d = dist_get();
    // Launched by mpirun/srun (even as a job of one): gradients go through the
    // collectives, NCCL on GPUs.
    dp->collectives = d->mpi;
    if (dp->collectives && model->device == DEVICE_CUDA) gpu_collectives_init(d->rank, d->world);
    const int L = model->cfg.n_layer;
    dp->ranges = L + 2;
    dp->begin = xcalloc((size_t)dp->ranges, sizeof(size_t));
    dp->end = xcalloc((size_t)dp->ranges, sizeof(size_t));
    dp->piece_begin = xcalloc((size_t)dp->ranges, sizeof(size_t));
    dp->piece_end = xcalloc((size_t)dp->ranges, sizeof(size_t));
    dp->piece_offset = xcalloc((size_t)dp->ranges, sizeof(size_t));
    const size_t owned =
        dist_zero_layout(&model->cfg, dp->begin, dp->end, dp->piece_begin, dp->piece_end, dp->piece_offset);
    if (zero && model->device == DEVICE_CPU) {  // (the GPU model keeps its own pieces)
        dp->m = xcalloc(owned ? owned : 1, sizeof(float));
        dp->v = xcalloc(owned ? owned : 1, sizeof(float));
    }
}

void dp_free(DataParallel *dp) {
    if (dp->collectives && dp->model->device == DEVICE_CUDA) gpu_collectives_finalize();
    free(dp->begin), free(dp->end), free(dp->piece_begin), free(dp->piece_end), free(dp->piece_offset);
    free(dp->m), free(dp->v), free(dp->full_m), free(dp->full_v), free(dp->full_params);
    memset(dp, 0, sizeof *dp);
}

void dp_set_state(DataParallel *dp, const float *params, const float *adam_m, const float *adam_v) {
    if (!dp->zero) {
        backend_set_state(dp->model, params, adam_m, adam_v);
        return;
    }
    if (dp->model->device == DEVICE_CUDA) {
        gpu_model_zero_set_state(dp->model->gpu, params, adam_m, adam_v);
        return;
    }
    backend_set_state(dp->model, params, NULL, NULL);
    for (int i = 0; i < dp->ranges; i++) {
        const size_t n = dp->piece_end[i] - dp->piece_begin[i];
        float *m = dp->m + dp->piece_offset[i], *v = dp->v + dp->piece_offset[i];
        if (adam_m) memcpy(m, adam_m + dp->piece_begin[i], n * sizeof(float));
        else memset(m, 0, n * sizeof(float));
        if (adam_v) memcpy(v, adam_v + dp->piece_begin[i], n * sizeof(float));
        else memset(v, 0, n * sizeof(float));
    }
}

void dp_get_state(DataParallel *dp, const float **params, const float **adam_m, const float **adam_v) {
    const size_t P = dp->model->num_params;
    if (dp->zero && dp->model->device == DEVICE_CUDA) {
        // Each rank's pieces of the master weights and moments, gathered on the host.
        if (!dp->full_m)
            dp->full_m = xmalloc(P * sizeof(float)), dp->full_v = xmalloc(P * sizeof(float)),
            dp->full_params = xmalloc(P * sizeof(float));
        gpu_model_zero_get_pieces(dp->model->gpu, dp->full_params, dp->full_m, dp->full_v);
        for (int i = 0; i < dp->ranges; i++) {
            dist_all_gather(dp->full_params + dp->begin[i], dp->end[i] - dp->begin[i]);
            dist_all_gather(dp->full_m + dp->begin[i], dp->end[i] - dp->begin[i]);
            dist_all_gather(dp->full_v + dp->begin[i], dp->end[i] - dp->begin[i]);
        }
        *params = dp->full_params, *adam_m = dp->full_m, *adam_v = dp->full_v;
        return;
    }
    backend_get_state(dp->model, params, adam_m, adam_v);
    if (!dp->zero) return;
    if (!dp->full_m) dp->full_m = xmalloc(P * sizeof(float)), dp->full_v = xmalloc(P * sizeof(float));
    for (int i = 0; i < dp->ranges; i++) {
        const size_t n = dp->piece_end[i] - dp->piece_begin[i];
        memcpy(dp->full_m + dp->piece_begin[i], dp->m + dp->piece_offset[i], n * sizeof(float));
        memcpy(dp->full_v + dp->piece_begin[i], dp->v + dp->piece_offset[i], n * sizeof(float));
        dist_all_gather(dp->full_m + dp->begin[i], dp->end[i] - dp->begin[i]);
        dist_all_gather(dp->full_v + dp->begin[i], dp->end[i] - dp->begin[i]);
    }
    *adam_m = dp->full_m, *adam_v = dp->full_v;
}

// The backward pass's hook: layer `layer`'s gradients are final.
static void start_layer_sum(void *ctx, int layer) {
    DataParallel *dp = ctx;
    const int i = layer + 1;
    backend_sum_start(dp->model, dp->begin[i], dp->end[i] - dp->begin[i]);
}

void dp_backward(DataParallel *dp, const uint16_t *tokens, int batch, float loss_scale, bool last) {
    // Without ZeRO, the last micro-batch's layers are summed while the pass goes on.
    dp->overlap = last && !dp->zero && dp->collectives;
    backend_set_layer_hook(dp->model, dp->overlap ? start_layer_sum : NULL, dp);
    backend_backward(dp->model, tokens, batch, loss_scale);
    backend_set_layer_hook(dp->model, NULL, NULL);
}

double dp_finish_gradients(DataParallel *dp) {
    if (!dp->zero) {
        if (dp->collectives) backend_sum_wait(dp->model);
        return backend_grad_norm(dp->model);
    }
    // ZeRO: each rank keeps the summed gradients of its pieces only.
    if (dp->model->device == DEVICE_CUDA) return sqrt(dist_sum_double(gpu_model_zero_reduce_scatter(dp->model->gpu)));
    float *grads = dp->model->cpu.grads;
    double squares = 0.0;
    for (int i = 0; i < dp->ranges; i++) {
        dist_reduce_scatter(grads + dp->begin[i], dp->end[i] - dp->begin[i]);
        for (size_t k = dp->piece_begin[i]; k < dp->piece_end[i]; k++) squares += (double)grads[k] * grads[k];
    }
    return sqrt(dist_sum_double(squares));
}

void dp_adamw(DataParallel *dp, const OptimConfig *oc, int64_t step, float grad_scale) {
    if (!dp->zero) {
        backend_adamw(dp->model, oc, step, grad_scale);
        return;
    }
    if (dp->model->device == DEVICE_CUDA) {
        gpu_model_zero_adamw(dp->model->gpu, oc, step, grad_scale);
        return;
    }
    // Each rank updates its pieces, then every rank gets every piece.
    float *params = dp->model->cpu.params, *grads = dp->model->cpu.grads;
    for (int i = 0; i < dp->ranges; i++) {
        adamw_update_range(oc, &dp->model->cfg, step, params, grads, dp->m + dp->piece_offset[i],
                           dp->v + dp->piece_offset[i], grad_scale, dp->piece_begin[i], dp->piece_end[i],
                           dp->model->threads);
        dist_all_gather(params + dp->begin[i], dp->end[i] - dp->begin[i]);
    }
}
