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

extern "C" void gpu_time_attention(int batch_heads, int T, int head_size, int iterations, double *forward_ms,
                                   double *backward_ms) {
    // One head per "batch" entry: B = batch_heads, NH = 1, C = head_size.
    const int B = batch_heads, C = head_size, NH = 1;
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
    gpu_attention_forward(y, lse, qkv, B, T, C, NH, 0);
    gpu_attention_backward(dqkv, row_dot, dy, y, qkv, lse, B, T, C, NH, 0);
    Timer timer;
    timer.start();
    for (int i = 0; i < iterations; i++) gpu_attention_forward(y, lse, qkv, B, T, C, NH, 0);
    *forward_ms = timer.stop_ms() / iterations;
    timer.start();
    for (int i = 0; i < iterations; i++) gpu_attention_backward(dqkv, row_dot, dy, y, qkv, lse, B, T, C, NH, 0);
    *backward_ms = timer.stop_ms() / iterations;
    cudaFree(qkv);
    cudaFree(dqkv);
    cudaFree(y);
    cudaFree(dy);
    cudaFree(lse);
    cudaFree(row_dot);
}
