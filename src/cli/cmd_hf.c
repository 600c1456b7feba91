// ./igpt import and ./igpt export: Hugging Face ImageGPT folders (the released
// iGPT-S/M/L as transformers ports them) to igpt checkpoints and back
// (src/hf/hf_model.h, docs/formats.md).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/dataset.h"
#include "data/palette.h"
#include "hf/hf_model.h"
#include "model/params.h"
#include "train/checkpoint.h"
#include "util/json.h"

typedef struct {
    const char *out;
} ImportArgs;

static const Option import_options[] = {
    {"out", OPT_TEXT, SETTING(ImportArgs, out), "DIR",
     "run folder to create: checkpoint-00000000.bin, palette.bin, import.json"},
};
static const OptionGroup import_groups[] = {{NULL, import_options, COUNT_OF(import_options)}};

static const Command import_command = {
    .name = "import",
    .usage = "HF_DIR --out DIR",
    .about =
        "Reads a Hugging Face ImageGPT model folder (config.json, model.safetensors and\n"
        "preprocessor_config.json, as openai/imagegpt-small, -medium and -large ship) and\n"
        "writes it as an igpt run: its weights as a checkpoint of step 0 and its clusters as\n"
        "palette.bin, so that `./igpt prepare --palette DIR/palette.bin` tokenizes images as\n"
        "the model saw them and probe, sample and compress work as on igpt's own runs.\n"
        "A pytorch_model.bin (a pickle) is not opened: convert it to model.safetensors first\n"
        "(the README shows the one-line command).\n",
    .groups = import_groups,
    .num_groups = COUNT_OF(import_groups),
    .min_operands = 1,
    .max_operands = 1,
    .operands_expected = "one HF_DIR, the model folder",
};

typedef struct {
    const char *out, *palette;
} ExportArgs;

static const Option export_options[] = {
    {"out", OPT_TEXT, SETTING(ExportArgs, out), "DIR", "folder to write (config.json, model.safetensors, ...)"},
    {"palette", OPT_TEXT, SETTING(ExportArgs, palette), "FILE",
     "the model's palette: palette.bin or a prepared split (default: palette.bin\n"
     "beside the checkpoint)"},
};
static const OptionGroup export_groups[] = {{NULL, export_options, COUNT_OF(export_options)}};

static const Command export_command = {
    .name = "export",
    .usage = "CHECKPOINT --out DIR [--palette FILE]",
    .about =
        "Writes a checkpoint as a Hugging Face ImageGPT model folder: config.json,\n"
        "model.safetensors (fp32) and preprocessor_config.json (the palette as clusters),\n"
        "which transformers' ImageGPTForCausalImageModeling.from_pretrained and\n"
        "ImageGPTImageProcessor.from_pretrained load. Its input ids start with the start\n"
        "token, vocab_size - 1, as the original iGPT's.\n",
    .groups = export_groups,
    .num_groups = COUNT_OF(export_groups),
    .min_operands = 1,
    .max_operands = 1,
    .operands_expected = "one CHECKPOINT to export",
};

// What import wrote and from what: a file a person can open.
static void write_import_json(const char *path, const char *source, const ModelConfig *cfg, size_t params,
                              uint32_t palette_crc, const char *note) {
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_BLOCK);
    json_string(&w, "source", source);
    const char *name = model_config_name(cfg);
    json_string(&w, "config", name);
    json_object_begin(&w, "model", JSON_INLINE);
    json_int(&w, "d_model", cfg->d_model);
    json_int(&w, "n_layer", cfg->n_layer);
    json_int(&w, "n_head", cfg->n_head);
    json_int(&w, "colors", cfg->vocab_size);
    json_int(&w, "image_height", cfg->image_height);
    json_int(&w, "image_width", cfg->image_width);
    json_object_end(&w);
    json_uint(&w, "parameters", params);
    char crc[16];
    snprintf(crc, sizeof crc, "%08x", palette_crc);
    json_string(&w, "palette_crc", crc);
    json_string(&w, "palette_note", note);
    json_object_end(&w);
    json_write_file(&w, path);
}

int cmd_import(int argc, char **argv) {
    ImportArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&import_command, argc, argv, &a, &parsed);
    if (!a.out) usage_error("import", "--out DIR is required");
    const char *source = parsed.operands[0];
    char *ckpt_path = checkpoint_path(a.out, 0);
    char *palette_path = xasprintf("%s/palette.bin", a.out);
    char *json_path = xasprintf("%s/import.json", a.out);
    const char *outputs[] = {ckpt_path, palette_path, json_path};
    for (int i = 0; i < 3; i++)
        if (path_exists(outputs[i])) die("%s exists: igpt does not replace it (import into a new folder)", outputs[i]);

    ModelConfig cfg;
    float *params;
    Palette palette;
    char note[256] = "";
    hf_import(source, &cfg, &params, &palette, note, sizeof note);
    CheckpointMeta meta = {.model = cfg, .num_params = param_count(&cfg), .train_loss = NAN, .val_loss = NAN};
    optim_config_defaults(&meta.optim);
    meta.palette_crc = palette_crc(&palette);
    float *zeros = xcalloc(meta.num_params, sizeof(float));  // Adam's moments: the optimizer has not run here
    make_directories(a.out);
    palette_save(&palette, palette_path);
    checkpoint_save(ckpt_path, &meta, params, zeros, zeros);
    write_import_json(json_path, source, &cfg, meta.num_params, meta.palette_crc, note);

    printf("imported %s: d_model %d, %d layers, %d heads, %d colors, %dx%d, %zu parameters\n", source, cfg.d_model,
           cfg.n_layer, cfg.n_head, cfg.vocab_size, cfg.image_height, cfg.image_width, (size_t)meta.num_params);
    const char *name = model_config_name(&cfg);
    if (name) printf("  config %s%s\n", name, model_config_paper_name(name));
    printf("  palette: %s\n", note);
    printf("wrote %s, %s and %s\n", ckpt_path, palette_path, json_path);
    printf(
        "next: ./igpt prepare --cifar10 DIR --resolution %d --palette %s --out DATA\n"
        "      ./igpt probe --data DATA --checkpoint %s\n",
        cfg.image_height, palette_path, ckpt_path);
    free(zeros);
    free(params);
    palette_free(&palette);
    free(ckpt_path);
    free(palette_path);
    free(json_path);
    parsed_args_free(&parsed);
    return 0;
}

int cmd_export(int argc, char **argv) {
    ExportArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&export_command, argc, argv, &a, &parsed);
    if (!a.out) usage_error("export", "--out DIR is required");
    const char *ckpt = parsed.operands[0];
    CheckpointMeta meta;
    float *params;
    checkpoint_load_params(ckpt, &meta, &params);
    char *folder = path_folder(ckpt);
    char *default_palette = xasprintf("%s/palette.bin", folder);
    const char *palette_path = a.palette ? a.palette : default_palette;
    if (!a.palette && !path_exists(palette_path))
        usage_error("export", "no palette.bin beside %s: give the model's palette with --palette FILE", ckpt);
    Palette palette;
    palette_from_file(palette_path, &palette);
    if (palette.colors != meta.model.vocab_size)
        die("%s: %d colors, but the model of %s has %d", palette_path, palette.colors, ckpt, meta.model.vocab_size);
    if (meta.palette_crc && palette_crc(&palette) != meta.palette_crc)
        die("%s: not the palette %s was trained with (CRC %08x, the checkpoint records %08x)", palette_path, ckpt,
            palette_crc(&palette), meta.palette_crc);
    if (!meta.palette_crc)
        warn("%s records no palette (an older checkpoint): check that %s is the one it was trained with", ckpt,
             palette_path);
    hf_export(a.out, &meta.model, params, &palette);
    printf("wrote %s/config.json, model.safetensors and preprocessor_config.json (step %llu, %zu parameters)\n", a.out,
           (unsigned long long)meta.step, (size_t)meta.num_params);
    palette_free(&palette);
    free(default_palette);
    free(folder);
    free(params);
    parsed_args_free(&parsed);
    return 0;
}
