// The command line itself: help lists every command, each command has
// --help, unknown commands and options are refused with a pointer to --help.
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "test.h"

#define COUNT_OF(array) ((int)(sizeof(array) / sizeof((array)[0])))
#include "util/blas.h"
#include "util/util.h"

TEST(test_cli_help) {
    CHECK(run_igpt("help") == 0, "help exits 0");
    char *help = xstrdup(cli_stdout());
    const char *commands[] = {"synth",      "prepare", "train", "probe", "sample", "compress",
                              "decompress", "plot",    "bench", "show",  "info"};
    for (int i = 0; i < COUNT_OF(commands); i++) {
        char *entry = xasprintf("\n  %s ", commands[i]);
        CHECK(strstr(help, entry) != NULL, "help lists %s: %s", commands[i], help);
        free(entry);
        CHECK(run_igpt("%s --help", commands[i]) == 0, "%s --help exits 0", commands[i]);
        CHECK(strstr(cli_stdout(), "usage: ./igpt") != NULL, "%s --help prints usage", commands[i]);
    }
    free(help);
    CHECK(run_igpt("%s", "") == 2, "no command: usage error");
    CHECK(run_igpt("frobnicate") == 2 && strstr(cli_stderr(), "unknown command 'frobnicate'"), "unknown command");
}

TEST(test_cli_error_unknown_flag) {
    make_cifar_batches(test_path("cifar"), 5, 3);
    int status = run_igpt("prepare --cifar10 %s --out %s --bogus", test_path("cifar"), test_path("out"));
    expect_failure(status, 2, "unknown option --bogus", test_path("out"));
    CHECK(strstr(cli_stderr(), "./igpt prepare --help"), "points to --help");
    status = run_igpt("prepare --cifar10 %s --out %s --colors", test_path("cifar"), test_path("out"));
    expect_failure(status, 2, "option --colors needs a value", test_path("out"));
    status = run_igpt("show --frames 3 x.bin");
    expect_failure(status, 2, "unknown option --frames", NULL);
    status = run_igpt("info --verbose x.bin");
    expect_failure(status, 2, "unknown option --verbose", NULL);
}

// Every command answers -h with its usage and --version with the version.
// Help texts are printed verbatim, so a printf escape ("%%") would show.
TEST(test_cli_every_command_help_and_version) {
    const char *commands[] = {"synth",      "prepare", "train", "probe", "sample", "compress",
                              "decompress", "plot",    "bench", "show",  "info"};
    for (int i = 0; i < COUNT_OF(commands); i++) {
        char *usage = xasprintf("usage: ./igpt %s ", commands[i]);
        CHECK(run_igpt("%s -h", commands[i]) == 0, "%s -h exits 0: %s", commands[i], cli_stderr());
        CHECK(strncmp(cli_stdout(), usage, strlen(usage)) == 0, "%s -h prints its usage: %s", commands[i],
              cli_stdout());
        CHECK(strstr(cli_stdout(), "%%") == NULL, "%s's help shows no %%%%: %s", commands[i], cli_stdout());
        CHECK(run_igpt("%s --version", commands[i]) == 0, "%s --version exits 0: %s", commands[i], cli_stderr());
        CHECK(strncmp(cli_stdout(), "igpt ", 5) == 0, "%s --version prints the version: %s", commands[i], cli_stdout());
        free(usage);
    }
}

// OpenBLAS gives a CPU whose model it does not know its oldest kernels (SSE3,
// 3x slower); igpt then names the AVX2 or AVX-512 ones the CPU has (main.c).
// The bench line says which kernels ran, with OPENBLAS_CORETYPE unset.
TEST(test_cli_blas_kernels_fit_the_cpu) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        printf("  (skip: this CPU has no AVX2, so OpenBLAS's oldest kernels are its own)\n");
        return;
    }
    char *saved = getenv("OPENBLAS_CORETYPE") ? xstrdup(getenv("OPENBLAS_CORETYPE")) : NULL;
    unsetenv("OPENBLAS_CORETYPE");
    const int status =
        run_igpt("bench --mode train --config tiny --side 8 --batch 1 --steps 1 --warmup-steps 0 --quiet");
    if (saved) setenv("OPENBLAS_CORETYPE", saved, 1);
    free(saved);
    CHECK(status == 0, "bench ran: %s", cli_stderr());
    const char *core = strstr(cli_stdout(), "\"blas_core\": \"");
    CHECK(core != NULL, "the bench line names the BLAS kernels: %s", cli_stdout());
    if (!core) return;
    core += strlen("\"blas_core\": \"");
    const char *modern[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};
    bool fits = false;
    for (int i = 0; i < 5; i++)
        fits |= strncasecmp(core, modern[i], strlen(modern[i])) == 0 && core[strlen(modern[i])] == '"';
    CHECK(fits, "OpenBLAS runs AVX2/AVX-512 kernels on this AVX2 CPU, not: %.20s", core);
}

// How OpenMP's threads wait (util/blas.c): a short spin only when nothing else
// was runnable as igpt started, passive otherwise or when that is not known;
// the user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT kept as set. The bench
// line says which.
static char *saved_env(const char *name) { return getenv(name) ? xstrdup(getenv(name)) : NULL; }

static void restore_env(const char *name, char *saved) {
    if (saved) setenv(name, saved, 1);
    else unsetenv(name);
    free(saved);
}

static const char *bench_wait(void) {
    static char wait[96];
    wait[0] = '\0';
    if (run_igpt("bench --mode train --config tiny --side 4 --batch 1 --steps 1 --warmup-steps 0 --quiet") != 0)
        return wait;
    const char *at = strstr(cli_stdout(), "\"omp_wait\": \"");
    if (at) sscanf(at + strlen("\"omp_wait\": \""), "%95[^\"]", wait);
    return wait;
}

TEST(test_cli_omp_wait_policy) {
    CHECK(!strcmp(omp_wait_for(0), "GOMP_SPINCOUNT=" OMP_SPIN_TURNS), "nothing else runnable: spin");
    CHECK(!strcmp(omp_wait_for(1), "OMP_WAIT_POLICY=passive"), "another task runnable: passive");
    CHECK(!strcmp(omp_wait_for(-1), "OMP_WAIT_POLICY=passive"), "not known: passive");
    char *policy = saved_env("OMP_WAIT_POLICY"), *spin = saved_env("GOMP_SPINCOUNT");
    unsetenv("GOMP_SPINCOUNT");
    setenv("OMP_WAIT_POLICY", "active", 1);
    const char *kept = bench_wait();
    CHECK(!strcmp(kept, "OMP_WAIT_POLICY=active"), "the user's policy kept: '%s' %s", kept, cli_stderr());
    unsetenv("OMP_WAIT_POLICY");
    setenv("GOMP_SPINCOUNT", "77", 1);
    kept = bench_wait();
    CHECK(!strcmp(kept, "GOMP_SPINCOUNT=77"), "the user's spin count kept: '%s' %s", kept, cli_stderr());
    unsetenv("GOMP_SPINCOUNT");
    kept = bench_wait();
    CHECK(!strcmp(kept, omp_wait_for(0)) || !strcmp(kept, omp_wait_for(1)), "igpt chose one of its two: '%s' %s", kept,
          cli_stderr());
    restore_env("OMP_WAIT_POLICY", policy);
    restore_env("GOMP_SPINCOUNT", spin);
}

// --- bench --mode decode (issue 15, GPU decoding part) ----------------------------------------
// The decoder's throughput line on the CPU (on a GPU: --device cuda, the same line).
TEST(test_cli_bench_decode) {
    const int status = run_igpt(
        "bench --mode decode --config tiny --side 4 --colors 16 --batch 3 --steps 1 "
        "--warmup-steps 0");
    CHECK(status == 0, "bench --mode decode ran: %s", cli_stderr());
    CHECK(strstr(cli_stdout(), "\"mode\": \"decode\"") && strstr(cli_stdout(), "\"positions_per_s\": "),
          "the decode line gives positions per second: %s", cli_stdout());
}
