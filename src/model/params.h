// The parameters (docs/model.md, "Parameter layout"): one contiguous fp32
// buffer whose order is defined here, once, for every backend, the
// checkpoint format and data parallelism (each layer's tensors are one slice,
// so a layer's gradients can be summed across processes as soon as they are
// final); pointers into it by name; the seeded initialisation.
#ifndef IGPT_MODEL_PARAMS_H
#define IGPT_MODEL_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"

typedef enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS } InitKind;

// One tensor of the parameter buffer, in layout order.
typedef struct {
    char name[32];  // e.g. "h3.w_qkv"
    int layer;      // -1 embeddings, 0..L-1 blocks, L final norm and head
    size_t offset;  // in floats from the start of the buffer
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

#endif
