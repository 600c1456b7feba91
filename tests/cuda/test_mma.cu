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
        for (int r = 0; r < 2; r++) {
            uint32_t halves[2];
            for (int h = 0; h < 2; h++) {
                const int i = 2 * r + h;
                const int row = source == WRONG_B_ROW ? table_b_col(lane, i) * 2 % K + h : table_b_row(lane, i);
                halves[h] = bits_of(b_kn_tile[row * N + table_b_col(lane, i)]);
            }
            bf[r] = halves[0] | halves[1] << 16;
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
