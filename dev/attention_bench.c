// Scratch harness (not built by make): times the CPU attention alone and the
// whole training step at one model shape, to give attention's share of it.
//   make NVCC= CHECK_CXX= && cc -O3 -march=native -fopenmp -Isrc dev/attention_bench.c build/libigpt.a \
//     -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -lcjson -lz -lm -o /tmp/attention_bench
//   /tmp/attention_bench tiny|xs SIDE BATCH THREADS [REPS [bf16]]
// bf16: the attention of --precision bf16 (bf16 products) and its step.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu_ops.h"
#include "model/model.h"
#include "util/gemm_bf16.h"
#include "util/util.h"

static double time_attention(int B, int T, int C, int NH, int threads, int reps, bool bf16, double *backward_s) {
    const size_t n_qkv = (size_t)B * T * 3 * C, n_y = (size_t)B * T * C;
    float *qkv = xmalloc(n_qkv * sizeof(float)), *dqkv = xmalloc(n_qkv * sizeof(float));
    float *y = xmalloc(n_y * sizeof(float)), *dy = xmalloc(n_y * sizeof(float));
    float *lse = xmalloc((size_t)B * NH * T * sizeof(float));
    float *scratch = xmalloc(attention_scratch_floats(T, C, NH, threads) * sizeof(float));
    Rng rng;
    rng_init(&rng, 3, 0);
    for (size_t i = 0; i < n_qkv; i++) qkv[i] = (float)rng_normal(&rng);
    for (size_t i = 0; i < n_y; i++) dy[i] = (float)rng_normal(&rng);
    uint16_t *qkv_bf16 = NULL;
    if (bf16) {
        qkv_bf16 = xmalloc(n_qkv * sizeof(uint16_t));
        round_to_bf16(qkv_bf16, qkv, n_qkv, threads);
    }
    double fwd = 0.0, bwd = 0.0;
    for (int r = -1; r < reps; r++) {
        double t0 = now_seconds();
        attention_forward_bf16(y, NULL, lse, qkv, qkv_bf16, scratch, B, T, C, NH, threads);
        double t1 = now_seconds();
        attention_backward_bf16(dqkv, NULL, dy, y, NULL, qkv, qkv_bf16, lse, scratch, B, T, C, NH, threads);
        double t2 = now_seconds();
        if (r >= 0) {
            fwd += t1 - t0;
            bwd += t2 - t1;
        }
    }
    free(qkv);
    free(dqkv);
    free(y);
    free(dy);
    free(lse);
    free(scratch);
    free(qkv_bf16);
    *backward_s = bwd / reps;
    return fwd / reps;
}

static double time_step(const ModelConfig *cfg, int B, int threads, int reps, bool bf16) {
    Model m;
    model_create(&m, cfg, B, threads);
    if (bf16) model_use_bf16_products(&m);
    model_init_params(cfg, m.params, 1);
    uint16_t *tokens = xmalloc((size_t)B * cfg->seq_len * sizeof(uint16_t));
    Rng rng;
    rng_init(&rng, 1, 0);
    for (int i = 0; i < B * cfg->seq_len; i++) tokens[i] = (uint16_t)rng_below(&rng, (uint64_t)cfg->vocab_size);
    double total = 0.0;
    for (int r = -1; r < reps; r++) {
        double t0 = now_seconds();
        model_zero_grads(&m);
        model_forward(&m, tokens, B);
        model_backward(&m, tokens, B, 1.0f / ((float)B * cfg->seq_len));
        if (r >= 0) total += now_seconds() - t0;
    }
    free(tokens);
    model_free(&m);
    return total / reps;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s tiny|xs SIDE BATCH THREADS [REPS [bf16]]\n", argv[0]);
        return 1;
    }
    const int side = atoi(argv[2]), B = atoi(argv[3]), reps = argc > 5 ? atoi(argv[5]) : 5;
    const bool bf16 = argc > 6 && !strcmp(argv[6], "bf16");
    ModelConfig cfg = {
        .vocab_size = 512, .seq_len = side * side, .image_height = side, .image_width = side, .norm = NORM_IGPT};
    if (!model_config_named(argv[1], &cfg)) die("unknown config %s", argv[1]);
    const int threads = cpu_set_threads(atoi(argv[4]));
    const int T = cfg.seq_len, C = cfg.d_model, NH = cfg.n_head, L = cfg.n_layer;
    double bwd;
    if (bf16 && !attention_bf16_fits(C, NH)) die("no bf16 attention here (odd head size or no AVX512-BF16)");
    const double fwd = time_attention(B, T, C, NH, threads, reps, bf16, &bwd);
    const double step = time_step(&cfg, B, threads, reps, bf16);
    // Causal FLOPs: QK^T and PV forward (2 products), 5 in backward, over half the T x T square.
    const double flop = 2.0 * B * NH * (double)T * (T + 1) / 2 * (C / NH);
    printf(
        "%s%s %dx%d b%d t%d: attention fwd %.2f ms (%.1f GFLOP/s) bwd %.2f ms (%.1f GFLOP/s); step %.1f ms, "
        "attention x %d layers = %.1f ms = %.0f%% of the step\n",
        argv[1], bf16 ? " bf16" : "", side, side, B, threads, fwd * 1e3, 2 * flop / fwd / 1e9, bwd * 1e3,
        5 * flop / bwd / 1e9, step * 1e3, L, L * (fwd + bwd) * 1e3, 100.0 * L * (fwd + bwd) / step);
    return 0;
}
