// The probe solver's objective on the GPU (cuda/probe_solver.cu) against its
// CPU twins (src/probe/solver.c): the row kernel against
// probe_rows_softmax_residual, and the whole evaluator against
// probe_cpu_evaluator_create on random batches (several blocks, 1 to 6
// problems per block, folds with -1 and held-out rows, inactive problems,
// sizes that are no multiple of any thread-block size, k not a power of
// two), under every thread order of the interpreter.
//
// Tolerance, fp64 (u = 2^-53 = 1.1e-16): every output is a sum of at most
// n <= 2,000 terms (rows) or d + 1 (a logit), computed in other orders on
// the two sides (cuBLASLt's tiles, the kernels' trees, OpenBLAS), plus a few
// elementwise operations (exp, log: 1-2 ulps each); each side is within
// gamma_n ~ n u = 2.2e-13 of the exact value relative to the sum of the
// terms' magnitudes. The labels are a planted linear model's and the weights
// small, so the gradients are systematic (their magnitude is the size of
// those sums, no cancellation): 1e-12 relative to the largest entry of each
// problem's f, G covers both sides with room. Held-out hits are counts:
// exact (no logit comes within rounding of a tie with such data).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_test.h"
#include "kernels.cuh"

extern "C" {
#include "model/gpu_model.h"
#include "model/params.h"
#include "probe/probe.h"
#include "probe/solver.h"
}

static const double probe_tolerance = 1e-12;

// Seeded doubles uniform in [lo, hi).
static std::vector<double> random_doubles(size_t n, uint64_t seed, double lo, double hi) {
    std::vector<double> v(n);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v[i] = lo + (hi - lo) * ((double)(s >> 11) * (1.0 / 9007199254740992.0));
    }
    return v;
}

// A batch: features, labels from a planted linear model of the first
// block's features (so the problems have something to learn), folds.
struct ProbeCase {
    int64_t n;
    int d, k, blocks, per_block;
    int folds;  // rows in folds 0..folds-1 or -1 (folds = 0: no fold array)
    std::vector<double> X;
    std::vector<uint16_t> y;
    std::vector<int8_t> fold;
    ProbeBatchShape shape() const {
        return ProbeBatchShape{n, d, k, blocks, per_block, y.data(), folds > 0 ? fold.data() : nullptr};
    }
};

static ProbeCase make_case(int64_t n, int d, int k, int blocks, int per_block, int folds, uint64_t seed) {
    ProbeCase c{n, d, k, blocks, per_block, folds, {}, {}, {}};
    c.X = random_doubles((size_t)blocks * n * d, seed, -1.7, 1.7);
    const std::vector<double> planted = random_doubles((size_t)k * d, seed + 1, -1.0, 1.0),
                              coin = random_doubles((size_t)n, seed + 2, 0.0, 1.0);
    c.y.resize((size_t)n);
    c.fold.resize((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        double best_logit = -INFINITY;
        for (int cl = 0; cl < k; cl++) {
            double logit = 0.0;
            for (int q = 0; q < d; q++) logit += c.X[(size_t)i * d + q] * planted[(size_t)cl * d + q];
            if (logit > best_logit) {
                best_logit = logit;
                best = cl;
            }
        }
        c.y[(size_t)i] = (uint16_t)best;
        // about 1 row in 7 in fold -1 (never held out), the others spread over the folds
        c.fold[(size_t)i] = (int8_t)(coin[(size_t)i] < 1.0 / 7 ? -1 : (int)(i % (folds > 0 ? folds : 1)));
    }
    return c;
}

// Largest |a - b| over the largest |b| (absolute below 1).
static double rel_diff(const double *a, const double *b, size_t n) {
    double err = 0.0, scale = 1.0;
    for (size_t i = 0; i < n; i++) {
        const double e = std::fabs(a[i] - b[i]);
        if (!(e <= err)) err = e;  // NaN propagates
        scale = std::fmax(scale, std::fabs(b[i]));
    }
    return err / scale;
}

// --- The row kernel -----------------------------------------------------------------------

TEST(test_gpu_probe_rows_kernel_against_cpu) {
    // 601 rows x 3 problems: 1803 threads, 8 thread blocks, the last one partial.
    const ProbeCase c = make_case(601, 5, 7, 1, 3, 2, 11);
    const ProbeBatchShape s = c.shape();
    const int J = s.per_block, cols = J * s.k;
    const std::vector<double> logits = random_doubles((size_t)s.n * cols, 12, -4.0, 4.0),
                              W = random_doubles((size_t)J * probe_batch_vars(&s), 13, -2.0, 2.0);
    const std::vector<int64_t> n_fit = {420, 380, 601};
    std::vector<double> want_z = logits, want_loss((size_t)s.n * J);
    std::vector<uint8_t> want_held((size_t)s.n * J);
    probe_rows_softmax_residual(&s, 0, s.n, W.data(), n_fit.data(), want_z.data(), cols, want_loss.data(),
                                want_held.data());
    int held_rows = 0;
    for (uint8_t h : want_held) held_rows += h;
    CHECK(held_rows > 10, "the case scores only %d held-out rows right", held_rows);
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        double *Z = to_device(logits), *loss = device_alloc<double>((size_t)s.n * J), *dW = to_device(W);
        uint8_t *held = device_alloc<uint8_t>((size_t)s.n * J);
        int64_t *dn_fit = to_device(n_fit);
        uint16_t *y = to_device(c.y);
        int8_t *fold = to_device(c.fold);
        gpu_probe_rows_softmax_residual(Z, loss, held, dW, dn_fit, y, fold, s.n, s.d, s.k, J, nullptr);
        const std::vector<double> got_z = to_host(Z, want_z.size()), got_loss = to_host(loss, want_loss.size());
        const std::vector<uint8_t> got_held = to_host(held, want_held.size());
        double err = rel_diff(got_z.data(), want_z.data(), want_z.size());
        CHECK(err <= probe_tolerance, "residuals (%s order): error %.3g", o.name, err);
        err = rel_diff(got_loss.data(), want_loss.data(), want_loss.size());
        CHECK(err <= probe_tolerance, "row losses (%s order): error %.3g", o.name, err);
        CHECK(got_held == want_held, "held-out hits differ (%s order)", o.name);
        for (void *p : {(void *)Z, (void *)loss, (void *)dW, (void *)held, (void *)dn_fit, (void *)y, (void *)fold})
            CUDA_CHECK(cudaFree(p));
    }
}

// --- The evaluator ------------------------------------------------------------------------

static const double sentinel = -12345.678;  // what inactive problems must keep
static const int64_t hits_sentinel = -7;

struct Evaluation {
    std::vector<double> f, G;
    std::vector<int64_t> hits;
};

static Evaluation evaluate(ProbeEvaluator *e, const std::vector<double> &W, const std::vector<double> &l2,
                           const std::vector<uint8_t> &active) {
    const int P = probe_batch_problems(&e->shape);
    Evaluation out{std::vector<double>((size_t)P, sentinel),
                   std::vector<double>((size_t)P * probe_batch_vars(&e->shape), sentinel),
                   std::vector<int64_t>((size_t)P, hits_sentinel)};
    e->evaluate(e, W.data(), l2.data(), active.data(), out.f.data(), out.G.data(), out.hits.data());
    return out;
}

static bool same_bits(const Evaluation &a, const Evaluation &b) {
    return a.f.size() == b.f.size() && a.G.size() == b.G.size() &&
           memcmp(a.f.data(), b.f.data(), a.f.size() * sizeof(double)) == 0 &&
           memcmp(a.G.data(), b.G.data(), a.G.size() * sizeof(double)) == 0 && a.hits == b.hits;
}

// The GPU's evaluation against the CPU's for the active problems; the
// inactive ones must hold the sentinels.
static void check_against_cpu(const char *label, const ProbeBatchShape &s, const Evaluation &got,
                              const Evaluation &want, const std::vector<uint8_t> &active) {
    const size_t vars = (size_t)probe_batch_vars(&s);
    for (int p = 0; p < probe_batch_problems(&s); p++) {
        const double *G = got.G.data() + p * vars;
        if (!active[(size_t)p]) {
            bool untouched = got.f[(size_t)p] == sentinel && got.hits[(size_t)p] == hits_sentinel;
            for (size_t v = 0; v < vars; v++) untouched = untouched && G[v] == sentinel;
            CHECK(untouched, "%s: inactive problem %d was written", label, p);
            continue;
        }
        double err = rel_diff(&got.f[(size_t)p], &want.f[(size_t)p], 1);
        CHECK(err <= probe_tolerance, "%s: f of problem %d: %.17g, CPU %.17g (error %.3g)", label, p, got.f[(size_t)p],
              want.f[(size_t)p], err);
        err = rel_diff(G, want.G.data() + p * vars, vars);
        CHECK(err <= probe_tolerance, "%s: gradient of problem %d: error %.3g", label, p, err);
        CHECK(got.hits[(size_t)p] == want.hits[(size_t)p], "%s: problem %d scores %lld held-out rows right, CPU %lld",
              label, p, (long long)got.hits[(size_t)p], (long long)want.hits[(size_t)p]);
    }
}

// One batch: the GPU against the CPU under every thread order, the same
// bits from every order and from a second evaluation, and (single_too) each
// active problem's bits the same when it is the only active one.
static void evaluator_case(const char *name, const ProbeCase &c, const std::vector<uint8_t> &active, bool single_too,
                           uint64_t seed) {
    const ProbeBatchShape s = c.shape();
    const int P = probe_batch_problems(&s);
    const std::vector<double> W = random_doubles((size_t)P * probe_batch_vars(&s), seed, -0.05, 0.05),
                              l2 = random_doubles((size_t)P, seed + 1, 1e-4, 0.3);
    ProbeEvaluator *cpu = probe_cpu_evaluator_create(&s, c.X.data(), 1);
    const Evaluation want = evaluate(cpu, W, l2, active);
    probe_evaluator_free(cpu);
    Evaluation first;
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        const std::string label = std::string(name) + ", " + o.name + " order";
        const char *why = nullptr;
        ProbeEvaluator *gpu = probe_gpu_evaluator_create(&s, c.X.data(), &why);
        CHECK(gpu != nullptr, "%s: no GPU evaluator: %s", label.c_str(), why ? why : "?");
        if (!gpu) return;
        const Evaluation got = evaluate(gpu, W, l2, active);
        check_against_cpu(label.c_str(), s, got, want, active);
        CHECK(same_bits(got, evaluate(gpu, W, l2, active)), "%s: a second evaluation gives other bits", label.c_str());
        if (first.f.empty()) first = got;
        else CHECK(same_bits(got, first), "%s: other bits than the first order", label.c_str());
        for (int p = 0; single_too && p < P && o.order == schedule_orders()[0].order; p++) {
            if (!active[(size_t)p]) continue;
            std::vector<uint8_t> alone((size_t)P, 0);
            alone[(size_t)p] = 1;
            const Evaluation single = evaluate(gpu, W, l2, alone);
            const size_t vars = (size_t)probe_batch_vars(&s);
            CHECK(memcmp(&single.f[(size_t)p], &got.f[(size_t)p], sizeof(double)) == 0 &&
                      memcmp(&single.G[p * vars], &got.G[p * vars], vars * sizeof(double)) == 0 &&
                      single.hits[(size_t)p] == got.hits[(size_t)p],
                  "%s: problem %d alone gives other bits than among the others", label.c_str(), p);
        }
        probe_evaluator_free(gpu);
    }
}

TEST(test_gpu_probe_evaluator_against_cpu) {
    // 3 layers x (2 cross-validation fits + the fit on every row), rows in fold -1 too; all active.
    evaluator_case("3 blocks x 3, folds", make_case(333, 17, 7, 3, 3, 2, 21), std::vector<uint8_t>(9, 1), false, 22);
    // No fold array: nothing is held out; one problem per block, blocks 1 and 3 inactive (skipped whole).
    evaluator_case("4 blocks x 1, no folds", make_case(150, 9, 10, 4, 1, 0, 23), {1, 0, 1, 0}, true, 24);
    // 6 problems per block (5 folds + all rows), some inactive inside an active block, k = 3.
    std::vector<uint8_t> active(12, 1);
    active[1] = active[4] = active[11] = 0;
    evaluator_case("2 blocks x 6, partly active", make_case(517, 31, 3, 2, 6, 5, 25), active, true, 26);
}

// Large enough for several thread blocks of the row kernel (2,003 x 2
// items) and several strides of every loop of the finish kernel (rows > 256
// per thread block, k d = 429 weights > 256).
TEST(test_gpu_probe_evaluator_large_case) {
    evaluator_case("2 blocks x 2, n = 2003", make_case(2003, 33, 13, 2, 2, 1, 31), {1, 1, 0, 1}, false, 32);
}

// A batch larger than the GPU's free memory gives no evaluator, and says why
// (the interpreter reports 64 GiB free; nothing is allocated before the check).
TEST(test_gpu_probe_evaluator_too_large_says_why) {
    const uint16_t y = 0;
    const ProbeBatchShape s = {1000000, 2000, 10, 5, 1, &y, nullptr};  // 80 GB of features
    const char *why = nullptr;
    ProbeEvaluator *e = probe_gpu_evaluator_create(&s, nullptr, &why);
    CHECK(e == nullptr, "an evaluator for 80 GB of features");
    CHECK(why && strstr(why, "GPU memory") && strstr(why, "free"), "why: %s", why ? why : "(none)");
    probe_evaluator_free(e);
}

// --- Feature precision: the mean over positions sums in fp32 ---------------------------
// gpu_mean_over_positions (the probe features) against the exact mean of
// the same stored inputs, in both storage types: a sum of T terms in fp32
// is within gamma_T (fp32) of the exact sum relative to the sum of the
// magnitudes (Higham 3.1), +1 rounding for the division. T = 1024 (a 32 x
// 32 image), positive inputs: a sum kept in bf16 would be off by ~1e-2 (its
// additions lose the addend's low bits once the sum is large), 200x the bound.
template <typename T>
static void mean_over_positions_case() {
    const int B = 3, T_ = 1024, C = 40, out_stride = 3 * C;  // C < 128: one partial thread block per image
    const std::vector<float> inputs = rounded_to<T>(random_floats((size_t)B * T_ * C, 51, 0.5f, 1.5f));
    std::vector<double> exact((size_t)B * C), bound((size_t)B * C);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            double sum = 0.0, magnitude = 0.0;
            for (int t = 0; t < T_; t++) {
                const double x = inputs[((size_t)b * T_ + t) * C + c];
                sum += x;
                magnitude += std::fabs(x);
            }
            exact[(size_t)b * C + c] = sum / T_;
            bound[(size_t)b * C + c] = gamma_n(T_ + 1, FP32_UNIT_ROUNDOFF) * magnitude / T_;
        }
    T *in = upload_as<T>(inputs);
    float *out = to_device(std::vector<float>((size_t)B * out_stride, 0.0f));
    gpu_mean_over_positions(out, out_stride, in, B, T_, C, nullptr);
    const std::vector<float> all = to_host(out, (size_t)B * out_stride);
    std::vector<float> got((size_t)B * C);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) got[(size_t)b * C + c] = all[(size_t)b * out_stride + c];
    const double ratio = bound_ratio(got.data(), exact.data(), bound.data(), got.size());
    CHECK(ratio <= 1.0, "%s means over %d positions: error %.3g x the fp32 bound", type_name<T>(), T_, ratio);
    CUDA_CHECK(cudaFree(in));
    CUDA_CHECK(cudaFree(out));
}

TEST(test_gpu_mean_over_positions_sums_in_fp32) {
    mean_over_positions_case<float>();
    mean_over_positions_case<bf16>();
}

// --- Feature precision: bf16 features against fp32 features ----------------------------
// The GPU's probe features in bf16 mode are means over positions of each
// block's bf16-stored normalised input, summed in fp32 (mean_over_positions_kernel).
// On a small model (tiny: d 64, 2 layers, 4 heads; 8 x 8 images of 16 colours;
// random initial weights) and 640 images of 10 token-pattern classes, the
// bf16 features are within 3e-2 relative Frobenius of the fp32 model's (the
// bound of test_model.cu for bf16 features: 8-bit activations through the
// layers), and a probe fitted on each scores the same 320 evaluation images
// within one binomial standard error, sqrt(p (1 - p) / 320) ~ 2.7 points.
// A measurement more than a test: its 80 forward passes take about a
// minute in the interpreter (its softmax kernels as fibers), too long for
// `make test` and its sanitizer runs, so it runs when asked:
//     IGPT_MEASURE_FEATURE_PRECISION=1 ./build/interp/igpt_cuda_tests bf16_features
// (figures in docs/cuda.md, "Probe features in bf16").

// Class c's image: colour (c + 3 t / 8 + c t / 5) % 16 at position t, and a
// random colour at about half of the positions, so the classes overlap.
static std::vector<uint16_t> pattern_tokens(int images, int T, int V, uint64_t seed, std::vector<uint16_t> *labels) {
    const std::vector<double> coin = random_doubles((size_t)images * T * 2 + images, seed, 0.0, 1.0);
    std::vector<uint16_t> tokens((size_t)images * T);
    labels->resize((size_t)images);
    for (int b = 0; b < images; b++) {
        const int c = (int)(coin[(size_t)images * T * 2 + b] * 10);
        (*labels)[(size_t)b] = (uint16_t)c;
        for (int t = 0; t < T; t++) {
            const size_t at = (size_t)b * T + t;
            const bool random = coin[2 * at] < 0.55;
            tokens[at] = (uint16_t)(random ? (int)(coin[2 * at + 1] * V) % V : (c + 3 * t / 8 + c * t / 5) % V);
        }
    }
    return tokens;
}

static std::vector<float> model_features_of(const ModelConfig &cfg, const std::vector<float> &params,
                                            const std::vector<uint16_t> &tokens, int images, GpuPrecision precision) {
    const int B = 32, per_image = (cfg.n_layer + 1) * cfg.d_model;
    GpuModel *g = gpu_model_create(&cfg, B, precision, false, false);
    gpu_model_set_params(g, params.data());
    std::vector<float> features((size_t)images * per_image);
    for (int b0 = 0; b0 < images; b0 += B) {
        gpu_model_forward(g, tokens.data() + (size_t)b0 * cfg.seq_len, B);
        gpu_model_features(g, B, features.data() + (size_t)b0 * per_image);
    }
    gpu_model_free(g);
    return features;
}

// A probe of one layer's features (train: the first half of the images), its accuracy on the second half.
static double layer_accuracy(const std::vector<float> &features, const std::vector<uint16_t> &labels, int images,
                             int layer, int C, int per_image) {
    const int n = images / 2;
    std::vector<double> mean((size_t)C), inv_std((size_t)C), train((size_t)n * C), eval((size_t)n * C);
    const float *X = features.data() + (size_t)layer * C;
    feature_stats(X, n, C, per_image, mean.data(), inv_std.data());
    standardize(X, n, C, per_image, mean.data(), inv_std.data(), train.data());
    standardize(X + (size_t)n * per_image, n, C, per_image, mean.data(), inv_std.data(), eval.data());
    const ProbeProblem fit = {n, C, 10, train.data(), labels.data()},
                       score = {n, C, 10, eval.data(), labels.data() + n};
    ProbeSolverOptions opt;
    probe_solver_defaults(&opt);
    opt.l2 = 1e-2;
    opt.threads = 1;
    LinearProbe probe;
    probe_fit(&fit, &opt, nullptr, &probe);
    const double accuracy = probe_score(&probe, &score, 1, nullptr, nullptr);
    linear_probe_free(&probe);
    return accuracy;
}

TEST(test_gpu_probe_bf16_features_give_fp32_accuracy) {
    if (!getenv("IGPT_MEASURE_FEATURE_PRECISION")) {
        test_skip("a minute in the interpreter: IGPT_MEASURE_FEATURE_PRECISION=1 runs it");
        return;
    }
    ModelConfig cfg = {.vocab_size = 16,
                       .seq_len = 64,
                       .image_height = 8,
                       .image_width = 8,
                       .d_model = 0,
                       .n_layer = 0,
                       .n_head = 0,
                       .norm = NORM_IGPT};
    model_config_named("tiny", &cfg);
    const int images = 640, C = cfg.d_model, per_image = (cfg.n_layer + 1) * C;
    std::vector<float> params(param_count(&cfg));
    model_init_params(&cfg, params.data(), 41);
    std::vector<uint16_t> labels;
    const std::vector<uint16_t> tokens = pattern_tokens(images, cfg.seq_len, cfg.vocab_size, 42, &labels);
    const std::vector<float> in_bf16 = model_features_of(cfg, params, tokens, images, GPU_BF16),
                             in_fp32 = model_features_of(cfg, params, tokens, images, GPU_FP32);
    for (int l = 0; l <= cfg.n_layer; l++) {
        std::vector<float> a, b;  // layer l of every image
        for (int i = 0; i < images; i++) {
            a.insert(a.end(), in_bf16.begin() + (size_t)i * per_image + l * C,
                     in_bf16.begin() + (size_t)i * per_image + (l + 1) * C);
            b.insert(b.end(), in_fp32.begin() + (size_t)i * per_image + l * C,
                     in_fp32.begin() + (size_t)i * per_image + (l + 1) * C);
        }
        const double diff = rel_frobenius_error(a.data(), b.data(), a.size());
        const double acc_bf16 = layer_accuracy(in_bf16, labels, images, l, C, per_image),
                     acc_fp32 = layer_accuracy(in_fp32, labels, images, l, C, per_image),
                     standard_error = std::sqrt(acc_fp32 * (1 - acc_fp32) / (images / 2));
        printf(
            "    layer %d: bf16 features differ from fp32 by %.2e (relative Frobenius); probe accuracy bf16 %.1f%%, "
            "fp32 %.1f%% (standard error %.1f points)\n",
            l, diff, 100 * acc_bf16, 100 * acc_fp32, 100 * standard_error);
        CHECK(diff <= 3e-2, "layer %d: bf16 features differ from fp32 by %.3g", l, diff);
        CHECK(acc_fp32 > 0.3, "layer %d: the fp32 probe scores only %.3f (nothing to compare)", l, acc_fp32);
        CHECK(std::fabs(acc_bf16 - acc_fp32) <= standard_error,
              "layer %d: probe accuracy bf16 %.3f, fp32 %.3f (SE %.3f)", l, acc_bf16, acc_fp32, standard_error);
    }
}
