// Each layer kernel against the CPU reference operation of the same name
// (src/model/cpu_ops.h), in fp32 and bf16 storage, under every thread order
// of the interpreter (results must also be identical across orders).
// Two tolerances per tensor. The largest error relative to the largest
// magnitude of the reference tensor (absolute below 1): fp32 storage 1e-5
// (summation order only), bf16 storage 1e-2 (outputs rounded to 8
// significant bits; the CPU sees the same rounded inputs). And the relative
// Frobenius error, derived from the longest sum behind one output element
// (kernel_frobenius_tolerance in cuda_test.h: twice gamma of that many
// terms plus 16 elementwise roundings, and 2^-8 for an output stored in
// bf16), which holds for any summation order, fused multiply-adds and the
// GPU's expf (2 ulps); fp32 outputs of bf16 runs (rstd, dgain, losses,
// Adam's m and v) get the fp32 bound: their inputs are the same on both
// sides. The kernels' summation orders are the same on a GPU as in the
// interpreter; only fused multiply-adds and the math library differ there.
#include <algorithm>
#include <csignal>
#include <cstring>
#include <string>

#include "cuda_test.h"
#include "kernels.cuh"

extern "C" {
#include "model/cpu_ops.h"
#include "model/params.h"
#include "train/optim.h"
}

template <typename T>
static double tolerance() {
    return sizeof(T) == 4 ? 1e-5 : 1e-2;
}

// Compares a device tensor (stored as D) with the reference, in the test of
// storage type Mode: its largest error (tol) and its relative Frobenius
// error (from `terms`, the longest sum behind one element; EXACT: bit for
// bit); also that every thread order gives the same bits.
constexpr int EXACT = -1;
template <typename Mode, typename D>
static void check_close(const char *what, const D *d, const std::vector<float> &want, double tol, int terms,
                        const char *order, std::vector<float> *first_order_result) {
    std::vector<float> got = download_as_float(d, want.size());
    const std::string label = std::string(type_name<Mode>()) + " " + what, where = std::string(order) + " order";
    double err = max_rel_diff(got.data(), want.data(), want.size());
    CHECK(error_within((label + ", largest error").c_str(), where, err, tol),
          "%s (%s, %s order): max relative error %.3g > %.1g", what, type_name<Mode>(), order, err, tol);
    const double frobenius_tol = terms == EXACT ? 0.0 : kernel_frobenius_tolerance<D>(terms);
    err = rel_frobenius_error(got.data(), want.data(), want.size());
    CHECK(error_within((label + ", rel. Frobenius").c_str(), where, err, frobenius_tol),
          "%s (%s, %s order): relative Frobenius error %.3g > %.2g", what, type_name<Mode>(), order, err,
          frobenius_tol);
    if (first_order_result->empty()) *first_order_result = got;
    else
        CHECK(memcmp(got.data(), first_order_result->data(), got.size() * sizeof(float)) == 0,
              "%s (%s): %s order gives other bits than the first order", what, type_name<Mode>(), order);
}

// --- Embedding ----------------------------------------------------------------------------
// dwte as the GPU sums it: each token's rows in chunks of
// ENCODER_BACKWARD_CHUNK (the first chunk from the old row), then the
// chunks' sums in chunk order. The GPU must match this bit for bit.
static std::vector<float> chunked_dwte(std::vector<float> dwte, const std::vector<float> &dout,
                                       const std::vector<int> &offsets, const std::vector<int> &rows, int C) {
    for (size_t v = 0; v + 1 < offsets.size(); v++)
        for (int c = 0; c < C; c++) {
            float total = dwte[v * C + c];
            for (int begin = offsets[v]; begin < offsets[v + 1]; begin += ENCODER_BACKWARD_CHUNK) {
                const int end = std::min(begin + ENCODER_BACKWARD_CHUNK, offsets[v + 1]);
                float chunk = begin == offsets[v] ? dwte[v * C + c] : 0.0f;
                for (int r = begin; r < end; r++) chunk += dout[(size_t)rows[(size_t)r] * C + c];
                total = begin == offsets[v] ? chunk : total + chunk;
            }
            dwte[v * C + c] = total;
        }
    return dwte;
}

template <typename T>
static void encoder_case(int C, int B, int T_, bool skewed) {
    const int V = 9;  // tokens 0..6 only: rows 7 and 8 of dwte take no rows and must stay unchanged
    std::vector<uint16_t> tokens(B * T_);
    for (int i = 0; i < B * T_; i++) tokens[(size_t)i] = (uint16_t)((i * 5 + i / 3) % 7);
    if (skewed)  // a background color: most rows fed by token 2
        for (int i = 0; i < B * T_; i++)
            if (i % 7 != 0) tokens[(size_t)i] = 2;
    std::vector<float> wte = rounded_to<T>(random_floats((size_t)V * C, 1, -1, 1));
    std::vector<float> wpe = rounded_to<T>(random_floats((size_t)T_ * C, 2, -1, 1));
    std::vector<float> sos = rounded_to<T>(random_floats(C, 3, -1, 1));
    std::vector<float> dout = rounded_to<T>(random_floats((size_t)B * T_ * C, 4, -1, 1));
    // CPU reference.
    ParamPointers p = {};
    p.wte = wte.data();
    p.wpe = wpe.data();
    p.sos = sos.data();
    std::vector<float> want_out((size_t)B * T_ * C);
    encoder_forward(want_out.data(), tokens.data(), &p, B, T_, C, 1);
    std::vector<float> gwte = random_floats(wte.size(), 5, -1, 1), gwpe = random_floats(wpe.size(), 6, -1, 1),
                       gsos = random_floats(C, 7, -1, 1);
    std::vector<float> want_gwte = gwte, want_gwpe = gwpe, want_gsos = gsos;
    ParamPointers g = {};
    g.wte = want_gwte.data();
    g.wpe = want_gwpe.data();
    g.sos = want_gsos.data();
    encoder_backward(&g, dout.data(), tokens.data(), B, T_, C, 1);
    // GPU.
    std::vector<int> offsets(V + 1), rows((size_t)B * (T_ - 1));
    token_rows_by_value(tokens.data(), B, T_, V, offsets.data(), rows.data());
    int longest = 0;
    for (int v = 0; v < V; v++) longest = std::max(longest, offsets[v + 1] - offsets[v]);
    if (skewed && longest > ENCODER_BACKWARD_CHUNK)  // the case is meant to end in a partial chunk
        CHECK(longest % ENCODER_BACKWARD_CHUNK != 0, "skewed case: %d rows, a whole number of chunks", longest);
    const std::vector<float> chunked_gwte = chunked_dwte(gwte, dout, offsets, rows, C);
    uint16_t *d_tokens = to_device(tokens);
    int *d_offsets = to_device(offsets), *d_rows = to_device(rows);
    T *d_wte = upload_as<T>(wte), *d_wpe = upload_as<T>(wpe), *d_sos = upload_as<T>(sos), *d_dout = upload_as<T>(dout);
    T *d_out = device_alloc<T>(want_out.size());
    float *d_scratch = device_alloc<float>(gpu_encoder_backward_scratch(B, T_, C, V));
    std::vector<float> first[6];
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        float *d_gwte = to_device(gwte), *d_gwpe = to_device(gwpe), *d_gsos = to_device(gsos);
        gpu_encoder_forward(d_out, d_tokens, d_wte, d_wpe, d_sos, B, T_, C, 0);
        gpu_encoder_backward(d_gwte, d_gwpe, d_gsos, d_dout, d_offsets, d_rows, B, T_, C, V, d_scratch, 0);
        // Forward: one rounded add; backward: fp32 sums, in the CPU's order
        // (exact) when every token fits in one chunk, else in chunks: rounding
        // only, as a sum of longest + 1 terms in any order.
        const double tol = sizeof(T) == 4 ? 0.0 : tolerance<T>();
        check_close<T>("encoder_forward", d_out, want_out, tol, sizeof(T) == 4 ? EXACT : 0, o.name, &first[0]);
        if (longest <= ENCODER_BACKWARD_CHUNK)
            check_close<T>("encoder_backward dwte", d_gwte, want_gwte, 0.0, EXACT, o.name, &first[1]);
        else
            check_close<T>("encoder_backward dwte, chunked", d_gwte, want_gwte, tolerance<float>(), longest + 1, o.name,
                           &first[1]);
        check_close<T>("encoder_backward dwte vs the chunk order", d_gwte, chunked_gwte, 0.0, EXACT, o.name, &first[4]);
        check_close<T>("encoder_backward dwpe", d_gwpe, want_gwpe, 0.0, EXACT, o.name, &first[2]);
        check_close<T>("encoder_backward dsos", d_gsos, want_gsos, 0.0, EXACT, o.name, &first[3]);
        // A second run from the same gradients gives the same bits.
        CUDA_CHECK(cudaMemcpy(d_gwte, gwte.data(), gwte.size() * sizeof(float), cudaMemcpyHostToDevice));
        gpu_encoder_backward(d_gwte, d_gwpe, d_gsos, d_dout, d_offsets, d_rows, B, T_, C, V, d_scratch, 0);
        std::vector<float> again = download_as_float(d_gwte, gwte.size());
        CHECK(memcmp(again.data(), first[1].data(), again.size() * sizeof(float)) == 0,
              "encoder_backward dwte (%s, %s order): a second run gives other bits", type_name<T>(), o.name);
        cudaFree(d_gwte);
        cudaFree(d_gwpe);
        cudaFree(d_gsos);
    }
    cudaFree(d_tokens);
    cudaFree(d_offsets);
    cudaFree(d_rows);
    cudaFree(d_wte);
    cudaFree(d_wpe);
    cudaFree(d_sos);
    cudaFree(d_scratch);
    cudaFree(d_dout), cudaFree(d_out);
}

// C = 40: 16-byte packs in both storage types, two blocks of channels in
// the backward; C = 36: one element at a time in bf16 (36 % 8 != 0); C =
// 13: in both. And a skewed palette (one token feeds 6/7 of the rows):
// within one chunk (158 rows, bitwise the CPU), and over three chunks (716
// rows: 256 + 256 + 204). Most of the 9 tokens feed no row at all.
TEST(test_gpu_encoder_forward_backward) {
    for (int C : {40, 36, 13}) {
        encoder_case<float>(C, 3, 10, false);
        encoder_case<bf16>(C, 3, 10, false);
    }
    encoder_case<float>(72, 6, 30, true);
    encoder_case<bf16>(72, 6, 30, true);
    encoder_case<float>(40, 8, 100, true);
    encoder_case<bf16>(40, 8, 100, true);
}

// --- Norms ------------------------------------------------------------------------------------
template <typename T>
static void norm_case(NormKind kind, int N, int C) {
    const size_t n = (size_t)N * C;
    std::vector<float> a = rounded_to<T>(random_floats(n, 11, -2, 2)), b = rounded_to<T>(random_floats(n, 12, -1, 1));
    std::vector<float> gain = rounded_to<T>(random_floats(C, 13, 0.5f, 1.5f));
    std::vector<float> bias = rounded_to<T>(random_floats(C, 14, -0.5f, 0.5f));
    std::vector<float> dout = rounded_to<T>(random_floats(n, 15, -1, 1));
    std::vector<float> dinp0 = rounded_to<T>(random_floats(n, 16, -1, 1));
    std::vector<float> dgain0 = random_floats(C, 17, -1, 1), dbias0 = random_floats(C, 18, -1, 1);
    const bool ln = kind == NORM_LAYERNORM;
    // CPU: x = a + b (rounded to T as the kernel stores it), then the norm.
    std::vector<float> x(n), want_out(n), mean(N), rstd(N);
    residual_forward(x.data(), a.data(), b.data(), n, 1);
    x = rounded_to<T>(x);
    norm_forward(kind, want_out.data(), ln ? mean.data() : nullptr, rstd.data(), x.data(), gain.data(),
                 ln ? bias.data() : nullptr, N, C, 1);
    std::vector<float> want_dinp = dinp0, want_dgain = dgain0, want_dbias = dbias0;
    norm_backward(kind, want_dinp.data(), want_dgain.data(), ln ? want_dbias.data() : nullptr, dout.data(), x.data(),
                  ln ? mean.data() : nullptr, rstd.data(), gain.data(), N, C, 1);
    // GPU.
    T *d_a = upload_as<T>(a), *d_b = upload_as<T>(b), *d_gain = upload_as<T>(gain), *d_bias = upload_as<T>(bias);
    T *d_dout = upload_as<T>(dout), *d_x = device_alloc<T>(n), *d_out = device_alloc<T>(n);
    float *d_mean = device_alloc<float>(N), *d_rstd = device_alloc<float>(N);
    float *scratch = device_alloc<float>(gpu_norm_backward_scratch(N, C));
    std::vector<float> first[6];
    const double tol = tolerance<T>(), grad_tol = sizeof(T) == 4 ? 1e-5 : 2e-2;
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        T *d_dinp = upload_as<T>(dinp0);
        float *d_dgain = to_device(dgain0), *d_dbias = to_device(dbias0);
        gpu_residual_norm_forward<T>(kind, d_x, d_out, ln ? d_mean : nullptr, d_rstd, d_a, d_b, d_gain,
                                     ln ? d_bias : nullptr, N, C, 0);
        check_close<T>("residual (x = a + b)", d_x, x, 0.0, EXACT, o.name, &first[0]);
        check_close<T>("norm_forward", d_out, want_out, tol, C, o.name, &first[1]);
        check_close<T>("norm_forward rstd", d_rstd, rstd, 1e-5, C, o.name, &first[2]);
        gpu_norm_backward<T>(kind, d_dinp, d_dgain, ln ? d_dbias : nullptr, d_dout, d_x, ln ? d_mean : nullptr, d_rstd,
                             d_gain, N, C, scratch, 0);
        check_close<T>("norm_backward dinp", d_dinp, want_dinp, grad_tol, C, o.name, &first[3]);
        check_close<T>("norm_backward dgain", d_dgain, want_dgain, grad_tol, N, o.name, &first[4]);
        check_close<T>("norm_backward dbias", d_dbias, want_dbias, grad_tol, N, o.name, &first[5]);
        cudaFree(d_dinp), cudaFree(d_dgain), cudaFree(d_dbias);
    }
    cudaFree(d_a), cudaFree(d_b), cudaFree(d_gain), cudaFree(d_bias), cudaFree(d_dout), cudaFree(d_x), cudaFree(d_out);
    cudaFree(d_mean);
    cudaFree(d_rstd);
    cudaFree(scratch);
}

// Shapes: packs in both storage types, one block of the backward; more
// blocks than one and a last one partly filled (150 rows), bf16 one element
// at a time (36 % 8 != 0); both one at a time (C = 13).
TEST(test_gpu_norm_forward_backward) {
    const int shapes[][2] = {{37, 72}, {150, 36}, {70, 13}};
    for (NormKind kind : {NORM_IGPT, NORM_LAYERNORM})
        for (const auto &shape : shapes) {
            norm_case<float>(kind, shape[0], shape[1]);
            norm_case<bf16>(kind, shape[0], shape[1]);
        }
}

// --- GELU ---------------------------------------------------------------------------------------
template <typename T>
static void gelu_case() {
    const size_t n = 1003;  // not a multiple of a pack: the last thread's remainder one by one
    std::vector<float> x = rounded_to<T>(random_floats(n, 21, -6, 6)), dy = rounded_to<T>(random_floats(n, 22, -1, 1));
    std::vector<float> want_y(n), want_dx(n);
    gelu_forward(want_y.data(), x.data(), n, 1);
    gelu_backward(want_dx.data(), x.data(), dy.data(), n, 1);
    T *d_x = upload_as<T>(x), *d_dy = upload_as<T>(dy), *d_y = device_alloc<T>(n);
    std::vector<float> first[4];
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        T *d_dx = upload_as<T>(dy);
        gpu_gelu_forward(d_y, d_x, n, 0);
        gpu_gelu_backward(d_dx, d_x, d_dx, n, 0);  // in place, as the model uses it
        check_close<T>("gelu_forward", d_y, want_y, sizeof(T) == 4 ? 1e-6 : 1e-2, 0, o.name, &first[0]);
        check_close<T>("gelu_backward", d_dx, want_dx, sizeof(T) == 4 ? 1e-6 : 1e-2, 0, o.name, &first[1]);
        cudaFree(d_dx);
        // Buffers that start one element past 16-byte alignment: one element per access.
        T *d_y1 = device_alloc<T>(n + 1), *d_dx1 = device_alloc<T>(n + 1), *d_x1 = device_alloc<T>(n + 1);
        CUDA_CHECK(cudaMemcpy(d_x1 + 1, d_x, n * sizeof(T), cudaMemcpyDeviceToDevice));
        CUDA_CHECK(cudaMemcpy(d_dx1 + 1, d_dy, n * sizeof(T), cudaMemcpyDeviceToDevice));
        gpu_gelu_forward(d_y1 + 1, d_x1 + 1, n, 0);
        gpu_gelu_backward(d_dx1 + 1, d_x1 + 1, d_dx1 + 1, n, 0);
        check_close<T>("gelu_forward, misaligned", d_y1 + 1, want_y, sizeof(T) == 4 ? 1e-6 : 1e-2, 0, o.name,
                       &first[2]);
        check_close<T>("gelu_backward, misaligned", d_dx1 + 1, want_dx, sizeof(T) == 4 ? 1e-6 : 1e-2, 0, o.name,
                       &first[3]);
        cudaFree(d_y1), cudaFree(d_dx1), cudaFree(d_x1);
    }
    cudaFree(d_x), cudaFree(d_dy), cudaFree(d_y);
}

TEST(test_gpu_gelu_forward_backward) {
    gelu_case<float>();
    gelu_case<bf16>();
}

// --- Softmax and cross-entropy -----------------------------------------------------------
template <typename T>
static void softmax_case(int V) {
    const int N = 9;
    std::vector<float> logits = rounded_to<T>(random_floats((size_t)N * V, 31, -8, 8));
    std::vector<uint16_t> targets(N);
    for (int i = 0; i < N; i++) targets[(size_t)i] = (uint16_t)((i * 37) % V);
    std::vector<float> probs = logits, losses(N);
    softmax_crossentropy_forward(probs.data(), losses.data(), targets.data(), N, V, 1);
    const float scale = 1.0f / N;
    std::vector<float> dlogits = probs;
    softmax_crossentropy_backward(dlogits.data(), targets.data(), N, V, scale, 1);
    uint16_t *d_targets = to_device(targets);
    float *d_losses = device_alloc<float>(N);
    std::vector<float> first[6];
    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-2;
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        T *d_probs = upload_as<T>(logits), *d_grad = upload_as<T>(logits), *d_rows = upload_as<T>(logits);
        gpu_softmax_crossentropy(d_probs, d_losses, d_targets, N, V, CE_PROBABILITIES, 0.0f, 0);
        check_close<T>("softmax_crossentropy probabilities", d_probs, probs, tol, V, o.name, &first[0]);
        check_close<T>("softmax_crossentropy losses", d_losses, losses, 1e-5, V, o.name, &first[1]);
        T *d_kept = upload_as<T>(logits);
        gpu_softmax_crossentropy(d_kept, d_losses, d_targets, N, V, CE_LOSSES_ONLY, 0.0f, 0);
        check_close<T>("softmax_crossentropy losses only: logits kept", d_kept, logits, 0.0, EXACT, o.name, &first[5]);
        cudaFree(d_kept);
        gpu_softmax_crossentropy(d_grad, d_losses, d_targets, N, V, CE_GRADIENT, scale, 0);
        check_close<T>("softmax_crossentropy fused gradient", d_grad, dlogits, tol, V, o.name, &first[2]);
        check_close<T>("softmax_crossentropy losses (fused)", d_losses, losses, 1e-5, V, o.name, &first[3]);
        gpu_softmax_rows(d_rows, d_rows, N, V, 0);
        check_close<T>("softmax_rows", d_rows, probs, tol, V, o.name, &first[4]);
        cudaFree(d_probs), cudaFree(d_grad), cudaFree(d_rows);
    }
    cudaFree(d_targets);
    cudaFree(d_losses);
}

// V = 296: packs in both storage types; V = 300: bf16 one element at a time.
TEST(test_gpu_softmax_crossentropy) {
    for (int V : {296, 300}) {
        softmax_case<float>(V);
        softmax_case<bf16>(V);
    }
}

// --- AdamW and the gradient norm ------------------------------------------------------------------
// Every tensor of a tiny model in one launch, with weight decay and
// clipping, against adamw_update and global_norm over the whole buffer; the
// clip factor once from the host and once computed on the device (the same
// bits); and ZeRO-like pieces at odd offsets, packed (scalar heads and
// tails, pieces that start misaligned), against adamw_update_range.
static ModelConfig adamw_model() {
    return ModelConfig{.vocab_size = 11,
                       .seq_len = 6,
                       .image_height = 2,
                       .image_width = 3,
                       .d_model = 16,
                       .n_layer = 2,
                       .n_head = 2,
                       .norm = NORM_LAYERNORM};
}

static std::vector<TensorInfo> tensors_of(const ModelConfig *cfg) {
    std::vector<TensorInfo> info((size_t)param_tensors(cfg, nullptr));
    param_tensors(cfg, info.data());
    return info;
}

struct Piece {
    size_t begin, end, packed;
};

// Spans of every tensor's part in each piece (as gpu_model.cu makes them), uploaded.
static AdamWSpan *upload_spans(const std::vector<TensorInfo> &info, const std::vector<Piece> &pieces, int *num_spans,
                               size_t *work) {
    std::vector<AdamWSpan> spans;
    for (const Piece &pc : pieces)
        for (const TensorInfo &t : info) {
            const size_t b = std::max(pc.begin, t.offset), e = std::min(pc.end, t.offset + t.count);
            if (b < e) adamw_add_span(&spans, b, pc.packed + (b - pc.begin), e - b, t.decay);
        }
    *num_spans = (int)spans.size();
    *work = adamw_work(spans);
    return to_device(spans);
}

template <typename T>
static void adamw_case() {
    const ModelConfig cfg = adamw_model();
    const size_t n = param_count(&cfg);
    OptimConfig oc;
    optim_config_defaults(&oc);
    oc.total_steps = 10;
    oc.warmup_steps = 2;
    oc.weight_decay = 0.1;
    std::vector<float> params = random_floats(n, 41, -1, 1), grads = random_floats(n, 42, -3, 3);
    std::vector<float> m = random_floats(n, 43, -0.1f, 0.1f), v = random_floats(n, 44, 0, 0.1f);
    const double want_norm = global_norm(grads.data(), n, 1);
    const float grad_scale = clip_factor(&oc, want_norm);
    CHECK(grad_scale < 1.0f, "the case clips (norm %g)", want_norm);
    std::vector<float> want_p = params, want_m = m, want_v = v;
    const int step = 3;
    adamw_update(&oc, &cfg, step, want_p.data(), grads.data(), want_m.data(), want_v.data(), grad_scale, 1);
    int num_spans = 0;
    size_t work = 0;
    AdamWSpan *d_spans = upload_spans(tensors_of(&cfg), {{0, n, 0}}, &num_spans, &work);
    float *d_g = to_device(grads), *d_scale = device_alloc<float>(1);
    double *d_scratch = device_alloc<double>(GPU_SUM_BLOCKS), *d_squares = device_alloc<double>(1);
    T *d_copy = device_alloc<T>(n);
    const AdamWScalars s = adamw_scalars(&oc, step);
    std::vector<float> first[4], host_scaled;
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        gpu_sum_squares(d_squares, d_scale, d_g, n, false, oc.grad_clip, d_scratch, 0);
        const double norm = std::sqrt(to_host(d_squares, 1)[0]);
        CHECK(std::fabs(norm - want_norm) <= 1e-12 * want_norm, "grad norm %.15g, want %.15g", norm, want_norm);
        // A ZeRO rank's pieces: each piece's sum, then their sum in piece order.
        double piece_sums[2];
        for (int k = 0; k < 2; k++) {
            gpu_sum_squares(d_squares, nullptr, d_g + k * (n / 3), n / 3 + 1, false, 0.0, d_scratch, 0);
            piece_sums[k] = to_host(d_squares, 1)[0];
        }
        gpu_sum_squares(d_squares, nullptr, d_g + 0, n / 3 + 1, false, 0.0, d_scratch, 0);
        gpu_sum_squares(d_squares, nullptr, d_g + n / 3, n / 3 + 1, true, 0.0, d_scratch, 0);
        CHECK(to_host(d_squares, 1)[0] == piece_sums[0] + piece_sums[1], "sum of squares accumulated over pieces");
        gpu_sum_squares(d_squares, d_scale, d_g, n, false, oc.grad_clip, d_scratch, 0);
        const float device_scale = to_host(d_scale, 1)[0];
        CHECK(device_scale == clip_factor(&oc, norm), "clip factor on the device %.9g, on the host %.9g", device_scale,
              clip_factor(&oc, norm));
        for (const float *scale_on_device : {(const float *)nullptr, (const float *)d_scale}) {
            float *d_p = to_device(params), *d_m = to_device(m), *d_v = to_device(v);
            gpu_adamw<T>(d_p, d_copy, d_g, d_m, d_v, d_spans, num_spans, work, s, grad_scale, scale_on_device, 0);
            if (!scale_on_device) {
                // Same fp32 formula; only fused multiply-adds may differ.
                check_close<T>("adamw params", d_p, want_p, 1e-6, 0, o.name, &first[0]);
                check_close<T>("adamw m", d_m, want_m, 1e-6, 0, o.name, &first[1]);
                check_close<T>("adamw v", d_v, want_v, 1e-6, 0, o.name, &first[2]);
                check_close<T>("adamw params copy", d_copy, want_p, sizeof(T) == 4 ? 1e-6 : 4e-3, 0, o.name, &first[3]);
                host_scaled = to_host(d_p, n);
            } else {
                const std::vector<float> got = to_host(d_p, n);
                CHECK(memcmp(got.data(), host_scaled.data(), n * sizeof(float)) == 0,
                      "adamw with the clip factor read on the device differs from the host's factor (%s order)",
                      o.name);
            }
            cudaFree(d_p);
            cudaFree(d_m);
            cudaFree(d_v);
        }
    }
    cudaFree(d_spans);
    cudaFree(d_g);
    cudaFree(d_scale);
    cudaFree(d_scratch);
    cudaFree(d_squares);
    cudaFree(d_copy);
}

// Two pieces at odd offsets, packed one after the other from packed index 1.
template <typename T>
static void adamw_pieces_case() {
    const ModelConfig cfg = adamw_model();
    const size_t n = param_count(&cfg);
    OptimConfig oc;
    optim_config_defaults(&oc);
    oc.total_steps = 10;
    oc.weight_decay = 0.1;
    const std::vector<Piece> pieces = {{5, n / 2 + 3, 1}, {n / 2 + 10, n - 1, 1 + (n / 2 + 3 - 5)}};
    const size_t packed_n = pieces[1].packed + (pieces[1].end - pieces[1].begin);
    std::vector<float> params = random_floats(n, 45, -1, 1), grads = random_floats(n, 46, -3, 3);
    std::vector<float> m = random_floats(packed_n, 47, -0.1f, 0.1f), v = random_floats(packed_n, 48, 0, 0.1f);
    const float grad_scale = 0.75f;
    const int step = 4;
    std::vector<float> want_p = params, want_m = m, want_v = v, want_packed(packed_n, 0.0f), packed = want_packed;
    for (const Piece &pc : pieces) {
        adamw_update_range(&oc, &cfg, step, want_p.data(), grads.data(), want_m.data() + pc.packed,
                           want_v.data() + pc.packed, grad_scale, pc.begin, pc.end, 1);
        for (size_t i = pc.begin; i < pc.end; i++) {
            packed[pc.packed + i - pc.begin] = params[i];
            want_packed[pc.packed + i - pc.begin] = want_p[i];
        }
    }
    int num_spans = 0;
    size_t work = 0;
    AdamWSpan *d_spans = upload_spans(tensors_of(&cfg), pieces, &num_spans, &work);
    float *d_g = to_device(grads);
    std::vector<float> first[4];
    for (const ScheduleOrder &o : schedule_orders()) {
        use_schedule_order(o);
        float *d_master = to_device(packed), *d_m = to_device(m), *d_v = to_device(v);
        T *d_copy = upload_as<T>(params);
        gpu_adamw<T>(d_master, d_copy, d_g, d_m, d_v, d_spans, num_spans, work, adamw_scalars(&oc, step), grad_scale,
                     nullptr, 0);
        check_close<T>("adamw pieces: master weights", d_master, want_packed, 1e-6, 0, o.name, &first[0]);
        check_close<T>("adamw pieces: m", d_m, want_m, 1e-6, 0, o.name, &first[1]);
        check_close<T>("adamw pieces: v", d_v, want_v, 1e-6, 0, o.name, &first[2]);
        // Outside the pieces the copy keeps its old values, as want_p does.
        check_close<T>("adamw pieces: copy", d_copy, rounded_to<T>(want_p), sizeof(T) == 4 ? 1e-6 : 4e-3, 0, o.name,
                       &first[3]);
        cudaFree(d_master);
        cudaFree(d_m);
        cudaFree(d_v);
        cudaFree(d_copy);
    }
    cudaFree(d_spans);
    cudaFree(d_g);
}

TEST(test_gpu_adamw_and_grad_norm) {
    adamw_case<float>();
    adamw_case<bf16>();
}

TEST(test_gpu_adamw_zero_pieces) {
    adamw_pieces_case<float>();
    adamw_pieces_case<bf16>();
}

TEST(test_gpu_casts) {
    const size_t n = 333;
    std::vector<float> x = random_floats(n, 51, -100, 100);
    float *d_x = to_device(x), *d_back = device_alloc<float>(n);
    bf16 *d_h = device_alloc<bf16>(n);
    gpu_cast(d_h, d_x, n, 0);
    gpu_cast(d_back, d_h, n, 0);
    std::vector<float> got = to_host(d_back, n), want = rounded_to<bf16>(x);
    CHECK(memcmp(got.data(), want.data(), n * sizeof(float)) == 0,
          "fp32 -> bf16 -> fp32 differs from rounding on the host");
    cudaFree(d_x);
    cudaFree(d_back);
    cudaFree(d_h);
}

// --- Pack accesses -------------------------------------------------------------------------------
// A 16-byte pack at an address 4 bytes past a 16-byte boundary: a GPU faults,
// the interpret mode aborts and names the access (load_floats' call site).
static float *pack_buffer;
static const int misaligned_pack_line = __LINE__ + 3;
__global__ void misaligned_pack_kernel(float *buffer, int offset) {
    float *p = buffer + offset + 4 * threadIdx.x;
    const Floats<4> x = load_floats<float, 4>(p);
    store_floats(p, x);
}
static void launch_misaligned_pack() {
    LAUNCH(misaligned_pack_kernel, dim3(1), dim3(2), 0, 0, pack_buffer, 1);
    CUDA_CHECK(cudaDeviceSynchronize());
}

TEST(test_gpu_misaligned_pack_aborts) {
    INTERPRET_ONLY();
    pack_buffer = device_alloc<float>(16);
    LAUNCH(misaligned_pack_kernel, dim3(1), dim3(2), 0, 0, pack_buffer, 4);  // aligned: runs
    std::string err;
    const int sig = run_in_child(launch_misaligned_pack, &err);
    const std::string site = "test_layers.cu:" + std::to_string(misaligned_pack_line);
    CHECK(sig == SIGABRT && err.find("misaligned 16-byte pack") != std::string::npos &&
              err.find(site) != std::string::npos,
          "signal %d, message: %s", sig, err.c_str());
    cudaFree(pack_buffer);
}
