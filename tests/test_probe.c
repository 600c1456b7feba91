// The linear-probe solver: against SciPy on a committed fixture, on
// separable data, and its standardisation.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/model.h"
#include "probe/features.h"
#include "probe/probe.h"
#include "test.h"
#include "train/checkpoint.h"
#include "util/json.h"

TEST(test_probe_solver_matches_scipy) {
    Fixture fx = {0};
    bool loaded = fixture_load("tests/fixtures/probe_reference.bin", &fx);
    CHECK(loaded, "tests/fixtures/probe_reference.bin loads (tests/reference/probe_reference.py writes it)");
    if (!loaded) return;
    const FixtureArray *X = fixture_get(&fx, "X"), *y32 = fixture_get(&fx, "y"), *W = fixture_get(&fx, "W");
    const FixtureArray *pred = fixture_get(&fx, "predictions");
    const double l2 = *(const double *)fixture_get(&fx, "l2")->data;
    const double objective = *(const double *)fixture_get(&fx, "objective")->data;
    const int64_t n = X->dims[0];
    const int d = (int)X->dims[1], k = (int)W->dims[0];
    uint16_t *y = xmalloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) y[i] = (uint16_t)((const int32_t *)y32->data)[i];
    ProbeProblem p = {.n = n, .d = d, .k = k, .X = X->data, .y = y};
    ProbeSolverOptions opt;
    probe_solver_defaults(&opt);
    opt.l2 = l2;
    opt.epsilon = 1e-8;
    opt.threads = 2;
    LinearProbe m;
    probe_fit(&p, &opt, NULL, &m);
    // Tolerances: the 1e-5 relative on the objective; same predictions.
    CHECK(fabs(m.objective - objective) < 1e-5 * objective, "objective %.10f vs SciPy %.10f", m.objective, objective);
    CHECK(m.status >= 0, "liblbfgs status %d", m.status);
    CHECK(m.grad_norm < 1e-5, "converged: gradient norm %.2e", m.grad_norm);
    uint16_t *predictions = xmalloc((size_t)n * 2);
    probe_score(&m, &p, 2, NULL, predictions);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) differ += predictions[i] != ((const int32_t *)pred->data)[i];
    CHECK(differ == 0, "%lld predictions differ from SciPy's", (long long)differ);
    double werr = 0;
    for (size_t i = 0; i < W->count; i++) werr = fmax(werr, fabs(m.w[i] - ((const double *)W->data)[i]));
    CHECK(werr < 1e-3, "weights within 1e-3 of SciPy's (strictly convex problem): %.2e", werr);
    free(predictions);
    free(y);
    linear_probe_free(&m);
    fixture_free(&fx);
}

TEST(test_probe_separable_data_is_solved) {
    // Two well-separated clusters per class in 5 dimensions: 100% accuracy.
    const int64_t n = 300;
    const int d = 5, k = 3;
    double *X = xmalloc((size_t)n * d * sizeof(double));
    uint16_t *y = xmalloc((size_t)n * 2);
    Rng rng;
    rng_init(&rng, 4, 0);
    for (int64_t i = 0; i < n; i++) {
        y[i] = (uint16_t)(i % k);
        for (int j = 0; j < d; j++) X[i * d + j] = (j == y[i] ? 6.0 : 0.0) + rng_uniform(&rng) - 0.5;
    }
    ProbeProblem p = {.n = n, .d = d, .k = k, .X = X, .y = y};
    ProbeSolverOptions opt;
    probe_solver_defaults(&opt);
    opt.l2 = 1e-4;
    LinearProbe m;
    probe_fit(&p, &opt, NULL, &m);
    double ce;
    double acc = probe_score(&m, &p, 2, &ce, NULL);
    CHECK(acc == 1.0, "separable classes: accuracy %.4f", acc);
    CHECK(ce < 0.05, "and confident: mean cross-entropy %.4f", ce);
    free(X);
    free(y);
    linear_probe_free(&m);
}

TEST(test_probe_standardize) {
    // Rows of 3 features with stride 4 (a layer inside a wider feature row).
    float X[4 * 4] = {1, 10, 5, 99, 3, 10, 7, 99, 5, 10, 9, 99, 7, 10, 11, 99};
    double mean[3], inv_std[3], out[12];
    feature_stats(X, 4, 3, 4, mean, inv_std);
    CHECK(fabs(mean[0] - 4) < 1e-12 && fabs(mean[1] - 10) < 1e-12 && fabs(mean[2] - 8) < 1e-12, "means");
    CHECK(fabs(1 / inv_std[0] - sqrt(5.0)) < 1e-12, "population std");
    CHECK(inv_std[1] == 1e6, "a constant feature gets std 1e-6, not a division by zero");
    standardize(X, 4, 3, 4, mean, inv_std, out);
    CHECK(fabs(out[0] + 3 / sqrt(5.0)) < 1e-12 && out[1] == 0.0 && fabs(out[11] - 3 / sqrt(5.0)) < 1e-12,
          "standardised values");
}

// --- ./igpt probe end to end -------------------------------------------------------

// A tiny run on 40 CIFAR-style 8x8 images with 16 colors: checkpoints at steps 3 and 6.
static char *probe_fixture_run(const char *name, int colors) {
    make_cifar_batches(test_path("cifar"), 8, 4);
    char *data = xstrdup(test_path("data-%d", colors));
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --colors %d --val 10 --no-preview --quiet",
                   test_path("cifar"), data, colors) == 0,
          "prepare: %s", cli_stderr());
    CHECK(
        run_igpt(
            "train --device cpu --data %s --out %s --steps 6 --checkpoint-every 3 --d-model 16 --n-layer 2 --n-head 2 "
            "--batch 4 --quiet",
            data, test_path("%s", name)) == 0,
        "train: %s", cli_stderr());
    return data;
}

TEST(test_probe_cli_checkpoint_and_run) {
    char *data = probe_fixture_run("run", 16);
    const char *ckpt = test_path("run/checkpoint-00000006.bin");
    // With the --l2 grid of the --run below, which then keeps this result.
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data, ckpt) == 0, "probe: %s",
          cli_stderr());
    CHECK(path_exists(test_path("run/probe/probe-00000006.csv")) &&
              path_exists(test_path("run/probe/probe-00000006.json")),
          "results written beside the run");
    char *csv = (char *)read_whole_file(test_path("run/probe/probe-00000006.csv"), NULL);
    int rows = 0;
    for (char *p = csv; p && *p; p++) rows += *p == '\n';
    CHECK(rows == 1 + 3, "header + one row per layer (L+1 = 3): %d lines", rows);
    free(csv);

    // The cached features are the model's: recompute them in-process for the same images.
    FeatureSet cached;
    features_load(test_path("run/probe/features-00000006-val.bin"), &cached);
    CheckpointMeta meta;
    float *params, *am, *av;
    checkpoint_load(ckpt, &meta, &params, &am, &av);
    Model m;
    model_create(&m, &meta.model, 10, 2);
    memcpy(m.params, params, m.num_params * 4);
    TokenDataset val;
    dataset_read(test_path("data-16/val.bin"), &val);
    model_forward(&m, val.tokens, (int)val.count);
    float *direct = xmalloc((size_t)val.count * 3 * 16 * 4);
    model_features(&m, (int)val.count, direct);
    CHECK(cached.count == val.count && cached.layers == 3 && cached.dim == 16, "feature file shape");
    double worst = 0;
    for (size_t i = 0; i < (size_t)val.count * 3 * 16; i++) worst = fmax(worst, fabs(direct[i] - cached.values[i]));
    CHECK(worst == 0.0, "cached features equal the forward pass's (max difference %.2e)", worst);
    CHECK(memcmp(cached.labels, val.labels, (size_t)val.count * 2) == 0, "with the images' labels");
    free(direct);
    free(params);
    free(am);
    free(av);
    model_free(&m);
    dataset_free(&val);
    features_free(&cached);

    // A whole run: step 0 (random init) and step 3 are new, step 6 is skipped.
    CHECK(run_igpt("probe --device cpu --data %s --run %s --l2 0.1 --quiet", data, test_path("run")) == 0,
          "probe --run: %s", cli_stderr());
    CHECK(path_exists(test_path("run/probe/probe-00000000.csv")) &&
              path_exists(test_path("run/probe/probe-00000003.csv")),
          "random init and every checkpoint probed");
    CHECK(strstr(cli_stdout(), "step 6") == NULL && strstr(cli_stdout(), "recomputing") == NULL,
          "a checkpoint already probed with these settings is skipped: %s", cli_stdout());
    char *table = (char *)read_whole_file(test_path("run/probe/probes.csv"), NULL);
    CHECK(table && strstr(table,
                          "step,eval_gen_loss,best_layer,best_accuracy,acc_layer_0,acc_layer_1,acc_layer_2,"
                          "eval_images,best_accuracy_se\n"),
          "run table header: %s", table ? table : "(missing)");
    // Random init has a zero head: uniform predictions, log(16) = 2.772589 nats/token.
    CHECK(table && strstr(table, "\n0,2.77258") && strstr(table, "\n3,") && strstr(table, "\n6,"),
          "rows for steps 0, 3 and 6: %s", table ? table : "");
    free(table);
    CHECK(run_igpt("probe --device cpu --data %s --baseline pixels --l2 1 --quiet", data) == 0 &&
              path_exists(test_path("data-16/probe/baseline-pixels.csv")),
          "pixel baseline: %s", cli_stderr());
    free(data);
}

TEST(test_probe_cli_bad_input) {
    char *data = probe_fixture_run("run", 16);
    char *data8 = probe_fixture_run("run8", 8);
    // Checkpoint and data with different palettes.
    int status = run_igpt("probe --device cpu --data %s --checkpoint %s --quiet", data8,
                          test_path("run/checkpoint-00000006.bin"));
    CHECK(status == 1 && strstr(cli_stderr(), "is a model of 16 colors at 8x8, but"), "color mismatch: %s",
          cli_stderr());
    // Missing evaluation split.
    unlink(test_path("data-16/test.bin"));
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --eval test --quiet", data,
                      test_path("run/checkpoint-00000006.bin"));
    CHECK(status == 1 && strstr(cli_stderr(), "test.bin: no such file"), "missing split: %s", cli_stderr());
    // A feature file of another model in the cache.
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data,
                   test_path("run/checkpoint-00000003.bin")) == 0,
          "probe step 3");
    make_directories(test_path("other/probe"));
    size_t n;
    uint8_t *f = read_whole_file(test_path("run/probe/features-00000003-train.bin"), &n);
    write_whole_file(test_path("other/probe/features-00000006-train.bin"), f, n);
    free(f);
    // The cache is derived data: features of another model are said and recomputed, not used.
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --out %s --l2 0.1 --quiet", data,
                      test_path("run/checkpoint-00000006.bin"), test_path("other/probe"));
    CHECK(
        status == 0 && strstr(cli_stdout(), "features-00000006-train.bin holds features of another model: recomputing"),
        "foreign features: %d %s %s", status, cli_stdout(), cli_stderr());
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --out %s --l2 0.1 --quiet", data,
                   test_path("run/checkpoint-00000006.bin"), test_path("clean/probe")) == 0,
          "probe step 6 in a clean folder: %s", cli_stderr());
    CHECK(files_equal(test_path("other/probe/features-00000006-train.bin"),
                      test_path("clean/probe/features-00000006-train.bin")) &&
              files_equal(test_path("other/probe/probe-00000006.csv"), test_path("clean/probe/probe-00000006.csv")),
          "and the recomputed features and results are those of a clean folder");
    CHECK(run_igpt("probe --device cpu --data %s --quiet", data) == 2, "no model given");
    CHECK(run_igpt("probe --device cpu --data %s --baseline edges", data) == 2, "unknown baseline");
    CHECK(run_igpt("probe --device cpu --data %s --run %s --quiet", data, test_path("nowhere")) == 1,
          "missing run folder");
    // A failed probe leaves no folder it would have made (the default: beside what is probed).
    CHECK(!path_exists(test_path("nowhere")), "no %s/probe left behind", test_path("nowhere"));
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --quiet", data, test_path("gone/c.bin"));
    CHECK(status == 1 && !path_exists(test_path("gone")), "a missing checkpoint leaves no folder: %d %s", status,
          cli_stderr());
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --out %s --quiet", data, test_path("gone/c.bin"),
                      test_path("made/by/probe"));
    CHECK(status == 1 && !path_exists(test_path("made")), "nor an --out folder: %d %s", status, cli_stderr());
    // A write that fails after the folders were made (a file-size limit stands in for a full disk): they go again.
    char *full = xasprintf(
        "sh -c \"ulimit -f 1; trap '' XFSZ; exec ./igpt probe --device cpu --data %s --checkpoint %s --out %s/ "
        "--l2 0.1 --quiet\" 2>%s",
        data, test_path("run/checkpoint-00000006.bin"), test_path("made/by/probe"), test_path("full.err"));
    status = system(full);
    char *err = (char *)read_whole_file(test_path("full.err"), NULL);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1 && err && strstr(err, "File too large") &&
              !path_exists(test_path("made")),
          "a failed write leaves no folder it made: %d %s", status, err ? err : "");
    free(err);
    free(full);
    free(data);
    free(data8);
}

// A probe's JSON stays valid JSON when the checkpoint's path has a double
// quote in it, and the run table reads the accuracies back from it.
TEST(test_probe_json_with_quote_in_path) {
    char *data = probe_fixture_run("run", 16);
    char *run = xstrdup(test_path("r\"un"));
    make_directories(run);
    size_t n;
    uint8_t *checkpoint = read_whole_file(test_path("run/checkpoint-00000006.bin"), &n);
    char *copy = xasprintf("%s/checkpoint-00000006.bin", run);
    write_whole_file(copy, checkpoint, n);
    CHECK(run_igpt("probe --device cpu --data %s --run '%s' --l2 0.1 --quiet", data, run) == 0, "probe --run: %s",
          cli_stderr());
    char *results = xasprintf("%s/probe/probe-00000006.json", run);
    cJSON *root = json_read_file(results);
    CHECK(root != NULL, "%s parses as JSON", results);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    CHECK(cJSON_IsString(model) && strcmp(model->valuestring, copy) == 0, "model: the checkpoint's path");
    cJSON_Delete(root);
    char *table_path = xasprintf("%s/probe/probes.csv", run);
    char *table = (char *)read_whole_file(table_path, NULL);
    CHECK(table && strstr(table, "\n0,2.77258") && strstr(table, "\n6,"), "rows for steps 0 and 6: %s",
          table ? table : "(missing)");
    free(table);
    free(table_path);
    free(results);
    free(copy);
    free(checkpoint);
    free(run);
    free(data);
}

TEST(test_train_probes_as_it_goes) {
    make_cifar_batches(test_path("cifar"), 8, 4);
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --colors 16 --val 10 --no-preview --quiet",
                   test_path("cifar"), test_path("data")) == 0,
          "prepare");
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 6 --checkpoint-every 100 --probe-every 3 "
                   "--probe-train-images 20 "
                   "--d-model 16 --n-layer 1 --n-head 2 --batch 4 --quiet",
                   test_path("data"), test_path("run")) == 0,
          "train with --probe-every: %s", cli_stderr());
    CHECK(path_exists(test_path("run/checkpoint-00000003.bin")), "a checkpoint is written for each probe");
    CHECK(path_exists(test_path("run/probe/probe-00000003.json")) &&
              path_exists(test_path("run/probe/probe-00000006.json")),
          "steps 3 and 6 probed during training");
    char *json = (char *)read_whole_file(test_path("run/probe/probe-00000003.json"), NULL);
    CHECK(json && strstr(json, "\"train_images\": 20"), "with the probe options passed on: %s", json ? json : "");
    free(json);
}

// A checkpoint with NaN parameters gives NaN features: the probe says so,
// naming the checkpoint and the layer, exits 1 and writes nothing; the same
// for NaN values in a feature cache whose CRCs are right.
TEST(test_probe_refuses_non_finite_features) {
    char *data = probe_fixture_run("run", 16);
    CheckpointMeta meta;
    checkpoint_read_meta(test_path("run/checkpoint-00000006.bin"), &meta);
    // checkpoint_save refuses to write a non-finite state, so the NaNs are planted in the
    // file's bytes and both CRCs made right again: a damaged file as the reader meets it.
    size_t n;
    uint8_t *bytes = read_whole_file(test_path("run/checkpoint-00000006.bin"), &n);
    const float nan = NAN;
    for (size_t i = meta.num_params / 2; i < meta.num_params; i++)  // the later layers' parameters
        memcpy(bytes + 256 + 4 * i, &nan, 4);                       // after the 256-byte header
    reseal_checkpoint(bytes, n);
    make_directories(test_path("nan"));
    const char *bad = test_path("nan/checkpoint-00000006.bin");
    write_whole_file(bad, bytes, n);
    free(bytes);
    int status = run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data, bad);
    CHECK(status == 1 && strstr(cli_stderr(), bad) && strstr(cli_stderr(), "layer ") &&
              strstr(cli_stderr(), "non-finite values (NaN or infinity)"),
          "NaN parameters: an error naming the checkpoint and the layer: %d %s", status, cli_stderr());
    CHECK(!path_exists(test_path("nan/probe")), "and no results folder, no feature cache");
    // Features cached with their CRCs right but a NaN inside.
    CHECK(run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data,
                   test_path("run/checkpoint-00000006.bin")) == 0,
          "probe step 6: %s", cli_stderr());
    const char *cache = test_path("run/probe/features-00000006-val.bin");
    FeatureSet fs;
    features_load(cache, &fs);
    fs.values[fs.dim + 3] = INFINITY;  // image 0, layer 1
    features_save(cache, &fs);
    features_free(&fs);
    unlink(test_path("run/probe/probe-00000006.csv"));
    unlink(test_path("run/probe/probe-00000006.json"));
    status = run_igpt("probe --device cpu --data %s --checkpoint %s --l2 0.1 --quiet", data,
                      test_path("run/checkpoint-00000006.bin"));
    CHECK(status == 1 && strstr(cli_stderr(), cache) && strstr(cli_stderr(), "layer 1's features") &&
              strstr(cli_stderr(), "hold 1 non-finite values"),
          "a NaN in the cache: an error naming the file, the layer and the count: %d %s", status, cli_stderr());
    CHECK(!path_exists(test_path("run/probe/probe-00000006.csv")), "no result written");
    free(data);
}

// The solver's own numbers: a result with a NaN loss is named, never taken.
TEST(test_probe_result_not_finite_is_named) {
    enum { N = 40, D = 3 };
    float train_values[N * D], eval_values[N * D];
    uint16_t labels[N];
    for (int i = 0; i < N; i++) {
        labels[i] = (uint16_t)(i % 2);
        for (int j = 0; j < D; j++)
            train_values[i * D + j] = eval_values[i * D + j] = (float)(labels[i] * 2 + j) + 0.1f * (float)(i % 5);
    }
    FeatureSet train = {.count = N, .layers = 1, .dim = D, .num_classes = 2, .labels = labels, .values = train_values};
    FeatureSet eval = train;
    eval.values = eval_values;
    const double grid[] = {0.1};
    const ProbeProtocol protocol = {.l2_grid = grid,
                                    .num_l2 = 1,
                                    .max_iters = 100,
                                    .seed = 1,
                                    .threads = 1,
                                    .select = PROBE_SELECT_KFOLD,
                                    .folds = 5};
    ProbeLayerResult r;
    probe_layers(&train, NULL, &eval, &protocol, &r);
    CHECK(probe_result_not_finite(&r) == NULL, "finite features: a finite result (accuracy %.3f)", r.accuracy);
    eval_values[5] = NAN;
    probe_layers(&train, NULL, &eval, &protocol, &r);
    const char *bad = probe_result_not_finite(&r);
    CHECK(bad && strcmp(bad, "evaluation loss") == 0, "a NaN feature: the evaluation loss is named: %s",
          bad ? bad : "(nothing)");
}

// probe --run keeps a result only when the settings that made it are the
// same; any other is said in one line and recomputed.
TEST(test_probe_results_tied_to_settings) {
    char *data = probe_fixture_run("run", 16);
#define PROBE_RUN "probe --device cpu --data %s --run %s --quiet"
    const char *run = test_path("run");
    CHECK(run_igpt(PROBE_RUN " --l2 0.1", data, run) == 0, "first probe: %s", cli_stderr());
    CHECK(run_igpt(PROBE_RUN " --l2 0.1", data, run) == 0 && !strstr(cli_stdout(), "best layer") &&
              !strstr(cli_stdout(), "recomputing"),
          "the same settings again: every result kept: %s", cli_stdout());
    struct {
        const char *flags, *said;
    } changes[] = {
        {"--l2 0.1,0.01", "probe-00000003.csv was made with --l2 0.1, now 0.1,0.01: recomputing"},
        {"--l2 0.1,0.01 --train-images 20", "probe-00000003.csv was made with --train-images 30, now 20: recomputing"},
        {"--l2 0.1,0.01 --train-images 20 --eval-images 5", "was made with --eval-images 10, now 5: recomputing"},
        {"--l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7", "was made with --seed 1234, now 7: recomputing"},
        {"--l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7 --max-iters 50",
         "was made with --max-iters 1000, now 50: recomputing"},
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        CHECK(run_igpt(PROBE_RUN " %s", data, run, changes[i].flags) == 0 && strstr(cli_stdout(), changes[i].said) &&
                  strstr(cli_stdout(), "step 0: best layer") && strstr(cli_stdout(), "step 6: best layer"),
              "%s: every step recomputed: %s %s", changes[i].flags, cli_stdout(), cli_stderr());
    }
    char *json = (char *)read_whole_file(test_path("run/probe/probe-00000006.json"), NULL);
    CHECK(json && strstr(json, "\"l2\": [0.1, 0.01]") && strstr(json, "\"seed\": \"7\"") &&
              strstr(json, "\"train_images\": 20"),
          "the result records its settings: %s", json ? json : "(missing)");
    free(json);
    // Another checkpoint in its place (a run trained again into the same folder), and a result without its record.
    size_t n;
    uint8_t *other = read_whole_file(test_path("run/checkpoint-00000006.bin"), &n);
    write_whole_file(test_path("run/checkpoint-00000003.bin"), other, n);
    free(other);
    unlink(test_path("run/probe/probe-00000000.json"));
    CHECK(run_igpt(PROBE_RUN " --l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7 --max-iters 50", data, run) ==
                  0 &&
              strstr(cli_stdout(), "probe-00000003.csv was made from other parameters than its checkpoint holds now") &&
              strstr(cli_stdout(), "features-00000003-train.bin holds features of another model: recomputing") &&
              strstr(cli_stdout(), "probe-00000000.csv was made by a probe that left no readable .json record") &&
              !strstr(cli_stdout(), "step 6: best layer"),
          "other parameters and a missing record: recomputed, step 6 kept: %s %s", cli_stdout(), cli_stderr());
    // A checkpoint rotated away: its result stays in the table while the settings match, and is never touched.
    unlink(test_path("run/checkpoint-00000003.bin"));
    CHECK(
        run_igpt(PROBE_RUN " --l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 7 --max-iters 50", data, run) == 0,
        "probe --run: %s", cli_stderr());
    char *table = (char *)read_whole_file(test_path("run/probe/probes.csv"), NULL);
    CHECK(table && strstr(table, "\n0,") && strstr(table, "\n3,") && strstr(table, "\n6,"),
          "the table keeps step 3, made with these settings: %s", table ? table : "(missing)");
    free(table);
    CHECK(run_igpt(PROBE_RUN " --l2 0.1,0.01 --train-images 20 --eval-images 5 --seed 8 --max-iters 50", data, run) ==
                  0 &&
              strstr(cli_stdout(),
                     "probe-00000003.json (its checkpoint is gone) was made with --seed 7, now 8: left "
                     "out of"),
          "with other settings it is left out, in one line: %s", cli_stdout());
    table = (char *)read_whole_file(test_path("run/probe/probes.csv"), NULL);
    CHECK(table && !strstr(table, "\n3,") && strstr(table, "\n6,") &&
              path_exists(test_path("run/probe/probe-00000003.json")),
          "and kept on disk: %s", table ? table : "(missing)");
    free(table);
#undef PROBE_RUN
    free(data);
}
