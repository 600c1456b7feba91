// The analytic kernel costs of ./igpt bench (bench/step_costs.c): the matrix
// products they list add up to the FLOP count MFU uses (docs/cuda.md, "FLOPs,
// MFU and the benchmark"), and the table reaches the user.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../bench/step_costs.h"
#include "model/params.h"
#include "test.h"

// docs/cuda.md's formula, written out again here: flops/token = 6 (12 L C^2 + V C) + 6 L T C.
static double documented_flops_per_token(const ModelConfig *cfg) {
    const double C = cfg->d_model, L = cfg->n_layer, V = cfg->vocab_size, T = cfg->seq_len;
    return 6.0 * (12.0 * L * C * C + V * C) + 6.0 * L * T * C;
}

static ModelConfig named_config(const char *name, int side, NormKind norm) {
    ModelConfig cfg = {
        .vocab_size = 512, .seq_len = side * side, .image_height = side, .image_width = side, .norm = norm};
    CHECK(model_config_named(name, &cfg), "config %s", name);
    return cfg;
}

static void sum_costs(const KernelCost *k, int n, double *flops, double *model_flops) {
    *flops = 0.0;
    *model_flops = 0.0;
    for (int i = 0; i < n; i++) {
        *flops += k[i].flops;
        *model_flops += k[i].model_flops;
    }
}

TEST(test_step_costs_match_the_mfu_flop_count) {
    static const char *configs[] = {"tiny", "xs", "s", "m", "l"};
    KernelCost k[STEP_COSTS_MAX];
    for (int c = 0; c < 5; c++)
        for (int side = 8; side <= 32; side += 24)
            for (int batch = 1; batch <= 32; batch *= 4)
                for (int norm = 0; norm < 2; norm++) {
                    const ModelConfig cfg = named_config(configs[c], side, (NormKind)norm);
                    const double tokens = (double)batch * cfg.seq_len;
                    double plain, counted, with_recompute, counted_with_recompute;
                    sum_costs(k, step_kernel_costs(&cfg, batch, 2, false, true, k), &plain, &counted);
                    const double mfu = training_flops_per_token(&cfg) * tokens;
                    CHECK(fabs(counted - mfu) <= 1e-12 * mfu, "%s %dx%d batch %d: the kernels' %.6g FLOPs, MFU's %.6g",
                          configs[c], side, side, batch, counted, mfu);
                    const double documented = documented_flops_per_token(&cfg) * tokens;
                    CHECK(fabs(mfu - documented) <= 1e-12 * documented, "%s: MFU counts %.6g, docs/cuda.md %.6g",
                          configs[c], mfu, documented);
                    // The recomputed forward runs, and MFU does not count it.
                    sum_costs(k, step_kernel_costs(&cfg, batch, 2, true, true, k), &with_recompute,
                              &counted_with_recompute);
                    CHECK(counted_with_recompute == counted && with_recompute > plain, "%s: recompute", configs[c]);
                }
}

// What runs beyond what MFU counts, without --recompute: the attention backward's recomputed scores
// (half a forward per layer: 2.5x the forward executed, 2x counted), and no other product.
TEST(test_step_costs_recomputation_is_the_attention_scores) {
    const ModelConfig cfg = named_config("s", 32, NORM_IGPT);
    KernelCost k[STEP_COSTS_MAX];
    const int n = step_kernel_costs(&cfg, 4, 2, false, true, k);
    double extra = 0.0;
    for (int i = 0; i < n; i++)
        if (k[i].tensor_cores) extra += k[i].flops - k[i].model_flops;
    const double B = 4, T = cfg.seq_len, C = cfg.d_model, L = cfg.n_layer;
    const double scores = L * 0.5 * 2.0 * B * T * T * C;
    CHECK(fabs(extra - scores) <= 1e-12 * scores, "uncounted tensor FLOPs %.6g, want %.6g", extra, scores);
}

TEST(test_step_costs_launches_and_roofline) {
    const ModelConfig cfg = named_config("xs", 16, NORM_LAYERNORM);
    KernelCost k[STEP_COSTS_MAX];
    const int n = step_kernel_costs(&cfg, 2, 2, false, true, k);
    int adamw = 0, norm_backward = 0;
    for (int i = 0; i < n; i++) {
        if (strstr(k[i].name, "adamw")) adamw = k[i].launches;
        if (strstr(k[i].name, "norm_backward")) norm_backward = k[i].launches;
        const double compute = k[i].flops / (k[i].tensor_cores ? 790e12 : 67e12), memory = k[i].bytes / 4.3e12;
        const double want = compute > memory ? compute : memory;
        CHECK(fabs(kernel_roofline_seconds(&k[i], &roofline_h200) - want) <= 1e-12 * want, "%s", k[i].name);
        CHECK(k[i].bytes > 0, "%s moves no bytes", k[i].name);
    }
    CHECK(adamw == param_tensors(&cfg, NULL), "adamw: %d launches, %d tensors", adamw, param_tensors(&cfg, NULL));
    CHECK(norm_backward == 2 * cfg.n_layer + 1, "norm_backward: %d launches", norm_backward);
    // Attention alone, as ./igpt bench --mode attention always counted it: 4 BH T^2 hs / 2 forward, 2.5x backward.
    const int m = attention_kernel_costs(64, 1024, 64, 2, k);
    const double forward = 4.0 * 64 * 1024.0 * 1024 * 64 * 0.5;
    CHECK(m == 2 && k[0].flops == forward && k[1].flops == 2.5 * forward, "attention: %.6g, %.6g", k[0].flops,
          k[1].flops);
    // bf16 products run on tensor cores; in fp32 on CUDA cores.
    attention_kernel_costs(64, 1024, 64, 4, k);
    CHECK(!k[0].tensor_cores, "fp32 attention on tensor cores");
}

TEST(test_step_costs_printed_by_bench) {
    CHECK(run_igpt("bench --config tiny --side 8 --batch 2 --steps 1 --warmup-steps 0 --optimizer") == 0, "%s",
          cli_stderr());
    CHECK(strstr(cli_stderr(), "roofline on H200") && strstr(cli_stderr(), "attention_backward") &&
              strstr(cli_stderr(), "adamw"),
          "no table of kernel costs on stderr: %s", cli_stderr());
    CHECK(strstr(cli_stdout(), "\"h200_roofline_step_s\"") && strstr(cli_stdout(), "\"step_gflop\""), "%s",
          cli_stdout());
    CHECK(run_igpt("bench --config tiny --side 8 --batch 2 --steps 1 --warmup-steps 0 --quiet") == 0, "%s",
          cli_stderr());
    CHECK(!strstr(cli_stderr(), "roofline on H200"), "--quiet printed the table: %s", cli_stderr());
}

// ./igpt bench --mode attention times the kernels --attention selects, as
// training would run them, and names them (through the interpret build):
// auto is the tensor-core kernels at head size 64 in bf16, portable on
// request and where flash does not apply (head size 16), and flash asked
// where it does not apply stops, saying why.
TEST(test_bench_attention_times_the_selected_kernels) {
    const char *asked[3] = {"auto", "portable", "auto"}, *timed[3] = {"flash", "portable", "portable"};
    const int head_size[3] = {64, 64, 16};
    for (int i = 0; i < 3; i++) {
        CHECK(run_igpt_interpret("bench --mode attention --attention %s --batch-heads 2 --seq 64 --head-size %d "
                                 "--steps 1 --quiet",
                                 asked[i], head_size[i]) == 0,
              "--attention %s, head size %d: %s", asked[i], head_size[i], cli_stderr());
        char want[64];
        snprintf(want, sizeof want, "\"attention\": \"%s\"", timed[i]);
        CHECK(strstr(cli_stdout(), want), "--attention %s, head size %d: want %s in %s", asked[i], head_size[i], want,
              cli_stdout());
    }
    expect_failure(run_igpt_interpret("bench --mode attention --attention flash --batch-heads 2 --seq 64 "
                                      "--head-size 16 --steps 1 --quiet"),
                   1, "--attention flash: the tensor-core kernels need bf16", NULL);
}
