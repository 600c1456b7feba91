// The CUDA backend's interface in a build without nvcc: no GPU is usable,
// and nothing else is ever called (backend_choose_device stops first).
#include "model/gpu_model.h"
#include "probe/solver.h"
#include "util/util.h"

// These stand-ins never look at their parameters.
#pragma GCC diagnostic ignored "-Wunused-parameter"

int gpu_device_count(const char **why) {
    if (why) *why = "this ./igpt was built without the CUDA backend (nvcc was not found by make)";
    return 0;
}

#define UNAVAILABLE die("internal: the CUDA backend is not in this build")
const char *gpu_device_name(void) { return "none"; }
void gpu_model_memory(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute, bool zero,
                      size_t *state_bytes, size_t *activation_bytes) {
    UNAVAILABLE;
}
void gpu_memory_info(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = 0;
    *total_bytes = 0;
}
GpuModel *gpu_model_create(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute, bool zero) {
    UNAVAILABLE;
}
void gpu_model_free(GpuModel *m) {}
GpuAttention gpu_attention_kernels(const ModelConfig *cfg, GpuPrecision precision, GpuAttention asked) { UNAVAILABLE; }
void gpu_model_set_attention(GpuModel *m, GpuAttention asked) { UNAVAILABLE; }
void gpu_model_set_state(GpuModel *m, const float *params, const float *adam_m, const float *adam_v) { UNAVAILABLE; }
void gpu_model_get_state(GpuModel *m, const float **params, const float **adam_m, const float **adam_v) { UNAVAILABLE; }
void gpu_model_set_params(GpuModel *m, const float *params) { UNAVAILABLE; }
void gpu_model_get_grads(const GpuModel *m, float *grads) { UNAVAILABLE; }
void gpu_model_zero_grads(GpuModel *m) { UNAVAILABLE; }
double gpu_model_forward(GpuModel *m, const uint16_t *tokens, int batch) { UNAVAILABLE; }
void gpu_model_backward(GpuModel *m, const uint16_t *tokens, int batch, float loss_scale) { UNAVAILABLE; }
double gpu_model_grad_norm(GpuModel *m) { UNAVAILABLE; }
void gpu_model_adamw(GpuModel *m, const OptimConfig *oc, int64_t step, float grad_scale) { UNAVAILABLE; }
double gpu_model_clip_and_adamw(GpuModel *m, const OptimConfig *oc, int64_t step) { UNAVAILABLE; }
void gpu_model_features(GpuModel *m, int batch, float *features) { UNAVAILABLE; }
void gpu_model_decode_create(GpuModel *m, int max_batch) { UNAVAILABLE; }
void gpu_model_decode_begin(GpuModel *m, int batch) { UNAVAILABLE; }
const float *gpu_model_decode_step(GpuModel *m, const uint16_t *prev) { UNAVAILABLE; }
void gpu_model_set_layer_hook(GpuModel *m, void (*hook)(void *ctx, int layer), void *ctx) { UNAVAILABLE; }
void gpu_use_device(int local_rank) {}
void gpu_collectives_init(int rank, int world) { UNAVAILABLE; }
void gpu_collectives_finalize(void) {}
void gpu_model_sum_start(GpuModel *m, int layer) { UNAVAILABLE; }
void gpu_model_sum_wait(GpuModel *m) { UNAVAILABLE; }
double gpu_model_reduce_scatter_grads(GpuModel *m) { UNAVAILABLE; }
GpuAttention gpu_time_attention(GpuAttention asked, int batch_heads, int T, int head_size, int iterations,
                                double *forward_ms, double *backward_ms) {
    UNAVAILABLE;
}

// The probe solver's GPU objective (cuda/probe_solver.cu): none here.
ProbeEvaluator *probe_gpu_evaluator_create(const ProbeBatchShape *shape, const double *X, const char **why) {
    (void)shape, (void)X;
    *why = "this igpt was built without CUDA";
    return NULL;
}
