// The matrix products (cuBLASLt on a GPU) against the CPU reference
// matmul_forward / matmul_backward: transposes, accumulation into the fp32
// weight gradient, the skipped input gradient. Tolerances relative to the
// reference's largest magnitude: fp32 1e-5, bf16 storage 1e-2.
#include "cuda_test.h"
#include "kernels.cuh"

extern "C" {
#include "model/cpu_ops.h"
}

template <typename T>
static void matmul_case(int N, int IC, int OC) {
    std::vector<float> x = rounded_to<T>(random_floats((size_t)N * IC, 71, -1, 1));
    std::vector<float> W = rounded_to<T>(random_floats((size_t)OC * IC, 72, -1, 1));
    std::vector<float> dy = rounded_to<T>(random_floats((size_t)N * OC, 73, -1, 1));
    std::vector<float> dW0 = random_floats((size_t)OC * IC, 74, -1, 1);
    std::vector<float> want_y((size_t)N * OC), want_dx((size_t)N * IC), want_dW = dW0;
    matmul_forward(want_y.data(), x.data(), W.data(), N, IC, OC);
    matmul_backward(want_dx.data(), want_dW.data(), dy.data(), x.data(), W.data(), N, IC, OC);
    T *d_x = upload_as<T>(x), *d_W = upload_as<T>(W), *d_dy = upload_as<T>(dy);
    T *d_y = device_alloc<T>(want_y.size()), *d_dx = device_alloc<T>(want_dx.size());
    float *d_dW = to_device(dW0);
    gpu_matmul_forward(d_y, d_x, d_W, N, IC, OC, 0);
    gpu_matmul_backward(d_dx, d_dW, d_dy, d_x, d_W, N, IC, OC, 0);
    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-2;
    std::vector<float> y = download_as_float(d_y, want_y.size()), dx = download_as_float(d_dx, want_dx.size());
    std::vector<float> dW = to_host(d_dW, want_dW.size());
    CHECK(max_rel_diff(y.data(), want_y.data(), y.size()) <= tol, "%s %dx%dx%d forward error %.3g", type_name<T>(), N,
          IC, OC, max_rel_diff(y.data(), want_y.data(), y.size()));
    CHECK(max_rel_diff(dx.data(), want_dx.data(), dx.size()) <= tol, "%s dinp error %.3g", type_name<T>(),
          max_rel_diff(dx.data(), want_dx.data(), dx.size()));
    CHECK(max_rel_diff(dW.data(), want_dW.data(), dW.size()) <= tol, "%s dW (accumulated) error %.3g", type_name<T>(),
          max_rel_diff(dW.data(), want_dW.data(), dW.size()));
    // Without the input gradient, dW accumulates once more and dinp is untouched.
    gpu_matmul_backward<T>(nullptr, d_dW, d_dy, d_x, d_W, N, IC, OC, 0);
    matmul_backward(nullptr, want_dW.data(), dy.data(), x.data(), W.data(), N, IC, OC);
    dW = to_host(d_dW, want_dW.size());
    CHECK(max_rel_diff(dW.data(), want_dW.data(), dW.size()) <= tol, "%s dW second accumulation error %.3g",
          type_name<T>(), max_rel_diff(dW.data(), want_dW.data(), dW.size()));
    cudaFree(d_x), cudaFree(d_W), cudaFree(d_dy), cudaFree(d_y), cudaFree(d_dx), cudaFree(d_dW);
}

TEST(test_gpu_matmul_against_cpu) {
    matmul_case<float>(37, 48, 40);
    matmul_case<bf16>(37, 48, 40);
    matmul_case<float>(256, 64, 192);
    matmul_case<bf16>(256, 64, 192);
}
