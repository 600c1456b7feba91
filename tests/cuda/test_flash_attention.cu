// The tensor-core attention kernels (cuda/flash_attention.cu) against the CPU
// reference attention_forward / attention_backward (fp32 on the same
// bf16-rounded inputs) and against the portable kernels (cuda/attention.cu,
// bf16): every head size they support (32, 64, 128), sequence lengths that end
// mid-tile and exactly on a tile boundary, several heads and a batch; the
// output, the log-sum-exp, dq, dk, dv; every interpreter thread order; and
// two backward passes giving the same bits.
//
// Tolerances (relative Frobenius error, docs/cuda.md "Tolerances"): as the
// portable kernels' (test_attention.cu: an output element sums T terms, and a
// probability carries its score's error, T + hs x (largest |q| x largest |k|
// x sqrt(hs)) terms, plus one bf16 rounding of the output), plus one more bf16
// rounding: the tensor cores multiply P (forward, dV) and dS (dQ, dK) rounded
// to bf16, a relative error of at most 2^-8 in each term of those sums.
// Against the portable kernel: each side is within its tolerance of the
// exact result, so the two are within the sum. Largest error 2e-2 and
// log-sum-exp 1e-4 as for the portable kernels.
#include <cmath>
#include <initializer_list>
#include <string>

#include "cuda_test.h"
#include "kernels.cuh"

extern "C" {
#include "model/cpu_ops.h"
#include "model/gpu_model.h"
#include "model/model.h"
#include "model/params.h"
}

namespace {

struct FlashCase {
    int B, T, C, NH;
};

// One tensor (dq, dk or dv: part 0, 1, 2 of each row of dqkv) as its own vector.
std::vector<float> qkv_part(const std::vector<float> &dqkv, int part, size_t rows, int C) {
    std::vector<float> out;
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) out.push_back(dqkv[r * 3 * C + (size_t)part * C + c]);
    return out;
}

// got against the CPU (tolerance tol, largest error 2e-2) and against the portable kernel (portable_tol).
void compare(const std::string &name, const std::string &where, const std::vector<float> &got,
             const std::vector<float> &cpu, const std::vector<float> &portable, double tol, double portable_tol) {
    const size_t n = got.size();
    double err = max_rel_diff(got.data(), cpu.data(), n);
    CHECK(error_within(("flash " + name + ", largest error").c_str(), where, err, 2e-2), "%s %s: largest error %.3g",
          where.c_str(), name.c_str(), err);
    err = rel_frobenius_error(got.data(), cpu.data(), n);
    CHECK(error_within(("flash " + name + ", rel. Frobenius").c_str(), where, err, tol),
          "%s %s: differs from the CPU by %.3g (relative Frobenius) > %.2g", where.c_str(), name.c_str(), err, tol);
    err = rel_frobenius_error(got.data(), portable.data(), n);
    CHECK(error_within(("flash " + name + " vs portable, rel. Frobenius").c_str(), where, err, portable_tol),
          "%s %s: differs from the portable kernel by %.3g (relative Frobenius) > %.2g", where.c_str(), name.c_str(),
          err, portable_tol);
}

void flash_case(const FlashCase &fc, bool all_orders) {
    const int B = fc.B, T = fc.T, C = fc.C, NH = fc.NH, hs = C / NH;
    const size_t n_qkv = (size_t)B * T * 3 * C, n_y = (size_t)B * T * C, n_lse = (size_t)B * NH * T;
    std::vector<float> qkv = rounded_to<bf16>(random_floats(n_qkv, 71 + T + hs, -1.5f, 1.5f));
    std::vector<float> dy = rounded_to<bf16>(random_floats(n_y, 72 + T + hs, -1, 1));
    std::vector<float> want_y(n_y), want_lse(n_lse), want_dqkv(n_qkv), scratch(attention_scratch_floats(T, C, NH, 1));
    attention_forward(want_y.data(), want_lse.data(), qkv.data(), scratch.data(), B, T, C, NH, 1);

    float largest = 0.0f;
    for (float v : qkv) largest = std::fmax(largest, std::fabs(v));
    const int terms = T + (int)std::ceil(hs * largest * largest * std::sqrt((double)hs));
    const double tol = kernel_frobenius_tolerance<bf16>(terms) + BF16_UNIT_ROUNDOFF;
    const double portable_tol = tol + kernel_frobenius_tolerance<bf16>(terms);

    bf16 *d_qkv = upload_as<bf16>(qkv), *d_dy = upload_as<bf16>(dy), *d_y = device_alloc<bf16>(n_y),
         *d_dqkv = device_alloc<bf16>(n_qkv), *d_portable_y = device_alloc<bf16>(n_y),
         *d_portable_dqkv = device_alloc<bf16>(n_qkv);
    float *d_lse = device_alloc<float>(n_lse), *d_rowdot = device_alloc<float>(n_lse),
          *d_portable_lse = device_alloc<float>(n_lse);

    char where_c[96];
    snprintf(where_c, sizeof where_c, "B=%d T=%d hs=%d NH=%d", B, T, hs, NH);
    const std::string where = where_c;
    gpu_flash_attention_forward(d_y, d_lse, d_qkv, B, T, C, NH, 0);
    gpu_attention_forward(d_portable_y, d_portable_lse, d_qkv, B, T, C, NH, 0);
    const std::vector<float> y = download_as_float(d_y, n_y), lse = to_host(d_lse, n_lse);
    compare("y", where, y, want_y, download_as_float(d_portable_y, n_y), tol, portable_tol);
    const double err_lse = max_abs_diff(lse.data(), want_lse.data(), n_lse);
    CHECK(error_within("flash log-sum-exp, absolute", where, err_lse, 1e-4), "%s: log-sum-exp error %.3g > 1e-4",
          where_c, err_lse);

    // Backward from the flash kernel's own output (as the model does); the
    // CPU and the portable kernel get the same output and log-sum-exp.
    attention_backward(want_dqkv.data(), dy.data(), y.data(), qkv.data(), want_lse.data(), scratch.data(), B, T, C, NH,
                       1);
    gpu_attention_backward(d_portable_dqkv, d_rowdot, d_dy, d_y, d_qkv, d_lse, B, T, C, NH, 0);
    const std::vector<float> portable_dqkv = download_as_float(d_portable_dqkv, n_qkv);
    gpu_flash_attention_backward(d_dqkv, d_rowdot, d_dy, d_y, d_qkv, d_lse, B, T, C, NH, 0);
    const std::vector<float> dqkv = download_as_float(d_dqkv, n_qkv);
    const char *part_name[3] = {"dq", "dk", "dv"};
    for (int part = 0; part < 3; part++)
        compare(part_name[part], where, qkv_part(dqkv, part, (size_t)B * T, C),
                qkv_part(want_dqkv, part, (size_t)B * T, C), qkv_part(portable_dqkv, part, (size_t)B * T, C), tol,
                portable_tol);

    // Deterministic: a second backward pass gives the same bits; so does every
    // other thread order of the interpreter (which exposes missing barriers and waits).
    gpu_flash_attention_backward(d_dqkv, d_rowdot, d_dy, d_y, d_qkv, d_lse, B, T, C, NH, 0);
    CHECK(download_as_float(d_dqkv, n_qkv) == dqkv, "%s: a second backward pass gives other bits", where_c);
    std::vector<ScheduleOrder> orders = schedule_orders();
    for (size_t k = 1; all_orders && k < orders.size(); k++) {
        use_schedule_order(orders[k]);
        gpu_flash_attention_forward(d_y, d_lse, d_qkv, B, T, C, NH, 0);
        gpu_flash_attention_backward(d_dqkv, d_rowdot, d_dy, d_y, d_qkv, d_lse, B, T, C, NH, 0);
        CHECK(download_as_float(d_y, n_y) == y && to_host(d_lse, n_lse) == lse &&
                  download_as_float(d_dqkv, n_qkv) == dqkv,
              "%s, %s order: other bits than the first order", where_c, orders[k].name);
    }
    use_schedule_order(orders[0]);
    for (void *p : {(void *)d_qkv, (void *)d_dy, (void *)d_y, (void *)d_dqkv, (void *)d_portable_y,
                    (void *)d_portable_dqkv, (void *)d_lse, (void *)d_rowdot, (void *)d_portable_lse})
        cudaFree(p);
}

}  // namespace

// Tiles: 64 query rows per block, 64 keys per tile (forward, dQ), 32 (hs
// 128) or 64 queries per tile (dK/dV).
TEST(test_flash_attention_head_sizes_and_tiles) {
    const FlashCase cases[] = {{2, 70, 64, 2},    // hs 32, batch 2, ends 6 rows into the second tile
                               {1, 64, 128, 2},   // hs 64, exactly one tile
                               {1, 129, 192, 3},  // hs 64, 3 heads, one row past two tiles
                               {2, 97, 256, 2}};  // hs 128, batch 2, one row past three 32-query tiles
    for (const FlashCase &c : cases) flash_case(c, true);
}

TEST(test_flash_attention_unsupported_head_sizes) {
    CHECK(gpu_flash_attention_supports(32) && gpu_flash_attention_supports(64) && gpu_flash_attention_supports(128),
          "head sizes 32, 64, 128 are the tensor-core kernels'");
    CHECK(!gpu_flash_attention_supports(16) && !gpu_flash_attention_supports(96), "16 and 96 are not");
}

// --- In the model: `--device cuda` uses these kernels by default where they apply ---------------

namespace {

ModelConfig model_config(int d_model, int n_head) {
    ModelConfig cfg = {.vocab_size = 13,
                       .seq_len = 20,
                       .image_height = 4,
                       .image_width = 5,
                       .d_model = d_model,
                       .n_layer = 2,
                       .n_head = n_head,
                       .norm = NORM_IGPT};
    return cfg;
}

struct ModelStep {
    double loss;
    std::vector<float> grads;
};

// One forward and backward pass of a bf16 GPU model with the given attention kernels.
ModelStep model_step(const ModelConfig &cfg, GpuAttention attention, const std::vector<float> &params,
                     const std::vector<uint16_t> &tokens, int B) {
    GpuModel *g = gpu_model_create(&cfg, B, GPU_BF16, false, false);
    gpu_model_set_attention(g, attention);
    gpu_model_set_params(g, params.data());
    gpu_model_zero_grads(g);
    ModelStep r;
    r.loss = gpu_model_forward(g, tokens.data(), B);
    gpu_model_backward(g, tokens.data(), B, 1.0f / (float)(B * cfg.seq_len));
    r.grads.resize(params.size());
    gpu_model_get_grads(g, r.grads.data());
    gpu_model_free(g);
    return r;
}

void ask_flash_for_fp32(void) {
    const ModelConfig cfg = model_config(64, 2);
    gpu_attention_kernels(&cfg, GPU_FP32, GPU_ATTENTION_FLASH);
}

}  // namespace

TEST(test_flash_attention_is_the_default_where_it_applies) {
    const ModelConfig hs32 = model_config(64, 2), hs16 = model_config(32, 2);
    CHECK(gpu_attention_kernels(&hs32, GPU_BF16, GPU_ATTENTION_AUTO) == GPU_ATTENTION_FLASH, "auto: bf16 hs 32 flash");
    CHECK(gpu_attention_kernels(&hs32, GPU_FP32, GPU_ATTENTION_AUTO) == GPU_ATTENTION_PORTABLE, "auto: fp32 portable");
    CHECK(gpu_attention_kernels(&hs16, GPU_BF16, GPU_ATTENTION_AUTO) == GPU_ATTENTION_PORTABLE, "auto: hs 16 portable");
    CHECK(gpu_attention_kernels(&hs32, GPU_BF16, GPU_ATTENTION_PORTABLE) == GPU_ATTENTION_PORTABLE, "portable asked");
    std::string err;
    run_in_child(ask_flash_for_fp32, &err);
    CHECK(err.find("--attention flash") != std::string::npos, "flash for fp32 must stop, saying why: %s", err.c_str());

    // The whole model (hs 32, bf16) with either kernels: a default model runs the
    // tensor-core ones (other bits than the portable ones), and the two agree
    // within the bf16 model tolerance of test_model.cu (2e-2 relative Frobenius per gradient tensor).
    const int B = 2;
    std::vector<float> params(param_count(&hs32));
    model_init_params(&hs32, params.data(), 7);
    std::vector<float> noise = random_floats(params.size(), 107, -0.05f, 0.05f);
    for (size_t i = 0; i < params.size(); i++) params[i] = to_float(from_float<bf16>(params[i] + noise[i]));
    std::vector<float> r = random_floats((size_t)B * hs32.seq_len, 8, 0, (float)hs32.vocab_size);
    std::vector<uint16_t> tokens(r.size());
    for (size_t i = 0; i < r.size(); i++) tokens[i] = (uint16_t)std::fmin(r[i], hs32.vocab_size - 1);
    const ModelStep flash = model_step(hs32, GPU_ATTENTION_AUTO, params, tokens, B);
    const ModelStep portable = model_step(hs32, GPU_ATTENTION_PORTABLE, params, tokens, B);
    CHECK(flash.grads != portable.grads, "auto gives the portable kernels' bits: the tensor-core kernels did not run");
    const double loss_err = std::fabs(flash.loss - portable.loss) / portable.loss;
    CHECK(error_within("flash vs portable model loss, relative", "hs 32", loss_err, 2e-2), "loss %.7f vs %.7f",
          flash.loss, portable.loss);
    std::vector<TensorInfo> tensors((size_t)param_tensors(&hs32, nullptr));
    param_tensors(&hs32, tensors.data());
    for (const TensorInfo &t : tensors) {
        const double e = rel_frobenius_error(flash.grads.data() + t.offset, portable.grads.data() + t.offset, t.count);
        CHECK(error_within("flash vs portable model gradients, rel. Frobenius", t.name, e, 2e-2),
              "gradient of %s: flash and portable differ by %.3g", t.name, e);
    }
}
