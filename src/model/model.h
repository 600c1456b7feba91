// The fp32 CPU reference of the iGPT model (docs/model.md): its forward and
// backward passes over a configuration (model/config.h) and the shared
// parameter layout (model/params.h).
//
// Memory: parameters, gradients and activations each live in one contiguous
// buffer, with pointers into it.
#ifndef IGPT_MODEL_H
#define IGPT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/params.h"

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
    // bf16 products (model_use_bf16_products, --device cpu --precision bf16):
    // the matrix products take bf16-rounded operands, as on the GPU; every
    // other operation, the master weights and the gradients stay fp32. NULL:
    // the fp32 reference.
    uint16_t *params_bf16;  // num_params: params rounded, anew by each forward pass
    // The products' inputs as the forward pass rounded them, kept for the
    // weight gradients: per layer ln1, atty, ln2 (max_batch x T x C each) and
    // fc_act (x 4C), then lnf (model.c, saved_input).
    uint16_t *inputs_bf16;
    uint16_t *grad_bf16;  // scratch: an output gradient rounded, max_batch x T x max(4C, V)
    // Each layer's qkv rounded, what the attention's bf16 products take (L x
    // max_batch x T x 3C), kept from the forward pass for the backward;
    // NULL where attention_bf16_fits is false (fp32 attention).
    uint16_t *qkv_bf16;
    // Each layer's fc (GELU's input) rounded, L x max_batch x T x 4C: the
    // bf16 model keeps it only so, as the GPU's does.
    uint16_t *fc_bf16;
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
// Bytes of fp32 activations and scratch for max_batch: model_create's, or,
// bf16, what is left of them after model_use_bf16_products.
size_t model_activation_bytes(const ModelConfig *cfg, int max_batch, int threads, bool bf16);

// From now on the matrix products run in bf16 (util/gemm_bf16.h: the caller
// checks gemm_bf16_unavailable first); model_free frees what this allocates.
// Before the first forward pass: the fp32 activations are laid out anew.
void model_use_bf16_products(Model *m);
// Bytes of the bf16 buffers model_use_bf16_products allocates.
size_t model_bf16_bytes(const ModelConfig *cfg, int max_batch);

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
