// Training tests: schedule, overfitting, bitwise resume, checkpoint
// integrity, divergence and signals, through the real ./igpt train.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/config.h"
#include "model/model.h"
#include "model/params.h"
#include "test.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "util/json.h"

TEST(test_lr_schedule) {
    OptimConfig oc;
    optim_config_defaults(&oc);
    oc.lr = 1.0;
    oc.min_lr_frac = 0.1;
    oc.warmup_steps = 4;
    oc.total_steps = 14;
    CHECK(fabs(lr_at_step(&oc, 0) - 0.25) < 1e-12 && fabs(lr_at_step(&oc, 3) - 1.0) < 1e-12, "linear warm-up");
    CHECK(fabs(lr_at_step(&oc, 4) - 1.0) < 1e-12, "cosine starts at the peak");
    CHECK(fabs(lr_at_step(&oc, 9) - 0.55) < 1e-12, "half way: (1 + 0.1) / 2, got %.6f", lr_at_step(&oc, 9));
    CHECK(fabs(lr_at_step(&oc, 14) - 0.1) < 1e-12, "ends at lr * min_lr_frac");
    CHECK(clip_factor(&oc, 0.5) == 1.0f && fabsf(clip_factor(&oc, 4.0) - 0.25f) < 1e-6f, "clip to norm 1");
}

// Loss floor for memorising a set of sequences: tokens are predictable from
// their prefix except where images sharing a prefix differ, here only at t = 0.
TEST(test_tiny_overfits_a_few_images) {
    ModelConfig cfg = {.vocab_size = 16, .seq_len = 16, .image_height = 4, .image_width = 4, .norm = NORM_IGPT};
    model_config_named("tiny", &cfg);
    cfg.d_model = 32;
    Model m;
    model_create(&m, &cfg, 4, 2);
    model_init_params(&cfg, m.params, 1);
    uint16_t tokens[64];
    Rng rng;
    rng_init(&rng, 3, 0);
    for (int i = 0; i < 64; i++) tokens[i] = (uint16_t)rng_below(&rng, 16);
    for (int b = 0; b < 4; b++) tokens[b * 16] = (uint16_t)b;  // 4 distinct first tokens: floor log(4)/16
    OptimConfig oc;
    optim_config_defaults(&oc);
    oc.lr = 1e-2;
    oc.warmup_steps = 10;
    oc.total_steps = 300;
    float *am = xcalloc(m.num_params, 4), *av = xcalloc(m.num_params, 4);
    double first = 0, loss = 0;
    for (int s = 0; s < 300; s++) {
        model_zero_grads(&m);
        loss = model_forward(&m, tokens, 4);
        if (s == 0) first = loss;
        model_backward(&m, tokens, 4, 1.0f / 64);
        adamw_update(&oc, &cfg, s, m.params, m.grads, am, av, clip_factor(&oc, global_norm(m.grads, m.num_params, 2)),
                     2);
    }
    double floor = log(4.0) / 16;
    CHECK(fabs(first - log(16.0)) < 0.05, "starts at log(16) = 2.77 (zero head), got %.4f", first);
    // Tolerance: within 0.02 nats/token of the floor of 0.087 after 300 steps.
    CHECK(loss < floor + 0.02, "memorises 4 images: loss %.4f, floor %.4f", loss, floor);
    free(am);
    free(av);
    model_free(&m);
}

// A small prepared dataset: 40 CIFAR-style images at 8x8 with 16 colors.
char *small_prepared_data(void) {
    make_cifar_batches(test_path("cifar"), 8, 4);
    char *out = xstrdup(test_path("data"));
    int status = run_igpt("prepare --cifar10 %s --out %s --resolution 8 --colors 16 --val 8 --no-preview --quiet",
                          test_path("cifar"), out);
    CHECK(status == 0, "prepare: %s", cli_stderr());
    return out;
}

#define TINY "--d-model 16 --n-layer 1 --n-head 2 --batch 4 --quiet"

TEST(test_train_resume_is_bitwise) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 12 --micro-batch 2 --eval-images 4 " TINY, data,
                   test_path("straight")) == 0,
          "straight run: %s", cli_stderr());
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 12 --micro-batch 2 --eval-images 4 --stop-at 5 " TINY,
                   data, test_path("resumed")) == 0,
          "first half: %s", cli_stderr());
    CHECK(strstr(cli_stdout(), "stopped (--stop-at) after step 5"), "says where it stopped: %s", cli_stdout());
    CHECK(!path_exists(test_path("resumed/checkpoint-00000012.bin")), "stopped early");
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume", data, test_path("resumed")) == 0, "resume: %s",
          cli_stderr());
    CHECK(files_equal(test_path("straight/checkpoint-00000012.bin"), test_path("resumed/checkpoint-00000012.bin")),
          "5 steps + resume + 7 steps is bitwise the 12-step run (parameters, Adam state, data position)");
    CHECK(
        run_igpt("info %s", test_path("resumed/checkpoint-00000012.bin")) == 0 && strstr(cli_stdout(), "step 12 of 12"),
        "info reads the checkpoint: %s", cli_stdout());
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 12 " TINY, data, test_path("resumed")) == 1 &&
              strstr(cli_stderr(), "already holds a run"),
          "a new run does not overwrite an old one: %s", cli_stderr());
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume --lr 0.1", data, test_path("resumed")) == 1 &&
              strstr(cli_stderr(), "a resumed run keeps its settings"),
          "resume refuses changed settings");
    size_t n;
    char *log = (char *)read_whole_file(test_path("resumed/log.jsonl"), &n);
    int train_lines = 0;
    for (char *p = log; p && (p = strstr(p, "\"loss\": ")); p++) train_lines++;
    CHECK(train_lines == 12, "one log line per step after the resume, got %d", train_lines);
    free(log);
    free(data);
}

TEST(test_train_checkpoint_corruption_is_refused) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 4 --stop-at 2 " TINY, data, test_path("run")) == 0,
          "train: %s", cli_stderr());
    const char *ckpt = test_path("run/checkpoint-00000002.bin");
    size_t n;
    uint8_t *good = read_whole_file(ckpt, &n);
    CHECK(good && n > 300, "checkpoint written");
    if (!good) return;
    struct {
        int64_t flip;
        size_t keep;
        const char *message;
    } cases[] = {
        {(int64_t)n - 100, n, "checkpoint data is corrupt (CRC mismatch)"},
        {60, n, "checkpoint header is corrupt (CRC mismatch)"},
        {-1, n - 4, "truncated checkpoint"},
        {-1, 100, "truncated inside its header"},
        {0, n, "not an igpt checkpoint"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *bad = xmalloc(n);
        memcpy(bad, good, n);
        if (cases[i].flip >= 0) bad[cases[i].flip] ^= 0x10;
        write_whole_file(ckpt, bad, cases[i].keep);
        int status = run_igpt("train --device cpu --data %s --out %s --resume", data, test_path("run"));
        CHECK(status == 1 && strstr(cli_stderr(), cases[i].message), "case %zu: exit %d, %s", i, status, cli_stderr());
        size_t m;
        uint8_t *after = read_whole_file(ckpt, &m);
        CHECK(after && m == cases[i].keep && memcmp(after, bad, m) == 0, "case %zu: checkpoint left untouched", i);
        free(after);
        free(bad);
    }
    write_whole_file(ckpt, good, n);
    int status = run_igpt("train --device cpu --data %s --out %s --resume --d-model 32", data, test_path("run"));
    CHECK(status == 1 && strstr(cli_stderr(), "is a model with d_model 16"), "another config is refused: %s",
          cli_stderr());
    // Other data: same shape, other images.
    make_cifar_batches(test_path("cifar2"), 9, 4);
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --colors 16 --val 8 --no-preview --quiet",
                   test_path("cifar2"), test_path("data2")) == 0,
          "second dataset");
    status = run_igpt("train --device cpu --data %s --out %s --resume", test_path("data2"), test_path("run"));
    CHECK(status == 1 && strstr(cli_stderr(), "trained on other data"), "other data is refused: %s", cli_stderr());
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume", data, test_path("run")) == 0,
          "the intact checkpoint resumes");
    free(good);
    free(data);
}

// A checkpoint header is user input: a header with a valid CRC but a model
// beyond igpt's bounds (or whose image height x width overflows an int) is
// refused with a message before anything is allocated.
TEST(test_checkpoint_header_bounds_are_checked) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 2 " TINY, data, test_path("run")) == 0, "train: %s",
          cli_stderr());
    const char *ckpt = test_path("run/checkpoint-00000002.bin");
    size_t n;
    uint8_t *good = read_whole_file(ckpt, &n);
    CHECK(good && n > 256, "checkpoint written");
    if (!good) return;
    enum { MODEL = 16, HEADER_CRC = 200 };  // byte offsets: checkpoint.c
    struct {
        int field;  // of the 8 u32 model fields: vocab, seq_len, image h, image w, d_model, n_layer, n_head, norm
        uint32_t value;
        const char *message;
    } cases[] = {
        {4, 1u << 20, "d_model 1048576 out of range 1..65536"},
        {5, 5000, "n_layer 5000 out of range 1..1024"},
        {6, 2048, "n_head 2048 out of range 1..1024"},
        {2, 65536, "image 65536 x 8 out of range 1..256"},
        {3, 0x80000000u, "out of range 1..256"},  // negative as an int
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *bad = xmalloc(n);
        memcpy(bad, good, n);
        put_u32(bad + MODEL + 4 * cases[i].field, cases[i].value);
        put_u32(bad + HEADER_CRC, 0);
        put_u32(bad + HEADER_CRC, crc32_update(0, bad, 256));
        write_whole_file(ckpt, bad, n);
        int status = run_igpt("info %s", ckpt);
        CHECK(status == 1 && strstr(cli_stderr(), cases[i].message), "case %zu: exit %d, %s", i, status, cli_stderr());
        free(bad);
    }
    free(good);
    free(data);
}

TEST(test_train_divergence_stops_and_keeps_last_checkpoint) {
    char *data = small_prepared_data();
    int status = run_igpt(
        "train --device cpu --data %s --out %s --steps 50 --lr 1e30 --warmup 1 --grad-clip 0 --checkpoint-every 1 "
        "--eval-images 0 " TINY,
        data, test_path("run"));
    CHECK(status == 1 && strstr(cli_stderr(), "training diverged at step"), "stops with a message: %s", cli_stderr());
    char *latest = checkpoint_latest(test_path("run"));
    CHECK(latest != NULL && strstr(cli_stderr(), strrchr(latest, '/') + 1), "names the last good checkpoint %s: %s",
          latest ? latest : "(none)", cli_stderr());
    if (latest) {
        CHECK(run_igpt("info %s", latest) == 0, "the last checkpoint is intact: %s", cli_stderr());
        CheckpointMeta meta;
        checkpoint_read_meta(latest, &meta);
        CHECK(isfinite(meta.train_loss), "and was saved at a finite loss (%g)", meta.train_loss);
    }
    free(latest);
    free(data);
}

TEST(test_train_sigint_checkpoints_and_exits) {
    char *data = small_prepared_data();
    char *out = xstrdup(test_path("run"));
    char *log_path = xstrdup(test_path("run/log.jsonl"));
    char *stdout_path = xstrdup(test_path("stdout.txt"));
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(stdout_path, "w", stdout)) _exit(99);
        if (!freopen("/dev/null", "w", stderr)) _exit(99);
        execl(igpt_path(), igpt_path(), "train", "--device", "cpu", "--data", data, "--out", out, "--steps", "1000000",
              "--d-model", "16", "--n-layer", "1", "--n-head", "2", "--batch", "4", "--checkpoint-every", "1000000",
              "--eval-images", "0", "--quiet", (char *)NULL);
        _exit(98);
    }
    // Wait until a few steps are logged (at most ~20 s), then interrupt.
    for (int i = 0; i < 400; i++) {
        size_t n = 0;
        char *log = (char *)read_whole_file(log_path, &n);
        int lines = 0;
        for (size_t k = 0; k < n; k++) lines += log[k] == '\n';
        free(log);
        if (lines >= 3) break;
        usleep(50000);
    }
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exits cleanly after SIGINT (status %d)", status);
    char *text = (char *)read_whole_file(stdout_path, NULL);
    CHECK(text && strstr(text, "interrupted (SIGINT)") && strstr(text, "--resume"), "says how to continue: %s",
          text ? text : "");
    char *latest = checkpoint_latest(out);
    CHECK(latest != NULL, "a checkpoint was written on SIGINT");
    if (latest) CHECK(run_igpt("info %s", latest) == 0, "and it is intact");
    free(latest);
    free(text);
    free(out);
    free(log_path);
    free(stdout_path);
    free(data);
}

TEST(test_train_bad_input) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 2 --bogus", data, test_path("r")) == 2 &&
              strstr(cli_stderr(), "unknown option --bogus"),
          "unknown flag");
    CHECK(run_igpt("train --device cpu --data %s --out %s", data, test_path("r")) == 2 &&
              strstr(cli_stderr(), "--steps N or --epochs"),
          "needs a length");
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 2 --config huge", data, test_path("r")) == 2 &&
              strstr(cli_stderr(), "unknown --config 'huge'"),
          "unknown config: %s", cli_stderr());
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 2 --d-model 10 --n-head 4", data, test_path("r")) ==
                  1 &&
              strstr(cli_stderr(), "not divisible by n_head"),
          "bad head count: %s", cli_stderr());
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 2 --batch 6 --micro-batch 4", data, test_path("r")) ==
              2,
          "batch not a multiple of the micro-batch");
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 2", test_path("nowhere"), test_path("r")) == 1 &&
              strstr(cli_stderr(), "no such folder"),
          "missing data folder");
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume", data, test_path("r")) == 1 &&
              strstr(cli_stderr(), "holds no checkpoint"),
          "nothing to resume: %s", cli_stderr());
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 2 --device tpu", data, test_path("r")) == 2,
          "unknown device");
    CHECK(!path_exists(test_path("r/run.json")), "failed starts leave no run behind");
    free(data);
}

TEST(test_train_help_and_version) {
    CHECK(run_igpt("train -h") == 0, "train -h exits 0: %s", cli_stderr());
    CHECK(strstr(cli_stdout(), "usage: ./igpt train --data DIR --out RUN_DIR"), "-h prints the usage: %s",
          cli_stdout());
    CHECK(strstr(cli_stdout(), "--checkpoint-every N") && strstr(cli_stdout(), "--zero"), "and every option");
    CHECK(!strstr(cli_stdout(), "%%"), "the help has no printf escapes left in it: %s", cli_stdout());
    CHECK(run_igpt("train --version") == 0 && !strncmp(cli_stdout(), "igpt ", 5), "train --version: %s", cli_stdout());
}

// run.json is written with the JSON writer: valid JSON whatever the paths
// hold (here a " in the data folder's name), with the version, the commit
// and the command line of the run; every line of log.jsonl is JSON too.
TEST(test_train_run_json_records_the_run) {
    char *data = small_prepared_data();
    char *odd = xstrdup(test_path("my \"data\""));
    CHECK(rename(data, odd) == 0, "rename %s", data);
    CHECK(
        run_igpt("train --device cpu --data '%s' --out %s --steps 2 --eval-images 4 " TINY, odd, test_path("run")) == 0,
        "train: %s", cli_stderr());
    cJSON *run = json_read_file(test_path("run/run.json"));
    CHECK(run != NULL, "run.json is valid JSON");
    const cJSON *data_dir = cJSON_GetObjectItemCaseSensitive(run, "data");
    CHECK(cJSON_IsString(data_dir) && !strcmp(data_dir->valuestring, odd), "records --data %s", odd);
    // The version is what ./igpt --version says, and names the commit.
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(run, "version");
    const cJSON *commit = cJSON_GetObjectItemCaseSensitive(run, "commit");
    const char *version_text = cJSON_IsString(version) ? version->valuestring : "(none)";
    char *commit_text = xasprintf("(commit %s)", cJSON_IsString(commit) ? commit->valuestring : "(none)");
    CHECK(run_igpt("--version") == 0 && !strncmp(cli_stdout(), version_text, strlen(version_text)) &&
              cli_stdout()[strlen(version_text)] == '\n',
          "records the version %s; ./igpt --version says %s", version_text, cli_stdout());
    CHECK(cJSON_IsString(commit) && strstr(version_text, commit_text), "records the commit: %s", commit_text);
    free(commit_text);
    const cJSON *command_line = cJSON_GetObjectItemCaseSensitive(run, "command_line");
    char *quoted =
        xasprintf("%s train --device cpu --data '%s' --out %s --steps 2", igpt_path(), odd, test_path("run"));
    CHECK(cJSON_IsString(command_line) && !strncmp(command_line->valuestring, quoted, strlen(quoted)),
          "records the command line, shell-quoted: %s", cJSON_IsString(command_line) ? command_line->valuestring : "");
    CHECK(json_number(run, "batch") == 4 && json_number(run, "processes") == 1, "and the settings");
    cJSON_Delete(run);
    char *log = (char *)read_whole_file(test_path("run/log.jsonl"), NULL);
    int lines = 0;
    for (char *line = log ? strtok(log, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *entry = cJSON_Parse(line);
        CHECK(entry && json_number(entry, "step") >= 1, "log line %d is JSON with a step: %s", lines + 1, line);
        cJSON_Delete(entry);
        lines++;
    }
    CHECK(lines == 6, "2 steps, 2 evaluations and 2 checkpoints logged, got %d lines", lines);
    free(log);
    free(quoted);
    free(odd);
    free(data);
}

// The val loss a run logged at `step` (NaN if none).
static double logged_val_loss(const char *run, int step) {
    char *path = xasprintf("%s/log.jsonl", run), *key = xasprintf("{\"step\": %d, \"val_loss\": ", step);
    char *log = (char *)read_whole_file(path, NULL), *at = log ? strstr(log, key) : NULL;
    double v = at ? strtod(at + strlen(key), NULL) : NAN;
    free(path);
    free(key);
    free(log);
    return v;
}

// The CUDA backend (here through build/interp/igpt, whose GPU is the
// interpret mode) shares the checkpoint format: a run started on the GPU
// resumes on the CPU and back, and follows the CPU run (fp32 mode: val loss
// within 1e-4 relative after 12 steps); two GPU runs give identical files.
TEST(test_train_moves_between_cpu_and_cuda) {
    char *data = small_prepared_data();
#define GPU_MODEL "--d-model 32 --n-layer 1 --n-head 2 --batch 4 --eval-images 8 --eval-every 4 --quiet"
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 12 " GPU_MODEL, data, test_path("cpu")) == 0,
          "CPU run: %s", cli_stderr());
    CHECK(
        run_igpt_interpret("train --device cuda --precision fp32 --data %s --out %s --steps 12 --stop-at 4 " GPU_MODEL,
                           data, test_path("mixed")) == 0,
        "GPU part: %s", cli_stderr());
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume --stop-at 8", data, test_path("mixed")) == 0,
          "resumed on the CPU: %s", cli_stderr());
    CHECK(run_igpt_interpret("train --device cuda --precision fp32 --data %s --out %s --resume --quiet", data,
                             test_path("mixed")) == 0,
          "resumed on the GPU: %s", cli_stderr());
    const double want = logged_val_loss(test_path("cpu"), 12), got = logged_val_loss(test_path("mixed"), 12);
    CHECK(fabs(got - want) <= 1e-4 * want, "GPU-CPU-GPU run ends at val loss %.6f, the CPU run at %.6f", got, want);
    // bf16 (the default on a GPU): deterministic, and close to the CPU.
    for (int r = 0; r < 2; r++)
        CHECK(run_igpt_interpret("train --device cuda --data %s --out %s --steps 12 " GPU_MODEL, data,
                                 test_path("bf16-%d", r)) == 0,
              "bf16 run: %s", cli_stderr());
    CHECK(files_equal(test_path("bf16-0/checkpoint-00000012.bin"), test_path("bf16-1/checkpoint-00000012.bin")),
          "two bf16 GPU runs write identical checkpoints");
    const double bf16 = logged_val_loss(test_path("bf16-0"), 12);
    CHECK(fabs(bf16 - want) <= 2e-2 * want, "bf16 run ends at val loss %.6f, the CPU run at %.6f", bf16, want);
#undef GPU_MODEL
    free(data);
}

// --attention on the GPU: the tensor-core kernels by default where they apply
// (bf16, head size 32 here), recorded in run.json; portable on request; flash
// asked of an fp32 model stops and says why.
TEST(test_train_cuda_attention_option) {
    char *data = small_prepared_data();
#define HS32_MODEL "--d-model 32 --n-layer 1 --n-head 1 --batch 4 --eval-images 8 --quiet --steps 2"
    const char *kinds[2] = {"auto", "portable"},
               *recorded[2] = {"\"attention\": \"auto\"", "\"attention\": \"portable\""};
    for (int k = 0; k < 2; k++) {
        CHECK(run_igpt_interpret("train --device cuda --attention %s --data %s --out %s " HS32_MODEL, kinds[k], data,
                                 test_path("att-%s", kinds[k])) == 0,
              "--attention %s: %s", kinds[k], cli_stderr());
        size_t n = 0;
        char *json = (char *)read_whole_file(test_path("att-%s/run.json", kinds[k]), &n);
        CHECK(strstr(json, recorded[k]), "run.json records the attention kernels: %s", json);
        free(json);
    }
    CHECK(run_igpt_interpret("train --device cuda --attention flash --precision fp32 --data %s --out %s " HS32_MODEL,
                             data, test_path("att-fp32")) != 0 &&
              strstr(cli_stderr(), "--attention flash"),
          "flash with fp32 must stop, saying why: %s", cli_stderr());
#undef HS32_MODEL
    free(data);
}

// log.jsonl without its timings (tokens_per_s), the only field two identical runs may differ in.
static char *log_without_timings(const char *run) {
    char *path = xasprintf("%s/log.jsonl", run), *log = (char *)read_whole_file(path, NULL);
    free(path);
    if (!log) return xstrdup("(no log)");
    const char *key = "\"tokens_per_s\": ";
    char *out = log;
    for (const char *in = log; *in;) {
        if (strncmp(in, key, strlen(key))) {
            *out++ = *in++;
            continue;
        }
        in += strlen(key);
        while (strchr("0123456789.eE+-", *in) && *in) in++;
    }
    *out = '\0';
    return log;
}

// The trainer on a GPU clips on the device (gpu_model_clip_and_adamw: norm,
// clip factor and AdamW queued with no host round trip); the way through the
// host (IGPT_CLIP_ON_HOST=1) logs the same losses and gradient norms and
// writes the same checkpoint bits, with clipping at work (norms above 0.2).
TEST(test_train_cuda_clips_on_the_device_as_through_the_host) {
    char *data = small_prepared_data();
#define CLIP_MODEL \
    "--d-model 32 --n-layer 1 --n-head 2 --batch 4 --steps 4 --grad-clip 0.2 --eval-images 8 --eval-every 4 --quiet"
    const char *precisions[2] = {"bf16", "fp32"};
    for (int p = 0; p < 2; p++) {
        const char *precision = precisions[p];
        CHECK(run_igpt_interpret("train --device cuda --precision %s --data %s --out %s " CLIP_MODEL, precision, data,
                                 test_path("device-%s", precision)) == 0,
              "%s, clipping on the device: %s", precision, cli_stderr());
        setenv("IGPT_CLIP_ON_HOST", "1", 1);
        CHECK(run_igpt_interpret("train --device cuda --precision %s --data %s --out %s " CLIP_MODEL, precision, data,
                                 test_path("host-%s", precision)) == 0,
              "%s, clipping through the host: %s", precision, cli_stderr());
        unsetenv("IGPT_CLIP_ON_HOST");
        char *device = log_without_timings(test_path("device-%s", precision));
        char *host = log_without_timings(test_path("host-%s", precision));
        CHECK(!strcmp(device, host), "%s: the logs differ:\n%s\nthrough the host:\n%s", precision, device, host);
        const char *norm = strstr(device, "\"grad_norm\": ");
        CHECK(norm && strtod(norm + strlen("\"grad_norm\": "), NULL) > 0.2, "%s: no clipping at step 1: %s", precision,
              device);
        CHECK(files_equal(test_path("device-%s/checkpoint-00000004.bin", precision),
                          test_path("host-%s/checkpoint-00000004.bin", precision)),
              "%s: the checkpoints after 4 steps differ", precision);
        free(device);
        free(host);
    }
#undef CLIP_MODEL
    free(data);
}
