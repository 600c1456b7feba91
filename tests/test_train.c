// Training tests: schedule, overfitting, bitwise resume, checkpoint
// integrity, divergence and signals, through the real ./igpt train.
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/palette.h"
#include "model/config.h"
#include "model/model.h"
#include "model/params.h"
#include "test.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "train/run_files.h"
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

static char *log_without_timings(const char *run);

// Cuts the log of a run stopped at `step` as a kill can: the checkpoint's own
// line (written just after the checkpoint) missing, and a torn last line.
static void tear_log_as_a_kill_does(const char *run, int step) {
    char *path = xasprintf("%s/log.jsonl", run), *key = xasprintf("{\"step\": %d, \"checkpoint\": ", step);
    char *log = (char *)read_whole_file(path, NULL), *at = log ? strstr(log, key) : NULL;
    CHECK(at != NULL, "the log of %s has the checkpoint line of step %d", run, step);
    if (at) {
        const char *torn = "{\"step\": 3, \"loss\": 2.7";
        memcpy(at, torn, strlen(torn));
        write_whole_file(path, log, (size_t)(at - log) + strlen(torn));
    }
    free(log);
    free(key);
    free(path);
}

TEST(test_train_resume_is_bitwise) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 12 --micro-batch 2 --eval-images 4 " TINY, data,
                   test_path("straight")) == 0,
          "straight run: %s", cli_stderr());
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 12 --micro-batch 2 --eval-images 4 --stop-at 5 " TINY,
                   data, test_path("resumed")) == 0,
          "first half: %s", cli_stderr());
    CHECK(strstr(cli_stdout(), "stopped (--stop-at) after step 5 of 12 (41%)"), "says where it stopped: %s",
          cli_stdout());
    CHECK(!path_exists(test_path("resumed/checkpoint-00000012.bin")), "stopped early");
    tear_log_as_a_kill_does(test_path("resumed"), 5);
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume", data, test_path("resumed")) == 0, "resume: %s",
          cli_stderr());
    char *straight_log = log_without_timings(test_path("straight")),
         *resumed_log = log_without_timings(test_path("resumed"));
    CHECK(
        !strcmp(straight_log, resumed_log),
        "the resumed log (torn line dropped, checkpoint line written again) is the straight run's:\n%s\nstraight:\n%s",
        resumed_log, straight_log);
    free(straight_log);
    free(resumed_log);
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
        // The commands that read the parameters only check the same (export: checkpoint_load_params).
        status = run_igpt("export %s --palette %s/palette.bin --out %s", ckpt, data, test_path("hf%zu", i));
        CHECK(status == 1 && strstr(cli_stderr(), cases[i].message), "case %zu, parameters only: exit %d, %s", i,
              status, cli_stderr());
        size_t m;
        uint8_t *after = read_whole_file(ckpt, &m);
        CHECK(after && m == cases[i].keep && memcmp(after, bad, m) == 0, "case %zu: checkpoint left untouched", i);
        free(after);
        free(bad);
    }
    write_whole_file(ckpt, good, n);
    CheckpointMeta meta, meta_p;
    float *params, *adam_m, *adam_v, *params_only;
    checkpoint_load(ckpt, &meta, &params, &adam_m, &adam_v);
    checkpoint_load_params(ckpt, &meta_p, &params_only);
    CHECK(memcmp(&meta, &meta_p, sizeof meta) == 0 && memcmp(params, params_only, meta.num_params * 4) == 0,
          "checkpoint_load_params reads what checkpoint_load reads");
    free(params);
    free(adam_m);
    free(adam_v);
    free(params_only);
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
    enum { MODEL = 16 };  // byte offset: checkpoint.c
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
        reseal_checkpoint(bad, n);
        write_whole_file(ckpt, bad, n);
        int status = run_igpt("info %s", ckpt);
        CHECK(status == 1 && strstr(cli_stderr(), cases[i].message) && strstr(cli_stderr(), ckpt),
              "case %zu: exit %d, the checkpoint and the field named: %s", i, status, cli_stderr());
        free(bad);
    }
    free(good);
    free(data);
}

// A checkpoint records its data's palette, and a resume on the same tokens with
// other colors is refused (those are other images).
TEST(test_checkpoint_records_the_palette) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 2 " TINY, data, test_path("run")) == 0, "train: %s",
          cli_stderr());
    const char *ckpt = test_path("run/checkpoint-00000002.bin");
    CheckpointMeta meta;
    checkpoint_read_meta(ckpt, &meta);
    Palette pal;
    char *train_bin = xasprintf("%s/train.bin", data);
    palette_from_file(train_bin, &pal);
    free(train_bin);
    CHECK(meta.palette_crc != 0 && meta.palette_crc == palette_crc(&pal), "palette CRC %08x recorded, the data's %08x",
          meta.palette_crc, palette_crc(&pal));
    size_t n;
    uint8_t *bytes = read_whole_file(ckpt, &n);
    enum { PALETTE_CRC = 232 };  // byte offset: checkpoint.c
    put_u32(bytes + PALETTE_CRC, palette_crc(&pal) ^ 1u);
    reseal_checkpoint(bytes, n);
    write_whole_file(ckpt, bytes, n);
    int status = run_igpt("train --data %s --out %s --steps 3 --resume --quiet", data, test_path("run"));
    CHECK(status == 1 && strstr(cli_stderr(), "another palette"), "resume refused: exit %d, %s", status, cli_stderr());
    put_u32(bytes + PALETTE_CRC, 0);  // an older checkpoint: not checked, recorded from then on
    reseal_checkpoint(bytes, n);
    write_whole_file(ckpt, bytes, n);
    CHECK(run_igpt("train --data %s --out %s --steps 3 --resume --quiet", data, test_path("run")) == 0,
          "an older checkpoint resumes: %s", cli_stderr());
    checkpoint_read_meta(test_path("run/checkpoint-00000003.bin"), &meta);
    CHECK(meta.palette_crc == palette_crc(&pal), "the resumed run records the palette: %08x", meta.palette_crc);
    free(bytes);
    palette_free(&pal);
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
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGINT,
          "exits with 130 (128 + SIGINT: stopped early, resumable) after SIGINT (status %d)", status);
    char *text = (char *)read_whole_file(stdout_path, NULL);
    CHECK(text && strstr(text, "interrupted (SIGINT) after step") && strstr(text, " of 1000000 (0%)") &&
              strstr(text, "--resume") && strstr(text, "exit status 130"),
          "says where it stopped and how to continue: %s", text ? text : "");
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

// "2025-03-01T17:04:05.123Z", within a day of now.
static bool is_recent_utc_time(const char *text) {
    struct tm utc = {0};
    int ms = -1, end = 0;
    if (strlen(text) != 24 ||
        sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &utc.tm_year, &utc.tm_mon, &utc.tm_mday, &utc.tm_hour,
               &utc.tm_min, &utc.tm_sec, &ms, &end) != 7 ||
        end != 24)
        return false;
    utc.tm_year -= 1900;
    utc.tm_mon -= 1;
    const double age = difftime(time(NULL), timegm(&utc));
    return age > -60 && age < 86400;
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
        const cJSON *clock = cJSON_GetObjectItemCaseSensitive(entry, "time");
        CHECK(cJSON_IsString(clock) && is_recent_utc_time(clock->valuestring),
              "log line %d has its wall-clock time (UTC, ISO 8601, ms): %s", lines + 1, line);
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

// log.jsonl without its timings (tokens_per_s, and the wall-clock time of
// each line), the only fields two identical runs may differ in.
static char *log_without_timings(const char *run) {
    char *path = xasprintf("%s/log.jsonl", run), *log = (char *)read_whole_file(path, NULL);
    free(path);
    if (!log) return xstrdup("(no log)");
    const char *speed = "\"tokens_per_s\": ", *clock = ", \"time\": \"";
    char *out = log;
    for (const char *in = log; *in;) {
        if (!strncmp(in, speed, strlen(speed))) {
            in += strlen(speed);
            while (strchr("0123456789.eE+-", *in) && *in) in++;
        } else if (!strncmp(in, clock, strlen(clock))) {
            in += strlen(clock);
            while (*in && *in != '"') in++;
            if (*in) in++;
        } else {
            *out++ = *in++;
        }
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

// --- The run folder's upkeep (issue 13) ----------------------------------------------------

// A kill during a checkpoint write leaves "<name>.tmp.XXXXXX": the next start
// removes exactly those of the run's own files, names them, and never takes
// one for a checkpoint.
TEST(test_train_leftover_temps_are_removed_and_named) {
    char *data = small_prepared_data();
    char *run = xstrdup(test_path("run"));
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 4 --stop-at 2 " TINY, data, run) == 0, "train: %s",
          cli_stderr());
    const char *leftovers[] = {"checkpoint-00000099.bin.tmp.Ab12Cd", "log.jsonl.tmp.x1Y2z3", "run.json.tmp.QQQQQQ"};
    const char *not_ours[] = {"checkpoint-00000099.bin.tmp.Ab12C", "notes.txt.tmp.abcdef",
                              "checkpoint-7.bin.tmp.abcdef", "checkpoint-00000099.bin.tmp.Ab12Cd.bak"};
    for (int i = 0; i < 3; i++) write_whole_file(test_path("run/%s", leftovers[i]), "partial", 7);
    for (int i = 0; i < 4; i++) write_whole_file(test_path("run/%s", not_ours[i]), "mine", 4);
    char *latest = checkpoint_latest(run);
    CHECK(latest && strstr(latest, "checkpoint-00000002.bin") && !strstr(latest, ".tmp."),
          "a temporary of a later step is not a checkpoint: latest is %s", latest ? latest : "(none)");
    free(latest);
    uint64_t *steps;
    const int64_t n = checkpoint_steps(run, &steps);
    CHECK(n == 2 && steps[0] == 1 && steps[1] == 2, "and not listed among the checkpoints (steps 1 and 2)");
    free(steps);
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume --stop-at 3", data, run) == 0, "resume: %s",
          cli_stderr());
    CHECK(strstr(cli_stderr(), "igpt: removed 3 leftover temporary files of an interrupted write (") &&
              strstr(cli_stderr(), leftovers[0]) && strstr(cli_stderr(), leftovers[1]) &&
              strstr(cli_stderr(), leftovers[2]),
          "names what it removed, in one line: %s", cli_stderr());
    for (int i = 0; i < 3; i++) CHECK(!path_exists(test_path("run/%s", leftovers[i])), "%s removed", leftovers[i]);
    for (int i = 0; i < 4; i++) CHECK(file_size(test_path("run/%s", not_ours[i])) == 4, "%s kept", not_ours[i]);
    CHECK(file_size(test_path("run/checkpoint-00000003.bin")) > 0, "and the run went on");
    free(run);
    free(data);
}

// A start that fails leaves no folder it created, and never removes one the user had.
TEST(test_train_failed_start_leaves_no_folder) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cuda --data %s --out %s --steps 2 " TINY, data, test_path("new/run")) == 1,
          "no GPU here: %s", cli_stderr());
    CHECK(!path_exists(test_path("new")), "the folders it created are gone");
    const char *diverging = "--steps 6 --lr 1e30 --warmup 1 --grad-clip 0 --checkpoint-every 100 --eval-images 0 " TINY;
    CHECK(run_igpt("train --device cpu --data %s --out %s %s", data, test_path("made/run"), diverging) == 1 &&
              strstr(cli_stderr(), "diverged"),
          "diverges before its first checkpoint: %s", cli_stderr());
    CHECK(!path_exists(test_path("made")), "its run.json, log.jsonl and folders are gone");
    make_directories(test_path("mine"));
    write_whole_file(test_path("mine/notes.txt"), "mine", 4);
    CHECK(run_igpt("train --device cpu --data %s --out %s %s", data, test_path("mine/run"), diverging) == 1, "fails");
    CHECK(file_size(test_path("mine/notes.txt")) == 4 && !path_exists(test_path("mine/run")),
          "the user's folder and file stay; only what the command made is gone");
    make_directories(test_path("empty"));
    CHECK(run_igpt("train --device cpu --data %s --out %s %s", data, test_path("empty"), diverging) == 1, "fails");
    CHECK(is_directory(test_path("empty")), "an empty folder the user made stays");
    free(data);
}

// --keep-last N keeps the newest N checkpoints as the run goes, and through a resume.
TEST(test_train_keep_last_rotates_checkpoints) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 6 --checkpoint-every 1 --keep-last 0 " TINY, data,
                   test_path("r")) == 2 &&
              strstr(cli_stderr(), "--keep-last must be between 1 and"),
          "N >= 1: %s", cli_stderr());
    CHECK(
        run_igpt("train --device cpu --data %s --out %s --steps 6 --checkpoint-every 1 --keep-last 2 --stop-at 4 " TINY,
                 data, test_path("run")) == 0,
        "train: %s", cli_stderr());
    uint64_t *steps;
    int64_t n = checkpoint_steps(test_path("run"), &steps);
    CHECK(n == 2 && steps[0] == 3 && steps[1] == 4, "steps 3 and 4 kept, got %lld checkpoints", (long long)n);
    free(steps);
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume --keep-last 1", data, test_path("run")) == 0,
          "resume: %s", cli_stderr());
    n = checkpoint_steps(test_path("run"), &steps);
    CHECK(n == 1 && steps[0] == 6, "only the last is kept, got %lld checkpoints", (long long)n);
    free(steps);
    free(data);
}

// A checkpoint of a probe step stays until its probe is done (probe/probe-N.csv).
TEST(test_rotation_keeps_checkpoints_still_to_probe) {
    const char *run = test_dir();
    for (int step = 1; step <= 6; step++) write_whole_file(test_path("checkpoint-%08d.bin", step), "c", 1);
    make_directories(test_path("probe"));
    write_whole_file(test_path("probe/probe-00000002.csv"), "p", 1);  // step 2 probed, step 4 not yet
    CHECK(rotate_checkpoints(run, 2, 2) == 3, "deletes steps 1, 2 and 3 but not 4");
    uint64_t *steps;
    const int64_t n = checkpoint_steps(run, &steps);
    CHECK(n == 3 && steps[0] == 4 && steps[1] == 5 && steps[2] == 6, "4 (to probe), 5 and 6 stay; got %lld",
          (long long)n);
    free(steps);
}

// One ./igpt train per run folder: a second one stops with a message.
TEST(test_train_refuses_a_folder_in_use) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 4 --stop-at 2 " TINY, data, test_path("run")) == 0,
          "train: %s", cli_stderr());
    const int fd = open(test_path("run"), O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0, "the test holds the folder's lock");
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume", data, test_path("run")) == 1 &&
              strstr(cli_stderr(), "is in use by another ./igpt train"),
          "refused: %s", cli_stderr());
    if (fd >= 0) close(fd);
    CHECK(run_igpt("train --device cpu --data %s --out %s --resume", data, test_path("run")) == 0, "free again: %s",
          cli_stderr());
    free(data);
}
