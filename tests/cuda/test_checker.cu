// The interpret mode as a checker: one planted bug for each check, caught
// with the kernel, block, thread and call site (docs/cuda.md, "The checker").
//   - launch limits of the target GPU (every interpret build, limits.cpp);
//   - out-of-bounds accesses (the AddressSanitizer build, build/interp-asan);
//   - races in shared and global memory (the ThreadSanitizer build,
//     build/interp-tsan).
// Each bug runs in a child process, which must abort. A GPU reports these as
// launch errors or through compute-sanitizer instead: interpreter only.
#include <cctype>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "cuda_test.h"

static float *child_buffer;
static const int child_threads = 64;

// Runs fn in a child; checks that it aborted and that its stderr names every
// one of `wanted` (the kernel, the site, the coordinates...).
static void expect_abort(void (*fn)(void), const std::vector<std::string> &wanted) {
    std::string err;
    int sig = run_in_child(fn, &err);
    CHECK(sig == SIGABRT, "the planted bug was not caught: signal %d, stderr: %s", sig, err.c_str());
    for (const std::string &w : wanted)
        CHECK(err.find(w) != std::string::npos, "the report lacks \"%s\": %s", w.c_str(), err.c_str());
}

static std::string site(int line) { return "test_checker.cu:" + std::to_string(line); }

// --- Launch limits (every interpret build) ---------------------------------------------------
__global__ void fill_kernel(float *out) {
    if (blockIdx.y == 0 && threadIdx.x < child_threads) out[threadIdx.x] = 1.0f;
}

static void launch_1025_threads(void) { LAUNCH(fill_kernel, dim3(1), dim3(1025), 0, 0, child_buffer); }
static void launch_grid_y_too_large(void) { LAUNCH(fill_kernel, dim3(1, 65536), dim3(32), 0, 0, child_buffer); }

TEST(test_checker_block_and_grid_limits) {
    INTERPRET_ONLY();
    child_buffer = device_alloc<float>(child_threads);
    expect_abort(launch_1025_threads, {"fill_kernel", "1025 threads per block"});
    expect_abort(launch_grid_y_too_large, {"fill_kernel", "grid too large"});
    LAUNCH(fill_kernel, dim3(1), dim3(1024), 0, 0, child_buffer);  // the largest legal ones run
    LAUNCH(fill_kernel, dim3(1, 65535), dim3(1), 0, 0, child_buffer);
    cudaFree(child_buffer);
}

// Dynamic shared memory above 48 KiB needs the kernel's opt-in first.
__global__ void big_shared_kernel(float *out) {
    IGPT_DYNAMIC_SHARED(float, tile);
    tile[threadIdx.x] = 2.0f;
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x + 1) % blockDim.x];
}
static const size_t big_shared_bytes = 64 * 1024;
static void launch_big_shared(void) {
    LAUNCH(big_shared_kernel, dim3(1), dim3(child_threads), big_shared_bytes, 0, child_buffer);
}
static void launch_above_227k(void) {
    LAUNCH(big_shared_kernel, dim3(1), dim3(child_threads), 228 * 1024, 0, child_buffer);
}

TEST(test_checker_shared_memory_opt_in) {
    INTERPRET_ONLY();
    child_buffer = device_alloc<float>(child_threads);
    expect_abort(launch_big_shared, {"big_shared_kernel", "cudaFuncSetAttribute"});
    CUDA_CHECK(
        cudaFuncSetAttribute(big_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)big_shared_bytes));
    launch_big_shared();
    CHECK(to_host(child_buffer, child_threads)[0] == 2.0f, "the opted-in launch did not run");
    CHECK(
        cudaFuncSetAttribute(big_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) != cudaSuccess,
        "an opt-in above 227 KiB was accepted");
    expect_abort(launch_above_227k, {"big_shared_kernel", "cudaFuncSetAttribute"});
    cudaFree(child_buffer);
}

// About 100 values live at once: well over 64 registers per thread in the
// sm_90 build (its row in cuda/interpret/sm90_kernels.inc), so 1024 threads
// of it do not fit the 65536 registers of a block.
static const int hungry_values = 100;
#ifdef __CUDACC__
#define UNROLLED _Pragma("unroll")
#else
#define UNROLLED
#endif
__global__ void register_hungry_kernel(float *out, const float *in) {
    float v[hungry_values];
    UNROLLED for (int i = 0; i < hungry_values; i++) v[i] = in[threadIdx.x + i];
    float sum = 0.0f;
    UNROLLED for (int i = 0; i < hungry_values; i++) sum += v[i] * v[hungry_values - 1 - i];
    UNROLLED for (int i = 0; i < hungry_values; i++) out[i * blockDim.x + threadIdx.x] = v[i] * sum;
}
static float *child_input;
static void launch_hungry_1024(void) {
    LAUNCH(register_hungry_kernel, dim3(1), dim3(1024), 0, 0, child_buffer, child_input);
}

TEST(test_checker_registers_times_threads) {
    INTERPRET_ONLY();
    const size_t n = 1024 * hungry_values;
    child_buffer = device_alloc<float>(n);
    child_input = to_device(std::vector<float>(n, 0.5f));
    expect_abort(launch_hungry_1024, {"register_hungry_kernel", "registers per thread (sm_90 build)"});
    LAUNCH(register_hungry_kernel, dim3(1), dim3(128), 0, 0, child_buffer, child_input);
    cudaFree(child_buffer);
    cudaFree(child_input);
}

// --- The register table covers every kernel --------------------------------------------------
// Rows as limits.cpp reads them; this test reads the same file.
struct TableRow {
    const char *symbol;
    int registers, static_shared_bytes, max_threads;
};
static const TableRow sm90_rows[] = {
#include "interpret/sm90_kernels.inc"
};

// The kernel names in a source file: `__global__ [void] [__launch_bounds__(...)] [void] NAME(`.
static std::set<std::string> kernels_defined_in(const std::string &path) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    const std::string s = text.str();
    static const std::regex kernel(
        R"(__global__\s+(?:void\s+)?(?:__launch_bounds__\([^)]*\)\s*)?(?:void\s+)?(\w+)\s*\()");
    std::set<std::string> names;
    for (std::sregex_iterator it(s.begin(), s.end(), kernel), end; it != end; ++it) names.insert((*it)[1].str());
    return names;
}

// "_Z<length><name>..." (kernels are free functions) -> name.
static std::string kernel_name_of(const std::string &symbol) {
    size_t at = 2, length = 0;
    while (at < symbol.size() && isdigit((unsigned char)symbol[at]))
        length = length * 10 + (size_t)(symbol[at++] - '0');
    return symbol.compare(0, 2, "_Z") == 0 ? symbol.substr(at, length) : symbol;
}

TEST(test_checker_sm90_table_lists_every_kernel) {
    INTERPRET_ONLY();  // reads the sources, which a GPU machine may not have
    std::set<std::string> in_sources, in_table;
    std::vector<std::string> files = {"bench/gpu_bench.cu", "tests/cuda/test_checker.cu", "tests/cuda/test_mma.cu"};
    for (const auto &entry : std::filesystem::directory_iterator("cuda"))
        if (entry.path().extension() == ".cu" || entry.path().extension() == ".cuh") files.push_back(entry.path());
    for (const std::string &f : files)
        for (const std::string &k : kernels_defined_in(f)) in_sources.insert(k);
    for (const TableRow &r : sm90_rows) in_table.insert(kernel_name_of(r.symbol));
    const char *how = "regenerate cuda/interpret/sm90_kernels.inc with `make sm90-kernels` (needs nvcc)";
    CHECK(in_sources.count("register_hungry_kernel") == 1, "the source scan found no kernels");
    for (const std::string &k : in_sources)
        CHECK(in_table.count(k) == 1, "kernel %s has no sm_90 registers: %s", k.c_str(), how);
    for (const std::string &k : in_table)
        CHECK(in_sources.count(k) == 1, "the table lists %s, which no source defines: %s", k.c_str(), how);
}

// --- Out of bounds (the AddressSanitizer build) ----------------------------------------------
static const int global_overflow_line = __LINE__ + 1;
__global__ void global_overflow_kernel(float *out, int n) { out[blockIdx.x * blockDim.x + threadIdx.x + 1] = (float)n; }
static void launch_global_overflow(void) {
    float *exact = nullptr;
    CUDA_CHECK(cudaMalloc(&exact, child_threads * sizeof(float)));
    LAUNCH(global_overflow_kernel, dim3(2), dim3(child_threads / 2), 0, 0, exact, child_threads);
}

TEST(test_checker_global_out_of_bounds) {
    NEEDS_ASAN();
    // The last thread writes one float past the 256-byte allocation.
    expect_abort(launch_global_overflow,
                 {"heap-buffer-overflow", "0 bytes to the right of 256-byte region", site(global_overflow_line),
                  "kernel global_overflow_kernel", "block (1,0,0), thread (31,0,0)"});
}

static const int use_after_free_line = __LINE__ + 1;
__global__ void read_kernel(float *out, const float *in) { out[threadIdx.x] = in[threadIdx.x]; }
static void launch_use_after_free(void) {
    float *freed = device_alloc<float>(child_threads);
    CUDA_CHECK(cudaFree(freed));
    LAUNCH(read_kernel, dim3(1), dim3(child_threads), 0, 0, child_buffer, freed);
}

TEST(test_checker_freed_memory) {
    NEEDS_ASAN();
    child_buffer = device_alloc<float>(child_threads);
    expect_abort(launch_use_after_free,
                 {"heap-use-after-free", site(use_after_free_line), "kernel read_kernel", "thread (0,0,0)"});
    cudaFree(child_buffer);
}

static const int dynamic_overflow_line = __LINE__ + 3;
__global__ void dynamic_shared_overflow_kernel(float *out) {
    IGPT_DYNAMIC_SHARED(float, tile);
    tile[threadIdx.x + 1] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x];
}
static void launch_dynamic_overflow(void) {
    LAUNCH(dynamic_shared_overflow_kernel, dim3(1), dim3(child_threads), child_threads * sizeof(float), 0,
           child_buffer);
}

static const int static_overflow_line = __LINE__ + 3;
__global__ void static_shared_overflow_kernel(float *out) {
    __shared__ float tile[child_threads];
    tile[threadIdx.x + 2] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x];
}
static void launch_static_overflow(void) {
    LAUNCH(static_shared_overflow_kernel, dim3(3), dim3(child_threads), 0, 0, child_buffer);
}

TEST(test_checker_shared_out_of_bounds) {
    NEEDS_ASAN();
    child_buffer = device_alloc<float>(child_threads);
    expect_abort(launch_dynamic_overflow, {"heap-buffer-overflow", site(dynamic_overflow_line),
                                           "kernel dynamic_shared_overflow_kernel", "thread (63,0,0)"});
    expect_abort(launch_static_overflow, {"heap-buffer-overflow", site(static_overflow_line),
                                          "kernel static_shared_overflow_kernel", "block (0,0,0), thread (62,0,0)"});
    cudaFree(child_buffer);
}

// --- Races (the ThreadSanitizer build) -------------------------------------------------------
// Each thread reads its neighbour's word with no barrier after the writes.
static const int shared_race_write_line = __LINE__ + 4;
static const int shared_race_read_line = __LINE__ + 4;
__global__ void shared_race_kernel(float *out) {
    __shared__ float tile[child_threads];
    tile[threadIdx.x] = (float)threadIdx.x;
    out[threadIdx.x] = tile[(threadIdx.x + 1) % child_threads];
}
static void launch_shared_race(void) { LAUNCH(shared_race_kernel, dim3(1), dim3(child_threads), 0, 0, child_buffer); }

// The same with the barrier: no report.
__global__ void shared_synced_kernel(float *out) {
    __shared__ float tile[child_threads];
    tile[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x + 1) % child_threads];
}

TEST(test_checker_shared_memory_race) {
    NEEDS_TSAN();
    child_buffer = device_alloc<float>(child_threads);
    expect_abort(launch_shared_race, {"data race", site(shared_race_write_line), site(shared_race_read_line),
                                      "kernel shared_race_kernel block (0,0,0) thread ("});
    LAUNCH(shared_synced_kernel, dim3(1), dim3(child_threads), 0, 0, child_buffer);
    cudaFree(child_buffer);
}

// Every block writes out[threadIdx.x]: two blocks, one address, no atomics.
static const int global_race_line = __LINE__ + 1;
__global__ void global_race_kernel(float *out) { out[threadIdx.x] = (float)blockIdx.x; }
static void launch_global_race(void) { LAUNCH(global_race_kernel, dim3(2), dim3(child_threads), 0, 0, child_buffer); }

// The same through atomics: no report.
__global__ void global_atomic_kernel(float *out) { atomicAdd(&out[threadIdx.x], 1.0f); }

TEST(test_checker_global_memory_race) {
    NEEDS_TSAN();
    child_buffer = device_alloc<float>(child_threads);
    expect_abort(launch_global_race,
                 {"data race", site(global_race_line), "kernel global_race_kernel block (1,0,0) thread (",
                  "kernel global_race_kernel block (0,0,0) thread ("});
    CUDA_CHECK(cudaMemset(child_buffer, 0, child_threads * sizeof(float)));
    LAUNCH(global_atomic_kernel, dim3(4), dim3(child_threads), 0, 0, child_buffer);
    CHECK(to_host(child_buffer, child_threads)[5] == 4.0f, "atomics gave %g", to_host(child_buffer, child_threads)[5]);
    cudaFree(child_buffer);
}
