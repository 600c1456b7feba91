// The tensor-core primitives of cuda/mma.cuh against the PTX ISA's layout
// tables, written out again here (not taken from the emulation): mma.sync
// m16n8k16 fed by ldmatrix and by plain loads, against a naive product on the
// CPU (exact: small integers in bf16); every ldmatrix variant element by
// element; cp.async with zero-fill. On a GPU these test the hardware, in the
// interpreter the emulation (cuda/interpret/tensor_core.cpp); a deliberately
// wrong layout must fail the same comparison. The deferred cp.async copy and
// the misuse the interpreter aborts on are interpreter-only tests.
#include <csignal>
#include <cstdint>
#include <string>

#include "cuda_test.h"
#include "mma.cuh"

// --- The PTX ISA's fragment tables (groupID = lane / 4, threadID_in_group = lane % 4) ---------
// Element i (0..7) of A's fragment: register i / 2, bits 16 * (i % 2).
__host__ __device__ inline int table_a_row(int lane, int i) {
    return (i < 2 || (i >= 4 && i < 6)) ? lane / 4 : lane / 4 + 8;
}
__host__ __device__ inline int table_a_col(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
// Element i (0..3) of B's fragment.
__host__ __device__ inline int table_b_row(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
__host__ __device__ inline int table_b_col(int lane, int) { return lane / 4; }
// Element i (0..3) of C's and D's fragments.
__host__ __device__ inline int table_c_row(int lane, int i) { return i < 2 ? lane / 4 : lane / 4 + 8; }
__host__ __device__ inline int table_c_col(int lane, int i) { return (lane % 4) * 2 + (i & 1); }

static const int M = 16, N = 8, K = 16;

// How the kernel fills the fragments of A and B.
enum FragmentSource {
    LDMATRIX_B_TRANS,  // A: ldmatrix_x4; B: ldmatrix_x2_trans of B stored K x N (as V in attention)
    LDMATRIX_B,        // A: ldmatrix_x4; B: ldmatrix_x2 of B stored N x K (as K in attention)
    TABLE_LOADS,       // plain 16-bit loads at the table's positions
    WRONG_A_SWAPPED,   // the table with a[1] and a[2] swapped: must not match
    WRONG_B_ROW,       // the table with B's row from the group, not threadID_in_group: must not match
};

__device__ inline uint32_t bits_of(bf16 x) {
    uint16_t u;
    memcpy(&u, &x, 2);
    return u;
}

// One warp: D = A B + C with A (16x16) and B in shared memory, D stored by the C table.
__global__ void mma_product_kernel(float *d_out, const bf16 *a, const bf16 *b_kn, const float *c, int source) {
    alignas(16) __shared__ bf16 a_tile[M * K];
    alignas(16) __shared__ bf16 b_kn_tile[K * N];  // B row-major: K rows of N
    alignas(16) __shared__ bf16 b_nk_tile[N * K];  // B transposed: N rows of K
    const int lane = threadIdx.x;
    for (int i = lane; i < M * K; i += 32) a_tile[i] = a[i];
    for (int i = lane; i < K * N; i += 32) {
        b_kn_tile[i] = b_kn[i];
        b_nk_tile[(i % N) * K + i / N] = b_kn[i];
    }
    __syncthreads();
    uint32_t af[4], bf[2];
    if (source == LDMATRIX_B_TRANS || source == LDMATRIX_B) {
        // Lane l addresses row l % 8 of A's quarter l / 8: top-left, bottom-left, top-right, bottom-right.
        const int row = lane % 8 + 8 * (lane / 8 % 2), col = 8 * (lane / 16);
        ldmatrix_x4(af, &a_tile[row * K + col]);
        if (source == LDMATRIX_B_TRANS) ldmatrix_x2_trans(bf, &b_kn_tile[(lane % 16) * N]);
        else ldmatrix_x2(bf, &b_nk_tile[(lane % 8) * K + 8 * (lane / 8 % 2)]);
    } else {
        for (int r = 0; r < 4; r++) {
            const int reg = source == WRONG_A_SWAPPED && (r == 1 || r == 2) ? 3 - r : r;
            const int i = 2 * reg;
            af[r] = bits_of(a_tile[table_a_row(lane, i) * K + table_a_col(lane, i)]) |
                    bits_of(a_tile[table_a_row(lane, i + 1) * K + table_a_col(lane, i + 1)]) << 16;
        }
        for (int r = 0; r < 2; r++) {  // through pack_bf16x2: element 2r in the low half
            float halves[2];
            for (int h = 0; h < 2; h++) {
                const int i = 2 * r + h;
                const int row = source == WRONG_B_ROW ? table_b_col(lane, i) * 2 % K + h : table_b_row(lane, i);
                halves[h] = __bfloat162float(b_kn_tile[row * N + table_b_col(lane, i)]);
            }
            bf[r] = pack_bf16x2(halves[0], halves[1]);
        }
    }
    float cf[4], df[4];
    for (int i = 0; i < 4; i++) cf[i] = c[table_c_row(lane, i) * N + table_c_col(lane, i)];
    mma_m16n8k16_bf16(df, af, bf, cf);
    for (int i = 0; i < 4; i++) d_out[table_c_row(lane, i) * N + table_c_col(lane, i)] = df[i];
}

// Small integers: every product and sum is exact in bf16 and fp32, so any
// order of summation gives the same bits and a layout error cannot hide.
static std::vector<float> small_integers(size_t n, uint64_t seed) {
    std::vector<float> v = random_floats(n, seed, -4.0f, 5.0f);
    for (float &x : v) x = floorf(x);
    return v;
}

// Runs the product with the given fragment source; number of elements of D that differ from A B + C.
static int wrong_elements(FragmentSource source, uint64_t seed) {
    const std::vector<float> a = small_integers(M * K, seed), b = small_integers(K * N, seed + 1),
                             c = small_integers(M * N, seed + 2);
    std::vector<float> want(M * N);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float sum = c[(size_t)(i * N + j)];
            for (int k = 0; k < K; k++) sum += a[(size_t)(i * K + k)] * b[(size_t)(k * N + j)];
            want[(size_t)(i * N + j)] = sum;
        }
    bf16 *a_d = upload_as<bf16>(a), *b_d = upload_as<bf16>(b);
    float *c_d = to_device(c), *d_d = device_alloc<float>(M * N);
    LAUNCH(mma_product_kernel, dim3(1), dim3(32), 0, 0, d_d, a_d, b_d, c_d, (int)source);
    const std::vector<float> got = to_host(d_d, M * N);
    int wrong = 0;
    for (int i = 0; i < M * N; i++) wrong += got[(size_t)i] != want[(size_t)i];
    cudaFree(a_d);
    cudaFree(b_d);
    cudaFree(c_d);
    cudaFree(d_d);
    return wrong;
}

TEST(test_mma_product_matches_naive_product) {
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        for (uint64_t seed = 1; seed <= 3; seed++) {
            CHECK(wrong_elements(TABLE_LOADS, seed) == 0, "%s order, seed %d: fragments from the PTX tables", o.name,
                  (int)seed);
            CHECK(wrong_elements(LDMATRIX_B_TRANS, seed) == 0, "%s order, seed %d: ldmatrix_x4 + ldmatrix_x2_trans",
                  o.name, (int)seed);
            CHECK(wrong_elements(LDMATRIX_B, seed) == 0, "%s order, seed %d: ldmatrix_x4 + ldmatrix_x2", o.name,
                  (int)seed);
        }
    }
}

// The comparison above can fail: fragments in a wrong layout give a wrong product.
TEST(test_mma_wrong_layout_is_caught) {
    const int swapped = wrong_elements(WRONG_A_SWAPPED, 1), wrong_row = wrong_elements(WRONG_B_ROW, 1);
    CHECK(swapped > 0, "a[1] and a[2] swapped, yet the product matched");
    CHECK(wrong_row > 0, "B's rows from the group, yet the product matched");
}

// --- ldmatrix: every variant, element by element -----------------------------------------------
// Four 8x8 matrices of 16-bit values m * 64 + row * 8 + col, their 32 rows
// scattered over shared memory (row j of matrix m in slot (5 (8m + j) + 3) % 32),
// since ldmatrix takes each row's own address.
__host__ __device__ inline int ldmatrix_slot(int matrix, int row) { return (5 * (8 * matrix + row) + 3) % 32; }
__host__ __device__ inline uint16_t ldmatrix_value(int matrix, int row, int col) {
    return (uint16_t)(matrix * 64 + row * 8 + col);
}
static const int ldmatrix_variants = 6;  // x1, x2, x4, then the same .trans

__global__ void ldmatrix_variants_kernel(uint32_t *out) {
    alignas(16) __shared__ uint16_t rows[32 * 8];
    const int lane = threadIdx.x, matrix = lane / 8, row = lane % 8;
    for (int col = 0; col < 8; col++) rows[ldmatrix_slot(matrix, row) * 8 + col] = ldmatrix_value(matrix, row, col);
    __syncthreads();
    // Every lane gives the address of "its" row (lane 8m + j: row j of matrix m);
    // x1 and x2 must ignore the lanes above 7 and 15.
    const uint16_t *mine = &rows[ldmatrix_slot(matrix, row) * 8];
    uint32_t r[ldmatrix_variants][4] = {};
    ldmatrix_x1(r[0], mine);
    ldmatrix_x2(r[1], mine);
    ldmatrix_x4(r[2], mine);
    ldmatrix_x1_trans(r[3], mine);
    ldmatrix_x2_trans(r[4], mine);
    ldmatrix_x4_trans(r[5], mine);
    for (int v = 0; v < ldmatrix_variants; v++)
        for (int i = 0; i < 4; i++) out[(v * 32 + lane) * 4 + i] = r[v][i];
}

TEST(test_mma_ldmatrix_variants_match_the_ptx_table) {
    uint32_t *out = device_alloc<uint32_t>(ldmatrix_variants * 32 * 4);
    static const char *const names[ldmatrix_variants] = {"x1", "x2", "x4", "x1.trans", "x2.trans", "x4.trans"};
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        LAUNCH(ldmatrix_variants_kernel, dim3(1), dim3(32), 0, 0, out);
        const std::vector<uint32_t> got = to_host(out, ldmatrix_variants * 32 * 4);
        int wrong = 0;
        for (int v = 0; v < ldmatrix_variants; v++) {
            const int matrices = 1 << (v % 3);
            const bool trans = v >= 3;
            for (int lane = 0; lane < 32; lane++)
                for (int m = 0; m < 4; m++) {
                    // Register m of lane l: row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1 (.trans: of the transpose).
                    const int row = lane / 4, col = 2 * (lane % 4);
                    uint32_t want = 0;
                    if (m < matrices && !trans)
                        want = ldmatrix_value(m, row, col) | (uint32_t)ldmatrix_value(m, row, col + 1) << 16;
                    if (m < matrices && trans)
                        want = ldmatrix_value(m, col, row) | (uint32_t)ldmatrix_value(m, col + 1, row) << 16;
                    const uint32_t g = got[(size_t)((v * 32 + lane) * 4 + m)];
                    if (g != want && wrong++ < 4)
                        CHECK(false, "%s order, ldmatrix_%s, lane %d, r[%d]: 0x%08x, want 0x%08x", o.name, names[v],
                              lane, m, g, want);
                }
        }
        CHECK(wrong == 0, "%s order: %d registers wrong", o.name, wrong);
    }
    cudaFree(out);
}

// --- cp.async: zero-fill and groups ----------------------------------------------------------
// 32 threads, two groups of 16 bytes each. Group 0: thread t reads t % 17
// bytes (0..16) and zero-fills the rest; group 1: all 16 bytes. After
// wait<1> and a barrier, group 0 is visible to every thread; after wait<0>
// and a barrier, group 1 too. Each thread stores its neighbour's bytes.
static const int copy_threads = 32, copy_bytes = 2 * copy_threads * 16;

__global__ void cp_async_groups_kernel(uint8_t *out, const uint8_t *in) {
    IGPT_DYNAMIC_SHARED(uint8_t, tile);
    const int t = threadIdx.x, neighbour = (t + 1) % copy_threads, half = copy_threads * 16;
    cp_async_16(&tile[16 * t], &in[16 * t], t % 17);
    cp_async_commit();
    cp_async_16(&tile[half + 16 * t], &in[half + 16 * t]);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    for (int b = 0; b < 16; b++) out[16 * neighbour + b] = tile[16 * neighbour + b];
    cp_async_wait<0>();
    __syncthreads();
    for (int b = 0; b < 16; b++) out[half + 16 * neighbour + b] = tile[half + 16 * neighbour + b];
}

static std::vector<uint8_t> copy_source(void) {
    std::vector<uint8_t> in(copy_bytes);
    for (int i = 0; i < copy_bytes; i++) in[(size_t)i] = (uint8_t)(1 + i * 7 % 251);  // never 0 or 0xFF
    return in;
}

TEST(test_mma_cp_async_zero_fill_and_groups) {
    const std::vector<uint8_t> in = copy_source();
    uint8_t *in_d = to_device(in), *out_d = device_alloc<uint8_t>(copy_bytes);
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        LAUNCH(cp_async_groups_kernel, dim3(1), dim3(copy_threads), copy_bytes, 0, out_d, in_d);
        const std::vector<uint8_t> got = to_host(out_d, copy_bytes);
        int wrong = 0;
        for (int i = 0; i < copy_bytes; i++) {
            const int t = i / 16 % copy_threads, b = i % 16;
            const bool copied = i >= copy_threads * 16 || b < t % 17;
            wrong += got[(size_t)i] != (copied ? in[(size_t)i] : 0);
        }
        CHECK(wrong == 0, "%s order: %d bytes wrong", o.name, wrong);
    }
    cudaFree(in_d);
    cudaFree(out_d);
}

// --- The interpreter's cp.async is deferred: early reads see poison ------------------------------
// Thread t's 16 bytes: read right after the call (out[0]), after wait<1>
// while its group is the newest in flight (out[1]), after wait<0> (out[2]).
// On a GPU the first two may or may not have landed: interpreter only. Each
// thread reads only its own bytes, so there is no race.
__global__ void cp_async_early_read_kernel(uint8_t *out, const uint8_t *in) {
    IGPT_DYNAMIC_SHARED(uint8_t, tile);
    const int t = threadIdx.x, stride = copy_threads * 16;
    uint8_t *mine = &tile[16 * t];
    for (int b = 0; b < 16; b++) mine[b] = 0;  // stale data from "an earlier tile"
    cp_async_16(mine, &in[16 * t]);
    cp_async_commit();
    for (int b = 0; b < 16; b++) out[16 * t + b] = mine[b];
    cp_async_wait<1>();
    for (int b = 0; b < 16; b++) out[stride + 16 * t + b] = mine[b];
    cp_async_wait<0>();
    for (int b = 0; b < 16; b++) out[2 * stride + 16 * t + b] = mine[b];
}

TEST(test_mma_cp_async_copy_lands_at_the_wait) {
    INTERPRET_ONLY();
    const std::vector<uint8_t> in = copy_source();
    const int stride = copy_threads * 16;
    uint8_t *in_d = to_device(in), *out_d = device_alloc<uint8_t>(3 * stride);
    LAUNCH(cp_async_early_read_kernel, dim3(1), dim3(copy_threads), stride, 0, out_d, in_d);
    const std::vector<uint8_t> got = to_host(out_d, 3 * stride);
    int early = 0, in_flight = 0, waited = 0;
    for (int i = 0; i < stride; i++) {
        early += got[(size_t)i] == 0xFF;
        in_flight += got[(size_t)(stride + i)] == 0xFF;
        waited += got[(size_t)(2 * stride + i)] == in[(size_t)i];
    }
    CHECK(early == stride, "before the wait: %d of %d bytes poisoned", early, stride);
    CHECK(in_flight == stride, "after wait<1>, the newest group: %d of %d bytes poisoned", in_flight, stride);
    CHECK(waited == stride, "after wait<0>: %d of %d bytes copied", waited, stride);
    cudaFree(in_d);
    cudaFree(out_d);
}

// A thread that reads another thread's bytes after its own wait but with no
// barrier: wrong under some thread order (a race, which ThreadSanitizer
// reports: so under TSan the test skips itself).
__global__ void cp_async_missing_barrier_kernel(uint8_t *out, const uint8_t *in, int with_barrier) {
    IGPT_DYNAMIC_SHARED(uint8_t, tile);
    const int t = threadIdx.x, neighbour = (t + 1) % copy_threads;
    cp_async_16(&tile[16 * t], &in[16 * t]);
    cp_async_commit();
    cp_async_wait<0>();
    if (with_barrier) __syncthreads();
    // Two 8-byte words, not a loop the compiler makes a memcpy call of (which TSan's interceptor would not check).
    const uint64_t *from = reinterpret_cast<const uint64_t *>(&tile[16 * neighbour]);
    uint64_t *to = reinterpret_cast<uint64_t *>(&out[16 * neighbour]);
    to[0] = from[0];
    to[1] = from[1];
}

static bool neighbour_copy_right(const std::vector<uint8_t> &in, int with_barrier) {
    uint8_t *in_d = to_device(in), *out_d = device_alloc<uint8_t>(copy_threads * 16);
    LAUNCH(cp_async_missing_barrier_kernel, dim3(1), dim3(copy_threads), copy_threads * 16, 0, out_d, in_d,
           with_barrier);
    const std::vector<uint8_t> got = to_host(out_d, copy_threads * 16);
    bool right = true;
    for (int i = 0; i < copy_threads * 16; i++) right = right && got[(size_t)i] == in[(size_t)i];
    cudaFree(in_d);
    cudaFree(out_d);
    return right;
}

TEST(test_mma_cp_async_missing_barrier_is_exposed) {
    INTERPRET_ONLY();
#if defined(IGPT_INTERP_TSAN)
    test_skip("runs a racy kernel on purpose");
    return;
#endif
    const std::vector<uint8_t> in = copy_source();
    int wrong_orders = 0;
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        CHECK(neighbour_copy_right(in, 1), "%s order: wrong with the barrier", o.name);
        wrong_orders += !neighbour_copy_right(in, 0);
    }
    CHECK(wrong_orders > 0, "the missing barrier after cp_async_wait went unseen in every thread order");
}

// --- Misuse aborts, naming the kernel's line -----------------------------------------------------
static uint8_t *child_bytes;

static const int misaligned_copy_line = __LINE__ + 3;
__global__ void cp_async_misaligned_kernel(uint8_t *in) {
    IGPT_DYNAMIC_SHARED(uint8_t, tile);
    cp_async_16(&tile[16 * threadIdx.x], &in[16 * threadIdx.x + 8]);
    cp_async_commit();
    cp_async_wait<0>();
}
static void launch_misaligned_copy(void) {
    LAUNCH(cp_async_misaligned_kernel, dim3(1), dim3(32), 32 * 16, 0, child_bytes);
}

static const int misaligned_ldmatrix_line = __LINE__ + 4;
__global__ void ldmatrix_misaligned_kernel(uint32_t *out) {
    alignas(16) __shared__ uint16_t rows[32 * 8 + 4];
    uint32_t r[1];
    ldmatrix_x1(r, &rows[threadIdx.x * 8 + 4]);
    out[threadIdx.x] = r[0];
}
static void launch_misaligned_ldmatrix(void) {
    LAUNCH(ldmatrix_misaligned_kernel, dim3(1), dim3(32), 0, 0, reinterpret_cast<uint32_t *>(child_bytes));
}

// Copies never committed, or committed and never waited for.
__global__ void cp_async_unfinished_kernel(const uint8_t *in, int commit) {
    IGPT_DYNAMIC_SHARED(uint8_t, tile);
    cp_async_16(&tile[16 * threadIdx.x], &in[16 * threadIdx.x]);
    if (commit) cp_async_commit();
}
static void launch_uncommitted(void) {
    LAUNCH(cp_async_unfinished_kernel, dim3(1), dim3(32), 32 * 16, 0, child_bytes, 0);
}
static void launch_unwaited(void) { LAUNCH(cp_async_unfinished_kernel, dim3(1), dim3(32), 32 * 16, 0, child_bytes, 1); }

// Half a warp at the mma: the other half never joins.
static const int half_warp_line = __LINE__ + 5;
__global__ void mma_half_warp_kernel(float *out) {
    const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    float d[4] = {0, 0, 0, 0};
    if (threadIdx.x < 16) {
        mma_m16n8k16_bf16(d, a, b, d);
    }
    out[threadIdx.x] = d[0];
}
static void launch_half_warp(void) {
    LAUNCH(mma_half_warp_kernel, dim3(1), dim3(32), 0, 0, reinterpret_cast<float *>(child_bytes));
}

static void expect_abort(void (*fn)(void), const std::vector<std::string> &wanted) {
    std::string err;
    const int sig = run_in_child(fn, &err);
    CHECK(sig == SIGABRT, "the misuse was not caught: signal %d, stderr: %s", sig, err.c_str());
    for (const std::string &w : wanted)
        CHECK(err.find(w) != std::string::npos, "the report lacks \"%s\": %s", w.c_str(), err.c_str());
}
static std::string site(int line) { return "test_mma.cu:" + std::to_string(line); }

TEST(test_mma_misuse_aborts) {
    INTERPRET_ONLY();
    child_bytes = to_device(copy_source());
    expect_abort(launch_misaligned_copy,
                 {"cp.async global address", "not 16-byte aligned", site(misaligned_copy_line), "thread (0,0,0)"});
    expect_abort(launch_misaligned_ldmatrix, {"ldmatrix row address", site(misaligned_ldmatrix_line)});
    expect_abort(launch_uncommitted, {"cp_async_unfinished_kernel", "1 cp.async copies never committed"});
    expect_abort(launch_unwaited, {"cp_async_unfinished_kernel", "1 in 1 groups never waited for"});
    expect_abort(launch_half_warp,
                 {"mma_half_warp_kernel", "mismatched warp collective", "mma_m16n8k16_bf16", site(half_warp_line)});
    cudaFree(child_bytes);
}

// --- The checker builds see the twins' memory accesses (docs/cuda.md, "The checker") -------------
// ldmatrix_x4 of 32 rows; launched with 31 rows of dynamic shared memory, lane 31's is past the end.
static const int ldmatrix_overflow_line = __LINE__ + 4;
__global__ void ldmatrix_overflow_kernel(uint32_t *out) {
    IGPT_DYNAMIC_SHARED(uint16_t, rows);
    uint32_t r[4];
    ldmatrix_x4(r, &rows[8 * threadIdx.x]);
    out[threadIdx.x] = r[0];
}
static void launch_ldmatrix_overflow(void) {
    LAUNCH(ldmatrix_overflow_kernel, dim3(1), dim3(32), 31 * 16, 0, reinterpret_cast<uint32_t *>(child_bytes));
}

// cp.async of 16 bytes where the source holds 8: caught at the wait, where the copy is made.
static const int copy_overflow_line = __LINE__ + 5;
__global__ void cp_async_overflow_kernel(uint8_t *out, const uint8_t *in, int src_bytes) {
    IGPT_DYNAMIC_SHARED(uint8_t, tile);
    cp_async_16(&tile[16 * threadIdx.x], &in[16 * threadIdx.x], threadIdx.x == 31 ? src_bytes : 16);
    cp_async_commit();
    cp_async_wait<0>();
    out[threadIdx.x] = tile[16 * threadIdx.x];
}
static uint8_t *short_source;
static void launch_copy_overflow(void) {
    LAUNCH(cp_async_overflow_kernel, dim3(1), dim3(32), 32 * 16, 0, child_bytes, short_source, 16);
}

TEST(test_mma_checker_sees_out_of_bounds) {
    NEEDS_ASAN();
    child_bytes = device_alloc<uint8_t>(copy_bytes);
    CUDA_CHECK(cudaMalloc(&short_source, 31 * 16 + 8));
    CUDA_CHECK(cudaMemset(short_source, 1, 31 * 16 + 8));
    expect_abort(launch_ldmatrix_overflow, {"heap-buffer-overflow", site(ldmatrix_overflow_line),
                                            "kernel ldmatrix_overflow_kernel", "thread (31,0,0)"});
    expect_abort(launch_copy_overflow, {"heap-buffer-overflow", site(copy_overflow_line),
                                        "kernel cp_async_overflow_kernel", "thread (31,0,0)"});
    // In bounds: the rows that fit; the 8 bytes that are there, zero-filled to 16.
    LAUNCH(ldmatrix_overflow_kernel, dim3(1), dim3(32), 32 * 16, 0, reinterpret_cast<uint32_t *>(child_bytes));
    LAUNCH(cp_async_overflow_kernel, dim3(1), dim3(32), 32 * 16, 0, child_bytes, short_source, 8);
    cudaFree(short_source);
    cudaFree(child_bytes);
}

// Warp 1 issues cp.async into the tile that warp 0 reads with ldmatrix, with
// no barrier between: a double buffer refilled before every warp is done
// with it (the flash kernels' end-of-iteration barrier left out). Only the
// cp.async call races here (its wait comes after the barrier): on a GPU the
// copy may land under the reader; TSan must see the call's write.
static const int async_read_line = __LINE__ + 5;
static const int async_race_line = __LINE__ + 7;
__global__ void cp_async_race_kernel(uint32_t *out, const uint8_t *in, int with_barrier) {
    IGPT_DYNAMIC_SHARED(uint8_t, tile);
    uint32_t r[4] = {0, 0, 0, 0};
    if (threadIdx.x < 32) ldmatrix_x4(r, tile + 16 * threadIdx.x);
    if (with_barrier) __syncthreads();
    if (threadIdx.x >= 32) {
        cp_async_16(tile + 16 * (threadIdx.x - 32), in + 16 * (threadIdx.x - 32));
        cp_async_commit();
    }
    __syncthreads();
    if (threadIdx.x >= 32) cp_async_wait<0>();
    out[threadIdx.x] = r[0];
}
static void launch_async_race(void) {
    LAUNCH(cp_async_race_kernel, dim3(1), dim3(64), 32 * 16, 0, reinterpret_cast<uint32_t *>(child_bytes),
           child_bytes + 512, 0);
}

TEST(test_mma_tsan_sees_async_copy_races) {
    NEEDS_TSAN();
    child_bytes = device_alloc<uint8_t>(1024);
    expect_abort(launch_async_race,
                 {"data race", "cp_async_race_kernel", site(async_race_line), site(async_read_line)});
    // With the barrier between the reads and the refill: no report.
    LAUNCH(cp_async_race_kernel, dim3(1), dim3(64), 32 * 16, 0, reinterpret_cast<uint32_t *>(child_bytes),
           child_bytes + 512, 1);
    cudaFree(child_bytes);
}
