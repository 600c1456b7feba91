// Sampling (sample/sampler.h, ./igpt sample): the draw from one position's
// logits against the exact distribution, and the command's promises: the
// given rows kept, the same images for a seed whatever the batch and thread
// count, clear refusals.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "sample/sampler.h"
#include "test.h"

// How often each color is drawn at N evenly spaced u: inverting the
// cumulative distribution hits color c for a share of u within 1/N of its probability.
static void draw_shares(const float *logits, int V, const SamplerSettings *s, int N, double *share) {
    ColorProb scratch[16];
    for (int c = 0; c < V; c++) share[c] = 0;
    for (int i = 0; i < N; i++) share[sample_from_logits(logits, V, s, (i + 0.5) / N, scratch)] += 1.0 / N;
}

TEST(test_sample_from_logits_follows_the_distribution) {
    const int V = 6, N = 100000;
    const float logits[6] = {1.0f, 3.0f, -2.0f, 2.0f, 0.5f, 2.0f};
    double p[6], share[6], total = 0;
    // Temperature 2: probabilities of logits / 2.
    for (int c = 0; c < V; c++) total += p[c] = exp(logits[c] / 2.0);
    SamplerSettings s = {.temperature = 2.0, .top_k = 0, .top_p = 1.0};
    draw_shares(logits, V, &s, N, share);
    for (int c = 0; c < V; c++)
        CHECK(fabs(share[c] - p[c] / total) <= 1.0 / N + 1e-12, "temperature 2: color %d drawn %.5f, p = %.5f", c,
              share[c], p[c] / total);
    // Top-k 3: colors 1, 3, 5 (3 and 5 tie at 2.0: both kept, in index order), renormalised.
    s = (SamplerSettings){.temperature = 1.0, .top_k = 3, .top_p = 1.0};
    draw_shares(logits, V, &s, N, share);
    const double kept = exp(3.0) + 2 * exp(2.0);
    CHECK(fabs(share[1] - exp(3.0) / kept) <= 1.0 / N && fabs(share[3] - exp(2.0) / kept) <= 1.0 / N &&
              fabs(share[5] - exp(2.0) / kept) <= 1.0 / N && share[0] == 0 && share[2] == 0 && share[4] == 0,
          "top-k 3 draws %.4f %.4f %.4f %.4f %.4f %.4f", share[0], share[1], share[2], share[3], share[4], share[5]);
    // Top-p 0.6 at temperature 1: p(1) = 0.51 < 0.6, so colors 1 and 3 (the first of the tie) are kept.
    total = 0;
    for (int c = 0; c < V; c++) total += exp(logits[c]);
    CHECK(exp(3.0) / total < 0.6 && (exp(3.0) + exp(2.0)) / total >= 0.6, "the case is what it claims");
    s = (SamplerSettings){.temperature = 1.0, .top_k = 0, .top_p = 0.6};
    draw_shares(logits, V, &s, N, share);
    const double two = exp(3.0) + exp(2.0);
    CHECK(fabs(share[1] - exp(3.0) / two) <= 1.0 / N && fabs(share[3] - exp(2.0) / two) <= 1.0 / N && share[5] == 0 &&
              share[0] == 0,
          "top-p 0.6 draws %.4f %.4f %.4f %.4f %.4f %.4f", share[0], share[1], share[2], share[3], share[4], share[5]);
    // Temperature 0: always the most likely.
    s = (SamplerSettings){.temperature = 0.0, .top_k = 0, .top_p = 1.0};
    draw_shares(logits, V, &s, 1000, share);
    CHECK(share[1] > 0.999999, "temperature 0 draws the most likely color");
}

// A tiny run on CIFAR-style 8x8 images with 16 colors (one head of 16: a size the GPU decode
// kernels take); returns the data folder.
static char *sample_fixture(void) {
    make_cifar_batches(test_path("cifar"), 8, 4);
    char *data = xstrdup(test_path("data"));
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --colors 16 --val 10 --no-preview --quiet",
                   test_path("cifar"), data) == 0,
          "prepare: %s", cli_stderr());
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 4 --d-model 16 --n-layer 2 --n-head 1 --batch 4 "
                   "--lr 1e-2 --quiet",
                   data, test_path("run")) == 0,
          "train: %s", cli_stderr());
    return data;
}

TEST(test_sample_cli_repeats_and_keeps_the_given_rows) {
    char *data = sample_fixture();
    const char *ckpt = test_path("run/checkpoint-00000004.bin");
    CHECK(run_igpt("sample --device cpu --checkpoint %s --data %s --out %s --samples 5 --complete 3 --per-image 2 "
                   "--given-rows 3 --top-k 8 --seed 9 --batch 64 --threads 2 --quiet",
                   ckpt, data, test_path("a")) == 0,
          "sample: %s", cli_stderr());
    // Another batch (3 images at a time: groups mixing samples and completions) and one thread: the same images.
    CHECK(run_igpt("sample --device cpu --checkpoint %s --data %s --out %s --samples 5 --complete 3 --per-image 2 "
                   "--given-rows 3 --top-k 8 --seed 9 --batch 3 --threads 1 --quiet",
                   ckpt, data, test_path("b")) == 0,
          "sample: %s", cli_stderr());
    CHECK(files_equal(test_path("a/samples.bin"), test_path("b/samples.bin")) &&
              files_equal(test_path("a/completions.bin"), test_path("b/completions.bin")),
          "the same seed gives the same images with another --batch and --threads");
    CHECK(path_exists(test_path("a/samples.png")) && path_exists(test_path("a/completions.png")) &&
              path_exists(test_path("a/sample.json")),
          "pictures and summary written");
    // Another seed: other samples.
    CHECK(run_igpt("sample --device cpu --checkpoint %s --data %s --out %s --samples 5 --complete 0 --top-k 8 "
                   "--seed 10 --quiet",
                   ckpt, data, test_path("c")) == 0,
          "sample: %s", cli_stderr());
    CHECK(!files_equal(test_path("a/samples.bin"), test_path("c/samples.bin")), "another seed, other samples");

    // Each completion holds its original's first 3 rows, and its label.
    TokenDataset val, done;
    dataset_read(test_path("data/val.bin"), &val);
    dataset_read(test_path("a/completions.bin"), &done);
    CHECK(done.count == 6, "3 images x 2 completions, not %lld", (long long)done.count);
    int64_t picked[3];
    evenly_spaced(val.count, 3, picked);
    int differs = 0;
    for (int i = 0; i < 6; i++) {
        const uint16_t *orig = val.tokens + picked[i / 2] * 64, *got = done.tokens + (size_t)i * 64;
        CHECK(!memcmp(orig, got, 24 * sizeof(uint16_t)), "completion %d keeps the given rows", i);
        CHECK(done.labels[i] == val.labels[picked[i / 2]], "completion %d keeps its image's label", i);
        differs += memcmp(orig + 24, got + 24, 40 * sizeof(uint16_t)) != 0;
    }
    CHECK(differs > 0, "the completions are drawn, not copied");
    dataset_free(&val);
    dataset_free(&done);

    // Refusals.
    expect_failure(run_igpt("sample --device cpu --checkpoint %s --data %s --out %s --given-rows 9 --quiet", ckpt, data,
                            test_path("d")),
                   2, "--given-rows 9: the images have 8 rows", NULL);
    expect_failure(
        run_igpt("sample --device cpu --checkpoint %s --data %s --out %s --quiet", ckpt, data, test_path("a")), 1,
        "already holds samples", NULL);
    expect_failure(run_igpt("sample --checkpoint %s --quiet", ckpt), 2, "--data DIR is required", NULL);
    free(data);
}

TEST(test_sample_cli_refuses_another_palette) {
    char *data = sample_fixture();
    // The same images prepared with 8 colors: another palette and size.
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --colors 8 --val 10 --no-preview --quiet",
                   test_path("cifar"), test_path("data8")) == 0,
          "prepare: %s", cli_stderr());
    expect_failure(run_igpt("sample --device cpu --checkpoint %s --data %s --out %s --quiet",
                            test_path("run/checkpoint-00000004.bin"), test_path("data8"), test_path("x")),
                   1, "is a model of 16 colors at 8x8", NULL);
    // 16 colors again with another seed: the same size, other colors.
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --colors 16 --seed 99 --val 10 --no-preview --quiet",
                   test_path("cifar"), test_path("data16b")) == 0,
          "prepare: %s", cli_stderr());
    expect_failure(run_igpt("sample --device cpu --checkpoint %s --data %s --out %s --quiet",
                            test_path("run/checkpoint-00000004.bin"), test_path("data16b"), test_path("y")),
                   1, "trained with another palette", NULL);
    free(data);
}

// On the GPU (the interpret mode's: build/interp/igpt): the decode kernels of
// cuda/decode.cu under the sampler. The same --batch repeats the same images;
// the given rows are kept.
TEST(test_sample_cli_on_the_gpu_repeats_for_a_batch) {
    char *data = sample_fixture();
    const char *ckpt = test_path("run/checkpoint-00000004.bin");
    for (int pass = 0; pass < 2; pass++)
        CHECK(run_igpt_interpret("sample --device cuda --checkpoint %s --data %s --out %s --samples 3 --complete 2 "
                                 "--per-image 2 --given-rows 4 --seed 4 --batch 4 --quiet",
                                 ckpt, data, test_path("gpu%d", pass)) == 0,
              "sample on the GPU: %s", cli_stderr());
    CHECK(files_equal(test_path("gpu0/samples.bin"), test_path("gpu1/samples.bin")) &&
              files_equal(test_path("gpu0/completions.bin"), test_path("gpu1/completions.bin")),
          "the same seed and batch give the same images on the GPU");
    TokenDataset val, done;
    dataset_read(test_path("data/val.bin"), &val);
    dataset_read(test_path("gpu0/completions.bin"), &done);
    int64_t picked[2];
    evenly_spaced(val.count, 2, picked);
    for (int i = 0; i < 4; i++)
        CHECK(!memcmp(val.tokens + picked[i / 2] * 64, done.tokens + (size_t)i * 64, 32 * sizeof(uint16_t)),
              "GPU completion %d keeps the given rows", i);
    char *json = (char *)read_whole_file(test_path("gpu0/sample.json"), NULL);
    CHECK(json && strstr(json, "\"device\": \"cuda\"") && strstr(json, "\"precision\": \"bf16\""),
          "the summary names the device: %s", json ? json : "(none)");
    free(json);
    dataset_free(&val);
    dataset_free(&done);
    free(data);
}
