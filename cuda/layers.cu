// The CUDA backend's layer kernels except attention and matmul (kernels.cuh).
#include <initializer_list>
#include <vector>

#include "kernels.cuh"

// Whether every pointer (NULL too) can start a 16-byte pack: the wide kernels
// then run, as they always do on the memory plans' 256-byte aligned buffers;
// else the same kernels one element per access (P = 1).
static bool packs_fit(std::initializer_list<const void *> pointers) {
    for (const void *p : pointers)
        if (!pack_aligned(p, 16)) return false;
    return true;
}

// --- Embedding -----------------------------------------------------------------------

// One thread per P channels of one position (C % P == 0).
template <typename floatX, int P>
__global__ void encoder_forward_kernel(floatX *out, const uint16_t *tokens, const floatX *wte, const floatX *wpe,
                                       const floatX *sos, int B, int T, int C) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * P;
    if (idx >= (size_t)B * T * C) return;
    const int c = (int)(idx % C), t = (int)(idx / C % T), b = (int)(idx / C / T);
    const floatX *e = t == 0 ? sos + c : wte + (size_t)tokens[b * T + t - 1] * C + c;
    const Floats<P> x = load_floats<floatX, P>(e), pos = load_floats<floatX, P>(wpe + (size_t)t * C + c);
    Floats<P> y;
    for (int k = 0; k < P; k++) y.v[k] = x.v[k] + pos.v[k];
    store_floats(out + idx, y);
}

template <typename floatX>
void gpu_encoder_forward(floatX *out, const uint16_t *tokens, const floatX *wte, const floatX *wpe, const floatX *sos,
                         int B, int T, int C, cudaStream_t stream) {
    constexpr int P = 16 / sizeof(floatX);
    const size_t n = (size_t)B * T * C;
    if (C % P == 0 && packs_fit({out, wte, wpe, sos}))
        LAUNCH((encoder_forward_kernel<floatX, P>), dim3(ceil_div(n / P, 256)), dim3(256), 0, stream, out, tokens, wte,
               wpe, sos, B, T, C);
    else
        LAUNCH((encoder_forward_kernel<floatX, 1>), dim3(ceil_div(n, 256)), dim3(256), 0, stream, out, tokens, wte, wpe,
               sos, B, T, C);
}

void token_rows_by_value(const uint16_t *tokens, int B, int T, int V, int *offsets, int *rows) {
    for (int v = 0; v <= V; v++) offsets[v] = 0;
    for (int b = 0; b < B; b++)
        for (int t = 1; t < T; t++) offsets[tokens[b * T + t - 1] + 1]++;
    for (int v = 0; v < V; v++) offsets[v + 1] += offsets[v];
    std::vector<int> fill(offsets, offsets + V);
    for (int b = 0; b < B; b++)
        for (int t = 1; t < T; t++) rows[fill[tokens[b * T + t - 1]]++] = b * T + t;
}

// The rows of one token are summed in chunks of ENCODER_BACKWARD_CHUNK rows,
// one warp per (chunk, 32 channels), each into its own partial sum; a second
// kernel adds a token's partials in chunk order. So a token that feeds most
// rows (a background color: ~300k rows at iGPT-S batch 32) is a few hundred
// short chains in parallel, not one long one. The chunks follow from the
// token counts alone and every sum has a fixed order: two runs give the same
// bits. Chunk 0 starts from the old dwte row, so a token of one chunk is
// summed exactly in the CPU's order (the same bits); a longer one differs
// from the CPU by rounding only.
#define ENCODER_BACKWARD_CHANNELS 32

// Token v's chunk j has the partial-sum slot offsets[v] / CHUNK + v + j: a
// slot per chunk, none shared (a token's rows start no earlier than the
// previous token's end), all below B (T-1) / CHUNK + V, found without a
// prefix sum over the tokens; and the slot's token, by binary search.
__device__ __forceinline__ int encoder_first_slot(const int *offsets, int v) {
    return offsets[v] / ENCODER_BACKWARD_CHUNK + v;
}

template <typename floatX>
__global__ void encoder_backward_chunks_kernel(float *partials, const float *dwte, const floatX *dout,
                                               const int *offsets, const int *rows, int C, int V) {
    const int slot = blockIdx.x, c = blockIdx.y * ENCODER_BACKWARD_CHANNELS + threadIdx.x;
    if (c >= C) return;
    int v = 0, last = V - 1;  // the last token whose first slot is <= slot
    while (v < last) {
        const int mid = (v + last + 1) / 2;
        if (encoder_first_slot(offsets, mid) <= slot) v = mid;
        else last = mid - 1;
    }
    const int chunk = slot - encoder_first_slot(offsets, v);
    const int begin = offsets[v] + chunk * ENCODER_BACKWARD_CHUNK;
    if (begin >= offsets[v + 1]) return;  // a slot no chunk uses
    const int end = begin + ENCODER_BACKWARD_CHUNK < offsets[v + 1] ? begin + ENCODER_BACKWARD_CHUNK : offsets[v + 1];
    float acc = chunk == 0 ? dwte[(size_t)v * C + c] : 0.0f;
    for (int r = begin; r < end; r++) acc += to_float(dout[(size_t)rows[r] * C + c]);
    partials[(size_t)slot * C + c] = acc;
}

// Block (v < V, j): dwte row v, channels 32 j .. 32 j + 31, from its
// partials in chunk order. Blocks (V, j): dsos; (V + 1 + t, j): dwpe row t
// (sums of B rows, in the CPU's order).
template <typename floatX>
__global__ void encoder_backward_finish_kernel(float *dwte, float *dwpe, float *dsos, const float *partials,
                                               const floatX *dout, const int *offsets, int B, int T, int C, int V) {
    const int v = blockIdx.x, c = blockIdx.y * ENCODER_BACKWARD_CHANNELS + threadIdx.x;
    if (c >= C) return;
    if (v < V) {
        const int chunks = (offsets[v + 1] - offsets[v] + ENCODER_BACKWARD_CHUNK - 1) / ENCODER_BACKWARD_CHUNK;
        if (chunks == 0) return;  // a token absent from the batch: dwte row unchanged
        const float *p = partials + (size_t)encoder_first_slot(offsets, v) * C + c;
        float acc = p[0];
        for (int j = 1; j < chunks; j++) acc += p[(size_t)j * C];
        dwte[(size_t)v * C + c] = acc;
    } else if (v == V) {
        // dsos and dwpe[0] both take every row at t = 0; dwpe[0] is done below.
        float acc = dsos[c];
        for (int b = 0; b < B; b++) acc += to_float(dout[(size_t)b * T * C + c]);
        dsos[c] = acc;
    } else {
        const int t = v - V - 1;
        float acc = dwpe[(size_t)t * C + c];
        for (int b = 0; b < B; b++) acc += to_float(dout[((size_t)b * T + t) * C + c]);
        dwpe[(size_t)t * C + c] = acc;
    }
}

size_t gpu_encoder_backward_scratch(int B, int T, int C, int V) {
    return ((size_t)B * (T - 1) / ENCODER_BACKWARD_CHUNK + V) * C;
}

template <typename floatX>
void gpu_encoder_backward(float *dwte, float *dwpe, float *dsos, const floatX *dout, const int *offsets,
                          const int *rows, int B, int T, int C, int V, float *scratch, cudaStream_t stream) {
    const unsigned slots = (unsigned)((size_t)B * (T - 1) / ENCODER_BACKWARD_CHUNK + V),
                   channel_blocks = ceil_div(C, ENCODER_BACKWARD_CHANNELS);
    LAUNCH(encoder_backward_chunks_kernel<floatX>, dim3(slots, channel_blocks), dim3(ENCODER_BACKWARD_CHANNELS), 0,
           stream, scratch, dwte, dout, offsets, rows, C, V);
    LAUNCH(encoder_backward_finish_kernel<floatX>, dim3(V + 1 + T, channel_blocks), dim3(ENCODER_BACKWARD_CHANNELS), 0,
           stream, dwte, dwpe, dsos, scratch, dout, offsets, B, T, C, V);
}

// --- Norms -----------------------------------------------------------------------------
// One warp per row; x is read from global memory in each pass (it stays in
// cache); each lane takes P channels at a time (C % P == 0).

#define NORM_ROWS_PER_BLOCK 4

template <typename floatX, int P>
__global__ void residual_norm_forward_kernel(bool layernorm, floatX *resid_out, floatX *out, float *mean, float *rstd,
                                             const floatX *a, const floatX *b, const floatX *gain, const floatX *bias,
                                             int N, int C) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * NORM_ROWS_PER_BLOCK + threadIdx.x / 32;
    if (row >= N) return;  // whole warps leave together; no block barrier below
    const floatX *ar = a + (size_t)row * C, *br = b ? b + (size_t)row * C : nullptr;
    floatX *xr = resid_out ? resid_out + (size_t)row * C : nullptr;
    // x as stored (rounded to floatX), so that backward sees the same input.
    auto x_at = [&](int c) {
        Floats<P> x = load_floats<floatX, P>(ar + c);
        if (br) {
            const Floats<P> y = load_floats<floatX, P>(br + c);
            for (int k = 0; k < P; k++) x.v[k] = to_float(from_float<floatX>(x.v[k] + y.v[k]));
        }
        return x;
    };
    float mu = 0.0f;
    if (layernorm) {
        float s = 0.0f;
        for (int c = lane * P; c < C; c += 32 * P) {
            const Floats<P> x = x_at(c);
            for (int k = 0; k < P; k++) s += x.v[k];
        }
        mu = warp_sum(s) / (float)C;
    }
    float ss = 0.0f;
    for (int c = lane * P; c < C; c += 32 * P) {
        const Floats<P> x = x_at(c);
        for (int k = 0; k < P; k++) ss += (x.v[k] - mu) * (x.v[k] - mu);
    }
    const float r = 1.0f / sqrtf(warp_sum(ss) / (float)C + IGPT_NORM_EPS);
    floatX *o = out + (size_t)row * C;
    for (int c = lane * P; c < C; c += 32 * P) {
        const Floats<P> x = x_at(c), g = load_floats<floatX, P>(gain + c);
        Floats<P> beta = {}, y;
        if (bias) beta = load_floats<floatX, P>(bias + c);
        for (int k = 0; k < P; k++) y.v[k] = (x.v[k] - mu) * r * g.v[k] + beta.v[k];
        if (xr) store_floats(xr + c, x);
        store_floats(o + c, y);
    }
    if (lane == 0) {
        if (mean) mean[row] = mu;
        rstd[row] = r;
    }
}

template <typename floatX>
void gpu_residual_norm_forward(NormKind kind, floatX *resid_out, floatX *out, float *mean, float *rstd, const floatX *a,
                               const floatX *b, const floatX *gain, const floatX *bias, int N, int C,
                               cudaStream_t stream) {
    constexpr int P = 16 / sizeof(floatX);
    const dim3 grid(ceil_div(N, NORM_ROWS_PER_BLOCK)), block(32 * NORM_ROWS_PER_BLOCK);
    const bool layernorm = kind == NORM_LAYERNORM;
    if (C % P == 0 && packs_fit({resid_out, out, a, b, gain, bias}))
        LAUNCH((residual_norm_forward_kernel<floatX, P>), grid, block, 0, stream, layernorm, resid_out, out, mean, rstd,
               a, b, gain, bias, N, C);
    else
        LAUNCH((residual_norm_forward_kernel<floatX, 1>), grid, block, 0, stream, layernorm, resid_out, out, mean, rstd,
               a, b, gain, bias, N, C);
}

// The input gradient and the gain and bias gradients in one pass over dout
// and inp. Each block takes NORM_BACKWARD_ROWS rows, each warp a contiguous
// share of them, one row at a time: the row's two sums (warp_sum), then dinp,
// and each lane adds its channels' dgain and dbias terms to its warp's
// accumulators in shared memory (a lane owns its channels: no races). The
// block then sums its warps in order into its partial sums, and a second,
// small kernel adds the blocks' partials in order: fixed orders throughout.
#define NORM_BACKWARD_ROWS 64

template <typename floatX, int P>
__global__ void norm_backward_kernel(bool layernorm, floatX *dinp, float *partial_gain, float *partial_bias,
                                     const floatX *dout, const floatX *inp, const float *mean, const float *rstd,
                                     const floatX *gain, int N, int C) {
    IGPT_DYNAMIC_SHARED(float, sums);  // per warp: C dgain sums, then C dbias sums
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    float *warp_gain = sums + (size_t)warp * 2 * C, *warp_bias = warp_gain + C;
    for (int c = lane * P; c < C; c += 32 * P)
        for (int k = 0; k < P; k++) warp_gain[c + k] = warp_bias[c + k] = 0.0f;
    const int rows_per_warp = NORM_BACKWARD_ROWS / warps,
              first = blockIdx.x * NORM_BACKWARD_ROWS + warp * rows_per_warp;
    const int end = first + rows_per_warp < N ? first + rows_per_warp : N;
    for (int row = first; row < end; row++) {
        const floatX *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
        floatX *dx = dinp + (size_t)row * C;
        const float mu = layernorm ? mean[row] : 0.0f, r = rstd[row];
        float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
        for (int c = lane * P; c < C; c += 32 * P) {
            const Floats<P> xs = load_floats<floatX, P>(x + c), dys = load_floats<floatX, P>(dy + c),
                            g = load_floats<floatX, P>(gain + c);
            for (int k = 0; k < P; k++) {
                const float dxhat = dys.v[k] * g.v[k];
                sum_dxhat += dxhat;
                sum_dxhat_xhat += dxhat * (xs.v[k] - mu) * r;
            }
        }
        sum_dxhat = warp_sum(sum_dxhat);
        sum_dxhat_xhat = warp_sum(sum_dxhat_xhat);
        const float m1 = layernorm ? sum_dxhat / (float)C : 0.0f, m2 = sum_dxhat_xhat / (float)C;
        for (int c = lane * P; c < C; c += 32 * P) {
            const Floats<P> xs = load_floats<floatX, P>(x + c), dys = load_floats<floatX, P>(dy + c),
                            g = load_floats<floatX, P>(gain + c);
            Floats<P> d = load_floats<floatX, P>(dx + c);
            for (int k = 0; k < P; k++) {
                d.v[k] += r * (dys.v[k] * g.v[k] - m1 - (xs.v[k] - mu) * r * m2);
                warp_gain[c + k] += dys.v[k] * (xs.v[k] - mu) * r;
                warp_bias[c + k] += dys.v[k];
            }
            store_floats(dx + c, d);
        }
    }
    __syncthreads();  // every warp's sums are complete
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float g = 0.0f, bsum = 0.0f;
        for (int w = 0; w < warps; w++) {
            g += sums[(size_t)w * 2 * C + c];
            bsum += sums[(size_t)w * 2 * C + C + c];
        }
        partial_gain[(size_t)blockIdx.x * C + c] = g;
        partial_bias[(size_t)blockIdx.x * C + c] = bsum;
    }
}

__global__ void norm_param_finish_kernel(float *dgain, float *dbias, const float *partial_gain,
                                         const float *partial_bias, int blocks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float g = 0.0f, bsum = 0.0f;
    for (int k = 0; k < blocks; k++) {
        g += partial_gain[(size_t)k * C + c];
        bsum += partial_bias[(size_t)k * C + c];
    }
    dgain[c] += g;
    if (dbias) dbias[c] += bsum;
}

size_t gpu_norm_backward_scratch(int N, int C) { return 2 * (size_t)ceil_div(N, NORM_BACKWARD_ROWS) * C; }

// Warps per block of the fused backward: their accumulators (2 C floats each)
// within the 48 KiB of shared memory a block gets without opting in.
static int norm_backward_warps(int C) {
    const size_t per_warp = 2 * (size_t)C * sizeof(float), limit = 48 * 1024;
    if (per_warp > limit) die("the norm backward kernel supports d_model up to %zu (got %d)", limit / 8, C);
    return per_warp * 4 <= limit ? 4 : per_warp * 2 <= limit ? 2 : 1;
}

template <typename floatX>
void gpu_norm_backward(NormKind kind, floatX *dinp, float *dgain, float *dbias, const floatX *dout, const floatX *inp,
                       const float *mean, const float *rstd, const floatX *gain, int N, int C, float *scratch,
                       cudaStream_t stream) {
    constexpr int P = 16 / sizeof(floatX);
    const bool layernorm = kind == NORM_LAYERNORM;
    const unsigned blocks = ceil_div(N, NORM_BACKWARD_ROWS);
    const int warps = norm_backward_warps(C);
    const size_t shared_bytes = (size_t)warps * 2 * C * sizeof(float);
    float *partial_gain = scratch, *partial_bias = scratch + (size_t)blocks * C;
    if (C % P == 0 && packs_fit({dinp, dout, inp, gain}))
        LAUNCH((norm_backward_kernel<floatX, P>), dim3(blocks), dim3(32 * warps), shared_bytes, stream, layernorm, dinp,
               partial_gain, partial_bias, dout, inp, mean, rstd, gain, N, C);
    else
        LAUNCH((norm_backward_kernel<floatX, 1>), dim3(blocks), dim3(32 * warps), shared_bytes, stream, layernorm, dinp,
               partial_gain, partial_bias, dout, inp, mean, rstd, gain, N, C);
    LAUNCH(norm_param_finish_kernel, dim3(ceil_div(C, 128)), dim3(128), 0, stream, dgain, dbias, partial_gain,
           partial_bias, (int)blocks, C);
}

// --- Elementwise ------------------------------------------------------------------------
// One thread per P elements; the last thread's short remainder one by one.

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float gelu(float x) { return x * sigmoid(1.702f * x); }
__device__ __forceinline__ float gelu_grad(float x) {
    const float s = sigmoid(1.702f * x);
    return s + 1.702f * x * s * (1.0f - s);
}

template <typename floatX, int P>
__global__ void gelu_forward_kernel(floatX *out, const floatX *inp, size_t n) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * P;
    if (i + P <= n) {
        Floats<P> x = load_floats<floatX, P>(inp + i);
        for (int k = 0; k < P; k++) x.v[k] = gelu(x.v[k]);
        store_floats(out + i, x);
    } else {
        for (size_t j = i; j < n; j++) out[j] = from_float<floatX>(gelu(to_float(inp[j])));
    }
}

template <typename floatX, int P>
__global__ void gelu_backward_kernel(floatX *dinp, const floatX *inp, const floatX *dout, size_t n) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * P;
    if (i + P <= n) {
        const Floats<P> x = load_floats<floatX, P>(inp + i);
        Floats<P> d = load_floats<floatX, P>(dout + i);
        for (int k = 0; k < P; k++) d.v[k] *= gelu_grad(x.v[k]);
        store_floats(dinp + i, d);
    } else {
        for (size_t j = i; j < n; j++) dinp[j] = from_float<floatX>(to_float(dout[j]) * gelu_grad(to_float(inp[j])));
    }
}

template <typename Dst, typename Src, int P>
__global__ void cast_kernel(Dst *dst, const Src *src, size_t n) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * P;
    if (i + P <= n) store_floats(dst + i, load_floats<Src, P>(src + i));
    else
        for (size_t j = i; j < n; j++) dst[j] = from_float<Dst>(to_float(src[j]));
}

template <typename floatX>
void gpu_gelu_forward(floatX *out, const floatX *inp, size_t n, cudaStream_t stream) {
    constexpr int P = 16 / sizeof(floatX);
    if (n == 0) return;
    if (packs_fit({out, inp}))
        LAUNCH((gelu_forward_kernel<floatX, P>), dim3(ceil_div(ceil_div(n, P), 256)), dim3(256), 0, stream, out, inp,
               n);
    else LAUNCH((gelu_forward_kernel<floatX, 1>), dim3(ceil_div(n, 256)), dim3(256), 0, stream, out, inp, n);
}
template <typename floatX>
void gpu_gelu_backward(floatX *dinp, const floatX *inp, const floatX *dout, size_t n, cudaStream_t stream) {
    constexpr int P = 16 / sizeof(floatX);
    if (n == 0) return;
    if (packs_fit({dinp, inp, dout}))
        LAUNCH((gelu_backward_kernel<floatX, P>), dim3(ceil_div(ceil_div(n, P), 256)), dim3(256), 0, stream, dinp, inp,
               dout, n);
    else LAUNCH((gelu_backward_kernel<floatX, 1>), dim3(ceil_div(n, 256)), dim3(256), 0, stream, dinp, inp, dout, n);
}
template <typename Dst, typename Src>
void gpu_cast(Dst *dst, const Src *src, size_t n, cudaStream_t stream) {
    constexpr int P = 16 / (sizeof(Dst) < sizeof(Src) ? sizeof(Dst) : sizeof(Src));
    if (n == 0) return;
    if (packs_fit({dst, src}))
        LAUNCH((cast_kernel<Dst, Src, P>), dim3(ceil_div(ceil_div(n, P), 256)), dim3(256), 0, stream, dst, src, n);
    else LAUNCH((cast_kernel<Dst, Src, 1>), dim3(ceil_div(n, 256)), dim3(256), 0, stream, dst, src, n);
}

// --- Softmax ---------------------------------------------------------------------------
// One block per row; each thread takes P columns at a time (V % P == 0).

// The row's maximum and sum of exp(z - max), for every thread of the block.
template <typename floatX, int P>
__device__ __forceinline__ void row_max_and_sum(const floatX *z, int V, float *scratch, float *mx_out, float *sum_out) {
    float mx = -INFINITY;
    for (int i = threadIdx.x * P; i < V; i += blockDim.x * P) {
        const Floats<P> x = load_floats<floatX, P>(z + i);
        for (int k = 0; k < P; k++) mx = fmaxf(mx, x.v[k]);
    }
    mx = block_max(mx, scratch);
    float sum = 0.0f;
    for (int i = threadIdx.x * P; i < V; i += blockDim.x * P) {
        const Floats<P> x = load_floats<floatX, P>(z + i);
        for (int k = 0; k < P; k++) sum += expf(x.v[k] - mx);
    }
    *mx_out = mx;
    *sum_out = block_sum(sum, scratch);
}

template <typename floatX, int P>
__global__ void softmax_rows_kernel(floatX *out, const floatX *inp, int V) {
    __shared__ float scratch[32];
    const floatX *z = inp + (size_t)blockIdx.x * V;
    floatX *o = out + (size_t)blockIdx.x * V;
    float mx, sum;
    row_max_and_sum<floatX, P>(z, V, scratch, &mx, &sum);
    const float inv = 1.0f / sum;
    __syncthreads();  // every thread has read z before o (which may alias it) is written
    for (int i = threadIdx.x * P; i < V; i += blockDim.x * P) {
        Floats<P> x = load_floats<floatX, P>(z + i);
        for (int k = 0; k < P; k++) x.v[k] = expf(x.v[k] - mx) * inv;
        store_floats(o + i, x);
    }
}

// V % P == 0 and the row pointers aligned (as packs_fit checks), for the wide kernels.
template <typename floatX>
static bool rows_fit_packs(const floatX *rows, int V) {
    return V % (16 / (int)sizeof(floatX)) == 0 && packs_fit({rows});
}

template <typename floatX>
void gpu_softmax_rows(floatX *out, const floatX *inp, int N, int V, cudaStream_t stream) {
    constexpr int P = 16 / sizeof(floatX);
    if (rows_fit_packs(out, V) && rows_fit_packs(inp, V))
        LAUNCH((softmax_rows_kernel<floatX, P>), dim3(N), dim3(128), 0, stream, out, inp, V);
    else LAUNCH((softmax_rows_kernel<floatX, 1>), dim3(N), dim3(128), 0, stream, out, inp, V);
}

template <typename floatX, int P>
__global__ void softmax_crossentropy_kernel(floatX *logits, float *losses, const uint16_t *targets, int V, int output,
                                            float grad_scale) {
    __shared__ float scratch[32];
    const int n = blockIdx.x, target = targets[n];
    floatX *z = logits + (size_t)n * V;
    float mx, sum;
    row_max_and_sum<floatX, P>(z, V, scratch, &mx, &sum);
    const float target_logit = to_float(z[target]);
    if (threadIdx.x == 0) losses[n] = mx + logf(sum) - target_logit;
    if (output == CE_LOSSES_ONLY) return;  // uniform across the block
    __syncthreads();                       // z[target] is read before it is overwritten
    const float inv = 1.0f / sum;
    for (int i = threadIdx.x * P; i < V; i += blockDim.x * P) {
        Floats<P> x = load_floats<floatX, P>(z + i);
        for (int k = 0; k < P; k++) {
            const float p = expf(x.v[k] - mx) * inv;
            x.v[k] = output == CE_PROBABILITIES ? p : (p - (i + k == target ? 1.0f : 0.0f)) * grad_scale;
        }
        store_floats(z + i, x);
    }
}

template <typename floatX>
void gpu_softmax_crossentropy(floatX *logits, float *losses, const uint16_t *targets, int N, int V,
                              CrossEntropyOutput output, float grad_scale, cudaStream_t stream) {
    constexpr int P = 16 / sizeof(floatX);
    if (rows_fit_packs(logits, V))
        LAUNCH((softmax_crossentropy_kernel<floatX, P>), dim3(N), dim3(128), 0, stream, logits, losses, targets, V,
               (int)output, grad_scale);
    else
        LAUNCH((softmax_crossentropy_kernel<floatX, 1>), dim3(N), dim3(128), 0, stream, logits, losses, targets, V,
               (int)output, grad_scale);
}

// --- Probe features: means over positions ---------------------------------------------------

template <typename floatX>
__global__ void mean_over_positions_kernel(float *out, size_t out_stride, const floatX *inp, int T, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
    if (c >= C) return;
    const floatX *x = inp + (size_t)b * T * C + c;
    float acc = 0.0f;
    for (int t = 0; t < T; t++) acc += to_float(x[(size_t)t * C]);
    out[(size_t)b * out_stride + c] = acc / (float)T;
}

template <typename floatX>
void gpu_mean_over_positions(float *out, size_t out_stride, const floatX *inp, int B, int T, int C,
                             cudaStream_t stream) {
    LAUNCH(mean_over_positions_kernel<floatX>, dim3(ceil_div(C, 128), B), dim3(128), 0, stream, out, out_stride, inp, T,
           C);
}

// --- Optimizer -------------------------------------------------------------------------
// One launch updates every tensor: the span table (kernels.cuh) says where
// each thread's ADAMW_PACK elements lie in the flat buffers and whether they
// decay. A span's work starts at a multiple of ADAMW_PACK, so one thread's
// elements never straddle two spans.

void adamw_add_span(std::vector<AdamWSpan> *spans, size_t flat, size_t packed, size_t count, bool decays) {
    if (count == 0) return;
    if (!spans->empty()) {  // continues the last span: one span, fewer padded threads
        AdamWSpan &last = spans->back();
        if ((last.decays != 0) == decays && last.flat + last.count == flat && last.packed + last.count == packed) {
            last.count += count;
            return;
        }
    }
    spans->push_back(AdamWSpan{flat, packed, count, adamw_work(*spans), decays ? 1 : 0});
}

size_t adamw_work(const std::vector<AdamWSpan> &spans) {
    return spans.empty() ? 0 : spans.back().work + round_up(spans.back().count, ADAMW_PACK);
}

// optim.c's update of one element (grad already scaled); returns the new weight.
__device__ __forceinline__ float adamw_element(float param, float grad, float *m, float *v, const AdamWScalars &s,
                                               float decay) {
    const float mi = s.beta1 * *m + (1.0f - s.beta1) * grad;
    const float vi = s.beta2 * *v + (1.0f - s.beta2) * grad * grad;
    *m = mi;
    *v = vi;
    return param * decay - s.step_size * mi / (sqrtf(vi) * s.inv_sqrt_bc2 + s.eps);
}

// The span holding work index w: the last one whose work starts at or before it.
__device__ __forceinline__ AdamWSpan span_of(const AdamWSpan *spans, int num_spans, size_t w) {
    int lo = 0, hi = num_spans - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (spans[mid].work <= w) lo = mid;
        else hi = mid - 1;
    }
    return spans[lo];
}

template <typename floatX>
__global__ void adamw_kernel(float *master, floatX *copy, const float *grads, float *adam_m, float *adam_v,
                             const AdamWSpan *spans, int num_spans, size_t work, AdamWScalars s, float grad_scale,
                             const float *device_scale) {
    typedef Pack<float, ADAMW_PACK> Floats;
    typedef Pack<floatX, ADAMW_PACK> Copies;
    const size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * ADAMW_PACK;
    if (w >= work) return;
    const AdamWSpan span = span_of(spans, num_spans, w);
    const size_t j = w - span.work;
    if (j >= span.count) return;  // the padding at a span's end
    const size_t f = span.flat + j, p = span.packed + j;
    const int n = span.count - j < ADAMW_PACK ? (int)(span.count - j) : ADAMW_PACK;
    const float scale = device_scale ? *device_scale : grad_scale;
    const float decay = span.decays ? s.decay_factor : 1.0f;
    // Packed master weights and moments (ZeRO) may start anywhere: wide only where all are aligned.
    const bool wide = n == ADAMW_PACK && pack_aligned(grads + f, sizeof(Floats)) &&
                      pack_aligned(master + p, sizeof(Floats)) && pack_aligned(adam_m + p, sizeof(Floats)) &&
                      pack_aligned(adam_v + p, sizeof(Floats)) && (!copy || pack_aligned(copy + f, sizeof(Copies)));
    if (wide) {
        const Floats g = load_pack<float, ADAMW_PACK>(grads + f);
        Floats param = load_pack<float, ADAMW_PACK>(master + p), m = load_pack<float, ADAMW_PACK>(adam_m + p),
               v = load_pack<float, ADAMW_PACK>(adam_v + p);
        Copies c;
        for (int k = 0; k < ADAMW_PACK; k++) {
            param.v[k] = adamw_element(param.v[k], g.v[k] * scale, &m.v[k], &v.v[k], s, decay);
            c.v[k] = from_float<floatX>(param.v[k]);
        }
        store_pack(master + p, param);
        store_pack(adam_m + p, m);
        store_pack(adam_v + p, v);
        if (copy) store_pack(copy + f, c);
        return;
    }
    for (int k = 0; k < n; k++) {
        const float param =
            adamw_element(master[p + k], grads[f + k] * scale, &adam_m[p + k], &adam_v[p + k], s, decay);
        master[p + k] = param;
        if (copy) copy[f + k] = from_float<floatX>(param);
    }
}

template <typename floatX>
void gpu_adamw(float *master, floatX *copy, const float *grads, float *adam_m, float *adam_v, const AdamWSpan *spans,
               int num_spans, size_t work, const AdamWScalars &s, float grad_scale, const float *device_scale,
               cudaStream_t stream) {
    if (work == 0) return;
    LAUNCH(adamw_kernel<floatX>, dim3(ceil_div(work / ADAMW_PACK, 256)), dim3(256), 0, stream, master, copy, grads,
           adam_m, adam_v, spans, num_spans, work, s, grad_scale, device_scale);
}

// Sum of squares in two fixed steps: each block's threads in a grid-stride
// order (4 floats a load where x is aligned), the block's 256 sums as a tree;
// then the blocks' sums added by one thread in block order. The split
// depends only on n, so the sum's order does too.
__global__ void sum_squares_kernel(double *partial, const float *x, size_t n) {
    __shared__ double s[256];
    double acc = 0.0;
    const size_t stride = (size_t)gridDim.x * blockDim.x, first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (pack_aligned(x, 16)) {
        const size_t packs = n / 4;
        for (size_t i = first; i < packs; i += stride) {
            const Pack<float, 4> p = load_pack<float, 4>(x + 4 * i);
            for (int k = 0; k < 4; k++) acc += (double)p.v[k] * p.v[k];
        }
        for (size_t i = 4 * packs + first; i < n; i += stride) acc += (double)x[i] * x[i];
    } else {
        for (size_t i = first; i < n; i += stride) acc += (double)x[i] * x[i];
    }
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int half = 128; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) s[threadIdx.x] += s[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

// total (or total +=) the blocks' sums in order; clip_scale, when asked for,
// is optim.c's clip_factor of the norm sqrt(total), in the same double arithmetic.
__global__ void sum_partials_kernel(double *total, float *clip_scale, const double *partial, int blocks, int accumulate,
                                    double grad_clip) {
    double sum = 0.0;
    for (int b = 0; b < blocks; b++) sum += partial[b];
    sum = accumulate ? *total + sum : sum;  // a ZeRO rank's pieces: each piece's sum, then their sum
    *total = sum;
    if (!clip_scale) return;
    const double c = grad_clip / (sqrt(sum) + 1e-6);
    *clip_scale = grad_clip <= 0.0 || !(c < 1.0) ? 1.0f : (float)c;
}

void gpu_sum_squares(double *total, float *clip_scale, const float *x, size_t n, bool accumulate, double grad_clip,
                     double *scratch, cudaStream_t stream) {
    const unsigned blocks = n / 1024 + 1 < GPU_SUM_BLOCKS ? (unsigned)(n / 1024 + 1) : GPU_SUM_BLOCKS;
    LAUNCH(sum_squares_kernel, dim3(blocks), dim3(256), 0, stream, scratch, x, n);
    LAUNCH(sum_partials_kernel, dim3(1), dim3(1), 0, stream, total, clip_scale, (const double *)scratch, (int)blocks,
           accumulate ? 1 : 0, grad_clip);
}

// --- Instantiations for both storage types ------------------------------------------------
#define INSTANTIATE(floatX)                                                                                           \
    template void gpu_encoder_forward<floatX>(floatX *, const uint16_t *, const floatX *, const floatX *,             \
                                              const floatX *, int, int, int, cudaStream_t);                           \
    template void gpu_encoder_backward<floatX>(float *, float *, float *, const floatX *, const int *, const int *,   \
                                               int, int, int, int, float *, cudaStream_t);                            \
    template void gpu_residual_norm_forward<floatX>(NormKind, floatX *, floatX *, float *, float *, const floatX *,   \
                                                    const floatX *, const floatX *, const floatX *, int, int,         \
                                                    cudaStream_t);                                                    \
    template void gpu_norm_backward<floatX>(NormKind, floatX *, float *, float *, const floatX *, const floatX *,     \
                                            const float *, const float *, const floatX *, int, int, float *,          \
                                            cudaStream_t);                                                            \
    template void gpu_gelu_forward<floatX>(floatX *, const floatX *, size_t, cudaStream_t);                           \
    template void gpu_gelu_backward<floatX>(floatX *, const floatX *, const floatX *, size_t, cudaStream_t);          \
    template void gpu_softmax_rows<floatX>(floatX *, const floatX *, int, int, cudaStream_t);                         \
    template void gpu_softmax_crossentropy<floatX>(floatX *, float *, const uint16_t *, int, int, CrossEntropyOutput, \
                                                   float, cudaStream_t);                                              \
    template void gpu_mean_over_positions<floatX>(float *, size_t, const floatX *, int, int, int, cudaStream_t);      \
    template void gpu_adamw<floatX>(float *, floatX *, const float *, float *, float *, const AdamWSpan *, int,       \
                                    size_t, const AdamWScalars &, float, const float *, cudaStream_t);

INSTANTIATE(float)
INSTANTIATE(bf16)
template void gpu_cast<float, float>(float *, const float *, size_t, cudaStream_t);
template void gpu_cast<bf16, float>(bf16 *, const float *, size_t, cudaStream_t);
template void gpu_cast<float, bf16>(float *, const bf16 *, size_t, cudaStream_t);
