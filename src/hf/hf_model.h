// Hugging Face ImageGPT models in and out (docs/formats.md, "Hugging Face
// ImageGPT folders"): the released iGPT-S/M/L, as transformers ports them,
// become igpt checkpoints, and igpt runs become folders that
// ImageGPTForCausalImageModeling.from_pretrained loads.
//
// A folder holds config.json (the sizes), model.safetensors (the weights) and
// preprocessor_config.json (the image processor: "clusters", the palette as
// colors in [-1, 1]). The two layouts hold the same model (docs/model.md):
// - transformers folds the start-of-sequence vector into the embedding
//   table: wte has V + 1 rows and the last is our `sos`;
// - its attention and MLP are Conv1D layers, weights stored [in, out], the
//   transpose of our [out, in], each with a bias. The released models have
//   no biases (their TensorFlow originals define none, so the port's stay at
//   zero), and igpt has none: import refuses non-zero ones;
// - the norms are weight-only (ImageGPTLayerNorm is our iGPT norm), the
//   activation is quick_gelu (our x sigmoid(1.702 x)), and lm_head is an
//   untied V x C matrix, our w_head.
#ifndef IGPT_HF_MODEL_H
#define IGPT_HF_MODEL_H

#include "data/palette.h"
#include "model/config.h"

// Reads and checks a folder; *params (allocated, our layout, param_count
// floats) and *palette are filled. Dies naming the file and what is wrong:
// a missing file, a config igpt cannot represent, a missing, misshapen,
// unknown or non-finite tensor, a non-zero bias, clusters that do not match
// the vocabulary. `note` (if not NULL) gets a line about the palette's
// rounding to 8-bit colors.
void hf_import(const char *dir, ModelConfig *cfg, float **params, Palette *palette, char *note, size_t note_cap);

// Writes config.json, model.safetensors and preprocessor_config.json into
// `dir` (created if needed; existing files are never replaced: dies first).
// Dies for a model the layout cannot hold (LayerNorm with biases).
void hf_export(const char *dir, const ModelConfig *cfg, const float *params, const Palette *palette);

// The name of each of our tensors in the Hugging Face layout, e.g.
// "transformer.h.3.attn.c_attn.weight" for "h3.w_qkv" (transposed: *conv set);
// "wte" and "sos" both map to "transformer.wte.weight". NULL for a tensor the
// layout has no place for (LayerNorm biases).
const char *hf_tensor_name(const char *our_name, int n_layer, char *buf, size_t cap, bool *conv);

#endif
