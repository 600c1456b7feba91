// CUDA interpret mode: the kernel sources of cuda/ compiled as host C++ by
// g++ (-DIGPT_INTERPRET), so that CI machines without a GPU run them.
//
// Each block's threads run as cooperatively scheduled fibers (Boost.Context)
// on one host thread: a thread runs until it reaches __syncthreads, a warp
// collective or its end, then the next one runs. So barriers, static and
// dynamic shared memory, warp shuffles (with masks) and atomics behave as on
// a GPU, and misuse is caught:
//   - a __syncthreads that not every thread of the block reaches (divergent
//     barrier, different call sites, threads that already returned) aborts
//     with the call sites;
//   - a warp collective whose mask names lanes that call another collective,
//     another mask, or have exited aborts likewise;
//   - threads run in forward, reverse or seeded-random order (interp_set_order),
//     blocks too, to expose missing barriers;
//   - dynamic shared memory, and memory from cudaMalloc, start filled with
//     0xFF bytes (NaN as floats), so reads of unwritten memory show;
//   - launches are held to the limits of the target GPU (an H100/H200, sm_90):
//     threads per block, grid size, shared memory (above 48 KiB only after
//     cudaFuncSetAttribute), registers x threads with each kernel's register
//     count from the real sm_90 build (limits.cpp).
// The checker builds (checker.cpp) add out-of-bounds and race detection: the
// same sources under AddressSanitizer (IGPT_INTERP_ASAN) and ThreadSanitizer
// (IGPT_INTERP_TSAN).
// Tensor cores: mma.sync (m16n8k16 bf16), ldmatrix and cp.async come as the
// functions of cuda/mma.cuh, whose twins are warp collectives here
// (tensor_core.h).
// Limits: no other inline PTX, no wgmma, TMA or other tensor-core shapes,
// no cooperative groups, no texture memory; one block runs at a time; a
// kernel may use at most IGPT_INTERP_STACK_KB (default 256) KiB of stack per
// thread. Kernels that need such instructions keep a portable path.
#ifndef IGPT_CUDA_INTERPRET_H
#define IGPT_CUDA_INTERPRET_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

// --- Qualifiers -------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// Fibers of a block share their host thread's storage: one copy per block.
#define __shared__ static thread_local
#define __constant__ static

// --- Built-in types and variables -------------------------------------------------
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};

namespace interp {

struct CallSite {
    const char *file;
    int line;
};

// The running thread's coordinates.
struct Coordinates {
    uint3 thread_idx, block_idx;
    dim3 block_dim, grid_dim;
};
extern thread_local const Coordinates *current_coordinates;
#if defined(IGPT_INTERP_ASAN) || defined(IGPT_INTERP_TSAN)
// The checker builds compile kernels with -femulated-tls, which makes every
// static __shared__ array a per-block allocation (checker.cpp); the
// scheduler's own thread-locals are reached through a call instead.
#define IGPT_INTERP_CHECKER 1
const Coordinates *coordinates();
#define IGPT_INTERP_COORDINATES (::interp::coordinates())
#else
#define IGPT_INTERP_COORDINATES (::interp::current_coordinates)
#endif
// Dynamic shared memory of the running block (poisoned at block start).
void *dynamic_shared_memory();

void syncthreads(CallSite site);
// MMA_SYNC and LDMATRIX: the tensor-core twins (tensor_core.h); `value` is
// a pointer to the lane's data, which the release fills in.
enum WarpOp { WARP_SYNC, SHFL_IDX, SHFL_XOR, SHFL_DOWN, SHFL_UP, BALLOT, ANY, ALL, MMA_SYNC, LDMATRIX };
// One lane's part of a warp collective: waits until every lane of `mask` has
// called the same collective at the same site with the same mask; returns this
// lane's result (raw bits).
uint64_t warp_collective(CallSite site, WarpOp op, unsigned mask, uint64_t value, int arg, int width);

template <typename T>
inline T shuffle(CallSite site, WarpOp op, unsigned mask, T value, int arg, int width) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    uint64_t raw = 0;
    std::memcpy(&raw, &value, sizeof(T));
    raw = warp_collective(site, op, mask, raw, arg, width);
    T out;
    std::memcpy(&out, &raw, sizeof(T));
    return out;
}

// Thread and block orders of the scheduler.
enum Order { ORDER_FORWARD, ORDER_REVERSE, ORDER_RANDOM };
// Runs body, the launch of `kernel`, as a grid of blocks; aborts with `name`
// and the launch site on misuse or when the launch exceeds the target GPU's limits.
void run_grid(const char *name, const void *kernel, CallSite site, dim3 grid, dim3 block, size_t shared_bytes,
              const std::function<void()> &body);

}  // namespace interp

// Order of threads within a block and of blocks within a grid, for every
// following launch; seed for ORDER_RANDOM.
void interp_set_order(interp::Order order, uint64_t seed);

#define threadIdx (IGPT_INTERP_COORDINATES->thread_idx)
#define blockIdx (IGPT_INTERP_COORDINATES->block_idx)
#define blockDim (IGPT_INTERP_COORDINATES->block_dim)
#define gridDim (IGPT_INTERP_COORDINATES->grid_dim)
#define warpSize 32

// --- Synchronisation and warp collectives ----------------------------------------
#define IGPT_INTERP_SITE (::interp::CallSite{__FILE__, __LINE__})
#define __syncthreads() ::interp::syncthreads(IGPT_INTERP_SITE)
#define __syncwarp(...) \
    ((void)::interp::warp_collective(IGPT_INTERP_SITE, ::interp::WARP_SYNC, IGPT_INTERP_MASK(__VA_ARGS__), 0, 0, 32))
#define IGPT_INTERP_MASK(...) (0xffffffffu __VA_OPT__(*0 + (__VA_ARGS__)))
#define IGPT_INTERP_SHFL(op, mask, value, arg, ...) \
    ::interp::shuffle(IGPT_INTERP_SITE, op, mask, value, arg, IGPT_INTERP_WIDTH(__VA_ARGS__))
#define IGPT_INTERP_WIDTH(...) (32 __VA_OPT__(*0 + (__VA_ARGS__)))
#define __shfl_sync(mask, value, lane, ...) IGPT_INTERP_SHFL(::interp::SHFL_IDX, mask, value, lane, __VA_ARGS__)
#define __shfl_xor_sync(mask, value, lane_mask, ...) \
    IGPT_INTERP_SHFL(::interp::SHFL_XOR, mask, value, lane_mask, __VA_ARGS__)
#define __shfl_down_sync(mask, value, delta, ...) IGPT_INTERP_SHFL(::interp::SHFL_DOWN, mask, value, delta, __VA_ARGS__)
#define __shfl_up_sync(mask, value, delta, ...) IGPT_INTERP_SHFL(::interp::SHFL_UP, mask, value, delta, __VA_ARGS__)
#define __ballot_sync(mask, pred) \
    ((unsigned)::interp::warp_collective(IGPT_INTERP_SITE, ::interp::BALLOT, mask, (pred) ? 1 : 0, 0, 32))
#define __any_sync(mask, pred) \
    ((int)::interp::warp_collective(IGPT_INTERP_SITE, ::interp::ANY, mask, (pred) ? 1 : 0, 0, 32))
#define __all_sync(mask, pred) \
    ((int)::interp::warp_collective(IGPT_INTERP_SITE, ::interp::ALL, mask, (pred) ? 1 : 0, 0, 32))

// Dynamic shared memory: `IGPT_DYNAMIC_SHARED(float, smem);` in a kernel.
#define IGPT_DYNAMIC_SHARED(type, name) type *name = static_cast<type *>(::interp::dynamic_shared_memory())

// --- Atomics (one block runs at a time, but keep them real atomics) ----------------
inline float atomicAdd(float *address, float value) {
    uint32_t *bits = reinterpret_cast<uint32_t *>(address);
    uint32_t old = __atomic_load_n(bits, __ATOMIC_RELAXED), desired;
    float f;
    do {
        std::memcpy(&f, &old, 4);
        f += value;
        std::memcpy(&desired, &f, 4);
    } while (!__atomic_compare_exchange_n(bits, &old, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    std::memcpy(&f, &old, 4);
    return f;
}
inline int atomicAdd(int *address, int value) { return __atomic_fetch_add(address, value, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned *address, unsigned value) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
inline unsigned long long atomicAdd(unsigned long long *address, unsigned long long value) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
inline int atomicMax(int *address, int value) {
    int old = __atomic_load_n(address, __ATOMIC_RELAXED);
    while (old < value &&
           !__atomic_compare_exchange_n(address, &old, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline int atomicCAS(int *address, int compare, int value) {
    __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// --- Device math ------------------------------------------------------------------
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline float __int_as_float(int x) {
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}
inline int __float_as_int(float x) {
    int i;
    std::memcpy(&i, &x, 4);
    return i;
}

// --- bfloat16 (the subset of cuda_bf16.h the kernels use) ---------------------------
struct __nv_bfloat16 {
    uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = (uint32_t)h.bits << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
// Round to nearest even, as the hardware conversion; NaN stays NaN.
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    __nv_bfloat16 h;
    if ((u & 0x7fffffffu) > 0x7f800000u) h.bits = (uint16_t)((u >> 16) | 0x40u);
    else h.bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return h;
}

// --- Runtime API (host memory stands in for device memory) ---------------------------
typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
} cudaError_t;
typedef enum {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
} cudaMemcpyKind;
typedef struct interp_stream *cudaStream_t;
typedef struct interp_event *cudaEvent_t;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

cudaError_t cudaMalloc(void **pointer, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T **pointer, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void **>(pointer), bytes);
}
cudaError_t cudaFree(void *pointer);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream = 0);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
namespace interp {
// Records a kernel's dynamic shared memory opt-in (limits.cpp).
cudaError_t set_kernel_attribute(const void *kernel, cudaFuncAttribute attribute, int value);
}  // namespace interp
template <typename... Params>
inline cudaError_t cudaFuncSetAttribute(void (*kernel)(Params...), cudaFuncAttribute attribute, int value) {
    return interp::set_kernel_attribute(reinterpret_cast<const void *>(kernel), attribute, value);
}

#endif
