// The iGPT model (docs/model.md): configuration, parameter layout, and the
// fp32 CPU reference implementation of its forward and backward passes.
//
// Memory: parameters, gradients, Adam moments and activations each live in
// one contiguous buffer. The parameter layout (param_tensors) is shared by
// every backend and by the checkpoint format.
#ifndef IGPT_MODEL_H
#define IGPT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { NORM_IGPT = 0, NORM_LAYERNORM = 1 } NormKind;

typedef struct {
    int vocab_size;  // V: palette colors
    int seq_len;     // T: image height * width
    int image_height, image_width;
    int d_model;  // C
    int n_layer;  // L
    int n_head;   // NH
    NormKind norm;
} ModelConfig;

#define IGPT_NORM_EPS 1e-5f

// Fills d_model, n_layer, n_head for a named config (tiny, xs, s, m, l);
// returns false for an unknown name.
bool model_config_named(const char *name, ModelConfig *cfg);
// Checks every field (C divisible by NH, sizes in range); dies with a message.
void model_config_validate(const ModelConfig *cfg);
const char *norm_kind_name(NormKind kind);

// --- Parameter layout ----------------------------------------------------------

typedef enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS } InitKind;

// One tensor of the parameter buffer, in layout order.
typedef struct {
    char name[32];   // e.g. "h3.w_qkv"
    int layer;       // -1 embeddings, 0..L-1 blocks, L final norm and head
    size_t offset;   // in floats from the start of the buffer
    size_t count;
    int rows, cols;  // cols = 1 for vectors
    InitKind init;
    float init_std;
    bool decay;  // weight decay applies (matrices only)
} TensorInfo;

// Number of tensors; fills `out` (if not NULL) with up to that many entries.
int param_tensors(const ModelConfig *cfg, TensorInfo *out);
size_t param_count(const ModelConfig *cfg);
// [begin, end) of layer l's slice of the buffer (l = -1: embeddings, l = L: final).
void layer_param_range(const ModelConfig *cfg, int layer, size_t *begin, size_t *end);

// Pointers into a parameter (or gradient) buffer.
typedef struct {
    float *ln1_g, *ln1_b, *w_qkv, *w_attn_proj, *ln2_g, *ln2_b, *w_fc, *w_fc_proj;
} LayerParams;
typedef struct {
    float *wte, *wpe, *sos;
    LayerParams *layers;  // n_layer entries (owned)
    float *lnf_g, *lnf_b, *w_head;
} ParamPointers;
void param_pointers(const ModelConfig *cfg, float *base, ParamPointers *out);
void param_pointers_free(ParamPointers *p);

// Seeded initialisation as in docs/model.md.
void model_init_params(const ModelConfig *cfg, float *params, uint64_t seed);

// --- The CPU model -------------------------------------------------------------

// Activations saved by the forward pass for the backward pass, for a batch
// of up to max_batch sequences; one buffer, pointers into it.
typedef struct {
    float *resid;      // (L+1) x B x T x C: input of block l at index l; index L = output of the last block
    float *ln1;        // L x B x T x C
    float *ln1_mean;   // L x B x T (LayerNorm only)
    float *ln1_rstd;   // L x B x T
    float *qkv;        // L x B x T x 3C
    float *atty;       // L x B x T x C: attention output before the projection
    float *att_lse;    // L x B x NH x T: log-sum-exp of each attention row (recomputation in backward)
    float *resid_mid;  // L x B x T x C: h + attention
    float *ln2;        // L x B x T x C
    float *ln2_mean;   // L x B x T
    float *ln2_rstd;   // L x B x T
    float *fc;         // L x B x T x 4C: before GELU (GELU is recomputed in backward)
    float *fc_act;     // B x T x 4C: GELU output of the layer being computed (scratch)
    float *lnf;        // B x T x C
    float *lnf_mean;   // B x T
    float *lnf_rstd;   // B x T
    float *logits;     // B x T x V; after a forward with targets: softmax probabilities
    float *losses;     // B x T
} Activations;

typedef struct {
    ModelConfig cfg;
    size_t num_params;
    float *params, *grads;  // num_params each
    ParamPointers p, g;
    int max_batch;
    Activations act;
    float *act_memory;
    size_t act_floats;
    float *scratch;  // backward scratch, see model.c
    size_t scratch_floats;
    int threads;
    // Called by model_backward as soon as a layer's gradients are final
    // (layer L = final norm and head first, then blocks L-1..0, then -1 = the
    // embeddings), so that data-parallel training can start summing them
    // across processes while the backward pass goes on. NULL: not called.
    void (*on_layer_grads)(void *ctx, int layer);
    void *on_layer_grads_ctx;
} Model;

// Allocates buffers for batches of up to max_batch sequences. Parameters
// are left uninitialised: call model_init_params or load a checkpoint.
void model_create(Model *m, const ModelConfig *cfg, int max_batch, int threads);
void model_free(Model *m);
// Bytes of activations and scratch model_create allocates for max_batch.
size_t model_activation_bytes(const ModelConfig *cfg, int max_batch, int threads);

// Forward pass over tokens (B x T). Returns the mean cross-entropy in nats
// per token, and keeps what backward needs.
double model_forward(Model *m, const uint16_t *tokens, int batch);
// Adds d(loss_scale * sum of per-token losses)/d(params) into m->grads;
// loss_scale = 1 / (tokens in the whole optimizer step) gives the gradient
// of the mean loss. Call right after model_forward on the same batch.
void model_backward(Model *m, const uint16_t *tokens, int batch, float loss_scale);
void model_zero_grads(Model *m);
// Probe features of the last forward pass: features[b][l][c] for l = 0..L,
// B x (L+1) x C (docs/model.md).
void model_features(const Model *m, int batch, float *features);

#endif
