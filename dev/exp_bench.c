// Scratch harness (not built by make): how many cycles 16 exps take on one
// core, and which of their operations bound them. Each variant is a loop of
// e^x over 4096 floats in L1 (x <= 0, as the attention's and the loss's),
// written here as cpu_ops.c's exp16 computes it, with one part swapped:
//   exp16       x = n ln2 + r by vrndscaleps, e^r by the degree-6 polynomial
//               summed in Estrin's order, 2^n by vscalefps (cpu_ops.c)
//   magic       n rounded by adding 1.5 x 2^23 instead of vrndscaleps
//   bits        2^n put into the exponent bits instead of vscalefps
//   degree3     a degree-3 polynomial (1e-4 relative: enough before bf16
//               rounding, not for fp32)
// and three loops of one operation each, for scale. Cycles assume 4.3 GHz
// (the EPYC VM's clock under AVX-512 load, from its measured peak).
//   cc -O3 -march=native dev/exp_bench.c -o /tmp/exp_bench && /tmp/exp_bench
#include <immintrin.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

enum { N = 4096, REPEATS = 3000 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// cpu_ops.c's polynomial for e^r, |r| <= ln2 / 2.
static inline v16 degree6(v16 r) {
    const v16 r2 = r * r;
    const v16 c23 = 4.9999994040e-01f + r * 1.6666431725e-01f;
    const v16 c456 = 4.1668001562e-02f + r * 8.3741554990e-03f + r2 * 1.3843653724e-03f;
    return (1.0f + r) + r2 * (c23 + r2 * c456);
}

// Minimax for relative error on the same interval (1.0e-4 at most).
static inline v16 degree3(v16 r) {
    return 1.0f + r * (1.000195860862732f + r * (0.5041304230690002f + r * 0.1651797592639923f));
}

static inline v16 reduce(v16 x, v16 n) { return x - n * 0.693359375f - n * -2.12194440e-4f; }

static inline v16 round_n(v16 x) {
    return (v16)_mm512_roundscale_ps(_mm512_mul_ps((__m512)x, _mm512_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// exp16's loop, with either polynomial (inlined with `cubic` constant).
static inline __attribute__((always_inline)) void scalef_loop_with(float *x, bool cubic) {
    for (int i = 0; i < N; i += 16) {
        const v16 v = (v16)_mm512_max_ps(_mm512_set1_ps(-110.0f), _mm512_load_ps(x + i)), n = round_n(v);
        const v16 p = cubic ? degree3(reduce(v, n)) : degree6(reduce(v, n));
        _mm512_store_ps(x + i, _mm512_scalef_ps((__m512)p, (__m512)n));
    }
}

__attribute__((noinline)) static void exp16_loop(float *x) { scalef_loop_with(x, false); }

__attribute__((noinline)) static void magic_loop(float *x) {
    for (int i = 0; i < N; i += 16) {
        const v16 v = (v16)_mm512_max_ps(_mm512_set1_ps(-110.0f), _mm512_load_ps(x + i));
        const v16 n = (v * 1.44269504f + 12582912.0f) - 12582912.0f;
        _mm512_store_ps(x + i, _mm512_scalef_ps((__m512)degree6(reduce(v, n)), (__m512)n));
    }
}

__attribute__((noinline)) static void bits_loop(float *x) {
    for (int i = 0; i < N; i += 16) {
        // Clamped where 2^n still has exponent bits (cpu_ops.c's path without AVX-512).
        const v16 v = (v16)_mm512_max_ps(_mm512_set1_ps(-87.0f), _mm512_load_ps(x + i)), n = round_n(v);
        const v16i two_n = (__builtin_convertvector(n, v16i) + 127) << 23;
        _mm512_store_ps(x + i, (__m512)(degree6(reduce(v, n)) * (v16)two_n));
    }
}

__attribute__((noinline)) static void degree3_loop(float *x) { scalef_loop_with(x, true); }

__attribute__((noinline)) static void fma_loop(float *x) {
    for (int i = 0; i < N; i += 16) {
        const __m512 v = _mm512_load_ps(x + i);
        _mm512_store_ps(x + i, _mm512_fmadd_ps(v, v, v));
    }
}

__attribute__((noinline)) static void roundscale_loop(float *x) {
    for (int i = 0; i < N; i += 16) _mm512_store_ps(x + i, _mm512_roundscale_ps(_mm512_load_ps(x + i), 8));
}

__attribute__((noinline)) static void scalef_loop(float *x) {
    for (int i = 0; i < N; i += 16) {
        const __m512 v = _mm512_load_ps(x + i);
        _mm512_store_ps(x + i, _mm512_scalef_ps(v, v));
    }
}

int main(void) {
    float *x = aligned_alloc(64, N * sizeof(float)), *y = aligned_alloc(64, N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = -(float)(i % 100) / 10.0f;
    const struct {
        const char *name;
        void (*loop)(float *);
    } variants[] = {{"exp16", exp16_loop},         {"magic", magic_loop},          {"bits", bits_loop},
                    {"degree3", degree3_loop},     {"one FMA", fma_loop},          {"one vrndscaleps", roundscale_loop},
                    {"one vscalefps", scalef_loop}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        double best = 1e9;
        for (int r = 0; r < REPEATS; r++) {
            for (int i = 0; i < N; i++) y[i] = x[i];
            const double t0 = now();
            variants[v].loop(y);
            const double t = now() - t0;
            if (t < best) best = t;
        }
        printf("%-16s %5.2f cycles per 16 (at 4.3 GHz)\n", variants[v].name, best / (N / 16) * 4.3e9);
    }
    free(x);
    free(y);
    return 0;
}
