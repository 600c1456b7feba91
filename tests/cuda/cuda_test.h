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

#endif
