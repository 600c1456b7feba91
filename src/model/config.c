// Named configurations and the checks every model goes through before any
// buffer is sized from it.
#include "model/config.h"

#include <stdio.h>
#include <string.h>

#include "util/util.h"

typedef struct {
    const char *name;
    int d_model, n_layer, n_head;
} NamedConfig;

// s, m and l are the iGPT-S, -M and -L the paper released (width, depth and
// heads of openai/image-gpt's README; their context is 32x32 pixels, set by
// the data as every image size is).
static const NamedConfig named_configs[] = {
    {"tiny", 64, 2, 4}, {"xs", 256, 12, 8}, {"s", 512, 24, 8}, {"m", 1024, 36, 8}, {"l", 1536, 48, 16},
};

bool model_config_named(const char *name, ModelConfig *cfg) {
    for (size_t i = 0; i < sizeof named_configs / sizeof named_configs[0]; i++) {
        if (strcmp(name, named_configs[i].name) != 0) continue;
        cfg->d_model = named_configs[i].d_model;
        cfg->n_layer = named_configs[i].n_layer;
        cfg->n_head = named_configs[i].n_head;
        return true;
    }
    return false;
}

const char *model_config_name(const ModelConfig *cfg) {
    for (size_t i = 0; i < sizeof named_configs / sizeof named_configs[0]; i++)
        if (cfg->d_model == named_configs[i].d_model && cfg->n_layer == named_configs[i].n_layer &&
            cfg->n_head == named_configs[i].n_head)
            return named_configs[i].name;
    return NULL;
}

const char *model_config_paper_name(const char *config_name) {
    return !strcmp(config_name, "s")   ? " (the paper's iGPT-S)"
           : !strcmp(config_name, "m") ? " (the paper's iGPT-M)"
           : !strcmp(config_name, "l") ? " (the paper's iGPT-L)"
                                       : "";
}

const char *norm_kind_name(NormKind kind) { return kind == NORM_LAYERNORM ? "layernorm" : "igpt"; }

// What is wrong with a config, in `buf` (NULL when nothing is): the bounds of
// the command line hold for configs read from files too, and are checked
// before any size is computed from them.
const char *model_config_problem(const ModelConfig *c, char *buf, size_t cap) {
    if (c->vocab_size < 2 || c->vocab_size > 65536)
        snprintf(buf, cap, "vocab_size %d out of range 2..65536", c->vocab_size);
    else if (c->image_height < 1 || c->image_height > MODEL_MAX_IMAGE_SIDE || c->image_width < 1 ||
             c->image_width > MODEL_MAX_IMAGE_SIDE)
        snprintf(buf, cap, "image %d x %d out of range 1..%d", c->image_height, c->image_width, MODEL_MAX_IMAGE_SIDE);
    else if (c->seq_len < 2 || c->seq_len != c->image_height * c->image_width)
        snprintf(buf, cap, "seq_len %d must be image height x width (%d x %d)", c->seq_len, c->image_height,
                 c->image_width);
    else if (c->d_model < 1 || c->d_model > MODEL_MAX_D_MODEL)
        snprintf(buf, cap, "d_model %d out of range 1..%d", c->d_model, MODEL_MAX_D_MODEL);
    else if (c->n_layer < 1 || c->n_layer > MODEL_MAX_LAYERS)
        snprintf(buf, cap, "n_layer %d out of range 1..%d", c->n_layer, MODEL_MAX_LAYERS);
    else if (c->n_head < 1 || c->n_head > MODEL_MAX_HEADS)
        snprintf(buf, cap, "n_head %d out of range 1..%d", c->n_head, MODEL_MAX_HEADS);
    else if (c->d_model % c->n_head != 0)
        snprintf(buf, cap, "d_model %d is not divisible by n_head %d", c->d_model, c->n_head);
    else if (c->norm != NORM_IGPT && c->norm != NORM_LAYERNORM)
        snprintf(buf, cap, "unknown norm kind %d", (int)c->norm);
    else return NULL;
    return buf;
}

void model_config_validate(const ModelConfig *c) {
    char problem[160];
    if (model_config_problem(c, problem, sizeof problem)) die("model: %s", problem);
}
