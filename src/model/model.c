// The fp32 CPU reference of the iGPT model (docs/model.md): the twin every
// GPU kernel is tested against.
//
// iGPT is GPT-2 on pixels. An image is a sequence of T color ids in raster
// order and the model learns p(x_t | x_<t), each pixel's color from the
// pixels before it. Two things differ from a text GPT:
// - The sos shift: position t's input is the embedding of pixel t-1, and
//   position 0 gets a learned start-of-sequence vector instead, so the output
//   at t predicts pixel t itself and every pixel, the first included, is
//   predicted and scored (encoder_forward).
// - The iGPT norm: x * rsqrt(mean(x^2) + eps) * g, a LayerNorm without the
//   mean subtraction and the bias, as in openai/image-gpt (LayerNorm is an
//   option, --norm layernorm).
// No biases anywhere, GELU as x * sigmoid(1.702 x), an output head of its own.
//
// OpenBLAS does the matrix products, OpenMP splits rows, heads and channels.
// Determinism: every reduction has a fixed order (parallel loops write
// disjoint outputs; sums over rows run inside one thread), so a run repeats
// bitwise with the same thread count (OpenBLAS may round its products
// differently with another, cpu_ops.c).
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#include "model/cpu_ops.h"
#include "util/gemm_bf16.h"
#include "util/util.h"

// ---------------------------------------------------------------------------
// Buffers

// The activation buffer's parts, in order: returns the total in floats and,
// when base is not NULL, points a's fields into it. The bf16 model keeps fc,
// and where its attention takes bf16 qkv and atty, only rounded
// (Model.fc_bf16, qkv_bf16, the saved inputs): one layer of each in fp32
// (layer_fc, layer_qkv, layer_atty).
static size_t layout_activations(Activations *a, float *base, const ModelConfig *cfg, int max_batch, bool bf16) {
    const size_t B = (size_t)max_batch, T = (size_t)cfg->seq_len, C = (size_t)cfg->d_model, L = (size_t)cfg->n_layer,
                 V = (size_t)cfg->vocab_size, NH = (size_t)cfg->n_head, BT = B * T;
    const size_t qkv_layers = bf16 && attention_bf16_fits(cfg->d_model, cfg->n_head) ? 1 : L, fc_layers = bf16 ? 1 : L;
    struct {
        float **ptr;
        size_t count;
    } parts[] = {
        {&a->resid, (L + 1) * BT * C},
        {&a->ln1, L * BT * C},
        {&a->ln1_mean, L * BT},
        {&a->ln1_rstd, L * BT},
        {&a->qkv, qkv_layers * BT * 3 * C},
        {&a->atty, qkv_layers * BT * C},
        {&a->att_lse, L * B * NH * T},
        {&a->resid_mid, L * BT * C},
        {&a->ln2, L * BT * C},
        {&a->ln2_mean, L * BT},
        {&a->ln2_rstd, L * BT},
        {&a->fc, fc_layers * BT * 4 * C},
        {&a->fc_act, BT * 4 * C},
        {&a->lnf, BT * C},
        {&a->lnf_mean, BT},
        {&a->lnf_rstd, BT},
        {&a->logits, BT * V},
        {&a->losses, BT},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (base) *parts[i].ptr = base + total;
        total += parts[i].count;
    }
    return total;
}

// Backward scratch: d(residual) BTxC, d(norm out) BTxC, d(attention out)
// BTxC, d(qkv) BTx3C, d(fc) BTx4C, and the attention's scratch.
static size_t scratch_floats(const ModelConfig *cfg, int max_batch, int threads) {
    const size_t BT = (size_t)max_batch * cfg->seq_len, C = (size_t)cfg->d_model;
    return BT * C * 3 + BT * 3 * C + BT * 4 * C +
           attention_scratch_floats(cfg->seq_len, cfg->d_model, cfg->n_head, threads);
}

size_t model_activation_bytes(const ModelConfig *cfg, int max_batch, int threads, bool bf16) {
    Activations unused;
    return (layout_activations(&unused, NULL, cfg, max_batch, bf16) + scratch_floats(cfg, max_batch, threads)) *
           sizeof(float);
}

// The fp32 activations laid out for the fp32 model, or the bf16 one's.
static void allocate_activations(Model *m, bool bf16) {
    xfree_aligned(m->act_memory);
    m->act_floats = layout_activations(&m->act, NULL, &m->cfg, m->max_batch, bf16);
    m->act_memory = xcalloc_aligned(m->act_floats, sizeof(float));
    layout_activations(&m->act, m->act_memory, &m->cfg, m->max_batch, bf16);
}

void model_create(Model *m, const ModelConfig *cfg, int max_batch, int threads) {
    model_config_validate(cfg);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->threads = threads;
    m->max_batch = max_batch;
    m->num_params = param_count(cfg);
    m->params = xcalloc_aligned(m->num_params, sizeof(float));
    m->grads = xcalloc_aligned(m->num_params, sizeof(float));
    param_pointers(cfg, m->params, &m->p);
    param_pointers(cfg, m->grads, &m->g);

    allocate_activations(m, false);
    m->scratch_floats = scratch_floats(cfg, max_batch, threads);
    m->scratch = xcalloc_aligned(m->scratch_floats, sizeof(float));
}

// Rounded inputs kept per layer, in units of max_batch x T x C: ln1, atty,
// ln2, then fc_act (4 units); the final norm's output after the last layer.
typedef enum { SAVED_LN1 = 0, SAVED_ATTY = 1, SAVED_LN2 = 2, SAVED_FC_ACT = 3, SAVED_PER_LAYER = 7 } SavedInput;

static size_t saved_unit(const ModelConfig *cfg, int max_batch) {
    return (size_t)max_batch * cfg->seq_len * cfg->d_model;
}

static size_t saved_count(const ModelConfig *cfg, int max_batch) {
    return ((size_t)cfg->n_layer * SAVED_PER_LAYER + 1) * saved_unit(cfg, max_batch);
}

static size_t grad_bf16_count(const ModelConfig *cfg, int max_batch) {
    const size_t widest = (size_t)(4 * cfg->d_model > cfg->vocab_size ? 4 * cfg->d_model : cfg->vocab_size);
    return (size_t)max_batch * cfg->seq_len * widest;
}

// Where layer l's rounded input `which` is kept (l = L: the final norm's
// output); NULL in the fp32 model.
static uint16_t *saved_input(const Model *m, int l, SavedInput which) {
    if (!m->inputs_bf16) return NULL;
    return m->inputs_bf16 + ((size_t)l * SAVED_PER_LAYER + which) * saved_unit(&m->cfg, m->max_batch);
}

static size_t qkv_bf16_count(const ModelConfig *cfg, int max_batch) {
    return attention_bf16_fits(cfg->d_model, cfg->n_head) ? (size_t)cfg->n_layer * 3 * saved_unit(cfg, max_batch) : 0;
}

// Layer l's rounded qkv (Model.qkv_bf16), NULL without it.
static uint16_t *layer_qkv_bf16(const Model *m, int l) {
    if (!m->qkv_bf16) return NULL;
    return m->qkv_bf16 + (size_t)l * 3 * saved_unit(&m->cfg, m->max_batch);
}

static size_t fc_bf16_count(const ModelConfig *cfg, int max_batch) {
    return (size_t)cfg->n_layer * 4 * saved_unit(cfg, max_batch);
}

// Layer l's rounded fc (Model.fc_bf16), NULL in the fp32 model.
static uint16_t *layer_fc_bf16(const Model *m, int l) {
    if (!m->fc_bf16) return NULL;
    return m->fc_bf16 + (size_t)l * 4 * saved_unit(&m->cfg, m->max_batch);
}

size_t model_bf16_bytes(const ModelConfig *cfg, int max_batch) {
    return (param_count(cfg) + saved_count(cfg, max_batch) + grad_bf16_count(cfg, max_batch) +
            qkv_bf16_count(cfg, max_batch) + fc_bf16_count(cfg, max_batch)) *
           sizeof(uint16_t);
}

void model_use_bf16_products(Model *m) {
    if (m->params_bf16) return;
    m->params_bf16 = xcalloc_aligned(m->num_params, sizeof(uint16_t));
    m->inputs_bf16 = xcalloc_aligned(saved_count(&m->cfg, m->max_batch), sizeof(uint16_t));
    m->grad_bf16 = xcalloc_aligned(grad_bf16_count(&m->cfg, m->max_batch), sizeof(uint16_t));
    const size_t qkv = qkv_bf16_count(&m->cfg, m->max_batch);
    if (qkv) m->qkv_bf16 = xcalloc_aligned(qkv, sizeof(uint16_t));
    m->fc_bf16 = xcalloc_aligned(fc_bf16_count(&m->cfg, m->max_batch), sizeof(uint16_t));
    allocate_activations(m, true);  // fewer fp32 ones (layout_activations)
}

// Layer l's fp32 qkv, attention output and fc: in the bf16 model, which
// keeps them rounded, the one layer it has of each (scratch,
// product_forward_rounded), except qkv and atty where its attention is fp32.
static float *layer_qkv(const Model *m, int l) {
    return m->act.qkv + (m->qkv_bf16 ? 0 : (size_t)l) * 3 * saved_unit(&m->cfg, m->max_batch);
}
static float *layer_atty(const Model *m, int l) {
    return m->act.atty + (m->qkv_bf16 ? 0 : (size_t)l) * saved_unit(&m->cfg, m->max_batch);
}
static float *layer_fc(const Model *m, int l) {
    return m->act.fc + (m->params_bf16 ? 0 : (size_t)l) * 4 * saved_unit(&m->cfg, m->max_batch);
}

void model_free(Model *m) {
    xfree_aligned(m->params_bf16);
    xfree_aligned(m->inputs_bf16);
    xfree_aligned(m->grad_bf16);
    xfree_aligned(m->qkv_bf16);
    xfree_aligned(m->fc_bf16);
    xfree_aligned(m->params);
    xfree_aligned(m->grads);
    xfree_aligned(m->act_memory);
    xfree_aligned(m->scratch);
    param_pointers_free(&m->p);
    param_pointers_free(&m->g);
    memset(m, 0, sizeof *m);
}

void model_zero_grads(Model *m) { memset(m->grads, 0, m->num_params * sizeof(float)); }

// ---------------------------------------------------------------------------
// The matrix products in the model's precision: fp32 (util/blas.h), or bf16
// operands (util/gemm_bf16.h) with the weights' rounded copy at the same offset. In the
// bf16 model each product's input is rounded into its saved place (inp_bf16)
// by what makes it (the norms, the attention and GELU write it there as they
// go; the fp32 attention's output is rounded after), and the backward pass
// finds it there for the weight gradient.

static const uint16_t *rounded_weights(const Model *m, const float *W) { return m->params_bf16 + (W - m->params); }

// out = inp W^T, or out += it (add).
static void product_forward(const Model *m, float *out, const float *inp, uint16_t *inp_bf16, const float *W, int N,
                            int IC, int OC, bool add) {
    if (!m->params_bf16) matmul_forward(out, inp, W, N, IC, OC, add);
    else matmul_forward_bf16(out, inp_bf16, rounded_weights(m, W), N, IC, OC, add);
}

// The bf16 model's out_bf16 = bf16(inp W^T), for outputs it keeps only
// rounded: the product writes them so where its sums fit one block of k
// (C_bf16, util/gemm.h), else into fp32 (scratch of N x OC) to be rounded.
static void product_forward_rounded(const Model *m, uint16_t *out_bf16, float *fp32, const uint16_t *inp_bf16,
                                    const float *W, int N, int IC, int OC) {
    if (IC <= GEMM_BF16_BLOCK_K) {
        matmul_forward_bf16_rounded(out_bf16, inp_bf16, rounded_weights(m, W), N, IC, OC);
        return;
    }
    matmul_forward_bf16(fp32, inp_bf16, rounded_weights(m, W), N, IC, OC, false);
    round_to_bf16(out_bf16, fp32, (size_t)N * OC, m->threads);
}

// dinp = dout W, dW += dout^T inp. In the bf16 model dout NULL: the caller
// wrote it rounded into grad_bf16 already.
static void product_backward(const Model *m, float *dinp, float *dW, const float *dout, const float *inp,
                             const uint16_t *inp_bf16, const float *W, int N, int IC, int OC) {
    if (!m->params_bf16) matmul_backward(dinp, dW, dout, inp, W, N, IC, OC);
    else matmul_backward_bf16(dinp, dW, dout, inp_bf16, rounded_weights(m, W), m->grad_bf16, N, IC, OC, m->threads);
}

// ---------------------------------------------------------------------------
// Whole model

double model_forward(Model *m, const uint16_t *tokens, int batch) {
    const ModelConfig *cfg = &m->cfg;
    if (batch < 1 || batch > m->max_batch) die("internal: batch %d outside 1..%d", batch, m->max_batch);
    const int B = batch, T = cfg->seq_len, C = cfg->d_model, L = cfg->n_layer, V = cfg->vocab_size, NH = cfg->n_head;
    const int N = B * T, th = m->threads;
    const size_t BTC = (size_t)N * C, max_BT = (size_t)m->max_batch * T;
    const size_t stride_c = max_BT * C;  // per-layer stride of the activation arrays
    Activations *a = &m->act;
    for (int i = 0; i < N; i++)
        if (tokens[i] >= V) die("token %u at position %d is outside the %d-color palette", tokens[i], i, V);

    if (m->params_bf16) round_to_bf16(m->params_bf16, m->params, m->num_params, th);  // the weights as they are now
    encoder_forward(a->resid, tokens, &m->p, B, T, C, th);
    for (int l = 0; l < L; l++) {
        const LayerParams *lp = &m->p.layers[l];
        float *resid = a->resid + l * stride_c, *resid_next = a->resid + (l + 1) * stride_c;
        float *ln1 = a->ln1 + l * stride_c, *ln2 = a->ln2 + l * stride_c, *mid = a->resid_mid + l * stride_c;
        float *qkv = layer_qkv(m, l), *atty = layer_atty(m, l), *fc = layer_fc(m, l);
        float *lse = a->att_lse + (size_t)l * m->max_batch * NH * T;
        // The residual connections: each product added to a copy of its residual, which the norm before it
        // writes as it reads the rows.
        norm_forward_rounded(cfg->norm, ln1, saved_input(m, l, SAVED_LN1), a->ln1_mean + l * max_BT,
                             a->ln1_rstd + l * max_BT, resid, mid, lp->ln1_g, lp->ln1_b, N, C, th);
        // The bf16 attention takes q, k and v only rounded, kept for the backward pass.
        uint16_t *qkv_bf16 = layer_qkv_bf16(m, l);
        if (qkv_bf16) product_forward_rounded(m, qkv_bf16, qkv, saved_input(m, l, SAVED_LN1), lp->w_qkv, N, C, 3 * C);
        else product_forward(m, qkv, ln1, saved_input(m, l, SAVED_LN1), lp->w_qkv, N, C, 3 * C, false);
        // Its output goes only rounded where the next product takes it.
        uint16_t *atty_bf16 = qkv_bf16 ? saved_input(m, l, SAVED_ATTY) : NULL;
        attention_forward_bf16(atty_bf16 ? NULL : atty, atty_bf16, lse, qkv_bf16 ? NULL : qkv, qkv_bf16, m->scratch, B,
                               T, C, NH, th);
        if (m->params_bf16 && !atty_bf16) round_to_bf16(saved_input(m, l, SAVED_ATTY), atty, BTC, th);
        product_forward(m, mid, atty, saved_input(m, l, SAVED_ATTY), lp->w_attn_proj, N, C, C, true);
        norm_forward_rounded(cfg->norm, ln2, saved_input(m, l, SAVED_LN2), a->ln2_mean + l * max_BT,
                             a->ln2_rstd + l * max_BT, mid, resid_next, lp->ln2_g, lp->ln2_b, N, C, th);
        if (m->params_bf16) {  // fc and GELU's output kept only rounded
            uint16_t *fc_bf16 = layer_fc_bf16(m, l);
            product_forward_rounded(m, fc_bf16, fc, saved_input(m, l, SAVED_LN2), lp->w_fc, N, C, 4 * C);
            gelu_forward_bf16(saved_input(m, l, SAVED_FC_ACT), NULL, fc_bf16, (size_t)N * 4 * C, th);
        } else {
            product_forward(m, fc, ln2, NULL, lp->w_fc, N, C, 4 * C, false);
            gelu_forward(a->fc_act, fc, (size_t)N * 4 * C, th);
        }
        product_forward(m, resid_next, a->fc_act, saved_input(m, l, SAVED_FC_ACT), lp->w_fc_proj, N, 4 * C, C, true);
    }
    norm_forward_rounded(cfg->norm, a->lnf, saved_input(m, L, SAVED_LN1), a->lnf_mean, a->lnf_rstd,
                         a->resid + L * stride_c, NULL, m->p.lnf_g, m->p.lnf_b, N, C, th);
    product_forward(m, a->logits, a->lnf, saved_input(m, L, SAVED_LN1), m->p.w_head, N, C, V, false);
    return softmax_crossentropy_forward(a->logits, a->losses, tokens, N, V, th);
}

void model_backward(Model *m, const uint16_t *tokens, int batch, float loss_scale) {
    const ModelConfig *cfg = &m->cfg;
    const int B = batch, T = cfg->seq_len, C = cfg->d_model, L = cfg->n_layer, V = cfg->vocab_size, NH = cfg->n_head;
    const int N = B * T, th = m->threads;
    const size_t BTC = (size_t)N * C, max_BT = (size_t)m->max_batch * T, stride_c = max_BT * C;
    Activations *a = &m->act;
    // Scratch layout (see model_create).
    const size_t maxBTC = (size_t)m->max_batch * T * C;
    float *dresid = m->scratch, *dln = dresid + maxBTC, *datty = dln + maxBTC, *dqkv = datty + maxBTC;
    float *dfc = dqkv + 3 * maxBTC, *att_scratch = dfc + 4 * maxBTC;

    // The bf16 model writes the loss's gradient only rounded, where its products take it (grad_bf16; dout NULL).
    if (m->params_bf16) softmax_crossentropy_backward_bf16(m->grad_bf16, a->logits, tokens, N, V, loss_scale, th);
    else softmax_crossentropy_backward(a->logits, tokens, N, V, loss_scale, th);
    product_backward(m, dln, m->g.w_head, m->params_bf16 ? NULL : a->logits, a->lnf, saved_input(m, L, SAVED_LN1),
                     m->p.w_head, N, C, V);
    memset(dresid, 0, BTC * sizeof(float));
    // The bf16 model's norms write dresid also rounded (grad_bf16), for the product after them (dout NULL).
    uint16_t *dresid_bf16 = m->params_bf16 ? m->grad_bf16 : NULL;
    norm_backward_rounded(cfg->norm, dresid, dresid_bf16, m->g.lnf_g, m->g.lnf_b, dln, a->resid + L * stride_c,
                          a->lnf_mean, a->lnf_rstd, m->p.lnf_g, N, C, th);
    if (m->on_layer_grads) m->on_layer_grads(m->on_layer_grads_ctx, L);
    for (int l = L - 1; l >= 0; l--) {
        const LayerParams *lp = &m->p.layers[l];
        LayerParams *lg = &m->g.layers[l];
        float *resid = a->resid + l * stride_c, *ln1 = a->ln1 + l * stride_c, *ln2 = a->ln2 + l * stride_c;
        float *mid = a->resid_mid + l * stride_c, *qkv = layer_qkv(m, l), *atty = layer_atty(m, l);
        float *fc = layer_fc(m, l), *lse = a->att_lse + (size_t)l * m->max_batch * NH * T;
        // MLP: resid_next = mid + gelu(norm2(mid) W_fc^T) W_fc_proj^T; dresid holds d(resid_next) = d(mid) so far.
        if (m->params_bf16) {
            // The forward pass kept GELU's output rounded, for fc_proj's weight
            // gradient; GELU's gradient goes only rounded where fc's products take it.
            product_backward(m, dfc, lg->w_fc_proj, NULL, a->fc_act, saved_input(m, l, SAVED_FC_ACT), lp->w_fc_proj, N,
                             4 * C, C);
            gelu_backward_bf16(m->grad_bf16, NULL, layer_fc_bf16(m, l), dfc, (size_t)N * 4 * C, th);
            product_backward(m, dln, lg->w_fc, NULL, ln2, saved_input(m, l, SAVED_LN2), lp->w_fc, N, C, 4 * C);
        } else {  // d(GELU's output) first; then that output again and GELU's gradient in one sweep
            matmul_backward(dfc, NULL, dresid, NULL, lp->w_fc_proj, N, 4 * C, C);
            gelu_forward_backward(a->fc_act, dfc, fc, dfc, (size_t)N * 4 * C, th);
            matmul_backward(NULL, lg->w_fc_proj, dresid, a->fc_act, NULL, N, 4 * C, C);
            matmul_backward(dln, lg->w_fc, dfc, ln2, lp->w_fc, N, C, 4 * C);
        }
        norm_backward_rounded(cfg->norm, dresid, dresid_bf16, lg->ln2_g, lg->ln2_b, dln, mid, a->ln2_mean + l * max_BT,
                              a->ln2_rstd + l * max_BT, lp->ln2_g, N, C, th);
        // Attention: mid = resid + attn(norm1(resid)) W_proj^T; dresid now holds d(mid).
        product_backward(m, datty, lg->w_attn_proj, m->params_bf16 ? NULL : dresid, atty, saved_input(m, l, SAVED_ATTY),
                         lp->w_attn_proj, N, C, C);
        // With bf16 q, k and v the attention writes their gradients only rounded, where the product takes them.
        const uint16_t *qkv_bf16 = layer_qkv_bf16(m, l);
        uint16_t *dqkv_bf16 = qkv_bf16 ? m->grad_bf16 : NULL;
        const uint16_t *atty_bf16 = qkv_bf16 ? saved_input(m, l, SAVED_ATTY) : NULL;
        attention_backward_bf16(qkv_bf16 ? NULL : dqkv, dqkv_bf16, datty, atty_bf16 ? NULL : atty, atty_bf16,
                                qkv_bf16 ? NULL : qkv, qkv_bf16, lse, att_scratch, B, T, C, NH, th);
        product_backward(m, dln, lg->w_qkv, dqkv_bf16 ? NULL : dqkv, ln1, saved_input(m, l, SAVED_LN1), lp->w_qkv, N, C,
                         3 * C);
        // (Layer 0's d(resid) goes to the embeddings, fp32: not rounded.)
        norm_backward_rounded(cfg->norm, dresid, l > 0 ? dresid_bf16 : NULL, lg->ln1_g, lg->ln1_b, dln, resid,
                              a->ln1_mean + l * max_BT, a->ln1_rstd + l * max_BT, lp->ln1_g, N, C, th);
        if (m->on_layer_grads) m->on_layer_grads(m->on_layer_grads_ctx, l);
    }
    encoder_backward(&m->g, dresid, tokens, B, T, C, th);
    if (m->on_layer_grads) m->on_layer_grads(m->on_layer_grads_ctx, -1);
}

void model_features(const Model *m, int batch, float *features) {
    const int T = m->cfg.seq_len, C = m->cfg.d_model, L = m->cfg.n_layer;
    const size_t stride_c = (size_t)m->max_batch * T * C;
#pragma omp parallel for collapse(2) num_threads(m->threads)
    for (int b = 0; b < batch; b++)
        for (int l = 0; l <= L; l++) {
            const float *src = (l < L ? m->act.ln1 + l * stride_c : m->act.lnf) + (size_t)b * T * C;
            float *f = features + ((size_t)b * (L + 1) + l) * C;
            for (int c = 0; c < C; c++) f[c] = 0.0f;
            for (int t = 0; t < T; t++)
                for (int c = 0; c < C; c++) f[c] += src[(size_t)t * C + c];
            for (int c = 0; c < C; c++) f[c] /= (float)T;
        }
}
