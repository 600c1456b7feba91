// ./igpt bench: forward+backward throughput of the CPU reference on random
// tokens, as one JSON line (scripts/bench_cpu.sh sets it beside PyTorch).
#include <cblas.h>
#include <getopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cpu_ops.h"
#include "model.h"

static const char *const bench_help =
    "usage: ./igpt bench [--config NAME] [--side N] [--colors N] [--batch N] [--steps N] [--warmup-steps N] [--threads N]\n"
    "\n"
    "Times forward + backward passes (no optimizer step) of the CPU reference on\n"
    "random tokens and prints one JSON line with tokens/s. Defaults: tiny, 16x16,\n"
    "512 colors, batch 8, 5 timed steps after 2 warm-up steps, all cores.\n";

int cmd_bench(int argc, char **argv) {
    const char *config = "tiny";
    int side = 16, colors = 512, batch = 8, steps = 5, warmup = 2, threads = 0;
    enum { O_CONFIG = 1000, O_SIDE, O_COLORS, O_BATCH, O_STEPS, O_WARMUP, O_THREADS, O_HELP };
    static const struct option options[] = {
        {"config", required_argument, 0, O_CONFIG}, {"side", required_argument, 0, O_SIDE},
        {"colors", required_argument, 0, O_COLORS}, {"batch", required_argument, 0, O_BATCH},
        {"steps", required_argument, 0, O_STEPS},   {"warmup-steps", required_argument, 0, O_WARMUP},
        {"threads", required_argument, 0, O_THREADS}, {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case O_CONFIG: config = optarg; break;
        case O_SIDE: side = (int)parse_int_option("--side", optarg, 2, 256); break;
        case O_COLORS: colors = (int)parse_int_option("--colors", optarg, 2, 65536); break;
        case O_BATCH: batch = (int)parse_int_option("--batch", optarg, 1, 4096); break;
        case O_STEPS: steps = (int)parse_int_option("--steps", optarg, 1, 100000); break;
        case O_WARMUP: warmup = (int)parse_int_option("--warmup-steps", optarg, 0, 100000); break;
        case O_THREADS: threads = (int)parse_int_option("--threads", optarg, 1, 4096); break;
        case O_HELP: fputs(bench_help, stdout); return 0;
        default: bad_option("bench", c, argv);
        }
    }
    if (optind < argc) usage_error("bench", "unexpected argument '%s'", argv[optind]);
    threads = cpu_set_threads(threads);
    ModelConfig cfg = {.vocab_size = colors, .seq_len = side * side, .image_height = side, .image_width = side,
                       .norm = NORM_IGPT};
    if (!model_config_named(config, &cfg)) usage_error("bench", "unknown --config '%s'", config);
    Model m;
    model_create(&m, &cfg, batch, threads);
    model_init_params(&cfg, m.params, 1);
    uint16_t *tokens = xmalloc((size_t)batch * cfg.seq_len * sizeof(uint16_t));
    Rng rng;
    rng_init(&rng, 1, 0);
    for (int i = 0; i < batch * cfg.seq_len; i++) tokens[i] = (uint16_t)rng_below(&rng, (uint64_t)colors);
    double elapsed = 0.0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        model_zero_grads(&m);
        model_forward(&m, tokens, batch);
        model_backward(&m, tokens, batch, 1.0f / ((float)batch * cfg.seq_len));
        if (s >= warmup) elapsed += now_seconds() - t0;
    }
    double tokens_per_s = (double)steps * batch * cfg.seq_len / elapsed;
    printf("{\"impl\": \"igpt-cpu\", \"config\": \"%s\", \"side\": %d, \"batch\": %d, \"threads\": %d, "
           "\"tokens_per_s\": %.1f, \"step_s\": %.4f, \"parameters\": %zu}\n",
           config, side, batch, threads, tokens_per_s, elapsed / steps, m.num_params);
    free(tokens);
    model_free(&m);
    return 0;
}
