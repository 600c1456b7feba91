// The warp-wide half of the tensor-core twins (tensor_core.h): the matrix
// product and the ldmatrix exchange, computed once when every lane of the
// warp has arrived, and each thread's cp.async groups.
//
// Fragment layouts, from the PTX ISA ("Matrix Fragments for mma.m16n8k16 with
// floating point type", "Warp-level matrix load instruction: ldmatrix"),
// with groupID = lane / 4 and threadID_in_group = lane % 4; element i of a
// fragment is bits 16*(i%2).. of register i/2:
//   A (16x16, row-major), a0..a7: row = groupID for i in {0,1,4,5}, else
//     groupID + 8; col = 2*threadID_in_group + (i & 1), + 8 for i >= 4;
//   B (16x8, column-major), b0..b3: row = 2*threadID_in_group + (i & 1),
//     + 8 for i >= 2; col = groupID;
//   C and D (16x8, fp32), c0..c3: row = groupID for i < 2, else groupID + 8;
//     col = 2*threadID_in_group + (i & 1);
//   ldmatrix: lane 8*m + j addresses row j of matrix m; register m of lane l
//     holds row l/4, elements 2*(l%4) and 2*(l%4) + 1 (.trans: of the
//     transposed matrix).
#include "interpret/tensor_core.h"

#include <cstdarg>
#include <cstdio>
#include <vector>

#include "interpret/internal.h"

namespace interp {

namespace {

[[noreturn]] void fail_at(CallSite site, const char *format, ...) __attribute__((format(printf, 2, 3)));
void fail_at(CallSite site, const char *format, ...) {
    char what[512];
    va_list ap;
    va_start(ap, format);
    vsnprintf(what, sizeof what, format, ap);
    va_end(ap);
    if (!kernel_running()) kernel_fail("%s at %s:%d, outside a kernel", what, site.file, site.line);
    kernel_fail("thread (%u,%u,%u): %s at %s:%d", threadIdx.x, threadIdx.y, threadIdx.z, what, site.file, site.line);
}

float bf16_bits_to_float(uint32_t bits) {
    const uint32_t u = (bits & 0xffffu) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Element i of a fragment: 16 bits of register i / 2, low half first.
uint32_t element(const uint32_t *registers, int i) { return registers[i / 2] >> (16 * (i % 2)) & 0xffffu; }

int a_row(int group, int i) { return (i < 2 || (i >= 4 && i < 6)) ? group : group + 8; }
int a_col(int tid_in_group, int i) { return tid_in_group * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
int b_row(int tid_in_group, int i) { return tid_in_group * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
int c_row(int group, int i) { return i < 2 ? group : group + 8; }
int c_col(int tid_in_group, int i) { return tid_in_group * 2 + (i & 1); }

// D = A B + C for the whole warp. The products of two bf16 are exact in
// fp32 (8 + 8 significant bits); they are added to C in fp32, k = 0..15 in
// order, each addition rounded to nearest. Real tensor cores add the 16
// products (in blocks, with C) after aligning them to the largest exponent,
// truncating the bits that fall off, and normalise once (Fasi, Higham,
// Mikaitis, Pranesh, "Numerical behavior of NVIDIA tensor cores", 2021):
// rounding toward zero, in another order. Both are within a few fp32 units of
// the exact sum per mma; the CUDA tests' tolerances take u as 4x fp32's for
// tensor-core products (docs/cuda.md, "Tolerances").
void release_mma(MmaLane *const lanes[32]) {
    float a[16][16], b[16][8], c[16][8];
    for (int l = 0; l < 32; l++) {
        const int group = l / 4, tid_in_group = l % 4;
        for (int i = 0; i < 8; i++)
            a[a_row(group, i)][a_col(tid_in_group, i)] = bf16_bits_to_float(element(lanes[l]->a, i));
        for (int i = 0; i < 4; i++) b[b_row(tid_in_group, i)][group] = bf16_bits_to_float(element(lanes[l]->b, i));
        for (int i = 0; i < 4; i++) c[c_row(group, i)][c_col(tid_in_group, i)] = lanes[l]->c[i];
    }
    for (int l = 0; l < 32; l++) {
        const int group = l / 4, tid_in_group = l % 4;
        for (int i = 0; i < 4; i++) {
            const int row = c_row(group, i), col = c_col(tid_in_group, i);
            float sum = c[row][col];
            for (int k = 0; k < 16; k++) sum += a[row][k] * b[k][col];
            lanes[l]->d[i] = sum;
        }
    }
}

// Lane l's register m: row l/4 of matrix m (rows given by lanes 8m..8m+7),
// elements 2*(l%4) and 2*(l%4) + 1; transposed: column l/4, rows 2*(l%4)..+1.
void release_ldmatrix(int arg, LdmatrixLane *const lanes[32]) {
    const int matrices = arg & 0xff;
    const bool trans = (arg & LDMATRIX_TRANS) != 0;
    for (int l = 0; l < 32; l++)
        for (int m = 0; m < matrices; m++) {
            const int row = l / 4, col = 2 * (l % 4);
            uint32_t lo, hi;
            if (trans) {
                lo = lanes[8 * m + col]->row[row];
                hi = lanes[8 * m + col + 1]->row[row];
            } else {
                lo = lanes[8 * m + row]->row[col];
                hi = lanes[8 * m + row]->row[col + 1];
            }
            lanes[l]->r[m] = lo | hi << 16;
        }
}

// --- cp.async: each thread's groups --------------------------------------------------
struct ThreadCopies {
    std::vector<AsyncCopy> uncommitted;
    std::vector<std::vector<AsyncCopy>> groups;  // committed, oldest first
};
thread_local std::vector<ThreadCopies> copies_of_thread;  // by linear thread index in the block
thread_local std::vector<AsyncCopy> retired;

ThreadCopies &running_thread_copies(CallSite site) {
    if (!kernel_running()) fail_at(site, "cp.async outside a kernel");
    const unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    if (copies_of_thread.size() <= linear) copies_of_thread.resize(linear + 1);
    return copies_of_thread[linear];
}

}  // namespace

void release_matrix_collective(int op, int arg, void *const lane_data[32]) {
    if (op == MMA_SYNC) release_mma(reinterpret_cast<MmaLane *const *>(lane_data));
    else release_ldmatrix(arg, reinterpret_cast<LdmatrixLane *const *>(lane_data));
}

void check_aligned(CallSite site, const char *what, const void *p, size_t align) {
    if ((uintptr_t)p % align != 0) fail_at(site, "%s %p is not %zu-byte aligned", what, p, align);
}

void async_copy_issue(CallSite site, void *dst, const void *src, int src_bytes) {
    check_aligned(site, "cp.async shared-memory address", dst, 16);
    check_aligned(site, "cp.async global address", src, 16);
    if (src_bytes < 0 || src_bytes > 16) fail_at(site, "cp.async of %d source bytes (0..16)", src_bytes);
    running_thread_copies(site).uncommitted.push_back({dst, src, src_bytes});
}

void async_copy_commit(CallSite site) {
    ThreadCopies &t = running_thread_copies(site);
    t.groups.push_back(std::move(t.uncommitted));  // an empty group is a group too, as on a GPU
    t.uncommitted.clear();
}

const AsyncCopy *async_copy_retire(CallSite site, int keep_groups, size_t *count) {
    ThreadCopies &t = running_thread_copies(site);
    retired.clear();
    const size_t keep = keep_groups < 0 ? 0 : (size_t)keep_groups;
    size_t done = 0;
    while (t.groups.size() - done > keep) {
        retired.insert(retired.end(), t.groups[done].begin(), t.groups[done].end());
        done++;
    }
    t.groups.erase(t.groups.begin(), t.groups.begin() + (long)done);
    *count = retired.size();
    return retired.data();
}

void async_copies_end_block(void) {
    for (size_t i = 0; i < copies_of_thread.size(); i++) {
        const ThreadCopies &t = copies_of_thread[i];
        size_t waiting = 0;
        for (const auto &g : t.groups) waiting += g.size();
        if (!t.uncommitted.empty() || waiting > 0)
            kernel_fail(
                "thread %zu (linear index) ended with %zu cp.async copies never committed and %zu in %zu "
                "groups never waited for (cp_async_commit, then cp_async_wait<0> before the data is used)",
                i, t.uncommitted.size(), waiting, t.groups.size());
    }
    copies_of_thread.clear();
}

}  // namespace interp
