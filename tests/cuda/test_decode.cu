// Incremental decoding on the CUDA backend (cuda/decode.cu, gpu_model_decode_*)
// against its CPU twins (model/decode.h): each kernel, then the whole decoder,
// every position, fp32 and bf16, both norm kinds; two passes give the same bits.
//
// Tolerances:
// - embedding: exact. Both add the same two stored values in fp32 and store
//   the sum (bf16: rounded once, the same rounding on both sides).
// - attention: as test_attention.cu, for one query row: largest error 2e-5
//   (fp32) / 2e-2 (bf16) of the largest output; relative Frobenius
//   kernel_frobenius_tolerance over t + 1 + hs x (largest |q| x largest |k|
//   x sqrt(hs)) terms (the output sums t + 1 terms; each probability carries
//   its score's error, a sum of hs products, through exp). The cache:
//   exact (a copy), and the positions other than t untouched.
// - the whole decoder, fp32: logits within 1e-5 relative Frobenius of the
//   CPU decoder's, as the fp32 model's features in test_model.cu: the two
//   differ only in summation orders (the CPU's fixed-lane products and
//   sums, the GPU's BLAS/cuBLASLt tiles and warp trees); the premise is
//   checked on every run: the CPU decoder rerun with every parameter nudged
//   one ulp (4 seeds) moves its logits by less than a quarter of it.
// - the whole decoder, bf16: 2e-2 relative Frobenius (5 u, u = 2^-8), as the
//   bf16 model in test_model.cu: a logit passes through 2L + 2 rounded
//   activations and is itself stored in bf16; their errors add about as
//   independent ones, sqrt(2L + 3) u ~ 2.6 u at L = 2. Against the CPU
//   decoder given the same bf16-rounded parameters.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_test.h"
#include "kernels.cuh"

extern "C" {
#include "model/decode.h"
#include "model/gpu_model.h"
#include "model/params.h"
}

// --- The embedding ---------------------------------------------------------------------------

template <typename T>
static void encoder_decode_case(int B, int C, int V, int T_) {
    ModelConfig cfg = {};
    cfg.vocab_size = V;
    cfg.seq_len = T_;
    cfg.d_model = C;
    cfg.n_layer = 1;
    cfg.n_head = 1;
    std::vector<float> params = rounded_to<T>(random_floats(param_count(&cfg), 31, -1, 1));
    ParamPointers p;
    param_pointers(&cfg, params.data(), &p);
    const std::vector<float> wte(p.wte, p.wte + (size_t)V * C), wpe(p.wpe, p.wpe + (size_t)T_ * C),
        sos(p.sos, p.sos + C);
    T *d_wte = upload_as<T>(wte), *d_wpe = upload_as<T>(wpe), *d_sos = upload_as<T>(sos),
      *d_out = device_alloc<T>((size_t)B * C);
    std::vector<uint16_t> prev(B);
    for (int b = 0; b < B; b++) prev[b] = (uint16_t)((b * 5 + 3) % V);
    uint16_t *d_prev = to_device(prev);
    for (int t : {0, 1, T_ / 2, T_ - 1}) {
        std::vector<float> want((size_t)B * C);
        encoder_decode_forward(want.data(), prev.data(), &p, B, t, C);
        gpu_encoder_decode_forward(d_out, d_prev, d_wte, d_wpe, d_sos, B, t, C, 0);
        const std::vector<float> got = download_as_float(d_out, (size_t)B * C);
        CHECK(got == rounded_to<T>(want), "%s embedding at t=%d (B=%d C=%d) differs from the CPU's", type_name<T>(), t,
              B, C);
    }
    param_pointers_free(&p);
    cudaFree(d_wte), cudaFree(d_wpe), cudaFree(d_sos), cudaFree(d_out), cudaFree(d_prev);
}

TEST(test_gpu_encoder_decode_matches_cpu) {
    encoder_decode_case<float>(3, 48, 7, 10);
    encoder_decode_case<bf16>(3, 48, 7, 10);
    encoder_decode_case<float>(1, 16, 2, 3);
    encoder_decode_case<bf16>(5, 64, 13, 20);
}

// --- The attention of one position ---------------------------------------------------------------

// Bits equal, NaN equal to NaN (the cache's positions past t hold NaNs).
static bool same_values(const std::vector<float> &a, const std::vector<float> &b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
    return true;
}

template <typename T>
static void attention_decode_case(int B, int T_, int C, int NH, int t, bool all_orders) {
    const int hs = C / NH;
    const size_t n_qkv = (size_t)B * 3 * C, n_y = (size_t)B * C, n_cache = (size_t)B * T_ * C;
    const uint64_t seed = 1000 * (uint64_t)T_ + (uint64_t)t;
    const std::vector<float> qkv = rounded_to<T>(random_floats(n_qkv, seed, -1.5f, 1.5f));
    std::vector<float> k_cache = rounded_to<T>(random_floats(n_cache, seed + 1, -1.5f, 1.5f));
    std::vector<float> v_cache = rounded_to<T>(random_floats(n_cache, seed + 2, -1.5f, 1.5f));
    // Positions past t were never written: NaNs, so that a kernel that reads them shows it.
    for (int b = 0; b < B; b++)
        for (size_t i = ((size_t)b * T_ + t + 1) * C; i < (size_t)(b + 1) * T_ * C; i++) k_cache[i] = v_cache[i] = NAN;
    T *d_qkv = upload_as<T>(qkv), *d_y = device_alloc<T>(n_y);
    std::vector<float> want_y(n_y), scratch((size_t)T_), want_k = k_cache, want_v = v_cache;
    attention_decode_forward(want_y.data(), qkv.data(), want_k.data(), want_v.data(), scratch.data(), B, t, T_, C, NH,
                             1);
    float largest = 0.0f;
    for (float v : qkv) largest = std::fmax(largest, std::fabs(v));
    const int terms = t + 1 + (int)std::ceil(hs * largest * largest * std::sqrt((double)hs));
    const double tol = sizeof(T) == 4 ? 2e-5 : 2e-2, frobenius_tol = kernel_frobenius_tolerance<T>(terms);
    const std::string mode = type_name<T>();
    std::vector<float> first_y;
    std::vector<ScheduleOrder> orders = schedule_orders();
    if (!all_orders) orders.resize(1);
    for (const ScheduleOrder &o : orders) {
        use_schedule_order(o);
        char where[96];
        snprintf(where, sizeof where, "B=%d T=%d hs=%d t=%d, %s order", B, T_, hs, t, o.name);
        T *d_k = upload_as<T>(k_cache), *d_v = upload_as<T>(v_cache);
        gpu_attention_decode_forward(d_y, d_qkv, d_k, d_v, B, t, T_, C, NH, 0);
        const std::vector<float> y = download_as_float(d_y, n_y);
        double err = max_rel_diff(y.data(), want_y.data(), n_y);
        CHECK(error_within((mode + " attention decode y, largest error").c_str(), where, err, tol),
              "%s %s: attention decode output error %.3g > %.1g", mode.c_str(), where, err, tol);
        err = rel_frobenius_error(y.data(), want_y.data(), n_y);
        CHECK(error_within((mode + " attention decode y, rel. Frobenius").c_str(), where, err, frobenius_tol),
              "%s %s: attention decode output differs by %.3g (relative Frobenius) > %.2g", mode.c_str(), where, err,
              frobenius_tol);
        CHECK(same_values(download_as_float(d_k, n_cache), want_k) &&
                  same_values(download_as_float(d_v, n_cache), want_v),
              "%s %s: the caches differ from the CPU's (position t stored elsewhere, or other positions touched)",
              mode.c_str(), where);
        if (first_y.empty()) first_y = y;
        else CHECK(y == first_y, "%s %s: other bits than the first order's", mode.c_str(), where);
        cudaFree(d_k), cudaFree(d_v);
    }
    cudaFree(d_qkv), cudaFree(d_y);
}

TEST(test_gpu_attention_decode_matches_cpu) {
    struct Case {
        int B, T, C, NH;
        std::vector<int> positions;
    } cases[] = {
        // hs 16: t = 0, the first chunk's edges (32), the block's round of chunks (128), the last position.
        {3, 300, 32, 2, {0, 1, 31, 32, 127, 128, 129, 299}},
        {5, 200, 64, 2, {0, 77, 199}},    // hs 32
        {3, 300, 128, 2, {0, 200, 299}},  // hs 64
        {1, 150, 192, 2, {149}},          // hs 96
        {2, 140, 256, 2, {0, 139}},       // hs 128
    };
    for (const Case &c : cases)
        for (int t : c.positions) {
            attention_decode_case<float>(c.B, c.T, c.C, c.NH, t, false);
            attention_decode_case<bf16>(c.B, c.T, c.C, c.NH, t, false);
        }
    // Every thread order of the interpreter: the same bits (no races between warps).
    attention_decode_case<float>(3, 300, 128, 2, 250, true);
    attention_decode_case<bf16>(2, 100, 32, 2, 99, true);
}

// The longest sequence the configuration allows (65536 positions), at its last position.
TEST(test_gpu_attention_decode_t65536) {
    attention_decode_case<float>(1, 65536, 64, 1, 65535, false);
    attention_decode_case<bf16>(1, 65536, 64, 1, 65535, false);
}

static void decode_head_size_8() {
    float *qkv = device_alloc<float>(3 * 16), *k = device_alloc<float>(16), *v = device_alloc<float>(16),
          *y = device_alloc<float>(16);
    gpu_attention_decode_forward(y, qkv, k, v, 1, 0, 1, 16, 2, 0);
}

TEST(test_gpu_attention_decode_rejects_other_head_sizes) {
    std::string err;
    run_in_child(decode_head_size_8, &err);
    CHECK(err.find("head sizes 16, 32, 64, 96, 128, not 8") != std::string::npos,
          "head size 8 must stop, saying which head sizes work: %s", err.c_str());
}

// --- The whole decoder ---------------------------------------------------------------------------

static ModelConfig decode_config(NormKind norm, int C, int NH) {
    ModelConfig cfg = {};
    cfg.vocab_size = 13;
    cfg.seq_len = 20;
    cfg.image_height = 4;
    cfg.image_width = 5;
    cfg.d_model = C;
    cfg.n_layer = 2;
    cfg.n_head = NH;
    cfg.norm = norm;
    return cfg;
}

// Initialised parameters with noise on every tensor (the initial head is zero: all logits would be 0).
static std::vector<float> decode_params(const ModelConfig &cfg, uint64_t seed) {
    std::vector<float> p(param_count(&cfg));
    model_init_params(&cfg, p.data(), seed);
    const std::vector<float> noise = random_floats(p.size(), seed + 100, -0.1f, 0.1f);
    for (size_t i = 0; i < p.size(); i++) p[i] += noise[i];
    return p;
}

// Each sequence's input at every position: prev[t * B + b] (position 0's is ignored).
static std::vector<uint16_t> decode_inputs(const ModelConfig &cfg, int B, uint64_t seed) {
    const std::vector<float> r = random_floats((size_t)B * cfg.seq_len, seed, 0, (float)cfg.vocab_size);
    std::vector<uint16_t> prev(r.size());
    for (size_t i = 0; i < r.size(); i++) prev[i] = (uint16_t)std::min((int)r[i], cfg.vocab_size - 1);
    return prev;
}

// Every position's logits, T x B x V, from the CPU decoder.
static std::vector<float> cpu_decode_all(const ModelConfig &cfg, std::vector<float> params,
                                         const std::vector<uint16_t> &prev, int B) {
    ParamPointers p;
    param_pointers(&cfg, params.data(), &p);
    DecodeState s;
    decode_create(&s, &cfg, &p, B, 1);
    decode_begin(&s, B);
    std::vector<float> logits;
    for (int t = 0; t < cfg.seq_len; t++) {
        const float *step = decode_step(&s, prev.data() + (size_t)t * B);
        logits.insert(logits.end(), step, step + (size_t)B * cfg.vocab_size);
    }
    decode_free(&s);
    param_pointers_free(&p);
    return logits;
}

// The same from the GPU decoder (a cache for max_batch > B sequences: the
// layers' stride is max_batch's), twice: the second pass under another thread
// order of the interpreter, which must give the same bits.
static std::vector<float> gpu_decode_all(const ModelConfig &cfg, GpuPrecision precision,
                                         const std::vector<float> &params, const std::vector<uint16_t> &prev, int B) {
    GpuModel *g = gpu_model_create(&cfg, 1, precision, false, false);
    gpu_model_set_params(g, params.data());
    gpu_model_decode_create(g, B + 2);
    std::vector<float> passes[2];
    const std::vector<ScheduleOrder> orders = schedule_orders();
    for (int pass = 0; pass < 2; pass++) {
        use_schedule_order(pass == 0 ? orders.front() : orders.back());
        gpu_model_decode_begin(g, B);
        for (int t = 0; t < cfg.seq_len; t++) {
            const float *step = gpu_model_decode_step(g, prev.data() + (size_t)t * B);
            passes[pass].insert(passes[pass].end(), step, step + (size_t)B * cfg.vocab_size);
        }
    }
    use_schedule_order(orders[0]);
    gpu_model_free(g);
    CHECK(memcmp(passes[0].data(), passes[1].data(), passes[0].size() * sizeof(float)) == 0,
          "%s decode: two passes over the same inputs gave other bits", precision == GPU_BF16 ? "bf16" : "fp32");
    return passes[0];
}

// The worst position's relative Frobenius error (each position's B x V logits).
static double worst_position_error(const ModelConfig &cfg, int B, const std::vector<float> &got,
                                   const std::vector<float> &want, int *worst) {
    const size_t n = (size_t)B * cfg.vocab_size;
    double error = 0.0;
    for (int t = 0; t < cfg.seq_len; t++) {
        const double e = rel_frobenius_error(got.data() + t * n, want.data() + t * n, n);
        if (!(e <= error)) {
            error = e;
            *worst = t;
        }
    }
    return error;
}

static void decode_case(NormKind norm, int C, int NH) {
    const ModelConfig cfg = decode_config(norm, C, NH);
    const int B = 3;
    const std::vector<float> params = decode_params(cfg, 17), params_bf16 = rounded_to<bf16>(params);
    const std::vector<uint16_t> prev = decode_inputs(cfg, B, 18);
    char where[64];
    snprintf(where, sizeof where, "%s, hs %d", norm_kind_name(norm), C / NH);
    int worst = 0;
    // fp32, and the premise of its tolerance: the CPU's own one-ulp spread.
    const double fp32_tol = 1e-5, bf16_tol = 2e-2;
    const std::vector<float> want = cpu_decode_all(cfg, params, prev, B);
    double err = worst_position_error(cfg, B, gpu_decode_all(cfg, GPU_FP32, params, prev, B), want, &worst);
    CHECK(error_within("fp32 decode logits, rel. Frobenius (worst position)", where, err, fp32_tol),
          "%s: fp32 GPU decode logits at position %d differ by %.3g (relative Frobenius) > %.0e", where, worst, err,
          fp32_tol);
    double spread = 0.0;
    for (uint64_t seed = 1; seed <= 4; seed++)
        spread = std::fmax(
            spread,
            worst_position_error(cfg, B, cpu_decode_all(cfg, nudged_one_ulp(params, seed), prev, B), want, &worst));
    CHECK(error_within("fp32 decode reference's one-ulp spread x 4 (premise)", where, 4 * spread, fp32_tol),
          "%s: the CPU decoder's own rounding noise (%.3g) leaves the fp32 tolerance %.0e no room", where, spread,
          fp32_tol);
    // bf16 against the CPU given the bf16-rounded parameters the kernels read.
    err = worst_position_error(cfg, B, gpu_decode_all(cfg, GPU_BF16, params, prev, B),
                               cpu_decode_all(cfg, params_bf16, prev, B), &worst);
    CHECK(error_within("bf16 decode logits, rel. Frobenius (worst position)", where, err, bf16_tol),
          "%s: bf16 GPU decode logits at position %d differ by %.3g (relative Frobenius) > %.0e", where, worst, err,
          bf16_tol);
}

TEST(test_gpu_decode_matches_cpu_decode) {
    decode_case(NORM_IGPT, 32, 2);       // hs 16
    decode_case(NORM_LAYERNORM, 32, 2);  // hs 16
    decode_case(NORM_IGPT, 64, 1);       // hs 64
}

static void decode_without_create() {
    const ModelConfig cfg = decode_config(NORM_IGPT, 32, 2);
    GpuModel *g = gpu_model_create(&cfg, 1, GPU_FP32, false, false);
    gpu_model_decode_begin(g, 1);
}

TEST(test_gpu_decode_needs_a_cache) {
    std::string err;
    run_in_child(decode_without_create, &err);
    CHECK(err.find("before gpu_model_decode_create") != std::string::npos, "begin without a cache must stop: %s",
          err.c_str());
}
