// The probe stage: the images, each model's features (cached on disk), a
// probe fitted per layer, and the results files.
#include "probe/run.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/palette.h"
#include "model/params.h"
#include "probe/features.h"
#include "train/checkpoint.h"
#include "util/json.h"
#include "util/util.h"

// The images a probe trains and scores on: evenly spaced subsets of two splits.
typedef struct {
    TokenDataset train, eval, val;  // val: with --select val only (all of val.bin)
    int64_t *train_idx, *eval_idx, *val_idx;
    int64_t n_train, n_eval, n_val;
    uint32_t train_crc, eval_crc, val_crc;  // of the chosen images' tokens and labels
} ProbeData;

// What one probed model scored, layer by layer.
typedef struct {
    const char *model;   // what was probed: a checkpoint's path, "random init", "raw pixels"
    uint32_t model_crc;  // of its parameters (0: raw pixels)
    uint64_t step;
    double gen_loss;  // generative loss on the evaluation images; NaN: not computed
    const ProbeLayerResult *layers;
    int num_layers;
} ProbeResults;

// --- The images -----------------------------------------------------------------------

static void probe_data_load(const ProbeSettings *s, ProbeData *pd) {
    *pd = (ProbeData){0};
    char *train_path = xasprintf("%s/train.bin", s->data_dir);
    char *eval_path = xasprintf("%s/%s.bin", s->data_dir, s->eval_split);
    if (regular_file_size(train_path) < 0) die("%s: no such file (the probe trains on it)", train_path);
    if (regular_file_size(eval_path) < 0) die("%s: no such file; prepare it, or pick another --eval split", eval_path);
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
    pd->train_crc = images_crc(&pd->train, pd->train_idx, pd->n_train);
    pd->eval_crc = images_crc(&pd->eval, pd->eval_idx, pd->n_eval);
    if (s->protocol.select == PROBE_SELECT_VAL) {  // the L2 strength is chosen on all of val.bin
        char *val_path = xasprintf("%s/val.bin", s->data_dir);
        if (regular_file_size(val_path) < 0)
            die("%s: no such file (--select val chooses the L2 strength on it)", val_path);
        dataset_read(val_path, &pd->val);
        if (pd->val.num_classes != pd->train.num_classes || pd->val.palette.colors != pd->train.palette.colors)
            die("%s and %s were not prepared together (classes or palettes differ)", train_path, val_path);
        pd->n_val = pd->val.count;
        pd->val_idx = xmalloc((size_t)pd->n_val * sizeof(int64_t));
        evenly_spaced(pd->val.count, pd->n_val, pd->val_idx);
        pd->val_crc = images_crc(&pd->val, pd->val_idx, pd->n_val);
        free(val_path);
    }
    free(train_path);
    free(eval_path);
}

static void probe_data_free(ProbeData *pd) {
    free(pd->train_idx);
    free(pd->eval_idx);
    dataset_free(&pd->train);
    dataset_free(&pd->eval);
    if (pd->val_idx) {
        free(pd->val_idx);
        dataset_free(&pd->val);
    }
}

// What a probe says of data quantized with another palette than its model's.
static const char probe_palette_remedy[] =
    "probe it on data prepared with its run's palette (prepare --palette RUN_DATA/palette.bin)";

// --- What made a result -----------------------------------------------------------------

// A result holds only for the settings that made it, so each probe-NNNNNNNN.json
// records them: the model (a CRC of its parameters), the images (their count and
// a CRC of their tokens and labels, for each split) and the protocol. A later
// `probe --run` keeps a result only when all of them are the same again.

const char *probe_select_name(ProbeSelect select) {
    return select == PROBE_SELECT_KFOLD ? "kfold" : select == PROBE_SELECT_HOLDOUT ? "holdout" : "val";
}

static void write_settings(JsonWriter *w, const ProbeSettings *s, const ProbeData *pd, uint32_t model_crc) {
    char text[32];
    json_object_begin(w, "settings", JSON_BLOCK);
    snprintf(text, sizeof text, "%08x", model_crc);
    json_string(w, "model_crc", text);
    json_string(w, "eval", s->eval_split);
    json_int(w, "train_images", pd->n_train);
    snprintf(text, sizeof text, "%08x", pd->train_crc);
    json_string(w, "train_images_crc", text);
    json_int(w, "eval_images", pd->n_eval);
    snprintf(text, sizeof text, "%08x", pd->eval_crc);
    json_string(w, "eval_images_crc", text);
    json_array_begin(w, "l2", JSON_INLINE);
    for (int i = 0; i < s->protocol.num_l2; i++) {
        // %g unless it loses digits: the grid is compared exactly when read back.
        const double l2 = s->protocol.l2_grid[i];
        snprintf(text, sizeof text, "%g", l2);
        json_real(w, NULL, strtod(text, NULL) == l2 ? "%g" : "%.17g", l2);
    }
    json_array_end(w);
    json_int(w, "max_iters", s->protocol.max_iters);
    // A string: JSON numbers are read as doubles, exact only up to 2^53.
    snprintf(text, sizeof text, "%llu", (unsigned long long)s->protocol.seed);
    json_string(w, "seed", text);
    json_string(w, "select", probe_select_name(s->protocol.select));
    json_int(w, "folds", s->protocol.select == PROBE_SELECT_KFOLD ? s->protocol.folds : 0);
    if (s->protocol.select == PROBE_SELECT_VAL) {
        json_int(w, "val_images", pd->n_val);
        snprintf(text, sizeof text, "%08x", pd->val_crc);
        json_string(w, "val_images_crc", text);
    }
    json_object_end(w);
}

// The L2 grid as the user types it: "1,0.1,0.01".
static void format_l2_grid(const double *grid, int n, char *text, size_t cap) {
    size_t len = 0;
    text[0] = '\0';
    for (int i = 0; i < n && len < cap; i++) len += (size_t)snprintf(text + len, cap - len, i ? ",%g" : "%g", grid[i]);
}

#ifndef IGPT_NO_CJSON
enum { MAX_RECORDED_L2 = 64 };  // more than --l2 takes (16)

static const char *json_text(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : "";
}

static bool same_crc(const cJSON *settings, const char *key, uint32_t crc) {
    char text[16];
    snprintf(text, sizeof text, "%08x", crc);
    return strcmp(json_text(settings, key), text) == 0;
}

// How the recorded settings differ from these, as the end of "it was made ..."
// (allocated), or NULL when they are the same. model_crc NULL: the model is
// not compared (its checkpoint is gone).
static char *settings_difference(const cJSON *recorded, const ProbeSettings *s, const ProbeData *pd,
                                 const uint32_t *model_crc) {
    if (!cJSON_IsObject(recorded)) return xstrdup("by an igpt that kept no record of its settings");
    const ProbeProtocol *p = &s->protocol;
    if (strcmp(json_text(recorded, "eval"), s->eval_split) != 0)
        return xasprintf("with --eval %s, now %s", json_text(recorded, "eval"), s->eval_split);
    const double train_images = json_number(recorded, "train_images"),
                 eval_images = json_number(recorded, "eval_images");
    if (train_images != (double)pd->n_train)
        return xasprintf("with --train-images %.0f, now %lld", train_images, (long long)pd->n_train);
    if (eval_images != (double)pd->n_eval)
        return xasprintf("with --eval-images %.0f, now %lld", eval_images, (long long)pd->n_eval);
    double grid[MAX_RECORDED_L2];
    int n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(recorded, "l2")) {
        if (n < MAX_RECORDED_L2) grid[n] = cJSON_IsNumber(item) ? item->valuedouble : NAN;
        n++;
    }
    bool same_grid = n == p->num_l2;
    for (int i = 0; same_grid && i < n; i++) same_grid = grid[i] == p->l2_grid[i];
    if (!same_grid) {
        char was[256], now[256];
        format_l2_grid(grid, n < MAX_RECORDED_L2 ? n : MAX_RECORDED_L2, was, sizeof was);
        format_l2_grid(p->l2_grid, p->num_l2, now, sizeof now);
        return xasprintf("with --l2 %s, now %s", was, now);
    }
    if (json_number(recorded, "max_iters") != (double)p->max_iters)
        return xasprintf("with --max-iters %.0f, now %d", json_number(recorded, "max_iters"), p->max_iters);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed);
    if (strcmp(json_text(recorded, "seed"), seed) != 0)
        return xasprintf("with --seed %s, now %s", json_text(recorded, "seed"), seed);
    if (strcmp(json_text(recorded, "select"), probe_select_name(p->select)) != 0)
        return xasprintf("with --select %s, now %s",
                         *json_text(recorded, "select") ? json_text(recorded, "select") : "holdout (an older igpt)",
                         probe_select_name(p->select));
    const int folds = p->select == PROBE_SELECT_KFOLD ? p->folds : 0;
    if (json_number(recorded, "folds") != (double)folds)
        return xasprintf("with --folds %.0f, now %d", json_number(recorded, "folds"), folds);
    if (p->select == PROBE_SELECT_VAL && !same_crc(recorded, "val_images_crc", pd->val_crc))
        return xasprintf("from other validation images than %s/val.bin holds now", s->data_dir);
    if (!same_crc(recorded, "train_images_crc", pd->train_crc))
        return xasprintf("from other training images than %s/train.bin holds now", s->data_dir);
    if (!same_crc(recorded, "eval_images_crc", pd->eval_crc))
        return xasprintf("from other %s images than %s/%s.bin holds now", s->eval_split, s->data_dir, s->eval_split);
    if (model_crc && !same_crc(recorded, "model_crc", *model_crc))
        return xstrdup("from other parameters than its checkpoint holds now");
    return NULL;
}
#endif

// Why the result recorded in json_path does not hold for these settings (allocated),
// or NULL when it does. A result without its record (an older igpt's, or a
// probe stopped between its .csv and its .json) is never reused.
static char *stale_result(const char *json_path, const ProbeSettings *s, const ProbeData *pd,
                          const uint32_t *model_crc) {
#ifdef IGPT_NO_CJSON
    (void)json_path, (void)s, (void)pd, (void)model_crc;
    return xstrdup("by a probe whose record this igpt cannot read");
#else
    cJSON *root = json_read_file(json_path);
    if (!root) return xstrdup("by a probe that left no readable .json record");
    char *why = settings_difference(cJSON_GetObjectItemCaseSensitive(root, "settings"), s, pd, model_crc);
    cJSON_Delete(root);
    return why;
#endif
}

// --- Results files --------------------------------------------------------------------

static int best_layer(const ProbeResults *r) {
    int best = 0;
    for (int l = 1; l < r->num_layers; l++)
        if (r->layers[l].accuracy > r->layers[best].accuracy) best = l;
    return best;
}

// What layer l of a probed model is: a block's normalised input, or the final
// norm's output (the last of a model's n_layer + 1), or the pixels.
static void layer_name(const ProbeResults *r, int l, char *name, size_t cap) {
    if (r->model_crc == 0 && r->num_layers == 1) snprintf(name, cap, "raw pixels");
    else if (l == r->num_layers - 1) snprintf(name, cap, "final norm");
    else snprintf(name, cap, "block %d input", l);
}

static void write_results_csv(const char *path, const ProbeResults *r) {
    AtomicFile af;
    atomic_open(&af, path);
    fprintf(af.file,
            "layer,accuracy,eval_loss,l2,holdout_accuracy,grad_norm,iterations,accuracy_se,holdout_se,eval_images,"
            "holdout_images,l2_at_grid_end,name\n");
    for (int l = 0; l < r->num_layers; l++) {
        const ProbeLayerResult *layer = &r->layers[l];
        char name[32];
        layer_name(r, l, name, sizeof name);
        fprintf(af.file, "%d,%.6f,%.6f,%g,%.6f,%.3e,%d,%.6f,%.6f,%lld,%lld,%d,%s\n", l, layer->accuracy,
                layer->eval_loss, layer->l2, layer->holdout_accuracy, layer->grad_norm, layer->iters,
                layer->accuracy_se, layer->holdout_se, (long long)layer->eval_images, (long long)layer->holdout_images,
                layer->l2_at_grid_end, name);
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
    json_real(&w, "best_accuracy_se", "%.6f", r->layers[best].accuracy_se);
    json_string(&w, "select", probe_select_name(s->protocol.select));
    write_settings(&w, s, pd, r->model_crc);
    json_array_begin(&w, "layers", JSON_BLOCK);
    for (int l = 0; l < r->num_layers; l++) {
        const ProbeLayerResult *layer = &r->layers[l];
        char name[32];
        layer_name(r, l, name, sizeof name);
        json_object_begin(&w, NULL, JSON_INLINE);
        json_int(&w, "layer", l);
        json_string(&w, "name", name);
        json_real(&w, "accuracy", "%.6f", layer->accuracy);
        json_real(&w, "accuracy_se", "%.6f", layer->accuracy_se);
        json_real(&w, "eval_loss", "%.6f", layer->eval_loss);
        json_real(&w, "l2", "%g", layer->l2);
        json_bool(&w, "l2_at_grid_end", layer->l2_at_grid_end);
        json_real(&w, "holdout_accuracy", "%.6f", layer->holdout_accuracy);
        json_real(&w, "holdout_se", "%.6f", layer->holdout_se);
        json_int(&w, "holdout_images", layer->holdout_images);
        json_array_begin(&w, "holdout_by_l2", JSON_INLINE);
        for (int i = 0; i < s->protocol.num_l2; i++) json_real(&w, NULL, "%.6f", layer->holdout_by_l2[i]);
        json_array_end(&w);
        json_real(&w, "grad_norm", "%.3e", layer->grad_norm);
        json_int(&w, "iterations", layer->iters);
        json_object_end(&w);
    }
    json_array_end(&w);
    json_object_end(&w);
    json_write_file(&w, path);
}

// One line when some layer's choice is an end of the grid: the best strength
// may lie beyond it.
static void say_grid_ends(const ProbeSettings *s, const ProbeResults *r) {
    char layers[256] = "";
    size_t len = 0;
    int count = 0;
    for (int l = 0; l < r->num_layers && len < sizeof layers; l++)
        if (r->layers[l].l2_at_grid_end) {
            len +=
                (size_t)snprintf(layers + len, sizeof layers - len, "%s%d (%g)", count ? ", " : "", l, r->layers[l].l2);
            count++;
        }
    if (count == 0) return;
    char grid[256];
    format_l2_grid(s->protocol.l2_grid, s->protocol.num_l2, grid, sizeof grid);
    printf("probe: %s, step %llu: layer%s %s chose an end of the L2 grid (%s): widen --l2 to be sure it is the best\n",
           r->model, (unsigned long long)r->step, count > 1 ? "s" : "", layers, grid);
}

// Writes OUT/<name>.csv and .json for one probed model; prints its best layer.
static void write_results(const ProbeSettings *s, const ProbeData *pd, const char *name, const ProbeResults *r) {
    char *csv_path = xasprintf("%s/%s.csv", s->out_dir, name);
    char *json_path = xasprintf("%s/%s.json", s->out_dir, name);
    make_directories(s->out_dir);  // only now: a probe that fails leaves no folder behind
    write_results_csv(csv_path, r);
    write_results_json(json_path, r, s, pd);
    const int best = best_layer(r);
    char how[64];
    if (s->protocol.select == PROBE_SELECT_KFOLD) snprintf(how, sizeof how, "L2 by %d-fold CV", s->protocol.folds);
    else if (s->protocol.select == PROBE_SELECT_HOLDOUT) snprintf(how, sizeof how, "L2 by a 10%% hold-out");
    else snprintf(how, sizeof how, "L2 on %lld val images, refit on train + val", (long long)pd->n_val);
    printf("probe: %s, step %llu: best layer %d, %.2f%% \u00b1 %.2f on %lld %s images (%s; %s)\n", r->model,
           (unsigned long long)r->step, best, 100 * r->layers[best].accuracy, 100 * r->layers[best].accuracy_se,
           (long long)pd->n_eval, s->eval_split, how, csv_path);
    say_grid_ends(s, r);
    free(csv_path);
    free(json_path);
}

// The generative loss and per-layer accuracies back from a probe-NNNNNNNN.json
// this stage wrote; false if the file is missing or not of that shape.
// (A GPU-only build reads no JSON files: it cannot fit probes, so it has none.)
typedef struct {
    double gen_loss, eval_images;
    double *accuracy, *accuracy_se;  // per layer
    int layers;
} RecordedProbe;

static bool read_probe_json(const char *path, RecordedProbe *rec, int max_layers) {
#ifdef IGPT_NO_CJSON
    (void)path, (void)rec, (void)max_layers;
    return false;
#else
    cJSON *root = json_read_file(path);
    if (!root) return false;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "layers");
    rec->gen_loss = json_number(root, "eval_gen_loss");  // NaN when null
    rec->eval_images = json_number(root, "eval_images");
    int *layers = &rec->layers;
    *layers = 0;
    const cJSON *layer;
    cJSON_ArrayForEach(layer, list) {
        if (*layers == max_layers) break;
        rec->accuracy_se[*layers] = json_number(layer, "accuracy_se");  // NaN in an older igpt's results
        rec->accuracy[(*layers)++] = json_number(layer, "accuracy");
    }
    const bool ok = cJSON_HasObjectItem(root, "eval_gen_loss") && cJSON_IsArray(list) && *layers > 0;
    cJSON_Delete(root);
    return ok;
#endif
}

static int compare_steps(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

// The steps of every probe-NNNNNNNN.json in out_dir and of the run's
// checkpoints (and step 0), in order, each once (allocated).
static int64_t results_steps(const char *out_dir, const uint64_t *steps, int64_t n, uint64_t **out) {
    int64_t count = 0, cap = n + 16;
    uint64_t *all = xmalloc((size_t)cap * sizeof *all);
    all[count++] = 0;
    for (int64_t i = 0; i < n; i++) all[count++] = steps[i];
    DIR *dir = opendir(out_dir);
    for (struct dirent *e; dir && (e = readdir(dir));) {
        unsigned long long step;
        int end = 0;
        if (sscanf(e->d_name, "probe-%8llu.json%n", &step, &end) != 1 || end != 19 || e->d_name[end]) continue;
        if (count == cap) all = xrealloc(all, (size_t)(cap *= 2) * sizeof *all);
        all[count++] = step;
    }
    if (dir) closedir(dir);
    qsort(all, (size_t)count, sizeof *all, compare_steps);
    int64_t unique = 0;
    for (int64_t i = 0; i < count; i++)
        if (unique == 0 || all[i] != all[unique - 1]) all[unique++] = all[i];
    *out = all;
    return unique;
}

// OUT/probes.csv: one row per probed step of a run, in order. Every step with
// a checkpoint (and step 0) was just checked or probed with these settings;
// the result of a step whose checkpoint is gone (rotated away by --keep-last)
// is listed when it was made with these settings too, and left out, in one
// line, when not.
static void write_run_table(const ProbeSettings *s, const ProbeData *pd, const uint64_t *steps, int64_t n,
                            int max_layers) {
    RecordedProbe rec = {.accuracy = xmalloc((size_t)max_layers * sizeof(double)),
                         .accuracy_se = xmalloc((size_t)max_layers * sizeof(double))};
    char *table = xasprintf("%s/probes.csv", s->out_dir);
    make_directories(s->out_dir);
    uint64_t *listed;
    const int64_t num_listed = results_steps(s->out_dir, steps, n, &listed);
    AtomicFile af;
    atomic_open(&af, table);
    fprintf(af.file, "step,eval_gen_loss,best_layer,best_accuracy");
    for (int l = 0; l < max_layers; l++) fprintf(af.file, ",acc_layer_%d", l);
    fprintf(af.file, ",eval_images,best_accuracy_se\n");  // new columns go at the end: readers count from the start
    int rows = 0;
    for (int64_t i = 0, k = 0; i < num_listed; i++) {
        const uint64_t step = listed[i];
        while (k < n && steps[k] < step) k++;
        const bool has_model = step == 0 || (k < n && steps[k] == step);
        char *path = xasprintf("%s/probe-%08llu.json", s->out_dir, (unsigned long long)step);
        char *why = has_model ? NULL : stale_result(path, s, pd, NULL);
        if (why) printf("probe: %s (its checkpoint is gone) was made %s: left out of %s\n", path, why, table);
        if (!why && read_probe_json(path, &rec, max_layers)) {
            int best = 0;
            for (int l = 1; l < rec.layers; l++)
                if (rec.accuracy[l] > rec.accuracy[best]) best = l;
            fprintf(af.file, "%llu,%.6f,%d,%.6f", (unsigned long long)step, rec.gen_loss, best, rec.accuracy[best]);
            for (int l = 0; l < rec.layers; l++) fprintf(af.file, ",%.6f", rec.accuracy[l]);
            for (int l = rec.layers; l < max_layers; l++) fputc(',', af.file);  // the last two columns stay in place
            fprintf(af.file, ",%.0f,%.6f\n", rec.eval_images, rec.accuracy_se[best]);
            rows++;
        }
        free(why);
        free(path);
    }
    atomic_commit(&af);
    printf("probe: %d probed steps in %s\n", rows, table);
    free(listed);
    free(table);
    free(rec.accuracy);
    free(rec.accuracy_se);
}

// --- Models ---------------------------------------------------------------------------

// Features are only worth probing when every value is a number: a model with
// NaN or infinite parameters gives NaN features, and a solver fed them fits
// nothing and reports chance accuracy as if it were a result.
static void check_features_finite(const FeatureSet *fs, const char *what, const char *split, bool model) {
    const int64_t per_layer = fs->count * fs->dim;
    for (int l = 0; l < fs->layers; l++) {
        int64_t bad = 0;
        for (int64_t i = 0; i < fs->count; i++) {
            const float *row = fs->values + ((size_t)i * fs->layers + l) * fs->dim;
            for (int j = 0; j < fs->dim; j++) bad += !isfinite(row[j]);
        }
        if (bad)
            die("%s: layer %d's features of the %lld %s images hold %lld non-finite values (NaN or infinity) of "
                "%lld%s; no probe written",
                what, l, (long long)fs->count, split, (long long)bad, (long long)per_layer,
                model ? ": are its parameters finite? (./igpt info checks a checkpoint)" : "");
    }
    if (model && !isfinite(fs->gen_loss))
        die("%s: its generative loss on the %s images is not finite (%g); no probe written", what, split, fs->gen_loss);
}

// A split's features from the cache in `path` when it holds this model's
// features of these images; false (and nothing in *fs) when it must be computed.
// The cache is derived data: a stale one is said and recomputed, not refused.
static bool cached_features(const char *path, const Backend *m, uint32_t model_crc, uint32_t data_crc, int64_t n,
                            FeatureSet *fs) {
    if (file_size(path) < 0) return false;
    features_load(path, fs);
    const bool same_model = fs->model_crc == model_crc && fs->layers == m->cfg.n_layer + 1 && fs->dim == m->cfg.d_model;
    if (same_model && fs->data_crc == data_crc && fs->count == n) return true;
    printf("probe: %s holds features of %s: recomputing\n", path, same_model ? "other images" : "another model");
    features_free(fs);
    return false;
}

// One split's features for a model: from the cache when it holds them, else computed.
typedef struct {
    const char *split;  // "train", "val", "test"
    const TokenDataset *data;
    const int64_t *idx;
    int64_t n;
    uint32_t crc;
    FeatureSet *fs;
    char *path;
    bool cached;
} SplitFeatures;

// The splits' features for a model (train, eval, and val with --select val):
// cached ones read back, the others computed; all checked before any is
// cached, so a bad model leaves no file.
static void probed_features(const ProbeSettings *s, const ProbeData *pd, Backend *m, uint32_t model_crc, uint64_t step,
                            const char *what, FeatureSet *train, FeatureSet *eval, FeatureSet *val) {
    SplitFeatures sp[3] = {
        {"train", &pd->train, pd->train_idx, pd->n_train, pd->train_crc, train},
        {s->eval_split, &pd->eval, pd->eval_idx, pd->n_eval, pd->eval_crc, eval},
        {"val", &pd->val, pd->val_idx, pd->n_val, pd->val_crc, val},
    };
    const int splits = s->protocol.select == PROBE_SELECT_VAL ? 3 : 2;
    bool all_cached = true;
    for (int i = 0; i < splits; i++) {
        sp[i].path = xasprintf("%s/features-%08llu-%s.bin", s->out_dir, (unsigned long long)step, sp[i].split);
        sp[i].cached = cached_features(sp[i].path, m, model_crc, sp[i].crc, sp[i].n, sp[i].fs);
        all_cached &= sp[i].cached;
    }
    for (int i = 0; i < splits; i++)
        if (!sp[i].cached) extract_features(m, sp[i].data, sp[i].idx, sp[i].n, s->batch, model_crc, step, sp[i].fs);
    for (int i = 0; i < splits; i++)
        check_features_finite(sp[i].fs, sp[i].cached ? sp[i].path : what, sp[i].split, true);
    if (!all_cached) make_directories(s->out_dir);
    for (int i = 0; i < splits; i++) {
        if (!sp[i].cached) features_save(sp[i].path, sp[i].fs);
        free(sp[i].path);
    }
}

// A solver that met numbers it cannot fit gives NaN: an error, never a result.
static void check_probe_finite(const ProbeLayerResult *r, int layers, const char *what) {
    for (int l = 0; l < layers; l++) {
        const char *bad = probe_result_not_finite(&r[l]);
        if (bad) die("%s: the probe of layer %d ended with a non-finite %s; no result written", what, l, bad);
    }
}

// The GPU's evaluator when there is one, else the CPU's (said once).
static ProbeEvaluator *gpu_or_cpu_evaluator(const ProbeBatchShape *shape, const double *X, int threads) {
    static bool said;
    const char *why = NULL;
    ProbeEvaluator *e = probe_gpu_evaluator_create(shape, X, &why);
    if (e) return e;
    if (!said) fprintf(stderr, "probe: %s: the probes are fitted on the CPU\n", why ? why : "no GPU probe solver");
    said = true;
    return probe_cpu_evaluator_create(shape, X, threads);
}

// Fits the probes of every layer together (probe.h), the products on every
// thread (or on the GPU when the features were computed there).
static void fit_layers(const ProbeSettings *s, const FeatureSet *train, const FeatureSet *val, const FeatureSet *eval,
                       uint64_t step, bool model, ProbeLayerResult *r) {
    ProbeProtocol protocol = s->protocol;
    protocol.verbose = !s->quiet;
    if (model && s->backend.device == DEVICE_CUDA) protocol.make_evaluator = gpu_or_cpu_evaluator;
    const double t0 = now_seconds();
    probe_layers(train, val, eval, &protocol, r);
    if (s->quiet) return;
    for (int l = 0; l < train->layers; l++)
        fprintf(stderr,
                "probe: step %llu layer %d/%d%s: %.2f%% \u00b1 %.2f (l2 %g, selection %.2f%%), |grad| %.1e, %d "
                "iterations\n",
                (unsigned long long)step, l, train->layers - 1,
                !model                   ? ""
                : l == train->layers - 1 ? " (final norm)"
                                         : "",
                100 * r[l].accuracy, 100 * r[l].accuracy_se, r[l].l2, 100 * r[l].holdout_accuracy, r[l].grad_norm,
                r[l].iters);
    fprintf(stderr, "probe: step %llu: %d layers fitted in %.1f s\n", (unsigned long long)step, train->layers,
            now_seconds() - t0);
}

static uint32_t parameters_crc(const Backend *m, const float *params) {
    return crc32_update(0, params, m->num_params * sizeof(float));
}

// Probes one model (its parameters already in m) and writes its results.
static void probe_model(const ProbeSettings *s, const ProbeData *pd, Backend *m, uint32_t model_crc, uint64_t step,
                        const char *what) {
    FeatureSet train, eval, val = {0};
    probed_features(s, pd, m, model_crc, step, what, &train, &eval, &val);
    ProbeLayerResult *r = xcalloc((size_t)train.layers, sizeof *r);
    fit_layers(s, &train, pd->n_val ? &val : NULL, &eval, step, true, r);
    check_probe_finite(r, train.layers, what);
    char *name = xasprintf("probe-%08llu", (unsigned long long)step);
    const ProbeResults results = {.model = what,
                                  .model_crc = model_crc,
                                  .step = step,
                                  .gen_loss = eval.gen_loss,
                                  .layers = r,
                                  .num_layers = train.layers};
    write_results(s, pd, name, &results);
    free(name);
    free(r);
    features_free(&train);
    features_free(&eval);
    if (pd->n_val) features_free(&val);
}

// --- The three kinds of probe ---------------------------------------------------------

void probe_pixels(const ProbeSettings *s) {
    ProbeData pd;
    probe_data_load(s, &pd);
    FeatureSet train, eval, val = {0};
    pixel_features(&pd.train, pd.train_idx, pd.n_train, &train);
    pixel_features(&pd.eval, pd.eval_idx, pd.n_eval, &eval);
    if (pd.n_val) pixel_features(&pd.val, pd.val_idx, pd.n_val, &val);
    char *palette = xasprintf("%s/palette.bin", s->data_dir);  // where the pixels' colors come from
    check_features_finite(&train, palette, "train", false);
    check_features_finite(&eval, palette, s->eval_split, false);
    if (pd.n_val) check_features_finite(&val, palette, "val", false);
    ProbeLayerResult r;
    fit_layers(s, &train, pd.n_val ? &val : NULL, &eval, 0, false, &r);
    check_probe_finite(&r, 1, "raw pixels");
    free(palette);
    const ProbeResults results = {.model = "raw pixels", .step = 0, .gen_loss = NAN, .layers = &r, .num_layers = 1};
    write_results(s, &pd, "baseline-pixels", &results);
    features_free(&train);
    features_free(&eval);
    if (pd.n_val) features_free(&val);
    probe_data_free(&pd);
}

void probe_checkpoint(const ProbeSettings *s, const char *checkpoint) {
    ProbeData pd;
    probe_data_load(s, &pd);
    CheckpointMeta meta;
    float *params;
    checkpoint_load_params(checkpoint, &meta, &params);
    check_model_fits_data(checkpoint, &meta.model, meta.palette_crc, &pd.train, s->data_dir, probe_palette_remedy);
    Backend m;
    backend_create(&m, &s->backend, &meta.model, s->batch);
    backend_set_state(&m, params, NULL, NULL);
    probe_model(s, &pd, &m, parameters_crc(&m, params), meta.step, checkpoint);
    backend_free(&m);
    free(params);
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
    float *loaded;
    checkpoint_load_params(path, &meta, &loaded);
    if (memcmp(&meta.model, &run->model, sizeof meta.model) != 0) die("%s: another model than the run's", path);
    memcpy(params, loaded, num_params * sizeof(float));
    free(loaded);
    return path;
}

// Whether step's probe must be (re)made: it has none yet, or one made with
// other settings (said in one line, then overwritten: the checkpoint is here
// to remake it from). A result made with these very settings is kept.
static bool needs_probe(const ProbeSettings *s, const ProbeData *pd, uint64_t step, uint32_t model_crc) {
    char *csv = xasprintf("%s/probe-%08llu.csv", s->out_dir, (unsigned long long)step);
    char *json = xasprintf("%s/probe-%08llu.json", s->out_dir, (unsigned long long)step);
    char *why = NULL;
    if (path_exists(csv) || path_exists(json)) {
        why = stale_result(json, s, pd, &model_crc);
        if (why) printf("probe: %s was made %s: recomputing\n", csv, why);
    }
    const bool needed = why || !path_exists(csv) || !path_exists(json);
    free(why);
    free(csv);
    free(json);
    return needed;
}

void probe_run(const ProbeSettings *s, const char *run_dir) {
    ProbeData pd;
    probe_data_load(s, &pd);
    uint64_t *steps;
    const int64_t n = checkpoint_steps(run_dir, &steps);
    if (n < 0) die("--run %s: no such folder", run_dir);
    if (n == 0) die("--run %s holds no checkpoints", run_dir);
    CheckpointMeta run;
    char *first = checkpoint_path(run_dir, steps[0]);
    checkpoint_read_meta(first, &run);
    check_model_fits_data(first, &run.model, run.palette_crc, &pd.train, s->data_dir, probe_palette_remedy);
    free(first);
    Backend m;
    backend_create(&m, &s->backend, &run.model, s->batch);
    float *params = xmalloc(m.num_params * sizeof(float));
    // i = -1: step 0, the randomly initialised model (unless the run has a checkpoint of step 0).
    for (int64_t i = -1; i < n; i++) {
        const uint64_t step = i < 0 ? 0 : steps[i];
        if (i < 0 && steps[0] == 0) continue;
        char *what = run_params_at(run_dir, &run, step, i < 0, params, m.num_params);
        const uint32_t model_crc = parameters_crc(&m, params);
        if (!needs_probe(s, &pd, step, model_crc)) {
            free(what);
            continue;
        }
        backend_set_state(&m, params, NULL, NULL);
        probe_model(s, &pd, &m, model_crc, step, what);
        free(what);
    }
    write_run_table(s, &pd, steps, n, run.model.n_layer + 1);
    free(params);
    backend_free(&m);
    free(steps);
    probe_data_free(&pd);
}
