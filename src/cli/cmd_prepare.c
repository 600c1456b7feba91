// ./igpt prepare: images -> palette -> prepared token files, one per split.
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "data/dataset.h"
#include "data/images.h"
#include "data/palette.h"
#include "data/preview.h"

static const char *const prepare_help =
    "usage: ./igpt prepare (--cifar10 DIR | --images DIR) --out DIR [options]\n"
    "\n"
    "Reads a dataset, fits a k-means color palette on the training images, and\n"
    "writes every split as a prepared token file (docs/formats.md):\n"
    "  DIR/palette.bin  the palette (unless --palette gives one)\n"
    "  DIR/train.bin    training images minus the validation hold-out\n"
    "  DIR/val.bin      seeded, class-stratified hold-out from train (--val)\n"
    "  DIR/test.bin     the test split, when the source has one\n"
    "  DIR/preview.png  originals beside their quantized versions, one row per class\n"
    "  DIR/palette.png  the palette as color squares (when fitted)\n"
    "  DIR/prepare.json images per class and split, PSNR, timings\n"
    "With --split NAME the preview and summary are preview-NAME.png, prepare-NAME.json.\n"
    "Existing outputs are never overwritten without --force.\n"
    "\n"
    "source (one of):\n"
    "  --cifar10 DIR        official CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin),\n"
    "                       in DIR or DIR/cifar-10-batches-bin\n"
    "  --images DIR         DIR/<class>/<image files>, or DIR/train/<class>/... and DIR/test/<class>/...;\n"
    "                       png, jpg, bmp, gif, tga, psd, pnm; classes sorted by name give label ids\n"
    "options:\n"
    "  --out DIR            output folder (created if missing)\n"
    "  --resolution N       resize images to N x N with an area filter (default 32)\n"
    "  --colors N           palette size, 2..4096 (default 512)\n"
    "  --val N              images held out from train for validation (default: 10%% of train; 0 for none)\n"
    "  --seed N             seed of the validation split and k-means (default 1234)\n"
    "  --palette FILE       reuse a palette (palette.bin or any prepared split) instead of fitting one\n"
    "  --split NAME         prepare only this split: train or test (default: all the source has)\n"
    "  --kmeans-sample N    training pixels sampled for k-means (default 1000000; 0 = all)\n"
    "  --kmeans-iters N     maximum Lloyd iterations (default 100)\n"
    "  --threads N          worker threads (default: all cores)\n"
    "  --force              overwrite existing output files\n"
    "  --no-preview         skip preview.png and palette.png\n"
    "  --quiet              no progress bars\n"
    "  --help               this text\n";

typedef struct {
    const char *cifar_dir, *images_dir, *out_dir, *palette_path, *split;
    int resolution, colors, kmeans_iters, threads;
    bool colors_set, force, preview, quiet;
    int64_t val, kmeans_sample;  // val < 0: 10% of train
    uint64_t seed;
} PrepareArgs;

// One prepared split: its images (before quantization) and tokens.
typedef struct {
    const char *name;
    ImageSet images;
    TokenDataset tokens;
    uint64_t sq_error;
    char *path;
} Split;

static void parse_args(int argc, char **argv, PrepareArgs *a) {
    *a = (PrepareArgs){.resolution = 32, .colors = IGPT_DEFAULT_COLORS, .kmeans_iters = 100, .preview = true,
                       .val = -1, .kmeans_sample = 1000000, .seed = 1234, .split = "all"};
    enum { O_CIFAR = 1000, O_IMAGES, O_OUT, O_RES, O_COLORS, O_VAL, O_SEED, O_PALETTE, O_SPLIT, O_SAMPLE, O_ITERS,
           O_THREADS, O_FORCE, O_NOPREVIEW, O_QUIET, O_HELP };
    static const struct option options[] = {
        {"cifar10", required_argument, 0, O_CIFAR},     {"images", required_argument, 0, O_IMAGES},
        {"out", required_argument, 0, O_OUT},           {"resolution", required_argument, 0, O_RES},
        {"colors", required_argument, 0, O_COLORS},     {"val", required_argument, 0, O_VAL},
        {"seed", required_argument, 0, O_SEED},         {"palette", required_argument, 0, O_PALETTE},
        {"split", required_argument, 0, O_SPLIT},       {"kmeans-sample", required_argument, 0, O_SAMPLE},
        {"kmeans-iters", required_argument, 0, O_ITERS}, {"threads", required_argument, 0, O_THREADS},
        {"force", no_argument, 0, O_FORCE},             {"no-preview", no_argument, 0, O_NOPREVIEW},
        {"quiet", no_argument, 0, O_QUIET},             {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case O_CIFAR: a->cifar_dir = optarg; break;
        case O_IMAGES: a->images_dir = optarg; break;
        case O_OUT: a->out_dir = optarg; break;
        case O_RES: a->resolution = (int)parse_int_option("--resolution", optarg, IGPT_MIN_RESOLUTION, IGPT_MAX_RESOLUTION); break;
        case O_COLORS:
            a->colors = (int)parse_int_option("--colors", optarg, IGPT_MIN_COLORS, IGPT_MAX_COLORS);
            a->colors_set = true;
            break;
        case O_VAL: a->val = parse_int_option("--val", optarg, 0, INT64_MAX); break;
        case O_SEED: a->seed = (uint64_t)parse_int_option("--seed", optarg, 0, INT64_MAX); break;
        case O_PALETTE: a->palette_path = optarg; break;
        case O_SPLIT: a->split = optarg; break;
        case O_SAMPLE: a->kmeans_sample = parse_int_option("--kmeans-sample", optarg, 0, INT64_MAX); break;
        case O_ITERS: a->kmeans_iters = (int)parse_int_option("--kmeans-iters", optarg, 1, 100000); break;
        case O_THREADS: a->threads = (int)parse_int_option("--threads", optarg, 1, 4096); break;
        case O_FORCE: a->force = true; break;
        case O_NOPREVIEW: a->preview = false; break;
        case O_QUIET: a->quiet = true; break;
        case O_HELP: fputs(prepare_help, stdout); exit(0);
        default: bad_option("prepare", c, argv);
        }
    }
    if (optind < argc) usage_error("prepare", "unexpected argument '%s'", argv[optind]);
    if (!a->cifar_dir == !a->images_dir) usage_error("prepare", "give exactly one source: --cifar10 DIR or --images DIR");
    if (!a->out_dir) usage_error("prepare", "--out DIR is required");
    if (strcmp(a->split, "all") && strcmp(a->split, "train") && strcmp(a->split, "test"))
        usage_error("prepare", "--split must be train, test or all, got '%s'", a->split);
}

// Where the source keeps `split`, or NULL when it has none.
static char *source_split_location(const PrepareArgs *a, const char *split) {
    if (a->cifar_dir) {
        char *batch_dir = cifar10_locate(a->cifar_dir);
        if (cifar10_has_split(batch_dir, split)) return batch_dir;
        free(batch_dir);
        return NULL;
    }
    return imagefolder_split_dir(a->images_dir, split);
}

static void source_load(const PrepareArgs *a, const char *location, const char *split, int threads, ImageSet *out) {
    if (a->cifar_dir) {
        cifar10_load(location, split, a->resolution, out);
        return;
    }
    FolderStats stats;
    imagefolder_load(location, a->resolution, threads, out, &stats);
    if (stats.skipped_files > 0)
        warn("%s: skipped %lld files that are not images", location, (long long)stats.skipped_files);
}

static void check_same_classes(const ImageSet *train, const ImageSet *other, const char *other_name) {
    bool same = train->num_classes == other->num_classes;
    for (int c = 0; same && c < train->num_classes; c++) same = !strcmp(train->class_names[c], other->class_names[c]);
    if (!same) die("the %s split's classes differ from the train split's (class folders must match)", other_name);
}

// Fails early when `dir` could not be created or written: its nearest
// existing ancestor must be a writable folder.
static void check_output_dir(const char *dir) {
    char *p = xstrdup(dir);
    while (!path_exists(p)) {
        char *slash = strrchr(p, '/');
        if (!slash) {
            strcpy(p, ".");
            break;
        }
        slash[slash == p ? 1 : 0] = '\0';
    }
    if (!is_directory(p)) die("cannot write to %s: %s is not a folder", dir, p);
    if (access(p, W_OK | X_OK) != 0) die("cannot write to %s: %s", dir, strerror(errno));
    free(p);
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

typedef struct {
    double decode, kmeans, quantize, write, total;
    int64_t decoded_images, quantized_images, kmeans_points;
    KmeansResult km;
    bool fitted;
} Timings;

static void write_summary_json(const char *path, const PrepareArgs *a, Split *splits, int num_splits,
                               const Palette *pal, const Timings *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) die("cannot build %s: %s", path, strerror(errno));
    fprintf(f, "{\n  \"source\": ");
    json_string(f, a->cifar_dir ? a->cifar_dir : a->images_dir);
    fprintf(f, ",\n  \"source_format\": \"%s\",\n  \"resolution\": %d,\n  \"colors\": %d,\n  \"seed\": %llu,\n",
            a->cifar_dir ? "cifar10-binary" : "image-folder", a->resolution, pal->colors, (unsigned long long)a->seed);
    fprintf(f, "  \"palette\": ");
    json_string(f, t->fitted ? "fitted" : a->palette_path);
    if (t->fitted)
        fprintf(f, ",\n  \"kmeans\": {\"points\": %lld, \"iterations\": %d, \"converged\": %s, \"mse\": %.4f}",
                (long long)t->kmeans_points, t->km.iters, t->km.converged ? "true" : "false", t->km.mse);
    fprintf(f, ",\n  \"classes\": [");
    const ImageSet *first = &splits[0].images;
    for (int c = 0; c < first->num_classes; c++) {
        if (c) fputs(", ", f);
        json_string(f, first->class_names[c]);
    }
    fprintf(f, "],\n  \"splits\": {");
    int64_t *counts = xmalloc((size_t)first->num_classes * sizeof(int64_t));
    for (int s = 0; s < num_splits; s++) {
        imageset_class_counts(&splits[s].images, counts);
        int64_t values = splits[s].images.count * a->resolution * a->resolution * 3;
        fprintf(f, "%s\n    \"%s\": {\"file\": ", s ? "," : "", splits[s].name);
        json_string(f, splits[s].path);
        fprintf(f, ", \"images\": %lld, \"psnr_db\": %.3f, \"per_class\": [", (long long)splits[s].images.count,
                psnr_db(splits[s].sq_error, values));
        for (int c = 0; c < first->num_classes; c++) fprintf(f, "%s%lld", c ? ", " : "", (long long)counts[c]);
        fputs("]}", f);
    }
    free(counts);
    fprintf(f, "\n  },\n  \"seconds\": {\"decode\": %.3f, \"kmeans\": %.3f, \"quantize\": %.3f, \"write\": %.3f, "
               "\"total\": %.3f}\n}\n",
            t->decode, t->kmeans, t->quantize, t->write, t->total);
    fclose(f);
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, buf, len);
    atomic_commit(&af);
    free(buf);
}

static void print_summary(const PrepareArgs *a, Split *splits, int num_splits, const Palette *pal, const Timings *t) {
    printf("\nprepared %s at %dx%d with %d colors (%s) in %.1f s\n", a->cifar_dir ? a->cifar_dir : a->images_dir,
           a->resolution, a->resolution, pal->colors, t->fitted ? "palette fitted on train" : a->palette_path,
           t->total);
    printf("  %-6s %9s %9s  %s\n", "split", "images", "PSNR dB", "file");
    for (int s = 0; s < num_splits; s++) {
        int64_t values = splits[s].images.count * a->resolution * a->resolution * 3;
        printf("  %-6s %9lld %9.2f  %s\n", splits[s].name, (long long)splits[s].images.count,
               psnr_db(splits[s].sq_error, values), splits[s].path);
    }
    const ImageSet *first = &splits[0].images;
    const int classes = first->num_classes;
    int64_t *counts = xmalloc((size_t)num_splits * classes * sizeof(int64_t));
    for (int s = 0; s < num_splits; s++) imageset_class_counts(&splits[s].images, counts + (size_t)s * classes);
    printf("  images per class:\n  %-16s", "class");
    for (int s = 0; s < num_splits; s++) printf(" %8s", splits[s].name);
    printf("\n");
    const int shown = classes <= 20 ? classes : 10;
    for (int c = 0; c < shown; c++) {
        printf("  %-16.16s", first->class_names[c]);
        for (int s = 0; s < num_splits; s++) printf(" %8lld", (long long)counts[(size_t)s * classes + c]);
        printf("\n");
    }
    if (shown < classes) printf("  ... %d more classes in prepare.json\n", classes - shown);
    free(counts);
    printf("  timing: decode %.2f s (%.0f images/s)", t->decode, t->decoded_images / fmax(t->decode, 1e-9));
    if (t->fitted)
        printf(", k-means %.2f s (%lld pixels, %d iterations%s, %.0f images/s)", t->kmeans, (long long)t->kmeans_points,
               t->km.iters, t->km.converged ? ", converged" : "", t->decoded_images / fmax(t->kmeans, 1e-9));
    printf(", quantize %.2f s (%.0f images/s), write %.2f s\n", t->quantize,
           t->quantized_images / fmax(t->quantize, 1e-9), t->write);
}

int cmd_prepare(int argc, char **argv) {
    PrepareArgs a;
    parse_args(argc, argv, &a);
    progress_set_quiet(a.quiet);
    const int threads = resolve_threads(a.threads);
    Timings t = {0};
    const double t_start = now_seconds();

    // Palette first: a bad --palette should fail before minutes of decoding.
    Palette palette = {0};
    if (a.palette_path) {
        palette_from_file(a.palette_path, &palette);
        if (a.colors_set && a.colors != palette.colors)
            die("--colors %d does not match the %d colors of palette %s", a.colors, palette.colors, a.palette_path);
    }
    t.fitted = !a.palette_path;

    // Which splits to write.
    const bool want_train = strcmp(a.split, "test") != 0, want_test = strcmp(a.split, "train") != 0;
    char *train_loc = want_train ? source_split_location(&a, "train") : NULL;
    char *test_loc = want_test ? source_split_location(&a, "test") : NULL;
    const char *source = a.cifar_dir ? a.cifar_dir : a.images_dir;
    if (want_train && !train_loc && strcmp(a.split, "train") == 0) die("%s has no train split", source);
    if (want_test && !test_loc && strcmp(a.split, "test") == 0) die("%s has no test split", source);
    if (!train_loc && !test_loc) die("%s has no train or test split", source);
    if (t.fitted && !train_loc)
        die("fitting a palette needs the train split; to prepare only the test split, pass --palette with the "
            "palette.bin of the training data");

    // Refuse to overwrite earlier results unless asked to.
    check_output_dir(a.out_dir);
    // A run limited by --split names its preview and summary after the split,
    // so that preparing test.bin later keeps the train run's files.
    const bool one_split = strcmp(a.split, "all") != 0;
    char *preview_name = one_split ? xasprintf("preview-%s.png", a.split) : xstrdup("preview.png");
    char *summary_name = one_split ? xasprintf("prepare-%s.json", a.split) : xstrdup("prepare.json");
    const char *outputs[] = {t.fitted ? "palette.bin" : NULL, train_loc ? "train.bin" : NULL,
                             train_loc && a.val != 0 ? "val.bin" : NULL, test_loc ? "test.bin" : NULL,
                             a.preview ? preview_name : NULL, a.preview && t.fitted ? "palette.png" : NULL,
                             summary_name};
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        if (!outputs[i] || a.force) continue;
        char *path = xasprintf("%s/%s", a.out_dir, outputs[i]);
        if (path_exists(path)) die("%s already exists; pass --force to overwrite it", path);
        free(path);
    }

    // Read the images.
    Split splits[3];
    int num_splits = 0;
    double t0 = now_seconds();
    if (train_loc) {
        ImageSet all;
        source_load(&a, train_loc, "train", threads, &all);
        int64_t val = a.val >= 0 ? a.val : all.count / 10;
        uint8_t *is_val = xcalloc((size_t)all.count, 1);
        if (val > 0) stratified_split(all.labels, all.count, all.num_classes, val, a.seed, is_val);
        splits[num_splits++] = (Split){.name = "train"};
        imageset_select(&all, is_val, 0, &splits[0].images);
        if (val > 0) {
            splits[num_splits] = (Split){.name = "val"};
            imageset_select(&all, is_val, 1, &splits[num_splits++].images);
        }
        t.decoded_images += all.count;
        free(is_val);
        imageset_free(&all);
    }
    if (test_loc) {
        splits[num_splits] = (Split){.name = "test"};
        source_load(&a, test_loc, "test", threads, &splits[num_splits].images);
        t.decoded_images += splits[num_splits].images.count;
        if (num_splits > 0) check_same_classes(&splits[0].images, &splits[num_splits].images, "test");
        num_splits++;
    }
    t.decode = now_seconds() - t0;

    // Fit the palette on the training split only (the validation hold-out is excluded).
    if (t.fitted) {
        t0 = now_seconds();
        const ImageSet *train = &splits[0].images;
        int64_t pixels = train->count * train->height * train->width;
        KmeansOptions opt = {.k = a.colors, .max_iters = a.kmeans_iters, .tol = 1e-4, .seed = a.seed,
                             .threads = threads, .show_progress = true};
        palette_fit(train->pixels, pixels, a.kmeans_sample, &opt, &palette, &t.km);
        t.kmeans_points = a.kmeans_sample > 0 && a.kmeans_sample < pixels ? a.kmeans_sample : pixels;
        t.kmeans = now_seconds() - t0;
    }

    // Quantize every split.
    t0 = now_seconds();
    for (int s = 0; s < num_splits; s++) {
        splits[s].sq_error = dataset_from_images(&splits[s].images, &palette, threads, &splits[s].tokens);
        t.quantized_images += splits[s].images.count;
    }
    t.quantize = now_seconds() - t0;

    // Write, each file atomically.
    t0 = now_seconds();
    make_directories(a.out_dir);
    if (t.fitted) {
        char *path = xasprintf("%s/palette.bin", a.out_dir);
        palette_save(&palette, path);
        free(path);
    }
    for (int s = 0; s < num_splits; s++) {
        splits[s].path = xasprintf("%s/%s.bin", a.out_dir, splits[s].name);
        dataset_write(splits[s].path, &splits[s].tokens);
    }
    if (a.preview) {
        char *path = xasprintf("%s/%s", a.out_dir, preview_name);
        write_preview_png(path, &splits[0].images, &splits[0].tokens, 8, 10, 2);
        free(path);
        if (t.fitted) {
            path = xasprintf("%s/palette.png", a.out_dir);
            write_palette_png(path, &palette);
            free(path);
        }
    }
    t.write = now_seconds() - t0;
    t.total = now_seconds() - t_start;
    char *json_path = xasprintf("%s/%s", a.out_dir, summary_name);
    write_summary_json(json_path, &a, splits, num_splits, &palette, &t);
    print_summary(&a, splits, num_splits, &palette, &t);
    printf("  summary: %s\n", json_path);
    if (a.preview) printf("  look:    %s/%s%s\n", a.out_dir, preview_name, t.fitted ? ", palette.png" : "");
    free(preview_name);
    free(summary_name);

    free(json_path);
    for (int s = 0; s < num_splits; s++) {
        imageset_free(&splits[s].images);
        dataset_free(&splits[s].tokens);
        free(splits[s].path);
    }
    palette_free(&palette);
    free(train_loc);
    free(test_loc);
    return 0;
}
