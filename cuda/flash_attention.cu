// Causal multi-head attention on tensor cores, in the manner of
// FlashAttention-2 (Dao, 2023): bf16 storage, fp32 accumulation, head sizes
// 32, 64 and 128. The portable kernels of attention.cu stay for the other
// head sizes, for fp32 storage, and as the reference the tests compare with.
//
// The shape of every kernel here:
// - a block of FLASH_WARPS warps owns 16 rows per warp (query rows in the
//   forward and dQ kernels, key rows in the dK/dV kernel) and walks over tiles
//   of the other side's rows;
// - those tiles come from global memory with cp.async into two shared-memory
//   buffers: the copy of tile j + 1 runs while the warps compute on tile j;
// - each warp multiplies its 16 rows by a tile with mma.m16n8k16 (bf16 in,
//   fp32 accumulators in registers), reading its operands from shared memory
//   with ldmatrix; the probabilities never leave registers: the accumulator
//   fragment of S = Q K^T is, element for element, the A operand of P V
//   (rounded to bf16), so no shared-memory round trip is needed;
// - the softmax is online (running max m and sum l per row, the output
//   rescaled when m grows), and each row's log-sum-exp is kept for the
//   backward pass, which recomputes the probabilities from it.
//
// Backward, deterministic: two kernels, no atomics. The dQ kernel walks key
// tiles for its query rows (and computes D = rowsum(dO * O) for its rows first,
// the row-dot fused: it has dO at hand); the dK/dV kernel walks query tiles for
// its key rows and reads D. Every output element is summed by one thread in a
// fixed order, so two runs give the same bits.
//
// Shared-memory tiles are row-major with rows padded by 8 bf16 (16 bytes):
// the 8 rows an ldmatrix reads then start in 8 different groups of 4 banks,
// so the loads are free of bank conflicts without a swizzle.
//
// A Hopper variant (wgmma + TMA, FlashAttention-3 style) goes beside these
// kernels, not into them: its own kernels in a file of their own
// (cuda/flash_attention_sm90.cu: TMA loads of the same tiles into
// swizzled shared memory, warpgroup-wide wgmma with the accumulators in
// registers, producer/consumer warp specialisation), chosen by
// gpu_flash_attention_forward/backward at run time on sm_90 (the
// gpu_flash_attention_* functions are the one place that dispatches), with
// the same arguments, the same lse and row-dot layouts and the same
// deterministic two-pass backward, so the tests here apply to it unchanged.
// It needs interpret twins of wgmma/TMA first (cuda/mma.cuh's rule).
#include "kernels.cuh"
#include "mma.cuh"

// Fragments are arrays indexed by loop counters: the loops must unroll fully
// for them to stay in registers (#pragma unroll; g++ does not know it).
#ifdef IGPT_INTERPRET
#define UNROLL
#else
#define UNROLL _Pragma("unroll")
#endif

#define FLASH_WARPS 4
#define FLASH_THREADS (32 * FLASH_WARPS)

template <int HS>
struct FlashShape {
    static constexpr int ROWS = 16 * FLASH_WARPS;          // rows a block owns (16 per warp)
    static constexpr int KEYS = 64;                        // key rows per tile (forward, dQ)
    static constexpr int QUERIES = HS <= 64 ? 64 : 32;     // query rows per tile (dK/dV: registers)
    static constexpr int STRIDE = HS + 8;                  // padded shared row, bf16
    static constexpr int TILE_BYTES_PER_ROW = STRIDE * 2;  // sizeof(bf16)
    static_assert(HS % 16 == 0, "head size must be a multiple of 16");
};

// --- Tiles and fragments ------------------------------------------------------------------

// Starts the copy of rows [row0, row0 + ROWS) of one head's slice (HS bf16 at
// base + row * ld) into a padded shared tile, 16 bytes per cp.async; rows
// past T are filled with zeros (nothing read).
template <int HS, int ROWS>
__device__ __forceinline__ void load_tile_async(bf16 *tile, const bf16 *base, int row0, int T, size_t ld) {
    constexpr int CHUNKS = HS / 8;
    for (int idx = threadIdx.x; idx < ROWS * CHUNKS; idx += FLASH_THREADS) {
        const int r = idx / CHUNKS, c = idx % CHUNKS, row = row0 + r;
        const bool inside = row < T;
        const bf16 *src = base + (size_t)(inside ? row : 0) * ld + c * 8;
        cp_async_16(tile + r * (HS + 8) + c * 8, src, inside ? 16 : 0);
    }
}

// A operand (16 x 16, rows row0.., columns k0..) of a row-major shared tile:
// the four 8x8 matrices are (rows 0-7 | 8-15) x (columns 0-7 | 8-15), in the
// order of a[0..3].
template <int STRIDE>
__device__ __forceinline__ void load_a(uint32_t a[4], const bf16 *tile, int row0, int k0) {
    const int lane = threadIdx.x % 32, m = lane / 8;
    ldmatrix_x4(a, tile + (row0 + lane % 8 + 8 * (m % 2)) * STRIDE + k0 + 8 * (m / 2));
}

// B operands of two neighbouring n-tiles (n0 and n0 + 8: b[0..1], b[2..3]) for
// the k-step k0, from a tile stored [n][k] (K's rows for Q K^T): each stored
// row is a column of B, so ldmatrix without .trans.
template <int STRIDE>
__device__ __forceinline__ void load_b_from_nk(uint32_t b[4], const bf16 *tile, int n0, int k0) {
    const int lane = threadIdx.x % 32, m = lane / 8;
    ldmatrix_x4(b, tile + (n0 + lane % 8 + 8 * (m / 2)) * STRIDE + k0 + 8 * (m % 2));
}

// The same from a tile stored [k][n] (V's rows for P V): .trans.
template <int STRIDE>
__device__ __forceinline__ void load_b_from_kn(uint32_t b[4], const bf16 *tile, int k0, int n0) {
    const int lane = threadIdx.x % 32, m = lane / 8;
    ldmatrix_x4_trans(b, tile + (k0 + lane % 8 + 8 * (m % 2)) * STRIDE + n0 + 8 * (m / 2));
}

// acc (16 x N) += A B^T: A's 16 rows from a_tile (from row a_row0), B's N rows
// from b_tile, both row-major with K columns. (S = Q K^T, dP = dO V^T, and in
// the dK/dV kernel S^T = K Q^T, dP^T = V dO^T.)
template <int K, int N, int STRIDE>
__device__ __forceinline__ void mma_abt(float acc[N / 8][4], const bf16 *a_tile, int a_row0, const bf16 *b_tile) {
    UNROLL
    for (int k0 = 0; k0 < K; k0 += 16) {
        uint32_t a[4];
        load_a<STRIDE>(a, a_tile, a_row0, k0);
        UNROLL
        for (int n0 = 0; n0 < N; n0 += 16) {
            uint32_t b[4];
            load_b_from_nk<STRIDE>(b, b_tile, n0, k0);
            mma_m16n8k16_bf16(acc[n0 / 8], a, b, acc[n0 / 8]);
            mma_m16n8k16_bf16(acc[n0 / 8 + 1], a, b + 2, acc[n0 / 8 + 1]);
        }
    }
}

// acc (16 x N) += P B: P (16 x K) is held as the fp32 accumulator fragments of
// K / 8 n-tiles, which are the A fragments of P once packed to bf16 (tiles 2s
// and 2s + 1 give a[0..1] and a[2..3] of k-step s); B (K x N) is stored [k][n]
// in b_tile. (O += P V, dQ += dS K, dV += P^T dO, dK += dS^T Q.)
template <int K, int N, int STRIDE>
__device__ __forceinline__ void mma_pb(float acc[N / 8][4], const float p[K / 8][4], const bf16 *b_tile) {
    UNROLL
    for (int k0 = 0; k0 < K; k0 += 16) {
        const float *lo = p[k0 / 8], *hi = p[k0 / 8 + 1];
        const uint32_t a[4] = {pack_bf16x2(lo[0], lo[1]), pack_bf16x2(lo[2], lo[3]), pack_bf16x2(hi[0], hi[1]),
                               pack_bf16x2(hi[2], hi[3])};
        UNROLL
        for (int n0 = 0; n0 < N; n0 += 16) {
            uint32_t b[4];
            load_b_from_kn<STRIDE>(b, b_tile, k0, n0);
            mma_m16n8k16_bf16(acc[n0 / 8], a, b, acc[n0 / 8]);
            mma_m16n8k16_bf16(acc[n0 / 8 + 1], a, b + 2, acc[n0 / 8 + 1]);
        }
    }
}

template <int N>
__device__ __forceinline__ void zero_fragments(float acc[N / 8][4]) {
    UNROLL
    for (int n = 0; n < N / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// Element e of n-tile n of an accumulator fragment sits at row (lane / 4) + 8 (e / 2),
// column 8 n + 2 (lane % 4) + e % 2 of the warp's 16 x N tile.
__device__ __forceinline__ int fragment_row(int e) { return threadIdx.x % 32 / 4 + 8 * (e / 2); }
__device__ __forceinline__ int fragment_col(int n, int e) { return 8 * n + 2 * (threadIdx.x % 4) + e % 2; }

// Writes a warp's 16 x HS fp32 fragments, times scale, as bf16 rows (row0.. of
// out, leading dimension ld); rows past T are not written.
template <int HS>
__device__ __forceinline__ void store_rows(bf16 *out, size_t ld, int row0, int T, const float acc[HS / 8][4],
                                           float scale) {
    UNROLL
    for (int half = 0; half < 2; half++) {
        const int row = row0 + fragment_row(2 * half);
        if (row >= T) continue;
        UNROLL
        for (int n = 0; n < HS / 8; n++) {
            const uint32_t pair = pack_bf16x2(acc[n][2 * half] * scale, acc[n][2 * half + 1] * scale);
            *reinterpret_cast<uint32_t *>(out + (size_t)row * ld + fragment_col(n, 0)) = pair;
        }
    }
}

// Max and sum over the 4 lanes that share a fragment row.
__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// --- Forward ---------------------------------------------------------------------------------

// Online softmax of one 16 x KEYS score tile (raw q.k in s, masked entries
// -inf): updates the running max m and partial sums l of the thread's two rows
// (the sums stay per thread until the end), rescales o, and turns s into the
// unnormalised probabilities exp(scale (s - m)). scale_log2 = scale * log2(e),
// so that each exponential is one exp2.
template <int HS, int KEYS>
__device__ __forceinline__ void online_softmax(float s[KEYS / 8][4], float o[HS / 8][4], float m[2], float l[2],
                                               float scale_log2) {
    UNROLL
    for (int half = 0; half < 2; half++) {
        float tile_max = -INFINITY;
        UNROLL
        for (int n = 0; n < KEYS / 8; n++) tile_max = fmaxf(tile_max, fmaxf(s[n][2 * half], s[n][2 * half + 1]));
        // Finite: every row sees key 0 in the first tile, so m is finite from then on.
        const float m_new = fmaxf(m[half], quad_max(tile_max));
        const float correction = exp2f((m[half] - m_new) * scale_log2);  // 0 on the first tile (m = -inf)
        const float offset = m_new * scale_log2;
        l[half] *= correction;
        UNROLL
        for (int n = 0; n < HS / 8; n++) {
            o[n][2 * half] *= correction;
            o[n][2 * half + 1] *= correction;
        }
        UNROLL
        for (int n = 0; n < KEYS / 8; n++) {
            UNROLL
            for (int e = 2 * half; e < 2 * half + 2; e++) {
                s[n][e] = exp2f(s[n][e] * scale_log2 - offset);
                l[half] += s[n][e];
            }
        }
        m[half] = m_new;
    }
}

// Causal mask of a score tile whose keys start at key0, for the warp's rows
// from row0: key > row is -inf. (Keys past T only meet rows past T, which are
// not written.)
template <int KEYS>
__device__ __forceinline__ void causal_mask(float s[KEYS / 8][4], int row0, int key0) {
    UNROLL
    for (int n = 0; n < KEYS / 8; n++) {
        UNROLL
        for (int e = 0; e < 4; e++)
            if (key0 + fragment_col(n, e) > row0 + fragment_row(e)) s[n][e] = -INFINITY;
    }
}

template <int HS>
__global__ void __launch_bounds__(FLASH_THREADS)
    flash_attention_forward_kernel(bf16 *atty, float *lse, const bf16 *qkv, int T, int C, int NH, float scale_log2) {
    using S = FlashShape<HS>;
    constexpr int ROWS = S::ROWS, KEYS = S::KEYS, STRIDE = S::STRIDE;
    IGPT_DYNAMIC_SHARED(bf16, smem);
    bf16 *q_tile = smem, *k_tiles = q_tile + ROWS * STRIDE, *v_tiles = k_tiles + 2 * KEYS * STRIDE;
    const int h = blockIdx.y, b = blockIdx.z, warp = threadIdx.x / 32;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * ROWS;  // the longest rows first: the last blocks are short
    const int row0 = q0 + 16 * warp;                     // the warp's first query row
    const size_t ld = 3 * (size_t)C;
    const bf16 *q_base = qkv + (size_t)b * T * ld + h * HS, *k_base = q_base + C, *v_base = q_base + 2 * C;
    const int key_end = T < q0 + ROWS ? T : q0 + ROWS, tiles = (key_end + KEYS - 1) / KEYS;

    load_tile_async<HS, ROWS>(q_tile, q_base, q0, T, ld);
    load_tile_async<HS, KEYS>(k_tiles, k_base, 0, T, ld);
    load_tile_async<HS, KEYS>(v_tiles, v_base, 0, T, ld);
    cp_async_commit();
    float o[HS / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    zero_fragments<HS>(o);
    uint32_t qa[HS / 16][4];  // the warp's Q rows as A fragments, loaded once
    for (int j = 0; j < tiles; j++) {
        const int buf = j % 2, key0 = j * KEYS;
        if (j + 1 < tiles) {  // prefetch tile j + 1 into the other buffer, then wait for tile j only
            load_tile_async<HS, KEYS>(k_tiles + (1 - buf) * KEYS * STRIDE, k_base, key0 + KEYS, T, ld);
            load_tile_async<HS, KEYS>(v_tiles + (1 - buf) * KEYS * STRIDE, v_base, key0 + KEYS, T, ld);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();  // every thread's copies of tile j (and of Q) have landed
        if (j == 0) {
            UNROLL
            for (int k = 0; k < HS / 16; k++) load_a<STRIDE>(qa[k], q_tile, 16 * warp, 16 * k);
        }
        if (key0 <= row0 + 15) {  // (warp-uniform) the tile has keys some row of the warp sees
            const bf16 *k_tile = k_tiles + buf * KEYS * STRIDE, *v_tile = v_tiles + buf * KEYS * STRIDE;
            float s[KEYS / 8][4];
            zero_fragments<KEYS>(s);
            UNROLL
            for (int k = 0; k < HS / 16; k++) {
                UNROLL
                for (int n0 = 0; n0 < KEYS; n0 += 16) {
                    uint32_t bk[4];
                    load_b_from_nk<STRIDE>(bk, k_tile, n0, 16 * k);
                    mma_m16n8k16_bf16(s[n0 / 8], qa[k], bk, s[n0 / 8]);
                    mma_m16n8k16_bf16(s[n0 / 8 + 1], qa[k], bk + 2, s[n0 / 8 + 1]);
                }
            }
            if (key0 + KEYS - 1 > row0) causal_mask<KEYS>(s, row0, key0);
            online_softmax<HS, KEYS>(s, o, m, l, scale_log2);
            mma_pb<KEYS, HS, STRIDE>(o, s, v_tile);
        }
        __syncthreads();  // tile j's buffer is free for the prefetch of tile j + 2
    }
    const size_t y_row0 = (size_t)b * T;
    float inv[2];
    UNROLL
    for (int half = 0; half < 2; half++) {
        const float row_sum = quad_sum(l[half]);
        inv[half] = 1.0f / row_sum;
        const int row = row0 + fragment_row(2 * half);
        if (threadIdx.x % 4 == 0 && row < T)
            lse[((size_t)b * NH + h) * T + row] =
                (m[half] * scale_log2 + log2f(row_sum)) * 0.6931471805599453f;  // ln 2
    }
    UNROLL
    for (int n = 0; n < HS / 8; n++) {
        o[n][0] *= inv[0];
        o[n][1] *= inv[0];
        o[n][2] *= inv[1];
        o[n][3] *= inv[1];
    }
    store_rows<HS>(atty + y_row0 * C + h * HS, (size_t)C, row0, T, o, 1.0f);
}

// --- Backward --------------------------------------------------------------------------------

struct alignas(16) Bf16x8 {  // one 16-byte load
    bf16 v[8];
};

// D = rowsum(dO * O) of the warp's 16 rows (from row0), in fp32 from global
// memory, 16 bytes per lane: HS / 8 lanes per row. Stored to row_dot (rows
// below T) and returned for the thread's two fragment rows (d[0]: row lane / 4, d[1]: + 8).
template <int HS>
__device__ __forceinline__ void row_dot_of_warp(float d[2], float *row_dot, const bf16 *dout, const bf16 *out,
                                                size_t ld, int row0, int T) {
    constexpr int LANES = HS / 8, ROWS_PER_PASS = 32 / LANES;
    const int lane = threadIdx.x % 32, sub = lane % LANES;
    UNROLL
    for (int pass = 0; pass < 16 / ROWS_PER_PASS; pass++) {
        const int r = pass * ROWS_PER_PASS + lane / LANES, row = row0 + r;
        float acc = 0.0f;
        if (row < T) {
            const Bf16x8 dx = *reinterpret_cast<const Bf16x8 *>(dout + (size_t)row * ld + 8 * sub);
            const Bf16x8 ox = *reinterpret_cast<const Bf16x8 *>(out + (size_t)row * ld + 8 * sub);
            UNROLL
            for (int e = 0; e < 8; e++) acc += to_float(dx.v[e]) * to_float(ox.v[e]);
        }
        UNROLL
        for (int offset = 1; offset < LANES; offset <<= 1) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
        if (sub == 0 && row < T) row_dot[row] = acc;
        // Hand each fragment row its value: row r's sum sits in lane (r % ROWS_PER_PASS) * LANES.
        UNROLL
        for (int half = 0; half < 2; half++) {
            const int want = fragment_row(2 * half);
            const float x = __shfl_sync(0xffffffffu, acc, (want % ROWS_PER_PASS) * LANES);
            if (want / ROWS_PER_PASS == pass) d[half] = x;
        }
    }
}

// dQ (and D) for 16 query rows per warp, walking the key tiles they see:
// S = Q K^T, P = exp(scale S - lse), dP = dO V^T, dS = P (dP - D),
// dQ = scale dS K.
template <int HS>
__global__ void __launch_bounds__(FLASH_THREADS)
    flash_attention_backward_dq_kernel(bf16 *dqkv, float *row_dot, const bf16 *datty, const bf16 *atty, const bf16 *qkv,
                                       const float *lse, int T, int C, int NH, float scale, float scale_log2) {
    using S = FlashShape<HS>;
    constexpr int ROWS = S::ROWS, KEYS = S::KEYS, STRIDE = S::STRIDE;
    IGPT_DYNAMIC_SHARED(bf16, smem);
    bf16 *q_tile = smem, *do_tile = q_tile + ROWS * STRIDE, *k_tiles = do_tile + ROWS * STRIDE,
         *v_tiles = k_tiles + 2 * KEYS * STRIDE;
    const int h = blockIdx.y, b = blockIdx.z, warp = threadIdx.x / 32;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * ROWS, row0 = q0 + 16 * warp;
    const size_t ld = 3 * (size_t)C;
    const bf16 *q_base = qkv + (size_t)b * T * ld + h * HS, *k_base = q_base + C, *v_base = q_base + 2 * C;
    const bf16 *do_base = datty + (size_t)b * T * C + h * HS;
    const float *lse_bh = lse + ((size_t)b * NH + h) * T;
    const int key_end = T < q0 + ROWS ? T : q0 + ROWS, tiles = (key_end + KEYS - 1) / KEYS;

    load_tile_async<HS, ROWS>(q_tile, q_base, q0, T, ld);
    load_tile_async<HS, ROWS>(do_tile, do_base, q0, T, (size_t)C);
    load_tile_async<HS, KEYS>(k_tiles, k_base, 0, T, ld);
    load_tile_async<HS, KEYS>(v_tiles, v_base, 0, T, ld);
    cp_async_commit();
    float d[2] = {0.0f, 0.0f}, lse_log2[2];
    row_dot_of_warp<HS>(d, row_dot + ((size_t)b * NH + h) * T, do_base, atty + (size_t)b * T * C + h * HS, (size_t)C,
                        row0, T);
    UNROLL
    for (int half = 0; half < 2; half++) {
        const int row = row0 + fragment_row(2 * half);
        lse_log2[half] = row < T ? lse_bh[row] * 1.4426950408889634f : 0.0f;  // log2(e)
    }
    float dq[HS / 8][4];
    zero_fragments<HS>(dq);
    for (int j = 0; j < tiles; j++) {
        const int buf = j % 2, key0 = j * KEYS;
        if (j + 1 < tiles) {
            load_tile_async<HS, KEYS>(k_tiles + (1 - buf) * KEYS * STRIDE, k_base, key0 + KEYS, T, ld);
            load_tile_async<HS, KEYS>(v_tiles + (1 - buf) * KEYS * STRIDE, v_base, key0 + KEYS, T, ld);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (key0 <= row0 + 15) {
            const bf16 *k_tile = k_tiles + buf * KEYS * STRIDE, *v_tile = v_tiles + buf * KEYS * STRIDE;
            float s[KEYS / 8][4], dp[KEYS / 8][4];
            zero_fragments<KEYS>(s);
            zero_fragments<KEYS>(dp);
            mma_abt<HS, KEYS, STRIDE>(s, q_tile, 16 * warp, k_tile);
            mma_abt<HS, KEYS, STRIDE>(dp, do_tile, 16 * warp, v_tile);
            if (key0 + KEYS - 1 > row0) causal_mask<KEYS>(s, row0, key0);
            UNROLL
            for (int n = 0; n < KEYS / 8; n++) {
                UNROLL
                for (int e = 0; e < 4; e++) {
                    const float p = exp2f(s[n][e] * scale_log2 - lse_log2[e / 2]);
                    s[n][e] = p * (dp[n][e] - d[e / 2]);  // dS, in place of S
                }
            }
            mma_pb<KEYS, HS, STRIDE>(dq, s, k_tile);
        }
        __syncthreads();
    }
    store_rows<HS>(dqkv + (size_t)b * T * ld + h * HS, ld, row0, T, dq, scale);
}

// Stages lse (times log2 e) and D of query rows [i0, i0 + QUERIES) into shared
// memory with plain loads (their rows are not 16-byte aligned); rows past T
// get lse = +inf, so that their probabilities are exactly 0.
template <int QUERIES>
__device__ __forceinline__ void load_row_stats(float *lse_tile, float *d_tile, const float *lse_bh, const float *d_bh,
                                               int i0, int T) {
    for (int r = threadIdx.x; r < QUERIES; r += FLASH_THREADS) {
        const int row = i0 + r;
        lse_tile[r] = row < T ? lse_bh[row] * 1.4426950408889634f : INFINITY;
        d_tile[r] = row < T ? d_bh[row] : 0.0f;
    }
}

// dK and dV for 16 key rows per warp, walking the query tiles that see them,
// all in the transposed form: S^T = K Q^T, P^T = exp(scale S^T - lse),
// dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - D), dK += scale dS^T Q.
template <int HS>
__global__ void __launch_bounds__(FLASH_THREADS)
    flash_attention_backward_dkv_kernel(bf16 *dqkv, const bf16 *datty, const bf16 *qkv, const float *lse,
                                        const float *row_dot, int T, int C, int NH, float scale, float scale_log2) {
    using S = FlashShape<HS>;
    constexpr int ROWS = S::ROWS, QUERIES = S::QUERIES, STRIDE = S::STRIDE;
    IGPT_DYNAMIC_SHARED(bf16, smem);
    bf16 *k_tile = smem, *v_tile = k_tile + ROWS * STRIDE, *q_tiles = v_tile + ROWS * STRIDE,
         *do_tiles = q_tiles + 2 * QUERIES * STRIDE;
    float *lse_tiles = reinterpret_cast<float *>(do_tiles + 2 * QUERIES * STRIDE), *d_tiles = lse_tiles + 2 * QUERIES;
    const int h = blockIdx.y, b = blockIdx.z, warp = threadIdx.x / 32;
    const int key0 = blockIdx.x * ROWS, warp_key0 = key0 + 16 * warp;  // the first blocks have the most queries
    const size_t ld = 3 * (size_t)C;
    const bf16 *q_base = qkv + (size_t)b * T * ld + h * HS, *k_base = q_base + C, *v_base = q_base + 2 * C;
    const bf16 *do_base = datty + (size_t)b * T * C + h * HS;
    const float *lse_bh = lse + ((size_t)b * NH + h) * T, *d_bh = row_dot + ((size_t)b * NH + h) * T;
    // Queries before key0 see none of the block's keys; key0 is a multiple of QUERIES.
    const int tiles = (T - key0 + QUERIES - 1) / QUERIES;

    load_tile_async<HS, ROWS>(k_tile, k_base, key0, T, ld);
    load_tile_async<HS, ROWS>(v_tile, v_base, key0, T, ld);
    load_tile_async<HS, QUERIES>(q_tiles, q_base, key0, T, ld);
    load_tile_async<HS, QUERIES>(do_tiles, do_base, key0, T, (size_t)C);
    cp_async_commit();
    load_row_stats<QUERIES>(lse_tiles, d_tiles, lse_bh, d_bh, key0, T);
    float dk[HS / 8][4], dv[HS / 8][4];
    zero_fragments<HS>(dk);
    zero_fragments<HS>(dv);
    for (int j = 0; j < tiles; j++) {
        const int buf = j % 2, i0 = key0 + j * QUERIES;
        if (j + 1 < tiles) {
            const int next = 1 - buf;
            load_tile_async<HS, QUERIES>(q_tiles + next * QUERIES * STRIDE, q_base, i0 + QUERIES, T, ld);
            load_tile_async<HS, QUERIES>(do_tiles + next * QUERIES * STRIDE, do_base, i0 + QUERIES, T, (size_t)C);
            cp_async_commit();
            load_row_stats<QUERIES>(lse_tiles + next * QUERIES, d_tiles + next * QUERIES, lse_bh, d_bh, i0 + QUERIES,
                                    T);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (i0 + QUERIES - 1 >= warp_key0) {  // (warp-uniform) some query of the tile sees a key of the warp
            const bf16 *q_tile = q_tiles + buf * QUERIES * STRIDE, *do_tile = do_tiles + buf * QUERIES * STRIDE;
            const float *lse_tile = lse_tiles + buf * QUERIES, *d_tile = d_tiles + buf * QUERIES;
            float st[QUERIES / 8][4], dpt[QUERIES / 8][4];
            zero_fragments<QUERIES>(st);
            zero_fragments<QUERIES>(dpt);
            mma_abt<HS, QUERIES, STRIDE>(st, k_tile, 16 * warp, q_tile);
            const bool diagonal = i0 < warp_key0 + 15;
            UNROLL
            for (int n = 0; n < QUERIES / 8; n++) {
                UNROLL
                for (int e = 0; e < 4; e++) {
                    const int query = fragment_col(n, e);
                    const bool masked = diagonal && i0 + query < warp_key0 + fragment_row(e);
                    st[n][e] = masked ? 0.0f : exp2f(st[n][e] * scale_log2 - lse_tile[query]);  // P^T
                }
            }
            mma_pb<QUERIES, HS, STRIDE>(dv, st, do_tile);
            mma_abt<HS, QUERIES, STRIDE>(dpt, v_tile, 16 * warp, do_tile);
            UNROLL
            for (int n = 0; n < QUERIES / 8; n++) {
                UNROLL
                for (int e = 0; e < 4; e++) st[n][e] *= dpt[n][e] - d_tile[fragment_col(n, e)];  // dS^T
            }
            mma_pb<QUERIES, HS, STRIDE>(dk, st, q_tile);
        }
        __syncthreads();
    }
    bf16 *out = dqkv + (size_t)b * T * ld + h * HS;
    store_rows<HS>(out + C, ld, warp_key0, T, dk, scale);
    store_rows<HS>(out + 2 * C, ld, warp_key0, T, dv, 1.0f);
}

// --- Launches ---------------------------------------------------------------------------------

bool gpu_flash_attention_supports(int head_size) { return head_size == 32 || head_size == 64 || head_size == 128; }

// Dynamic shared memory of each kernel, in bytes.
template <int HS>
static size_t forward_smem() {
    using S = FlashShape<HS>;
    return (size_t)(S::ROWS + 4 * S::KEYS) * S::TILE_BYTES_PER_ROW;
}
template <int HS>
static size_t dq_smem() {
    using S = FlashShape<HS>;
    return (size_t)(2 * S::ROWS + 4 * S::KEYS) * S::TILE_BYTES_PER_ROW;
}
template <int HS>
static size_t dkv_smem() {
    using S = FlashShape<HS>;
    return (size_t)(2 * S::ROWS + 4 * S::QUERIES) * S::TILE_BYTES_PER_ROW + 4 * S::QUERIES * sizeof(float);
}

// Kernels with more than 48 KiB of dynamic shared memory must opt in, once.
template <typename Kernel>
static void allow_shared_memory(Kernel kernel, size_t bytes, bool *done) {
    if (*done || bytes <= 48 * 1024) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    *done = true;
}

template <int HS>
static void flash_forward_hs(bf16 *atty, float *lse, const bf16 *qkv, int B, int T, int C, int NH,
                             cudaStream_t stream) {
    static bool opted_in = false;
    const size_t smem = forward_smem<HS>();
    allow_shared_memory(flash_attention_forward_kernel<HS>, smem, &opted_in);
    const float scale_log2 = 1.4426950408889634f / sqrtf((float)HS);
    const dim3 grid(ceil_div(T, FlashShape<HS>::ROWS), NH, B);
    LAUNCH(flash_attention_forward_kernel<HS>, grid, dim3(FLASH_THREADS), smem, stream, atty, lse, qkv, T, C, NH,
           scale_log2);
}

template <int HS>
static void flash_backward_hs(bf16 *dqkv, float *row_dot, const bf16 *datty, const bf16 *atty, const bf16 *qkv,
                              const float *lse, int B, int T, int C, int NH, cudaStream_t stream) {
    static bool dq_opted_in = false, dkv_opted_in = false;
    allow_shared_memory(flash_attention_backward_dq_kernel<HS>, dq_smem<HS>(), &dq_opted_in);
    allow_shared_memory(flash_attention_backward_dkv_kernel<HS>, dkv_smem<HS>(), &dkv_opted_in);
    const float scale = 1.0f / sqrtf((float)HS), scale_log2 = scale * 1.4426950408889634f;
    const dim3 grid(ceil_div(T, FlashShape<HS>::ROWS), NH, B);
    // dQ first: it writes the row-dot D that the dK/dV kernel reads.
    LAUNCH(flash_attention_backward_dq_kernel<HS>, grid, dim3(FLASH_THREADS), dq_smem<HS>(), stream, dqkv, row_dot,
           datty, atty, qkv, lse, T, C, NH, scale, scale_log2);
    LAUNCH(flash_attention_backward_dkv_kernel<HS>, grid, dim3(FLASH_THREADS), dkv_smem<HS>(), stream, dqkv, datty, qkv,
           lse, (const float *)row_dot, T, C, NH, scale, scale_log2);
}

// clang-format off
#define FLASH_DISPATCH(hs, call)                                                        \
    switch (hs) {                                                                       \
    case 32: call(32); break;                                                           \
    case 64: call(64); break;                                                           \
    case 128: call(128); break;                                                         \
    default: die("flash attention supports head sizes 32, 64, 128, not %d", hs);        \
    }
// clang-format on

void gpu_flash_attention_forward(bf16 *atty, float *lse, const bf16 *qkv, int B, int T, int C, int NH,
                                 cudaStream_t stream) {
#define FORWARD(HS) flash_forward_hs<HS>(atty, lse, qkv, B, T, C, NH, stream)
    FLASH_DISPATCH(C / NH, FORWARD)
#undef FORWARD
}

void gpu_flash_attention_backward(bf16 *dqkv, float *row_dot, const bf16 *datty, const bf16 *atty, const bf16 *qkv,
                                  const float *lse, int B, int T, int C, int NH, cudaStream_t stream) {
#define BACKWARD(HS) flash_backward_hs<HS>(dqkv, row_dot, datty, atty, qkv, lse, B, T, C, NH, stream)
    FLASH_DISPATCH(C / NH, BACKWARD)
#undef BACKWARD
}
