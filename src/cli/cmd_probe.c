// ./igpt probe: linear probes on every layer's frozen features (iGPT's
// linear-probe protocol), for one checkpoint, a whole run, or raw pixels.
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "train/checkpoint.h"
#include "cli/cli.h"
#include "model/cpu_ops.h"
#include "data/dataset.h"
#include "data/images.h"
#include "model/model.h"
#include "probe/probe.h"
#include "probe/features.h"

static const char *const probe_help =
    "usage: ./igpt probe --data DIR (--checkpoint FILE | --run RUN_DIR | --baseline pixels) [options]\n"
    "\n"
    "Fits a linear classifier (multinomial logistic regression with L2, by L-BFGS)\n"
    "on the frozen features of every layer: the mean over positions of each\n"
    "block's normalised input, and of the final norm (docs/model.md). The L2\n"
    "strength is chosen on a seeded, class-stratified 10%% of the training\n"
    "images, then the probe is refit on all of them and scored on the\n"
    "evaluation split. Features are standardised with the training statistics.\n"
    "\n"
    "  --data DIR          prepared data (train.bin and val.bin or test.bin)\n"
    "  --checkpoint FILE   probe one checkpoint\n"
    "  --run RUN_DIR       probe every checkpoint of a run not probed yet, and the\n"
    "                      randomly initialised model (step 0); writes RUN_DIR/probe/probes.csv\n"
    "  --baseline pixels   probe the raw (palette) pixels instead of a model\n"
    "  --eval SPLIT        val (default) or test\n"
    "  --train-images N    training images used, evenly spaced through train.bin (default: all)\n"
    "  --eval-images N     evaluation images (default: all)\n"
    "  --l2 LIST           comma-separated L2 strengths to choose from (default 1,0.1,0.01,0.001,0.0001)\n"
    "  --max-iters N       L-BFGS iterations per fit (default 1000)\n"
    "  --out DIR           results and feature cache (default: RUN_DIR/probe, or the checkpoint's folder/probe)\n"
    "  --batch N           images per forward pass (default 32)\n"
    "  --seed N            seed of the L2-selection hold-out (default 1234)\n"
    "  --device NAME       cuda, cpu or auto (default: cuda when a GPU is usable) for the features\n"
    "  --precision P       on the GPU: bf16 (default) or fp32\n"
    "  --threads N, --quiet\n"
    "\n"
    "Writes OUT/probe-NNNNNNNN.json and .csv per checkpoint (per layer: accuracy, eval\n"
    "loss, chosen L2, hold-out accuracy, final gradient norm) and caches features in\n"
    "OUT/features-NNNNNNNN-{train,SPLIT}.bin.\n";

typedef struct {
    const char *data_dir, *checkpoint, *run_dir, *baseline, *eval_split, *out_dir, *device, *precision;
    int64_t train_images, eval_images;
    double l2_grid[16];
    int num_l2, max_iters, batch, threads;
    uint64_t seed;
    bool quiet;
} ProbeArgs;

static void parse_args(int argc, char **argv, ProbeArgs *a) {
    *a = (ProbeArgs){.eval_split = "val", .device = "auto", .precision = "bf16", .l2_grid = {1, 0.1, 0.01, 0.001, 0.0001}, .num_l2 = 5, .max_iters = 1000,
                     .batch = 32, .seed = 1234};
    enum { O_DATA = 1000, O_CKPT, O_RUN, O_BASELINE, O_EVAL, O_TRAIN_IMAGES, O_EVAL_IMAGES, O_L2, O_ITERS, O_OUT,
           O_BATCH, O_SEED, O_THREADS, O_QUIET, O_HELP, O_DEVICE, O_PRECISION };
    static const struct option options[] = {
        {"data", required_argument, 0, O_DATA},       {"checkpoint", required_argument, 0, O_CKPT},
        {"run", required_argument, 0, O_RUN},         {"baseline", required_argument, 0, O_BASELINE},
        {"eval", required_argument, 0, O_EVAL},       {"train-images", required_argument, 0, O_TRAIN_IMAGES},
        {"eval-images", required_argument, 0, O_EVAL_IMAGES}, {"l2", required_argument, 0, O_L2},
        {"max-iters", required_argument, 0, O_ITERS}, {"out", required_argument, 0, O_OUT},
        {"batch", required_argument, 0, O_BATCH},     {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS}, {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, O_HELP},             {"device", required_argument, 0, O_DEVICE},
        {"precision", required_argument, 0, O_PRECISION}, {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case O_DATA: a->data_dir = optarg; break;
        case O_CKPT: a->checkpoint = optarg; break;
        case O_RUN: a->run_dir = optarg; break;
        case O_BASELINE: a->baseline = optarg; break;
        case O_EVAL: a->eval_split = optarg; break;
        case O_TRAIN_IMAGES: a->train_images = parse_int_option("--train-images", optarg, 2, INT64_MAX / 2); break;
        case O_EVAL_IMAGES: a->eval_images = parse_int_option("--eval-images", optarg, 1, INT64_MAX / 2); break;
        case O_L2: {
            a->num_l2 = 0;
            char *list = xstrdup(optarg), *save = NULL;
            for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (a->num_l2 == 16) usage_error("probe", "--l2 takes at most 16 values");
                a->l2_grid[a->num_l2++] = parse_float_option("--l2", tok, 0.0, 1e6);
            }
            free(list);
            if (a->num_l2 == 0) usage_error("probe", "--l2 needs at least one value");
            break;
        }
        case O_ITERS: a->max_iters = (int)parse_int_option("--max-iters", optarg, 1, 1000000); break;
        case O_OUT: a->out_dir = optarg; break;
        case O_BATCH: a->batch = (int)parse_int_option("--batch", optarg, 1, 4096); break;
        case O_SEED: a->seed = (uint64_t)parse_int_option("--seed", optarg, 0, INT64_MAX); break;
        case O_THREADS: a->threads = (int)parse_int_option("--threads", optarg, 1, 4096); break;
        case O_QUIET: a->quiet = true; break;
        case O_DEVICE: a->device = optarg; break;
        case O_PRECISION: a->precision = optarg; break;
        case O_HELP: fputs(probe_help, stdout); exit(0);
        default: bad_option("probe", c, argv);
        }
    }
    if (optind < argc) usage_error("probe", "unexpected argument '%s'", argv[optind]);
    if (!a->data_dir) usage_error("probe", "--data DIR is required");
    if (!!a->checkpoint + !!a->run_dir + !!a->baseline != 1)
        usage_error("probe", "give exactly one of --checkpoint FILE, --run RUN_DIR, --baseline pixels");
    if (a->baseline && strcmp(a->baseline, "pixels") != 0)
        usage_error("probe", "--baseline must be pixels, got '%s'", a->baseline);
    if (strcmp(a->device, "auto") && strcmp(a->device, "cpu") && strcmp(a->device, "cuda"))
        usage_error("probe", "--device must be auto, cpu or cuda, got '%s'", a->device);
    if (strcmp(a->precision, "bf16") && strcmp(a->precision, "fp32"))
        usage_error("probe", "--precision must be bf16 or fp32, got '%s'", a->precision);
    if (strcmp(a->eval_split, "val") && strcmp(a->eval_split, "test"))
        usage_error("probe", "--eval must be val or test, got '%s'", a->eval_split);
}

static ProbeProtocol probe_protocol_of(const ProbeArgs *a, int threads) {
    return (ProbeProtocol){.l2_grid = a->l2_grid, .num_l2 = a->num_l2, .max_iters = a->max_iters, .seed = a->seed,
                           .threads = threads};
}

// --- Results files ----------------------------------------------------------------------

static void write_text_file(const char *path, const char *text) {
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, text, strlen(text));
    atomic_commit(&af);
}

// Writes OUT/<name>.csv and .json for one probed model; prints a table.
static void write_results(const char *out_dir, const char *name, const char *what, uint64_t step, double gen_loss,
                          const ProbeLayerResult *r, int layers, int64_t n_train, int64_t n_eval, const char *eval_split) {
    int best = 0;
    for (int l = 1; l < layers; l++)
        if (r[l].accuracy > r[best].accuracy) best = l;
    char loss_text[32] = "null";
    if (!isnan(gen_loss)) snprintf(loss_text, sizeof loss_text, "%.6f", gen_loss);
    size_t cap = 4096 + (size_t)layers * 256;
    char *csv = xmalloc(cap), *json = xmalloc(cap);
    size_t nc = (size_t)snprintf(csv, cap, "layer,accuracy,eval_loss,l2,holdout_accuracy,grad_norm,iterations\n");
    size_t nj = (size_t)snprintf(json, cap,
                                 "{\n  \"model\": \"%s\",\n  \"step\": %llu,\n  \"eval_split\": \"%s\",\n  \"train_images\": "
                                 "%lld,\n  \"eval_images\": %lld,\n  \"eval_gen_loss\": %s,\n  \"best_layer\": %d,\n  "
                                 "\"best_accuracy\": %.6f,\n  \"layers\": [",
                                 what, (unsigned long long)step, eval_split, (long long)n_train, (long long)n_eval,
                                 loss_text, best, r[best].accuracy);
    for (int l = 0; l < layers; l++) {
        nc += (size_t)snprintf(csv + nc, cap - nc, "%d,%.6f,%.6f,%g,%.6f,%.3e,%d\n", l, r[l].accuracy, r[l].eval_loss,
                               r[l].l2, r[l].holdout_accuracy, r[l].grad_norm, r[l].iters);
        nj += (size_t)snprintf(json + nj, cap - nj,
                               "%s\n    {\"layer\": %d, \"accuracy\": %.6f, \"eval_loss\": %.6f, \"l2\": %g, "
                               "\"holdout_accuracy\": %.6f, \"grad_norm\": %.3e, \"iterations\": %d}",
                               l ? "," : "", l, r[l].accuracy, r[l].eval_loss, r[l].l2, r[l].holdout_accuracy,
                               r[l].grad_norm, r[l].iters);
    }
    snprintf(json + nj, cap - nj, "\n  ]\n}\n");
    char *csv_path = xasprintf("%s/%s.csv", out_dir, name), *json_path = xasprintf("%s/%s.json", out_dir, name);
    write_text_file(csv_path, csv);
    write_text_file(json_path, json);
    printf("probe: %s, step %llu: best layer %d, %.2f%% on %lld %s images (%s)\n", what, (unsigned long long)step, best,
           100 * r[best].accuracy, (long long)n_eval, eval_split, csv_path);
    free(csv), free(json), free(csv_path), free(json_path);
}

// --- Models and features -------------------------------------------------------------

typedef struct {
    TokenDataset train, eval;
    int64_t *train_idx, *eval_idx;
    int64_t n_train, n_eval;
} ProbeData;

// Features of one split for a model: from the cache when it matches, else computed and cached.
static void model_features_cached(Backend *m, uint32_t model_crc, uint64_t step, const TokenDataset *data,
                                  const int64_t *idx, int64_t n, const char *path, int batch, FeatureSet *fs) {
    uint32_t data_crc = images_crc(data, idx, n);
    if (file_size(path) >= 0) {
        features_load(path, fs);
        if (fs->model_crc != model_crc || fs->data_crc != data_crc || fs->count != n ||
            fs->layers != m->cfg.n_layer + 1 || fs->dim != m->cfg.d_model)
            die("%s holds features of another model or other images than this probe asks for; delete it to "
                "recompute",
                path);
        return;
    }
    extract_features(m, data, idx, n, batch, model_crc, step, fs);
    features_save(path, fs);
}

static void create_backend(const ProbeArgs *a, const ModelConfig *cfg, int threads, Backend *m) {
    const DeviceKind device = backend_choose_device(a->device);
    GpuPrecision precision = GPU_BF16;
    parse_precision(a->precision, &precision);
    const BackendOptions opt = {.device = device, .precision = precision, .threads = threads};
    backend_create(m, &opt, cfg, a->batch);
}

// Probes one model (params already in m) and writes its results.
static void probe_model(Backend *m, uint32_t model_crc, uint64_t step, const char *what, const ProbeData *pd,
                        const ProbeArgs *a, const char *out_dir, int threads) {
    char *train_path = xasprintf("%s/features-%08llu-train.bin", out_dir, (unsigned long long)step);
    char *eval_path = xasprintf("%s/features-%08llu-%s.bin", out_dir, (unsigned long long)step, a->eval_split);
    FeatureSet train, eval;
    model_features_cached(m, model_crc, step, &pd->train, pd->train_idx, pd->n_train, train_path, a->batch, &train);
    model_features_cached(m, model_crc, step, &pd->eval, pd->eval_idx, pd->n_eval, eval_path, a->batch, &eval);
    ProbeLayerResult *r = xcalloc((size_t)train.layers, sizeof *r);
    // Layers are fitted in parallel, one thread each: the solver's products
    // (n x d by d x 10) are too thin for many BLAS threads to help, while
    // whole layers scale with the cores (13 xs layers on 2 cores: 51 s instead of 67 s).
    ProbeProtocol protocol = probe_protocol_of(a, 1);
    const int workers = threads < train.layers ? threads : train.layers;
#pragma omp parallel for schedule(dynamic, 1) num_threads(workers)
    for (int l = 0; l < train.layers; l++) {
        double t0 = now_seconds();
        probe_layer(&train, &eval, l, &protocol, &r[l]);
        if (!a->quiet) {
#pragma omp critical(probe_report)
            fprintf(stderr, "probe: step %llu layer %d/%d: %.2f%% (l2 %g, hold-out %.2f%%), |grad| %.1e, %d iterations, %.1f s\n",
                    (unsigned long long)step, l, train.layers - 1, 100 * r[l].accuracy, r[l].l2,
                    100 * r[l].holdout_accuracy, r[l].grad_norm, r[l].iters, now_seconds() - t0);
        }
    }
    char *name = xasprintf("probe-%08llu", (unsigned long long)step);
    write_results(out_dir, name, what, step, eval.gen_loss, r, train.layers, pd->n_train, pd->n_eval, a->eval_split);
    free(name), free(r), free(train_path), free(eval_path);
    features_free(&train);
    features_free(&eval);
}

static void load_probe_data(const ProbeArgs *a, ProbeData *pd) {
    char *train_path = xasprintf("%s/train.bin", a->data_dir);
    char *eval_path = xasprintf("%s/%s.bin", a->data_dir, a->eval_split);
    if (file_size(train_path) < 0) die("%s: no such file (the probe trains on it)", train_path);
    if (file_size(eval_path) < 0) die("%s: no such file; prepare it, or pick another --eval split", eval_path);
    dataset_read(train_path, &pd->train);
    dataset_read(eval_path, &pd->eval);
    if (pd->eval.num_classes != pd->train.num_classes || pd->eval.palette.colors != pd->train.palette.colors)
        die("%s and %s were not prepared together (classes or palettes differ)", train_path, eval_path);
    pd->n_train = a->train_images && a->train_images < pd->train.count ? a->train_images : pd->train.count;
    pd->n_eval = a->eval_images && a->eval_images < pd->eval.count ? a->eval_images : pd->eval.count;
    pd->train_idx = xmalloc((size_t)pd->n_train * sizeof(int64_t));
    pd->eval_idx = xmalloc((size_t)pd->n_eval * sizeof(int64_t));
    evenly_spaced(pd->train.count, pd->n_train, pd->train_idx);
    evenly_spaced(pd->eval.count, pd->n_eval, pd->eval_idx);
    free(train_path);
    free(eval_path);
}

static void check_model_fits_data(const CheckpointMeta *meta, const char *path, const TokenDataset *data,
                                  const char *data_dir) {
    if (meta->model.vocab_size != data->palette.colors || meta->model.image_height != data->height ||
        meta->model.image_width != data->width)
        die("%s is a model of %d colors at %dx%d, but %s holds %d colors at %dx%d", path, meta->model.vocab_size,
            meta->model.image_height, meta->model.image_width, data_dir, data->palette.colors, data->height,
            data->width);
}

// The generative loss and per-layer accuracies back from a probe-NNNNNNNN.json
// this command wrote; false if the file is missing or not of that shape.
static bool read_probe_json(const char *path, double *gen_loss, double *accuracy, int max_layers, int *layers) {
    char *text = (char *)read_whole_file(path, NULL);
    if (!text) return false;
    const char *g = strstr(text, "\"eval_gen_loss\": "), *p = strstr(text, "\"layers\": [");
    bool ok = g && p;
    if (ok) {
        g += strlen("\"eval_gen_loss\": ");
        *gen_loss = strncmp(g, "null", 4) == 0 ? NAN : strtod(g, NULL);
        *layers = 0;
        while ((p = strstr(p, "\"accuracy\": ")) && *layers < max_layers) {
            p += strlen("\"accuracy\": ");
            accuracy[(*layers)++] = strtod(p, NULL);
        }
        ok = *layers > 0;
    }
    free(text);
    return ok;
}

// RUN_DIR/probe/probes.csv: one row per probed step, in order.
static void write_run_table(const char *out_dir, const uint64_t *steps, int64_t n, int max_layers) {
    double *acc = xmalloc((size_t)max_layers * sizeof(double));
    size_t cap = 256 + (size_t)(n + 1) * (64 + 12 * (size_t)max_layers), len = 0;
    char *csv = xmalloc(cap);
    len += (size_t)snprintf(csv, cap, "step,eval_gen_loss,best_layer,best_accuracy");
    for (int l = 0; l < max_layers; l++) len += (size_t)snprintf(csv + len, cap - len, ",acc_layer_%d", l);
    len += (size_t)snprintf(csv + len, cap - len, "\n");
    int rows = 0;
    for (int64_t i = -1; i < n; i++) {
        uint64_t step = i < 0 ? 0 : steps[i];
        if (i >= 0 && step == 0) continue;
        char *path = xasprintf("%s/probe-%08llu.json", out_dir, (unsigned long long)step);
        double gen_loss;
        int layers;
        if (read_probe_json(path, &gen_loss, acc, max_layers, &layers)) {
            int best = 0;
            for (int l = 1; l < layers; l++)
                if (acc[l] > acc[best]) best = l;
            len += (size_t)snprintf(csv + len, cap - len, "%llu,%.6f,%d,%.6f", (unsigned long long)step, gen_loss, best,
                                    acc[best]);
            for (int l = 0; l < layers; l++) len += (size_t)snprintf(csv + len, cap - len, ",%.6f", acc[l]);
            len += (size_t)snprintf(csv + len, cap - len, "\n");
            rows++;
        }
        free(path);
    }
    char *table = xasprintf("%s/probes.csv", out_dir);
    write_text_file(table, csv);
    printf("probe: %d probed steps in %s\n", rows, table);
    free(table), free(csv), free(acc);
}

int cmd_probe(int argc, char **argv) {
    ProbeArgs a;
    parse_args(argc, argv, &a);
    progress_set_quiet(a.quiet);
    const int threads = cpu_set_threads(a.threads);
    ProbeData pd;
    load_probe_data(&a, &pd);

    char *out_dir = NULL;
    if (a.out_dir) out_dir = xstrdup(a.out_dir);
    else if (a.run_dir) out_dir = xasprintf("%s/probe", a.run_dir);
    else if (a.checkpoint) {
        char *dir = xstrdup(a.checkpoint), *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        out_dir = xasprintf("%s/probe", slash ? dir : ".");
        free(dir);
    } else out_dir = xasprintf("%s/probe", a.data_dir);
    make_directories(out_dir);

    if (a.baseline) {
        FeatureSet train, eval;
        pixel_features(&pd.train, pd.train_idx, pd.n_train, &train);
        pixel_features(&pd.eval, pd.eval_idx, pd.n_eval, &eval);
        ProbeLayerResult r;
        ProbeProtocol protocol = probe_protocol_of(&a, threads);
        probe_layer(&train, &eval, 0, &protocol, &r);
        write_results(out_dir, "baseline-pixels", "raw pixels", 0, NAN, &r, 1, pd.n_train, pd.n_eval, a.eval_split);
        features_free(&train);
        features_free(&eval);
    } else if (a.checkpoint) {
        CheckpointMeta meta;
        float *params, *am, *av;
        checkpoint_load(a.checkpoint, &meta, &params, &am, &av);
        check_model_fits_data(&meta, a.checkpoint, &pd.train, a.data_dir);
        Backend m;
        create_backend(&a, &meta.model, threads, &m);
        backend_set_state(&m, params, NULL, NULL);
        probe_model(&m, crc32_update(0, params, m.num_params * sizeof(float)), meta.step, a.checkpoint, &pd, &a, out_dir,
                    threads);
        backend_free(&m);
        free(params), free(am), free(av);
    } else {
        uint64_t *steps;
        int64_t n = checkpoint_steps(a.run_dir, &steps);
        if (n < 0) die("--run %s: no such folder", a.run_dir);
        if (n == 0) die("--run %s holds no checkpoints", a.run_dir);
        CheckpointMeta meta;
        char *first = checkpoint_path(a.run_dir, steps[0]);
        checkpoint_read_meta(first, &meta);
        check_model_fits_data(&meta, first, &pd.train, a.data_dir);
        free(first);
        Backend m;
        create_backend(&a, &meta.model, threads, &m);
        float *params = xmalloc(m.num_params * sizeof(float));
        // Step 0: the randomly initialised model of the run's seed.
        for (int64_t i = -1; i < n; i++) {
            uint64_t step = i < 0 ? 0 : steps[i];
            char *done = xasprintf("%s/probe-%08llu.csv", out_dir, (unsigned long long)step);
            bool skip = file_size(done) >= 0 || (i < 0 && steps[0] == 0);
            free(done);
            if (skip) continue;
            char *what;
            if (i < 0) {
                model_init_params(&meta.model, params, meta.seed);
                what = xstrdup("random init");
            } else {
                what = checkpoint_path(a.run_dir, step);
                CheckpointMeta cm;
                float *loaded, *am, *av;
                checkpoint_load(what, &cm, &loaded, &am, &av);
                if (memcmp(&cm.model, &meta.model, sizeof cm.model) != 0) die("%s: another model than the run's", what);
                memcpy(params, loaded, m.num_params * sizeof(float));
                free(loaded), free(am), free(av);
            }
            backend_set_state(&m, params, NULL, NULL);
            probe_model(&m, crc32_update(0, params, m.num_params * sizeof(float)), step, what, &pd, &a, out_dir,
                        threads);
            free(what);
        }
        write_run_table(out_dir, steps, n, meta.model.n_layer + 1);
        free(params);
        backend_free(&m);
        free(steps);
    }
    free(out_dir);
    free(pd.train_idx), free(pd.eval_idx);
    dataset_free(&pd.train);
    dataset_free(&pd.eval);
    return 0;
}
