// Timing of the attention kernels alone (./igpt bench --mode attention), with
// CUDA events on a GPU (wall-clock time in the interpret mode).
#include <chrono>
#include <vector>

#include "kernels.cuh"

extern "C" {
#include "model/gpu_model.h"
}

#ifdef IGPT_INTERPRET
struct Timer {
    std::chrono::steady_clock::time_point t0;
    void start() { t0 = std::chrono::steady_clock::now(); }
    double stop_ms() {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
};
#else
struct Timer {
    cudaEvent_t a, b;
    Timer() {
        CUDA_CHECK(cudaEventCreate(&a));
        CUDA_CHECK(cudaEventCreate(&b));
    }
    ~Timer() {
        cudaEventDestroy(a);
        cudaEventDestroy(b);
    }
    void start() { CUDA_CHECK(cudaEventRecord(a)); }
    double stop_ms() {
        float ms = 0.0f;
        CUDA_CHECK(cudaEventRecord(b));
        CUDA_CHECK(cudaEventSynchronize(b));
        CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        return ms;
    }
};
#endif

// The kernels a model runs (gpu_attention_kernels): tensor-core or portable.
static void attention_forward(GpuAttention kernels, bf16 *y, float *lse, const bf16 *qkv, int B, int T, int C, int NH) {
    if (kernels == GPU_ATTENTION_FLASH) gpu_flash_attention_forward(y, lse, qkv, B, T, C, NH, 0);
    else gpu_attention_forward(y, lse, qkv, B, T, C, NH, 0);
}

static void attention_backward(GpuAttention kernels, bf16 *dqkv, float *row_dot, const bf16 *dy, const bf16 *y,
                               const bf16 *qkv, const float *lse, int B, int T, int C, int NH) {
    if (kernels == GPU_ATTENTION_FLASH) gpu_flash_attention_backward(dqkv, row_dot, dy, y, qkv, lse, B, T, C, NH, 0);
    else gpu_attention_backward(dqkv, row_dot, dy, y, qkv, lse, B, T, C, NH, 0);
}

extern "C" GpuAttention gpu_time_attention(GpuAttention asked, int batch_heads, int T, int head_size, int iterations,
                                           double *forward_ms, double *backward_ms) {
    // One head per "batch" entry: B = batch_heads, NH = 1, C = head_size; the kernels a bf16 model of that
    // head size would run.
    const int B = batch_heads, C = head_size, NH = 1;
    ModelConfig cfg{};
    cfg.d_model = C;
    cfg.n_head = NH;
    const GpuAttention kernels = gpu_attention_kernels(&cfg, GPU_BF16, asked);
    const size_t n_qkv = (size_t)B * T * 3 * C, n_y = (size_t)B * T * C, n_lse = (size_t)B * NH * T;
    std::vector<bf16> host(n_qkv);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < n_qkv; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        host[i] = from_float<bf16>((float)((s >> 11) * (1.0 / 9007199254740992.0)) - 0.5f);
    }
    bf16 *qkv, *y, *dy, *dqkv;
    float *lse, *row_dot;
    CUDA_CHECK(cudaMalloc(&qkv, n_qkv * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&dqkv, n_qkv * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&y, n_y * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&dy, n_y * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&lse, n_lse * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&row_dot, n_lse * sizeof(float)));
    CUDA_CHECK(cudaMemcpy(qkv, host.data(), n_qkv * sizeof(bf16), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dy, host.data(), n_y * sizeof(bf16), cudaMemcpyHostToDevice));
    // Warm-up, then timed runs of each direction.
    attention_forward(kernels, y, lse, qkv, B, T, C, NH);
    attention_backward(kernels, dqkv, row_dot, dy, y, qkv, lse, B, T, C, NH);
    Timer timer;
    timer.start();
    for (int i = 0; i < iterations; i++) attention_forward(kernels, y, lse, qkv, B, T, C, NH);
    *forward_ms = timer.stop_ms() / iterations;
    timer.start();
    for (int i = 0; i < iterations; i++) attention_backward(kernels, dqkv, row_dot, dy, y, qkv, lse, B, T, C, NH);
    *backward_ms = timer.stop_ms() / iterations;
    cudaFree(qkv);
    cudaFree(dqkv);
    cudaFree(y);
    cudaFree(dy);
    cudaFree(lse);
    cudaFree(row_dot);
    return kernels;
}
