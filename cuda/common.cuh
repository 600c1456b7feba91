// What every CUDA source of igpt includes: the CUDA runtime (or, built with
// -DIGPT_INTERPRET, the interpret mode of interpret/interpret.h), one launch
// function for both builds, error checks, and bf16/fp32 loads and stores so
// that each kernel is written once for both storage types.
#ifndef IGPT_CUDA_COMMON_CUH
#define IGPT_CUDA_COMMON_CUH

#ifdef IGPT_INTERPRET
#include "interpret/interpret.h"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define IGPT_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

extern "C" {
#include "util/util.h"
}

typedef __nv_bfloat16 bf16;

// Every failure of the CUDA backend (CUDA, cuBLASLt, NCCL) ends the program
// through die(): pending temporary files are removed and, in a multi-process
// job, the whole job ends with the rank named.
[[noreturn]] inline void cuda_fail(const char *what, const char *message, const char *file, int line) {
    die("CUDA error in %s at %s:%d: %s", what, file, line, message);
}
#define CUDA_CHECK(call)                                                                         \
    do {                                                                                         \
        cudaError_t err_ = (call);                                                               \
        if (err_ != cudaSuccess) cuda_fail(#call, cudaGetErrorString(err_), __FILE__, __LINE__); \
    } while (0)

// Launches kernel<<<grid, block, shared_bytes, stream>>>(args...) on a GPU,
// or runs it in the interpreter; reports the kernel and the call site on failure.
template <typename... Params, typename... Args>
inline void launch_kernel(const char *name, const char *file, int line, void (*kernel)(Params...), dim3 grid,
                          dim3 block, size_t shared_bytes, cudaStream_t stream, Args... args) {
#ifdef IGPT_INTERPRET
    (void)stream;
    interp::run_grid(name, reinterpret_cast<const void *>(kernel), interp::CallSite{file, line}, grid, block,
                     shared_bytes, [&]() { kernel(static_cast<Params>(args)...); });
#else
    // (clang-format reads a .cuh as plain C++ and would split the launch brackets)
    // clang-format off
    kernel<<<grid, block, shared_bytes, stream>>>(static_cast<Params>(args)...);
    // clang-format on
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) cuda_fail(name, cudaGetErrorString(err), file, line);
#endif
}
#define LAUNCH(kernel, grid, block, shared_bytes, stream, ...) \
    launch_kernel(#kernel, __FILE__, __LINE__, kernel, grid, block, shared_bytes, stream, __VA_ARGS__)

// Loads and stores in fp32 arithmetic for either storage type.
__device__ __host__ __forceinline__ float to_float(float x) { return x; }
__device__ __host__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }
template <typename floatX>
__device__ __host__ __forceinline__ floatX from_float(float x);
template <>
__device__ __host__ __forceinline__ float from_float<float>(float x) {
    return x;
}
template <>
__device__ __host__ __forceinline__ bf16 from_float<bf16>(float x) {
    return __float2bfloat16(x);
}

// Sums over the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}
__device__ __forceinline__ float warp_max(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}

// Sum over a whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the total. `scratch` holds 32 floats of shared memory; the
// call is a barrier.
__device__ __forceinline__ float block_sum(float x, float *scratch) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    x = warp_sum(x);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(x);
}

__device__ __forceinline__ float block_max(float x, float *scratch) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    x = warp_max(x);
    __syncthreads();
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = lane < warps ? scratch[lane] : -INFINITY;
    return warp_max(x);
}

inline unsigned ceil_div(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

#endif
