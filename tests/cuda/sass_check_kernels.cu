// Kernels for tests/check_sass.py, the static check of the real nvcc build
// (build/cuda/igpt_cuda_tests): they are never launched, only disassembled.
//
// - sass_check_mma_kernel: one warp-wide mma.sync m16n8k16 (bf16 in, fp32
//   accumulate), written as inline PTX. Its SASS must hold HMMA on sm_80 and
//   sm_90: the check's table lists it, so a build in which tensor-core PTX no
//   longer becomes HMMA fails.
// - sass_check_planted_ffma_kernel: the same product with plain FMAs. The
//   check's self-test lists it as a tensor-core kernel and must fail on it.
// - sass_check_planted_local_memory_kernel: a per-thread array indexed at run
//   time, which registers cannot hold, so it lives in local memory (LDL/STL,
//   a stack frame). The self-test must find it; the real check skips the
//   "sass_check_planted_" kernels.
//
// nvcc only: the interpret mode has no inline PTX (docs/cuda.md).
#ifndef IGPT_INTERPRET
#include <cstdint>

// A (16x16, row-major), B (16x8, column-major) and C, D (16x8, fp32), each
// lane holding its fragment registers as the PTX ISA lays them out: 4 x 32
// bits of A (two bf16 each), 2 of B, 4 floats of C/D. One warp.
__global__ void sass_check_mma_kernel(float *d, const uint32_t *a, const uint32_t *b) {
    const int lane = threadIdx.x % 32;
    const uint32_t *a_lane = a + 4 * lane, *b_lane = b + 2 * lane;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a_lane[0]), "r"(a_lane[1]), "r"(a_lane[2]), "r"(a_lane[3]), "r"(b_lane[0]), "r"(b_lane[1]));
    for (int i = 0; i < 4; i++) d[4 * lane + i] = acc[i];
}

// The same shapes, one output element per thread, on CUDA cores (no HMMA).
__global__ void sass_check_planted_ffma_kernel(float *d, const float *a, const float *b) {
    const int row = threadIdx.x / 8, col = threadIdx.x % 8;
    float acc = 0.0f;
    for (int k = 0; k < 16; k++) acc += a[row * 16 + k] * b[col * 16 + k];
    d[row * 8 + col] = acc;
}

// A store and a load at indices known only at run time put the array in local memory.
__global__ void sass_check_planted_local_memory_kernel(float *out, const int *index) {
    float scratch[256];
    for (int i = 0; i < 256; i++) scratch[i] = out[i * blockDim.x + threadIdx.x];
    scratch[index[threadIdx.x] & 255] = 0.0f;
    out[threadIdx.x] = scratch[index[threadIdx.x + blockDim.x] & 255];
}
#endif
