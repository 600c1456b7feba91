// The CUDA backend's interface in a build without nvcc: no GPU is usable,
// and nothing else is ever called (backend_choose_device stops first).
#include "model/gpu_model.h"
#include "util/util.h"

int gpu_device_count(const char **why) {
    if (why) *why = "this ./igpt was built without the CUDA backend (nvcc was not found by make)";
    return 0;
}

#define UNAVAILABLE die("internal: the CUDA backend is not in this build")
const char *gpu_device_name(void) { return "none"; }
void gpu_model_memory(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute, bool zero,
                      size_t *state_bytes, size_t *activation_bytes) {
    (void)cfg, (void)max_batch, (void)precision, (void)recompute, (void)zero, (void)state_bytes, (void)activation_bytes;
    UNAVAILABLE;
}
void gpu_memory_info(size_t *free_bytes, size_t *total_bytes) { *free_bytes = *total_bytes = 0; }
GpuModel *gpu_model_create(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute, bool zero) {
    (void)cfg, (void)max_batch, (void)precision, (void)recompute, (void)zero;
    UNAVAILABLE;
}
void gpu_model_free(GpuModel *m) { (void)m; }
void gpu_model_set_params(GpuModel *m, const float *p) { (void)m, (void)p; UNAVAILABLE; }
void gpu_model_get_params(const GpuModel *m, float *p) { (void)m, (void)p; UNAVAILABLE; }
void gpu_model_set_adam(GpuModel *m, const float *a, const float *v) { (void)m, (void)a, (void)v; UNAVAILABLE; }
void gpu_model_get_adam(const GpuModel *m, float *a, float *v) { (void)m, (void)a, (void)v; UNAVAILABLE; }
void gpu_model_get_grads(const GpuModel *m, float *g) { (void)m, (void)g; UNAVAILABLE; }
void gpu_model_zero_grads(GpuModel *m) { (void)m; UNAVAILABLE; }
double gpu_model_forward(GpuModel *m, const uint16_t *t, int b) { (void)m, (void)t, (void)b; UNAVAILABLE; }
void gpu_model_backward(GpuModel *m, const uint16_t *t, int b, float s) { (void)m, (void)t, (void)b, (void)s; UNAVAILABLE; }
double gpu_model_grad_norm(GpuModel *m) { (void)m; UNAVAILABLE; }
void gpu_model_adamw(GpuModel *m, const OptimConfig *oc, int64_t step, float scale) {
    (void)m, (void)oc, (void)step, (void)scale;
    UNAVAILABLE;
}
void gpu_model_features(GpuModel *m, int batch, float *f) { (void)m, (void)batch, (void)f; UNAVAILABLE; }
void gpu_time_attention(int batch_heads, int T, int head_size, int iterations, double *forward_ms, double *backward_ms) {
    (void)batch_heads, (void)T, (void)head_size, (void)iterations, (void)forward_ms, (void)backward_ms;
    UNAVAILABLE;
}
void gpu_model_set_layer_hook(GpuModel *m, void (*hook)(void *ctx, int layer), void *ctx) {
    (void)m, (void)hook, (void)ctx;
    UNAVAILABLE;
}
void gpu_use_device(int local_rank) { (void)local_rank; }
void gpu_collectives_init(int rank, int world) { (void)rank, (void)world; UNAVAILABLE; }
void gpu_collectives_finalize(void) {}
void gpu_model_sum_start(GpuModel *m, size_t offset, size_t n) { (void)m, (void)offset, (void)n; UNAVAILABLE; }
void gpu_model_sum_wait(GpuModel *m) { (void)m; UNAVAILABLE; }
void gpu_model_zero_set_state(GpuModel *m, const float *p, const float *a, const float *v) {
    (void)m, (void)p, (void)a, (void)v;
    UNAVAILABLE;
}
void gpu_model_zero_get_pieces(const GpuModel *m, float *p, float *a, float *v) {
    (void)m, (void)p, (void)a, (void)v;
    UNAVAILABLE;
}
double gpu_model_zero_reduce_scatter(GpuModel *m) { (void)m; UNAVAILABLE; }
void gpu_model_zero_adamw(GpuModel *m, const OptimConfig *oc, int64_t step, float scale) {
    (void)m, (void)oc, (void)step, (void)scale;
    UNAVAILABLE;
}
