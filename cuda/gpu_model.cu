// The model on a GPU (model/gpu_model.h): src/model/model.c's forward and
// backward passes step for step, with the kernels of kernels.cuh, and its
// AdamW step; the collectives of data parallelism are in collectives.cu.
//
// floatX is the storage type of activations and of the weights the kernels
// read: bf16 (training) or float (the debugging mode). Device memory, each in
// one allocation with pointers into it:
//   state:       fp32 gradients (P), the weights the kernels read (P, in
//                floatX), and the fp32 master weights and Adam m and v: P each,
//                or with ZeRO-1 this rank's pieces of them (parallel/zero.h);
//                in fp32 mode without ZeRO the master weights are the weights
//                the kernels read
//   activations: as the CPU's Activations (in floatX; means, rstd, lse, losses
//                fp32), the backward scratch, tokens
#include <algorithm>
#include <cstdio>
#include <vector>

#include "collectives.cuh"
#include "kernels.cuh"

extern "C" {
#include "model/gpu_model.h"
#include "model/params.h"
#include "parallel/dist.h"
#include "parallel/zero.h"
#include "util/util.h"
}

// Activations for batches of max_batch rows of T positions: model.h's
// Activations, plus what the GPU needs besides.
template <typename floatX>
struct GpuActivations {
    floatX *resid, *ln1, *qkv, *atty, *resid_mid, *ln2, *fc, *fc_act, *lnf, *logits;
    float *ln1_mean, *ln1_rstd, *att_lse, *ln2_mean, *ln2_rstd, *lnf_mean, *lnf_rstd, *losses;
    floatX *proj;  // a projection's output before the residual add (fused with the next norm)
    // Backward scratch.
    floatX *dresid, *dln, *datty, *dqkv, *dfc;
    float *row_dot, *norm_scratch, *encoder_scratch;
    float *features;  // B x (L+1) x C probe features
};

// Incremental decoding (gpu_model_decode_create): the key/value cache and
// one step's buffers for up to max_batch sequences, in the storage type.
template <typename floatX>
struct GpuDecode {
    floatX *k_cache, *v_cache;  // L x max_batch x T x C each (model/decode.h's layout)
    floatX *x, *mid;            // B x C: the residual stream before and after a block's attention
    floatX *xn, *qkv, *atty, *proj, *fc, *fc_act, *logits;
    float *rstd;         // B: the norms' per-row scale (written, unused)
    float *logits_fp32;  // B x V: the logits cast for the host
    uint16_t *prev;      // B: the tokens of the step's input
};

struct GpuModel {
    ModelConfig cfg;
    GpuPrecision precision;
    GpuAttention attention;  // FLASH or PORTABLE (gpu_attention_kernels)
    int max_batch;
    bool recompute;  // keep only each block's input; recompute the rest in backward
    int act_layers;  // per-layer activation slots: L, or 1 with recompute
    size_t num_params;
    std::vector<TensorInfo> tensors;
    // State.
    void *state_memory;
    float *grads;
    void *weights;                    // what the kernels read, in floatX
    float *master, *adam_m, *adam_v;  // P each, or with ZeRO this rank's pieces packed (zero_layout.owned each)
    bool zero;
    ZeroLayout zero_layout;         // ZeRO-1: this rank's pieces of every layer
    std::vector<float> host_state;  // params, m, v staged for checkpoints (3 x P; made on the first)
    // Activations and scratch.
    void *act_memory;
    GpuActivations<float> act_fp32;
    GpuActivations<bf16> act_bf16;
    uint16_t *tokens;
    int *token_offsets, *token_rows;
    double *sum_scratch;
    double *grad_sum_squares;  // the last gradient norm, squared (device)
    float *clip_scale;         // its clip factor (device), read by AdamW
    // AdamW's span table (kernels.cuh), one launch for every tensor; on the device.
    AdamWSpan *adam_spans;
    int num_adam_spans;
    size_t adam_work;
    std::vector<float> host_losses;
    std::vector<int> host_offsets, host_rows;
    cudaStream_t stream;
    void (*layer_hook)(void *ctx, int layer);
    void *layer_hook_ctx;
    // Incremental decoding: one allocation, made by gpu_model_decode_create.
    void *decode_memory;
    GpuDecode<float> decode_fp32;
    GpuDecode<bf16> decode_bf16;
    int decode_max_batch;  // 0 until gpu_model_decode_create
    int decode_batch, decode_pos;
    std::vector<float> host_logits;
};

static size_t round_up_256(size_t bytes) { return (bytes + 255) / 256 * 256; }

// --- Memory plan -----------------------------------------------------------------------

// One list of (pointer, bytes) for the activations and scratch, used both to
// size the allocation and to carve it, so the two cannot disagree.
// With recompute, the per-layer buffers other than the residual stream hold
// one layer (act_layers = 1), rewritten by each layer's forward.
template <typename floatX>
static size_t carve_activations(GpuActivations<floatX> *a, char *base, const ModelConfig *cfg, int max_batch,
                                int act_layers) {
    const size_t B = (size_t)max_batch, T = (size_t)cfg->seq_len, C = (size_t)cfg->d_model, L = (size_t)act_layers,
                 V = (size_t)cfg->vocab_size, NH = (size_t)cfg->n_head, BT = B * T, L_resid = (size_t)cfg->n_layer;
    const size_t X = sizeof(floatX), F = sizeof(float);
    GpuActivations<floatX> unused;
    if (!a) a = &unused;
    struct Part {
        void **ptr;
        size_t bytes;
    } parts[] = {
        {(void **)&a->resid, (L_resid + 1) * BT * C * X},
        {(void **)&a->ln1, L * BT * C * X},
        {(void **)&a->ln1_mean, L * BT * F},
        {(void **)&a->ln1_rstd, L * BT * F},
        {(void **)&a->qkv, L * BT * 3 * C * X},
        {(void **)&a->atty, L * BT * C * X},
        {(void **)&a->att_lse, L * B * NH * T * F},
        {(void **)&a->resid_mid, L * BT * C * X},
        {(void **)&a->ln2, L * BT * C * X},
        {(void **)&a->ln2_mean, L * BT * F},
        {(void **)&a->ln2_rstd, L * BT * F},
        {(void **)&a->fc, L * BT * 4 * C * X},
        {(void **)&a->fc_act, BT * 4 * C * X},
        {(void **)&a->lnf, BT * C * X},
        {(void **)&a->lnf_mean, BT * F},
        {(void **)&a->lnf_rstd, BT * F},
        {(void **)&a->logits, BT * V * X},
        {(void **)&a->losses, BT * F},
        {(void **)&a->proj, BT * C * X},
        {(void **)&a->dresid, BT * C * X},
        {(void **)&a->dln, BT * C * X},
        {(void **)&a->datty, BT * C * X},
        {(void **)&a->dqkv, BT * 3 * C * X},
        {(void **)&a->dfc, BT * 4 * C * X},
        {(void **)&a->row_dot, B * NH * T * F},
        {(void **)&a->norm_scratch, gpu_norm_backward_scratch((int)BT, (int)C) * F},
        {(void **)&a->encoder_scratch, gpu_encoder_backward_scratch((int)B, (int)T, (int)C, (int)V) * F},
        {(void **)&a->features, B * (L_resid + 1) * C * F},
    };
    size_t offset = 0;
    for (const Part &part : parts) {
        if (base) *part.ptr = base + offset;
        offset += round_up_256(part.bytes);  // keep every buffer 256-byte aligned
    }
    return offset;
}

// Without ZeRO: fp32 master weights, gradients, m and v, plus the bf16 copy.
// With ZeRO: the gradients and the weights the kernels read, whole, and the
// packed master weights, m and v of this rank's pieces.
static size_t state_bytes_of(const ModelConfig *cfg, GpuPrecision precision, bool zero) {
    const size_t P = param_count(cfg), copy = precision == GPU_BF16 ? P * sizeof(bf16) : 0;
    if (zero) {
        const size_t owned = zero_owned(cfg, dist_get()->rank, dist_get()->world);
        return P * sizeof(float) + (copy ? copy : P * sizeof(float)) + 3 * (owned + 1) * sizeof(float) + 5 * 256;
    }
    return 4 * P * sizeof(float) + copy + 5 * 256;
}

// The tokens, their grouping by value for the embedding backward, the
// norm's fp64 partial sums, its total and clip factor, after the activations.
static size_t io_bytes_of(const ModelConfig *cfg, int max_batch) {
    const size_t BT = (size_t)max_batch * cfg->seq_len;
    return BT * sizeof(uint16_t) + ((size_t)cfg->vocab_size + 1 + BT) * sizeof(int) + GPU_SUM_BLOCKS * sizeof(double) +
           sizeof(double) + sizeof(float) + 6 * 256;
}

static size_t activation_bytes_of(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute) {
    const int act_layers = recompute ? 1 : cfg->n_layer;
    return (precision == GPU_BF16 ? carve_activations<bf16>(nullptr, nullptr, cfg, max_batch, act_layers)
                                  : carve_activations<float>(nullptr, nullptr, cfg, max_batch, act_layers)) +
           io_bytes_of(cfg, max_batch);
}

extern "C" void gpu_model_memory(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute,
                                 bool zero, size_t *state_bytes, size_t *activation_bytes) {
    *state_bytes = state_bytes_of(cfg, precision, zero);
    *activation_bytes = activation_bytes_of(cfg, max_batch, precision, recompute);
}

// --- Devices ---------------------------------------------------------------------------

extern "C" int gpu_device_count(const char **why) {
#ifdef IGPT_INTERPRET
    if (why) *why = nullptr;
    return 1;
#else
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        if (why) *why = cudaGetErrorString(err);
        cudaGetLastError();  // clear it
        return 0;
    }
    if (why) *why = count ? nullptr : "no CUDA device";
    return count;
#endif
}

extern "C" const char *gpu_device_name(void) {
    static char name[320];
#ifdef IGPT_INTERPRET
    snprintf(name, sizeof name, "CUDA interpret mode on the CPU");
#else
    cudaDeviceProp prop;
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    snprintf(name, sizeof name, "%s, %.1f GiB, compute capability %d.%d", prop.name,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), prop.major, prop.minor);
#endif
    return name;
}

extern "C" void gpu_memory_info(size_t *free_bytes, size_t *total_bytes) {
#ifdef IGPT_INTERPRET
    *free_bytes = *total_bytes = (size_t)64 << 30;
#else
    CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
#endif
}

// --- Creation and transfers ----------------------------------------------------------------

static void require_memory(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute, bool zero) {
    size_t free_bytes = 0, total_bytes = 0;
    gpu_memory_info(&free_bytes, &total_bytes);
    const size_t state_bytes = state_bytes_of(cfg, precision, zero);
    const size_t need = state_bytes + activation_bytes_of(cfg, max_batch, precision, recompute);
    if (need <= free_bytes) return;
    char need_text[32], free_text[32], state_text[32];
    die("the model needs %s of GPU memory (%s of it parameters, gradients and Adam state) for micro-batches of "
        "%d images, but %s are free: use a smaller --micro-batch (gradients accumulate to the same --batch)%s, "
        "a smaller model, or a GPU with more memory",
        format_bytes((double)need, need_text, sizeof need_text),
        format_bytes((double)state_bytes, state_text, sizeof state_text), max_batch,
        format_bytes((double)free_bytes, free_text, sizeof free_text),
        recompute ? "" : ", or --recompute (keeps only each block's input and recomputes the rest in backward)");
}

// Points the state's buffers into its allocation (state_bytes_of sizes it).
static void carve_state(GpuModel *m) {
    const size_t P = m->num_params, F = sizeof(float);
    const bool bf = m->precision == GPU_BF16;
    char *cursor = static_cast<char *>(m->state_memory);
    auto take = [&cursor](size_t bytes) {
        char *p = cursor;
        cursor += round_up_256(bytes);
        return p;
    };
    m->grads = reinterpret_cast<float *>(take(P * F));
    if (m->zero) {  // whole weights for the kernels; master weights and moments of this rank's pieces
        m->weights = take(P * (bf ? sizeof(bf16) : F));
        const size_t packed = (m->zero_layout.owned + 1) * F;
        m->master = reinterpret_cast<float *>(take(packed));
        m->adam_m = reinterpret_cast<float *>(take(packed));
        m->adam_v = reinterpret_cast<float *>(take(packed));
    } else {
        m->master = reinterpret_cast<float *>(take(P * F));
        m->adam_m = reinterpret_cast<float *>(take(P * F));
        m->adam_v = reinterpret_cast<float *>(take(P * F));
        m->weights = bf ? static_cast<void *>(take(P * sizeof(bf16))) : static_cast<void *>(m->master);
    }
}

// Points the activations, the tokens and the reduction scratch into their allocation.
static void carve_activation_memory(GpuModel *m) {
    const ModelConfig *cfg = &m->cfg;
    const size_t BT = (size_t)m->max_batch * cfg->seq_len;
    char *cursor = static_cast<char *>(m->act_memory);
    cursor += m->precision == GPU_BF16
                  ? carve_activations<bf16>(&m->act_bf16, cursor, cfg, m->max_batch, m->act_layers)
                  : carve_activations<float>(&m->act_fp32, cursor, cfg, m->max_batch, m->act_layers);
    m->tokens = reinterpret_cast<uint16_t *>(cursor);
    cursor += round_up_256(BT * sizeof(uint16_t));
    m->token_offsets = reinterpret_cast<int *>(cursor);
    cursor += round_up_256(((size_t)cfg->vocab_size + 1) * sizeof(int));
    m->token_rows = reinterpret_cast<int *>(cursor);
    cursor += round_up_256(BT * sizeof(int));
    m->sum_scratch = reinterpret_cast<double *>(cursor);
    cursor += round_up_256(GPU_SUM_BLOCKS * sizeof(double));
    m->grad_sum_squares = reinterpret_cast<double *>(cursor);
    cursor += round_up_256(sizeof(double));
    m->clip_scale = reinterpret_cast<float *>(cursor);
}

// AdamW's spans: every tensor whole, or with ZeRO the part of each tensor in
// each of this rank's pieces (master weights and moments packed); uploaded once.
static void make_adam_spans(GpuModel *m) {
    std::vector<AdamWSpan> spans;
    if (!m->zero) {
        for (const TensorInfo &t : m->tensors) adamw_add_span(&spans, t.offset, t.offset, t.count, t.decay);
    } else {
        for (int i = 0; i < m->zero_layout.num_ranges; i++) {
            const ZeroRange &r = m->zero_layout.ranges[i];
            for (const TensorInfo &t : m->tensors) {
                const size_t b = std::max(r.piece_begin, t.offset), e = std::min(r.piece_end, t.offset + t.count);
                if (b < e) adamw_add_span(&spans, b, r.piece_offset + (b - r.piece_begin), e - b, t.decay);
            }
        }
    }
    m->num_adam_spans = (int)spans.size();
    m->adam_work = adamw_work(spans);
    m->adam_spans = nullptr;
    if (spans.empty()) return;
    CUDA_CHECK(cudaMalloc(&m->adam_spans, spans.size() * sizeof(AdamWSpan)));
    CUDA_CHECK(cudaMemcpy(m->adam_spans, spans.data(), spans.size() * sizeof(AdamWSpan), cudaMemcpyHostToDevice));
}

extern "C" GpuModel *gpu_model_create(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute,
                                      bool zero) {
    model_config_validate(cfg);
    require_memory(cfg, max_batch, precision, recompute, zero);
    GpuModel *m = new GpuModel();
    m->cfg = *cfg;
    m->precision = precision;
    m->attention = gpu_attention_kernels(cfg, precision, GPU_ATTENTION_AUTO);
    m->max_batch = max_batch;
    m->recompute = recompute;
    m->act_layers = recompute ? 1 : cfg->n_layer;
    m->num_params = param_count(cfg);
    m->tensors.resize((size_t)param_tensors(cfg, nullptr));
    param_tensors(cfg, m->tensors.data());
    m->zero = zero;
    if (zero) m->zero_layout = zero_layout(cfg, dist_get()->rank, dist_get()->world);
    CUDA_CHECK(cudaStreamCreate(&m->stream));
    CUDA_CHECK(cudaMalloc(&m->state_memory, state_bytes_of(cfg, precision, zero)));
    carve_state(m);
    CUDA_CHECK(cudaMalloc(&m->act_memory, activation_bytes_of(cfg, max_batch, precision, recompute)));
    carve_activation_memory(m);
    const size_t BT = (size_t)max_batch * cfg->seq_len;
    m->host_losses.resize(BT);
    m->host_offsets.resize((size_t)cfg->vocab_size + 1);
    m->host_rows.resize(BT);
    const size_t moments = zero ? m->zero_layout.owned + 1 : m->num_params;
    CUDA_CHECK(cudaMemset(m->grads, 0, m->num_params * sizeof(float)));
    CUDA_CHECK(cudaMemset(m->adam_m, 0, moments * sizeof(float)));
    CUDA_CHECK(cudaMemset(m->adam_v, 0, moments * sizeof(float)));
    make_adam_spans(m);
    return m;
}

extern "C" void gpu_model_free(GpuModel *m) {
    if (!m) return;
    cudaFree(m->state_memory);
    cudaFree(m->act_memory);
    cudaFree(m->adam_spans);
    cudaFree(m->decode_memory);
    cudaStreamDestroy(m->stream);
    zero_layout_free(&m->zero_layout);
    delete m;
}

// The whole fp32 parameters into the weights the kernels read (and, without
// ZeRO, the master weights); bf16 weights are cast from an fp32 upload (the
// master weights, or with ZeRO the gradient buffer as staging).
extern "C" void gpu_model_set_params(GpuModel *m, const float *params) {
    float *fp32 = m->precision == GPU_FP32 ? static_cast<float *>(m->weights) : m->zero ? m->grads : m->master;
    CUDA_CHECK(cudaMemcpy(fp32, params, m->num_params * sizeof(float), cudaMemcpyHostToDevice));
    if (m->precision == GPU_BF16) gpu_cast(static_cast<bf16 *>(m->weights), fp32, m->num_params, m->stream);
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
}

// This rank's pieces of a full host buffer (NULL: zeros) into packed device
// storage, and back.
static void upload_pieces(const GpuModel *m, float *packed, const float *full) {
    const ZeroLayout &z = m->zero_layout;
    for (int i = 0; i < z.num_ranges; i++) {
        const ZeroRange &r = z.ranges[i];
        const size_t bytes = (r.piece_end - r.piece_begin) * sizeof(float);
        if (bytes == 0) continue;
        if (full) CUDA_CHECK(cudaMemcpy(packed + r.piece_offset, full + r.piece_begin, bytes, cudaMemcpyHostToDevice));
        else CUDA_CHECK(cudaMemset(packed + r.piece_offset, 0, bytes));
    }
}

static void download_pieces(const GpuModel *m, float *full, const float *packed) {
    const ZeroLayout &z = m->zero_layout;
    for (int i = 0; i < z.num_ranges; i++) {
        const ZeroRange &r = z.ranges[i];
        const size_t bytes = (r.piece_end - r.piece_begin) * sizeof(float);
        if (bytes > 0)
            CUDA_CHECK(cudaMemcpy(full + r.piece_begin, packed + r.piece_offset, bytes, cudaMemcpyDeviceToHost));
    }
}

extern "C" void gpu_model_set_state(GpuModel *m, const float *params, const float *adam_m, const float *adam_v) {
    // Every rank holds the whole weights the kernels read; a ZeRO rank its pieces of the rest.
    gpu_model_set_params(m, params);
    const size_t bytes = m->num_params * sizeof(float);
    if (m->zero) {
        upload_pieces(m, m->master, params);
        upload_pieces(m, m->adam_m, adam_m);
        upload_pieces(m, m->adam_v, adam_v);
        return;
    }
    if (adam_m) CUDA_CHECK(cudaMemcpy(m->adam_m, adam_m, bytes, cudaMemcpyHostToDevice));
    else CUDA_CHECK(cudaMemset(m->adam_m, 0, bytes));
    if (adam_v) CUDA_CHECK(cudaMemcpy(m->adam_v, adam_v, bytes, cudaMemcpyHostToDevice));
    else CUDA_CHECK(cudaMemset(m->adam_v, 0, bytes));
}

extern "C" void gpu_model_get_state(GpuModel *m, const float **params, const float **adam_m, const float **adam_v) {
    const size_t P = m->num_params;
    m->host_state.resize(3 * P);
    float *host_params = m->host_state.data(), *host_m = host_params + P, *host_v = host_m + P;
    if (m->zero) {
        // This rank's pieces, then every rank's pieces gathered on the host.
        download_pieces(m, host_params, m->master);
        download_pieces(m, host_m, m->adam_m);
        download_pieces(m, host_v, m->adam_v);
        for (int i = 0; i < m->zero_layout.num_ranges; i++) {
            const ZeroRange &r = m->zero_layout.ranges[i];
            dist_all_gather(host_params + r.begin, r.end - r.begin);
            dist_all_gather(host_m + r.begin, r.end - r.begin);
            dist_all_gather(host_v + r.begin, r.end - r.begin);
        }
    } else {
        CUDA_CHECK(cudaMemcpy(host_params, m->master, P * sizeof(float), cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(host_m, m->adam_m, P * sizeof(float), cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(host_v, m->adam_v, P * sizeof(float), cudaMemcpyDeviceToHost));
    }
    *params = host_params;
    *adam_m = host_m;
    *adam_v = host_v;
}

extern "C" void gpu_model_get_grads(const GpuModel *m, float *grads) {
    CUDA_CHECK(cudaMemcpy(grads, m->grads, m->num_params * sizeof(float), cudaMemcpyDeviceToHost));
}

extern "C" void gpu_model_zero_grads(GpuModel *m) {
    CUDA_CHECK(cudaMemsetAsync(m->grads, 0, m->num_params * sizeof(float), m->stream));
}

// Device pointers of the parameters (floatX) or gradients (fp32), in
// param_tensors' layout: param_pointers over the gradient buffer gives each
// tensor's offset.
template <typename U>
struct DevicePointers {
    ParamPointers host;  // into m->grads (never dereferenced on the host)
    const float *layout;
    U *base;
    DevicePointers(const GpuModel *m, U *b) : layout(m->grads), base(b) { param_pointers(&m->cfg, m->grads, &host); }
    ~DevicePointers() { param_pointers_free(&host); }
    U *at(const float *tensor) const { return tensor ? base + (tensor - layout) : nullptr; }
};

// --- Forward and backward ----------------------------------------------------------------

static void upload_tokens(GpuModel *m, const uint16_t *tokens, int batch) {
    const int N = batch * m->cfg.seq_len, V = m->cfg.vocab_size;
    for (int i = 0; i < N; i++)
        if (tokens[i] >= V) die("token %u at position %d is outside the %d-color palette", tokens[i], i, V);
    CUDA_CHECK(cudaMemcpyAsync(m->tokens, tokens, (size_t)N * sizeof(uint16_t), cudaMemcpyHostToDevice, m->stream));
}

// Pointers to layer l's activations (its slot: l, or 0 with recompute).
template <typename floatX>
struct LayerActs {
    floatX *resid, *resid_next, *ln1, *qkv, *atty, *resid_mid, *ln2, *fc;
    float *ln1_mean, *ln1_rstd, *att_lse, *ln2_mean, *ln2_rstd;
    LayerActs(const GpuModel *m, const GpuActivations<floatX> &a, int l) {
        const size_t stride_c = (size_t)m->max_batch * m->cfg.seq_len * m->cfg.d_model;
        const size_t max_BT = (size_t)m->max_batch * m->cfg.seq_len;
        const int s = m->recompute ? 0 : l;
        resid = a.resid + l * stride_c;
        resid_next = a.resid + (l + 1) * stride_c;
        ln1 = a.ln1 + s * stride_c;
        ln1_mean = a.ln1_mean + s * max_BT;
        ln1_rstd = a.ln1_rstd + s * max_BT;
        qkv = a.qkv + s * 3 * stride_c;
        atty = a.atty + s * stride_c;
        att_lse = a.att_lse + (size_t)s * m->max_batch * m->cfg.n_head * m->cfg.seq_len;
        resid_mid = a.resid_mid + s * stride_c;
        ln2 = a.ln2 + s * stride_c;
        ln2_mean = a.ln2_mean + s * max_BT;
        ln2_rstd = a.ln2_rstd + s * max_BT;
        fc = a.fc + s * 4 * stride_c;
    }
};

// Block l from its normalised input ln1 up to resid_mid, ln2, fc; with
// write_next, also resid_{l+1} = resid_mid + MLP, normalised for the next
// block (or the final norm).
// --- Attention: the tensor-core kernels or the portable ones ------------------------------

extern "C" GpuAttention gpu_attention_kernels(const ModelConfig *cfg, GpuPrecision precision, GpuAttention asked) {
    const int hs = cfg->d_model / cfg->n_head;
    const bool flash_applies = precision == GPU_BF16 && gpu_flash_attention_supports(hs);
    if (asked == GPU_ATTENTION_PORTABLE) return GPU_ATTENTION_PORTABLE;
    if (asked == GPU_ATTENTION_FLASH && !flash_applies)
        die("--attention flash: the tensor-core kernels need bf16 and head size 32, 64 or 128 (this model: %s, %d)",
            precision == GPU_BF16 ? "bf16" : "fp32", hs);
    return flash_applies ? GPU_ATTENTION_FLASH : GPU_ATTENTION_PORTABLE;
}

extern "C" void gpu_model_set_attention(GpuModel *m, GpuAttention asked) {
    m->attention = gpu_attention_kernels(&m->cfg, m->precision, asked);
}

// fp32 storage: always the portable kernels.
static void attention_forward(const GpuModel *, float *atty, float *lse, const float *qkv, int B, int T, int C, int NH,
                              cudaStream_t st) {
    gpu_attention_forward(atty, lse, qkv, B, T, C, NH, st);
}
static void attention_forward(const GpuModel *m, bf16 *atty, float *lse, const bf16 *qkv, int B, int T, int C, int NH,
                              cudaStream_t st) {
    if (m->attention == GPU_ATTENTION_FLASH) gpu_flash_attention_forward(atty, lse, qkv, B, T, C, NH, st);
    else gpu_attention_forward(atty, lse, qkv, B, T, C, NH, st);
}
static void attention_backward(const GpuModel *, float *dqkv, float *row_dot, const float *datty, const float *atty,
                               const float *qkv, const float *lse, int B, int T, int C, int NH, cudaStream_t st) {
    gpu_attention_backward(dqkv, row_dot, datty, atty, qkv, lse, B, T, C, NH, st);
}
static void attention_backward(const GpuModel *m, bf16 *dqkv, float *row_dot, const bf16 *datty, const bf16 *atty,
                               const bf16 *qkv, const float *lse, int B, int T, int C, int NH, cudaStream_t st) {
    if (m->attention == GPU_ATTENTION_FLASH)
        gpu_flash_attention_backward(dqkv, row_dot, datty, atty, qkv, lse, B, T, C, NH, st);
    else gpu_attention_backward(dqkv, row_dot, datty, atty, qkv, lse, B, T, C, NH, st);
}

template <typename floatX>
static void layer_forward(GpuModel *m, GpuActivations<floatX> &act, const DevicePointers<floatX> &P, int l, int B,
                          bool write_next) {
    const ModelConfig *cfg = &m->cfg;
    const int T = cfg->seq_len, C = cfg->d_model, L = cfg->n_layer, NH = cfg->n_head, N = B * T;
    const ParamPointers &h = P.host;
    const LayerParams &lp = h.layers[l];
    const LayerActs<floatX> a(m, act, l);
    cudaStream_t st = m->stream;
    gpu_matmul_forward(a.qkv, a.ln1, P.at(lp.w_qkv), N, C, 3 * C, st);
    attention_forward(m, a.atty, a.att_lse, a.qkv, B, T, C, NH, st);
    gpu_matmul_forward(act.proj, a.atty, P.at(lp.w_attn_proj), N, C, C, st);
    gpu_residual_norm_forward<floatX>(cfg->norm, a.resid_mid, a.ln2, a.ln2_mean, a.ln2_rstd, a.resid, act.proj,
                                      P.at(lp.ln2_g), P.at(lp.ln2_b), N, C, st);
    gpu_matmul_forward(a.fc, a.ln2, P.at(lp.w_fc), N, C, 4 * C, st);
    if (!write_next) return;
    gpu_gelu_forward(act.fc_act, a.fc, (size_t)N * 4 * C, st);
    gpu_matmul_forward(act.proj, act.fc_act, P.at(lp.w_fc_proj), N, 4 * C, C, st);
    if (l + 1 < L) {
        const LayerActs<floatX> next(m, act, l + 1);
        gpu_residual_norm_forward<floatX>(cfg->norm, a.resid_next, next.ln1, next.ln1_mean, next.ln1_rstd, a.resid_mid,
                                          act.proj, P.at(h.layers[l + 1].ln1_g), P.at(h.layers[l + 1].ln1_b), N, C, st);
    } else {
        gpu_residual_norm_forward<floatX>(cfg->norm, a.resid_next, act.lnf, act.lnf_mean, act.lnf_rstd, a.resid_mid,
                                          act.proj, P.at(h.lnf_g), P.at(h.lnf_b), N, C, st);
    }
}

// The first norm of block l (no residual add: its input is already stored).
template <typename floatX>
static void first_norm(GpuModel *m, GpuActivations<floatX> &act, const DevicePointers<floatX> &P, int l, int B) {
    const LayerActs<floatX> a(m, act, l);
    gpu_residual_norm_forward<floatX>(m->cfg.norm, nullptr, a.ln1, a.ln1_mean, a.ln1_rstd, a.resid, nullptr,
                                      P.at(P.host.layers[l].ln1_g), P.at(P.host.layers[l].ln1_b), B * m->cfg.seq_len,
                                      m->cfg.d_model, m->stream);
}

template <typename floatX>
static double forward(GpuModel *m, GpuActivations<floatX> &act, const uint16_t *tokens, int batch) {
    const ModelConfig *cfg = &m->cfg;
    if (batch < 1 || batch > m->max_batch) die("internal: batch %d outside 1..%d", batch, m->max_batch);
    const int B = batch, T = cfg->seq_len, C = cfg->d_model, L = cfg->n_layer, V = cfg->vocab_size;
    const int N = B * T;
    cudaStream_t st = m->stream;
    const DevicePointers<floatX> P(m, static_cast<floatX *>(m->weights));
    const ParamPointers &h = P.host;
    upload_tokens(m, tokens, batch);
    gpu_encoder_forward(act.resid, m->tokens, P.at(h.wte), P.at(h.wpe), P.at(h.sos), B, T, C, st);
    // Block 0's first norm has no residual add; every later norm is fused with the add before it.
    first_norm(m, act, P, 0, B);
    for (int l = 0; l < L; l++) layer_forward(m, act, P, l, B, true);
    gpu_matmul_forward(act.logits, act.lnf, P.at(h.w_head), N, C, V, st);
    gpu_softmax_crossentropy(act.logits, act.losses, m->tokens, N, V, CE_LOSSES_ONLY, 0.0f, st);
    CUDA_CHECK(
        cudaMemcpyAsync(m->host_losses.data(), act.losses, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    double total = 0.0;
    for (int i = 0; i < N; i++) total += m->host_losses[(size_t)i];
    return total / N;
}

// The grouping of the batch's rows by token, for the embedding backward: made
// on the host, uploaded (the tokens themselves are on the device since forward).
static void upload_token_rows(GpuModel *m, const uint16_t *tokens, int B) {
    const int T = m->cfg.seq_len, V = m->cfg.vocab_size;
    token_rows_by_value(tokens, B, T, V, m->host_offsets.data(), m->host_rows.data());
    CUDA_CHECK(cudaMemcpyAsync(m->token_offsets, m->host_offsets.data(), ((size_t)V + 1) * sizeof(int),
                               cudaMemcpyHostToDevice, m->stream));
    CUDA_CHECK(cudaMemcpyAsync(m->token_rows, m->host_rows.data(), (size_t)B * (T - 1) * sizeof(int),
                               cudaMemcpyHostToDevice, m->stream));
}

template <typename floatX>
static void backward(GpuModel *m, GpuActivations<floatX> &act, const uint16_t *tokens, int batch, float loss_scale) {
    const ModelConfig *cfg = &m->cfg;
    const int B = batch, T = cfg->seq_len, C = cfg->d_model, L = cfg->n_layer, V = cfg->vocab_size, NH = cfg->n_head;
    const int N = B * T;
    const size_t stride_c = (size_t)m->max_batch * T * C;
    cudaStream_t st = m->stream;
    const DevicePointers<floatX> P(m, static_cast<floatX *>(m->weights));
    const DevicePointers<float> G(m, m->grads);
    const ParamPointers &h = P.host;
    upload_token_rows(m, tokens, B);

    gpu_softmax_crossentropy(act.logits, act.losses, m->tokens, N, V, CE_GRADIENT, loss_scale, st);
    gpu_matmul_backward(act.dln, G.at(h.w_head), act.logits, act.lnf, P.at(h.w_head), N, C, V, st);
    CUDA_CHECK(cudaMemsetAsync(act.dresid, 0, (size_t)N * C * sizeof(floatX), st));
    gpu_norm_backward<floatX>(cfg->norm, act.dresid, G.at(h.lnf_g), G.at(h.lnf_b), act.dln, act.resid + L * stride_c,
                              act.lnf_mean, act.lnf_rstd, P.at(h.lnf_g), N, C, act.norm_scratch, st);
    if (m->layer_hook) m->layer_hook(m->layer_hook_ctx, L);
    for (int l = L - 1; l >= 0; l--) {
        const LayerParams &lp = h.layers[l], &lg = G.host.layers[l];
        const LayerActs<floatX> a(m, act, l);
        if (m->recompute) {  // this block's activations again, from its stored input
            first_norm(m, act, P, l, B);
            layer_forward(m, act, P, l, B, false);
        }
        // MLP: resid_next = resid_mid + gelu(norm2(resid_mid) W_fc^T) W_fc_proj^T (GELU recomputed from fc, as on
        // the CPU); dresid holds d(resid_next) = d(resid_mid) so far.
        gpu_gelu_forward(act.fc_act, a.fc, (size_t)N * 4 * C, st);
        gpu_matmul_backward(act.dfc, G.at(lg.w_fc_proj), act.dresid, act.fc_act, P.at(lp.w_fc_proj), N, 4 * C, C, st);
        gpu_gelu_backward(act.dfc, a.fc, act.dfc, (size_t)N * 4 * C, st);
        gpu_matmul_backward(act.dln, G.at(lg.w_fc), act.dfc, a.ln2, P.at(lp.w_fc), N, C, 4 * C, st);
        gpu_norm_backward<floatX>(cfg->norm, act.dresid, G.at(lg.ln2_g), G.at(lg.ln2_b), act.dln, a.resid_mid,
                                  a.ln2_mean, a.ln2_rstd, P.at(lp.ln2_g), N, C, act.norm_scratch, st);
        // Attention: resid_mid = resid + attn(norm1(resid)) W_proj^T; dresid now holds d(resid_mid).
        gpu_matmul_backward(act.datty, G.at(lg.w_attn_proj), act.dresid, a.atty, P.at(lp.w_attn_proj), N, C, C, st);
        attention_backward(m, act.dqkv, act.row_dot, act.datty, a.atty, a.qkv, a.att_lse, B, T, C, NH, st);
        gpu_matmul_backward(act.dln, G.at(lg.w_qkv), act.dqkv, a.ln1, P.at(lp.w_qkv), N, C, 3 * C, st);
        gpu_norm_backward<floatX>(cfg->norm, act.dresid, G.at(lg.ln1_g), G.at(lg.ln1_b), act.dln, a.resid, a.ln1_mean,
                                  a.ln1_rstd, P.at(lp.ln1_g), N, C, act.norm_scratch, st);
        if (m->layer_hook) m->layer_hook(m->layer_hook_ctx, l);
    }
    gpu_encoder_backward(G.at(h.wte), G.at(h.wpe), G.at(h.sos), act.dresid, m->token_offsets, m->token_rows, B, T, C, V,
                         act.encoder_scratch, st);
    if (m->layer_hook) m->layer_hook(m->layer_hook_ctx, -1);
    CUDA_CHECK(cudaStreamSynchronize(st));
}

template <typename floatX>
static void features(GpuModel *m, GpuActivations<floatX> &act, int batch, float *out) {
    if (m->recompute) die("internal: probe features need every layer's activations (a model without --recompute)");
    const int T = m->cfg.seq_len, C = m->cfg.d_model, L = m->cfg.n_layer;
    const size_t stride_c = (size_t)m->max_batch * T * C, per_image = (size_t)(L + 1) * C;
    for (int l = 0; l <= L; l++)
        gpu_mean_over_positions(act.features + (size_t)l * C, per_image, l < L ? act.ln1 + l * stride_c : act.lnf,
                                batch, T, C, m->stream);
    CUDA_CHECK(cudaMemcpyAsync(out, act.features, (size_t)batch * per_image * sizeof(float), cudaMemcpyDeviceToHost,
                               m->stream));
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
}

extern "C" double gpu_model_forward(GpuModel *m, const uint16_t *tokens, int batch) {
    if (m->precision == GPU_BF16) return forward(m, m->act_bf16, tokens, batch);
    return forward(m, m->act_fp32, tokens, batch);
}

extern "C" void gpu_model_backward(GpuModel *m, const uint16_t *tokens, int batch, float loss_scale) {
    if (m->precision == GPU_BF16) backward(m, m->act_bf16, tokens, batch, loss_scale);
    else backward(m, m->act_fp32, tokens, batch, loss_scale);
}

extern "C" void gpu_model_features(GpuModel *m, int batch, float *out) {
    if (m->precision == GPU_BF16) features(m, m->act_bf16, batch, out);
    else features(m, m->act_fp32, batch, out);
}

extern "C" void gpu_model_set_layer_hook(GpuModel *m, void (*hook)(void *ctx, int layer), void *ctx) {
    m->layer_hook = hook;
    m->layer_hook_ctx = ctx;
}

// --- Optimizer -----------------------------------------------------------------------------

// The squared norm and the clip factor stay on the device for AdamW.
static void queue_grad_norm(GpuModel *m, double grad_clip) {
    gpu_sum_squares(m->grad_sum_squares, m->clip_scale, m->grads, m->num_params, false, grad_clip, m->sum_scratch,
                    m->stream);
}

static double read_grad_squares(GpuModel *m) {
    double squares = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&squares, m->grad_sum_squares, sizeof squares, cudaMemcpyDeviceToHost, m->stream));
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
    return squares;
}

extern "C" double gpu_model_grad_norm(GpuModel *m) {
    queue_grad_norm(m, 0.0);
    return sqrt(read_grad_squares(m));
}

// AdamW over the span table in one launch; device_scale: the clip factor on the device, or NULL for grad_scale.
static void adamw_all(GpuModel *m, const AdamWScalars &s, float grad_scale, const float *device_scale) {
    // In fp32 mode without ZeRO the master weights are the weights the kernels read: no copy to write.
    if (m->precision == GPU_BF16)
        gpu_adamw<bf16>(m->master, static_cast<bf16 *>(m->weights), m->grads, m->adam_m, m->adam_v, m->adam_spans,
                        m->num_adam_spans, m->adam_work, s, grad_scale, device_scale, m->stream);
    else
        gpu_adamw<float>(m->master, m->zero ? static_cast<float *>(m->weights) : nullptr, m->grads, m->adam_m,
                         m->adam_v, m->adam_spans, m->num_adam_spans, m->adam_work, s, grad_scale, device_scale,
                         m->stream);
}

// A ZeRO model updates its pieces, then every rank gets every piece of the weights the kernels read.
static void finish_adamw(GpuModel *m) {
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
    if (m->zero)
        gpu_all_gather(m->weights, m->precision == GPU_BF16 ? sizeof(bf16) : sizeof(float), &m->zero_layout, m->stream);
}

extern "C" void gpu_model_adamw(GpuModel *m, const OptimConfig *oc, int64_t step, float grad_scale) {
    adamw_all(m, adamw_scalars(oc, step), grad_scale, nullptr);
    finish_adamw(m);
}

extern "C" double gpu_model_clip_and_adamw(GpuModel *m, const OptimConfig *oc, int64_t step) {
    if (m->zero) die("internal: gpu_model_clip_and_adamw without ZeRO only (a ZeRO norm is summed over ranks)");
    queue_grad_norm(m, oc->grad_clip);
    adamw_all(m, adamw_scalars(oc, step), 1.0f, m->clip_scale);
    finish_adamw(m);
    return sqrt(read_grad_squares(m));
}

// --- Several processes (the collectives themselves: collectives.cu) ------------------------

extern "C" void gpu_model_sum_start(GpuModel *m, int layer) {
    size_t begin, end;
    layer_param_range(&m->cfg, layer, &begin, &end);
    gpu_sum_start(m->grads + begin, end - begin, m->stream);
}

extern "C" void gpu_model_sum_wait(GpuModel *) { gpu_collectives_wait(); }

extern "C" double gpu_model_reduce_scatter_grads(GpuModel *m) {
    gpu_reduce_scatter(m->grads, &m->zero_layout, m->stream);
    // The pieces' sums added on the device in piece order; one read at the end.
    bool first = true;
    for (int i = 0; i < m->zero_layout.num_ranges; i++) {
        const ZeroRange &r = m->zero_layout.ranges[i];
        if (r.piece_end == r.piece_begin) continue;
        gpu_sum_squares(m->grad_sum_squares, nullptr, m->grads + r.piece_begin, r.piece_end - r.piece_begin, !first,
                        0.0, m->sum_scratch, m->stream);
        first = false;
    }
    return first ? 0.0 : read_grad_squares(m);
}

// --- Incremental decoding (the kernels: decode.cu) ---------------------------------------

// As carve_activations: one list sizes the allocation and carves it.
template <typename floatX>
static size_t carve_decode(GpuDecode<floatX> *d, char *base, const ModelConfig *cfg, int max_batch) {
    const size_t B = (size_t)max_batch, T = (size_t)cfg->seq_len, C = (size_t)cfg->d_model, L = (size_t)cfg->n_layer,
                 V = (size_t)cfg->vocab_size, X = sizeof(floatX), F = sizeof(float);
    GpuDecode<floatX> unused;
    if (!d) d = &unused;
    struct Part {
        void **ptr;
        size_t bytes;
    } parts[] = {
        {(void **)&d->k_cache, L * B * T * C * X},
        {(void **)&d->v_cache, L * B * T * C * X},
        {(void **)&d->x, B * C * X},
        {(void **)&d->mid, B * C * X},
        {(void **)&d->xn, B * C * X},
        {(void **)&d->qkv, B * 3 * C * X},
        {(void **)&d->atty, B * C * X},
        {(void **)&d->proj, B * C * X},
        {(void **)&d->fc, B * 4 * C * X},
        {(void **)&d->fc_act, B * 4 * C * X},
        {(void **)&d->logits, B * V * X},
        {(void **)&d->rstd, B * F},
        {(void **)&d->logits_fp32, B * V * F},
        {(void **)&d->prev, B * sizeof(uint16_t)},
    };
    size_t offset = 0;
    for (const Part &part : parts) {
        if (base) *part.ptr = base + offset;
        offset += round_up_256(part.bytes);  // 256-byte aligned: the kernels' 16-byte packs stay aligned
    }
    return offset;
}

static size_t decode_bytes(const GpuModel *m, int max_batch) {
    return m->precision == GPU_BF16 ? carve_decode<bf16>(nullptr, nullptr, &m->cfg, max_batch)
                                    : carve_decode<float>(nullptr, nullptr, &m->cfg, max_batch);
}

extern "C" void gpu_model_decode_create(GpuModel *m, int max_batch) {
    const ModelConfig *cfg = &m->cfg;
    const int hs = cfg->d_model / cfg->n_head;
    if (!gpu_attention_supports(hs))
        die("incremental decoding on the GPU needs head size 16, 32, 64, 96 or 128 (this model: %d); use --device cpu",
            hs);
    if (max_batch < 1) die("internal: decode batch %d", max_batch);
    cudaFree(m->decode_memory);  // a second call replaces the first cache
    m->decode_memory = nullptr;
    m->decode_max_batch = 0;
    const size_t bytes = decode_bytes(m, max_batch);
    size_t free_bytes = 0, total_bytes = 0;
    gpu_memory_info(&free_bytes, &total_bytes);
    if (bytes > free_bytes) {
        char need_text[32], free_text[32];
        die("incremental decoding of %d sequences needs %s of GPU memory (mostly its key/value cache), but %s are "
            "free: decode fewer sequences at once",
            max_batch, format_bytes((double)bytes, need_text, sizeof need_text),
            format_bytes((double)free_bytes, free_text, sizeof free_text));
    }
    CUDA_CHECK(cudaMalloc(&m->decode_memory, bytes));
    char *base = static_cast<char *>(m->decode_memory);
    if (m->precision == GPU_BF16) carve_decode<bf16>(&m->decode_bf16, base, cfg, max_batch);
    else carve_decode<float>(&m->decode_fp32, base, cfg, max_batch);
    m->decode_max_batch = max_batch;
    m->decode_batch = 0;
    m->decode_pos = 0;
    m->host_logits.resize((size_t)max_batch * cfg->vocab_size);
}

extern "C" void gpu_model_decode_begin(GpuModel *m, int batch) {
    if (m->decode_max_batch == 0) die("internal: gpu_model_decode_begin before gpu_model_decode_create");
    if (batch < 1 || batch > m->decode_max_batch)
        die("internal: decode batch %d outside 1..%d", batch, m->decode_max_batch);
    m->decode_batch = batch;
    m->decode_pos = 0;
}

// decode_step (model/decode.c) on the device: the same operations in the same
// order; each norm fused with the residual add before it, as in forward().
template <typename floatX>
static const float *decode_step(GpuModel *m, GpuDecode<floatX> &d, const uint16_t *prev) {
    const ModelConfig *cfg = &m->cfg;
    const int B = m->decode_batch, T = cfg->seq_len, C = cfg->d_model, V = cfg->vocab_size, L = cfg->n_layer,
              NH = cfg->n_head, t = m->decode_pos;
    if (B < 1 || t >= T) die("internal: decode step at position %d of %d (batch %d)", t, T, B);
    cudaStream_t st = m->stream;
    if (t > 0) {
        for (int b = 0; b < B; b++)
            if (prev[b] >= V) die("token %u is outside the %d-color palette", prev[b], V);
        CUDA_CHECK(cudaMemcpyAsync(d.prev, prev, (size_t)B * sizeof(uint16_t), cudaMemcpyHostToDevice, st));
    }
    const DevicePointers<floatX> P(m, static_cast<floatX *>(m->weights));
    const ParamPointers &h = P.host;
    const size_t cache_stride = (size_t)m->decode_max_batch * T * C;  // per layer
    gpu_encoder_decode_forward(d.x, d.prev, P.at(h.wte), P.at(h.wpe), P.at(h.sos), B, t, C, st);
    gpu_residual_norm_forward<floatX>(cfg->norm, nullptr, d.xn, nullptr, d.rstd, d.x, nullptr, P.at(h.layers[0].ln1_g),
                                      P.at(h.layers[0].ln1_b), B, C, st);
    for (int l = 0; l < L; l++) {
        const LayerParams &lp = h.layers[l];
        gpu_matmul_forward(d.qkv, d.xn, P.at(lp.w_qkv), B, C, 3 * C, st);
        gpu_attention_decode_forward(d.atty, d.qkv, d.k_cache + l * cache_stride, d.v_cache + l * cache_stride, B, t, T,
                                     C, NH, st);
        gpu_matmul_forward(d.proj, d.atty, P.at(lp.w_attn_proj), B, C, C, st);
        gpu_residual_norm_forward<floatX>(cfg->norm, d.mid, d.xn, nullptr, d.rstd, d.x, d.proj, P.at(lp.ln2_g),
                                          P.at(lp.ln2_b), B, C, st);
        gpu_matmul_forward(d.fc, d.xn, P.at(lp.w_fc), B, C, 4 * C, st);
        gpu_gelu_forward(d.fc_act, d.fc, (size_t)B * 4 * C, st);
        gpu_matmul_forward(d.proj, d.fc_act, P.at(lp.w_fc_proj), B, 4 * C, C, st);
        // x = mid + MLP, normalised for the next block (or by the final norm).
        const float *gain = l + 1 < L ? h.layers[l + 1].ln1_g : h.lnf_g,
                    *bias = l + 1 < L ? h.layers[l + 1].ln1_b : h.lnf_b;
        gpu_residual_norm_forward<floatX>(cfg->norm, d.x, d.xn, nullptr, d.rstd, d.mid, d.proj, P.at(gain), P.at(bias),
                                          B, C, st);
    }
    gpu_matmul_forward(d.logits, d.xn, P.at(h.w_head), B, C, V, st);
    gpu_cast(d.logits_fp32, d.logits, (size_t)B * V, st);
    CUDA_CHECK(cudaMemcpyAsync(m->host_logits.data(), d.logits_fp32, (size_t)B * V * sizeof(float),
                               cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    m->decode_pos++;
    return m->host_logits.data();
}

extern "C" const float *gpu_model_decode_step(GpuModel *m, const uint16_t *prev) {
    if (m->decode_max_batch == 0) die("internal: gpu_model_decode_step before gpu_model_decode_create");
    if (m->precision == GPU_BF16) return decode_step(m, m->decode_bf16, prev);
    return decode_step(m, m->decode_fp32, prev);
}
