// The CPU's measured arithmetic peak (./igpt bench --mode peak): what the
// model's GFLOP/s are read against, measured rather than guessed from the
// model name, as the clock under an AVX-512 load is not on any label.
#ifndef IGPT_BENCH_CPU_PEAK_H
#define IGPT_BENCH_CPU_PEAK_H

typedef struct {
    const char *isa;      // the instructions timed, or "not supported" (gflops_per_s is then 0)
    double gflops_per_s;  // all threads together, the best of `repeats` timings
} CpuPeak;

// fp32 FMAs (AVX-512, else AVX2), one stream of independent accumulators per thread.
CpuPeak cpu_peak_fp32(int threads, int repeats);
// bf16 dot products into fp32 (vdpbf16ps, AVX512-BF16), the same way.
CpuPeak cpu_peak_bf16(int threads, int repeats);

#endif
