// The interpret mode itself: barriers, shared memory, warp collectives and
// atomics give the GPU's results under every thread order, and misuse aborts
// with the call site. The positive tests run on a GPU as well.
#include <csignal>
#include <string>

#include "cuda_test.h"

// --- Block reduction through static shared memory and barriers ---------------------
__global__ void block_sum_kernel(const float *in, float *out, int n) {
    __shared__ float scratch[32];
    float x = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x += in[i];
    x = block_sum(x, scratch);
    if (threadIdx.x == 0) out[blockIdx.x] = x;
}

TEST(test_interp_block_reduction_all_orders) {
    const int n = 5000, blocks = 3;
    std::vector<float> h(n);
    for (int i = 0; i < n; i++) h[(size_t)i] = (float)(i % 7);
    double want = 0;
    for (float v : h) want += v;
    float *in = to_device(h), *out = device_alloc<float>(blocks);
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        for (int threads : {32, 96, 256}) {
            LAUNCH(block_sum_kernel, dim3(blocks), dim3(threads), 0, 0, in, out, n);
            std::vector<float> got = to_host(out, blocks);
            double sum = got[0] + got[1] + got[2];
            CHECK(sum == want, "%s order, %d threads: sum %.1f, want %.1f", o.name, threads, sum, want);
        }
    }
    cudaFree(in);
    cudaFree(out);
}

// --- A missing barrier shows under some thread order -------------------------------
__global__ void neighbour_kernel(float *out, bool with_barrier) {
    IGPT_DYNAMIC_SHARED(float, tile);
    const int t = threadIdx.x, n = blockDim.x;
    tile[t] = (float)t;
    if (with_barrier) __syncthreads();
    out[t] = tile[(t + 1) % n];
}

TEST(test_interp_missing_barrier_is_exposed) {
    INTERPRET_ONLY();
    const int n = 64;
    float *out = device_alloc<float>(n);
    int wrong_orders = 0;
    for (bool barrier : {true, false})
        for (const ScheduleOrder &o : schedule_orders()) {
            use_schedule_order(o);
            LAUNCH(neighbour_kernel, dim3(1), dim3(n), n * sizeof(float), 0, out, barrier);
            std::vector<float> got = to_host(out, n);
            bool right = true;
            for (int t = 0; t < n; t++) right = right && got[(size_t)t] == (float)((t + 1) % n);
            if (barrier) CHECK(right, "%s order: wrong result with the barrier", o.name);
            else wrong_orders += !right;
        }
    CHECK(wrong_orders >= 2, "without the barrier only %d of 3 orders gave a wrong result", wrong_orders);
    cudaFree(out);
}

// --- Misuse aborts with the call site ----------------------------------------------------
static const int divergent_barrier_line = __LINE__ + 4;
__global__ void divergent_barrier_kernel(float *out) {
    if (threadIdx.x < 16) {
        out[threadIdx.x] = 1.0f;
        __syncthreads();
    } else {
        __syncthreads();
    }
}

static float *child_buffer;
static void launch_divergent_barrier(void) { LAUNCH(divergent_barrier_kernel, dim3(1), dim3(32), 0, 0, child_buffer); }

TEST(test_interp_divergent_barrier_aborts) {
    INTERPRET_ONLY();
    child_buffer = device_alloc<float>(32);
    std::string err;
    int sig = run_in_child(launch_divergent_barrier, &err);
    CHECK(sig == SIGABRT, "ended with signal %d, want SIGABRT", sig);
    std::string site = "test_interpret.cu:" + std::to_string(divergent_barrier_line);
    CHECK(err.find("divergent __syncthreads") != std::string::npos && err.find(site) != std::string::npos &&
              err.find("divergent_barrier_kernel") != std::string::npos,
          "message does not name the barrier %s: %s", site.c_str(), err.c_str());
    cudaFree(child_buffer);
}

static const int early_return_line = __LINE__ + 4;
__global__ void early_return_kernel(float *out) {
    if (threadIdx.x >= 40) return;
    out[threadIdx.x] = 2.0f;
    __syncthreads();
}
static void launch_early_return(void) { LAUNCH(early_return_kernel, dim3(2), dim3(64), 0, 0, child_buffer); }

TEST(test_interp_early_return_before_barrier_aborts) {
    INTERPRET_ONLY();
    child_buffer = device_alloc<float>(64);
    std::string err;
    int sig = run_in_child(launch_early_return, &err);
    std::string site = "test_interpret.cu:" + std::to_string(early_return_line);
    CHECK(sig == SIGABRT && err.find(site) != std::string::npos && err.find("returned") != std::string::npos,
          "signal %d, message: %s", sig, err.c_str());
    cudaFree(child_buffer);
}

// --- Warp collectives -------------------------------------------------------------------------
__global__ void shuffle_kernel(int *out) {
    const int lane = threadIdx.x % 32;
    const int v = 100 * (int)threadIdx.x;
    int *o = out + threadIdx.x * 8;
    o[0] = __shfl_xor_sync(0xffffffffu, v, 5);
    o[1] = __shfl_down_sync(0xffffffffu, v, 3);
    o[2] = __shfl_up_sync(0xffffffffu, v, 2, 8);
    o[3] = __shfl_sync(0xffffffffu, v, 7, 16);
    o[4] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
    o[5] = __any_sync(0xffffffffu, lane == 17);
    o[6] = __all_sync(0xffffffffu, lane < 31);
    // Half-warp collective with its own mask.
    o[7] = lane < 16 ? __shfl_xor_sync(0x0000ffffu, v, 1) : -1;
}

TEST(test_interp_warp_shuffles) {
    const int n = 64;
    int *out = device_alloc<int>(n * 8);
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        LAUNCH(shuffle_kernel, dim3(1), dim3(n), 0, 0, out);
        std::vector<int> got = to_host(out, n * 8);
        int bad = 0;
        for (int t = 0; t < n; t++) {
            const int lane = t % 32, base = t - lane;
            unsigned ballot = 0;
            for (int j = 0; j < 32; j++) ballot |= (unsigned)(j % 3 == 0) << j;
            const int want[8] = {100 * (base + (lane ^ 5)),
                                 100 * (lane + 3 < 32 ? t + 3 : t),
                                 100 * (lane % 8 >= 2 ? t - 2 : t),
                                 100 * (base + (lane & ~15) + 7),
                                 (int)ballot,
                                 1,
                                 0,
                                 lane < 16 ? 100 * (t ^ 1) : -1};
            for (int k = 0; k < 8; k++)
                if (got[(size_t)t * 8 + k] != want[k] && bad++ < 5)
                    CHECK(false, "%s order: thread %d result %d = %d, want %d", o.name, t, k, got[(size_t)t * 8 + k],
                          want[k]);
        }
    }
    cudaFree(out);
}

static const int mismatched_mask_line = __LINE__ + 4;
__global__ void mismatched_mask_kernel(float *out) {
    if (threadIdx.x == 5) return;
    float v = (float)threadIdx.x;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, v, 1);
}
static void launch_mismatched_mask(void) { LAUNCH(mismatched_mask_kernel, dim3(1), dim3(32), 0, 0, child_buffer); }

TEST(test_interp_mismatched_warp_mask_aborts) {
    INTERPRET_ONLY();
    child_buffer = device_alloc<float>(32);
    std::string err;
    int sig = run_in_child(launch_mismatched_mask, &err);
    std::string site = "test_interpret.cu:" + std::to_string(mismatched_mask_line);
    CHECK(sig == SIGABRT && err.find("mismatched warp collective") != std::string::npos &&
              err.find(site) != std::string::npos,
          "signal %d, message: %s", sig, err.c_str());
    cudaFree(child_buffer);
}

__global__ void mask_without_caller_kernel(float *out) { out[threadIdx.x] = __shfl_xor_sync(0x0000fffeu, 1.0f, 1); }
static void launch_mask_without_caller(void) {
    LAUNCH(mask_without_caller_kernel, dim3(1), dim3(32), 0, 0, child_buffer);
}

TEST(test_interp_mask_without_caller_aborts) {
    INTERPRET_ONLY();
    child_buffer = device_alloc<float>(32);
    std::string err;
    int sig = run_in_child(launch_mask_without_caller, &err);
    CHECK(sig == SIGABRT && err.find("does not include itself") != std::string::npos, "signal %d, message: %s", sig,
          err.c_str());
    cudaFree(child_buffer);
}

// --- Atomics, poisoned shared memory, coordinates ---------------------------------------------------
__global__ void atomic_kernel(int *counter, float *sum) {
    atomicAdd(counter, 1);
    atomicAdd(sum, 0.5f);
}

TEST(test_interp_atomics_across_blocks) {
    int *counter = to_device(std::vector<int>{0});
    float *sum = to_device(std::vector<float>{0.0f});
    LAUNCH(atomic_kernel, dim3(7), dim3(96), 0, 0, counter, sum);
    CHECK(to_host(counter, 1)[0] == 7 * 96, "counter %d", to_host(counter, 1)[0]);
    CHECK(to_host(sum, 1)[0] == 7 * 96 * 0.5f, "sum %f", (double)to_host(sum, 1)[0]);
    cudaFree(counter);
    cudaFree(sum);
}

__global__ void read_unwritten_shared_kernel(float *out) {
    IGPT_DYNAMIC_SHARED(float, smem);
    out[threadIdx.x] = smem[threadIdx.x];
}

TEST(test_interp_dynamic_shared_is_poisoned) {
    INTERPRET_ONLY();
    float *out = device_alloc<float>(32);
    LAUNCH(read_unwritten_shared_kernel, dim3(1), dim3(32), 32 * sizeof(float), 0, out);
    std::vector<float> got = to_host(out, 32);
    bool all_nan = true;
    for (float v : got) all_nan = all_nan && std::isnan(v);
    CHECK(all_nan, "unwritten dynamic shared memory read as %f, want NaN", (double)got[0]);
    std::vector<float> fresh = to_host(device_alloc<float>(4), 4);
    CHECK(std::isnan(fresh[0]), "fresh cudaMalloc memory reads as %f, want NaN", (double)fresh[0]);
}

__global__ void coordinates_kernel(int *out) {
    const int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int nthreads = blockDim.x * blockDim.y * blockDim.z;
    out[bid * nthreads + tid] = bid * 1000 + tid;
}

TEST(test_interp_coordinates) {
    const dim3 grid(3, 2, 2), block(4, 3, 2);
    const int total = 12 * 24;
    int *out = device_alloc<int>(total);
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        LAUNCH(coordinates_kernel, grid, block, 0, 0, out);
        std::vector<int> got = to_host(out, total);
        int bad = 0;
        for (int i = 0; i < total; i++) bad += got[(size_t)i] != (i / 24) * 1000 + i % 24;
        CHECK(bad == 0, "%s order: %d wrong coordinates", o.name, bad);
    }
    cudaFree(out);
}

__global__ void bf16_round_trip_kernel(const float *in, float *out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = to_float(from_float<bf16>(in[i]));
}

// The interpreter's bf16 conversion against the hardware's (on a GPU) and
// against round-to-nearest-even worked out by hand.
TEST(test_interp_bf16_rounding) {
    const std::vector<float> in = {1.0f,
                                   1.00390625f /* tie: 1 + 2^-8, rounds to even 1.0 */,
                                   1.01171875f /* tie: 1 + 3*2^-8, rounds up to 1 + 2^-6 */,
                                   -3.14159265f,
                                   65504.0f,
                                   1e-40f,
                                   INFINITY,
                                   3.0e38f};
    const std::vector<float> want = {
        1.0f, 1.0f, 1.015625f, -3.140625f, 65536.0f, 9.183549615799121e-41f, INFINITY, 3.00405527047391e38f};
    float *d_in = to_device(in), *d_out = device_alloc<float>(in.size());
    LAUNCH(bf16_round_trip_kernel, dim3(1), dim3(32), 0, 0, d_in, d_out, (int)in.size());
    std::vector<float> got = to_host(d_out, in.size());
    for (size_t i = 0; i < in.size(); i++)
        CHECK(got[i] == want[i], "bf16(%g) = %.9g, want %.9g", (double)in[i], (double)got[i], (double)want[i]);
    cudaFree(d_in);
    cudaFree(d_out);
}
