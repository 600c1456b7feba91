// What the CUDA tests (tests/cuda/*.cu) add to the harness (tests/harness.h:
// TEST, CHECK, test_skip): the same sources run on a GPU (built by nvcc) and
// on a CPU through the interpret mode (built by g++ with -DIGPT_INTERPRET);
// tests that need the interpreter say so with INTERPRET_ONLY(); a child
// process for tests that expect an abort; the interpreter's thread orders;
// device buffers and tolerances.
#ifndef IGPT_CUDA_TEST_H
#define IGPT_CUDA_TEST_H

#include <cstdint>
#include <string>
#include <vector>

#include "common.cuh"
#include "harness.h"

#ifdef IGPT_INTERPRET
#define INTERPRET_ONLY() (void)0
#else
#define INTERPRET_ONLY()                            \
    do {                                            \
        test_skip("checks the interpreter itself"); \
        return;                                     \
    } while (0)
#endif
// Tests of the checker builds (docs/cuda.md, "The checker"): they skip, saying
// which build they need, everywhere else.
#if defined(IGPT_INTERP_ASAN)
#define NEEDS_ASAN() INTERPRET_ONLY()
#else
#define NEEDS_ASAN()                                                       \
    do {                                                                   \
        test_skip("needs the AddressSanitizer build (build/interp-asan)"); \
        return;                                                            \
    } while (0)
#endif
#if defined(IGPT_INTERP_TSAN)
#define NEEDS_TSAN() INTERPRET_ONLY()
#else
#define NEEDS_TSAN()                                                      \
    do {                                                                  \
        test_skip("needs the ThreadSanitizer build (build/interp-tsan)"); \
        return;                                                           \
    } while (0)
#endif

// Runs fn in a child process; returns its exit signal (0 if it exited
// normally) and its stderr in *err.
int run_in_child(void (*fn)(void), std::string *err);

// Thread orders every kernel test repeats its launches under (one entry on a GPU).
struct ScheduleOrder {
    const char *name;
    int order;
};
std::vector<ScheduleOrder> schedule_orders();
void use_schedule_order(const ScheduleOrder &o);

// Device buffers from host vectors and back.
template <typename T>
T *to_device(const std::vector<T> &host) {
    T *d = nullptr;
    CUDA_CHECK(cudaMalloc(&d, host.size() * sizeof(T) + 1));
    CUDA_CHECK(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T>
std::vector<T> to_host(const T *d, size_t n) {
    std::vector<T> host(n);
    CUDA_CHECK(cudaMemcpy(host.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
}
template <typename T>
T *device_alloc(size_t n) {
    T *d = nullptr;
    CUDA_CHECK(cudaMalloc(&d, n * sizeof(T) + 1));
    return d;
}

// Host floats stored on the device as T (rounded to T), and back as floats.
template <typename T>
T *upload_as(const std::vector<float> &host) {
    std::vector<T> converted(host.size());
    for (size_t i = 0; i < host.size(); i++) converted[i] = from_float<T>(host[i]);
    return to_device(converted);
}
template <typename T>
std::vector<float> download_as_float(const T *d, size_t n) {
    std::vector<T> h = to_host(d, n);
    std::vector<float> out(n);
    for (size_t i = 0; i < n; i++) out[i] = to_float(h[i]);
    return out;
}
// Rounds host values to what T can hold (the CPU reference then sees the same inputs).
template <typename T>
std::vector<float> rounded_to(std::vector<float> v) {
    for (float &x : v) x = to_float(from_float<T>(x));
    return v;
}
template <typename T>
constexpr const char *type_name() {
    return sizeof(T) == 4 ? "fp32" : "bf16";
}

// Seeded uniform values in [lo, hi).
std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi);
// Largest |a - b| relative to the largest |b| (or absolute when |b| max < 1).
double max_rel_diff(const float *a, const float *b, size_t n);
double max_abs_diff(const float *a, const float *b, size_t n);

// --- Errors and tolerances (how each is derived: docs/cuda.md, "Tolerances") ---------------
// Unit roundoff u: the largest relative error of rounding a real number to
// the format (round to nearest): 2^-24 for fp32 (24 significant bits),
// 2^-8 for bf16 (8 significant bits).
constexpr double FP32_UNIT_ROUNDOFF = 0x1p-24;
constexpr double BF16_UNIT_ROUNDOFF = 0x1p-8;
// gamma_n = n u / (1 - n u): a sum of n products computed with unit roundoff
// u, in any order and with or without fused multiply-adds, is within gamma_n
// times the sum of the products' magnitudes of the exact sum (Higham,
// "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 3.1).
double gamma_n(int n, double u);
// ||got - want||_F / ||want||_F: the size of the whole error against the
// size of the whole tensor; unlike the largest error it does not let one
// element that sits near zero, or a tensor whose entries are all small,
// decide the outcome (NaN anywhere gives NaN).
double rel_frobenius_error(const float *got, const float *want, size_t n);
// Relative Frobenius tolerance of a kernel against its CPU reference, both
// computing each output element from the same inputs in fp32 as a sum of at
// most `terms` terms (0: elementwise) and a few more operations: each is
// within gamma_(terms + 16) of the exact value, relative to the magnitudes
// involved (16: the elementwise arithmetic and the GPU's expf and logf, 1-2
// ulps each), so the two are within twice that of each other. An output
// stored in bf16 adds one rounding: 2^-8.
template <typename Stored>
double kernel_frobenius_tolerance(int terms) {
    return 2 * gamma_n(terms + 16, FP32_UNIT_ROUNDOFF) + (sizeof(Stored) == 2 ? BF16_UNIT_ROUNDOFF : 0.0);
}
// Largest |got - exact| / bound over n values (<= 1: within the bound everywhere).
double bound_ratio(const float *got, const double *exact, const double *bound, size_t n);
// Each input nudged one ulp up or down (seeded, independently per value):
// the reference run on such inputs shows how far rounding-sized differences
// carry through a computation.
std::vector<float> nudged_one_ulp(const std::vector<float> &x, uint64_t seed);

// Notes a measured error beside its tolerance under a label ("bf16 model
// gradients, rel. Frobenius") and returns error <= tolerance (NaN: false).
// After each test the worst error of every label is printed with its
// tolerance and where it was seen, so that a log (on a GPU, the short tail
// that comes back) shows how close each check came; with
// IGPT_TEST_ERRORS=FILE each line is also appended to FILE as JSON.
bool error_within(const char *label, const std::string &where, double error, double tolerance);
// Prints (and forgets) the errors noted since the last call.
void print_noted_errors(const char *test_name);

#endif
