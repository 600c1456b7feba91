// The model's configuration (docs/model.md, "Configuration"): the one
// description of a model that the CPU reference, the GPU backend, the
// checkpoint format and the command line share.
#ifndef IGPT_MODEL_CONFIG_H
#define IGPT_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

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
// The largest models igpt builds, from the command line or from a file (a
// checkpoint header is user input: without bounds a 256-byte header could
// ask for any amount of memory). The image side matches the prepare stage's
// IGPT_MAX_RESOLUTION (checked there at compile time).
#define MODEL_MAX_D_MODEL 65536
#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_HEADS 1024
#define MODEL_MAX_IMAGE_SIDE 256

// Fills d_model, n_layer, n_head for a named config (tiny, xs, s, m, l);
// returns false for an unknown name.
bool model_config_named(const char *name, ModelConfig *cfg);
// The name of the named config with cfg's d_model, n_layer and n_head ("s"
// for the paper's iGPT-S), or NULL.
const char *model_config_name(const ModelConfig *cfg);
// " (the paper's iGPT-S)" for the config named "s", likewise m and l; "" otherwise.
const char *model_config_paper_name(const char *config_name);
// Checks every field (C divisible by NH, sizes in range); dies with a message.
void model_config_validate(const ModelConfig *cfg);
// What is wrong with cfg, written into buf; NULL when nothing is.
const char *model_config_problem(const ModelConfig *cfg, char *buf, size_t cap);
const char *norm_kind_name(NormKind kind);

#endif
