// The matrix products (cuBLASLt on a GPU) against the exact products and
// against the CPU reference matmul_forward / matmul_backward: transposes,
// accumulation into the fp32 weight gradient, the skipped input gradient.
//
// Tolerance: an error bound per element, not a guess. Each output element
// is a sum of K products; in fp32 arithmetic with unit roundoff u, in any
// order (cuBLASLt's tiles and split-K, OpenBLAS's kernels, a plain loop) and
// with or without fused multiply-adds, it lands within
//     gamma_K * sum_k |a_k b_k|,   gamma_K = K u / (1 - K u)
// of the exact sum. So the test computes, in fp64, the exact product and the
// product of the magnitudes |A| |B|, and requires every element within
// that bound; the CPU reference must meet the same bound (it is what the
// other tests compare against). bf16 storage adds one rounding of the output
// to 8 bits: + 2^-8 |exact|. bf16 inputs run on tensor cores, which
// accumulate with truncation and align addends to the largest one (Fasi et
// al., "Numerical behavior of NVIDIA tensor cores", 2021): for them u is
// taken 4 times fp32's (2^-22). The fp32 weight gradient dW += dout^T inp
// adds one more term, its old value: K + 1 terms. On top, bf16 against fp32
// (the same GPU product in both storage types): relative Frobenius error
// within one bf16 rounding, 2^-8, plus both accumulation bounds.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_test.h"
#include "kernels.cuh"

extern "C" {
#include "model/cpu_ops.h"
}

// The exact value of every element of a product, and the sum of its terms' magnitudes.
struct ExactProduct {
    std::vector<double> value, magnitude;
};
// C (rows x cols) = A B in fp64, where A(i, k) = a[i * a_row + k * a_col]
// and B(k, j) = b[k * b_row + j * b_col].
static ExactProduct exact_product(const float *a, size_t a_row, size_t a_col, const float *b, size_t b_row,
                                  size_t b_col, int rows, int cols, int K) {
    ExactProduct p;
    p.value.resize((size_t)rows * cols);
    p.magnitude.resize((size_t)rows * cols);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double sum = 0.0, magnitude = 0.0;
            for (int k = 0; k < K; k++) {
                const double term = (double)a[i * a_row + k * a_col] * (double)b[k * b_row + j * b_col];
                sum += term;
                magnitude += std::fabs(term);
            }
            p.value[(size_t)i * cols + j] = sum;
            p.magnitude[(size_t)i * cols + j] = magnitude;
        }
    return p;
}

// The same product added to a start value (dW += ...): one more term.
static ExactProduct plus_start(const ExactProduct &p, const std::vector<float> &start) {
    ExactProduct out = p;
    for (size_t i = 0; i < start.size(); i++) {
        out.value[i] += start[i];
        out.magnitude[i] += std::fabs(start[i]);
    }
    return out;
}

// got within gamma_terms(u_acc) |terms| (+ 2^-8 |exact| for a bf16 output) of
// the exact value everywhere; notes the worst ratio of error to bound.
static void check_bound(const char *label, const std::string &where, const std::vector<float> &got,
                        const ExactProduct &p, int terms, double u_acc, bool bf16_output) {
    std::vector<double> bound(got.size());
    const double g = gamma_n(terms, u_acc), u_out = bf16_output ? BF16_UNIT_ROUNDOFF : 0.0;
    for (size_t i = 0; i < bound.size(); i++)
        bound[i] = u_out * std::fabs(p.value[i]) + (1 + u_out) * g * p.magnitude[i];
    const double ratio = bound_ratio(got.data(), p.value.data(), bound.data(), got.size());
    CHECK(error_within(label, where, ratio, 1.0), "%s: %s is %.3g times its error bound away from the exact product",
          label, where.c_str(), ratio);
}

// A product's results: y = x W^T, dx = dy W, dW = dW0 + dy^T x, and dW after a
// second backward without dinp (which must leave dx alone).
struct Products {
    std::vector<float> y, dx, dW, dW_again;
};

template <typename T>
static Products gpu_products(const std::vector<float> &x, const std::vector<float> &W, const std::vector<float> &dy,
                             const std::vector<float> &dW0, int N, int IC, int OC) {
    T *d_x = upload_as<T>(x), *d_W = upload_as<T>(W), *d_dy = upload_as<T>(dy);
    T *d_y = device_alloc<T>((size_t)N * OC), *d_dx = device_alloc<T>((size_t)N * IC);
    float *d_dW = to_device(dW0);
    gpu_matmul_forward(d_y, d_x, d_W, N, IC, OC, 0);
    gpu_matmul_backward(d_dx, d_dW, d_dy, d_x, d_W, N, IC, OC, 0);
    Products out;
    out.y = download_as_float(d_y, (size_t)N * OC);
    out.dx = download_as_float(d_dx, (size_t)N * IC);
    out.dW = to_host(d_dW, (size_t)OC * IC);
    gpu_matmul_backward<T>(nullptr, d_dW, d_dy, d_x, d_W, N, IC, OC, 0);
    out.dW_again = to_host(d_dW, (size_t)OC * IC);
    CHECK(download_as_float(d_dx, (size_t)N * IC) == out.dx, "%s: a backward without dinp changed dinp",
          type_name<T>());
    for (T *d : {d_x, d_W, d_dy, d_y, d_dx}) cudaFree(d);
    cudaFree(d_dW);
    return out;
}

// Inputs in storage type T: the GPU's and the CPU reference's products against the exact ones.
template <typename T>
static void matmul_case(int N, int IC, int OC) {
    std::vector<float> x = rounded_to<T>(random_floats((size_t)N * IC, 71, -1, 1));
    std::vector<float> W = rounded_to<T>(random_floats((size_t)OC * IC, 72, -1, 1));
    std::vector<float> dy = rounded_to<T>(random_floats((size_t)N * OC, 73, -1, 1));
    std::vector<float> dW0 = random_floats((size_t)OC * IC, 74, -1, 1);
    const ExactProduct y = exact_product(x.data(), IC, 1, W.data(), 1, IC, N, OC, IC);
    const ExactProduct dx = exact_product(dy.data(), OC, 1, W.data(), IC, 1, N, IC, OC);
    const ExactProduct dyT_x = exact_product(dy.data(), 1, OC, x.data(), IC, 1, OC, IC, N);
    const bool bf = sizeof(T) == 2;
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%dx%d", N, IC, OC);
    const std::string at = shape;
    // The CPU reference, in fp32 from the same inputs, meets the fp32 bound.
    Products cpu = {std::vector<float>(y.value.size()), std::vector<float>(dx.value.size()), dW0, {}};
    matmul_forward(cpu.y.data(), x.data(), W.data(), N, IC, OC, false);
    matmul_backward(cpu.dx.data(), cpu.dW.data(), dy.data(), x.data(), W.data(), N, IC, OC);
    const double u32 = FP32_UNIT_ROUNDOFF;
    const char *cpu_label = "CPU reference products, error / bound";
    check_bound(cpu_label, at + " forward", cpu.y, y, IC, u32, false);
    check_bound(cpu_label, at + " dinp", cpu.dx, dx, OC, u32, false);
    check_bound(cpu_label, at + " dW", cpu.dW, plus_start(dyT_x, dW0), N + 1, u32, false);
    // The GPU; bf16 inputs go through tensor cores: u taken as 4 times fp32's.
    const Products g = gpu_products<T>(x, W, dy, dW0, N, IC, OC);
    const double u_acc = bf ? 4 * u32 : u32;
    const char *label = bf ? "bf16 products, error / bound" : "fp32 products, error / bound";
    check_bound(label, at + " forward", g.y, y, IC, u_acc, bf);
    check_bound(label, at + " dinp", g.dx, dx, OC, u_acc, bf);
    check_bound(label, at + " dW", g.dW, plus_start(dyT_x, dW0), N + 1, u_acc, false);
    // The second accumulation, from the GPU's own first result.
    check_bound(label, at + " dW accumulated again", g.dW_again, plus_start(dyT_x, g.dW), N + 1, u_acc, false);
}

// bf16 against fp32 storage on the same GPU, from the same (bf16) inputs:
// the bf16 output is one rounding (2^-8 |y|) away from its fp32 sum, and the
// two sums are within both accumulation bounds of the exact one; relative
// to ||y||_F: 2^-8 + (1 + 2^-8) (gamma_K(4u) + gamma_K(u)) ||m||_F / ||y||_F,
// m = |A| |B| (no rounding of the output for the fp32 dW).
static void bf16_against_fp32_case(int N, int IC, int OC) {
    std::vector<float> x = rounded_to<bf16>(random_floats((size_t)N * IC, 81, -1, 1));
    std::vector<float> W = rounded_to<bf16>(random_floats((size_t)OC * IC, 82, -1, 1));
    std::vector<float> dy = rounded_to<bf16>(random_floats((size_t)N * OC, 83, -1, 1));
    std::vector<float> dW0 = random_floats((size_t)OC * IC, 84, -1, 1);
    const Products h = gpu_products<bf16>(x, W, dy, dW0, N, IC, OC), f = gpu_products<float>(x, W, dy, dW0, N, IC, OC);
    const struct {
        const char *name;
        const std::vector<float> &bf16_result, &fp32_result;
        ExactProduct exact;
        int terms;
        bool bf16_output;
    } pairs[] = {
        {"forward", h.y, f.y, exact_product(x.data(), IC, 1, W.data(), 1, IC, N, OC, IC), IC, true},
        {"dinp", h.dx, f.dx, exact_product(dy.data(), OC, 1, W.data(), IC, 1, N, IC, OC), OC, true},
        {"dW", h.dW, f.dW, plus_start(exact_product(dy.data(), 1, OC, x.data(), IC, 1, OC, IC, N), dW0), N + 1, false},
    };
    for (const auto &pair : pairs) {
        double magnitude = 0.0, value = 0.0;
        for (size_t i = 0; i < pair.exact.value.size(); i++) {
            magnitude += pair.exact.magnitude[i] * pair.exact.magnitude[i];
            value += pair.exact.value[i] * pair.exact.value[i];
        }
        const double u_out = pair.bf16_output ? BF16_UNIT_ROUNDOFF : 0.0;
        const double sums = gamma_n(pair.terms, 4 * FP32_UNIT_ROUNDOFF) + gamma_n(pair.terms, FP32_UNIT_ROUNDOFF);
        const double tol = u_out + (1 + u_out) * sums * std::sqrt(magnitude / value);
        const double err =
            rel_frobenius_error(pair.bf16_result.data(), pair.fp32_result.data(), pair.fp32_result.size());
        char where[96];
        snprintf(where, sizeof where, "%dx%dx%d %s", N, IC, OC, pair.name);
        CHECK(error_within("bf16 against fp32 products, rel. Frobenius", where, err, tol),
              "%s: bf16 and fp32 products differ by %.3g (relative Frobenius) > %.3g", where, err, tol);
    }
}

TEST(test_gpu_matmul_against_cpu) {
    const struct { int N, IC, OC; } shapes[] = {{37, 48, 40}, {256, 64, 192}};
    for (const auto &s : shapes) {
        matmul_case<float>(s.N, s.IC, s.OC);
        matmul_case<bf16>(s.N, s.IC, s.OC);
        bf16_against_fp32_case(s.N, s.IC, s.OC);
    }
}
