// Hugging Face ImageGPT folders <-> igpt parameters (hf_model.h). One table,
// hf_tensor_name, says where each of our tensors lives in the other layout;
// import and export both walk our parameter list (model/params.h) through it.
#include "hf/hf_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf/safetensors.h"
#include "model/params.h"
#include "util/json.h"
#include "util/util.h"

// Our tensors inside block l and their names in transformers' ImageGPTBlock;
// `conv`: a Conv1D weight, stored transposed and with a bias beside it.
static const struct {
    const char *ours, *theirs;
    bool conv;
} block_names[] = {
    {"ln1_g", "ln_1.weight", false}, {"w_qkv", "attn.c_attn", true}, {"w_attn_proj", "attn.c_proj", true},
    {"ln2_g", "ln_2.weight", false}, {"w_fc", "mlp.c_fc", true},     {"w_fc_proj", "mlp.c_proj", true},
};

const char *hf_tensor_name(const char *our_name, int n_layer, char *buf, size_t cap, bool *conv) {
    *conv = false;
    int layer;
    int consumed = 0;
    if (sscanf(our_name, "h%d.%n", &layer, &consumed) == 1 && consumed > 0 && layer >= 0 && layer < n_layer) {
        for (size_t i = 0; i < sizeof block_names / sizeof block_names[0]; i++) {
            if (strcmp(our_name + consumed, block_names[i].ours) != 0) continue;
            *conv = block_names[i].conv;
            snprintf(buf, cap, "transformer.h.%d.%s%s", layer, block_names[i].theirs, *conv ? ".weight" : "");
            return buf;
        }
        return NULL;
    }
    const char *name = !strcmp(our_name, "wte") || !strcmp(our_name, "sos") ? "transformer.wte.weight"
                       : !strcmp(our_name, "wpe")                           ? "transformer.wpe.weight"
                       : !strcmp(our_name, "lnf_g")                         ? "transformer.ln_f.weight"
                       : !strcmp(our_name, "w_head")                        ? "lm_head.weight"
                                                                            : NULL;
    if (!name) return NULL;
    snprintf(buf, cap, "%s", name);
    return buf;
}

// ---------------------------------------------------------------------------
// config.json

#ifndef IGPT_NO_CJSON

static const cJSON *config_member(const cJSON *json, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, key);
    if (!v) die("%s: no \"%s\"", path, key);
    return v;
}

static int config_int(const cJSON *json, const char *key, const char *path) {
    const cJSON *v = config_member(json, key, path);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 || v->valuedouble > 1e9)
        die("%s: \"%s\" must be a positive integer", path, key);
    return (int)v->valuedouble;
}

// A setting igpt's model has one value of: absent means transformers' default.
static void config_require_bool(const cJSON *json, const char *key, bool wanted, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, key);
    if (!v) return;
    if (!cJSON_IsBool(v)) die("%s: \"%s\" must be true or false", path, key);
    if (cJSON_IsTrue(v) != wanted)
        die("%s: \"%s\": %s, igpt's model needs %s", path, key, wanted ? "false" : "true", wanted ? "true" : "false");
}

// The sizes of the model, and refusals of every setting that would make it
// another model than igpt's (docs/formats.md lists them).
static void read_config(const char *path, ModelConfig *cfg) {
    cJSON *json = json_read_file(path);
    if (!json) die("%s: missing or not valid JSON", path);
    if (!cJSON_IsObject(json)) die("%s: not a JSON object", path);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(json, "model_type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "imagegpt") != 0)
        die("%s: \"model_type\" is not \"imagegpt\": not an ImageGPT model", path);
    memset(cfg, 0, sizeof *cfg);
    cfg->norm = NORM_IGPT;
    cfg->vocab_size = config_int(json, "vocab_size", path) - 1;  // the last id is the start token
    cfg->seq_len = config_int(json, "n_positions", path);
    cfg->d_model = config_int(json, "n_embd", path);
    cfg->n_layer = config_int(json, "n_layer", path);
    cfg->n_head = config_int(json, "n_head", path);
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(json, "n_inner");
    if (inner && !cJSON_IsNull(inner) && (!cJSON_IsNumber(inner) || inner->valuedouble != 4.0 * cfg->d_model))
        die("%s: \"n_inner\" must be null or 4 x n_embd (%d): igpt's MLP is 4 times as wide", path, 4 * cfg->d_model);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(json, "activation_function");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "quick_gelu") != 0))
        die("%s: \"activation_function\" must be \"quick_gelu\" (x sigmoid(1.702 x), igpt's and iGPT's)", path);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(json, "layer_norm_epsilon");
    if (eps && (!cJSON_IsNumber(eps) || (float)eps->valuedouble != IGPT_NORM_EPS))
        die("%s: \"layer_norm_epsilon\" must be 1e-5, igpt's", path);
    config_require_bool(json, "scale_attn_weights", true, path);
    config_require_bool(json, "scale_attn_by_inverse_layer_idx", false, path);
    config_require_bool(json, "add_cross_attention", false, path);
    config_require_bool(json, "tie_word_embeddings", false, path);
    cJSON_Delete(json);
}

// ---------------------------------------------------------------------------
// preprocessor_config.json: the palette and the image size

static void read_image_size(const cJSON *json, const char *path, ModelConfig *cfg) {
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(json, "size");
    if (cJSON_IsNumber(size)) {  // older processors: one side
        cfg->image_height = cfg->image_width = config_int(json, "size", path);
    } else if (cJSON_IsObject(size)) {
        cfg->image_height = config_int(size, "height", path);
        cfg->image_width = config_int(size, "width", path);
    } else {
        die("%s: no \"size\" (the image side)", path);
    }
    if ((long long)cfg->image_height * cfg->image_width != cfg->seq_len)
        die("%s: images of %d x %d pixels, but the model's context (n_positions) is %d", path, cfg->image_height,
            cfg->image_width, cfg->seq_len);
}

// Clusters are colors c in [-1, 1] (pixel / 127.5 - 1). igpt keeps them as
// exact centers, (c + 1) x 127.5 in pixel units, so that prepare gives each
// pixel the color id transformers' image processor gives it (rounded to 8-bit
// colors, a few percent of CIFAR-10's pixels would change color id); clusters
// that are 8-bit colors exactly make an ordinary palette. Returns whether
// centers were kept.
static bool read_clusters(const cJSON *json, const char *path, int colors, Palette *palette) {
    const cJSON *clusters = cJSON_GetObjectItemCaseSensitive(json, "clusters");
    if (!cJSON_IsArray(clusters)) die("%s: no \"clusters\" (the palette, colors in [-1, 1])", path);
    const int n = cJSON_GetArraySize(clusters);
    if (n != colors) die("%s: %d clusters, but the model has %d colors (vocab_size - 1)", path, n, colors);
    float *centers = xmalloc((size_t)colors * 3 * sizeof(float));
    bool all_8bit = true;
    int k = 0;
    const cJSON *color;
    cJSON_ArrayForEach(color, clusters) {
        if (!cJSON_IsArray(color) || cJSON_GetArraySize(color) != 3) die("%s: cluster %d is not 3 numbers", path, k);
        for (int ch = 0; ch < 3; ch++) {
            const cJSON *v = cJSON_GetArrayItem(color, ch);
            if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= 1.0 + 1e-6))
                die("%s: cluster %d has a value outside [-1, 1]", path, k);
            const double pixel = fmin(255.0, fmax(0.0, (v->valuedouble + 1.0) * 127.5));
            centers[3 * k + ch] = (float)pixel;
            all_8bit = all_8bit && fabs(pixel - round(pixel)) < 1e-4;
        }
        k++;
    }
    palette_alloc(palette, colors);
    if (all_8bit)
        for (int i = 0; i < 3 * colors; i++) palette->rgb[i] = (uint8_t)lroundf(centers[i]);
    else palette_set_centers(palette, centers);
    free(centers);
    return !all_8bit;
}

static void read_processor(const char *path, ModelConfig *cfg, Palette *palette, char *note, size_t note_cap) {
    cJSON *json = json_read_file(path);
    if (!json) die("%s: missing or not valid JSON (the image processor: its clusters are the palette)", path);
    if (!cJSON_IsObject(json)) die("%s: not a JSON object", path);
    read_image_size(json, path, cfg);
    const bool exact = read_clusters(json, path, cfg->vocab_size, palette);
    cJSON_Delete(json);
    if (note && exact)
        snprintf(note, note_cap,
                 "the %d clusters kept exactly (palette.bin version 2: prepare quantizes with them; "
                 "its pictures show them rounded to 8-bit colors)",
                 cfg->vocab_size);
    else if (note) snprintf(note, note_cap, "the %d clusters are 8-bit colors exactly", cfg->vocab_size);
}

// ---------------------------------------------------------------------------
// Weights

static void expect_shape(const SafeTensors *st, const SafeTensor *t, int ndim, int64_t d0, int64_t d1) {
    bool ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (ok) return;
    char got[96] = "";
    for (int i = 0; i < t->ndim && strlen(got) < 64; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? " x " : "", (long long)t->shape[i]);
    if (ndim == 1) die("%s: %s is [%s], expected [%lld]", st->path, t->name, got, (long long)d0);
    die("%s: %s is [%s], expected [%lld x %lld]", st->path, t->name, got, (long long)d0, (long long)d1);
}

static const SafeTensor *find_tensor(const SafeTensors *st, const char *name, bool *used) {
    const SafeTensor *t = safetensors_find(st, name);
    if (!t)
        die("%s: no tensor %s%s", st->path, name,
            !strcmp(name, "lm_head.weight") ? " (a base ImageGPTModel: the next-pixel head is missing)" : "");
    used[t - st->tensors] = true;
    return t;
}

// A Conv1D's bias must be zero: igpt's model has none.
static void check_zero_bias(const SafeTensors *st, const char *weight_name, int64_t count, bool *used) {
    char name[128];
    snprintf(name, sizeof name, "%.*s.bias", (int)(strlen(weight_name) - strlen(".weight")), weight_name);
    const SafeTensor *b = find_tensor(st, name, used);
    expect_shape(st, b, 1, count, 0);
    float *v = xmalloc((size_t)count * sizeof(float));
    safetensors_read_f32(st, b, v);
    for (int64_t i = 0; i < count; i++)
        if (v[i] != 0.0f)
            die("%s: %s[%lld] is %g: igpt's model has no biases (nor have the released iGPT models), so it "
                "cannot hold this one",
                st->path, name, (long long)i, (double)v[i]);
    free(v);
}

// Our tensor `t` from the file: wte and sos from the rows of one table,
// Conv1D weights transposed.
static void import_tensor(const SafeTensors *st, const ModelConfig *cfg, const TensorInfo *t, float *dst, bool *used) {
    char name[128];
    bool conv;
    if (!hf_tensor_name(t->name, cfg->n_layer, name, sizeof name, &conv))
        die("internal: %s has no Hugging Face name", t->name);
    const SafeTensor *src = find_tensor(st, name, used);
    const bool sos = !strcmp(t->name, "sos");
    if (sos || !strcmp(t->name, "wte")) {
        const int64_t C = cfg->d_model, V = cfg->vocab_size;
        expect_shape(st, src, 2, V + 1, C);
        float *table = xmalloc((size_t)((V + 1) * C) * sizeof(float));
        safetensors_read_f32(st, src, table);
        memcpy(dst, table + (sos ? V * C : 0), t->count * sizeof(float));
        free(table);
    } else if (conv) {
        expect_shape(st, src, 2, t->cols, t->rows);  // [in, out]
        float *w = xmalloc(t->count * sizeof(float));
        safetensors_read_f32(st, src, w);
        for (int r = 0; r < t->rows; r++)
            for (int c = 0; c < t->cols; c++) dst[(size_t)r * t->cols + c] = w[(size_t)c * t->rows + r];
        free(w);
        check_zero_bias(st, name, t->rows, used);
    } else {
        if (t->cols == 1) expect_shape(st, src, 1, t->rows, 0);
        else expect_shape(st, src, 2, t->rows, t->cols);
        safetensors_read_f32(st, src, dst);
    }
}

// The causal masks that older transformers saved with each attention layer
// (buffers, not weights): allowed, and left unread.
static bool is_mask_buffer(const char *name) {
    int layer;
    int end = 0;
    if (sscanf(name, "transformer.h.%d.attn.%n", &layer, &end) != 1 || end == 0) return false;
    return !strcmp(name + end, "bias") || !strcmp(name + end, "masked_bias");
}

static void import_weights(const SafeTensors *st, const ModelConfig *cfg, float *params) {
    bool *used = xcalloc((size_t)st->n + 1, sizeof(bool));
    const int n = param_tensors(cfg, NULL);
    TensorInfo *tensors = xcalloc((size_t)n, sizeof *tensors);
    param_tensors(cfg, tensors);
    for (int i = 0; i < n; i++) {
        import_tensor(st, cfg, &tensors[i], params + tensors[i].offset, used);
        for (size_t j = 0; j < tensors[i].count; j++)
            if (!isfinite(params[tensors[i].offset + j]))
                die("%s: a value of the tensor igpt calls %s is not finite", st->path, tensors[i].name);
    }
    for (int i = 0; i < st->n; i++)
        if (!used[i] && !is_mask_buffer(st->tensors[i].name))
            die("%s: tensor %s is not part of the ImageGPT model igpt holds", st->path, st->tensors[i].name);
    free(tensors);
    free(used);
}

void hf_import(const char *dir, ModelConfig *cfg, float **params, Palette *palette, char *note, size_t note_cap) {
    char *config_path = xasprintf("%s/config.json", dir);
    char *weights_path = xasprintf("%s/model.safetensors", dir);
    char *processor_path = xasprintf("%s/preprocessor_config.json", dir);
    if (!is_directory(dir)) die("%s: no such folder (a Hugging Face ImageGPT model folder)", dir);
    if (!path_exists(weights_path)) {
        char *pickle = xasprintf("%s/pytorch_model.bin", dir);
        if (path_exists(pickle))
            die("%s: no model.safetensors, only pytorch_model.bin, a pickle igpt does not open; convert it "
                "first (README, \"Released iGPT models\"): python3 -c \"import torch; from safetensors.torch "
                "import save_file; save_file(torch.load('%s', map_location='cpu', weights_only=True), '%s')\"",
                dir, pickle, weights_path);
        die("%s: no model.safetensors", dir);
    }
    read_config(config_path, cfg);
    read_processor(processor_path, cfg, palette, note, note_cap);
    char problem[160];
    if (model_config_problem(cfg, problem, sizeof problem))
        die("%s: igpt cannot hold this model: %s", config_path, problem);
    SafeTensors st;
    safetensors_open(weights_path, &st);
    *params = xcalloc(param_count(cfg), sizeof(float));
    import_weights(&st, cfg, *params);
    safetensors_close(&st);
    free(config_path);
    free(weights_path);
    free(processor_path);
}

#else

void hf_import(const char *dir, ModelConfig *cfg, float **params, Palette *palette, char *note, size_t note_cap) {
    (void)cfg;
    (void)params;
    (void)palette;
    (void)note;
    (void)note_cap;
    die("%s: this build of igpt reads no JSON (GPU_ONLY): import on a machine with the full build", dir);
}

#endif

// ---------------------------------------------------------------------------
// Export

// The file's tensors, in transformers' order, and their values (`values`
// is allocated to hold them all).
typedef struct {
    SafeTensorOut *tensors;
    char (*names)[128];
    int n;
    float *values, *next;  // the values and the first free one
} ExportList;

// A tensor of `count` values at list->next (the caller fills them).
static float *export_add(ExportList *list, const char *name, int ndim, int64_t d0, int64_t d1, size_t count) {
    SafeTensorOut *o = &list->tensors[list->n];
    snprintf(list->names[list->n], sizeof list->names[list->n], "%s", name);
    *o = (SafeTensorOut){.name = list->names[list->n], .ndim = ndim, .shape = {d0, d1}, .data = list->next};
    list->n++;
    float *data = list->next;
    list->next += count;
    return data;
}

// wte gains sos as its last row; Conv1D weights are transposed and followed
// by their biases (zero).
static void export_tensors(const ModelConfig *cfg, const float *params, ExportList *list) {
    const int n = param_tensors(cfg, NULL);
    TensorInfo *t = xcalloc((size_t)n, sizeof *t);
    param_tensors(cfg, t);
    size_t total = 0;
    const float *sos = NULL;
    for (int i = 0; i < n; i++) {
        total += t[i].count + (size_t)t[i].rows;  // room for a bias each, and for sos's row
        if (!strcmp(t[i].name, "sos")) sos = params + t[i].offset;
    }
    *list = (ExportList){.tensors = xcalloc(2 * (size_t)n, sizeof(SafeTensorOut)),
                         .names = xcalloc(2 * (size_t)n, sizeof *list->names),
                         .values = xcalloc(total, sizeof(float))};
    list->next = list->values;
    for (int i = 0; i < n; i++) {
        const float *src = params + t[i].offset;
        const int rows = t[i].rows, cols = t[i].cols;
        char name[128];
        bool conv;
        if (!strcmp(t[i].name, "sos")) continue;  // the last row of wte
        if (!hf_tensor_name(t[i].name, cfg->n_layer, name, sizeof name, &conv))
            die("internal: %s has no Hugging Face name", t[i].name);
        if (!strcmp(t[i].name, "wte")) {
            float *dst = export_add(list, name, 2, rows + 1, cols, t[i].count + (size_t)cols);
            memcpy(dst, src, t[i].count * sizeof(float));
            memcpy(dst + t[i].count, sos, (size_t)cols * sizeof(float));
        } else if (conv) {
            float *dst = export_add(list, name, 2, cols, rows, t[i].count);  // [in, out]
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
            char bias[128];
            snprintf(bias, sizeof bias, "%.*s.bias", (int)(strlen(name) - strlen(".weight")), name);
            export_add(list, bias, 1, rows, 0, (size_t)rows);  // zeros: calloc
        } else {
            float *dst = export_add(list, name, cols == 1 ? 1 : 2, rows, cols == 1 ? 0 : cols, t[i].count);
            memcpy(dst, src, t[i].count * sizeof(float));
        }
    }
    free(t);
}

static void write_config(const char *path, const ModelConfig *cfg) {
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_BLOCK);
    json_string(&w, "model_type", "imagegpt");
    json_array_begin(&w, "architectures", JSON_INLINE);
    json_string(&w, NULL, "ImageGPTForCausalImageModeling");
    json_array_end(&w);
    json_int(&w, "vocab_size", cfg->vocab_size + 1);  // the colors and the start token
    json_int(&w, "n_positions", cfg->seq_len);
    json_int(&w, "n_embd", cfg->d_model);
    json_int(&w, "n_layer", cfg->n_layer);
    json_int(&w, "n_head", cfg->n_head);
    json_string(&w, "n_inner", NULL);
    json_string(&w, "activation_function", "quick_gelu");
    json_real(&w, "layer_norm_epsilon", "%g", IGPT_NORM_EPS);
    json_real(&w, "attn_pdrop", "%.1f", 0.0);  // igpt trains without dropout
    json_real(&w, "embd_pdrop", "%.1f", 0.0);
    json_real(&w, "resid_pdrop", "%.1f", 0.0);
    json_real(&w, "initializer_range", "%g", 0.02);
    json_bool(&w, "scale_attn_weights", true);
    json_bool(&w, "scale_attn_by_inverse_layer_idx", false);
    json_bool(&w, "reorder_and_upcast_attn", false);
    json_bool(&w, "tie_word_embeddings", false);
    json_bool(&w, "use_cache", true);
    json_string(&w, "torch_dtype", "float32");
    json_object_end(&w);
    json_write_file(&w, path);
}

// The palette as clusters in [-1, 1]: transformers' image processor scales
// pixels the same way, so its nearest cluster is our nearest color. Exact
// centers are written with every digit of a double, so that import gives
// back the same float32 centers.
static void write_processor(const char *path, const ModelConfig *cfg, const Palette *palette) {
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_BLOCK);
    json_string(&w, "image_processor_type", "ImageGPTImageProcessor");
    json_bool(&w, "do_resize", true);
    json_object_begin(&w, "size", JSON_INLINE);
    json_int(&w, "height", cfg->image_height);
    json_int(&w, "width", cfg->image_width);
    json_object_end(&w);
    json_int(&w, "resample", 2);  // bilinear, transformers' default
    json_bool(&w, "do_normalize", true);
    json_bool(&w, "do_color_quantize", true);
    json_array_begin(&w, "clusters", JSON_BLOCK);
    for (int k = 0; k < palette->colors; k++) {
        json_array_begin(&w, NULL, JSON_INLINE);
        for (int ch = 0; ch < 3; ch++) {
            const double pixel = palette->centers ? palette->centers[3 * k + ch] : palette->rgb[3 * k + ch];
            const double cluster = pixel / 127.5 - 1.0;
            if (palette->centers) json_real(&w, NULL, "%.17g", cluster);
            else json_real(&w, NULL, "%.9g", (float)cluster);
        }
        json_array_end(&w);
    }
    json_array_end(&w);
    json_object_end(&w);
    json_write_file(&w, path);
}

void hf_export(const char *dir, const ModelConfig *cfg, const float *params, const Palette *palette) {
    if (cfg->norm != NORM_IGPT)
        die("this model uses LayerNorm (--norm layernorm), which the Hugging Face ImageGPT layout has no place for "
            "(its norm is iGPT's, without mean or bias)");
    if (palette->colors != cfg->vocab_size)
        die("the palette has %d colors, the model %d", palette->colors, cfg->vocab_size);
    const char *files[] = {"config.json", "model.safetensors", "preprocessor_config.json"};
    char *paths[3];
    for (int i = 0; i < 3; i++) {
        paths[i] = xasprintf("%s/%s", dir, files[i]);
        if (path_exists(paths[i])) die("%s exists: igpt does not replace it (export into a new folder)", paths[i]);
    }
    make_directories(dir);
    ExportList list;
    export_tensors(cfg, params, &list);
    const char *keys[] = {"format"}, *vals[] = {"pt"};  // transformers loads "pt" files only
    safetensors_write(paths[1], list.tensors, list.n, keys, vals, 1);
    write_config(paths[0], cfg);
    write_processor(paths[2], cfg, palette);
    free(list.tensors);
    free(list.names);
    free(list.values);
    for (int i = 0; i < 3; i++) free(paths[i]);
}
