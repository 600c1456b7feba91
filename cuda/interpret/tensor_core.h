// The interpret twins of the tensor-core primitives of cuda/mma.cuh:
// mma.sync m16n8k16 (bf16 -> fp32), ldmatrix (x1/x2/x4, .trans) and
// cp.async with commit/wait groups, with the fragment layouts of the PTX ISA.
//
// mma and ldmatrix are warp collectives, like the shuffles: every lane of the
// warp must arrive at the same call site (else the scheduler aborts), each
// lane hands in its registers (ldmatrix: the 16-byte row it addresses), the
// result is computed once for the whole warp (tensor_core.cpp) and each lane
// takes back its own fragment.
//
// The memory accesses happen here, in functions inlined into the kernel's
// source, on the thread's own fiber and through the kernel's real pointers:
// so AddressSanitizer sees them (out of bounds, with the GPU thread named).
// ThreadSanitizer does not report races through them yet (docs/cuda.md,
// "Tensor cores in the interpret mode").
//   - ldmatrix: each addressing lane reads its row when it arrives, before it
//     waits for the warp. A row written by another lane of the warp must be
//     ordered before it by __syncwarp or __syncthreads, as on a GPU;
//   - cp.async: the 16 destination bytes are poisoned (0xFF) at the call and
//     the copy is made when cp_async_wait retires its group, by that thread:
//     a thread that reads the tile before its wait, or another thread's part
//     before the __syncthreads after the waits, reads NaN.
#ifndef IGPT_CUDA_INTERPRET_TENSOR_CORE_H
#define IGPT_CUDA_INTERPRET_TENSOR_CORE_H

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "interpret/interpret.h"

#if defined(IGPT_INTERP_TSAN)
// ThreadSanitizer's range annotations (exported by libtsan, not in its header).
extern "C" void __tsan_read_range(void *addr, unsigned long size);
extern "C" void __tsan_write_range(void *addr, unsigned long size);
#endif

namespace interp {

// The site of the kernel's own call, as a default argument of each twin
// (errors then name the kernel's line, not mma.cuh's). g++ and clang++ give
// a default argument's __builtin_FILE/LINE the caller's place, also one
// level down, as here; directly inside a braced initialiser g++ does not.
inline CallSite caller(const char *file = __builtin_FILE(), int line = __builtin_LINE()) { return {file, line}; }
#define IGPT_INTERP_CALLER (::interp::caller())

// One lane's part of mma.sync.m16n8k16: its fragments in, its D fragment out.
struct MmaLane {
    uint32_t a[4], b[2];
    float c[4], d[4];
};
// One lane's part of ldmatrix: the 8 16-bit elements of the row it addresses
// (lanes 8i..8i+7 for matrix i), and its registers out.
struct LdmatrixLane {
    uint16_t row[8];
    uint32_t r[4];
};
// ldmatrix's collective argument: the matrix count, and .trans.
const int LDMATRIX_TRANS = 0x100;

// Aborts (naming the site and the thread) unless p is a multiple of `align`.
void check_aligned(CallSite site, const char *what, const void *p, size_t align);

// The running thread's cp.async bookkeeping (tensor_core.cpp).
struct AsyncCopy {
    void *dst;
    const void *src;
    int src_bytes;
};
void async_copy_issue(CallSite site, void *dst, const void *src, int src_bytes);
void async_copy_commit(CallSite site);
// Takes the copies of every committed group but the newest keep_groups, in
// the order they were issued; valid until the thread's next call.
const AsyncCopy *async_copy_retire(CallSite site, int keep_groups, size_t *count);

// 16 bytes moved as two 8-byte words through registers: loads and stores
// that ThreadSanitizer instruments. A memcpy/memset call (or a copy loop the
// compiler turns into one) goes through TSan's interceptor, which the
// checker's ignore_noninstrumented_modules=1 leaves unchecked.
inline void copy_16_bytes(void *dst, const void *src) {
    uint64_t lo, hi;
    std::memcpy(&lo, src, 8);
    std::memcpy(&hi, static_cast<const char *>(src) + 8, 8);
    std::memcpy(dst, &lo, 8);
    std::memcpy(static_cast<char *>(dst) + 8, &hi, 8);
#if defined(IGPT_INTERP_TSAN)
    // The compiler may merge these copies into one that ThreadSanitizer does
    // not see (the poison of cp_async_16, a constant, was missed): tell it.
    __tsan_read_range(const_cast<void *>(src), 16);
    __tsan_write_range(dst, 16);
#endif
}

inline unsigned lane_id(void) { return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32; }

inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4], CallSite site) {
    MmaLane lane;
    std::memcpy(lane.a, a, sizeof lane.a);
    std::memcpy(lane.b, b, sizeof lane.b);
    std::memcpy(lane.c, c, sizeof lane.c);
    (void)warp_collective(site, MMA_SYNC, 0xffffffffu, (uint64_t)(uintptr_t)&lane, 0, 32);
    std::memcpy(d, lane.d, sizeof lane.d);
}

inline void ldmatrix(uint32_t *r, int matrices, bool trans, const void *smem_row, CallSite site) {
    LdmatrixLane lane;
    if (lane_id() < 8u * (unsigned)matrices) {
        check_aligned(site, "ldmatrix row address", smem_row, 16);
        copy_16_bytes(lane.row, smem_row);
    }
    const int arg = matrices | (trans ? LDMATRIX_TRANS : 0);
    (void)warp_collective(site, LDMATRIX, 0xffffffffu, (uint64_t)(uintptr_t)&lane, arg, 32);
    for (int i = 0; i < matrices; i++) r[i] = lane.r[i];
}

inline void cp_async_16(void *smem, const void *gmem, int src_bytes, CallSite site) {
    async_copy_issue(site, smem, gmem, src_bytes);
    static const unsigned char poison[16] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                             0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    copy_16_bytes(smem, poison);  // in flight: what a read finds there now is not the data
}

inline void cp_async_wait(int keep_groups, CallSite site) {
    size_t count = 0;
    const AsyncCopy *copies = async_copy_retire(site, keep_groups, &count);
    for (size_t i = 0; i < count; i++) {
        if (copies[i].src_bytes == 16) {
            copy_16_bytes(copies[i].dst, copies[i].src);
            continue;
        }
        unsigned char bytes[16];  // the first src_bytes from global memory, zeros after
        const unsigned char *src = static_cast<const unsigned char *>(copies[i].src);
        for (int b = 0; b < 16; b++) bytes[b] = b < copies[i].src_bytes ? src[b] : 0;
        copy_16_bytes(copies[i].dst, bytes);
    }
}

}  // namespace interp

#endif
