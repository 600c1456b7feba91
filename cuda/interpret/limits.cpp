// The launch limits of the target GPU (H100 / H200, compute capability 9.0),
// which a launch on a GPU fails with and the interpreter would otherwise
// run happily: threads per block, grid size, shared memory (above 48 KiB
// only after cudaFuncSetAttribute(MaxDynamicSharedMemorySize)), and
// registers: each kernel's count from the real sm_90 build
// (sm90_kernels.inc, made by sm90_kernels.sh) times the block's threads.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

#include "interpret/internal.h"
#include "interpret/interpret.h"

namespace interp {

namespace {

struct KernelResources {
    const char *symbol;       // the kernel's mangled name (the same under nvcc and g++)
    int registers;            // per thread
    int static_shared_bytes;  // __shared__ arrays
    int max_threads;          // __launch_bounds__, 0 if none
};

const KernelResources sm90_kernels[] = {
#include "interpret/sm90_kernels.inc"
    {nullptr, 0, 0, 0},
};

const int max_threads_per_block = 1024, max_block_z = 64, max_grid_yz = 65535;
const size_t default_shared_bytes = 48 * 1024;  // dynamic shared memory without an opt-in
const size_t max_shared_bytes = 227 * 1024;     // static + dynamic, with the opt-in
const int registers_per_block = 65536;

std::unordered_map<const void *, const KernelResources *> known;  // by kernel address, found once
std::unordered_map<const void *, size_t> shared_opt_in;           // cudaFuncSetAttribute

// "_Z<length><name>..." -> name (kernels are free functions).
std::string kernel_name_of(const char *symbol) {
    if (strncmp(symbol, "_Z", 2) != 0) return symbol;
    char *rest = nullptr;
    const long length = strtol(symbol + 2, &rest, 10);
    return std::string(rest, (size_t)length);
}

// A kernel the table names, in another instantiation than this one: the
// table is stale (a new template argument), and its registers unknown.
[[noreturn]] void table_is_stale(const char *symbol) {
    fprintf(stderr,
            "interpret: kernel %s has no row in cuda/interpret/sm90_kernels.inc (the sm_90 registers of each "
            "kernel): regenerate it with `make sm90-kernels` (needs nvcc)\n",
            symbol);
    fflush(stderr);
    abort();
}

// The sm_90 build's resources of a kernel, found by its symbol (the
// interpret builds link with -rdynamic, so that dladdr sees every kernel);
// nullptr for a kernel the table lacks (the tests' own kernels).
const KernelResources *resources_of(const void *kernel) {
    auto it = known.find(kernel);
    if (it != known.end()) return it->second;
    const KernelResources *found = nullptr;
    bool name_known = false;
    Dl_info info;
    if (dladdr(kernel, &info) && info.dli_sname) {
        const std::string name = kernel_name_of(info.dli_sname);
        for (const KernelResources *r = sm90_kernels; r->symbol && !found; r++) {
            if (strcmp(r->symbol, info.dli_sname) == 0) found = r;
            name_known = name_known || kernel_name_of(r->symbol) == name;
        }
        if (!found && name_known) table_is_stale(info.dli_sname);
    }
    known[kernel] = found;
    return found;
}

[[noreturn]] void launch_fails(const char *name, CallSite site, dim3 grid, dim3 block, const std::string &why) {
    fprintf(stderr, "interpret: kernel %s launched at %s:%d with grid (%u,%u,%u) and block (%u,%u,%u): %s\n", name,
            site.file, site.line, grid.x, grid.y, grid.z, block.x, block.y, block.z, why.c_str());
    fflush(stderr);
    abort();
}

}  // namespace

cudaError_t set_kernel_attribute(const void *kernel, cudaFuncAttribute attribute, int value) {
    if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0) return cudaErrorInvalidValue;
    const KernelResources *r = resources_of(kernel);
    const size_t static_bytes = r ? (size_t)r->static_shared_bytes : 0;
    if ((size_t)value + static_bytes > max_shared_bytes) return cudaErrorInvalidValue;
    shared_opt_in[kernel] = (size_t)value;
    return cudaSuccess;
}

void check_launch_limits(const char *name, const void *kernel, CallSite site, dim3 grid, dim3 block,
                         size_t dynamic_shared_bytes) {
    char why[512];
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
        launch_fails(name, site, grid, block, "an empty grid or block");
    if (threads > (unsigned long long)max_threads_per_block || block.z > (unsigned)max_block_z) {
        snprintf(why, sizeof why, "%llu threads per block (the limit is %d, and %d in z)", threads,
                 max_threads_per_block, max_block_z);
        launch_fails(name, site, grid, block, why);
    }
    if (grid.x > 2147483647u || grid.y > (unsigned)max_grid_yz || grid.z > (unsigned)max_grid_yz) {
        snprintf(why, sizeof why, "grid too large (at most 2^31 - 1 blocks in x, %d in y and z)", max_grid_yz);
        launch_fails(name, site, grid, block, why);
    }
    const KernelResources *r = resources_of(kernel);
    if (dynamic_shared_bytes > default_shared_bytes) {
        auto it = shared_opt_in.find(kernel);
        const size_t allowed = it == shared_opt_in.end() ? 0 : it->second;
        if (dynamic_shared_bytes > allowed) {
            snprintf(why, sizeof why,
                     "%zu bytes of dynamic shared memory, above 48 KiB, need "
                     "cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, %zu) first "
                     "(this kernel's opt-in: %zu)",
                     dynamic_shared_bytes, dynamic_shared_bytes, allowed);
            launch_fails(name, site, grid, block, why);
        }
    }
    const size_t static_bytes = r ? (size_t)r->static_shared_bytes : 0;
    if (static_bytes + dynamic_shared_bytes > max_shared_bytes) {
        snprintf(why, sizeof why, "%zu bytes of shared memory (%zu static + %zu dynamic); the limit is 227 KiB",
                 static_bytes + dynamic_shared_bytes, static_bytes, dynamic_shared_bytes);
        launch_fails(name, site, grid, block, why);
    }
    if (!r) return;
    if (r->max_threads > 0 && threads > (unsigned long long)r->max_threads) {
        snprintf(why, sizeof why, "%llu threads, but the kernel was built with __launch_bounds__(%d)", threads,
                 r->max_threads);
        launch_fails(name, site, grid, block, why);
    }
    // Registers are given out per warp, in units of 256 (8 per thread).
    const unsigned long long warps = (threads + 31) / 32;
    const unsigned long long registers = (unsigned long long)((r->registers + 7) / 8 * 8) * 32 * warps;
    if (registers > (unsigned long long)registers_per_block) {
        snprintf(why, sizeof why,
                 "%d registers per thread (sm_90 build) x %llu threads = %llu registers, more than the %d of a "
                 "block",
                 r->registers, threads, registers, registers_per_block);
        launch_fails(name, site, grid, block, why);
    }
}

}  // namespace interp
