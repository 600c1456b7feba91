// ./igpt show and ./igpt info: look at prepared files.
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "compress/igpz.h"
#include "data/dataset.h"
#include "data/palette.h"
#include "data/preview.h"
#include "train/checkpoint.h"

typedef struct {
    const char *out;
    int per_class, rows, scale;
} ShowArgs;

static const Option show_options[] = {
    {"out", OPT_TEXT, SETTING(ShowArgs, out), "PNG", "output image (default: FILE with .png in place of .bin)"},
    {"per-class", OPT_INT, SETTING(ShowArgs, per_class), "N", "images per row", "8", .lo = 1, .hi = 256},
    {"rows", OPT_INT, SETTING(ShowArgs, rows), "N", "at most this many classes", "10", .lo = 1, .hi = 1000},
    {"scale", OPT_INT, SETTING(ShowArgs, scale), "N", "pixel size", "3", .lo = 1, .hi = 32},
};
static const OptionGroup show_groups[] = {{NULL, show_options, COUNT_OF(show_options)}};

static const Command show_command = {
    .name = "show",
    .usage = "FILE [--out PNG] [--per-class N] [--rows N] [--scale N]",
    .about =
        "Draws a prepared split (train.bin, val.bin, test.bin) as a PNG grid, one row\n"
        "per class with the class name (or label id) at its start, every image rendered\n"
        "through its palette; or a palette file\n"
        "(palette.bin) as color squares.\n",
    .groups = show_groups,
    .num_groups = COUNT_OF(show_groups),
    .min_operands = 1,
    .max_operands = 1,
    .operands_expected = "one FILE to show",
};

static bool has_magic(const char *path, const char *magic) {
    FILE *f = xfopen(path, "rb");
    char head[8] = {0};
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    return got == 8 && memcmp(head, magic, 8) == 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int cmd_show(int argc, char **argv) {
    ShowArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&show_command, argc, argv, &a, &parsed);
    const char *out = a.out;
    const char *path = parsed.operands[0];
    char *default_out = NULL;
    if (!out) {
        size_t n = strlen(path);
        default_out = ends_with(path, ".bin") ? xasprintf("%.*s.png", (int)(n - 4), path) : xasprintf("%s.png", path);
        out = default_out;
    }
    if (!ends_with(out, ".png")) usage_error("show", "--out must name a .png file, got '%s'", out);
    if (regular_file_size(path) < 0) die("%s: no such file", path);
    if (has_magic(path, IGPT_DATASET_MAGIC)) {
        TokenDataset ds;
        dataset_read(path, &ds);
        write_preview_png(out, NULL, &ds, a.per_class, a.rows, a.scale);
        dataset_free(&ds);
    } else {
        Palette pal;
        palette_load(path, &pal);
        write_palette_png(out, &pal);
        palette_free(&pal);
    }
    printf("wrote %s\n", out);
    free(default_out);
    parsed_args_free(&parsed);
    return 0;
}

static const Command info_command = {
    .name = "info",
    .usage = "FILE...",
    .about =
        "Reads prepared splits, palette files, checkpoints and compressed images (.igpz),\n"
        "checks everything (magic, version, sizes, CRCs, label and color ranges; a checkpoint's\n"
        "parameters and Adam moments are finite; a .igpz's header and every group's bytes), and\n"
        "prints what they hold. Exits non-zero at the first file that fails a check.\n",
    .min_operands = 1,
    .max_operands = -1,
    .operands_expected = "at least one FILE",
};

static void info_dataset(const char *path) {
    TokenDataset ds;
    dataset_read(path, &ds);
    int64_t tpi = dataset_tokens_per_image(&ds);
    int64_t *per_class = xcalloc((size_t)ds.num_classes, sizeof(int64_t));
    int64_t *per_color = xcalloc((size_t)ds.palette.colors, sizeof(int64_t));
    for (int64_t i = 0; i < ds.count; i++) per_class[ds.labels[i]]++;
    for (int64_t i = 0; i < ds.count * tpi; i++) per_color[ds.tokens[i]]++;
    int used = 0;
    for (int k = 0; k < ds.palette.colors; k++) used += per_color[k] > 0;
    printf("%s: prepared data, format version %u, checks passed\n", path, IGPT_DATASET_VERSION);
    printf("  images %lld, %dx%d = %lld tokens each, %d colors (%d used), %d classes\n", (long long)ds.count, ds.height,
           ds.width, (long long)tpi, ds.palette.colors, used, ds.num_classes);
    if (ds.palette.exact_crc)
        printf("  tokenized with exact palette centers (palette identity %08x): its palette.bin holds them\n",
               ds.palette.exact_crc);
    for (int c = 0; c < ds.num_classes && c < 20; c++)
        printf("  %5d %-20s %lld images\n", c, ds.class_names[c], (long long)per_class[c]);
    if (ds.num_classes > 20) printf("  ... %d more classes\n", ds.num_classes - 20);
    free(per_class);
    free(per_color);
    dataset_free(&ds);
}

// A checkpoint's CRCs say the file is as written, not that what was written
// is usable: a file from before checkpoint_save refused non-finite states, or
// one altered since, can hold NaNs as faithfully as good weights.
static void check_finite(const char *path, const CheckpointMeta *m, const float *params, const float *adam_m,
                         const float *adam_v) {
    char where[256];
    if (checkpoint_find_non_finite(m, params, adam_m, adam_v, where, sizeof where))
        die("%s: %s: the checkpoint holds non-finite values (a diverged run?)", path, where);
}

static void info_checkpoint(const char *path) {
    CheckpointMeta m;
    float *params, *adam_m, *adam_v;
    checkpoint_load(path, &m, &params, &adam_m, &adam_v);
    check_finite(path, &m, params, adam_m, adam_v);
    printf("%s: checkpoint, format version %u, checks passed\n", path, IGPT_CHECKPOINT_VERSION);
    printf("  model: d_model %d, %d layers, %d heads, %s norm, %d colors, %dx%d; %llu parameters\n", m.model.d_model,
           m.model.n_layer, m.model.n_head, norm_kind_name(m.model.norm), m.model.vocab_size, m.model.image_height,
           m.model.image_width, (unsigned long long)m.num_params);
    const char *name = model_config_name(&m.model);
    if (name) printf("  config %s%s\n", name, model_config_paper_name(name));
    if (m.batch == 0) {  // ./igpt import writes no batch: the weights were trained elsewhere
        printf(
            "  imported weights (./igpt import): no optimizer state, data or batch of their training; palette CRC "
            "%08x\n",
            m.palette_crc);
        free(params);
        free(adam_m);
        free(adam_v);
        return;
    }
    printf("  step %llu of %lld (epoch %llu), train loss %.4f, val loss %.4f nats/token\n", (unsigned long long)m.step,
           (long long)m.optim.total_steps, (unsigned long long)m.epoch, m.train_loss, m.val_loss);
    printf("  lr %g, warm-up %lld, batch %u (micro-batch %u), seed %llu\n", m.optim.lr, (long long)m.optim.warmup_steps,
           m.batch, m.micro_batch, (unsigned long long)m.seed);
    if (m.palette_crc)
        printf("  trained on %llu images (tokens CRC %08x, palette CRC %08x)\n", (unsigned long long)m.data_count,
               m.data_crc, m.palette_crc);
    else
        printf("  trained on %llu images (tokens CRC %08x; palette not recorded)\n", (unsigned long long)m.data_count,
               m.data_crc);
    free(params);
    free(adam_m);
    free(adam_v);
}

// A compressed file: what igpz_read checks (header, sizes, every group's
// payload CRC); the pixels themselves need the model (./igpt decompress).
static void info_compressed(const char *path) {
    IgpzFile f;
    igpz_read(path, &f);
    const IgpzHeader *h = &f.header;
    char device[IGPT_IGPZ_MAX_GPU_NAME + 64];
    igpz_describe_device(h, device, sizeof device);
    const int64_t pixels = h->count * h->model.seq_len;
    printf("%s: compressed images (.igpz), format version %u, checks passed\n", path, IGPT_IGPZ_VERSION);
    printf("  images %lld, %dx%d, %d colors, %d classes; %lld groups of up to %d\n", (long long)h->count,
           h->model.image_height, h->model.image_width, h->palette.colors, h->num_classes, (long long)f.num_groups,
           h->group);
    printf("  %zu bytes: %.4f bits per pixel\n", f.size, pixels > 0 ? 8.0 * (double)f.size / (double)pixels : 0.0);
    printf("  model: d_model %d, %d layers, %d heads, %s norm, step %llu, parameters CRC %08x; on %s\n",
           h->model.d_model, h->model.n_layer, h->model.n_head, norm_kind_name(h->model.norm),
           (unsigned long long)h->step, h->params_crc, device);
    igpz_free(&f);
}

int cmd_info(int argc, char **argv) {
    ParsedArgs parsed;
    cli_parse(&info_command, argc, argv, NULL, &parsed);
    for (int i = 0; i < parsed.num_operands; i++) {
        const char *path = parsed.operands[i];
        if (regular_file_size(path) < 0) die("%s: no such file", path);
        if (has_magic(path, IGPT_DATASET_MAGIC)) {
            info_dataset(path);
        } else if (has_magic(path, IGPT_CHECKPOINT_MAGIC)) {
            info_checkpoint(path);
        } else if (has_magic(path, IGPT_IGPZ_MAGIC)) {
            info_compressed(path);
        } else {
            Palette pal;
            palette_load(path, &pal);
            printf("%s: palette, %d colors%s, checks passed (CRC %08x)\n", path, pal.colors,
                   pal.centers ? " with exact centers (version 2: imported clusters)" : "", palette_crc(&pal));
            palette_free(&pal);
        }
    }
    parsed_args_free(&parsed);
    return 0;
}
