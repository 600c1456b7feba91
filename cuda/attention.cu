// Causal multi-head attention, flash-attention style: no T x T matrix in
// global memory. The forward pass keeps each row's log-sum-exp; the backward
// pass recomputes the probabilities from it, in two kernels (dQ over query
// rows, dK and dV over key rows) so that no atomics are needed and the
// results are deterministic.
//
// Work split: G = 1, 2 or 4 threads share one row (query or key) of one head;
// thread g of a group owns the head dimensions g, g + G, g + 2G, ... (so the
// group's lanes read neighbouring shared-memory words), and dot products are
// finished with shuffles inside the group. A block of 128 threads handles
// 128 / G rows and walks over tiles of the other side's rows staged in
// shared memory (fp32). Control flow is uniform within each warp: masked
// and out-of-range rows are computed and discarded, never skipped.
//
// This is the portable path (plain FMAs, no tensor cores), the one the
// interpreter tests; head sizes 16, 32, 64, 96 and 128.
#include "kernels.cuh"

#define ATT_THREADS 128

template <int HS>
struct AttShape {
    static constexpr int G = HS <= 32 ? 1 : HS <= 64 ? 2 : 4;         // threads per row
    static constexpr int E = HS / G;                                  // dimensions per thread
    static constexpr int ROWS = ATT_THREADS / G;                      // rows per block
    static constexpr int TILE = HS <= 32 ? 128 : HS <= 64 ? 64 : 32;  // rows per staged tile
    static_assert(HS % G == 0, "head size must divide among the group");
};

// Sum over the G lanes of a group (all lanes of the warp call it).
template <int G>
__device__ __forceinline__ float group_sum(float x) {
    for (int offset = 1; offset < G; offset <<= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

// Stages rows [r0, r0 + TILE) of one head's slice (columns col..col+HS of a
// row-major matrix with leading dimension ld) into tile as fp32; rows past T are zeros.
template <int HS, int TILE, typename floatX>
__device__ __forceinline__ void stage_tile(float (*tile)[HS], const floatX *base, int r0, int T, size_t ld) {
    for (int idx = threadIdx.x; idx < TILE * HS; idx += ATT_THREADS) {
        const int r = idx / HS, d = idx % HS, row = r0 + r;
        tile[r][d] = row < T ? to_float(base[(size_t)row * ld + d]) : 0.0f;
    }
}

template <typename floatX, int HS>
__global__ void __launch_bounds__(ATT_THREADS)
    attention_forward_kernel(floatX *atty, float *lse, const floatX *qkv, int T, int C, int NH, float scale) {
    using S = AttShape<HS>;
    __shared__ float k_tile[S::TILE][HS];
    __shared__ float v_tile[S::TILE][HS];
    const int h = blockIdx.y, b = blockIdx.z, g = threadIdx.x % S::G;
    const int i0 = blockIdx.x * S::ROWS, i = i0 + threadIdx.x / S::G;
    const int row = i < T ? i : T - 1;  // rows past T compute on a copy and are not written
    const size_t ld = 3 * (size_t)C;
    const floatX *q_base = qkv + (size_t)b * T * ld + h * HS;
    float q[S::E], o[S::E];
    for (int e = 0; e < S::E; e++) {
        q[e] = to_float(q_base[(size_t)row * ld + g + S::G * e]) * scale;
        o[e] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int key_end = i0 + S::ROWS < T ? i0 + S::ROWS : T;  // causal: keys before the block's last row
    for (int j0 = 0; j0 < key_end; j0 += S::TILE) {
        __syncthreads();  // the previous tile has been used by everyone
        stage_tile<HS, S::TILE>(k_tile, q_base + C, j0, T, ld);
        stage_tile<HS, S::TILE>(v_tile, q_base + 2 * C, j0, T, ld);
        __syncthreads();
        // Keys in chunks of 16: scores first, then one rescale of the output per chunk.
        for (int c0 = 0; c0 < S::TILE; c0 += 16) {
            float s[16], chunk_max = -INFINITY;
            for (int jj = 0; jj < 16; jj++) {
                const float *k = k_tile[c0 + jj];
                float dot = 0.0f;
                for (int e = 0; e < S::E; e++) dot += q[e] * k[g + S::G * e];
                dot = group_sum<S::G>(dot);
                s[jj] = j0 + c0 + jj <= i ? dot : -INFINITY;
                chunk_max = fmaxf(chunk_max, s[jj]);
            }
            const float m_new = fmaxf(m, chunk_max);
            if (m_new == -INFINITY) continue;  // uniform per row group; no collectives below
            const float correction = expf(m - m_new);
            l *= correction;
            for (int e = 0; e < S::E; e++) o[e] *= correction;
            for (int jj = 0; jj < 16; jj++) {
                const float p = expf(s[jj] - m_new);
                l += p;
                const float *v = v_tile[c0 + jj];
                for (int e = 0; e < S::E; e++) o[e] += p * v[g + S::G * e];
            }
            m = m_new;
        }
    }
    if (i < T) {
        floatX *y = atty + ((size_t)b * T + i) * C + h * HS;
        const float inv = 1.0f / l;
        for (int e = 0; e < S::E; e++) y[g + S::G * e] = from_float<floatX>(o[e] * inv);
        if (g == 0) lse[((size_t)b * NH + h) * T + i] = m + logf(l);
    }
}

// D[b, h, i] = sum over the head's dimensions of datty * atty (row i).
template <typename floatX>
__global__ void attention_row_dot_kernel(float *D, const floatX *datty, const floatX *atty, int B, int T, int C,
                                         int NH) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T) return;
    const int i = (int)(idx % T), h = (int)(idx / T % NH), b = (int)(idx / T / NH);
    const int hs = C / NH;
    const size_t off = ((size_t)b * T + i) * C + (size_t)h * hs;
    float acc = 0.0f;
    for (int d = 0; d < hs; d++) acc += to_float(datty[off + d]) * to_float(atty[off + d]);
    D[idx] = acc;
}

// dQ: each group owns a query row and walks over the key tiles it can see.
template <typename floatX, int HS>
__global__ void __launch_bounds__(ATT_THREADS)
    attention_backward_dq_kernel(floatX *dqkv, const floatX *datty, const floatX *qkv, const float *lse, const float *D,
                                 int T, int C, int NH, float scale) {
    using S = AttShape<HS>;
    __shared__ float k_tile[S::TILE][HS];
    __shared__ float v_tile[S::TILE][HS];
    const int h = blockIdx.y, b = blockIdx.z, g = threadIdx.x % S::G;
    const int i0 = blockIdx.x * S::ROWS, i = i0 + threadIdx.x / S::G;
    const int row = i < T ? i : T - 1;
    const size_t ld = 3 * (size_t)C;
    const floatX *q_base = qkv + (size_t)b * T * ld + h * HS;
    const floatX *dy = datty + ((size_t)b * T + row) * C + h * HS;
    float q[S::E], dout[S::E], dq[S::E];
    for (int e = 0; e < S::E; e++) {
        q[e] = to_float(q_base[(size_t)row * ld + g + S::G * e]) * scale;
        dout[e] = to_float(dy[g + S::G * e]);
        dq[e] = 0.0f;
    }
    const float row_lse = lse[((size_t)b * NH + h) * T + row], row_d = D[((size_t)b * NH + h) * T + row];
    const int key_end = i0 + S::ROWS < T ? i0 + S::ROWS : T;
    for (int j0 = 0; j0 < key_end; j0 += S::TILE) {
        __syncthreads();
        stage_tile<HS, S::TILE>(k_tile, q_base + C, j0, T, ld);
        stage_tile<HS, S::TILE>(v_tile, q_base + 2 * C, j0, T, ld);
        __syncthreads();
        for (int jj = 0; jj < S::TILE; jj++) {
            const float *k = k_tile[jj], *v = v_tile[jj];
            float s = 0.0f, dp = 0.0f;
            for (int e = 0; e < S::E; e++) {
                s += q[e] * k[g + S::G * e];
                dp += dout[e] * v[g + S::G * e];
            }
            s = group_sum<S::G>(s);
            dp = group_sum<S::G>(dp);
            const float p = j0 + jj <= i ? expf(s - row_lse) : 0.0f;
            const float ds = p * (dp - row_d);
            for (int e = 0; e < S::E; e++) dq[e] += ds * k[g + S::G * e];
        }
    }
    if (i < T) {
        floatX *out = dqkv + ((size_t)b * T + i) * ld + h * HS;
        for (int e = 0; e < S::E; e++) out[g + S::G * e] = from_float<floatX>(dq[e] * scale);
    }
}

// dK and dV: each group owns a key row and walks over the query tiles that see it.
template <typename floatX, int HS>
__global__ void __launch_bounds__(ATT_THREADS)
    attention_backward_dkv_kernel(floatX *dqkv, const floatX *datty, const floatX *qkv, const float *lse,
                                  const float *D, int T, int C, int NH, float scale) {
    using S = AttShape<HS>;
    __shared__ float q_tile[S::TILE][HS];
    __shared__ float dy_tile[S::TILE][HS];
    __shared__ float lse_tile[S::TILE], d_tile[S::TILE];
    const int h = blockIdx.y, b = blockIdx.z, g = threadIdx.x % S::G;
    const int j0 = blockIdx.x * S::ROWS, j = j0 + threadIdx.x / S::G;
    const int row = j < T ? j : T - 1;
    const size_t ld = 3 * (size_t)C;
    const floatX *q_base = qkv + (size_t)b * T * ld + h * HS;
    float k[S::E], v[S::E], dk[S::E], dv[S::E];
    for (int e = 0; e < S::E; e++) {
        k[e] = to_float(q_base[(size_t)row * ld + C + g + S::G * e]);
        v[e] = to_float(q_base[(size_t)row * ld + 2 * C + g + S::G * e]);
        dk[e] = dv[e] = 0.0f;
    }
    const float *lse_bh = lse + ((size_t)b * NH + h) * T, *d_bh = D + ((size_t)b * NH + h) * T;
    // Queries from the block's first key row on (earlier ones cannot see it).
    for (int i0 = j0 / S::TILE * S::TILE; i0 < T; i0 += S::TILE) {
        __syncthreads();
        stage_tile<HS, S::TILE>(q_tile, q_base, i0, T, ld);
        stage_tile<HS, S::TILE>(dy_tile, datty + (size_t)b * T * C + h * HS, i0, T, (size_t)C);
        for (int r = threadIdx.x; r < S::TILE; r += ATT_THREADS) {
            lse_tile[r] = i0 + r < T ? lse_bh[i0 + r] : 0.0f;
            d_tile[r] = i0 + r < T ? d_bh[i0 + r] : 0.0f;
        }
        __syncthreads();
        for (int ii = 0; ii < S::TILE; ii++) {
            const float *q = q_tile[ii], *dy = dy_tile[ii];
            float s = 0.0f, dp = 0.0f;
            for (int e = 0; e < S::E; e++) {
                s += q[g + S::G * e] * k[e];
                dp += dy[g + S::G * e] * v[e];
            }
            s = group_sum<S::G>(s) * scale;
            dp = group_sum<S::G>(dp);
            const int i = i0 + ii;
            const float p = i >= j && i < T ? expf(s - lse_tile[ii]) : 0.0f;
            const float ds = p * (dp - d_tile[ii]);
            for (int e = 0; e < S::E; e++) {
                dv[e] += p * dy[g + S::G * e];
                dk[e] += ds * q[g + S::G * e];
            }
        }
    }
    if (j < T) {
        floatX *out = dqkv + ((size_t)b * T + j) * ld + h * HS;
        for (int e = 0; e < S::E; e++) {
            out[C + g + S::G * e] = from_float<floatX>(dk[e] * scale);
            out[2 * C + g + S::G * e] = from_float<floatX>(dv[e]);
        }
    }
}

bool gpu_attention_supports(int head_size) {
    return head_size == 16 || head_size == 32 || head_size == 64 || head_size == 96 || head_size == 128;
}

template <typename floatX, int HS>
static void forward_hs(floatX *atty, float *lse, const floatX *qkv, int B, int T, int C, int NH, cudaStream_t stream) {
    const dim3 grid(ceil_div(T, AttShape<HS>::ROWS), NH, B);
    LAUNCH((attention_forward_kernel<floatX, HS>), grid, dim3(ATT_THREADS), 0, stream, atty, lse, qkv, T, C, NH,
           1.0f / sqrtf((float)HS));
}

template <typename floatX, int HS>
static void backward_hs(floatX *dqkv, const floatX *datty, const floatX *qkv, const float *lse, const float *D, int B,
                        int T, int C, int NH, cudaStream_t stream) {
    const dim3 grid(ceil_div(T, AttShape<HS>::ROWS), NH, B);
    const float scale = 1.0f / sqrtf((float)HS);
    LAUNCH((attention_backward_dq_kernel<floatX, HS>), grid, dim3(ATT_THREADS), 0, stream, dqkv, datty, qkv, lse, D, T,
           C, NH, scale);
    LAUNCH((attention_backward_dkv_kernel<floatX, HS>), grid, dim3(ATT_THREADS), 0, stream, dqkv, datty, qkv, lse, D, T,
           C, NH, scale);
}

// clang-format off
#define DISPATCH_HEAD_SIZE(hs, call)                                                           \
    switch (hs) {                                                                              \
    case 16: call(16); break;                                                                  \
    case 32: call(32); break;                                                                  \
    case 64: call(64); break;                                                                  \
    case 96: call(96); break;                                                                  \
    case 128: call(128); break;                                                                \
    default: die("attention kernels support head sizes 16, 32, 64, 96, 128, not %d", hs);      \
    }
// clang-format on

template <typename floatX>
void gpu_attention_forward(floatX *atty, float *lse, const floatX *qkv, int B, int T, int C, int NH,
                           cudaStream_t stream) {
#define FORWARD(HS) forward_hs<floatX, HS>(atty, lse, qkv, B, T, C, NH, stream)
    DISPATCH_HEAD_SIZE(C / NH, FORWARD)
#undef FORWARD
}

template <typename floatX>
void gpu_attention_backward(floatX *dqkv, float *row_dot, const floatX *datty, const floatX *atty, const floatX *qkv,
                            const float *lse, int B, int T, int C, int NH, cudaStream_t stream) {
    const size_t rows = (size_t)B * NH * T;
    LAUNCH(attention_row_dot_kernel<floatX>, dim3(ceil_div(rows, 256)), dim3(256), 0, stream, row_dot, datty, atty, B,
           T, C, NH);
#define BACKWARD(HS) backward_hs<floatX, HS>(dqkv, datty, qkv, lse, row_dot, B, T, C, NH, stream)
    DISPATCH_HEAD_SIZE(C / NH, BACKWARD)
#undef BACKWARD
}

template void gpu_attention_forward<float>(float *, float *, const float *, int, int, int, int, cudaStream_t);
template void gpu_attention_forward<bf16>(bf16 *, float *, const bf16 *, int, int, int, int, cudaStream_t);
template void gpu_attention_backward<float>(float *, float *, const float *, const float *, const float *,
                                            const float *, int, int, int, int, cudaStream_t);
template void gpu_attention_backward<bf16>(bf16 *, float *, const bf16 *, const bf16 *, const bf16 *, const float *,
                                           int, int, int, int, cudaStream_t);
