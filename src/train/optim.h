// AdamW with warm-up + cosine schedule and global-norm clipping
// (docs/model.md, "Optimizer and schedule"), shared by every backend.
#ifndef IGPT_OPTIM_H
#define IGPT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"

typedef struct {
    double lr;           // peak learning rate
    double min_lr_frac;  // final learning rate as a fraction of lr
    int64_t warmup_steps;
    int64_t total_steps;
    double beta1, beta2, eps;
    double weight_decay;  // matrices only
    double grad_clip;     // global-norm clip; 0 disables
} OptimConfig;

void optim_config_defaults(OptimConfig *oc);
// Learning rate of step s (0-based).
double lr_at_step(const OptimConfig *oc, int64_t step);
// sqrt of the sum of squares, accumulated in double in a fixed order.
double global_norm(const float *x, size_t n, int threads);
// Multiplier applied to the gradients before the update (1 when no clipping).
float clip_factor(const OptimConfig *oc, double grad_norm);
// The scalars of step s's AdamW update, for every backend: each element does
// m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
// p = p * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps), with
// decay = decay_factor on tensors that decay (TensorInfo.decay), else 1.
typedef struct {
    float beta1, beta2, eps, step_size, inv_sqrt_bc2, decay_factor;
} AdamWScalars;
AdamWScalars adamw_scalars(const OptimConfig *oc, int64_t step);
// One AdamW update of step s: params, first and second moments updated in
// place; gradients are multiplied by grad_scale first.
void adamw_update(const OptimConfig *oc, const ModelConfig *cfg, int64_t step, float *params, const float *grads,
                  float *m, float *v, float grad_scale, int threads);

// The same update on the elements [begin, end) of the parameter buffer only,
// with m and v holding the moments of just those elements (m[0] is element
// begin's): a ZeRO-1 rank's piece of the state.
void adamw_update_range(const OptimConfig *oc, const ModelConfig *cfg, int64_t step, float *params, const float *grads,
                        float *m, float *v, float grad_scale, size_t begin, size_t end, int threads);

#endif
