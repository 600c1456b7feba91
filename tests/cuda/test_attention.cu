// The fused attention kernels against the CPU reference attention_forward /
// attention_backward: every head size, sequence lengths that cross tile
// boundaries and end mid-tile, and T = 1024 with head size 64 (the main
// case).
//
// Tolerances. Largest error relative to the largest magnitude of each
// reference tensor (absolute below 1): fp32 storage 2e-5, bf16 storage 2e-2;
// log-sum-exp 1e-4 absolute. Relative Frobenius error of y, dq, dk, dv
// (kernel_frobenius_tolerance, cuda_test.h): an output row sums T terms,
// and each probability carries the error of its score, a sum of hs products
// of size up to |q| |k| / sqrt(hs), through exp (an absolute error of a
// score is a relative error of its probability): as many terms as T + hs x
// (largest |q| x largest |k| x sqrt(hs)); bf16 outputs add one rounding
// (the CPU sees the same rounded inputs, and the GPU's rounded y for the
// backward pass).
#include <cmath>
#include <string>

#include "cuda_test.h"
#include "kernels.cuh"

extern "C" {
#include "model/cpu_ops.h"
}

template <typename T>
static void attention_case(int B, int T_, int C, int NH, bool all_orders) {
    const size_t n_qkv = (size_t)B * T_ * 3 * C, n_y = (size_t)B * T_ * C, n_lse = (size_t)B * NH * T_;
    std::vector<float> qkv = rounded_to<T>(random_floats(n_qkv, 61 + T_, -1.5f, 1.5f));
    std::vector<float> dy = rounded_to<T>(random_floats(n_y, 62 + T_, -1, 1));
    std::vector<float> want_y(n_y), want_lse(n_lse), want_dqkv(n_qkv);
    std::vector<float> scratch(attention_scratch_floats(T_, C, NH, 1));
    attention_forward(want_y.data(), want_lse.data(), qkv.data(), scratch.data(), B, T_, C, NH, 1);
    // Backward from the GPU's own (rounded) output, as the model does; the
    // CPU gets the same output so that D = rowsum(dy * y) agrees.
    T *d_qkv = upload_as<T>(qkv), *d_dy = upload_as<T>(dy), *d_y = device_alloc<T>(n_y),
      *d_dqkv = device_alloc<T>(n_qkv);
    float *d_lse = device_alloc<float>(n_lse), *d_rowdot = device_alloc<float>(n_lse);
    const double tol = sizeof(T) == 4 ? 2e-5 : 2e-2;
    const int hs = C / NH;
    float largest = 0.0f;
    for (float v : qkv) largest = std::fmax(largest, std::fabs(v));
    const int terms = T_ + (int)std::ceil(hs * largest * largest * std::sqrt((double)hs));
    const double frobenius_tol = kernel_frobenius_tolerance<T>(terms);
    const std::string mode = type_name<T>();
    std::vector<float> first_y, first_dqkv;
    std::vector<ScheduleOrder> orders = schedule_orders();
    if (!all_orders) orders.resize(1);
    for (const ScheduleOrder &o : orders) {
        use_schedule_order(o);
        char where[64];
        snprintf(where, sizeof where, "T=%d hs=%d, %s order", T_, hs, o.name);
        gpu_attention_forward(d_y, d_lse, d_qkv, B, T_, C, NH, 0);
        std::vector<float> y = download_as_float(d_y, n_y), lse = to_host(d_lse, n_lse);
        double err_y = max_rel_diff(y.data(), want_y.data(), n_y);
        double err_lse = max_abs_diff(lse.data(), want_lse.data(), n_lse);
        CHECK(error_within((mode + " attention y, largest error").c_str(), where, err_y, tol),
              "T=%d hs=%d %s %s: attention output error %.3g > %.1g", T_, C / NH, type_name<T>(), o.name, err_y, tol);
        CHECK(error_within((mode + " attention log-sum-exp, absolute").c_str(), where, err_lse, 1e-4),
              "T=%d hs=%d %s %s: log-sum-exp error %.3g > 1e-4", T_, C / NH, type_name<T>(), o.name, err_lse);
        err_y = rel_frobenius_error(y.data(), want_y.data(), n_y);
        CHECK(error_within((mode + " attention y, rel. Frobenius").c_str(), where, err_y, frobenius_tol),
              "T=%d hs=%d %s %s: attention output differs by %.3g (relative Frobenius) > %.2g", T_, C / NH,
              type_name<T>(), o.name, err_y, frobenius_tol);
        attention_backward(want_dqkv.data(), dy.data(), y.data(), qkv.data(), want_lse.data(), scratch.data(), B, T_, C,
                           NH, 1);
        gpu_attention_backward(d_dqkv, d_rowdot, d_dy, d_y, d_qkv, d_lse, B, T_, C, NH, 0);
        std::vector<float> dqkv = download_as_float(d_dqkv, n_qkv);
        // q, k and v parts separately, each relative to its own largest value.
        const char *part_name[3] = {"dq", "dk", "dv"};
        for (int part = 0; part < 3; part++) {
            std::vector<float> got, want;
            for (size_t r = 0; r < (size_t)B * T_; r++)
                for (int c = 0; c < C; c++) {
                    got.push_back(dqkv[r * 3 * C + (size_t)part * C + c]);
                    want.push_back(want_dqkv[r * 3 * C + (size_t)part * C + c]);
                }
            const std::string part_label = mode + " attention " + part_name[part];
            double err = max_rel_diff(got.data(), want.data(), got.size());
            CHECK(error_within((part_label + ", largest error").c_str(), where, err, tol),
                  "T=%d hs=%d %s %s: %s error %.3g > %.1g", T_, C / NH, type_name<T>(), o.name, part_name[part], err,
                  tol);
            err = rel_frobenius_error(got.data(), want.data(), got.size());
            CHECK(error_within((part_label + ", rel. Frobenius").c_str(), where, err, frobenius_tol),
                  "T=%d hs=%d %s %s: %s differs by %.3g (relative Frobenius) > %.2g", T_, C / NH, type_name<T>(),
                  o.name, part_name[part], err, frobenius_tol);
        }
        if (first_y.empty()) {
            first_y = y;
            first_dqkv = dqkv;
        } else
            CHECK(y == first_y && dqkv == first_dqkv, "T=%d: %s order gives other bits than the first order", T_,
                  o.name);
    }
    cudaFree(d_qkv), cudaFree(d_dy), cudaFree(d_y), cudaFree(d_dqkv), cudaFree(d_lse), cudaFree(d_rowdot);
}

TEST(test_gpu_attention_head_sizes_and_tiles) {
    struct Case {
        int B, T, C, NH;
    } cases[] = {{2, 70, 64, 2},    // hs 32, one partial tile
                 {1, 150, 64, 2},   // hs 32, crosses the 128-row tile
                 {2, 37, 64, 4},    // hs 16
                 {1, 130, 128, 2},  // hs 64, three 64-row tiles
                 {1, 45, 384, 4},   // hs 96
                 {1, 70, 256, 2}};  // hs 128, crosses 32-row tiles
    for (const Case &c : cases) {
        attention_case<float>(c.B, c.T, c.C, c.NH, true);
        attention_case<bf16>(c.B, c.T, c.C, c.NH, false);
    }
}

TEST(test_gpu_attention_t1024_hs64) {
    attention_case<float>(1, 1024, 128, 2, false);
    attention_case<bf16>(1, 1024, 128, 2, false);
}

// T = 4096 (the longest sequence the issue asks for): on a GPU only, the
// interpreter would take minutes.
TEST(test_gpu_attention_t4096) {
#ifdef IGPT_INTERPRET
    test_skip("T = 4096 runs on a GPU only (minutes in the interpreter)");
#else
    attention_case<float>(1, 4096, 64, 1, false);
    attention_case<bf16>(1, 4096, 64, 1, false);
#endif
}
