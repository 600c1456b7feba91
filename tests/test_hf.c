// Hugging Face ImageGPT import and export (src/hf/hf_model.c) against what
// transformers itself computes: tests/fixtures/hf holds a small random
// ImageGPT saved by save_pretrained and its logits, losses, probe features
// and image-processor color ids (tests/reference/hf_fixtures.py).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/palette.h"
#include "hf/hf_model.h"
#include "hf/safetensors.h"
#include "model/model.h"
#include "model/params.h"
#include "test.h"
#include "train/checkpoint.h"

#define HF_FIXTURE "tests/fixtures/hf"

static bool load_reference(Fixture *fx) {
    bool loaded = fixture_load(HF_FIXTURE "/reference.bin", fx);
    CHECK(loaded, HF_FIXTURE "/reference.bin loads (tests/reference/hf_fixtures.py make writes it)");
    return loaded;
}

TEST(test_hf_import_computes_what_transformers_computes) {
    ModelConfig cfg;
    float *params;
    Palette pal;
    char note[256];
    hf_import(HF_FIXTURE, &cfg, &params, &pal, note, sizeof note);
    CHECK(cfg.vocab_size == 16 && cfg.seq_len == 16 && cfg.image_height == 4 && cfg.image_width == 4 &&
              cfg.d_model == 32 && cfg.n_layer == 2 && cfg.n_head == 2 && cfg.norm == NORM_IGPT,
          "config: V %d, T %d (%dx%d), C %d, L %d, NH %d", cfg.vocab_size, cfg.seq_len, cfg.image_height,
          cfg.image_width, cfg.d_model, cfg.n_layer, cfg.n_head);
    Fixture fx = {0};
    if (!load_reference(&fx)) return;
    const FixtureArray *tok = fixture_get(&fx, "tokens");
    const int B = (int)tok->dims[0], T = cfg.seq_len, V = cfg.vocab_size, C = cfg.d_model, L = cfg.n_layer;
    uint16_t *tokens = xmalloc((size_t)B * T * sizeof *tokens);
    for (int i = 0; i < B * T; i++) tokens[i] = (uint16_t)((const int32_t *)tok->data)[i];

    Model m;
    model_create(&m, &cfg, B, 2);
    memcpy(m.params, params, m.num_params * sizeof(float));
    model_forward(&m, tokens, B);
    // Raw logits: the final norm's output through the head, in double (the
    // forward pass turns its logits into probabilities).
    float *logits = xmalloc((size_t)B * T * V * sizeof *logits);
    for (int n = 0; n < B * T; n++) {
        for (int v = 0; v < V; v++) {
            double sum = 0;
            for (int c = 0; c < C; c++) sum += (double)m.act.lnf[(size_t)n * C + c] * m.p.w_head[(size_t)v * C + c];
            logits[(size_t)n * V + v] = (float)sum;
        }
    }
    const double logit_err = relative_error(logits, fixture_get(&fx, "logits")->data, (size_t)B * T * V);
    const double loss_err = relative_error(m.act.losses, fixture_get(&fx, "losses")->data, (size_t)B * T);
    CHECK(logit_err < 1e-5, "logits differ from transformers' by %.2e (relative; bound 1e-5)", logit_err);
    CHECK(loss_err < 1e-5, "per-pixel losses differ from transformers' by %.2e (relative; bound 1e-5)", loss_err);

    float *features = xmalloc((size_t)B * (L + 1) * C * sizeof *features);
    model_features(&m, B, features);
    const double feature_err = relative_error(features, fixture_get(&fx, "features")->data, (size_t)B * (L + 1) * C);
    CHECK(feature_err < 1e-5, "probe features differ from transformers' ln_1(hidden states) by %.2e", feature_err);

    free(features);
    free(logits);
    free(tokens);
    model_free(&m);
    fixture_free(&fx);
    free(params);
    palette_free(&pal);
}

// The imported palette gives the color ids transformers' image processor gives.
TEST(test_hf_palette_tokenizes_as_the_image_processor) {
    ModelConfig cfg;
    float *params;
    Palette pal;
    hf_import(HF_FIXTURE, &cfg, &params, &pal, NULL, 0);
    Fixture fx = {0};
    if (!load_reference(&fx)) return;
    const FixtureArray *image = fixture_get(&fx, "image"), *ids = fixture_get(&fx, "image_ids");
    const int n = (int)ids->count;
    uint8_t *rgb = xmalloc(image->count);
    for (size_t i = 0; i < image->count; i++) rgb[i] = (uint8_t)((const int32_t *)image->data)[i];
    uint16_t *tokens = xmalloc((size_t)n * sizeof *tokens);
    CHECK(pal.centers != NULL, "the fixture's float clusters are kept as exact centers");
    palette_quantize(&pal, rgb, n, tokens, 1);
    int differ = 0;
    for (int i = 0; i < n; i++) differ += tokens[i] != ((const int32_t *)ids->data)[i];
    CHECK(differ == 0, "%d of %d pixels got another color id than transformers' image processor gives", differ, n);
    free(rgb);
    free(tokens);
    fixture_free(&fx);
    free(params);
    palette_free(&pal);
}

// Export writes what save_pretrained wrote: every tensor of the fixture, same
// name, shape and bits, and nothing else.
TEST(test_hf_export_writes_the_transformers_file) {
    ModelConfig cfg;
    float *params;
    Palette pal;
    hf_import(HF_FIXTURE, &cfg, &params, &pal, NULL, 0);
    const char *out = test_path("export");
    hf_export(out, &cfg, params, &pal);
    SafeTensors theirs, ours;
    safetensors_open(HF_FIXTURE "/model.safetensors", &theirs);
    safetensors_open(test_path("export/model.safetensors"), &ours);
    CHECK(ours.n == theirs.n, "%d tensors exported, transformers saved %d", ours.n, theirs.n);
    for (int i = 0; i < theirs.n; i++) {
        const SafeTensor *t = &theirs.tensors[i], *o = safetensors_find(&ours, t->name);
        CHECK(o != NULL, "export has no %s", t->name);
        if (!o) continue;
        bool same = o->ndim == t->ndim && o->count == t->count && o->dtype == ST_F32 && t->dtype == ST_F32 &&
                    memcmp(o->shape, t->shape, sizeof o->shape) == 0 && memcmp(o->data, t->data, 4 * t->count) == 0;
        CHECK(same, "exported %s differs from transformers' (shape or values)", t->name);
    }
    CHECK(safetensors_meta(&ours, "format") && !strcmp(safetensors_meta(&ours, "format"), "pt"),
          "metadata format is \"pt\" (transformers refuses other files)");
    safetensors_close(&ours);
    safetensors_close(&theirs);
    free(params);
    palette_free(&pal);
}

static bool same_palette(const Palette *a, const Palette *b) {
    return a->colors == b->colors && memcmp(a->rgb, b->rgb, 3 * (size_t)a->colors) == 0 &&
           palette_crc(a) == palette_crc(b) && (a->centers == NULL) == (b->centers == NULL) &&
           (!a->centers || memcmp(a->centers, b->centers, 3 * (size_t)a->colors * sizeof(float)) == 0);
}

// import -> export -> import gives the same model bit for bit, and a second
// export the same bytes.
TEST(test_hf_export_then_import_is_identical) {
    ModelConfig cfg, cfg2;
    float *params, *params2;
    Palette pal, pal2;
    hf_import(HF_FIXTURE, &cfg, &params, &pal, NULL, 0);
    hf_export(test_path("a"), &cfg, params, &pal);
    hf_import(test_path("a"), &cfg2, &params2, &pal2, NULL, 0);
    CHECK(memcmp(&cfg, &cfg2, sizeof cfg) == 0, "the config changed through export and import");
    CHECK(memcmp(params, params2, param_count(&cfg) * sizeof(float)) == 0, "parameters changed (bitwise)");
    CHECK(same_palette(&pal, &pal2), "the palette changed");
    hf_export(test_path("b"), &cfg2, params2, &pal2);
    const char *files[] = {"model.safetensors", "config.json", "preprocessor_config.json"};
    for (int i = 0; i < 3; i++) {
        char *a = xasprintf("%s/a/%s", test_dir(), files[i]), *b = xasprintf("%s/b/%s", test_dir(), files[i]);
        CHECK(files_equal(a, b), "%s differs between two exports of the same model", files[i]);
        free(a);
        free(b);
    }
    free(params);
    free(params2);
    palette_free(&pal);
    palette_free(&pal2);
}

// The commands, as a user runs them: import writes a run that info reads
// with its real sizes, export of it writes the folder again.
TEST(test_hf_import_export_cli) {
    const char *run = test_path("run");
    CHECK(run_igpt("import %s --out %s", HF_FIXTURE, run) == 0, "import failed: %s", cli_stderr());
    CHECK(strstr(cli_stdout(), "d_model 32, 2 layers, 2 heads, 16 colors, 4x4"), "import says: %s", cli_stdout());
    CHECK(run_igpt("info %s/checkpoint-00000000.bin", run) == 0, "info on the import: %s", cli_stderr());
    CHECK(run_igpt("info %s/palette.bin", run) == 0, "info on the palette: %s", cli_stderr());
    CHECK(path_exists(test_path("run/import.json")), "import.json written");
    expect_failure(run_igpt("import %s --out %s", HF_FIXTURE, run), 1, "exists", NULL);
    const char *hf = test_path("hf");
    CHECK(run_igpt("export %s/checkpoint-00000000.bin --out %s", run, hf) == 0, "export: %s", cli_stderr());
    const char *written[] = {"config.json", "model.safetensors", "preprocessor_config.json"};
    for (int i = 0; i < 3; i++) CHECK(path_exists(test_path("hf/%s", written[i])), "export wrote no %s", written[i]);
    expect_failure(run_igpt("export %s/checkpoint-00000000.bin --out %s", run, hf), 1, "exists", NULL);
    // Another palette than the model's is refused.
    Palette other;
    palette_alloc(&other, 16);
    for (int i = 0; i < 48; i++) other.rgb[i] = (uint8_t)(5 * i);
    palette_save(&other, test_path("other.bin"));
    palette_free(&other);
    expect_failure(run_igpt("export %s/checkpoint-00000000.bin --palette %s --out %s", run, test_path("other.bin"),
                            test_path("hf2")),
                   1, "not the palette", NULL);
    CHECK(!path_exists(test_path("hf2")) || folder_has_no_files(test_path("hf2")), "nothing written for a refusal");
}

// --- Bad input: a copy of the fixture with one thing changed -----------------

// The fixture's tensors as fp32 copies that a test may change, add to or drop.
typedef struct {
    int n;
    SafeTensorOut t[64];
    char names[64][96];
    float *values[64];
} TensorEdit;

static void edit_load(TensorEdit *e) {
    SafeTensors st;
    safetensors_open(HF_FIXTURE "/model.safetensors", &st);
    memset(e, 0, sizeof *e);
    for (int i = 0; i < st.n && i < 64; i++) {
        const SafeTensor *s = &st.tensors[i];
        e->values[i] = xmalloc(s->count * sizeof(float) + 4);
        safetensors_read_f32(&st, s, e->values[i]);
        snprintf(e->names[i], sizeof e->names[i], "%s", s->name);
        e->t[i] = (SafeTensorOut){.name = e->names[i], .ndim = s->ndim, .data = e->values[i]};
        memcpy(e->t[i].shape, s->shape, sizeof s->shape);
        e->n++;
    }
    safetensors_close(&st);
}

static SafeTensorOut *edit_find(TensorEdit *e, const char *name) {
    for (int i = 0; i < e->n; i++)
        if (!strcmp(e->names[i], name)) return &e->t[i];
    CHECK(false, "fixture has no %s", name);
    return &e->t[0];
}

static void edit_add(TensorEdit *e, const char *name, int ndim, const int64_t *shape, size_t count) {
    const int i = e->n++;
    snprintf(e->names[i], sizeof e->names[i], "%s", name);
    e->values[i] = xcalloc(count + 1, sizeof(float));
    e->t[i] = (SafeTensorOut){.name = e->names[i], .ndim = ndim, .data = e->values[i]};
    memcpy(e->t[i].shape, shape, (size_t)ndim * sizeof *shape);
}

static void edit_drop(TensorEdit *e, const char *name) {
    SafeTensorOut *t = edit_find(e, name);
    const int i = (int)(t - e->t);
    free(e->values[i]);
    for (int j = i; j + 1 < e->n; j++) {
        e->values[j] = e->values[j + 1];
        memcpy(e->names[j], e->names[j + 1], sizeof e->names[j]);
        e->t[j] = e->t[j + 1];
        e->t[j].name = e->names[j];
    }
    e->n--;
}

// Writes the edited tensors and the fixture's two JSON files into `dir`, the
// first `from` in `json_file` replaced by `to` (json_file NULL: unchanged).
static const char *write_variant(TensorEdit *e, const char *json_file, const char *from, const char *to) {
    static char dir[512];
    static int count;
    snprintf(dir, sizeof dir, "%s/variant%d", test_dir(), count++);
    make_directories(dir);
    const char *jsons[] = {"config.json", "preprocessor_config.json"};
    for (int i = 0; i < 2; i++) {
        char *src = xasprintf(HF_FIXTURE "/%s", jsons[i]), *dst = xasprintf("%s/%s", dir, jsons[i]);
        size_t size;
        char *text = (char *)read_whole_file(src, &size);
        char *at = json_file && !strcmp(json_file, jsons[i]) ? strstr(text, from) : NULL;
        if (json_file && !strcmp(json_file, jsons[i])) CHECK(at != NULL, "%s has no '%s'", jsons[i], from);
        char *edited = at ? xasprintf("%.*s%s%s", (int)(at - text), text, to, at + strlen(from)) : xstrdup(text);
        write_whole_file(dst, edited, strlen(edited));
        free(edited);
        free(text);
        free(src);
        free(dst);
    }
    char *weights = xasprintf("%s/model.safetensors", dir);
    const char *keys[] = {"format"}, *vals[] = {"pt"};
    safetensors_write(weights, e->t, e->n, keys, vals, 1);
    free(weights);
    for (int i = 0; i < e->n; i++) free(e->values[i]);
    e->n = 0;
    return dir;
}

static void expect_import_refused(const char *dir, const char *message) {
    const char *out = test_path("refused");
    expect_failure(run_igpt("import %s --out %s", dir, out), 1, message, NULL);
    CHECK(!path_exists(out), "a refused import created %s", out);
}

TEST(test_hf_import_refuses_configs_igpt_cannot_hold) {
    TensorEdit e;
    const struct {
        const char *file, *from, *to, *message;
    } cases[] = {
        {"config.json", "\"quick_gelu\"", "\"gelu_new\"", "activation_function"},
        {"config.json", "\"n_inner\": null", "\"n_inner\": 96", "n_inner"},
        {"config.json", "\"imagegpt\"", "\"gpt2\"", "not an ImageGPT model"},
        {"config.json", "\"n_embd\": 32", "\"n_embd_\": 32", "no \"n_embd\""},
        {"config.json", "\"n_head\": 2", "\"n_head\": 3", "not divisible"},
        {"config.json", "\"scale_attn_by_inverse_layer_idx\": false", "\"scale_attn_by_inverse_layer_idx\": true",
         "scale_attn_by_inverse_layer_idx"},
        {"config.json", "\"layer_norm_epsilon\": 1e-05", "\"layer_norm_epsilon\": 1e-06", "layer_norm_epsilon"},
        {"preprocessor_config.json", "\"height\": 4", "\"height\": 5", "n_positions"},
        {"preprocessor_config.json", "\"clusters\": [", "\"clusters\": [[0, 0, 0], ", "17 clusters"},
        {"preprocessor_config.json", "\"clusters\": [\n    [\n      -", "\"clusters\": [\n    [\n      -3", "outside"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        edit_load(&e);
        expect_import_refused(write_variant(&e, cases[i].file, cases[i].from, cases[i].to), cases[i].message);
    }
}

TEST(test_hf_import_refuses_weights_igpt_cannot_hold) {
    TensorEdit e;
    edit_load(&e);
    e.values[edit_find(&e, "transformer.h.1.mlp.c_fc.bias") - e.t][5] = 0.25f;
    expect_import_refused(write_variant(&e, NULL, NULL, NULL), "transformer.h.1.mlp.c_fc.bias[5] is 0.25");

    edit_load(&e);
    edit_drop(&e, "lm_head.weight");
    expect_import_refused(write_variant(&e, NULL, NULL, NULL), "no tensor lm_head.weight");

    edit_load(&e);
    edit_find(&e, "transformer.wpe.weight")->shape[0] = 8;  // half of its values
    expect_import_refused(write_variant(&e, NULL, NULL, NULL),
                          "transformer.wpe.weight is [8 x 32], expected [16 x 32]");

    edit_load(&e);
    edit_add(&e, "transformer.h.0.attn.extra", 1, (const int64_t[]){4}, 4);
    expect_import_refused(write_variant(&e, NULL, NULL, NULL), "tensor transformer.h.0.attn.extra is not part");

    edit_load(&e);
    e.values[edit_find(&e, "transformer.h.0.ln_2.weight") - e.t][3] = NAN;
    expect_import_refused(write_variant(&e, NULL, NULL, NULL), "h0.ln2_g is not finite");

    // A pickle is never opened: the message says how to convert it.
    const char *pickle_dir = test_path("pickle");
    make_directories(pickle_dir);
    write_whole_file(test_path("pickle/pytorch_model.bin"), "PK", 2);
    expect_import_refused(pickle_dir, "from safetensors.torch import save_file");
    expect_import_refused(test_path("nowhere"), "no such folder");
}

// The causal masks older transformers saved beside each attention layer are
// buffers, not weights: they are allowed and change nothing.
TEST(test_hf_import_skips_saved_attention_masks) {
    TensorEdit e;
    edit_load(&e);
    for (int l = 0; l < 2; l++) {
        char name[96];
        snprintf(name, sizeof name, "transformer.h.%d.attn.bias", l);
        edit_add(&e, name, 4, (const int64_t[]){1, 1, 16, 16}, 256);
        snprintf(name, sizeof name, "transformer.h.%d.attn.masked_bias", l);
        edit_add(&e, name, 0, (const int64_t[]){0}, 1);
    }
    const char *dir = write_variant(&e, NULL, NULL, NULL);
    ModelConfig cfg, cfg2;
    float *params, *params2;
    Palette pal, pal2;
    hf_import(HF_FIXTURE, &cfg, &params, &pal, NULL, 0);
    hf_import(dir, &cfg2, &params2, &pal2, NULL, 0);
    CHECK(memcmp(params, params2, param_count(&cfg) * sizeof(float)) == 0, "the masks changed the parameters");
    free(params);
    free(params2);
    palette_free(&pal);
    palette_free(&pal2);
}

TEST(test_hf_export_refuses_a_layernorm_model) {
    char *data = small_prepared_data();
    const char *run = test_path("run");
    CHECK(run_igpt("train --device cpu --data %s --config tiny --norm layernorm --steps 1 --batch 2 --out %s --quiet",
                   data, run) == 0,
          "train: %s", cli_stderr());
    expect_failure(
        run_igpt("export %s/checkpoint-00000001.bin --palette %s/palette.bin --out %s", run, data, test_path("hf")), 1,
        "LayerNorm", NULL);
    CHECK(!path_exists(test_path("hf")), "a refused export created its folder");
    free(data);
}

// An imported model is used as igpt's own: data prepared with its palette,
// then probe, sample and compress on it; --resume refuses it with a reason.
TEST(test_hf_imported_model_probes_samples_and_compresses) {
    const char *run = test_path("run"), *images = test_path("images"), *data = test_path("data");
    CHECK(run_igpt("import %s --out %s", HF_FIXTURE, run) == 0, "import: %s", cli_stderr());
    CHECK(run_igpt("synth --out %s --train-per-class 6 --test-per-class 2 --size 8", images) == 0, "synth: %s",
          cli_stderr());
    CHECK(run_igpt("prepare --images %s --out %s --resolution 4 --val 20 --palette %s/palette.bin --quiet "
                   "--no-preview",
                   images, data, run) == 0,
          "prepare with the imported palette: %s", cli_stderr());
    const char *ckpt = test_path("run/checkpoint-00000000.bin");
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --select holdout --quiet", data, ckpt) == 0,
          "probe: %s", cli_stderr());
    CHECK(run_igpt("sample --device cpu --checkpoint %s --data %s --samples 2 --complete 2 --per-image 1 --quiet", ckpt,
                   data) == 0,
          "sample: %s", cli_stderr());
    CHECK(run_igpt("compress --checkpoint %s --in %s/val.bin --out %s --images 4", ckpt, data, test_path("val.igpz")) ==
              0,
          "compress: %s", cli_stderr());
    // The GPU backend (the interpret build) holds it too: probe features as on the CPU.
    CHECK(run_igpt_interpret("probe --device cuda --precision fp32 --data %s --checkpoint %s --l2 0.01 --out %s "
                             "--quiet",
                             data, ckpt, test_path("probe-gpu")) == 0,
          "probe on the GPU backend: %s", cli_stderr());
    expect_failure(run_igpt("train --device cpu --data %s --out %s --resume --quiet", data, run), 1,
                   "holds imported weights", NULL);
}
