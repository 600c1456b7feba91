// ./igpt bench: throughput figures of the CPU code as one JSON line each
// (scripts/bench_cpu.sh and scripts/bench_probe.sh print them as tables).
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cpu_ops.h"
#include "model.h"
#include "probe.h"

static const char *const bench_help =
    "usage: ./igpt bench [--mode train|features|probe] [options]\n"
    "\n"
    "  --mode train     (default) forward + backward passes (no optimizer step) of the\n"
    "                   CPU reference on random tokens: tokens/s\n"
    "  --mode features  forward passes and probe features (./igpt probe's extraction): images/s\n"
    "  --mode probe     one layer of ./igpt probe's protocol (L2 chosen on a 10%% hold-out from\n"
    "                   the default grid, refit, score) on synthetic class-mixture features of\n"
    "                   --dim dimensions: seconds per layer\n"
    "\n"
    "  --config NAME, --side N, --colors N, --batch N   the model (default tiny, 16x16, 512 colors, batch 8)\n"
    "  --steps N, --warmup-steps N                      timed and untimed passes (default 5 and 2)\n"
    "  --dim N, --train-images N, --eval-images N       probe mode (default 256, 45000, 5000)\n"
    "  --threads N                                      worker threads (default: all cores)\n";

typedef struct {
    const char *mode, *config;
    int side, colors, batch, steps, warmup, threads, dim;
    int64_t train_images, eval_images;
} BenchArgs;

static void parse_args(int argc, char **argv, BenchArgs *a) {
    *a = (BenchArgs){.mode = "train", .config = "tiny", .side = 16, .colors = 512, .batch = 8, .steps = 5,
                     .warmup = 2, .dim = 256, .train_images = 45000, .eval_images = 5000};
    enum { O_MODE = 1000, O_CONFIG, O_SIDE, O_COLORS, O_BATCH, O_STEPS, O_WARMUP, O_THREADS, O_DIM, O_TRAIN, O_EVAL,
           O_HELP };
    static const struct option options[] = {
        {"mode", required_argument, 0, O_MODE},         {"config", required_argument, 0, O_CONFIG},
        {"side", required_argument, 0, O_SIDE},         {"colors", required_argument, 0, O_COLORS},
        {"batch", required_argument, 0, O_BATCH},       {"steps", required_argument, 0, O_STEPS},
        {"warmup-steps", required_argument, 0, O_WARMUP}, {"threads", required_argument, 0, O_THREADS},
        {"dim", required_argument, 0, O_DIM},           {"train-images", required_argument, 0, O_TRAIN},
        {"eval-images", required_argument, 0, O_EVAL},  {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case O_MODE: a->mode = optarg; break;
        case O_CONFIG: a->config = optarg; break;
        case O_SIDE: a->side = (int)parse_int_option("--side", optarg, 2, 256); break;
        case O_COLORS: a->colors = (int)parse_int_option("--colors", optarg, 2, 65536); break;
        case O_BATCH: a->batch = (int)parse_int_option("--batch", optarg, 1, 4096); break;
        case O_STEPS: a->steps = (int)parse_int_option("--steps", optarg, 1, 100000); break;
        case O_WARMUP: a->warmup = (int)parse_int_option("--warmup-steps", optarg, 0, 100000); break;
        case O_THREADS: a->threads = (int)parse_int_option("--threads", optarg, 1, 4096); break;
        case O_DIM: a->dim = (int)parse_int_option("--dim", optarg, 1, 65536); break;
        case O_TRAIN: a->train_images = parse_int_option("--train-images", optarg, 20, INT64_MAX / 4); break;
        case O_EVAL: a->eval_images = parse_int_option("--eval-images", optarg, 1, INT64_MAX / 4); break;
        case O_HELP: fputs(bench_help, stdout); exit(0);
        default: bad_option("bench", c, argv);
        }
    }
    if (optind < argc) usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (strcmp(a->mode, "train") && strcmp(a->mode, "features") && strcmp(a->mode, "probe"))
        usage_error("bench", "--mode must be train, features or probe, got '%s'", a->mode);
}

static void bench_model(const BenchArgs *a, int threads, bool train) {
    ModelConfig cfg = {.vocab_size = a->colors, .seq_len = a->side * a->side, .image_height = a->side,
                       .image_width = a->side, .norm = NORM_IGPT};
    if (!model_config_named(a->config, &cfg)) usage_error("bench", "unknown --config '%s'", a->config);
    const int batch = a->batch;
    Model m;
    model_create(&m, &cfg, batch, threads);
    model_init_params(&cfg, m.params, 1);
    uint16_t *tokens = xmalloc((size_t)batch * cfg.seq_len * sizeof(uint16_t));
    float *features = xmalloc((size_t)batch * (cfg.n_layer + 1) * cfg.d_model * sizeof(float));
    Rng rng;
    rng_init(&rng, 1, 0);
    for (int i = 0; i < batch * cfg.seq_len; i++) tokens[i] = (uint16_t)rng_below(&rng, (uint64_t)a->colors);
    double elapsed = 0.0;
    for (int s = 0; s < a->warmup + a->steps; s++) {
        double t0 = now_seconds();
        if (train) {
            model_zero_grads(&m);
            model_forward(&m, tokens, batch);
            model_backward(&m, tokens, batch, 1.0f / ((float)batch * cfg.seq_len));
        } else {
            model_forward(&m, tokens, batch);
            model_features(&m, batch, features);
        }
        if (s >= a->warmup) elapsed += now_seconds() - t0;
    }
    const double per_pass = elapsed / a->steps, images_per_s = batch / per_pass;
    printf("{\"impl\": \"igpt-cpu\", \"mode\": \"%s\", \"config\": \"%s\", \"side\": %d, \"batch\": %d, "
           "\"threads\": %d, \"tokens_per_s\": %.1f, \"images_per_s\": %.2f, \"step_s\": %.4f, \"parameters\": %zu}\n",
           a->mode, a->config, a->side, batch, threads, images_per_s * cfg.seq_len, images_per_s, per_pass,
           m.num_params);
    free(tokens);
    free(features);
    model_free(&m);
}

// Features of `count` images of 10 classes: a class mean plus noise that is
// correlated through 16 shared factors, scaled so that a linear probe lands
// between chance and perfect, like a real layer's features.
static void synthetic_features(int64_t count, int dim, uint64_t seed, const float *class_means,
                               const float *factors, FeatureSet *fs) {
    *fs = (FeatureSet){.count = count, .layers = 1, .dim = dim, .num_classes = 10, .gen_loss = NAN};
    fs->labels = xmalloc((size_t)count * sizeof(uint16_t));
    fs->values = xmalloc((size_t)count * dim * sizeof(float));
    Rng rng;
    rng_init(&rng, seed, 0x73796e66ull /* "synf" */);
    double z[16];
    for (int64_t i = 0; i < count; i++) {
        const int c = (int)(i % 10);
        fs->labels[i] = (uint16_t)c;
        for (int f = 0; f < 16; f++) z[f] = rng_normal(&rng);
        float *x = fs->values + i * dim;
        for (int j = 0; j < dim; j++) {
            double v = class_means[c * dim + j] + rng_normal(&rng);
            for (int f = 0; f < 16; f++) v += z[f] * factors[f * dim + j];
            x[j] = (float)v;
        }
    }
}

static void bench_probe(const BenchArgs *a, int threads) {
    const int dim = a->dim;
    float *means = xmalloc((size_t)10 * dim * sizeof(float)), *factors = xmalloc((size_t)16 * dim * sizeof(float));
    Rng rng;
    rng_init(&rng, 7, 0);
    const double mean_scale = 1.0 / sqrt((double)dim);  // class separation independent of dim
    for (int i = 0; i < 10 * dim; i++) means[i] = (float)(mean_scale * 2.0 * rng_normal(&rng));
    for (int f = 0; f < 16; f++)  // a decaying spectrum of shared directions, as in real layers
        for (int j = 0; j < dim; j++) factors[f * dim + j] = (float)(4.0 / (f + 1) * rng_normal(&rng));
    FeatureSet train, eval;
    synthetic_features(a->train_images, dim, 1, means, factors, &train);
    synthetic_features(a->eval_images, dim, 2, means, factors, &eval);
    static const double grid[] = {1, 0.1, 0.01, 0.001, 0.0001};
    ProbeProtocol protocol = {.l2_grid = grid, .num_l2 = 5, .max_iters = 1000, .seed = 1234, .threads = threads};
    ProbeLayerResult r;
    double t0 = now_seconds();
    probe_layer(&train, &eval, 0, &protocol, &r);
    double seconds = now_seconds() - t0;
    printf("{\"impl\": \"igpt-cpu\", \"mode\": \"probe\", \"dim\": %d, \"train_images\": %lld, \"eval_images\": %lld, "
           "\"threads\": %d, \"seconds_per_layer\": %.2f, \"accuracy\": %.4f, \"l2\": %g, \"final_iterations\": %d, "
           "\"grad_norm\": %.2e}\n",
           dim, (long long)a->train_images, (long long)a->eval_images, threads, seconds, r.accuracy, r.l2, r.iters,
           r.grad_norm);
    features_free(&train);
    features_free(&eval);
    free(means);
    free(factors);
}

int cmd_bench(int argc, char **argv) {
    BenchArgs a;
    parse_args(argc, argv, &a);
    const int threads = cpu_set_threads(a.threads);
    if (!strcmp(a.mode, "probe")) bench_probe(&a, threads);
    else bench_model(&a, threads, !strcmp(a.mode, "train"));
    return 0;
}
