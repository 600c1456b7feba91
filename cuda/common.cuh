// What every CUDA source of igpt includes: the CUDA runtime (or, built with
// -DIGPT_INTERPRET, the interpret mode of interpret/interpret.h), one launch
// function for both builds, error checks, and bf16/fp32 loads and stores so
// that each kernel is written once for both storage types.
#ifndef IGPT_CUDA_COMMON_CUH
#define IGPT_CUDA_COMMON_CUH

#include <cstdint>

#ifdef IGPT_INTERPRET
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

// --- Wide global accesses --------------------------------------------------------------------
// A pack of N values of T, loaded or stored with one instruction per 16 bytes
// (Pack16<T>: 8 bf16 or 4 floats, one 128-bit access instead of 8 or 4
// narrow ones). Its address must be a multiple of its size (of 16 bytes for
// larger packs): cudaMalloc gives 256-byte aligned memory and the memory
// plans keep every buffer at a multiple of 256 bytes, so a kernel that steps
// through a buffer pack by pack stays aligned. A misaligned pack faults on a
// GPU ("misaligned address"); the interpret mode aborts with the call site.
template <typename T, int N>
struct alignas(sizeof(T) * N < 16 ? sizeof(T) * N : 16) Pack {
    T v[N];
};
template <typename T>
using Pack16 = Pack<T, 16 / sizeof(T)>;

#ifdef IGPT_INTERPRET
// The call site of a pack access, passed on by the helpers built on it.
#define PACK_SITE , const char *file = __builtin_FILE(), int line = __builtin_LINE()
#define PACK_SITE_ARGS , file, line
// The interpret twin of a pack access: the alignment check, then a plain copy.
inline void require_pack_aligned(const void *address, size_t bytes, const char *file, int line) {
    const size_t alignment = bytes < 16 ? bytes : 16;
    if ((uintptr_t)address % alignment == 0) return;
    fprintf(stderr, "interpret: misaligned %zu-byte pack access at %p (needs %zu-byte alignment) at %s:%d\n", bytes,
            address, alignment, file, line);
    fflush(stderr);
    abort();
}
template <typename T, int N>
inline Pack<T, N> load_pack(const T *address, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    require_pack_aligned(address, sizeof(Pack<T, N>), file, line);
    Pack<T, N> pack;
    memcpy(&pack, address, sizeof pack);
    return pack;
}
template <typename T, int N>
inline void store_pack(T *address, const Pack<T, N> &pack, const char *file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    require_pack_aligned(address, sizeof pack, file, line);
    memcpy(address, &pack, sizeof pack);
}
#else
#define PACK_SITE
#define PACK_SITE_ARGS
// 16-byte pieces as int4 (LDG.E.128 / STG.E.128), 8-byte packs as uint2, others element by element.
template <typename T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T *address) {
    Pack<T, N> pack;
    if constexpr (sizeof pack >= 16) {
        for (int i = 0; i < (int)(sizeof pack / 16); i++)
            reinterpret_cast<int4 *>(&pack)[i] = reinterpret_cast<const int4 *>(address)[i];
    } else if constexpr (sizeof pack == 8) {
        *reinterpret_cast<uint2 *>(&pack) = *reinterpret_cast<const uint2 *>(address);
    } else {
        for (int k = 0; k < N; k++) pack.v[k] = address[k];  // one element (P = 1): a plain access
    }
    return pack;
}
template <typename T, int N>
__device__ __forceinline__ void store_pack(T *address, const Pack<T, N> &pack) {
    if constexpr (sizeof pack >= 16) {
        for (int i = 0; i < (int)(sizeof pack / 16); i++)
            reinterpret_cast<int4 *>(address)[i] = reinterpret_cast<const int4 *>(&pack)[i];
    } else if constexpr (sizeof pack == 8) {
        *reinterpret_cast<uint2 *>(address) = *reinterpret_cast<const uint2 *>(&pack);
    } else {
        for (int k = 0; k < N; k++) address[k] = pack.v[k];
    }
}
#endif
// Whether address can start a pack of `bytes` (for kernels that choose the
// wide path at run time).
__device__ __host__ __forceinline__ bool pack_aligned(const void *address, size_t bytes) {
    return (uintptr_t)address % (bytes < 16 ? bytes : 16) == 0;
}

// A pack converted to fp32 arithmetic, and back to the storage type.
template <int N>
struct Floats {
    float v[N];
};
template <typename floatX, int N>
__device__ __forceinline__ Floats<N> load_floats(const floatX *address PACK_SITE) {
    const Pack<floatX, N> pack = load_pack<floatX, N>(address PACK_SITE_ARGS);
    Floats<N> f;
    for (int k = 0; k < N; k++) f.v[k] = to_float(pack.v[k]);
    return f;
}
template <typename floatX, int N>
__device__ __forceinline__ void store_floats(floatX *address, const Floats<N> &f PACK_SITE) {
    Pack<floatX, N> pack;
    for (int k = 0; k < N; k++) pack.v[k] = from_float<floatX>(f.v[k]);
    store_pack(address, pack PACK_SITE_ARGS);
}

#endif
