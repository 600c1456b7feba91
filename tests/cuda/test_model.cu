// The whole model on the CUDA backend against the CPU reference model
// (src/model/model.c): same parameters and batch -> same loss, every gradient
// tensor and the probe features; 50 AdamW steps follow the CPU's loss
// curve; two runs give identical losses (bitwise).
//
// Tolerances: fp32 mode: loss 1e-5 relative, each gradient tensor 1e-4
// relative to its largest magnitude, features 1e-5, loss curve 1e-4 relative
// per step. bf16 mode (parameters and activations rounded to 8 significant
// bits): loss 2e-2, gradients 1e-1 relative to each tensor's largest entry
// (the gradients pass through up to 2L+2 rounded layers), features 3e-2, loss
// curve 3e-2 per step.

#include "cuda_test.h"

extern "C" {
#include "model/gpu_model.h"
#include "model/model.h"
#include "model/params.h"
#include "train/optim.h"
}

static ModelConfig small_config(NormKind norm) {
    ModelConfig cfg = {.vocab_size = 13,
                       .seq_len = 20,
                       .image_height = 4,
                       .image_width = 5,
                       .d_model = 32,
                       .n_layer = 2,
                       .n_head = 2,
                       .norm = norm};
    return cfg;
}

// Initialised parameters with every tensor made non-trivial (the head starts at
// zero, which would zero most gradients).
static std::vector<float> test_params(const ModelConfig &cfg, uint64_t seed) {
    std::vector<float> p(param_count(&cfg));
    model_init_params(&cfg, p.data(), seed);
    std::vector<float> noise = random_floats(p.size(), seed + 100, -0.05f, 0.05f);
    for (size_t i = 0; i < p.size(); i++) p[i] += noise[i];
    return p;
}

static std::vector<uint16_t> test_tokens(const ModelConfig &cfg, int B, uint64_t seed) {
    std::vector<float> r = random_floats((size_t)B * cfg.seq_len, seed, 0, (float)cfg.vocab_size);
    std::vector<uint16_t> t(r.size());
    for (size_t i = 0; i < r.size(); i++) t[i] = (uint16_t)std::min((int)r[i], cfg.vocab_size - 1);
    return t;
}

static void model_case(NormKind norm, GpuPrecision precision) {
    const ModelConfig cfg = small_config(norm);
    const int B = 3;
    const bool fp32 = precision == GPU_FP32;
    const char *mode = fp32 ? "fp32" : "bf16";
    std::vector<float> params = test_params(cfg, 7);
    std::vector<uint16_t> tokens = test_tokens(cfg, B, 8);
    const float scale = 1.0f / (float)(B * cfg.seq_len);
    // CPU reference; in bf16 mode it gets the parameters rounded to bf16, as the kernels read them.
    Model cpu;
    model_create(&cpu, &cfg, B, 1);
    std::vector<float> ref_params = fp32 ? params : rounded_to<bf16>(params);
    memcpy(cpu.params, ref_params.data(), params.size() * sizeof(float));
    model_zero_grads(&cpu);
    const double want_loss = model_forward(&cpu, tokens.data(), B);
    std::vector<float> want_features((size_t)B * (cfg.n_layer + 1) * cfg.d_model);
    model_features(&cpu, B, want_features.data());
    model_backward(&cpu, tokens.data(), B, scale);

    GpuModel *g = gpu_model_create(&cfg, B, precision, false, false);
    gpu_model_set_params(g, params.data());
    gpu_model_zero_grads(g);
    const double loss = gpu_model_forward(g, tokens.data(), B);
    std::vector<float> features(want_features.size()), grads(params.size());
    gpu_model_features(g, B, features.data());
    gpu_model_backward(g, tokens.data(), B, scale);
    gpu_model_get_grads(g, grads.data());

    CHECK(std::fabs(loss - want_loss) <= (fp32 ? 1e-5 : 2e-2) * want_loss, "%s %s: loss %.7f, CPU %.7f", mode,
          norm_kind_name(norm), loss, want_loss);
    double ferr = max_rel_diff(features.data(), want_features.data(), features.size());
    CHECK(ferr <= (fp32 ? 1e-5 : 3e-2), "%s %s: features error %.3g", mode, norm_kind_name(norm), ferr);
    const int n = param_tensors(&cfg, nullptr);
    std::vector<TensorInfo> info((size_t)n);
    param_tensors(&cfg, info.data());
    for (const TensorInfo &t : info) {
        double err = max_rel_diff(grads.data() + t.offset, cpu.grads + t.offset, t.count);
        CHECK(err <= (fp32 ? 1e-4 : 1e-1), "%s %s: gradient of %s differs by %.3g of its largest entry", mode,
              norm_kind_name(norm), t.name, err);
    }
    gpu_model_free(g);
    model_free(&cpu);
}

TEST(test_gpu_model_matches_cpu_loss_gradients_features) {
    for (NormKind norm : {NORM_IGPT, NORM_LAYERNORM}) {
        model_case(norm, GPU_FP32);
        model_case(norm, GPU_BF16);
    }
}

// Losses of `steps` AdamW steps (clipping on) from the same start and batches.
static std::vector<double> gpu_curve(const ModelConfig &cfg, GpuPrecision precision, const OptimConfig &oc,
                                     const std::vector<float> &params, int B, int steps) {
    GpuModel *g = gpu_model_create(&cfg, B, precision, false, false);
    gpu_model_set_params(g, params.data());
    std::vector<double> losses;
    for (int s = 0; s < steps; s++) {
        std::vector<uint16_t> tokens = test_tokens(cfg, B, 1000 + (uint64_t)(s % 2));
        gpu_model_zero_grads(g);
        losses.push_back(gpu_model_forward(g, tokens.data(), B));
        gpu_model_backward(g, tokens.data(), B, 1.0f / (float)(B * cfg.seq_len));
        gpu_model_adamw(g, &oc, s, clip_factor(&oc, gpu_model_grad_norm(g)));
    }
    gpu_model_free(g);
    return losses;
}

TEST(test_gpu_training_follows_cpu_and_repeats) {
    const ModelConfig cfg = small_config(NORM_IGPT);
    const int B = 4, steps = 50;
    OptimConfig oc;
    optim_config_defaults(&oc);
    oc.lr = 3e-3;
    oc.total_steps = steps;
    oc.warmup_steps = 5;
    oc.weight_decay = 0.01;
    std::vector<float> params(param_count(&cfg));
    model_init_params(&cfg, params.data(), 3);
    // CPU curve.
    Model cpu;
    model_create(&cpu, &cfg, B, 1);
    memcpy(cpu.params, params.data(), params.size() * sizeof(float));
    std::vector<float> am(params.size(), 0.0f), av(params.size(), 0.0f);
    std::vector<double> want;
    for (int s = 0; s < steps; s++) {
        std::vector<uint16_t> tokens = test_tokens(cfg, B, 1000 + (uint64_t)(s % 2));
        model_zero_grads(&cpu);
        want.push_back(model_forward(&cpu, tokens.data(), B));
        model_backward(&cpu, tokens.data(), B, 1.0f / (float)(B * cfg.seq_len));
        const float clip = clip_factor(&oc, global_norm(cpu.grads, cpu.num_params, 1));
        adamw_update(&oc, &cfg, s, cpu.params, cpu.grads, am.data(), av.data(), clip, 1);
    }
    model_free(&cpu);
    CHECK(want.back() < 0.8 * want.front(), "the CPU run did not learn (%.3f -> %.3f)", want.front(), want.back());
    for (GpuPrecision precision : {GPU_FP32, GPU_BF16}) {
        const double tol = precision == GPU_FP32 ? 1e-4 : 3e-2;
        std::vector<double> a = gpu_curve(cfg, precision, oc, params, B, steps);
        std::vector<double> b = gpu_curve(cfg, precision, oc, params, B, steps);
        double worst = 0.0;
        int worst_step = 0;
        for (int s = 0; s < steps; s++) {
            double err = std::fabs(a[(size_t)s] - want[(size_t)s]) / want[(size_t)s];
            if (err > worst) {
                worst = err;
                worst_step = s;
            }
        }
        CHECK(worst <= tol, "%s: loss at step %d is %.6f, CPU %.6f (%.2g relative > %.0g)",
              precision == GPU_FP32 ? "fp32" : "bf16", worst_step, a[(size_t)worst_step], want[(size_t)worst_step],
              worst, tol);
        CHECK(a == b, "%s: two runs from the same start gave different losses",
              precision == GPU_FP32 ? "fp32" : "bf16");
        printf(
            "      %s: step 0 loss %.4f (CPU %.4f), step %d loss %.4f (CPU %.4f), worst difference %.2g at step %d\n",
            precision == GPU_FP32 ? "fp32" : "bf16", a[0], want[0], steps - 1, a.back(), want.back(), worst,
            worst_step);
    }
}

// Activation recomputation reruns the same kernels on the same inputs: the
// loss and every gradient are bitwise those of the model that stores everything.
TEST(test_gpu_recompute_gives_the_same_gradients) {
    for (GpuPrecision precision : {GPU_FP32, GPU_BF16}) {
        const ModelConfig cfg = small_config(NORM_LAYERNORM);
        const int B = 2;
        std::vector<float> params = test_params(cfg, 11);
        std::vector<uint16_t> tokens = test_tokens(cfg, B, 12);
        std::vector<float> grads[2];
        double losses[2];
        for (int recompute = 0; recompute < 2; recompute++) {
            GpuModel *g = gpu_model_create(&cfg, B, precision, recompute == 1, false);
            gpu_model_set_params(g, params.data());
            gpu_model_zero_grads(g);
            losses[recompute] = gpu_model_forward(g, tokens.data(), B);
            gpu_model_backward(g, tokens.data(), B, 1.0f / (float)(B * cfg.seq_len));
            grads[recompute].resize(params.size());
            gpu_model_get_grads(g, grads[recompute].data());
            gpu_model_free(g);
        }
        CHECK(losses[0] == losses[1], "loss %.9f with recompute, %.9f without", losses[1], losses[0]);
        CHECK(grads[0] == grads[1], "%s: gradients differ with recompute (max difference %.3g)",
              precision == GPU_FP32 ? "fp32" : "bf16", max_abs_diff(grads[1].data(), grads[0].data(), params.size()));
        size_t state = 0, full = 0, recomputed = 0;
        gpu_model_memory(&cfg, 8, precision, false, false, &state, &full);
        gpu_model_memory(&cfg, 8, precision, true, false, &state, &recomputed);
        CHECK(recomputed < full, "recompute plans less activation memory (%zu vs %zu bytes)", recomputed, full);
    }
}
