// The parameter layout (params.h). add_tensor is the only place that decides
// the order of the buffer; counting, offsets, per-layer ranges, named
// pointers and initialisation all walk the same list.
#include "model/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

// layer: -1 embeddings, 0..L-1 blocks (names "h<l>.<tensor>"), L final tensors.
static void add_tensor(TensorInfo *out, int *n, size_t *offset, const char *name, int layer, int n_layer, int rows,
                       int cols, InitKind init, float std, bool decay) {
    if (out) {
        TensorInfo *t = &out[*n];
        if (layer >= 0 && layer < n_layer) snprintf(t->name, sizeof t->name, "h%d.%s", layer, name);
        else snprintf(t->name, sizeof t->name, "%s", name);
        t->layer = layer;
        t->offset = *offset;
        t->count = (size_t)rows * (size_t)cols;
        t->rows = rows;
        t->cols = cols;
        t->init = init;
        t->init_std = std;
        t->decay = decay;
    }
    *offset += (size_t)rows * (size_t)cols;
    (*n)++;
}

int param_tensors(const ModelConfig *cfg, TensorInfo *out) {
    const int V = cfg->vocab_size, T = cfg->seq_len, C = cfg->d_model, L = cfg->n_layer;
    const bool ln = cfg->norm == NORM_LAYERNORM;
    int n = 0;
    size_t off = 0;
    add_tensor(out, &n, &off, "wte", -1, L, V, C, INIT_NORMAL, 0.02f, true);
    add_tensor(out, &n, &off, "wpe", -1, L, T, C, INIT_NORMAL, 0.01f, true);
    add_tensor(out, &n, &off, "sos", -1, L, C, 1, INIT_NORMAL, 0.02f, false);
    for (int l = 0; l < L; l++) {
        add_tensor(out, &n, &off, "ln1_g", l, L, C, 1, INIT_ONES, 0, false);
        if (ln) add_tensor(out, &n, &off, "ln1_b", l, L, C, 1, INIT_ZEROS, 0, false);
        add_tensor(out, &n, &off, "w_qkv", l, L, 3 * C, C, INIT_NORMAL, 1.0f / sqrtf((float)C), true);
        add_tensor(out, &n, &off, "w_attn_proj", l, L, C, C, INIT_NORMAL, 1.0f / sqrtf((float)C * (float)L), true);
        add_tensor(out, &n, &off, "ln2_g", l, L, C, 1, INIT_ONES, 0, false);
        if (ln) add_tensor(out, &n, &off, "ln2_b", l, L, C, 1, INIT_ZEROS, 0, false);
        add_tensor(out, &n, &off, "w_fc", l, L, 4 * C, C, INIT_NORMAL, 0.02f, true);
        add_tensor(out, &n, &off, "w_fc_proj", l, L, C, 4 * C, INIT_NORMAL, 0.02f, true);
    }
    add_tensor(out, &n, &off, "lnf_g", L, L, C, 1, INIT_ONES, 0, false);
    if (ln) add_tensor(out, &n, &off, "lnf_b", L, L, C, 1, INIT_ZEROS, 0, false);
    add_tensor(out, &n, &off, "w_head", L, L, V, C, INIT_ZEROS, 0, true);
    return n;
}

static TensorInfo *tensor_table(const ModelConfig *cfg, int *n) {
    *n = param_tensors(cfg, NULL);
    TensorInfo *t = xcalloc((size_t)*n, sizeof *t);
    param_tensors(cfg, t);
    return t;
}

size_t param_count(const ModelConfig *cfg) {
    int n;
    TensorInfo *t = tensor_table(cfg, &n);
    size_t total = t[n - 1].offset + t[n - 1].count;
    free(t);
    return total;
}

void layer_param_range(const ModelConfig *cfg, int layer, size_t *begin, size_t *end) {
    int n;
    TensorInfo *t = tensor_table(cfg, &n);
    *begin = SIZE_MAX;
    *end = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].layer != layer) continue;
        if (t[i].offset < *begin) *begin = t[i].offset;
        if (t[i].offset + t[i].count > *end) *end = t[i].offset + t[i].count;
    }
    free(t);
}

void param_pointers(const ModelConfig *cfg, float *base, ParamPointers *p) {
    memset(p, 0, sizeof *p);
    p->layers = xcalloc((size_t)cfg->n_layer, sizeof(LayerParams));
    int n;
    TensorInfo *t = tensor_table(cfg, &n);
    for (int i = 0; i < n; i++) {
        float *ptr = base + t[i].offset;
        const bool in_block = t[i].layer >= 0 && t[i].layer < cfg->n_layer;
        const char *name = in_block ? strchr(t[i].name, '.') + 1 : t[i].name;
        if (in_block) {
            LayerParams *lp = &p->layers[t[i].layer];
            if (!strcmp(name, "ln1_g")) lp->ln1_g = ptr;
            else if (!strcmp(name, "ln1_b")) lp->ln1_b = ptr;
            else if (!strcmp(name, "w_qkv")) lp->w_qkv = ptr;
            else if (!strcmp(name, "w_attn_proj")) lp->w_attn_proj = ptr;
            else if (!strcmp(name, "ln2_g")) lp->ln2_g = ptr;
            else if (!strcmp(name, "ln2_b")) lp->ln2_b = ptr;
            else if (!strcmp(name, "w_fc")) lp->w_fc = ptr;
            else if (!strcmp(name, "w_fc_proj")) lp->w_fc_proj = ptr;
        } else if (!strcmp(name, "wte")) p->wte = ptr;
        else if (!strcmp(name, "wpe")) p->wpe = ptr;
        else if (!strcmp(name, "sos")) p->sos = ptr;
        else if (!strcmp(name, "lnf_g")) p->lnf_g = ptr;
        else if (!strcmp(name, "lnf_b")) p->lnf_b = ptr;
        else if (!strcmp(name, "w_head")) p->w_head = ptr;
    }
    free(t);
}

void param_pointers_free(ParamPointers *p) {
    free(p->layers);
    p->layers = NULL;
}

void model_init_params(const ModelConfig *cfg, float *params, uint64_t seed) {
    int n;
    TensorInfo *t = tensor_table(cfg, &n);
    Rng rng;
    rng_init(&rng, seed, 0x696e6974ull /* "init" */);
    for (int i = 0; i < n; i++) {
        float *p = params + t[i].offset;
        for (size_t j = 0; j < t[i].count; j++)
            p[j] = t[i].init == INIT_ONES    ? 1.0f
                   : t[i].init == INIT_ZEROS ? 0.0f
                                             : t[i].init_std * (float)rng_normal(&rng);
    }
    free(t);
}
