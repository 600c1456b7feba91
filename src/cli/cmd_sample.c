// ./igpt sample: unconditional samples and completions of images whose top
// rows are given, the iGPT paper's figure, as PNG grids and as prepared
// token files (the work is src/sample/sampler.c).
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/dataset.h"
#include "data/preview.h"
#include "sample/sampler.h"
#include "train/checkpoint.h"
#include "util/json.h"

typedef struct {
    const char *checkpoint, *data_dir, *split, *out_dir;
    int samples, complete, per_image, given_rows, top_k, batch, scale;
    double temperature, top_p;
    uint64_t seed;
    bool force, quiet;
    DeviceSettings device;
} SampleArgs;

static const Option sample_options[] = {
    {"checkpoint", OPT_TEXT, SETTING(SampleArgs, checkpoint), "FILE", "the model"},
    {"data", OPT_TEXT, SETTING(SampleArgs, data_dir), "DIR",
     "prepared data of the model's palette (its colors, and the images to complete)"},
    {"split", OPT_CHOICE, SETTING(SampleArgs, split), "SPLIT", "the images to complete", "val",
     .choices = "train|val|test"},
    {"out", OPT_TEXT, SETTING(SampleArgs, out_dir), "DIR",
     "output folder (default: the checkpoint's folder/samples-NNNNNNNN)"},
    {"samples", OPT_INT, SETTING(SampleArgs, samples), "N", "unconditional samples", "16", .lo = 0, .hi = 1 << 20},
    {"complete", OPT_INT, SETTING(SampleArgs, complete), "N", "images of SPLIT to complete, evenly spaced through it",
     "8", .lo = 0, .hi = 1 << 20},
    {"per-image", OPT_INT, SETTING(SampleArgs, per_image), "K", "completions of each", "4", .lo = 1, .hi = 64},
    {"given-rows", OPT_INT, SETTING(SampleArgs, given_rows), "R",
     "rows of each image given to the model (default: the top half)", NULL, .lo = 0, .hi = 1 << 16},
    {"temperature", OPT_REAL, SETTING(SampleArgs, temperature), "X", "divides the logits; 0: the most likely color",
     "1", .min = 0.0, .max = 100.0},
    {"top-k", OPT_INT, SETTING(SampleArgs, top_k), "K", "draw from the K most likely colors only (0: all)", "0",
     .lo = 0, .hi = 65536},
    {"top-p", OPT_REAL, SETTING(SampleArgs, top_p), "P",
     "then from the fewest most likely colors whose probability reaches P", "1", .min = 1e-9, .max = 1.0},
    {"seed", OPT_UINT64, SETTING(SampleArgs, seed), "N", "random seed (image i draws from stream i)", "1", .lo = 0,
     .hi = INT64_MAX},
    {"batch", OPT_INT, SETTING(SampleArgs, batch), "N", "images decoded together", "64", .lo = 1, .hi = 65536},
    {"scale", OPT_INT, SETTING(SampleArgs, scale), "N", "pixel size in the PNGs (default: images 128 pixels wide)",
     NULL, .lo = 1, .hi = 64},
    {"force", OPT_FLAG, SETTING(SampleArgs, force), NULL, "overwrite existing output files"},
    {"quiet", OPT_FLAG, SETTING(SampleArgs, quiet), NULL, "no progress bar"},
};

static const Option device_options[] = DEVICE_OPTIONS("auto");

static const OptionGroup sample_groups[] = {
    {"options", sample_options, COUNT_OF(sample_options)},
    {"device", device_options, COUNT_OF(device_options), SETTING(SampleArgs, device)},
};

static const Command sample_command = {
    .name = "sample",
    .usage = "--checkpoint FILE --data DIR [options]",
    .about =
        "Draws images from the model one pixel at a time (a key/value cache makes each\n"
        "pixel cost one row of every layer, not a forward pass over the image), many\n"
        "images at once: unconditional samples, and completions of images of SPLIT of\n"
        "which the model sees only the top rows, as in the iGPT paper's figure.\n"
        "The same seed gives the same images (on the CPU with any --batch and --threads;\n"
        "on a GPU with the same --batch).\n",
    .groups = sample_groups,
    .num_groups = COUNT_OF(sample_groups),
    .epilogue =
        "Writes to OUT:\n"
        "  samples.png      the unconditional samples, 8 per row\n"
        "  completions.png  per image: what the model saw (the hidden rows gray), its\n"
        "                   completions, and the original\n"
        "  samples.bin, completions.bin   the same as prepared token files (./igpt show,\n"
        "                   ./igpt info, the numpy reader of docs/formats.md); completions\n"
        "                   keep their image's label, samples are class 0, \"sample\"\n"
        "  sample.json      the settings, the time taken and pixels per second\n",
};

// The token file of `count` images of `tokens` with the data's palette;
// labels NULL: one class, "sample".
static void write_tokens(const char *path, const TokenDataset *data, const uint16_t *tokens, const uint16_t *labels,
                         int count) {
    TokenDataset out = {.count = count, .height = data->height, .width = data->width};
    palette_copy(&data->palette, &out.palette);
    out.num_classes = labels ? data->num_classes : 1;
    out.class_names = xcalloc((size_t)out.num_classes, sizeof(ClassName));
    if (labels) memcpy(out.class_names, data->class_names, (size_t)out.num_classes * sizeof(ClassName));
    else snprintf(out.class_names[0], sizeof out.class_names[0], "sample");
    const size_t T = (size_t)data->height * data->width;
    out.labels = xcalloc((size_t)count, sizeof(uint16_t));
    if (labels) memcpy(out.labels, labels, (size_t)count * sizeof(uint16_t));
    out.tokens = xmalloc((size_t)count * T * sizeof(uint16_t));
    memcpy(out.tokens, tokens, (size_t)count * T * sizeof(uint16_t));
    dataset_write(path, &out);
    dataset_free(&out);
}

// The job: the unconditional samples first, then per image to complete its
// K copies, each with the top given_rows rows of the original.
static void build_job(const SampleArgs *a, const TokenDataset *data, const int64_t *picked, SampleBatch *job) {
    const int T = data->height * data->width, per = a->per_image;
    job->count = a->samples + a->complete * per;
    job->seq_len = T;
    job->tokens = xcalloc((size_t)job->count * T, sizeof(uint16_t));
    int *given = xcalloc((size_t)job->count, sizeof(int));
    for (int i = 0; i < a->complete; i++)
        for (int k = 0; k < per; k++) {
            const int s = a->samples + i * per + k;
            given[s] = a->given_rows * data->width;
            memcpy(job->tokens + (size_t)s * T, data->tokens + (size_t)picked[i] * T, (size_t)T * sizeof(uint16_t));
        }
    job->given = given;
}

static void write_pictures(const SampleArgs *a, const char *out_dir, const TokenDataset *data, const SampleBatch *job,
                           const int64_t *picked, int scale) {
    const int H = data->height, W = data->width, T = H * W, per = a->per_image;
    if (a->samples > 0) {
        const int cols = a->samples < 8 ? a->samples : 8, rows = (a->samples + cols - 1) / cols;
        const uint16_t **tiles = xcalloc((size_t)rows * cols, sizeof *tiles);
        for (int i = 0; i < a->samples; i++) tiles[i] = job->tokens + (size_t)i * T;
        char *path = xasprintf("%s/samples.png", out_dir);
        write_token_grid_png(path, &data->palette, H, W, tiles, NULL, rows, cols, scale);
        free(path);
        free(tiles);
    }
    if (a->complete > 0) {
        const int cols = per + 2, rows = a->complete;
        const uint16_t **tiles = xcalloc((size_t)rows * cols, sizeof *tiles);
        int *shown = xcalloc((size_t)rows * cols, sizeof(int));
        for (int i = 0; i < rows; i++) {
            const uint16_t *original = data->tokens + (size_t)picked[i] * T;
            tiles[i * cols] = original;
            shown[i * cols] = a->given_rows;
            for (int k = 0; k < per; k++) {
                tiles[i * cols + 1 + k] = job->tokens + (size_t)(a->samples + i * per + k) * T;
                shown[i * cols + 1 + k] = H;
            }
            tiles[i * cols + cols - 1] = original;
            shown[i * cols + cols - 1] = H;
        }
        char *path = xasprintf("%s/completions.png", out_dir);
        write_token_grid_png(path, &data->palette, H, W, tiles, shown, rows, cols, scale);
        free(path);
        free(shown);
        free(tiles);
    }
}

static void write_summary(const SampleArgs *a, const char *path, const CheckpointMeta *meta, const BackendOptions *opt,
                          const SampleTiming *t) {
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_BLOCK);
    json_string(&w, "checkpoint", a->checkpoint);
    json_uint(&w, "step", meta->step);
    json_string(&w, "data", a->data_dir);
    json_string(&w, "split", a->split);
    json_string(&w, "device", device_name(opt->device));
    json_string(&w, "precision", opt->device == DEVICE_CPU ? "fp32" : precision_name(opt->precision));
    json_int(&w, "threads", opt->threads);
    json_int(&w, "samples", a->samples);
    json_int(&w, "completed_images", a->complete);
    json_int(&w, "completions_per_image", a->per_image);
    json_int(&w, "given_rows", a->given_rows);
    json_real(&w, "temperature", "%.6g", a->temperature);
    json_int(&w, "top_k", a->top_k);
    json_real(&w, "top_p", "%.6g", a->top_p);
    json_uint(&w, "seed", a->seed);
    json_int(&w, "batch", a->batch);
    json_real(&w, "seconds", "%.3f", t->seconds);
    json_int(&w, "pixels_sampled", t->pixels_sampled);
    json_int(&w, "positions_decoded", t->positions);
    json_real(&w, "pixels_per_second", "%.1f", t->seconds > 0 ? t->pixels_sampled / t->seconds : 0.0);
    json_real(&w, "positions_per_second", "%.1f", t->seconds > 0 ? t->positions / t->seconds : 0.0);
    json_object_end(&w);
    json_write_file(&w, path);
}

// The checks cli_parse cannot make: what the options need of each other and of the files.
static void check_inputs(SampleArgs *a, const ParsedArgs *parsed, const CheckpointMeta *meta, const TokenDataset *data,
                         const char *data_path) {
    check_model_fits_data(a->checkpoint, &meta->model, meta->palette_crc, data, data_path,
                          "its colors would be drawn wrong; sample with data prepared with its run's palette");
    if (!cli_given(parsed, &a->given_rows)) a->given_rows = data->height / 2;
    if (a->given_rows > data->height)
        usage_error("sample", "--given-rows %d: the images have %d rows", a->given_rows, data->height);
    if (a->complete > data->count)
        die("--complete %d: %s holds %lld images", a->complete, data_path, (long long)data->count);
    if (!cli_given(parsed, &a->scale)) a->scale = data->width >= 128 ? 1 : 128 / data->width;
}

int cmd_sample(int argc, char **argv) {
    SampleArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&sample_command, argc, argv, &a, &parsed);
    if (!a.checkpoint) usage_error("sample", "--checkpoint FILE is required");
    if (!a.data_dir) usage_error("sample", "--data DIR is required (the model's palette)");
    if (a.samples + a.complete == 0) usage_error("sample", "nothing to draw: --samples and --complete are both 0");
    CheckpointMeta meta;
    float *params;
    checkpoint_load_params(a.checkpoint, &meta, &params);
    char *data_path = xasprintf("%s/%s.bin", a.data_dir, a.split);
    TokenDataset data;
    dataset_read(data_path, &data);
    check_inputs(&a, &parsed, &meta, &data, data_path);

    char *out_dir = a.out_dir ? xasprintf("%s", a.out_dir) : NULL;
    if (!out_dir) {
        char *folder = path_folder(a.checkpoint);
        out_dir = xasprintf("%s/samples-%08llu", folder, (unsigned long long)meta.step);
        free(folder);
    }
    char *summary = xasprintf("%s/sample.json", out_dir);
    if (!a.force && path_exists(summary))
        die("%s already holds samples (%s): use --force to replace them, or --out", out_dir, summary);
    make_directories(out_dir);

    const BackendOptions opt = backend_options_from(&a.device);
    const int batch = a.batch < a.samples + a.complete * a.per_image ? a.batch : a.samples + a.complete * a.per_image;
    Backend b;
    backend_create(&b, &opt, &meta.model, 1);
    backend_set_state(&b, params, NULL, NULL);
    free(params);
    backend_decode_create(&b, batch);

    int64_t *picked = xcalloc((size_t)a.complete + 1, sizeof(int64_t));
    evenly_spaced(data.count, a.complete, picked);
    SampleBatch job;
    build_job(&a, &data, picked, &job);
    const SamplerSettings settings = {.temperature = a.temperature, .top_k = a.top_k, .top_p = a.top_p};
    SampleTiming timing;
    sample_images(&b, &job, &settings, a.seed, batch, a.quiet, &timing);

    write_pictures(&a, out_dir, &data, &job, picked, a.scale);
    const int T = data.height * data.width;
    if (a.samples > 0) {
        char *path = xasprintf("%s/samples.bin", out_dir);
        write_tokens(path, &data, job.tokens, NULL, a.samples);
        free(path);
    }
    if (a.complete > 0) {
        const int n = a.complete * a.per_image;
        uint16_t *labels = xcalloc((size_t)n, sizeof(uint16_t));
        for (int i = 0; i < n; i++) labels[i] = data.labels[picked[i / a.per_image]];
        char *path = xasprintf("%s/completions.bin", out_dir);
        write_tokens(path, &data, job.tokens + (size_t)a.samples * T, labels, n);
        free(path);
        free(labels);
    }
    write_summary(&a, summary, &meta, &opt, &timing);
    char completions[96] = "";
    if (a.complete > 0)
        snprintf(completions, sizeof completions, " and %d x %d completions (%d of %d rows given)", a.complete,
                 a.per_image, a.given_rows, data.height);
    printf("sample: %d samples%s in %s: %lld pixels in %.1f s, %.0f pixels/s (%s)\n", a.samples, completions, out_dir,
           (long long)timing.pixels_sampled, timing.seconds,
           timing.seconds > 0 ? timing.pixels_sampled / timing.seconds : 0.0, device_name(opt.device));

    free((void *)job.given);
    free(job.tokens);
    free(picked);
    backend_free(&b);
    dataset_free(&data);
    free(summary);
    free(out_dir);
    free(data_path);
    parsed_args_free(&parsed);
    return 0;
}
