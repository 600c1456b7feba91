// ./igpt bench's figures for bench/bench_cpu.sh (issue 17): the CPU's measured
// peak (--mode peak) and the model's GFLOP/s beside its tokens/s, by the one
// FLOP count that PyTorch's figures are converted with too.
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "test.h"
#include "util/json.h"

static double stdout_number(const char *key) { return json_line_number(cli_stdout(), strlen(cli_stdout()), key); }

// One thread's fp32 peak: above any CPU's slowest build of the loop, below 2 FMA ports x 32 FLOPs x 6 GHz.
TEST(test_bench_peak_measures_fp32_and_bf16) {
    CHECK(run_igpt("bench --mode peak --threads 1 --steps 1") == 0, "%s", cli_stderr());
    const double fp32 = stdout_number("fp32_gflops_per_s"), bf16 = stdout_number("bf16_gflops_per_s");
    CHECK(fp32 > 0.5 && fp32 < 384.0, "fp32 peak of one thread %g GFLOP/s: %s", fp32, cli_stdout());
    CHECK(strstr(cli_stdout(), "\"fp32_isa\": \"avx"), "no fp32 ISA named: %s", cli_stdout());
    if (__builtin_cpu_supports("avx512bf16")) {
        // vdpbf16ps: 64 FLOPs an instruction, at most 2 a cycle.
        CHECK(bf16 > 0.5 && bf16 < 768.0, "bf16 peak of one thread %g GFLOP/s: %s", bf16, cli_stdout());
    } else {
        CHECK(isnan(bf16) && strstr(cli_stdout(), "\"bf16_isa\": \"not supported\""),
              "no AVX512-BF16 here, yet a bf16 figure: %s", cli_stdout());
    }
}

// gflops_per_s is train_flops_per_token (causal attention) x tokens/s, the product bench_cpu.sh forms for PyTorch.
TEST(test_bench_train_reports_gflops) {
    CHECK(run_igpt("bench --config tiny --side 8 --batch 2 --steps 1 --warmup-steps 0 --quiet") == 0, "%s",
          cli_stderr());
    const double gflops = stdout_number("gflops_per_s");
    const double expected = stdout_number("train_flops_per_token") * stdout_number("tokens_per_s") / 1e9;
    CHECK(gflops > 0 && fabs(gflops - expected) <= 1e-3 * expected + 0.01, "gflops_per_s %g, expected %g: %s", gflops,
          expected, cli_stdout());
    CHECK(strstr(cli_stdout(), "causal attention (half the scores)"), "the count is not named: %s", cli_stdout());
}

// --mode precisions: the fp32 and the bf16 model of one build in turns. The median of the turns'
// speed-ups (fp32 seconds / bf16 seconds) lies between its quartiles and near the ratio of the
// models' median step times (a factor of 1.5 for the noise; the speed-up inverted would be off by
// its square, unless near 1).
TEST(test_bench_precisions_in_turns) {
    CHECK(run_igpt("bench --mode precisions --config tiny --side 8 --batch 2 --steps 2 --warmup-steps 1 --turns 7 "
                   "--threads 2") == 0,
          "%s", cli_stderr());
    const double fp32 = stdout_number("fp32_step_s"), bf16 = stdout_number("bf16_step_s");
    const double median = stdout_number("bf16_speedup"), q1 = stdout_number("bf16_speedup_q1"),
                 q3 = stdout_number("bf16_speedup_q3");
    CHECK(fp32 > 0 && bf16 > 0, "step times %g and %g: %s", fp32, bf16, cli_stdout());
    CHECK(q1 > 0 && q1 <= median && median <= q3, "quartiles %g, %g, %g: %s", q1, median, q3, cli_stdout());
    const double of_medians = fp32 / bf16;
    CHECK(median < 1.5 * of_medians && median > of_medians / 1.5, "speed-up %g, the median steps' ratio %g: %s", median,
          of_medians, cli_stdout());
    CHECK(strstr(cli_stdout(), "\"precision\": \"bf16 against fp32\""), "%s", cli_stdout());
    CHECK(run_igpt("bench --mode precisions --device cuda --steps 1 --turns 1") != 0, "a GPU run was not refused");
}
