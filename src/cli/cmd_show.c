// ./igpt show and ./igpt info: look at prepared files.
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "train/checkpoint.h"
#include "cli/cli.h"
#include "data/dataset.h"
#include "data/palette.h"
#include "data/preview.h"

static const char *const show_help =
    "usage: ./igpt show FILE [--out PNG] [--per-class N] [--rows N] [--scale N]\n"
    "\n"
    "Draws a prepared split (train.bin, val.bin, test.bin) as a PNG grid, one row\n"
    "per class, every image rendered through its palette; or a palette file\n"
    "(palette.bin) as color squares.\n"
    "  --out PNG        output image (default: FILE with .png in place of .bin)\n"
    "  --per-class N    images per row (default 8)\n"
    "  --rows N         at most this many classes (default 10)\n"
    "  --scale N        pixel size (default 3)\n"
    "  --help           this text\n";

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
    const char *out = NULL;
    int per_class = 8, rows = 10, scale = 3;
    enum { O_OUT = 1000, O_PER_CLASS, O_ROWS, O_SCALE, O_HELP };
    static const struct option options[] = {{"out", required_argument, 0, O_OUT},
                                             {"per-class", required_argument, 0, O_PER_CLASS},
                                             {"rows", required_argument, 0, O_ROWS},
                                             {"scale", required_argument, 0, O_SCALE},
                                             {"help", no_argument, 0, O_HELP},
                                             {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case O_OUT: out = optarg; break;
        case O_PER_CLASS: per_class = (int)parse_int_option("--per-class", optarg, 1, 256); break;
        case O_ROWS: rows = (int)parse_int_option("--rows", optarg, 1, 1000); break;
        case O_SCALE: scale = (int)parse_int_option("--scale", optarg, 1, 32); break;
        case O_HELP: fputs(show_help, stdout); return 0;
        default: bad_option("show", c, argv);
        }
    }
    if (optind != argc - 1) usage_error("show", "expected one FILE to show");
    const char *path = argv[optind];
    char *default_out = NULL;
    if (!out) {
        size_t n = strlen(path);
        default_out = ends_with(path, ".bin") ? xasprintf("%.*s.png", (int)(n - 4), path) : xasprintf("%s.png", path);
        out = default_out;
    }
    if (!ends_with(out, ".png")) usage_error("show", "--out must name a .png file, got '%s'", out);
    if (file_size(path) < 0) die("%s: no such file", path);
    if (has_magic(path, IGPT_DATASET_MAGIC)) {
        TokenDataset ds;
        dataset_read(path, &ds);
        write_preview_png(out, NULL, &ds, per_class, rows, scale);
        dataset_free(&ds);
    } else {
        Palette pal;
        palette_load(path, &pal);
        write_palette_png(out, &pal);
        palette_free(&pal);
    }
    printf("wrote %s\n", out);
    free(default_out);
    return 0;
}

static const char *const info_help =
    "usage: ./igpt info FILE...\n"
    "\n"
    "Reads prepared splits, palette files and checkpoints, checks everything (magic, version,\n"
    "sizes, CRCs, label and color ranges), and prints what they hold. Exits\n"
    "non-zero at the first file that fails a check.\n";

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
    printf("  images %lld, %dx%d = %lld tokens each, %d colors (%d used), %d classes\n", (long long)ds.count,
           ds.height, ds.width, (long long)tpi, ds.palette.colors, used, ds.num_classes);
    for (int c = 0; c < ds.num_classes && c < 20; c++)
        printf("  %5d %-20s %lld images\n", c, ds.class_names[c], (long long)per_class[c]);
    if (ds.num_classes > 20) printf("  ... %d more classes\n", ds.num_classes - 20);
    free(per_class);
    free(per_color);
    dataset_free(&ds);
}

static void info_checkpoint(const char *path) {
    CheckpointMeta m;
    float *params, *adam_m, *adam_v;
    checkpoint_load(path, &m, &params, &adam_m, &adam_v);
    printf("%s: checkpoint, format version %u, checks passed\n", path, IGPT_CHECKPOINT_VERSION);
    printf("  model: d_model %d, %d layers, %d heads, %s norm, %d colors, %dx%d; %llu parameters\n", m.model.d_model,
           m.model.n_layer, m.model.n_head, norm_kind_name(m.model.norm), m.model.vocab_size, m.model.image_height,
           m.model.image_width, (unsigned long long)m.num_params);
    printf("  step %llu of %lld (epoch %llu), train loss %.4f, val loss %.4f nats/token\n", (unsigned long long)m.step,
           (long long)m.optim.total_steps, (unsigned long long)m.epoch, m.train_loss, m.val_loss);
    printf("  lr %g, warm-up %lld, batch %u (micro-batch %u), seed %llu\n", m.optim.lr, (long long)m.optim.warmup_steps,
           m.batch, m.micro_batch, (unsigned long long)m.seed);
    free(params);
    free(adam_m);
    free(adam_v);
}

int cmd_info(int argc, char **argv) {
    static const struct option options[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        if (c == 'h') {
            fputs(info_help, stdout);
            return 0;
        }
        bad_option("info", c, argv);
    }
    if (optind >= argc) usage_error("info", "expected at least one FILE");
    for (int i = optind; i < argc; i++) {
        if (file_size(argv[i]) < 0) die("%s: no such file", argv[i]);
        if (has_magic(argv[i], IGPT_DATASET_MAGIC)) {
            info_dataset(argv[i]);
        } else if (has_magic(argv[i], IGPT_CHECKPOINT_MAGIC)) {
            info_checkpoint(argv[i]);
        } else {
            Palette pal;
            palette_load(argv[i], &pal);
            printf("%s: palette, %d colors, checks passed\n", argv[i], pal.colors);
            palette_free(&pal);
        }
    }
    return 0;
}
