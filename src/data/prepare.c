// The prepare stage: read a dataset, hold out a validation split, fit the
// palette on the training images, quantize every split, write the files.
#include "data/prepare.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/decode.h"
#include "data/images.h"
#include "data/palette.h"
#include "data/preview.h"
#include "util/json.h"
#include "util/util.h"

// One prepared split: its images (before quantization) and tokens.
typedef struct {
    const char *name;
    ImageSet images;
    TokenDataset tokens;
    uint64_t sq_error;  // of the quantization, for the PSNR
    char *path;
} Split;

typedef struct {
    double decode, kmeans, quantize, write, total;
    int64_t decoded_images, quantized_images, kmeans_points;
    KmeansResult km;
} Timings;

// Everything one prepare_run works on.
typedef struct {
    const PrepareSettings *s;
    const char *source;  // the cifar_dir or images_dir
    int threads;
    bool fitted;                           // the palette is fitted here (no palette_path)
    char *train_location, *test_location;  // where the source keeps the splits prepared; NULL: not prepared
    char *preview_name, *summary_name;     // preview.png, prepare.json (or named after the one split)
    Palette palette;
    Split splits[3];  // train, then val and test when there
    int num_splits;
    Timings t;
} PrepareJob;

// --- The source -----------------------------------------------------------------------

// Where the source keeps `split`, or NULL when it has none.
static char *source_split_location(const PrepareSettings *s, const char *split) {
    if (s->cifar_dir) {
        char *batch_dir = cifar10_locate(s->cifar_dir);
        if (cifar10_has_split(batch_dir, split)) return batch_dir;
        free(batch_dir);
        return NULL;
    }
    return imagefolder_split_dir(s->images_dir, split);
}

static void source_load(const PrepareSettings *s, const char *location, const char *split, int threads, ImageSet *out) {
    if (s->cifar_dir) {
        cifar10_load(location, split, s->resolution, out);
        return;
    }
    FolderStats stats;
    imagefolder_load(location, s->resolution, threads, out, &stats);
    if (stats.skipped_files > 0)
        warn("%s: skipped %lld files that are not images", location, (long long)stats.skipped_files);
}

static void check_same_classes(const ImageSet *train, const ImageSet *other, const char *other_name) {
    bool same = train->num_classes == other->num_classes;
    for (int c = 0; same && c < train->num_classes; c++) same = !strcmp(train->class_names[c], other->class_names[c]);
    if (!same) die("the %s split's classes differ from the train split's (class folders must match)", other_name);
}

// --- Checks before any work -----------------------------------------------------------

// Palette first: a bad palette file should fail before minutes of decoding.
static void load_given_palette(PrepareJob *job) {
    const PrepareSettings *s = job->s;
    job->fitted = !s->palette_path;
    if (job->fitted) return;
    palette_from_file(s->palette_path, &job->palette);
    if (s->colors && s->colors != job->palette.colors)
        die("--colors %d does not match the %d colors of palette %s", s->colors, job->palette.colors, s->palette_path);
}

// Which splits to prepare: those asked for that the source has.
static void locate_splits(PrepareJob *job) {
    const PrepareSettings *s = job->s;
    const bool want_train = strcmp(s->split, "test") != 0;
    const bool want_test = strcmp(s->split, "train") != 0;
    job->train_location = want_train ? source_split_location(s, "train") : NULL;
    job->test_location = want_test ? source_split_location(s, "test") : NULL;
    if (want_train && !job->train_location && strcmp(s->split, "train") == 0) die("%s has no train split", job->source);
    if (want_test && !job->test_location && strcmp(s->split, "test") == 0) die("%s has no test split", job->source);
    if (!job->train_location && !job->test_location) die("%s has no train or test split", job->source);
    if (job->fitted && !job->train_location)
        die("fitting a palette needs the train split; to prepare only the test split, pass --palette with the "
            "palette.bin of the training data");
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

// Refuses to overwrite earlier results unless asked to.
static void check_outputs(PrepareJob *job) {
    const PrepareSettings *s = job->s;
    check_output_dir(s->out_dir);
    // A run limited to one split names its preview and summary after the
    // split, so that preparing test.bin later keeps the train run's files.
    const bool one_split = strcmp(s->split, "all") != 0;
    job->preview_name = one_split ? xasprintf("preview-%s.png", s->split) : xstrdup("preview.png");
    job->summary_name = one_split ? xasprintf("prepare-%s.json", s->split) : xstrdup("prepare.json");
    const bool train = job->train_location != NULL;
    const char *outputs[] = {job->fitted ? "palette.bin" : NULL,
                             train ? "train.bin" : NULL,
                             train && s->val != 0 ? "val.bin" : NULL,
                             job->test_location ? "test.bin" : NULL,
                             s->preview ? job->preview_name : NULL,
                             s->preview && job->fitted ? "palette.png" : NULL,
                             job->summary_name};
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        if (!outputs[i] || s->force) continue;
        char *path = xasprintf("%s/%s", s->out_dir, outputs[i]);
        if (path_exists(path)) die("%s already exists; pass --force to overwrite it", path);
        free(path);
    }
}

// --- The work -------------------------------------------------------------------------

// Reads the images: train (minus the validation hold-out), val, test.
static void read_splits(PrepareJob *job) {
    const PrepareSettings *s = job->s;
    const double t0 = now_seconds();
    if (job->train_location) {
        ImageSet all;
        source_load(s, job->train_location, "train", job->threads, &all);
        const int64_t val = s->val >= 0 ? s->val : all.count / 10;
        uint8_t *is_val = xcalloc((size_t)all.count, 1);
        if (val > 0) stratified_split(all.labels, all.count, all.num_classes, val, s->seed, is_val);
        job->splits[job->num_splits++] = (Split){.name = "train"};
        imageset_select(&all, is_val, 0, &job->splits[0].images);
        if (val > 0) {
            job->splits[job->num_splits] = (Split){.name = "val"};
            imageset_select(&all, is_val, 1, &job->splits[job->num_splits++].images);
        }
        job->t.decoded_images += all.count;
        free(is_val);
        imageset_free(&all);
    }
    if (job->test_location) {
        Split *test = &job->splits[job->num_splits];
        *test = (Split){.name = "test"};
        source_load(s, job->test_location, "test", job->threads, &test->images);
        job->t.decoded_images += test->images.count;
        if (job->num_splits > 0) check_same_classes(&job->splits[0].images, &test->images, "test");
        job->num_splits++;
    }
    job->t.decode = now_seconds() - t0;
}

// Fits the palette on the training split only (the validation hold-out is excluded).
static void fit_palette(PrepareJob *job) {
    const PrepareSettings *s = job->s;
    const double t0 = now_seconds();
    const ImageSet *train = &job->splits[0].images;
    const int64_t pixels = train->count * train->height * train->width;
    const KmeansOptions opt = {.k = s->colors,
                               .max_iters = s->kmeans_iters,
                               .tol = 1e-4,
                               .seed = s->seed,
                               .threads = job->threads,
                               .show_progress = true};
    palette_fit(train->pixels, pixels, s->kmeans_sample, &opt, &job->palette, &job->t.km);
    job->t.kmeans_points = s->kmeans_sample > 0 && s->kmeans_sample < pixels ? s->kmeans_sample : pixels;
    job->t.kmeans = now_seconds() - t0;
}

static void quantize_splits(PrepareJob *job) {
    const double t0 = now_seconds();
    for (int i = 0; i < job->num_splits; i++) {
        Split *split = &job->splits[i];
        split->sq_error = dataset_from_images(&split->images, &job->palette, job->threads, &split->tokens);
        job->t.quantized_images += split->images.count;
    }
    job->t.quantize = now_seconds() - t0;
}

// Writes the palette, the splits and the pictures, each file atomically.
static void write_outputs(PrepareJob *job) {
    const PrepareSettings *s = job->s;
    const double t0 = now_seconds();
    make_directories(s->out_dir);
    if (job->fitted) {
        char *path = xasprintf("%s/palette.bin", s->out_dir);
        palette_save(&job->palette, path);
        free(path);
    }
    for (int i = 0; i < job->num_splits; i++) {
        job->splits[i].path = xasprintf("%s/%s.bin", s->out_dir, job->splits[i].name);
        dataset_write(job->splits[i].path, &job->splits[i].tokens);
    }
    if (s->preview) {
        char *path = xasprintf("%s/%s", s->out_dir, job->preview_name);
        write_preview_png(path, &job->splits[0].images, &job->splits[0].tokens, 8, 10, 2);
        free(path);
        if (job->fitted) {
            path = xasprintf("%s/palette.png", s->out_dir);
            write_palette_png(path, &job->palette);
            free(path);
        }
    }
    job->t.write = now_seconds() - t0;
}

// --- The summary ----------------------------------------------------------------------

static double split_psnr(const PrepareJob *job, const Split *split) {
    const int64_t values = split->images.count * job->s->resolution * job->s->resolution * 3;
    return psnr_db(split->sq_error, values);
}

static void write_summary_json(const PrepareJob *job, const char *path) {
    const PrepareSettings *s = job->s;
    const Timings *t = &job->t;
    const ImageSet *first = &job->splits[0].images;
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_BLOCK);
    json_string(&w, "source", job->source);
    json_string(&w, "source_format", s->cifar_dir ? "cifar10-binary" : "image-folder");
    // Decoders of another build may differ by a few levels on some JPEG pixels (docs/formats.md).
    if (!s->cifar_dir) json_string(&w, "image_decoders", decode_image_decoders());
    json_int(&w, "resolution", s->resolution);
    json_int(&w, "colors", job->palette.colors);
    json_uint(&w, "seed", s->seed);
    json_string(&w, "palette", job->fitted ? "fitted" : s->palette_path);
    // Tokens of exact (float) cluster centers, as an imported model's palette has: palette_crc differs from the
    // CRC of the 8-bit colors.
    json_bool(&w, "palette_exact_centers", job->palette.centers != NULL);
    if (job->fitted) {
        json_object_begin(&w, "kmeans", JSON_INLINE);
        json_int(&w, "points", t->kmeans_points);
        json_int(&w, "iterations", t->km.iters);
        json_bool(&w, "converged", t->km.converged);
        json_real(&w, "mse", "%.4f", t->km.mse);
        json_object_end(&w);
    }
    json_array_begin(&w, "classes", JSON_INLINE);
    for (int c = 0; c < first->num_classes; c++) json_string(&w, NULL, first->class_names[c]);
    json_array_end(&w);
    json_object_begin(&w, "splits", JSON_BLOCK);
    int64_t *counts = xmalloc((size_t)first->num_classes * sizeof(int64_t));
    for (int i = 0; i < job->num_splits; i++) {
        const Split *split = &job->splits[i];
        imageset_class_counts(&split->images, counts);
        json_object_begin(&w, split->name, JSON_INLINE);
        json_string(&w, "file", split->path);
        json_int(&w, "images", split->images.count);
        json_real(&w, "psnr_db", "%.3f", split_psnr(job, split));
        json_array_begin(&w, "per_class", JSON_INLINE);
        for (int c = 0; c < first->num_classes; c++) json_int(&w, NULL, counts[c]);
        json_array_end(&w);
        json_object_end(&w);
    }
    free(counts);
    json_object_end(&w);
    json_object_begin(&w, "seconds", JSON_INLINE);
    json_real(&w, "decode", "%.3f", t->decode);
    json_real(&w, "kmeans", "%.3f", t->kmeans);
    json_real(&w, "quantize", "%.3f", t->quantize);
    json_real(&w, "write", "%.3f", t->write);
    json_real(&w, "total", "%.3f", t->total);
    json_object_end(&w);
    json_object_end(&w);
    json_write_file(&w, path);
}

// Images per class and split, the first 10 classes when there are many.
static void print_class_table(const PrepareJob *job) {
    const ImageSet *first = &job->splits[0].images;
    const int classes = first->num_classes, num_splits = job->num_splits;
    int64_t *counts = xmalloc((size_t)num_splits * classes * sizeof(int64_t));
    for (int i = 0; i < num_splits; i++) imageset_class_counts(&job->splits[i].images, counts + (size_t)i * classes);
    printf("  images per class:\n  %-16s", "class");
    for (int i = 0; i < num_splits; i++) printf(" %8s", job->splits[i].name);
    printf("\n");
    const int shown = classes <= 20 ? classes : 10;
    for (int c = 0; c < shown; c++) {
        printf("  %-16.16s", first->class_names[c]);
        for (int i = 0; i < num_splits; i++) printf(" %8lld", (long long)counts[(size_t)i * classes + c]);
        printf("\n");
    }
    if (shown < classes) printf("  ... %d more classes in prepare.json\n", classes - shown);
    free(counts);
}

static void print_summary(const PrepareJob *job) {
    const PrepareSettings *s = job->s;
    const Timings *t = &job->t;
    printf("\nprepared %s at %dx%d with %d colors (%s%s) in %.1f s\n", job->source, s->resolution, s->resolution,
           job->palette.colors, job->fitted ? "palette fitted on train" : s->palette_path,
           job->palette.centers ? ", exact centers" : "", t->total);
    printf("  %-6s %9s %9s  %s\n", "split", "images", "PSNR dB", "file");
    for (int i = 0; i < job->num_splits; i++) {
        const Split *split = &job->splits[i];
        printf("  %-6s %9lld %9.2f  %s\n", split->name, (long long)split->images.count, split_psnr(job, split),
               split->path);
    }
    print_class_table(job);
    printf("  timing: decode %.2f s (%.0f images/s)", t->decode, t->decoded_images / fmax(t->decode, 1e-9));
    if (job->fitted)
        printf(", k-means %.2f s (%lld pixels, %d iterations%s, %.0f images/s)", t->kmeans, (long long)t->kmeans_points,
               t->km.iters, t->km.converged ? ", converged" : "", t->decoded_images / fmax(t->kmeans, 1e-9));
    printf(", quantize %.2f s (%.0f images/s), write %.2f s\n", t->quantize,
           t->quantized_images / fmax(t->quantize, 1e-9), t->write);
}

static void job_free(PrepareJob *job) {
    for (int i = 0; i < job->num_splits; i++) {
        imageset_free(&job->splits[i].images);
        dataset_free(&job->splits[i].tokens);
        free(job->splits[i].path);
    }
    palette_free(&job->palette);
    free(job->train_location);
    free(job->test_location);
    free(job->preview_name);
    free(job->summary_name);
}

void prepare_run(const PrepareSettings *s) {
    const double t_start = now_seconds();
    PrepareJob job = {.s = s, .source = s->cifar_dir ? s->cifar_dir : s->images_dir};
    job.threads = resolve_threads(s->threads);
    load_given_palette(&job);
    locate_splits(&job);
    check_outputs(&job);
    read_splits(&job);
    if (job.fitted) fit_palette(&job);
    quantize_splits(&job);
    write_outputs(&job);
    job.t.total = now_seconds() - t_start;
    char *summary_path = xasprintf("%s/%s", s->out_dir, job.summary_name);
    write_summary_json(&job, summary_path);
    print_summary(&job);
    printf("  summary: %s\n", summary_path);
    if (s->preview) printf("  look:    %s/%s%s\n", s->out_dir, job.preview_name, job.fitted ? ", palette.png" : "");
    free(summary_path);
    job_free(&job);
}
