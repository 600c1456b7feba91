// The probe stage: the images, each model's features (cached on disk), a
// probe fitted per layer, and the results files.
#include "probe/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "model/params.h"
#include "probe/features.h"
#include "train/checkpoint.h"
#include "util/json.h"
#include "util/util.h"

// The images a probe trains and scores on: evenly spaced subsets of two splits.
typedef struct {
    TokenDataset train, eval;
    int64_t *train_idx, *eval_idx;
    int64_t n_train, n_eval;
} ProbeData;

// What one probed model scored, layer by layer.
typedef struct {
    const char *model;  // what was probed: a checkpoint's path, "random init", "raw pixels"
    uint64_t step;
    double gen_loss;  // generative loss on the evaluation images; NaN: not computed
    const ProbeLayerResult *layers;
    int num_layers;
} ProbeResults;

// --- The images -----------------------------------------------------------------------

static void probe_data_load(const ProbeSettings *s, ProbeData *pd) {
    char *train_path = xasprintf("%s/train.bin", s->data_dir);
    char *eval_path = xasprintf("%s/%s.bin", s->data_dir, s->eval_split);
    if (file_size(train_path) < 0) die("%s: no such file (the probe trains on it)", train_path);
    if (file_size(eval_path) < 0) die("%s: no such file; prepare it, or pick another --eval split", eval_path);
    dataset_read(train_path, &pd->train);
    dataset_read(eval_path, &pd->eval);
    if (pd->eval.num_classes != pd->train.num_classes || pd->eval.palette.colors != pd->train.palette.colors)
        die("%s and %s were not prepared together (classes or palettes differ)", train_path, eval_path);
    pd->n_train = s->train_images && s->train_images < pd->train.count ? s->train_images : pd->train.count;
    pd->n_eval = s->eval_images && s->eval_images < pd->eval.count ? s->eval_images : pd->eval.count;
    pd->train_idx = xmalloc((size_t)pd->n_train * sizeof(int64_t));
    pd->eval_idx = xmalloc((size_t)pd->n_eval * sizeof(int64_t));
    evenly_spaced(pd->train.count, pd->n_train, pd->train_idx);
    evenly_spaced(pd->eval.count, pd->n_eval, pd->eval_idx);
    free(train_path);
    free(eval_path);
}

static void probe_data_free(ProbeData *pd) {
    free(pd->train_idx);
    free(pd->eval_idx);
    dataset_free(&pd->train);
    dataset_free(&pd->eval);
}

// Every probe starts the same way: the images, then the output folder.
static void probe_begin(const ProbeSettings *s, ProbeData *pd) {
    probe_data_load(s, pd);
    make_directories(s->out_dir);
}

static void check_model_fits_data(const CheckpointMeta *meta, const char *path, const TokenDataset *data,
                                  const char *data_dir) {
    if (meta->model.vocab_size != data->palette.colors || meta->model.image_height != data->height ||
        meta->model.image_width != data->width)
        die("%s is a model of %d colors at %dx%d, but %s holds %d colors at %dx%d", path, meta->model.vocab_size,
            meta->model.image_height, meta->model.image_width, data_dir, data->palette.colors, data->height,
            data->width);
}

// --- Results files --------------------------------------------------------------------

static int best_layer(const ProbeResults *r) {
    int best = 0;
    for (int l = 1; l < r->num_layers; l++)
        if (r->layers[l].accuracy > r->layers[best].accuracy) best = l;
    return best;
}

static void write_results_csv(const char *path, const ProbeResults *r) {
    AtomicFile af;
    atomic_open(&af, path);
    fprintf(af.file, "layer,accuracy,eval_loss,l2,holdout_accuracy,grad_norm,iterations\n");
    for (int l = 0; l < r->num_layers; l++) {
        const ProbeLayerResult *layer = &r->layers[l];
        fprintf(af.file, "%d,%.6f,%.6f,%g,%.6f,%.3e,%d\n", l, layer->accuracy, layer->eval_loss, layer->l2,
                layer->holdout_accuracy, layer->grad_norm, layer->iters);
    }
    atomic_commit(&af);
}

static void write_results_json(const char *path, const ProbeResults *r, const ProbeSettings *s, const ProbeData *pd) {
    const int best = best_layer(r);
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_BLOCK);
    json_string(&w, "model", r->model);
    json_uint(&w, "step", r->step);
    json_string(&w, "eval_split", s->eval_split);
    json_int(&w, "train_images", pd->n_train);
    json_int(&w, "eval_images", pd->n_eval);
    json_real(&w, "eval_gen_loss", "%.6f", r->gen_loss);
    json_int(&w, "best_layer", best);
    json_real(&w, "best_accuracy", "%.6f", r->layers[best].accuracy);
    json_array_begin(&w, "layers", JSON_BLOCK);
    for (int l = 0; l < r->num_layers; l++) {
        const ProbeLayerResult *layer = &r->layers[l];
        json_object_begin(&w, NULL, JSON_INLINE);
        json_int(&w, "layer", l);
        json_real(&w, "accuracy", "%.6f", layer->accuracy);
        json_real(&w, "eval_loss", "%.6f", layer->eval_loss);
        json_real(&w, "l2", "%g", layer->l2);
        json_real(&w, "holdout_accuracy", "%.6f", layer->holdout_accuracy);
        json_real(&w, "grad_norm", "%.3e", layer->grad_norm);
        json_int(&w, "iterations", layer->iters);
        json_object_end(&w);
    }
    json_array_end(&w);
    json_object_end(&w);
    json_write_file(&w, path);
}

// Writes OUT/<name>.csv and .json for one probed model; prints its best layer.
static void write_results(const ProbeSettings *s, const ProbeData *pd, const char *name, const ProbeResults *r) {
    char *csv_path = xasprintf("%s/%s.csv", s->out_dir, name);
    char *json_path = xasprintf("%s/%s.json", s->out_dir, name);
    write_results_csv(csv_path, r);
    write_results_json(json_path, r, s, pd);
    const int best = best_layer(r);
    printf("probe: %s, step %llu: best layer %d, %.2f%% on %lld %s images (%s)\n", r->model,
           (unsigned long long)r->step, best, 100 * r->layers[best].accuracy, (long long)pd->n_eval, s->eval_split,
           csv_path);
    free(csv_path);
    free(json_path);
}

// The generative loss and per-layer accuracies back from a probe-NNNNNNNN.json
// this stage wrote; false if the file is missing or not of that shape.
// (A GPU-only build reads no JSON files: it cannot fit probes, so it has none.)
static bool read_probe_json(const char *path, double *gen_loss, double *accuracy, int max_layers, int *layers) {
#ifdef IGPT_NO_CJSON
    (void)path, (void)gen_loss, (void)accuracy, (void)max_layers, (void)layers;
    return false;
#else
    cJSON *root = json_read_file(path);
    if (!root) return false;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "layers");
    *gen_loss = json_number(root, "eval_gen_loss");  // NaN when null
    *layers = 0;
    const cJSON *layer;
    cJSON_ArrayForEach(layer, list) {
        if (*layers == max_layers) break;
        accuracy[(*layers)++] = json_number(layer, "accuracy");
    }
    const bool ok = cJSON_HasObjectItem(root, "eval_gen_loss") && cJSON_IsArray(list) && *layers > 0;
    cJSON_Delete(root);
    return ok;
#endif
}

// OUT/probes.csv: one row per probed step of a run (step 0 first), in order.
static void write_run_table(const char *out_dir, const uint64_t *steps, int64_t n, int max_layers) {
    double *accuracy = xmalloc((size_t)max_layers * sizeof(double));
    char *table = xasprintf("%s/probes.csv", out_dir);
    AtomicFile af;
    atomic_open(&af, table);
    fprintf(af.file, "step,eval_gen_loss,best_layer,best_accuracy");
    for (int l = 0; l < max_layers; l++) fprintf(af.file, ",acc_layer_%d", l);
    fprintf(af.file, "\n");
    int rows = 0;
    for (int64_t i = -1; i < n; i++) {
        const uint64_t step = i < 0 ? 0 : steps[i];
        if (i >= 0 && step == 0) continue;
        char *path = xasprintf("%s/probe-%08llu.json", out_dir, (unsigned long long)step);
        double gen_loss;
        int layers;
        if (read_probe_json(path, &gen_loss, accuracy, max_layers, &layers)) {
            int best = 0;
            for (int l = 1; l < layers; l++)
                if (accuracy[l] > accuracy[best]) best = l;
            fprintf(af.file, "%llu,%.6f,%d,%.6f", (unsigned long long)step, gen_loss, best, accuracy[best]);
            for (int l = 0; l < layers; l++) fprintf(af.file, ",%.6f", accuracy[l]);
            fprintf(af.file, "\n");
            rows++;
        }
        free(path);
    }
    atomic_commit(&af);
    printf("probe: %d probed steps in %s\n", rows, table);
    free(table);
    free(accuracy);
}

// --- Models ---------------------------------------------------------------------------

// Features of one split for a model: from the cache when it matches, else computed and cached.
static void model_features_cached(Backend *m, uint32_t model_crc, uint64_t step, const TokenDataset *data,
                                  const int64_t *idx, int64_t n, const char *path, int batch, FeatureSet *fs) {
    const uint32_t data_crc = images_crc(data, idx, n);
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

// Fits a probe on every layer of the features, in parallel: one thread per
// layer, since the solver's products (n x d by d x 10) are too thin for many
// BLAS threads to help, while whole layers scale with the cores (13 xs
// layers on 2 cores: 51 s instead of 67 s).
static void probe_layers(const ProbeSettings *s, const FeatureSet *train, const FeatureSet *eval, uint64_t step,
                         ProbeLayerResult *r) {
    ProbeProtocol protocol = s->protocol;
    protocol.threads = 1;
    const int workers = s->protocol.threads < train->layers ? s->protocol.threads : train->layers;
#pragma omp parallel for schedule(dynamic, 1) num_threads(workers)
    for (int l = 0; l < train->layers; l++) {
        const double t0 = now_seconds();
        probe_layer(train, eval, l, &protocol, &r[l]);
        if (!s->quiet) {
#pragma omp critical(probe_report)
            fprintf(stderr,
                    "probe: step %llu layer %d/%d: %.2f%% (l2 %g, hold-out %.2f%%), |grad| %.1e, %d iterations, "
                    "%.1f s\n",
                    (unsigned long long)step, l, train->layers - 1, 100 * r[l].accuracy, r[l].l2,
                    100 * r[l].holdout_accuracy, r[l].grad_norm, r[l].iters, now_seconds() - t0);
        }
    }
}

// Probes one model (its parameters already in m) and writes its results.
static void probe_model(const ProbeSettings *s, const ProbeData *pd, Backend *m, const float *params, uint64_t step,
                        const char *what) {
    const uint32_t model_crc = crc32_update(0, params, m->num_params * sizeof(float));
    char *train_path = xasprintf("%s/features-%08llu-train.bin", s->out_dir, (unsigned long long)step);
    char *eval_path = xasprintf("%s/features-%08llu-%s.bin", s->out_dir, (unsigned long long)step, s->eval_split);
    FeatureSet train, eval;
    model_features_cached(m, model_crc, step, &pd->train, pd->train_idx, pd->n_train, train_path, s->batch, &train);
    model_features_cached(m, model_crc, step, &pd->eval, pd->eval_idx, pd->n_eval, eval_path, s->batch, &eval);
    // A build without the solver still extracts features (on the GPU): a full build fits them from the cache.
    if (probe_solver_missing())
        die("%s; the features are cached in %s and %s", probe_solver_missing(), train_path, eval_path);
    ProbeLayerResult *r = xcalloc((size_t)train.layers, sizeof *r);
    probe_layers(s, &train, &eval, step, r);
    char *name = xasprintf("probe-%08llu", (unsigned long long)step);
    const ProbeResults results = {
        .model = what, .step = step, .gen_loss = eval.gen_loss, .layers = r, .num_layers = train.layers};
    write_results(s, pd, name, &results);
    free(name);
    free(r);
    free(train_path);
    free(eval_path);
    features_free(&train);
    features_free(&eval);
}

// --- The three kinds of probe ---------------------------------------------------------

void probe_pixels(const ProbeSettings *s) {
    ProbeData pd;
    probe_begin(s, &pd);
    FeatureSet train, eval;
    pixel_features(&pd.train, pd.train_idx, pd.n_train, &train);
    pixel_features(&pd.eval, pd.eval_idx, pd.n_eval, &eval);
    ProbeLayerResult r;
    probe_layer(&train, &eval, 0, &s->protocol, &r);
    const ProbeResults results = {.model = "raw pixels", .step = 0, .gen_loss = NAN, .layers = &r, .num_layers = 1};
    write_results(s, &pd, "baseline-pixels", &results);
    features_free(&train);
    features_free(&eval);
    probe_data_free(&pd);
}

void probe_checkpoint(const ProbeSettings *s, const char *checkpoint) {
    ProbeData pd;
    probe_begin(s, &pd);
    CheckpointMeta meta;
    float *params, *adam_m, *adam_v;
    checkpoint_load(checkpoint, &meta, &params, &adam_m, &adam_v);
    check_model_fits_data(&meta, checkpoint, &pd.train, s->data_dir);
    Backend m;
    backend_create(&m, &s->backend, &meta.model, s->batch);
    backend_set_state(&m, params, NULL, NULL);
    probe_model(s, &pd, &m, params, meta.step, checkpoint);
    backend_free(&m);
    free(params);
    free(adam_m);
    free(adam_v);
    probe_data_free(&pd);
}

// The parameters of a run at `step` into params: those of its checkpoint,
// or at step 0 without one, the initialisation of the run's seed. Returns
// what was probed (allocated).
static char *run_params_at(const char *run_dir, const CheckpointMeta *run, uint64_t step, bool initial, float *params,
                           size_t num_params) {
    if (initial) {
        model_init_params(&run->model, params, run->seed);
        return xstrdup("random init");
    }
    char *path = checkpoint_path(run_dir, step);
    CheckpointMeta meta;
    float *loaded, *adam_m, *adam_v;
    checkpoint_load(path, &meta, &loaded, &adam_m, &adam_v);
    if (memcmp(&meta.model, &run->model, sizeof meta.model) != 0) die("%s: another model than the run's", path);
    memcpy(params, loaded, num_params * sizeof(float));
    free(loaded);
    free(adam_m);
    free(adam_v);
    return path;
}

void probe_run(const ProbeSettings *s, const char *run_dir) {
    ProbeData pd;
    probe_begin(s, &pd);
    uint64_t *steps;
    const int64_t n = checkpoint_steps(run_dir, &steps);
    if (n < 0) die("--run %s: no such folder", run_dir);
    if (n == 0) die("--run %s holds no checkpoints", run_dir);
    CheckpointMeta run;
    char *first = checkpoint_path(run_dir, steps[0]);
    checkpoint_read_meta(first, &run);
    check_model_fits_data(&run, first, &pd.train, s->data_dir);
    free(first);
    Backend m;
    backend_create(&m, &s->backend, &run.model, s->batch);
    float *params = xmalloc(m.num_params * sizeof(float));
    // i = -1: step 0, the randomly initialised model (unless the run has a checkpoint of step 0).
    for (int64_t i = -1; i < n; i++) {
        const uint64_t step = i < 0 ? 0 : steps[i];
        char *done = xasprintf("%s/probe-%08llu.csv", s->out_dir, (unsigned long long)step);
        const bool skip = file_size(done) >= 0 || (i < 0 && steps[0] == 0);
        free(done);
        if (skip) continue;
        char *what = run_params_at(run_dir, &run, step, i < 0, params, m.num_params);
        backend_set_state(&m, params, NULL, NULL);
        probe_model(s, &pd, &m, params, step, what);
        free(what);
    }
    write_run_table(s->out_dir, steps, n, run.model.n_layer + 1);
    free(params);
    backend_free(&m);
    free(steps);
    probe_data_free(&pd);
}
