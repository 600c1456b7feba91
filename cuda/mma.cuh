// Tensor-core primitives for sm_80 and later: the warp-wide bf16 matrix
// product mma.sync m16n8k16 (fp32 accumulators), ldmatrix (8x8 tiles of
// 16-bit elements from shared memory into mma fragments) and cp.async
// (global -> shared copies that bypass the registers, in commit/wait groups).
//
// Each is a small function around one PTX instruction under nvcc; built with
// -DIGPT_INTERPRET it is a twin in cuda/interpret/tensor_core.h with the same
// fragment layouts (a warp collective for mma and ldmatrix, a deferred copy
// for cp.async), so that kernels built on them run in `make test`.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
// point type"), lane = threadIdx.x % 32, group = lane / 4, tid_in_group =
// lane % 4; each 32-bit register holds two bf16, the lower column (or row
// for B) in bits 0..15:
//   a[0]: A(group,     2*tid_in_group + {0,1})      A: 16x16, row-major
//   a[1]: A(group + 8, 2*tid_in_group + {0,1})
//   a[2]: A(group,     2*tid_in_group + 8 + {0,1})
//   a[3]: A(group + 8, 2*tid_in_group + 8 + {0,1})
//   b[0]: B(2*tid_in_group + {0,1},     group)      B: 16x8, "column-major"
//   b[1]: B(2*tid_in_group + 8 + {0,1}, group)
//   c[0], c[1]: C(group,     2*tid_in_group + {0,1})   C, D: 16x8, fp32
//   c[2], c[3]: C(group + 8, 2*tid_in_group + {0,1})
// ldmatrix: lanes 8i..8i+7 give the shared-memory addresses of the 8 rows
// (16 bytes each, 16-byte aligned) of matrix i; register r[i] of lane l gets
// row l/4, elements 2*(l%4) + {0,1} of matrix i (.trans: of its transpose).
// So ldmatrix_x4 of A's four 8x8 quarters (top-left, bottom-left, top-right,
// bottom-right) gives a[0..3], and ldmatrix_x2_trans of a row-major K x 8
// block of B (rows k, k + 8) gives b[0..1].
#ifndef IGPT_CUDA_MMA_CUH
#define IGPT_CUDA_MMA_CUH

#include <cstdint>
#include <cstring>

#include "common.cuh"

#ifdef IGPT_INTERPRET
#include "interpret/tensor_core.h"
// The twins take the caller's file and line as a last, defaulted argument.
#define IGPT_MMA_SITE , ::interp::CallSite site = IGPT_INTERP_CALLER
#define IGPT_MMA_SITE_ONLY ::interp::CallSite site = IGPT_INTERP_CALLER
#else
#define IGPT_MMA_SITE
#define IGPT_MMA_SITE_ONLY void
#endif

// Two floats rounded to bf16 (to nearest even) in one register: lo in bits 0..15.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const bf16 l = __float2bfloat16(lo), h = __float2bfloat16(hi);
    uint16_t lo_bits, hi_bits;
    memcpy(&lo_bits, &l, 2);
    memcpy(&hi_bits, &h, 2);
    return (uint32_t)lo_bits | (uint32_t)hi_bits << 16;
}

// D = A * B + C (m16n8k16; fragments above). d may be c.
__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                  const float c[4] IGPT_MMA_SITE) {
#ifdef IGPT_INTERPRET
    interp::mma_m16n8k16_bf16(d, a, b, c, site);
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

#ifndef IGPT_INTERPRET
// The 32-bit shared-window address that the .shared forms of ldmatrix and cp.async take.
__device__ __forceinline__ uint32_t shared_address(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
#endif

// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16. Every lane of the
// warp calls it; only the addresses of lanes 0-7 (x1), 0-15 (x2) or all (x4)
// are read. volatile: the result depends on shared memory, which the
// compiler does not see as an operand.
__device__ __forceinline__ void ldmatrix_x1(uint32_t r[1], const void *smem_row IGPT_MMA_SITE) {
#ifdef IGPT_INTERPRET
    interp::ldmatrix(r, 1, false, smem_row, site);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(shared_address(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void *smem_row IGPT_MMA_SITE) {
#ifdef IGPT_INTERPRET
    interp::ldmatrix(r, 2, false, smem_row, site);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(shared_address(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem_row IGPT_MMA_SITE) {
#ifdef IGPT_INTERPRET
    interp::ldmatrix(r, 4, false, smem_row, site);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t r[1], const void *smem_row IGPT_MMA_SITE) {
#ifdef IGPT_INTERPRET
    interp::ldmatrix(r, 1, true, smem_row, site);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                 : "=r"(r[0])
                 : "r"(shared_address(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void *smem_row IGPT_MMA_SITE) {
#ifdef IGPT_INTERPRET
    interp::ldmatrix(r, 2, true, smem_row, site);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(shared_address(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem_row IGPT_MMA_SITE) {
#ifdef IGPT_INTERPRET
    interp::ldmatrix(r, 4, true, smem_row, site);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(smem_row)));
#endif
}

// cp.async.cg.shared.global: 16 bytes from global to shared memory (both
// 16-byte aligned), cached in L2 only; the first src_bytes (0..16) are read,
// the rest of the 16 are zeros (src_bytes = 0: the out-of-range rows of a
// tile, nothing is read). The data is there only after a cp_async_wait that
// covers its group, and, for the other threads of the block, after the
// __syncthreads that follows. "memory": the compiler must not move shared
// memory accesses across these.
__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem, int src_bytes = 16 IGPT_MMA_SITE) {
#ifdef IGPT_INTERPRET
    interp::cp_async_16(smem, gmem, src_bytes, site);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :
                 : "r"(shared_address(smem)), "l"(__cvta_generic_to_global(gmem)), "r"(src_bytes)
                 : "memory");
#endif
}

// cp.async.commit_group: the copies issued since the last commit form a group.
__device__ __forceinline__ void cp_async_commit(IGPT_MMA_SITE_ONLY) {
#ifdef IGPT_INTERPRET
    interp::async_copy_commit(site);
#else
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// cp.async.wait_group N: waits until at most the N newest groups of this
// thread are still in flight (N = 0: all done).
template <int N>
__device__ __forceinline__ void cp_async_wait(IGPT_MMA_SITE_ONLY) {
    static_assert(N >= 0, "cp.async.wait_group takes a count of groups, 0 or more");
#ifdef IGPT_INTERPRET
    interp::cp_async_wait(N, site);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

#endif
