// The peak of bench/cpu_peak.h: each thread runs a loop of independent
// multiply-adds on values held in registers, enough of them in flight
// (PEAK_ACCUMULATORS) to cover the FMA units' latency, so the loop is bound
// by their throughput alone. The kernels are compiled for their ISA with
// target attributes and chosen at run time, so ./igpt still runs on CPUs
// without AVX-512 (the x86-64-v3 build of the GPU machines).
#include "cpu_peak.h"

#include <immintrin.h>
#include <stdbool.h>

#include "util/util.h"

// 12 chains x 4-cycle FMA latency covers 2 FMA ports with room to spare; 12 + 2 constants fit 16 registers.
#define PEAK_ACCUMULATORS 12
#define PEAK_SECONDS 0.1  // per timing: long enough to settle the clock, short enough for make test

typedef double (*PeakKernel)(long iters);

// acc = acc * 0.999 + 0.001 stays near 1: no overflow, no denormals to slow anything down.
__attribute__((target("avx512f"))) static double fma_avx512(long iters) {
    const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
    __m512 acc[PEAK_ACCUMULATORS];
    for (int j = 0; j < PEAK_ACCUMULATORS; j++) acc[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < PEAK_ACCUMULATORS; j++) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
    for (int j = 1; j < PEAK_ACCUMULATORS; j++) acc[0] = _mm512_add_ps(acc[0], acc[j]);
    return _mm512_reduce_add_ps(acc[0]);
}

__attribute__((target("avx2,fma"))) static double fma_avx2(long iters) {
    const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(0.001f);
    __m256 acc[PEAK_ACCUMULATORS];
    for (int j = 0; j < PEAK_ACCUMULATORS; j++) acc[j] = _mm256_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < PEAK_ACCUMULATORS; j++) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
    for (int j = 1; j < PEAK_ACCUMULATORS; j++) acc[0] = _mm256_add_ps(acc[0], acc[j]);
    float lanes[8];
    _mm256_storeu_ps(lanes, acc[0]);
    return lanes[0];
}

// vdpbf16ps: each fp32 lane += a[2i] b[2i] + a[2i+1] b[2i+1], 4 FLOPs; the sums grow by 2e-6 a step.
__attribute__((target("avx512f,avx512bf16"))) static double dpbf16_avx512(long iters) {
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.001f), _mm512_set1_ps(0.001f));
    __m512 acc[PEAK_ACCUMULATORS];
    for (int j = 0; j < PEAK_ACCUMULATORS; j++) acc[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < PEAK_ACCUMULATORS; j++) acc[j] = _mm512_dpbf16_ps(acc[j], a, a);
    for (int j = 1; j < PEAK_ACCUMULATORS; j++) acc[0] = _mm512_add_ps(acc[0], acc[j]);
    return _mm512_reduce_add_ps(acc[0]);
}

// Seconds for every thread to run iters of the kernel, all at once.
static double time_threads(PeakKernel kernel, int threads, long iters) {
    volatile double sink = 0.0;  // the kernels' results are used: the loops cannot be dropped
    const double t0 = now_seconds();
#pragma omp parallel num_threads(threads)
    {
        const double result = kernel(iters);
#pragma omp atomic
        sink += result;
    }
    return now_seconds() - t0;
}

// The best GFLOP/s of `repeats` timings of ~PEAK_SECONDS, after doubling iters until one takes a tenth of that.
static double peak_gflops(PeakKernel kernel, double flops_per_iter, int threads, int repeats) {
    long iters = 1024;
    while (time_threads(kernel, threads, iters) < PEAK_SECONDS / 10) iters *= 2;
    iters *= 10;
    double best = 0.0;
    for (int r = 0; r < repeats; r++) {
        const double gflops = flops_per_iter * iters * threads / time_threads(kernel, threads, iters) / 1e9;
        if (gflops > best) best = gflops;
    }
    return best;
}

CpuPeak cpu_peak_fp32(int threads, int repeats) {
    const double chains = PEAK_ACCUMULATORS;
    if (__builtin_cpu_supports("avx512f"))
        return (CpuPeak){"avx512f", peak_gflops(fma_avx512, chains * 16 * 2, threads, repeats)};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (CpuPeak){"avx2+fma", peak_gflops(fma_avx2, chains * 8 * 2, threads, repeats)};
    return (CpuPeak){"not supported", 0.0};
}

CpuPeak cpu_peak_bf16(int threads, int repeats) {
    if (!__builtin_cpu_supports("avx512bf16")) return (CpuPeak){"not supported", 0.0};
    return (CpuPeak){"avx512bf16", peak_gflops(dpbf16_avx512, PEAK_ACCUMULATORS * 16 * 4.0, threads, repeats)};
}
