// ./igpt bench: throughput figures of the CPU code as one JSON line each
// (bench/bench_cpu.sh and bench/bench_probe.sh print them as tables).
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "cli/cli.h"
#include "model/cpu_ops.h"
#include "model/model.h"
#include "train/optim.h"
#include "probe/probe.h"

static const char *const bench_help =
    "usage: ./igpt bench [--mode train|features|probe|attention] [options]\n"
    "\n"
    "  --mode train      (default) forward + backward passes on random tokens (with --optimizer,\n"
    "                    also the gradient norm and the AdamW step): tokens/s, and the model FLOPs\n"
    "                    per token (docs/cuda.md) for MFU\n"
    "  --mode features   forward passes and probe features (./igpt probe's extraction): images/s\n"
    "  --mode probe      one layer of ./igpt probe's protocol (L2 chosen on a 10%% hold-out from\n"
    "                    the default grid, refit, score) on synthetic class-mixture features of\n"
    "                    --dim dimensions: seconds per layer (CPU)\n"
    "  --mode attention  the CUDA attention kernels alone, causal, bf16: forward and backward\n"
    "                    milliseconds and TFLOP/s (GPU)\n"
    "\n"
    "  --config NAME, --side N, --colors N, --batch N   the model (default tiny, 16x16, 512 colors, batch 8)\n"
    "  --steps N, --warmup-steps N                      timed and untimed passes (default 5 and 2)\n"
    "  --device NAME, --precision P                     cpu (default), cuda or auto; bf16 or fp32 on the GPU\n"
    "  --optimizer                                      train mode: time whole optimizer steps\n"
    "  --recompute                                      train mode on the GPU: activation recomputation\n"
    "  --dim N, --train-images N, --eval-images N       probe mode (default 256, 45000, 5000)\n"
    "  --batch-heads N, --seq N, --head-size N          attention mode (default 64, 1024, 64)\n"
    "  --threads N                                      worker threads (default: all cores)\n";

typedef struct {
    const char *mode, *config, *device, *precision;
    int side, colors, batch, steps, warmup, threads, dim, batch_heads, seq, head_size;
    bool optimizer, recompute;
    int64_t train_images, eval_images;
} BenchArgs;

static void parse_args(int argc, char **argv, BenchArgs *a) {
    *a = (BenchArgs){.mode = "train", .config = "tiny", .device = "cpu", .precision = "bf16", .side = 16, .colors = 512,
                     .batch = 8, .steps = 5, .warmup = 2, .dim = 256, .batch_heads = 64, .seq = 1024, .head_size = 64,
                     .train_images = 45000, .eval_images = 5000};
    enum { O_MODE = 1000, O_CONFIG, O_SIDE, O_COLORS, O_BATCH, O_STEPS, O_WARMUP, O_THREADS, O_DIM, O_TRAIN, O_EVAL,
           O_HELP, O_DEVICE, O_PRECISION, O_OPTIMIZER, O_BH, O_SEQ, O_HS, O_RECOMPUTE };
    static const struct option options[] = {
        {"mode", required_argument, 0, O_MODE},         {"config", required_argument, 0, O_CONFIG},
        {"side", required_argument, 0, O_SIDE},         {"colors", required_argument, 0, O_COLORS},
        {"batch", required_argument, 0, O_BATCH},       {"steps", required_argument, 0, O_STEPS},
        {"warmup-steps", required_argument, 0, O_WARMUP}, {"threads", required_argument, 0, O_THREADS},
        {"dim", required_argument, 0, O_DIM},           {"train-images", required_argument, 0, O_TRAIN},
        {"eval-images", required_argument, 0, O_EVAL},  {"help", no_argument, 0, O_HELP},
        {"device", required_argument, 0, O_DEVICE},     {"precision", required_argument, 0, O_PRECISION},
        {"optimizer", no_argument, 0, O_OPTIMIZER},     {"batch-heads", required_argument, 0, O_BH},
        {"seq", required_argument, 0, O_SEQ},           {"head-size", required_argument, 0, O_HS},
        {"recompute", no_argument, 0, O_RECOMPUTE},
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
        case O_DEVICE: a->device = optarg; break;
        case O_PRECISION: a->precision = optarg; break;
        case O_OPTIMIZER: a->optimizer = true; break;
        case O_RECOMPUTE: a->recompute = true; break;
        case O_BH: a->batch_heads = (int)parse_int_option("--batch-heads", optarg, 1, 1 << 20); break;
        case O_SEQ: a->seq = (int)parse_int_option("--seq", optarg, 1, 1 << 16); break;
        case O_HS: a->head_size = (int)parse_int_option("--head-size", optarg, 1, 1024); break;
        case O_HELP: fputs(bench_help, stdout); exit(0);
        default: bad_option("bench", c, argv);
        }
    }
    if (optind < argc) usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (strcmp(a->mode, "train") && strcmp(a->mode, "features") && strcmp(a->mode, "probe") &&
        strcmp(a->mode, "attention"))
        usage_error("bench", "--mode must be train, features, probe or attention, got '%s'", a->mode);
    if (strcmp(a->device, "cpu") && strcmp(a->device, "cuda") && strcmp(a->device, "auto"))
        usage_error("bench", "--device must be auto, cpu or cuda, got '%s'", a->device);
    if (strcmp(a->precision, "bf16") && strcmp(a->precision, "fp32"))
        usage_error("bench", "--precision must be bf16 or fp32, got '%s'", a->precision);
}

// Training FLOPs per token (docs/cuda.md): 6 per weight of every matrix
// product (forward 2, backward 4), plus causal attention's two T x T
// products, 2 T C per token per layer forward (half of the full 4 T C), x 3.
static double training_flops_per_token(const ModelConfig *cfg) {
    const double C = cfg->d_model, L = cfg->n_layer, V = cfg->vocab_size, T = cfg->seq_len;
    const double matmul_weights = L * 12.0 * C * C + V * C;
    return 6.0 * matmul_weights + 6.0 * L * T * C;
}

static void bench_model(const BenchArgs *a, int threads, bool train) {
    ModelConfig cfg = {.vocab_size = a->colors, .seq_len = a->side * a->side, .image_height = a->side,
                       .image_width = a->side, .norm = NORM_IGPT};
    if (!model_config_named(a->config, &cfg)) usage_error("bench", "unknown --config '%s'", a->config);
    const DeviceKind device = backend_choose_device(a->device);
    GpuPrecision precision = GPU_BF16;
    parse_precision(a->precision, &precision);
    const int batch = a->batch;
    Backend m;
    const BackendOptions opt = {.device = device, .precision = precision, .recompute = a->recompute, .threads = threads};
    backend_create(&m, &opt, &cfg, batch);
    float *init = xmalloc(m.num_params * sizeof(float));
    model_init_params(&cfg, init, 1);
    backend_set_state(&m, init, NULL, NULL);
    free(init);
    OptimConfig oc;
    optim_config_defaults(&oc);
    oc.total_steps = a->warmup + a->steps;
    oc.warmup_steps = 1;
    uint16_t *tokens = xmalloc((size_t)batch * cfg.seq_len * sizeof(uint16_t));
    float *features = train ? NULL : xmalloc((size_t)batch * (cfg.n_layer + 1) * cfg.d_model * sizeof(float));
    Rng rng;
    rng_init(&rng, 1, 0);
    for (int i = 0; i < batch * cfg.seq_len; i++) tokens[i] = (uint16_t)rng_below(&rng, (uint64_t)a->colors);
    double elapsed = 0.0;
    for (int s = 0; s < a->warmup + a->steps; s++) {
        double t0 = now_seconds();
        if (train) {
            backend_zero_grads(&m);
            backend_forward(&m, tokens, batch);
            backend_backward(&m, tokens, batch, 1.0f / ((float)batch * cfg.seq_len));
            if (a->optimizer) backend_adamw(&m, &oc, s, clip_factor(&oc, backend_grad_norm(&m)));
        } else {
            backend_forward(&m, tokens, batch);
            if (!a->recompute) backend_features(&m, batch, features);
        }
        if (s >= a->warmup) elapsed += now_seconds() - t0;
    }
    const double per_pass = elapsed / a->steps, images_per_s = batch / per_pass;
    const double flops = training_flops_per_token(&cfg);
    printf("{\"impl\": \"igpt-%s\", \"mode\": \"%s\", \"precision\": \"%s\", \"config\": \"%s\", \"side\": %d, "
           "\"batch\": %d, \"threads\": %d, \"optimizer\": %s, \"tokens_per_s\": %.1f, \"images_per_s\": %.2f, "
           "\"step_s\": %.4f, \"parameters\": %zu, \"train_flops_per_token\": %.6g, \"train_tflops\": %.3f}\n",
           device_name(device), a->mode, device == DEVICE_CPU ? "fp32" : a->precision, a->config, a->side, batch,
           threads, a->optimizer ? "true" : "false", images_per_s * cfg.seq_len, images_per_s, per_pass, m.num_params,
           flops, train ? flops * images_per_s * cfg.seq_len / 1e12 : 0.0);
    free(tokens);
    free(features);
    backend_free(&m);
}

// Causal attention FLOPs for batch_heads heads of T x hs: forward 2 products
// of 2 T^2 hs, halved by the mask; backward 2.5x the forward (5 products,
// none recomputed by us counted).
static void bench_attention(const BenchArgs *a) {
    if (backend_choose_device(strcmp(a->device, "cpu") ? a->device : "cuda") != DEVICE_CUDA)
        die("--mode attention needs a GPU");
    double fwd_ms = 0, bwd_ms = 0;
    gpu_time_attention(a->batch_heads, a->seq, a->head_size, a->steps, &fwd_ms, &bwd_ms);
    const double fwd_flops = 4.0 * a->batch_heads * (double)a->seq * a->seq * a->head_size * 0.5;
    const double bwd_flops = 2.5 * fwd_flops;
    printf("{\"impl\": \"igpt-cuda\", \"mode\": \"attention\", \"batch_heads\": %d, \"seq\": %d, \"head_size\": %d, "
           "\"forward_ms\": %.4f, \"backward_ms\": %.4f, \"forward_tflops\": %.2f, \"backward_tflops\": %.2f}\n",
           a->batch_heads, a->seq, a->head_size, fwd_ms, bwd_ms, fwd_flops / (fwd_ms * 1e9),
           bwd_flops / (bwd_ms * 1e9));
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
    else if (!strcmp(a.mode, "attention")) bench_attention(&a);
    else bench_model(&a, threads, !strcmp(a.mode, "train"));
    return 0;
}
