// The CPU Backend (cpu_backend.h). Gradients are summed across ranks with
// MPI in place, per layer, started from inside the backward pass; with ZeRO
// each rank keeps the moments of its pieces only and all-gathers the weights
// after its AdamW step, so every rank ends the step with the same model.
#include "model/cpu_backend.h"

#include <stdlib.h>
#include <string.h>

#include "model/params.h"
#include "parallel/dist.h"
#include "util/util.h"

void cpu_backend_create(CpuBackend *c, const ModelConfig *cfg, int max_batch, int threads, bool zero) {
    memset(c, 0, sizeof *c);
    model_create(&c->model, cfg, max_batch, threads);
    c->zero = zero;
    size_t moments = c->model.num_params;
    if (zero) {
        c->layout = zero_layout(cfg, dist_get()->rank, dist_get()->world);
        moments = c->layout.owned ? c->layout.owned : 1;
    }
    c->adam_m = xcalloc(moments, sizeof(float));
    c->adam_v = xcalloc(moments, sizeof(float));
}

void cpu_backend_free(CpuBackend *c) {
    model_free(&c->model);
    zero_layout_free(&c->layout);
    free(c->adam_m);
    free(c->adam_v);
    free(c->full_m);
    free(c->full_v);
    memset(c, 0, sizeof *c);
}

void cpu_backend_memory(const ModelConfig *cfg, int max_batch, int threads, bool zero, bool bf16, size_t *state_bytes,
                        size_t *activation_bytes) {
    const size_t P = param_count(cfg);
    const size_t moments = zero ? zero_owned(cfg, dist_get()->rank, dist_get()->world) : P;
    *state_bytes = (P * 2 + moments * 2) * sizeof(float);
    *activation_bytes = model_activation_bytes(cfg, max_batch, threads, bf16);
    if (bf16) *activation_bytes += model_bf16_bytes(cfg, max_batch);
}

// Full moments (NULL: zeros) into this rank's packed pieces, or back.
static void pack_pieces(const ZeroLayout *z, float *packed, const float *full) {
    for (int i = 0; i < z->num_ranges; i++) {
        const ZeroRange *r = &z->ranges[i];
        const size_t n = r->piece_end - r->piece_begin;
        if (full) memcpy(packed + r->piece_offset, full + r->piece_begin, n * sizeof(float));
        else memset(packed + r->piece_offset, 0, n * sizeof(float));
    }
}

// Every rank's pieces into one full buffer on every rank.
static void gather_pieces(const ZeroLayout *z, float *full, const float *packed) {
    for (int i = 0; i < z->num_ranges; i++) {
        const ZeroRange *r = &z->ranges[i];
        memcpy(full + r->piece_begin, packed + r->piece_offset, (r->piece_end - r->piece_begin) * sizeof(float));
        dist_all_gather(full + r->begin, r->end - r->begin);
    }
}

void cpu_backend_set_state(CpuBackend *c, const float *params, const float *adam_m, const float *adam_v) {
    const size_t n = c->model.num_params;
    memcpy(c->model.params, params, n * sizeof(float));
    if (c->zero) {
        pack_pieces(&c->layout, c->adam_m, adam_m);
        pack_pieces(&c->layout, c->adam_v, adam_v);
        return;
    }
    if (adam_m) memcpy(c->adam_m, adam_m, n * sizeof(float));
    else memset(c->adam_m, 0, n * sizeof(float));
    if (adam_v) memcpy(c->adam_v, adam_v, n * sizeof(float));
    else memset(c->adam_v, 0, n * sizeof(float));
}

void cpu_backend_get_state(CpuBackend *c, const float **params, const float **adam_m, const float **adam_v) {
    *params = c->model.params;  // whole on every rank, ZeRO or not
    if (!c->zero) {
        *adam_m = c->adam_m;
        *adam_v = c->adam_v;
        return;
    }
    if (!c->full_m) {
        c->full_m = xmalloc(c->model.num_params * sizeof(float));
        c->full_v = xmalloc(c->model.num_params * sizeof(float));
    }
    gather_pieces(&c->layout, c->full_m, c->adam_m);
    gather_pieces(&c->layout, c->full_v, c->adam_v);
    *adam_m = c->full_m;
    *adam_v = c->full_v;
}

double cpu_backend_grad_norm(const CpuBackend *c) {
    return global_norm(c->model.grads, c->model.num_params, c->model.threads);
}

void cpu_backend_adamw(CpuBackend *c, const OptimConfig *oc, int64_t step, float grad_scale) {
    Model *m = &c->model;
    if (!c->zero) {
        adamw_update(oc, &m->cfg, step, m->params, m->grads, c->adam_m, c->adam_v, grad_scale, m->threads);
        return;
    }
    // Each rank updates its pieces, then every rank gets every piece.
    for (int i = 0; i < c->layout.num_ranges; i++) {
        const ZeroRange *r = &c->layout.ranges[i];
        adamw_update_range(oc, &m->cfg, step, m->params, m->grads, c->adam_m + r->piece_offset,
                           c->adam_v + r->piece_offset, grad_scale, r->piece_begin, r->piece_end, m->threads);
        dist_all_gather(m->params + r->begin, r->end - r->begin);
    }
}

void cpu_backend_sum_start(CpuBackend *c, int layer) {
    size_t begin, end;
    layer_param_range(&c->model.cfg, layer, &begin, &end);
    dist_sum_floats_start(c->model.grads + begin, end - begin);
}

void cpu_backend_sum_wait(CpuBackend *c) {
    (void)c;
    dist_wait_all();
}

double cpu_backend_reduce_scatter_grads(CpuBackend *c) {
    const float *grads = c->model.grads;
    double squares = 0.0;
    for (int i = 0; i < c->layout.num_ranges; i++) {
        const ZeroRange *r = &c->layout.ranges[i];
        dist_reduce_scatter(c->model.grads + r->begin, r->end - r->begin);
        for (size_t k = r->piece_begin; k < r->piece_end; k++) squares += (double)grads[k] * grads[k];
    }
    return squares;
}
