// The model on a GPU (include/gpu_model.h): src/model.c's forward and
// backward passes step for step, with the kernels of kernels.cuh.
//
// Device memory, each in one allocation with pointers into it:
//   state:       fp32 master parameters, fp32 gradients, Adam m and v (P each),
//                and the T copy of the parameters the kernels read (P, bf16
//                mode only; in fp32 mode the master weights are read directly)
//   activations: as the CPU's Activations (in T; means, rstd, lse, losses fp32)
//   scratch:     backward gradients of activations, reduction scratch, tokens
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels.cuh"

extern "C" {
#include "parallel/dist.h"
#include "model/gpu_model.h"
#include "util/util.h"
}

#if !defined(IGPT_INTERPRET) && !defined(IGPT_NO_NCCL)
#include <nccl.h>
#include <unistd.h>

#include <chrono>
#endif

template <typename T>
struct Net {
    // Activations (max_batch rows of T positions), as model.h's Activations.
    T *resid, *ln1, *qkv, *atty, *proj, *mid, *ln2, *fc, *fc_act, *lnf, *logits;
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd, *lnf_mean, *lnf_rstd, *lse, *losses;
    // Backward scratch.
    T *dresid, *dln, *datty, *dqkv, *dfc;
    float *row_dot, *norm_scratch;
    float *features;  // B x (L+1) x C probe features
};

struct GpuModel {
    ModelConfig cfg;
    GpuPrecision precision;
    int max_batch;
    bool recompute;   // keep only each block's input; recompute the rest in backward
    int act_layers;   // per-layer activation slots: L, or 1 with recompute
    size_t num_params;
    std::vector<TensorInfo> tensors;
    // State.
    void *state_memory;
    float *master, *grads, *adam_m, *adam_v;
    void *params_t;  // T copy (== master in fp32 mode)
    // Activations and scratch.
    void *act_memory;
    Net<float> f32;
    Net<bf16> b16;
    uint16_t *tokens;
    int *token_offsets, *token_rows;
    double *sum_scratch;
    std::vector<float> host_losses;
    std::vector<int> host_offsets, host_rows;
    cudaStream_t stream;
    void (*layer_hook)(void *ctx, int layer);
    void *layer_hook_ctx;
    // ZeRO-1 (gpu_model_enable_zero): this rank's pieces of every layer; the
    // master weights and Adam moments of its pieces only, packed.
    bool zero;
    int rank, world;
    std::vector<size_t> range_begin, range_end, piece_begin, piece_end, piece_offset;
    size_t owned;
    float *zero_master, *zero_m, *zero_v;
};

// --- Memory plan -----------------------------------------------------------------------

// One list of (pointer, bytes) for the activations and scratch, used both to
// size the allocation and to carve it, so the two cannot disagree.
// With recompute, the per-layer buffers other than the residual stream hold
// one layer (act_layers = 1), rewritten by each layer's forward.
template <typename T>
static size_t carve_activations(Net<T> *n, char *base, const ModelConfig *cfg, int max_batch, int act_layers) {
    const size_t B = (size_t)max_batch, T_ = (size_t)cfg->seq_len, C = (size_t)cfg->d_model, L = (size_t)act_layers,
                 V = (size_t)cfg->vocab_size, NH = (size_t)cfg->n_head, BT = B * T_, L_resid = (size_t)cfg->n_layer;
    Net<T> dummy;
    if (!n) n = &dummy;
    struct Part {
        void **ptr;
        size_t bytes;
    } parts[] = {
        {(void **)&n->resid, (L_resid + 1) * BT * C * sizeof(T)}, {(void **)&n->ln1, L * BT * C * sizeof(T)},
        {(void **)&n->qkv, L * BT * 3 * C * sizeof(T)},     {(void **)&n->atty, L * BT * C * sizeof(T)},
        {(void **)&n->proj, BT * C * sizeof(T)},             {(void **)&n->mid, L * BT * C * sizeof(T)},
        {(void **)&n->ln2, L * BT * C * sizeof(T)},          {(void **)&n->fc, L * BT * 4 * C * sizeof(T)},
        {(void **)&n->fc_act, BT * 4 * C * sizeof(T)},       {(void **)&n->lnf, BT * C * sizeof(T)},
        {(void **)&n->logits, BT * V * sizeof(T)},           {(void **)&n->ln1_mean, L * BT * sizeof(float)},
        {(void **)&n->ln1_rstd, L * BT * sizeof(float)},     {(void **)&n->ln2_mean, L * BT * sizeof(float)},
        {(void **)&n->ln2_rstd, L * BT * sizeof(float)},     {(void **)&n->lnf_mean, BT * sizeof(float)},
        {(void **)&n->lnf_rstd, BT * sizeof(float)},         {(void **)&n->lse, L * B * NH * T_ * sizeof(float)},
        {(void **)&n->losses, BT * sizeof(float)},           {(void **)&n->dresid, BT * C * sizeof(T)},
        {(void **)&n->dln, BT * C * sizeof(T)},              {(void **)&n->datty, BT * C * sizeof(T)},
        {(void **)&n->dqkv, BT * 3 * C * sizeof(T)},         {(void **)&n->dfc, BT * 4 * C * sizeof(T)},
        {(void **)&n->row_dot, B * NH * T_ * sizeof(float)},
        {(void **)&n->norm_scratch, gpu_norm_backward_scratch((int)BT, (int)C) * sizeof(float)},
        {(void **)&n->features, B * (L_resid + 1) * C * sizeof(float)},
    };
    size_t offset = 0;
    for (const Part &part : parts) {
        if (base) *part.ptr = base + offset;
        offset += (part.bytes + 255) / 256 * 256;  // keep every buffer 256-byte aligned
    }
    return offset;
}

// Without ZeRO: fp32 master weights, gradients, m and v, plus the bf16 copy.
// With ZeRO: the gradients and the weights the kernels read, whole, and the
// packed master weights, m and v of this rank's pieces.
static size_t state_bytes_of(const ModelConfig *cfg, GpuPrecision precision, bool zero) {
    const size_t P = param_count(cfg), copy = precision == GPU_BF16 ? P * sizeof(bf16) : 0;
    if (zero) return P * sizeof(float) + (copy ? copy : P * sizeof(float)) + 3 * (dist_zero_layout(cfg, nullptr, nullptr, nullptr, nullptr, nullptr) + 1) * sizeof(float) +
                     5 * 256;
    return 4 * P * sizeof(float) + copy + 5 * 256;
}

static size_t activation_bytes_of(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute) {
    const int act_layers = recompute ? 1 : cfg->n_layer;
    const size_t BT = (size_t)max_batch * cfg->seq_len;
    const size_t extra = BT * sizeof(uint16_t) + ((size_t)cfg->vocab_size + 1 + BT) * sizeof(int) +
                         GPU_SUM_BLOCKS * sizeof(double) + 4 * 256;
    return (precision == GPU_BF16 ? carve_activations<bf16>(nullptr, nullptr, cfg, max_batch, act_layers)
                                  : carve_activations<float>(nullptr, nullptr, cfg, max_batch, act_layers)) +
           extra;
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

template <typename T>
static T *offset_ptr(void *base, const float *host_ptr, const float *host_base) {
    return host_ptr ? static_cast<T *>(base) + (host_ptr - host_base) : nullptr;
}

static void enable_zero(GpuModel *m);

extern "C" GpuModel *gpu_model_create(const ModelConfig *cfg, int max_batch, GpuPrecision precision, bool recompute,
                                      bool zero) {
    GpuModel *m = new GpuModel();
    m->cfg = *cfg;
    m->precision = precision;
    m->max_batch = max_batch;
    m->recompute = recompute;
    m->act_layers = recompute ? 1 : cfg->n_layer;
    m->num_params = param_count(cfg);
    m->tensors.resize((size_t)param_tensors(cfg, nullptr));
    param_tensors(cfg, m->tensors.data());
    const size_t P = m->num_params;
    size_t free_bytes = 0, total_bytes = 0;
    gpu_memory_info(&free_bytes, &total_bytes);
    const size_t state_bytes = state_bytes_of(cfg, precision, zero);
    const size_t need = state_bytes + activation_bytes_of(cfg, max_batch, precision, recompute);
    if (need > free_bytes) {
        char need_text[32], free_text[32], state_text[32];
        die("the model needs %s of GPU memory (%s of it parameters, gradients and Adam state) for micro-batches of "
            "%d images, but %s are free: use a smaller --micro-batch (gradients accumulate to the same --batch)%s, "
            "a smaller model, or a GPU with more memory",
            format_bytes((double)need, need_text, sizeof need_text),
            format_bytes((double)state_bytes, state_text, sizeof state_text), max_batch,
            format_bytes((double)free_bytes, free_text, sizeof free_text),
            recompute ? "" : ", or --recompute (keeps only each block's input and recomputes the rest in backward)");
    }
    CUDA_CHECK(cudaStreamCreate(&m->stream));
    CUDA_CHECK(cudaMalloc(&m->state_memory, state_bytes));
    const size_t pb = (P * sizeof(float) + 255) / 256 * 256;
    char *s = static_cast<char *>(m->state_memory);
    m->grads = reinterpret_cast<float *>(s);
    if (zero) {  // whole weights for the kernels; the rest packed (enable_zero)
        m->params_t = s + pb;
        m->master = precision == GPU_BF16 ? nullptr : static_cast<float *>(m->params_t);
        m->adam_m = m->adam_v = nullptr;
    } else {
        m->master = reinterpret_cast<float *>(s + pb);
        m->adam_m = reinterpret_cast<float *>(s + 2 * pb);
        m->adam_v = reinterpret_cast<float *>(s + 3 * pb);
        m->params_t = precision == GPU_BF16 ? static_cast<void *>(s + 4 * pb) : static_cast<void *>(m->master);
    }
    CUDA_CHECK(cudaMalloc(&m->act_memory, activation_bytes_of(cfg, max_batch, precision, recompute)));
    char *a = static_cast<char *>(m->act_memory);
    const size_t net_bytes = precision == GPU_BF16
                                 ? carve_activations<bf16>(&m->b16, a, cfg, max_batch, m->act_layers)
                                 : carve_activations<float>(&m->f32, a, cfg, max_batch, m->act_layers);
    const size_t BT = (size_t)max_batch * cfg->seq_len;
    char *cursor = a + net_bytes;
    m->tokens = reinterpret_cast<uint16_t *>(cursor);
    cursor += (BT * sizeof(uint16_t) + 255) / 256 * 256;
    m->token_offsets = reinterpret_cast<int *>(cursor);
    cursor += (((size_t)cfg->vocab_size + 1) * sizeof(int) + 255) / 256 * 256;
    m->token_rows = reinterpret_cast<int *>(cursor);
    cursor += (BT * sizeof(int) + 255) / 256 * 256;
    m->sum_scratch = reinterpret_cast<double *>(cursor);
    m->host_losses.resize(BT);
    m->host_offsets.resize((size_t)cfg->vocab_size + 1);
    m->host_rows.resize(BT);
    CUDA_CHECK(cudaMemset(m->grads, 0, P * sizeof(float)));
    if (zero) {
        enable_zero(m);
    } else {
        CUDA_CHECK(cudaMemset(m->adam_m, 0, P * sizeof(float)));
        CUDA_CHECK(cudaMemset(m->adam_v, 0, P * sizeof(float)));
    }
    return m;
}

extern "C" void gpu_model_free(GpuModel *m) {
    if (!m) return;
    cudaFree(m->state_memory);
    cudaFree(m->act_memory);
    cudaStreamDestroy(m->stream);
    gpu_matmul_shutdown();
    delete m;
}

// The whole fp32 parameters: into the master weights, or (ZeRO, bf16) through
// the gradient buffer into the bf16 weights only.
extern "C" void gpu_model_set_params(GpuModel *m, const float *params) {
    float *fp32 = m->master ? m->master : m->grads;
    CUDA_CHECK(cudaMemcpy(fp32, params, m->num_params * sizeof(float), cudaMemcpyHostToDevice));
    if (m->precision == GPU_BF16) gpu_cast(static_cast<bf16 *>(m->params_t), fp32, m->num_params, m->stream);
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
}

static void require_whole_state(const GpuModel *m) {
    if (m->zero) die("internal: a ZeRO model keeps only its pieces of the optimizer state");
}

extern "C" void gpu_model_get_params(const GpuModel *m, float *params) {
    require_whole_state(m);
    CUDA_CHECK(cudaMemcpy(params, m->master, m->num_params * sizeof(float), cudaMemcpyDeviceToHost));
}

extern "C" void gpu_model_set_adam(GpuModel *m, const float *adam_m, const float *adam_v) {
    require_whole_state(m);
    CUDA_CHECK(cudaMemcpy(m->adam_m, adam_m, m->num_params * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(m->adam_v, adam_v, m->num_params * sizeof(float), cudaMemcpyHostToDevice));
}

extern "C" void gpu_model_get_adam(const GpuModel *m, float *adam_m, float *adam_v) {
    require_whole_state(m);
    CUDA_CHECK(cudaMemcpy(adam_m, m->adam_m, m->num_params * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(adam_v, m->adam_v, m->num_params * sizeof(float), cudaMemcpyDeviceToHost));
}

extern "C" void gpu_model_get_grads(const GpuModel *m, float *grads) {
    CUDA_CHECK(cudaMemcpy(grads, m->grads, m->num_params * sizeof(float), cudaMemcpyDeviceToHost));
}

extern "C" void gpu_model_zero_grads(GpuModel *m) {
    CUDA_CHECK(cudaMemsetAsync(m->grads, 0, m->num_params * sizeof(float), m->stream));
}

// Device pointers of the parameters (T) or gradients (fp32), in param_tensors'
// layout: param_pointers over the gradient buffer gives each tensor's offset.
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
template <typename T>
struct LayerActs {
    T *resid, *resid_next, *ln1, *qkv, *atty, *mid, *ln2, *fc;
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd, *lse;
    LayerActs(const GpuModel *m, const Net<T> &n, int l) {
        const size_t stride_c = (size_t)m->max_batch * m->cfg.seq_len * m->cfg.d_model;
        const size_t max_BT = (size_t)m->max_batch * m->cfg.seq_len;
        const int s = m->recompute ? 0 : l;
        resid = n.resid + l * stride_c, resid_next = n.resid + (l + 1) * stride_c;
        ln1 = n.ln1 + s * stride_c, qkv = n.qkv + s * 3 * stride_c, atty = n.atty + s * stride_c;
        mid = n.mid + s * stride_c, ln2 = n.ln2 + s * stride_c, fc = n.fc + s * 4 * stride_c;
        ln1_mean = n.ln1_mean + s * max_BT, ln1_rstd = n.ln1_rstd + s * max_BT;
        ln2_mean = n.ln2_mean + s * max_BT, ln2_rstd = n.ln2_rstd + s * max_BT;
        lse = n.lse + (size_t)s * m->max_batch * m->cfg.n_head * m->cfg.seq_len;
    }
};

// Block l from its normalised input ln1 up to mid, ln2, fc; with write_next,
// also resid_{l+1} = mid + MLP, normalised for the next block (or the final norm).
template <typename T>
static void layer_forward(GpuModel *m, Net<T> &n, const DevicePointers<T> &P, int l, int B, bool write_next) {
    const ModelConfig *cfg = &m->cfg;
    const int T_ = cfg->seq_len, C = cfg->d_model, L = cfg->n_layer, NH = cfg->n_head, N = B * T_, kind = cfg->norm;
    const ParamPointers &h = P.host;
    const LayerParams &lp = h.layers[l];
    const LayerActs<T> a(m, n, l);
    cudaStream_t st = m->stream;
    gpu_matmul_forward(a.qkv, a.ln1, P.at(lp.w_qkv), N, C, 3 * C, st);
    gpu_attention_forward(a.atty, a.lse, a.qkv, B, T_, C, NH, st);
    gpu_matmul_forward(n.proj, a.atty, P.at(lp.w_attn_proj), N, C, C, st);
    gpu_residual_norm_forward<T>(kind, a.mid, a.ln2, a.ln2_mean, a.ln2_rstd, a.resid, n.proj, P.at(lp.ln2_g),
                                 P.at(lp.ln2_b), N, C, st);
    gpu_matmul_forward(a.fc, a.ln2, P.at(lp.w_fc), N, C, 4 * C, st);
    if (!write_next) return;
    gpu_gelu_forward(n.fc_act, a.fc, (size_t)N * 4 * C, st);
    gpu_matmul_forward(n.proj, n.fc_act, P.at(lp.w_fc_proj), N, 4 * C, C, st);
    if (l + 1 < L) {
        const LayerActs<T> next(m, n, l + 1);
        gpu_residual_norm_forward<T>(kind, a.resid_next, next.ln1, next.ln1_mean, next.ln1_rstd, a.mid, n.proj,
                                     P.at(h.layers[l + 1].ln1_g), P.at(h.layers[l + 1].ln1_b), N, C, st);
    } else {
        gpu_residual_norm_forward<T>(kind, a.resid_next, n.lnf, n.lnf_mean, n.lnf_rstd, a.mid, n.proj, P.at(h.lnf_g),
                                     P.at(h.lnf_b), N, C, st);
    }
}

// The first norm of block l (no residual add: its input is already stored).
template <typename T>
static void first_norm(GpuModel *m, Net<T> &n, const DevicePointers<T> &P, int l, int B) {
    const LayerActs<T> a(m, n, l);
    gpu_residual_norm_forward<T>(m->cfg.norm, nullptr, a.ln1, a.ln1_mean, a.ln1_rstd, a.resid, nullptr,
                                 P.at(P.host.layers[l].ln1_g), P.at(P.host.layers[l].ln1_b), B * m->cfg.seq_len,
                                 m->cfg.d_model, m->stream);
}

template <typename T>
static double forward(GpuModel *m, Net<T> &n, const uint16_t *tokens, int batch) {
    const ModelConfig *cfg = &m->cfg;
    if (batch < 1 || batch > m->max_batch) die("internal: batch %d outside 1..%d", batch, m->max_batch);
    const int B = batch, T_ = cfg->seq_len, C = cfg->d_model, L = cfg->n_layer, V = cfg->vocab_size;
    const int N = B * T_;
    cudaStream_t st = m->stream;
    const DevicePointers<T> P(m, static_cast<T *>(m->params_t));
    const ParamPointers &h = P.host;
    upload_tokens(m, tokens, batch);
    gpu_encoder_forward(n.resid, m->tokens, P.at(h.wte), P.at(h.wpe), P.at(h.sos), B, T_, C, st);
    // Block 0's first norm has no residual add; every later norm is fused with the add before it.
    if (L > 0) first_norm(m, n, P, 0, B);
    for (int l = 0; l < L; l++) layer_forward(m, n, P, l, B, true);
    if (L == 0)
        gpu_residual_norm_forward<T>(cfg->norm, nullptr, n.lnf, n.lnf_mean, n.lnf_rstd, n.resid, nullptr,
                                     P.at(h.lnf_g), P.at(h.lnf_b), N, C, st);
    gpu_matmul_forward(n.logits, n.lnf, P.at(h.w_head), N, C, V, st);
    gpu_softmax_crossentropy(n.logits, n.losses, m->tokens, N, V, CE_LOSSES_ONLY, 0.0f, st);
    CUDA_CHECK(cudaMemcpyAsync(m->host_losses.data(), n.losses, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    double total = 0.0;
    for (int i = 0; i < N; i++) total += m->host_losses[(size_t)i];
    return total / N;
}

template <typename T>
static void backward(GpuModel *m, Net<T> &n, const uint16_t *tokens, int batch, float loss_scale) {
    const ModelConfig *cfg = &m->cfg;
    const int B = batch, T_ = cfg->seq_len, C = cfg->d_model, L = cfg->n_layer, V = cfg->vocab_size, NH = cfg->n_head;
    const int N = B * T_, kind = cfg->norm;
    const size_t stride_c = (size_t)m->max_batch * T_ * C;
    cudaStream_t st = m->stream;
    const DevicePointers<T> P(m, static_cast<T *>(m->params_t));
    const DevicePointers<float> G(m, m->grads);
    const ParamPointers &h = P.host;
    // The tokens on the device are this batch's (uploaded by forward); the
    // grouping of rows by token is computed here on the host.
    token_rows_by_value(tokens, B, T_, V, m->host_offsets.data(), m->host_rows.data());
    CUDA_CHECK(cudaMemcpyAsync(m->token_offsets, m->host_offsets.data(), ((size_t)V + 1) * sizeof(int),
                               cudaMemcpyHostToDevice, st));
    CUDA_CHECK(cudaMemcpyAsync(m->token_rows, m->host_rows.data(), (size_t)B * (T_ - 1) * sizeof(int),
                               cudaMemcpyHostToDevice, st));

    gpu_softmax_crossentropy(n.logits, n.losses, m->tokens, N, V, CE_GRADIENT, loss_scale, st);
    gpu_matmul_backward(n.dln, G.at(h.w_head), n.logits, n.lnf, P.at(h.w_head), N, C, V, st);
    CUDA_CHECK(cudaMemsetAsync(n.dresid, 0, (size_t)N * C * sizeof(T), st));
    gpu_norm_backward<T>(kind, n.dresid, G.at(h.lnf_g), G.at(h.lnf_b), n.dln, n.resid + L * stride_c, n.lnf_mean,
                         n.lnf_rstd, P.at(h.lnf_g), N, C, n.norm_scratch, st);
    if (m->layer_hook) m->layer_hook(m->layer_hook_ctx, L);
    for (int l = L - 1; l >= 0; l--) {
        const LayerParams &lp = h.layers[l], &lg = G.host.layers[l];
        const LayerActs<T> a(m, n, l);
        if (m->recompute) {  // this block's activations again, from its stored input
            first_norm(m, n, P, l, B);
            layer_forward(m, n, P, l, B, false);
        }
        // MLP (GELU recomputed from fc, as on the CPU).
        gpu_gelu_forward(n.fc_act, a.fc, (size_t)N * 4 * C, st);
        gpu_matmul_backward(n.dfc, G.at(lg.w_fc_proj), n.dresid, n.fc_act, P.at(lp.w_fc_proj), N, 4 * C, C, st);
        gpu_gelu_backward(n.dfc, a.fc, n.dfc, (size_t)N * 4 * C, st);
        gpu_matmul_backward(n.dln, G.at(lg.w_fc), n.dfc, a.ln2, P.at(lp.w_fc), N, C, 4 * C, st);
        gpu_norm_backward<T>(kind, n.dresid, G.at(lg.ln2_g), G.at(lg.ln2_b), n.dln, a.mid, a.ln2_mean, a.ln2_rstd,
                             P.at(lp.ln2_g), N, C, n.norm_scratch, st);
        // Attention.
        gpu_matmul_backward(n.datty, G.at(lg.w_attn_proj), n.dresid, a.atty, P.at(lp.w_attn_proj), N, C, C, st);
        gpu_attention_backward(n.dqkv, n.row_dot, n.datty, a.atty, a.qkv, a.lse, B, T_, C, NH, st);
        gpu_matmul_backward(n.dln, G.at(lg.w_qkv), n.dqkv, a.ln1, P.at(lp.w_qkv), N, C, 3 * C, st);
        gpu_norm_backward<T>(kind, n.dresid, G.at(lg.ln1_g), G.at(lg.ln1_b), n.dln, a.resid, a.ln1_mean, a.ln1_rstd,
                             P.at(lp.ln1_g), N, C, n.norm_scratch, st);
        if (m->layer_hook) m->layer_hook(m->layer_hook_ctx, l);
    }
    gpu_encoder_backward(G.at(h.wte), G.at(h.wpe), G.at(h.sos), n.dresid, m->token_offsets, m->token_rows, B, T_, C, V,
                         st);
    if (m->layer_hook) m->layer_hook(m->layer_hook_ctx, -1);
    CUDA_CHECK(cudaStreamSynchronize(st));
}

template <typename T>
static void features(GpuModel *m, Net<T> &n, int batch, float *out) {
    if (m->recompute) die("internal: probe features need every layer's activations (a model without --recompute)");
    const int T_ = m->cfg.seq_len, C = m->cfg.d_model, L = m->cfg.n_layer;
    const size_t stride_c = (size_t)m->max_batch * T_ * C, per_image = (size_t)(L + 1) * C;
    for (int l = 0; l <= L; l++)
        gpu_mean_over_positions(n.features + (size_t)l * C, per_image, l < L ? n.ln1 + l * stride_c : n.lnf, batch,
                                T_, C, m->stream);
    CUDA_CHECK(cudaMemcpyAsync(out, n.features, (size_t)batch * per_image * sizeof(float), cudaMemcpyDeviceToHost,
                               m->stream));
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
}

extern "C" double gpu_model_forward(GpuModel *m, const uint16_t *tokens, int batch) {
    return m->precision == GPU_BF16 ? forward(m, m->b16, tokens, batch) : forward(m, m->f32, tokens, batch);
}

extern "C" void gpu_model_backward(GpuModel *m, const uint16_t *tokens, int batch, float loss_scale) {
    if (m->precision == GPU_BF16) backward(m, m->b16, tokens, batch, loss_scale);
    else backward(m, m->f32, tokens, batch, loss_scale);
}

extern "C" void gpu_model_features(GpuModel *m, int batch, float *out) {
    if (m->precision == GPU_BF16) features(m, m->b16, batch, out);
    else features(m, m->f32, batch, out);
}

extern "C" void gpu_model_set_layer_hook(GpuModel *m, void (*hook)(void *ctx, int layer), void *ctx) {
    m->layer_hook = hook;
    m->layer_hook_ctx = ctx;
}

extern "C" double gpu_model_grad_norm(GpuModel *m) {
    return sqrt(gpu_sum_squares(m->grads, m->num_params, m->sum_scratch, m->stream));
}

extern "C" void gpu_model_adamw(GpuModel *m, const OptimConfig *oc, int64_t step, float grad_scale) {
    require_whole_state(m);
    const AdamWScalars s = adamw_scalars(oc, step);
    bf16 *copy = m->precision == GPU_BF16 ? static_cast<bf16 *>(m->params_t) : nullptr;
    for (const TensorInfo &t : m->tensors)
        gpu_adamw<bf16>(m->master + t.offset, copy ? copy + t.offset : nullptr, m->grads + t.offset,
                        m->adam_m + t.offset, m->adam_v + t.offset, t.count, grad_scale, s.beta1, s.beta2, s.eps,
                        s.step_size, s.inv_sqrt_bc2, t.decay ? s.decay_factor : 1.0f, m->stream);
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
}

// --- Several processes -------------------------------------------------------------------

#if defined(IGPT_NO_NCCL) && !defined(IGPT_INTERPRET)
extern "C" void gpu_use_device(int local_rank) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return;
    CUDA_CHECK(cudaSetDevice(local_rank % count));
}
extern "C" void gpu_collectives_init(int, int) {
    die("this ./igpt was built without NCCL (make found no nccl.h; set NCCL_HOME): it cannot train on several GPUs");
}
extern "C" void gpu_collectives_finalize(void) {}
extern "C" void gpu_model_sum_start(GpuModel *, size_t, size_t) { die("internal: no NCCL in this build"); }
extern "C" void gpu_model_sum_wait(GpuModel *) {}
#elif defined(IGPT_INTERPRET)
extern "C" void gpu_use_device(int) {}
extern "C" void gpu_collectives_init(int, int) {}
extern "C" void gpu_collectives_finalize(void) {}
extern "C" void gpu_model_sum_start(GpuModel *m, size_t offset, size_t n) {
    dist_sum_floats_start(m->grads + offset, n);  // "device" memory is host memory here
}
extern "C" void gpu_model_sum_wait(GpuModel *) { dist_wait_all(); }
#else
static ncclComm_t nccl_comm = nullptr;
static cudaStream_t comm_stream = nullptr;
static cudaEvent_t grads_ready = nullptr;

static void nccl_check(ncclResult_t r, const char *what) {
    if (r != ncclSuccess && r != ncclInProgress) die("NCCL error in %s: %s", what, ncclGetErrorString(r));
}

extern "C" void gpu_use_device(int local_rank) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return;
    CUDA_CHECK(cudaSetDevice(local_rank % count));
}

extern "C" void gpu_collectives_init(int rank, int world) {
    ncclUniqueId id;
    if (rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    dist_broadcast(&id, sizeof id);
    nccl_check(ncclCommInitRank(&nccl_comm, world, id, rank), "ncclCommInitRank");
    CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&grads_ready, cudaEventDisableTiming));
}

extern "C" void gpu_collectives_finalize(void) {
    if (!nccl_comm) return;
    ncclCommDestroy(nccl_comm);
    cudaStreamDestroy(comm_stream);
    cudaEventDestroy(grads_ready);
    nccl_comm = nullptr;
}

extern "C" void gpu_model_sum_start(GpuModel *m, size_t offset, size_t n) {
    if (!nccl_comm) die("internal: gpu_collectives_init was not called");
    CUDA_CHECK(cudaEventRecord(grads_ready, m->stream));
    CUDA_CHECK(cudaStreamWaitEvent(comm_stream, grads_ready, 0));
    nccl_check(ncclAllReduce(m->grads + offset, m->grads + offset, n, ncclFloat, ncclSum, nccl_comm, comm_stream),
               "ncclAllReduce");
}

// Polls rather than blocks, so that a collective stuck on a dead rank or a
// NCCL error is seen and reported instead of hanging the job.
extern "C" void gpu_model_sum_wait(GpuModel *m) {
    if (!nccl_comm) return;
    const char *env = getenv("IGPT_NCCL_TIMEOUT");
    const double timeout = env ? atof(env) : 600.0;
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
        cudaError_t state = cudaStreamQuery(comm_stream);
        if (state == cudaSuccess) break;
        if (state != cudaErrorNotReady) CUDA_CHECK(state);
        ncclResult_t async = ncclSuccess;
        nccl_check(ncclCommGetAsyncError(nccl_comm, &async), "ncclCommGetAsyncError");
        if (async != ncclSuccess && async != ncclInProgress) {
            ncclCommAbort(nccl_comm);
            die("NCCL all-reduce failed: %s", ncclGetErrorString(async));
        }
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout) {
            ncclCommAbort(nccl_comm);
            die("the gradient all-reduce did not finish in %.0f s (another rank died or hangs; IGPT_NCCL_TIMEOUT "
                "sets the limit)",
                timeout);
        }
        usleep(200);
    }
    (void)m;
}
#endif

// --- ZeRO-1 ----------------------------------------------------------------------------------

static void enable_zero(GpuModel *m) {
    const int L = m->cfg.n_layer, ranges = L + 2;
    m->zero = true;
    m->rank = dist_get()->rank;
    m->world = dist_get()->world;
    m->range_begin.resize((size_t)ranges), m->range_end.resize((size_t)ranges);
    m->piece_begin.resize((size_t)ranges), m->piece_end.resize((size_t)ranges), m->piece_offset.resize((size_t)ranges);
    m->owned = dist_zero_layout(&m->cfg, m->range_begin.data(), m->range_end.data(), m->piece_begin.data(),
                                m->piece_end.data(), m->piece_offset.data());
    // The packed master weights and moments sit after the whole weights in the state allocation.
    const size_t P = m->num_params, pb = (P * sizeof(float) + 255) / 256 * 256;
    const size_t weights = ((m->precision == GPU_BF16 ? P * sizeof(bf16) : P * sizeof(float)) + 255) / 256 * 256;
    const size_t packed = ((m->owned + 1) * sizeof(float) + 255) / 256 * 256;
    char *s = static_cast<char *>(m->state_memory) + pb + weights;
    m->zero_master = reinterpret_cast<float *>(s);
    m->zero_m = reinterpret_cast<float *>(s + packed);
    m->zero_v = reinterpret_cast<float *>(s + 2 * packed);
}

// Copies this rank's pieces between a full buffer and a packed one.
static void copy_pieces(const GpuModel *m, float *packed, const float *full, bool to_packed, cudaMemcpyKind kind) {
    for (size_t i = 0; i < m->piece_begin.size(); i++) {
        const size_t n = m->piece_end[i] - m->piece_begin[i];
        if (!n) continue;
        if (to_packed)
            CUDA_CHECK(cudaMemcpy(packed + m->piece_offset[i], full + m->piece_begin[i], n * sizeof(float), kind));
        else
            CUDA_CHECK(cudaMemcpy(const_cast<float *>(full) + m->piece_begin[i], packed + m->piece_offset[i],
                                  n * sizeof(float), kind));
    }
}

extern "C" void gpu_model_zero_set_state(GpuModel *m, const float *params, const float *adam_m, const float *adam_v) {
    // Every rank holds the full weights the kernels read, and its pieces of the rest.
    gpu_model_set_params(m, params);
    copy_pieces(m, m->zero_master, params, true, cudaMemcpyHostToDevice);
    if (adam_m) copy_pieces(m, m->zero_m, adam_m, true, cudaMemcpyHostToDevice);
    else CUDA_CHECK(cudaMemset(m->zero_m, 0, (m->owned + 1) * sizeof(float)));
    if (adam_v) copy_pieces(m, m->zero_v, adam_v, true, cudaMemcpyHostToDevice);
    else CUDA_CHECK(cudaMemset(m->zero_v, 0, (m->owned + 1) * sizeof(float)));
}

extern "C" void gpu_model_zero_get_pieces(const GpuModel *m, float *params, float *adam_m, float *adam_v) {
    copy_pieces(m, m->zero_master, params, false, cudaMemcpyDeviceToHost);
    copy_pieces(m, m->zero_m, adam_m, false, cudaMemcpyDeviceToHost);
    copy_pieces(m, m->zero_v, adam_v, false, cudaMemcpyDeviceToHost);
}

// Sums the gradients over ranks, leaving each rank the sums of its pieces;
// returns the sum of squares of its pieces.
extern "C" double gpu_model_zero_reduce_scatter(GpuModel *m) {
    double squares = 0.0;
#if defined(IGPT_NO_NCCL) && !defined(IGPT_INTERPRET)
    die("internal: no NCCL in this build");
#elif !defined(IGPT_INTERPRET)
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (size_t i = 0; i < m->range_begin.size(); i++)
        for (int r = 0; r < m->world; r++) {
            size_t b, e;
            dist_piece(m->range_end[i] - m->range_begin[i], r, &b, &e);
            float *piece = m->grads + m->range_begin[i] + b;
            nccl_check(ncclReduce(piece, piece, e - b, ncclFloat, ncclSum, r, nccl_comm, comm_stream), "ncclReduce");
        }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    gpu_model_sum_wait(m);
#else
    for (size_t i = 0; i < m->range_begin.size(); i++)
        dist_reduce_scatter(m->grads + m->range_begin[i], m->range_end[i] - m->range_begin[i]);
#endif
    for (size_t i = 0; i < m->piece_begin.size(); i++)
        if (m->piece_end[i] > m->piece_begin[i])
            squares += gpu_sum_squares(m->grads + m->piece_begin[i], m->piece_end[i] - m->piece_begin[i],
                                       m->sum_scratch, m->stream);
    return squares;
}

// AdamW on this rank's pieces (master weights, moments and the weights the
// kernels read), then every rank's pieces of those weights to every rank.
extern "C" void gpu_model_zero_adamw(GpuModel *m, const OptimConfig *oc, int64_t step, float grad_scale) {
    const AdamWScalars s = adamw_scalars(oc, step);
    const bool bf = m->precision == GPU_BF16;
    for (size_t i = 0; i < m->piece_begin.size(); i++)
        for (const TensorInfo &t : m->tensors) {
            const size_t b = std::max(m->piece_begin[i], t.offset), e = std::min(m->piece_end[i], t.offset + t.count);
            if (b >= e) continue;
            const size_t packed = m->piece_offset[i] + (b - m->piece_begin[i]);
            const float decay = t.decay ? s.decay_factor : 1.0f;
            if (bf)
                gpu_adamw<bf16>(m->zero_master + packed, static_cast<bf16 *>(m->params_t) + b, m->grads + b,
                                m->zero_m + packed, m->zero_v + packed, e - b, grad_scale, s.beta1, s.beta2, s.eps,
                                s.step_size, s.inv_sqrt_bc2, decay, m->stream);
            else
                gpu_adamw<float>(m->zero_master + packed, static_cast<float *>(m->params_t) + b, m->grads + b,
                                 m->zero_m + packed, m->zero_v + packed, e - b, grad_scale, s.beta1, s.beta2, s.eps,
                                 s.step_size, s.inv_sqrt_bc2, decay, m->stream);
        }
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
    const size_t elem = bf ? sizeof(bf16) : sizeof(float);
#if defined(IGPT_NO_NCCL) && !defined(IGPT_INTERPRET)
    (void)elem;
    die("internal: no NCCL in this build");
#elif !defined(IGPT_INTERPRET)
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (size_t i = 0; i < m->range_begin.size(); i++)
        for (int r = 0; r < m->world; r++) {
            size_t b, e;
            dist_piece(m->range_end[i] - m->range_begin[i], r, &b, &e);
            char *piece = static_cast<char *>(m->params_t) + (m->range_begin[i] + b) * elem;
            nccl_check(ncclBroadcast(piece, piece, e - b, bf ? ncclBfloat16 : ncclFloat, r, nccl_comm, comm_stream),
                       "ncclBroadcast");
        }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    gpu_model_sum_wait(m);
#else
    for (size_t i = 0; i < m->range_begin.size(); i++)
        dist_all_gather_elements(static_cast<char *>(m->params_t) + m->range_begin[i] * elem,
                                 m->range_end[i] - m->range_begin[i], elem);
#endif
}
