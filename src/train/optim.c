// The optimizer (optim.h). The schedule and AdamW's per-step scalars are
// computed here once and used by the CPU loop below and the GPU kernel alike,
// so both backends take the same step; sums run in double in a fixed order so
// the gradient norm does not depend on the thread count.
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>

#include "model/params.h"
#include "util/util.h"

void optim_config_defaults(OptimConfig *oc) {
    *oc = (OptimConfig){.lr = 3e-3,
                        .min_lr_frac = 0.0,
                        .warmup_steps = -1,
                        .total_steps = 0,
                        .beta1 = 0.9,
                        .beta2 = 0.95,
                        .eps = 1e-8,
                        .weight_decay = 0.0,
                        .grad_clip = 1.0};
}

double lr_at_step(const OptimConfig *oc, int64_t step) {
    const double lr_min = oc->lr * oc->min_lr_frac;
    if (step < oc->warmup_steps) return oc->lr * (double)(step + 1) / (double)oc->warmup_steps;
    int64_t span = oc->total_steps - oc->warmup_steps;
    double p = (double)(step - oc->warmup_steps) / (double)(span > 1 ? span : 1);
    if (p > 1.0) p = 1.0;
    return lr_min + 0.5 * (oc->lr - lr_min) * (1.0 + cos(M_PI * p));
}

#define NORM_CHUNK 65536

double global_norm(const float *x, size_t n, int threads) {
    size_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *partial = xcalloc(chunks, sizeof(double));
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t c = 0; c < chunks; c++) {
        size_t end = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
        double s = 0.0;
        for (size_t i = c * NORM_CHUNK; i < end; i++) s += (double)x[i] * x[i];
        partial[c] = s;
    }
    double total = 0.0;
    for (size_t c = 0; c < chunks; c++) total += partial[c];
    free(partial);
    return sqrt(total);
}

float clip_factor(const OptimConfig *oc, double grad_norm) {
    if (oc->grad_clip <= 0.0) return 1.0f;
    double c = oc->grad_clip / (grad_norm + 1e-6);
    return c < 1.0 ? (float)c : 1.0f;
}

AdamWScalars adamw_scalars(const OptimConfig *oc, int64_t step) {
    const double lr = lr_at_step(oc, step);
    const double t = (double)(step + 1);
    return (AdamWScalars){.beta1 = (float)oc->beta1,
                          .beta2 = (float)oc->beta2,
                          .eps = (float)oc->eps,
                          .step_size = (float)(lr / (1.0 - pow(oc->beta1, t))),
                          .inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(oc->beta2, t))),
                          .decay_factor = (float)(1.0 - lr * oc->weight_decay)};
}

void adamw_update_range(const OptimConfig *oc, const ModelConfig *cfg, int64_t step, float *params, const float *grads,
                        float *m, float *v, float grad_scale, size_t begin, size_t end, int threads) {
    const AdamWScalars s = adamw_scalars(oc, step);
    const float b1 = s.beta1, b2 = s.beta2;
    int n = param_tensors(cfg, NULL);
    TensorInfo *tensors = xcalloc((size_t)n, sizeof *tensors);
    param_tensors(cfg, tensors);
    for (int k = 0; k < n; k++) {
        const float decay = tensors[k].decay ? s.decay_factor : 1.0f;
        const size_t t0 = tensors[k].offset > begin ? tensors[k].offset : begin;
        const size_t t1 = tensors[k].offset + tensors[k].count < end ? tensors[k].offset + tensors[k].count : end;
        if (t0 >= t1) continue;
        float *mk = m + (t0 - begin), *vk = v + (t0 - begin);
#pragma omp parallel for schedule(static) num_threads(threads)
        for (size_t i = t0; i < t1; i++) {
            const size_t j = i - t0;
            float g = grads[i] * grad_scale;
            float mi = b1 * mk[j] + (1.0f - b1) * g;
            float vi = b2 * vk[j] + (1.0f - b2) * g * g;
            mk[j] = mi;
            vk[j] = vi;
            params[i] = params[i] * decay - s.step_size * mi / (sqrtf(vi) * s.inv_sqrt_bc2 + s.eps);
        }
    }
    free(tensors);
}

void adamw_update(const OptimConfig *oc, const ModelConfig *cfg, int64_t step, float *params, const float *grads,
                  float *m, float *v, float grad_scale, int threads) {
    adamw_update_range(oc, cfg, step, params, grads, m, v, grad_scale, 0, param_count(cfg), threads);
}
