// ./igpt compress and ./igpt decompress: the model as a lossless compressor
// of prepared images (src/compress/compress.c does the coding). compress
// takes one checkpoint and a split, or every checkpoint of a run; decompress
// gives back the split, byte for byte.
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "compress/compress.h"
#include "train/checkpoint.h"
#include "util/json.h"

typedef struct {
    const char *checkpoint, *in, *out, *run_dir, *data_dir, *split;
    int64_t images;
    int group;
    bool force, quiet;
    DeviceSettings device;
} CompressArgs;

static const Option compress_options[] = {
    {"checkpoint", OPT_TEXT, SETTING(CompressArgs, checkpoint), "FILE", "the model: a checkpoint"},
    {"in", OPT_TEXT, SETTING(CompressArgs, in), "FILE", "a prepared split (val.bin, ...)"},
    {"out", OPT_TEXT, SETTING(CompressArgs, out), "FILE", "the compressed file (.igpz), and FILE.json beside it"},
    {"run", OPT_TEXT, SETTING(CompressArgs, run_dir), "RUN_DIR",
     "instead: every checkpoint of a run not compressed yet (needs --data);\n"
     "writes RUN_DIR/compress/compress-NNNNNNNN.{igpz,json} and compression.csv"},
    {"data", OPT_TEXT, SETTING(CompressArgs, data_dir), "DIR", "with --run: the prepared data"},
    {"split", OPT_CHOICE, SETTING(CompressArgs, split), "SPLIT", "with --run: the split compressed", "val",
     .choices = "train|val|test"},
    {"images", OPT_INT64, SETTING(CompressArgs, images), "N",
     "compress N images, evenly spaced through the split (default: all)", NULL, .lo = 1, .hi = INT64_MAX / 2},
    {"group", OPT_INT, SETTING(CompressArgs, group), "G",
     "images coded together (in parallel; the decoder uses the same groups)", "64", .lo = 1, .hi = IGPT_IGPZ_MAX_GROUP},
    {"force", OPT_FLAG, SETTING(CompressArgs, force), NULL, "overwrite an existing --out"},
    {"quiet", OPT_FLAG, SETTING(CompressArgs, quiet), NULL, "no progress bar"},
};

static const Option compress_device_options[] = DEVICE_OPTIONS("cpu");

static const OptionGroup compress_groups[] = {
    {"options", compress_options, COUNT_OF(compress_options)},
    {"device (where the model runs; the decoder must run on the same one)", compress_device_options,
     COUNT_OF(compress_device_options), SETTING(CompressArgs, device)},
};

static const Command compress_command = {
    .name = "compress",
    .usage =
        "--checkpoint FILE --in SPLIT.bin --out FILE.igpz [options]\n"
        "       ./igpt compress --run RUN_DIR --data DIR [--split val] [options]",
    .about =
        "Compresses prepared images losslessly with the model: each pixel is range-coded\n"
        "with the model's distribution of it given the pixels before (docs/formats.md,\n"
        ".igpz), so it costs about -log2 p(pixel) bits and the file about the model's\n"
        "cross-entropy. ./igpt decompress gives the images back exactly, with the same\n"
        "checkpoint on the same device (the CPU by default: its bits are the same on any\n"
        "thread count and machine; a GPU's file decompresses on the same GPU model only).\n",
    .groups = compress_groups,
    .num_groups = COUNT_OF(compress_groups),
    .epilogue =
        "Prints and writes FILE.json: images, pixels, bytes, bits_per_pixel (the whole file),\n"
        "cross_entropy_bits_per_pixel (-log2 p of the pixels under the distributions coded),\n"
        "overhead_percent (the file over the cross-entropy), seconds, pixels_per_second.\n",
};

typedef struct {
    const char *checkpoint, *in, *out;
    bool force, quiet;
    DeviceSettings device;
} DecompressArgs;

static const Option decompress_options[] = {
    {"checkpoint", OPT_TEXT, SETTING(DecompressArgs, checkpoint), "FILE", "the checkpoint that compressed it"},
    {"in", OPT_TEXT, SETTING(DecompressArgs, in), "FILE", "a compressed file (.igpz)"},
    {"out", OPT_TEXT, SETTING(DecompressArgs, out), "FILE", "the prepared split written (.bin)"},
    {"force", OPT_FLAG, SETTING(DecompressArgs, force), NULL, "overwrite an existing --out"},
    {"quiet", OPT_FLAG, SETTING(DecompressArgs, quiet), NULL, "no progress bar"},
};

static const Option decompress_device_options[] = DEVICE_OPTIONS(NULL);

static const OptionGroup decompress_groups[] = {
    {"options", decompress_options, COUNT_OF(decompress_options)},
    {"device (default: the device and precision the file was compressed with)", decompress_device_options,
     COUNT_OF(decompress_device_options), SETTING(DecompressArgs, device)},
};

static const Command decompress_command = {
    .name = "decompress",
    .usage = "--checkpoint FILE --in FILE.igpz --out SPLIT.bin [options]",
    .about =
        "Gives back the prepared split a ./igpt compress wrote: the exact tokens, labels,\n"
        "palette and class names (all the images of a split: the same file, byte for\n"
        "byte). Refuses, saying both sides, another model, palette, device, precision\n"
        "or GPU than compressed it: the decoder must see the same distributions.\n",
    .groups = decompress_groups,
    .num_groups = COUNT_OF(decompress_groups),
};

// --- Results ----------------------------------------------------------------------------

// CRC-32 of the chosen images' tokens, then their labels: what a result was made of.
static uint32_t images_crc(const TokenDataset *ds, const int64_t *idx, int64_t n) {
    const int64_t T = dataset_tokens_per_image(ds);
    uint32_t crc = 0;
    for (int64_t i = 0; i < n; i++) crc = crc32_update(crc, ds->tokens + (size_t)(idx[i] * T), (size_t)T * 2);
    for (int64_t i = 0; i < n; i++) crc = crc32_update(crc, ds->labels + idx[i], 2);
    return crc;
}

typedef struct {
    uint64_t step;
    int64_t images, pixels;
    uint64_t bytes;
    double bits_per_pixel, cross_entropy, overhead_percent;
} CompressRow;

static CompressRow row_of(uint64_t step, const CompressStats *s) {
    CompressRow r = {.step = step, .images = s->images, .pixels = s->pixels, .bytes = s->bytes};
    r.bits_per_pixel = 8.0 * (double)s->bytes / (double)s->pixels;
    r.cross_entropy = s->pixel_bits / (double)s->pixels;
    r.overhead_percent = 100.0 * (r.bits_per_pixel / r.cross_entropy - 1.0);
    return r;
}

// The range coder's own cost: the groups' streams, less the labels, over the
// cross-entropy (the headers left out: they do not grow with the images).
static double coder_overhead_percent(const CompressStats *s) {
    return 100.0 * ((8.0 * (double)(s->bytes - s->header_bytes) - s->label_bits) / s->pixel_bits - 1.0);
}

static void write_result_json(const char *path, const CodingModel *m, const CompressStats *s, const char *igpz,
                              const char *data, int group, uint32_t data_crc) {
    const CompressRow r = row_of(m->header.step, s);
    char text[16];
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_BLOCK);
    json_int(&w, "images", r.images);
    json_int(&w, "pixels", r.pixels);
    json_uint(&w, "bytes", r.bytes);
    json_real(&w, "bits_per_pixel", "%.6f", r.bits_per_pixel);
    json_real(&w, "cross_entropy_bits_per_pixel", "%.6f", r.cross_entropy);
    json_real(&w, "overhead_percent", "%.4f", r.overhead_percent);
    json_real(&w, "seconds", "%.3f", s->seconds);
    json_real(&w, "pixels_per_second", "%.1f", (double)s->pixels / fmax(s->seconds, 1e-9));
    json_string(&w, "device", device_name(m->header.device));
    json_string(&w, "precision", precision_name(m->header.precision));
    if (m->header.device == DEVICE_CUDA) json_string(&w, "gpu", m->header.gpu_name);
    json_string(&w, "checkpoint", m->checkpoint);
    json_uint(&w, "step", m->header.step);
    // Beyond the figures: where they come from, and what a later --run compares.
    json_string(&w, "file", igpz);
    json_string(&w, "data", data);
    json_int(&w, "group", group);
    json_uint(&w, "header_bytes", s->header_bytes);
    json_real(&w, "label_bits_per_pixel", "%.6f", s->label_bits / (double)s->pixels);
    json_real(&w, "coder_overhead_percent", "%.4f", coder_overhead_percent(s));
    snprintf(text, sizeof text, "%08x", m->header.params_crc);
    json_string(&w, "params_crc", text);
    snprintf(text, sizeof text, "%08x", data_crc);
    json_string(&w, "images_crc", text);
    json_object_end(&w);
    json_write_file(&w, path);
}

static void say_result(const CompressStats *s, const CodingModel *m, const char *out) {
    const CompressRow r = row_of(m->header.step, s);
    printf(
        "compress: step %llu: %lld images, %lld pixels -> %llu bytes: %.4f bits/pixel, cross-entropy %.4f "
        "(%+.2f%%; the coder alone %+.2f%%), %.1f s, %.0f pixels/s: %s\n",
        (unsigned long long)r.step, (long long)r.images, (long long)r.pixels, (unsigned long long)r.bytes,
        r.bits_per_pixel, r.cross_entropy, r.overhead_percent, coder_overhead_percent(s), s->seconds,
        (double)s->pixels / fmax(s->seconds, 1e-9), out);
}

// The images chosen: N evenly spaced, or all (allocated).
static int64_t *chosen_images(const TokenDataset *ds, int64_t want, int64_t *n) {
    *n = want > 0 && want < ds->count ? want : ds->count;
    int64_t *idx = xmalloc((size_t)*n * sizeof *idx);
    evenly_spaced(ds->count, *n, idx);
    return idx;
}

static void refuse_existing(const char *path, bool force) {
    if (!force && path_exists(path)) die("%s already exists; pass --force to overwrite it", path);
}

// --- One checkpoint ---------------------------------------------------------------------

static void compress_one(const CompressArgs *a) {
    char *json_path = xasprintf("%s.json", a->out);
    refuse_existing(a->out, a->force);
    refuse_existing(json_path, a->force);
    TokenDataset ds;
    dataset_read(a->in, &ds);
    int64_t n;
    int64_t *idx = chosen_images(&ds, a->images, &n);
    const int group = (int)(a->group < n ? a->group : n);
    const BackendOptions opt = backend_options_from(&a->device);
    CodingModel m;
    coding_model_open(&m, a->checkpoint, &opt);
    CompressStats stats;
    compress_images(&m, &ds, a->in, idx, n, group, a->out, &stats);
    write_result_json(json_path, &m, &stats, a->out, a->in, group, images_crc(&ds, idx, n));
    say_result(&stats, &m, a->out);
    coding_model_close(&m);
    free(idx);
    dataset_free(&ds);
    free(json_path);
}

// --- Every checkpoint of a run ------------------------------------------------------------

// Whether RESULT (a compress-NNNNNNNN.json) holds for this model and these
// images; *row gets its figures. (A GPU-only build reads no JSON: it redoes them.)
static bool result_holds(const char *path, uint32_t params_crc, uint32_t data_crc, int64_t n, CompressRow *row) {
#ifdef IGPT_NO_CJSON
    (void)path;
    (void)params_crc;
    (void)data_crc;
    (void)n;
    (void)row;
    return false;
#else
    cJSON *root = json_read_file(path);
    if (!root) return false;
    char want_params[16], want_data[16];
    snprintf(want_params, sizeof want_params, "%08x", params_crc);
    snprintf(want_data, sizeof want_data, "%08x", data_crc);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "params_crc"),
                *data = cJSON_GetObjectItemCaseSensitive(root, "images_crc");
    const bool holds = cJSON_IsString(params) && !strcmp(params->valuestring, want_params) && cJSON_IsString(data) &&
                       !strcmp(data->valuestring, want_data) && json_number(root, "images") == (double)n;
    row->images = (int64_t)json_number(root, "images");
    row->pixels = (int64_t)json_number(root, "pixels");
    row->bytes = (uint64_t)json_number(root, "bytes");
    row->bits_per_pixel = json_number(root, "bits_per_pixel");
    row->cross_entropy = json_number(root, "cross_entropy_bits_per_pixel");
    row->overhead_percent = json_number(root, "overhead_percent");
    cJSON_Delete(root);
    return holds && isfinite(row->bits_per_pixel);
#endif
}

static void write_run_table(const char *path, const CompressRow *rows, int64_t n) {
    AtomicFile af;
    atomic_open(&af, path);
    fprintf(af.file, "step,images,pixels,bytes,bits_per_pixel,cross_entropy_bits_per_pixel,overhead_percent\n");
    for (int64_t i = 0; i < n; i++)
        fprintf(af.file, "%llu,%lld,%lld,%llu,%.6f,%.6f,%.4f\n", (unsigned long long)rows[i].step,
                (long long)rows[i].images, (long long)rows[i].pixels, (unsigned long long)rows[i].bytes,
                rows[i].bits_per_pixel, rows[i].cross_entropy, rows[i].overhead_percent);
    atomic_commit(&af);
}

static void compress_run(const CompressArgs *a) {
    uint64_t *steps;
    const int64_t num_steps = checkpoint_steps(a->run_dir, &steps);
    if (num_steps < 0) die("--run %s: no such folder", a->run_dir);
    if (num_steps == 0) die("--run %s holds no checkpoints", a->run_dir);
    char *data_path = xasprintf("%s/%s.bin", a->data_dir, a->split);
    TokenDataset ds;
    dataset_read(data_path, &ds);
    int64_t n;
    int64_t *idx = chosen_images(&ds, a->images, &n);
    const uint32_t data_crc = images_crc(&ds, idx, n);
    const int group = (int)(a->group < n ? a->group : n);
    const BackendOptions opt = backend_options_from(&a->device);
    char *out_dir = xasprintf("%s/compress", a->run_dir);
    CompressRow *rows = xcalloc((size_t)num_steps, sizeof *rows);
    for (int64_t i = 0; i < num_steps; i++) {
        char *checkpoint = checkpoint_path(a->run_dir, steps[i]);
        char *base = xasprintf("%s/compress-%08llu", out_dir, (unsigned long long)steps[i]);
        char *igpz = xasprintf("%s.igpz", base), *json = xasprintf("%s.json", base);
        CodingModel m;
        coding_model_open(&m, checkpoint, &opt);
        if (result_holds(json, m.header.params_crc, data_crc, n, &rows[i])) {
            rows[i].step = steps[i];
            printf("compress: step %llu: done already (%s)\n", (unsigned long long)steps[i], json);
        } else {
            make_directories(out_dir);
            CompressStats stats;
            compress_images(&m, &ds, data_path, idx, n, group, igpz, &stats);
            write_result_json(json, &m, &stats, igpz, data_path, group, data_crc);
            say_result(&stats, &m, igpz);
            rows[i] = row_of(steps[i], &stats);
        }
        coding_model_close(&m);
        free(checkpoint);
        free(base);
        free(igpz);
        free(json);
    }
    char *table = xasprintf("%s/compression.csv", out_dir);
    make_directories(out_dir);
    write_run_table(table, rows, num_steps);
    printf("compress: %lld checkpoints in %s\n", (long long)num_steps, table);
    free(table);
    free(rows);
    free(out_dir);
    free(idx);
    free(data_path);
    free(steps);
    dataset_free(&ds);
}

int cmd_compress(int argc, char **argv) {
    CompressArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&compress_command, argc, argv, &a, &parsed);
    if (a.run_dir) {
        if (!a.data_dir) usage_error("compress", "--run RUN_DIR needs --data DIR (the prepared data)");
        if (a.checkpoint || a.in || a.out)
            usage_error("compress", "--run compresses every checkpoint of a run: give no --checkpoint, --in or --out");
    } else {
        if (!a.checkpoint || !a.in || !a.out)
            usage_error("compress",
                        "give --checkpoint FILE --in SPLIT.bin --out FILE.igpz (or --run RUN_DIR --data DIR)");
        if (a.data_dir || cli_given(&parsed, &a.split)) usage_error("compress", "--data and --split go with --run");
    }
    progress_set_quiet(a.quiet);
    if (a.run_dir) compress_run(&a);
    else compress_one(&a);
    parsed_args_free(&parsed);
    return 0;
}

// --- Decompress -------------------------------------------------------------------------

int cmd_decompress(int argc, char **argv) {
    DecompressArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&decompress_command, argc, argv, &a, &parsed);
    if (!a.checkpoint || !a.in || !a.out)
        usage_error("decompress", "give --checkpoint FILE --in FILE.igpz --out SPLIT.bin");
    progress_set_quiet(a.quiet);
    refuse_existing(a.out, a.force);
    IgpzFile f;
    igpz_read(a.in, &f);
    // The device and precision the file was made with, unless asked otherwise (then refused, saying why).
    DeviceSettings device = a.device;
    if (!device.device) device.device = device_name(f.header.device);
    const char *why = NULL;
    if (!a.device.device && f.header.device == DEVICE_CUDA && gpu_device_count(&why) == 0) {
        char where[400];
        igpz_describe_device(&f.header, where, sizeof where);
        die("%s was compressed on %s, and this machine has no usable GPU (%s): decompress it on that GPU model", a.in,
            where, why ? why : "none found");
    }
    if (!cli_given(&parsed, &a.device.precision)) device.precision = precision_name(f.header.precision);
    const BackendOptions opt = backend_options_from(&device);
    CodingModel m;
    coding_model_open(&m, a.checkpoint, &opt);
    TokenDataset ds;
    const double start = now_seconds();
    decompress_images(&m, &f, a.in, &ds);
    dataset_write(a.out, &ds);
    const double seconds = now_seconds() - start;
    const int64_t pixels = ds.count * dataset_tokens_per_image(&ds);
    printf("decompress: %lld images, %lld pixels in %.1f s (%.0f pixels/s): %s\n", (long long)ds.count,
           (long long)pixels, seconds, (double)pixels / fmax(seconds, 1e-9), a.out);
    dataset_free(&ds);
    coding_model_close(&m);
    igpz_free(&f);
    parsed_args_free(&parsed);
    return 0;
}
