// The kernels of one incremental decoding step (model/decode.h on the CPU):
// the embedding of one position of B sequences, and the attention of that
// position's one query row against the key/value cache. The rest of a step
// (norms, products, GELU, residual adds) reuses the training kernels on B rows.
//
// Cache layout, as the CPU's: per layer, keys and values each B x T x C in
// the storage type, sequence b at b*T*C, position j at j*C, head h at
// columns h*hs.
//
// Attention: one block per (sequence, head), DECODE_WARPS warps. Warp w takes
// the chunks of 32 keys w, w + DECODE_WARPS, ... (keys c*32 .. c*32+31 of
// chunk c); each lane scores one key of the chunk (a dot product over the
// head, 16-byte loads), then the warp folds the chunk into its running
// maximum m, sum l and output o (online softmax: the scores of a long
// sequence, up to 65536 positions, never sit in shared memory at once; each
// lane keeps the output dimensions lane, lane + 32, ...). At the end the
// warps' (m, l, o) are merged in warp order. Every sum has an order fixed by
// t and the head size alone: the same bits for any batch, sequence or run.
//
// Position t's own key and value are read from the qkv row, not from the
// cache the block writes them to: no read depends on a write of the same
// launch, so no barrier orders them.
#include "kernels.cuh"

#define DECODE_WARPS 4
#define DECODE_THREADS (32 * DECODE_WARPS)
// Blocks per SM the register budget must allow: 4 leaves up to 128 registers
// a thread. Without a minimum, ptxas held the kernel to 32 and spilled to
// local memory; 8 (64 registers) still spills at head sizes 32 to 96.
#define DECODE_MIN_BLOCKS 4

// --- Embedding -----------------------------------------------------------------------------

// One thread per channel of one sequence.
template <typename floatX>
__global__ void encoder_decode_kernel(floatX *out, const uint16_t *prev, const floatX *wte, const floatX *wpe,
                                      const floatX *sos, int B, int t, int C) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * C) return;
    const int c = (int)(idx % C), b = (int)(idx / C);
    const floatX *e = t == 0 ? sos + c : wte + (size_t)prev[b] * C + c;
    out[idx] = from_float<floatX>(to_float(*e) + to_float(wpe[(size_t)t * C + c]));
}

template <typename floatX>
void gpu_encoder_decode_forward(floatX *out, const uint16_t *prev, const floatX *wte, const floatX *wpe,
                                const floatX *sos, int B, int t, int C, cudaStream_t stream) {
    LAUNCH(encoder_decode_kernel<floatX>, dim3(ceil_div((size_t)B * C, 256)), dim3(256), 0, stream, out, prev, wte, wpe,
           sos, B, t, C);
}

// --- Attention -----------------------------------------------------------------------------

// q . k over one head (HS a multiple of the pack), k in 16-byte packs; q in
// shared memory (every lane reads the same word: a broadcast).
template <typename floatX, int HS>
__device__ __forceinline__ float head_dot(const float *q, const floatX *k) {
    constexpr int P = 16 / sizeof(floatX);
    static_assert(HS % P == 0, "head size must be a multiple of the pack");
    float dot = 0.0f;
    for (int d = 0; d < HS; d += P) {
        const Floats<P> kk = load_floats<floatX, P>(k + d);
        for (int i = 0; i < P; i++) dot += q[d + i] * kk.v[i];
    }
    return dot;
}

template <typename floatX, int HS>
__global__ void __launch_bounds__(DECODE_THREADS, DECODE_MIN_BLOCKS)
    attention_decode_kernel(floatX *atty, const floatX *qkv, floatX *k_cache, floatX *v_cache, int NH, int t, int T,
                            int C, float scale) {
    constexpr int E = (HS + 31) / 32;  // output dimensions per lane
    static_assert(HS <= DECODE_THREADS, "one thread per dimension of the head");
    __shared__ float q[HS];
    __shared__ float warp_m[DECODE_WARPS], warp_l[DECODE_WARPS], warp_o[DECODE_WARPS][HS];
    const int h = (int)(blockIdx.x % NH), b = (int)(blockIdx.x / NH);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const floatX *row = qkv + (size_t)b * 3 * C + (size_t)h * HS;  // this head's q; k at +C, v at +2C
    const size_t seq = (size_t)b * T * C + (size_t)h * HS;         // this head's slice of sequence b in the caches
    // Position t into the caches (read below from the qkv row, not from there).
    if (threadIdx.x < HS) {
        const int d = threadIdx.x;
        q[d] = to_float(row[d]);
        k_cache[seq + (size_t)t * C + d] = row[C + d];
        v_cache[seq + (size_t)t * C + d] = row[2 * C + d];
    }
    __syncthreads();
    float m = -INFINITY, l = 0.0f, o[E];
    for (int e = 0; e < E; e++) o[e] = 0.0f;
    for (int j0 = warp * 32; j0 <= t; j0 += DECODE_THREADS) {
        // Lanes past t score a copy of key t and are masked out.
        const int j = j0 + lane <= t ? j0 + lane : t;
        const floatX *k = j == t ? row + C : k_cache + seq + (size_t)j * C;
        const float s = j0 + lane <= t ? head_dot<floatX, HS>(q, k) * scale : -INFINITY;
        const float m_new = fmaxf(m, warp_max(s));  // finite: key j0 <= t is in the chunk
        const float correction = expf(m - m_new), p = expf(s - m_new);
        l = l * correction + warp_sum(p);
        for (int e = 0; e < E; e++) o[e] *= correction;
        const int keys = t - j0 + 1 < 32 ? t - j0 + 1 : 32;  // warp-uniform
        for (int jj = 0; jj < keys; jj++) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            const floatX *v = j0 + jj == t ? row + 2 * C : v_cache + seq + (size_t)(j0 + jj) * C;
            for (int e = 0; e < E; e++) {
                const int d = lane + 32 * e;
                if (d < HS) o[e] += pj * to_float(v[d]);
            }
        }
        m = m_new;
    }
    // The warps' partial results merged in warp order (a warp without keys: m = -inf, l = 0).
    if (lane == 0) {
        warp_m[warp] = m;
        warp_l[warp] = l;
    }
    for (int e = 0; e < E; e++)
        if (lane + 32 * e < HS) warp_o[warp][lane + 32 * e] = o[e];
    __syncthreads();
    float m_all = -INFINITY;
    for (int w = 0; w < DECODE_WARPS; w++) m_all = fmaxf(m_all, warp_m[w]);
    if (threadIdx.x < HS) {
        const int d = threadIdx.x;
        float sum = 0.0f, y = 0.0f;
        for (int w = 0; w < DECODE_WARPS; w++) {
            const float factor = warp_m[w] == -INFINITY ? 0.0f : expf(warp_m[w] - m_all);
            sum += warp_l[w] * factor;
            y += warp_o[w][d] * factor;
        }
        // sum >= 1 (the largest score's term is 1): the fast division is exact
        // to 2 ulps there, and has no slow path to call.
        atty[(size_t)b * C + (size_t)h * HS + d] = from_float<floatX>(__fdividef(y, sum));
    }
}

template <typename floatX, int HS>
static void attention_decode_hs(floatX *atty, const floatX *qkv, floatX *k_cache, floatX *v_cache, int B, int t, int T,
                                int C, int NH, cudaStream_t stream) {
    // One block per (sequence, head) along x (up to 2^31 - 1 blocks).
    LAUNCH((attention_decode_kernel<floatX, HS>), dim3((unsigned)((size_t)B * NH)), dim3(DECODE_THREADS), 0, stream,
           atty, qkv, k_cache, v_cache, NH, t, T, C, 1.0f / sqrtf((float)HS));
}

template <typename floatX>
void gpu_attention_decode_forward(floatX *atty, const floatX *qkv, floatX *k_cache, floatX *v_cache, int B, int t,
                                  int T, int C, int NH, cudaStream_t stream) {
    if (t < 0 || t >= T || B < 1) die("internal: attention decode at position %d of %d (batch %d)", t, T, B);
    if ((size_t)B * NH > 0x7fffffffu) die("internal: attention decode of %d x %d heads: too many blocks", B, NH);
    // Rows start at multiples of the head size (16 values or more): 16-byte
    // packs stay aligned when the buffers start aligned.
    if (!pack_aligned(qkv, 16) || !pack_aligned(k_cache, 16) || !pack_aligned(v_cache, 16))
        die("internal: attention decode buffers are not 16-byte aligned");
    const int hs = C / NH;
#define DECODE(HS) attention_decode_hs<floatX, HS>(atty, qkv, k_cache, v_cache, B, t, T, C, NH, stream)
    switch (hs) {
    case 16: DECODE(16); break;
    case 32: DECODE(32); break;
    case 64: DECODE(64); break;
    case 96: DECODE(96); break;
    case 128: DECODE(128); break;
    default: die("the attention decode kernel supports head sizes 16, 32, 64, 96, 128, not %d", hs);
    }
#undef DECODE
}

#define INSTANTIATE_DECODE(floatX)                                                                                  \
    template void gpu_encoder_decode_forward<floatX>(floatX *, const uint16_t *, const floatX *, const floatX *,    \
                                                     const floatX *, int, int, int, cudaStream_t);                  \
    template void gpu_attention_decode_forward<floatX>(floatX *, const floatX *, floatX *, floatX *, int, int, int, \
                                                       int, int, cudaStream_t);
INSTANTIATE_DECODE(float)
INSTANTIATE_DECODE(bf16)
