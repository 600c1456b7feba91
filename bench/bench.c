// ./igpt bench: throughput figures of the model, the probe solver and the GPU
// attention kernels as one JSON line each (bench/bench_cpu.sh and
// bench/bench_probe.sh print them as tables).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cpu_peak.h"
#include "model/backend.h"
#include "model/config.h"
#include "model/cpu_ops.h"
#include "model/gpu_model.h"
#include "model/params.h"
#include "probe/features.h"
#include "probe/probe.h"
#include "probe/solver.h"
#include "step_costs.h"
#include "train/optim.h"
#include "util/blas.h"
#include "util/json.h"
#include "util/util.h"

typedef struct {
    const char *mode, *config;
    int side, colors, batch, steps, warmup, turns, dim, layers, folds, batch_heads, seq, head_size;
    bool optimizer, recompute, quiet, plain;
    int64_t train_images, eval_images;
    DeviceSettings device;
} BenchArgs;

static const Option mode_options[] = {
    {"mode", OPT_CHOICE, SETTING(BenchArgs, mode), "MODE",
     "what to time: train, features, probe, attention, decode, peak or precisions", "train",
     .choices = "train|features|probe|attention|decode|peak|precisions"},
    {"quiet", OPT_FLAG, SETTING(BenchArgs, quiet), NULL, "train and attention modes: no table of kernel costs"},
};

static const Option model_options[] = {
    {"config", OPT_TEXT, SETTING(BenchArgs, config), "NAME", "the model's size, as ./igpt train --config", "tiny"},
    {"side", OPT_INT, SETTING(BenchArgs, side), "N", "image side", "16", .lo = 2, .hi = 256},
    {"colors", OPT_INT, SETTING(BenchArgs, colors), "N", "palette size", "512", .lo = 2, .hi = 65536},
    {"batch", OPT_INT, SETTING(BenchArgs, batch), "N", "images per pass", "8", .lo = 1, .hi = 4096},
    {"steps", OPT_INT, SETTING(BenchArgs, steps), "N", "timed passes (attention mode too)", "5", .lo = 1, .hi = 100000},
    {"warmup-steps", OPT_INT, SETTING(BenchArgs, warmup), "N", "untimed passes first", "2", .lo = 0, .hi = 100000},
    {"turns", OPT_INT, SETTING(BenchArgs, turns), "N", "precisions mode: turns of --steps passes of each model", "10",
     .lo = 1, .hi = 100000},
    {"optimizer", OPT_FLAG, SETTING(BenchArgs, optimizer), NULL, "train mode: time whole optimizer steps"},
    {"recompute", OPT_FLAG, SETTING(BenchArgs, recompute), NULL, "train mode on the GPU: activation recomputation"},
};

static const Option probe_options[] = {
    {"dim", OPT_INT, SETTING(BenchArgs, dim), "N", "feature dimensions", "256", .lo = 1, .hi = 65536},
    {"layers", OPT_INT, SETTING(BenchArgs, layers), "N", "layers probed together", "13", .lo = 1, .hi = 1000},
    {"folds", OPT_INT, SETTING(BenchArgs, folds), "K", "cross-validation folds", "5", .lo = 2, .hi = 20},
    {"plain", OPT_FLAG, SETTING(BenchArgs, plain), NULL, "L-BFGS without its preconditioner (to compare)"},
    {"train-images", OPT_INT64, SETTING(BenchArgs, train_images), "N", "training images", "45000", .lo = 20,
     .hi = INT64_MAX / 4},
    {"eval-images", OPT_INT64, SETTING(BenchArgs, eval_images), "N", "evaluation images", "5000", .lo = 1,
     .hi = INT64_MAX / 4},
};

static const Option attention_options[] = {
    {"batch-heads", OPT_INT, SETTING(BenchArgs, batch_heads), "N", "batch x heads", "64", .lo = 1, .hi = 1 << 20},
    {"seq", OPT_INT, SETTING(BenchArgs, seq), "N", "sequence length", "1024", .lo = 1, .hi = 1 << 16},
    {"head-size", OPT_INT, SETTING(BenchArgs, head_size), "N", "head size", "64", .lo = 1, .hi = 1024},
};

// Benchmarks run on the CPU unless a GPU is asked for (bench/bench_cpu.sh
// compares them with PyTorch on the CPU).
static const Option device_options[] = DEVICE_OPTIONS("cpu");

static const OptionGroup bench_groups[] = {
    {NULL, mode_options, COUNT_OF(mode_options)},
    {"train, features, decode and precisions modes", model_options, COUNT_OF(model_options)},
    {"probe mode", probe_options, COUNT_OF(probe_options)},
    {"attention mode", attention_options, COUNT_OF(attention_options)},
    {"device", device_options, COUNT_OF(device_options), SETTING(BenchArgs, device)},
};

static const Command bench_command = {
    .name = "bench",
    .usage = "[--mode train|features|probe|attention|decode|peak|precisions] [options]",
    .about =
        "Times one part of igpt and prints the figures as one JSON line (bench/bench_cpu.sh\n"
        "and bench/bench_probe.sh print them as tables). Modes:\n"
        "  train      forward + backward passes on random tokens (with --optimizer, also the\n"
        "             gradient norm and the AdamW step): tokens/s, and the model FLOPs per\n"
        "             token (docs/cuda.md) for MFU, and GFLOP/s by that count (matrix products\n"
        "             and causal attention, half the T x T scores)\n"
        "  features   forward passes and probe features (./igpt probe's extraction): images/s\n"
        "  probe      ./igpt probe's whole protocol for --layers layers at once (--folds-fold\n"
        "             CV over the default L2 grid, the fits on all images, scores) on synthetic\n"
        "             correlated class-mixture features of --dim dimensions: seconds (CPU;\n"
        "             --device cuda: the products on the GPU, L-BFGS on the host)\n"
        "  attention  the CUDA attention kernels alone, causal, bf16: forward and backward\n"
        "             milliseconds and TFLOP/s (GPU) of the kernels --attention selects (auto:\n"
        "             tensor cores at head sizes 32, 64, 128), named in the JSON line\n"
        "  decode     incremental decoding with the key/value cache (./igpt sample's and the\n"
        "             compressor's engine): whole images of --batch sequences, one position\n"
        "             at a time, on random pixels: positions/s and milliseconds per step\n"
        "  peak       the CPU's measured arithmetic peak, --threads threads: fp32 FMAs (AVX-512,\n"
        "             else AVX2) and, where the CPU has AVX512-BF16, bf16 dot products\n"
        "             (vdpbf16ps), in registers only: GFLOP/s, the best of --steps timings\n"
        "  precisions the CPU's bf16 model against its fp32 model in one process: --turns\n"
        "             turns of --steps training passes of each, taking turns: the median of\n"
        "             the turns' speed-ups (fp32 seconds / bf16 seconds) and its quartiles,\n"
        "             and each model's median seconds a pass\n"
        "The train and attention modes also print, on stderr before the JSON line, each\n"
        "kernel's FLOPs and bytes in the GPU step (bf16 unless --precision fp32) and its\n"
        "roofline time on an H200, and put the roofline's time in the JSON line (docs/cuda.md).\n",
    .groups = bench_groups,
    .num_groups = COUNT_OF(bench_groups),
};

// Times warmup + steps passes of the model on one batch of random tokens;
// returns the mean seconds of the timed ones.
static double time_passes(Backend *m, const BenchArgs *a, bool train) {
    const int batch = a->batch, seq_len = m->cfg.seq_len;
    OptimConfig oc;
    optim_config_defaults(&oc);
    oc.total_steps = a->warmup + a->steps;
    oc.warmup_steps = 1;
    uint16_t *tokens = xmalloc((size_t)batch * seq_len * sizeof(uint16_t));
    float *features = train ? NULL : xmalloc((size_t)batch * (m->cfg.n_layer + 1) * m->cfg.d_model * sizeof(float));
    Rng rng;
    rng_init(&rng, 1, 0);
    for (int i = 0; i < batch * seq_len; i++) tokens[i] = (uint16_t)rng_below(&rng, (uint64_t)a->colors);
    double elapsed = 0.0;
    for (int s = 0; s < a->warmup + a->steps; s++) {
        const double t0 = now_seconds();
        if (train) {
            backend_zero_grads(m);
            backend_forward(m, tokens, batch);
            backend_backward(m, tokens, batch, 1.0f / ((float)batch * seq_len));
            if (a->optimizer) backend_clip_and_adamw(m, &oc, s);
        } else {
            backend_forward(m, tokens, batch);
            if (!a->recompute) backend_features(m, batch, features);
        }
        if (s >= a->warmup) elapsed += now_seconds() - t0;
    }
    free(tokens);
    free(features);
    return elapsed / a->steps;
}

// The start of a model mode's JSON line: what ran, on what, at which size.
static void begin_model_line(JsonWriter *w, const BenchArgs *a, const BackendOptions *opt, const char *precision) {
    json_init(w);
    json_object_begin(w, NULL, JSON_INLINE);
    char impl[32];
    snprintf(impl, sizeof impl, "igpt-%s", device_name(opt->device));
    json_string(w, "impl", impl);
    json_string(w, "mode", a->mode);
    json_string(w, "precision", precision);
    json_string(w, "config", a->config);
    json_int(w, "side", a->side);
    json_int(w, "batch", a->batch);
    json_int(w, "threads", opt->threads);
}

static ModelConfig bench_config(const BenchArgs *a) {
    ModelConfig cfg = {.vocab_size = a->colors,
                       .seq_len = a->side * a->side,
                       .image_height = a->side,
                       .image_width = a->side,
                       .norm = NORM_IGPT};
    if (!model_config_named(a->config, &cfg)) usage_error("bench", "unknown --config '%s'", a->config);
    return cfg;
}

// A model of cfg on opt's device with seed 1's initial parameters.
static void create_bench_model(Backend *m, const BackendOptions *opt, const ModelConfig *cfg, int batch) {
    backend_create(m, opt, cfg, batch);
    float *init = xmalloc(m->num_params * sizeof(float));
    model_init_params(cfg, init, 1);
    backend_set_state(m, init, NULL, NULL);
    free(init);
}

static void bench_model(const BenchArgs *a, bool train) {
    const ModelConfig cfg = bench_config(a);
    BackendOptions opt = backend_options_from(&a->device);
    opt.recompute = a->recompute;
    Backend m;
    create_bench_model(&m, &opt, &cfg, a->batch);
    const double per_pass = time_passes(&m, a, train);
    const double images_per_s = a->batch / per_pass;
    const double flops = training_flops_per_token(&cfg);
    // The GPU step's analytic costs, whatever the device: the figures a GPU run is read against.
    KernelCost costs[STEP_COSTS_MAX];
    const int storage_bytes = strcmp(a->device.precision, "fp32") ? 2 : 4;
    const int num_costs = step_kernel_costs(&cfg, a->batch, storage_bytes, a->recompute, a->optimizer, costs);
    double roofline_s = 0.0, step_flops = 0.0, step_bytes = 0.0;
    for (int i = 0; i < num_costs; i++) {
        roofline_s += kernel_roofline_seconds(&costs[i], &roofline_h200);
        step_flops += costs[i].flops;
        step_bytes += costs[i].bytes;
    }
    const bool on_gpu = opt.device == DEVICE_CUDA;
    if (train && !a->quiet) print_kernel_costs(stderr, costs, num_costs, &roofline_h200, on_gpu ? per_pass : 0.0);
    JsonWriter w;
    begin_model_line(&w, a, &opt, precision_name(opt.precision));
    json_string(&w, "blas_core", blas_core_name());
    json_string(&w, "omp_wait", omp_wait_setting());
    json_bool(&w, "optimizer", a->optimizer);
    json_real(&w, "tokens_per_s", "%.1f", images_per_s * cfg.seq_len);
    json_real(&w, "images_per_s", "%.2f", images_per_s);
    json_real(&w, "step_s", "%.4f", per_pass);
    json_uint(&w, "parameters", m.num_params);
    json_real(&w, "train_flops_per_token", "%.6g", flops);
    json_real(&w, "train_tflops", "%.3f", train ? flops * images_per_s * cfg.seq_len / 1e12 : 0.0);
    json_real(&w, "gflops_per_s", "%.2f", train ? flops * images_per_s * cfg.seq_len / 1e9 : 0.0);
    json_string(&w, "flops_counted", "matrix products and causal attention (half the scores), forward + backward");
    if (train) {
        json_real(&w, "step_gflop", "%.6g", step_flops / 1e9);
        json_real(&w, "step_gbytes", "%.6g", step_bytes / 1e9);
        json_real(&w, "h200_roofline_step_s", "%.6g", roofline_s);
    }
    json_object_end(&w);
    json_write_line(&w, stdout);
    backend_free(&m);
}

// --- Precisions mode ---------------------------------------------------------------------------
// bf16 against fp32 on the CPU in one process: an fp32 and a bf16 model of one build take turns,
// so that a burst of load on a shared machine slows both alike. (Separate runs, the best of each
// against the other, moved bench_cpu.sh's ratio at `tiny` between 1.34x and 1.76x over six tables
// of one build; in turns its quartiles lie within about 5% of its median.)
static int by_value(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void bench_precisions(const BenchArgs *a) {
    const ModelConfig cfg = bench_config(a);
    BackendOptions opt = backend_options_from(&a->device);
    if (opt.device != DEVICE_CPU) usage_error("bench", "--mode precisions compares the CPU's two models: --device cpu");
    Backend models[2];  // fp32, bf16
    for (int k = 0; k < 2; k++) {
        opt.precision = k ? GPU_BF16 : GPU_FP32;
        create_bench_model(&models[k], &opt, &cfg, a->batch);
    }
    BenchArgs turn = *a;
    const size_t turns = (size_t)a->turns;
    double *step_s = xmalloc(3 * turns * sizeof(double));  // per turn: fp32's, bf16's, the speed-up
    double *fp32_s = step_s, *bf16_s = step_s + turns, *speedups = step_s + 2 * turns;
    for (size_t t = 0; t < turns; t++) {
        for (size_t i = 0; i < 2; i++) {
            const size_t k = (t + i) % 2;  // who goes first alternates
            (k ? bf16_s : fp32_s)[t] = time_passes(&models[k], &turn, true);
        }
        speedups[t] = fp32_s[t] / bf16_s[t];
        turn.warmup = 0;  // both warmed up by the first turn
    }
    for (int i = 0; i < 3; i++) qsort(step_s + i * turns, turns, sizeof(double), by_value);
    JsonWriter w;
    begin_model_line(&w, a, &opt, "bf16 against fp32");
    json_int(&w, "turns", a->turns);
    json_int(&w, "steps_per_turn", a->steps);
    json_real(&w, "fp32_step_s", "%.5f", fp32_s[turns / 2]);  // medians
    json_real(&w, "bf16_step_s", "%.5f", bf16_s[turns / 2]);
    json_real(&w, "bf16_speedup", "%.4f", speedups[turns / 2]);
    json_real(&w, "bf16_speedup_q1", "%.4f", speedups[turns / 4]);
    json_real(&w, "bf16_speedup_q3", "%.4f", speedups[3 * turns / 4]);
    json_object_end(&w);
    json_write_line(&w, stdout);
    free(step_s);
    for (int k = 0; k < 2; k++) backend_free(&models[k]);
}

// --- Peak mode --------------------------------------------------------------------------------
// The ceilings the model's GFLOP/s are read against (bench/bench_cpu.sh's "% of peak").
static void bench_peak(const BenchArgs *a, int threads) {
    const CpuPeak fp32 = cpu_peak_fp32(threads, a->steps);
    const CpuPeak bf16 = cpu_peak_bf16(threads, a->steps);
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_INLINE);
    json_string(&w, "impl", "igpt-cpu");
    json_string(&w, "mode", "peak");
    json_int(&w, "threads", threads);
    json_string(&w, "fp32_isa", fp32.isa);
    json_real(&w, "fp32_gflops_per_s", "%.1f", fp32.gflops_per_s > 0 ? fp32.gflops_per_s : NAN);
    json_string(&w, "bf16_isa", bf16.isa);
    json_real(&w, "bf16_gflops_per_s", "%.1f", bf16.gflops_per_s > 0 ? bf16.gflops_per_s : NAN);
    json_object_end(&w);
    json_write_line(&w, stdout);
}

// --- Decode mode ------------------------------------------------------------------------------
// Whole images decoded position by position (backend_decode_*), each step fed
// random pixels: the decoder's cost does not depend on their values.
static void bench_decode(const BenchArgs *a) {
    ModelConfig cfg = {.vocab_size = a->colors,
                       .seq_len = a->side * a->side,
                       .image_height = a->side,
                       .image_width = a->side,
                       .norm = NORM_IGPT};
    if (!model_config_named(a->config, &cfg)) usage_error("bench", "unknown --config '%s'", a->config);
    BackendOptions opt = backend_options_from(&a->device);
    if (opt.device == DEVICE_CPU) opt.precision = GPU_FP32;  // the CPU decodes in fp32 (decode.c: its bits are pinned)
    Backend m;
    backend_create(&m, &opt, &cfg, 1);
    float *init = xmalloc(m.num_params * sizeof(float));
    model_init_params(&cfg, init, 1);
    backend_set_state(&m, init, NULL, NULL);
    free(init);
    backend_decode_create(&m, a->batch);
    uint16_t *prev = xmalloc((size_t)a->batch * sizeof(uint16_t));
    Rng rng;
    rng_init(&rng, 1, 0);
    double elapsed = 0.0;
    for (int pass = 0; pass < a->warmup + a->steps; pass++) {
        const double t0 = now_seconds();
        backend_decode_begin(&m, a->batch);
        for (int t = 0; t < cfg.seq_len; t++) {
            backend_decode_step(&m, prev);  // returns when the logits are on the host
            for (int b = 0; b < a->batch; b++) prev[b] = (uint16_t)rng_below(&rng, (uint64_t)a->colors);
        }
        if (pass >= a->warmup) elapsed += now_seconds() - t0;
    }
    const double per_image = elapsed / a->steps;  // one pass: batch images
    JsonWriter w;
    begin_model_line(&w, a, &opt, precision_name(opt.precision));
    json_real(&w, "positions_per_s", "%.1f", a->batch * cfg.seq_len / per_image);
    json_real(&w, "images_per_s", "%.3f", a->batch / per_image);
    json_real(&w, "step_ms", "%.4f", per_image / cfg.seq_len * 1e3);
    json_real(&w, "pass_s", "%.4f", per_image);
    json_object_end(&w);
    json_write_line(&w, stdout);
    free(prev);
    backend_free(&m);
}

// Causal attention alone, as the step model counts it (bench/step_costs.c): forward 2 products of 2 T^2 hs
// per head, halved by the mask; backward 2.5x the forward (5 products, the scores recomputed once).
static void bench_attention(const BenchArgs *a) {
    KernelCost costs[STEP_COSTS_MAX];
    const int storage_bytes = strcmp(a->device.precision, "fp32") ? 2 : 4;
    const int num_costs = attention_kernel_costs(a->batch_heads, a->seq, a->head_size, storage_bytes, costs);
    const KernelCost *fwd = &costs[0], *bwd = &costs[1];
    if (backend_choose_device(strcmp(a->device.device, "cpu") ? a->device.device : "cuda") != DEVICE_CUDA) {
        if (!a->quiet) print_kernel_costs(stderr, costs, num_costs, &roofline_h200, 0.0);
        die("--mode attention needs a GPU");
    }
    GpuAttention asked;
    if (!parse_attention(a->device.attention, &asked)) die("internal: attention '%s'", a->device.attention);
    double fwd_ms = 0, bwd_ms = 0;
    const GpuAttention timed =
        gpu_time_attention(asked, a->batch_heads, a->seq, a->head_size, a->steps, &fwd_ms, &bwd_ms);
    if (!a->quiet) print_kernel_costs(stderr, costs, num_costs, &roofline_h200, (fwd_ms + bwd_ms) / 1e3);
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_INLINE);
    json_string(&w, "impl", "igpt-cuda");
    json_string(&w, "mode", "attention");
    json_int(&w, "batch_heads", a->batch_heads);
    json_int(&w, "seq", a->seq);
    json_int(&w, "head_size", a->head_size);
    json_string(&w, "attention", attention_name(timed));  // the kernels timed: flash or portable
    json_real(&w, "forward_ms", "%.4f", fwd_ms);
    json_real(&w, "backward_ms", "%.4f", bwd_ms);
    json_real(&w, "forward_tflops", "%.2f", fwd->flops / (fwd_ms * 1e9));
    json_real(&w, "backward_tflops", "%.2f", bwd->flops / (bwd_ms * 1e9));
    json_real(&w, "h200_roofline_forward_ms", "%.4f", 1e3 * kernel_roofline_seconds(fwd, &roofline_h200));
    json_real(&w, "h200_roofline_backward_ms", "%.4f", 1e3 * kernel_roofline_seconds(bwd, &roofline_h200));
    json_object_end(&w);
    json_write_line(&w, stdout);
}

// Features of `count` images of 10 classes in `layers` layers, shaped like a
// model's: each image has a class mean plus noise correlated through 16
// shared factors (a decaying spectrum), and layer l mixes the image's layer
// l-1 with fresh noise, so neighbouring layers are correlated, as a residual
// stream's are. Scaled so that a linear probe lands between chance and
// perfect.
static void synthetic_features(int64_t count, int layers, int dim, uint64_t seed, const float *class_means,
                               const float *factors, FeatureSet *fs) {
    *fs = (FeatureSet){.count = count, .layers = layers, .dim = dim, .num_classes = 10, .gen_loss = NAN};
    fs->labels = xmalloc((size_t)count * sizeof(uint16_t));
    fs->values = xmalloc((size_t)count * layers * dim * sizeof(float));
    Rng rng;
    rng_init(&rng, seed, 0x73796e66ull /* "synf" */);
    double z[16];
    for (int64_t i = 0; i < count; i++) {
        const int c = (int)(i % 10);
        fs->labels[i] = (uint16_t)c;
        for (int f = 0; f < 16; f++) z[f] = rng_normal(&rng);
        float *x = fs->values + i * layers * dim;
        for (int j = 0; j < dim; j++) {
            double v = class_means[c * dim + j] + rng_normal(&rng);
            for (int f = 0; f < 16; f++) v += z[f] * factors[f * dim + j];
            x[j] = (float)v;
        }
        for (int l = 1; l < layers; l++)
            for (int j = 0; j < dim; j++)
                x[l * dim + j] = (float)(0.8 * x[(l - 1) * dim + j] + 0.6 * rng_normal(&rng) +
                                         0.3 * class_means[c * dim + (j + l) % dim]);
    }
}

// The whole protocol of ./igpt probe (5-fold CV over the default L2 grid, all
// layers together, the final fits and their scores) on synthetic features.
// --device cuda: the GPU's evaluator of the probe objective, or an error saying why not.
static ProbeEvaluator *gpu_evaluator_or_die(const ProbeBatchShape *shape, const double *X, int threads) {
    (void)threads;
    const char *why = NULL;
    ProbeEvaluator *e = probe_gpu_evaluator_create(shape, X, &why);
    if (!e) die("--device cuda: %s", why ? why : "this igpt has no GPU probe solver");
    return e;
}

static void bench_probe(const BenchArgs *a, int threads) {
    const int dim = a->dim, layers = a->layers;
    float *means = xmalloc((size_t)10 * dim * sizeof(float)), *factors = xmalloc((size_t)16 * dim * sizeof(float));
    Rng rng;
    rng_init(&rng, 7, 0);
    const double mean_scale = 1.0 / sqrt((double)dim);  // class separation independent of dim
    for (int i = 0; i < 10 * dim; i++) means[i] = (float)(mean_scale * 2.0 * rng_normal(&rng));
    for (int f = 0; f < 16; f++)  // a decaying spectrum of shared directions, as in real layers
        for (int j = 0; j < dim; j++) factors[f * dim + j] = (float)(4.0 / (f + 1) * rng_normal(&rng));
    FeatureSet train, eval;
    synthetic_features(a->train_images, layers, dim, 1, means, factors, &train);
    synthetic_features(a->eval_images, layers, dim, 2, means, factors, &eval);
    double grid[PROBE_MAX_L2];
    const int num_l2 = probe_default_l2(grid);
    ProbeProtocol protocol = {.l2_grid = grid,
                              .num_l2 = num_l2,
                              .max_iters = 1000,
                              .seed = 1234,
                              .threads = threads,
                              .select = PROBE_SELECT_KFOLD,
                              .folds = a->folds,
                              .verbose = !a->quiet,
                              .plain = a->plain};
    const bool on_gpu = !strcmp(a->device.device, "cuda");  // the products on the GPU; L-BFGS on the host
    if (on_gpu) protocol.make_evaluator = gpu_evaluator_or_die;
    ProbeLayerResult *r = xcalloc((size_t)layers, sizeof *r);
    const double t0 = now_seconds();
    probe_layers(&train, NULL, &eval, &protocol, r);
    const double seconds = now_seconds() - t0;
    int best = 0, iters = 0;
    for (int l = 0; l < layers; l++) {
        if (r[l].accuracy > r[best].accuracy) best = l;
        iters += r[l].iters;
    }
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_INLINE);
    json_string(&w, "impl", on_gpu ? "igpt-cuda" : "igpt-cpu");
    json_string(&w, "mode", "probe");
    json_int(&w, "dim", dim);
    json_int(&w, "layers", layers);
    json_int(&w, "train_images", a->train_images);
    json_int(&w, "eval_images", a->eval_images);
    json_int(&w, "folds", a->folds);
    json_int(&w, "l2_values", num_l2);
    json_int(&w, "threads", threads);
    json_bool(&w, "preconditioned", !a->plain);
    json_real(&w, "seconds", "%.2f", seconds);
    json_real(&w, "seconds_per_layer", "%.2f", seconds / layers);
    json_real(&w, "best_accuracy", "%.4f", r[best].accuracy);
    json_int(&w, "best_layer", best);
    json_real(&w, "best_l2", "%g", r[best].l2);
    json_real(&w, "mean_final_iterations", "%.1f", (double)iters / layers);
    json_int(&w, "evaluations", r[0].path_evaluations);
    json_object_end(&w);
    json_write_line(&w, stdout);
    free(r);
    features_free(&train);
    features_free(&eval);
    free(means);
    free(factors);
}

int cmd_bench(int argc, char **argv) {
    BenchArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&bench_command, argc, argv, &a, &parsed);
    if (!strcmp(a.mode, "probe")) {
        bench_probe(&a, cpu_set_threads(a.device.threads));
    } else if (!strcmp(a.mode, "attention")) {
        cpu_set_threads(a.device.threads);
        bench_attention(&a);
    } else if (!strcmp(a.mode, "peak")) {
        bench_peak(&a, cpu_set_threads(a.device.threads));
    } else if (!strcmp(a.mode, "decode")) {
        bench_decode(&a);
    } else if (!strcmp(a.mode, "precisions")) {
        bench_precisions(&a);
    } else {
        bench_model(&a, !strcmp(a.mode, "train"));
    }
    parsed_args_free(&parsed);
    return 0;
}
