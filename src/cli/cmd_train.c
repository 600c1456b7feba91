// ./igpt train: the command line of the training stage (src/train/train.c):
// its options, the checks of how they combine, and the call.
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/config.h"
#include "parallel/dist.h"
#include "train/optim.h"
#include "train/train.h"
#include "util/util.h"

typedef struct {
    TrainSettings run;
    DeviceSettings device;
    bool recompute, zero;
} TrainArgs;

#define RUN(field) SETTING(TrainArgs, run.field)
#define STEPS_MAX (INT64_MAX / 2)

static const Option run_options[] = {
    {"data", OPT_TEXT, RUN(data_dir), "DIR", "a folder written by ./igpt prepare"},
    {"out", OPT_TEXT, RUN(out_dir), "RUN_DIR", "the run's folder (see above)"},
};

static const Option model_options[] = {
    {"config", OPT_TEXT, RUN(config_name), "NAME", "tiny, xs, s, m or l, as in docs/model.md", "tiny"},
    {"d-model", OPT_INT, RUN(d_model), "N", "override the named config's width", .lo = 1, .hi = MODEL_MAX_D_MODEL},
    {"n-layer", OPT_INT, RUN(n_layer), "N", "override the named config's number of blocks", .lo = 1,
     .hi = MODEL_MAX_LAYERS},
    {"n-head", OPT_INT, RUN(n_head), "N", "override the named config's attention heads", .lo = 1,
     .hi = MODEL_MAX_HEADS},
    {"norm", OPT_CHOICE, RUN(norm), "KIND", "igpt or layernorm", "igpt", .choices = "igpt|layernorm"},
};

static const Option training_options[] = {
    {"steps", OPT_INT64, RUN(steps), "N", "optimizer steps; or --epochs", .lo = 1, .hi = STEPS_MAX},
    {"epochs", OPT_INT64, RUN(epochs), "E", "passes over train.bin; or --steps", .lo = 1, .hi = 1000000},
    {"batch", OPT_INT, RUN(batch), "N", "images per optimizer step", "16", .lo = 1, .hi = 1 << 20},
    {"micro-batch", OPT_INT, RUN(micro_batch), "N",
     "images per forward/backward pass; gradients accumulate (default: --batch)", .lo = 1, .hi = 1 << 20},
    {"lr", OPT_REAL, RUN(optim.lr), "X", "peak learning rate", "0.003", .min = 0.0, .max = 1e30},
    {"warmup", OPT_INT64, RUN(optim.warmup_steps), "N", "linear warm-up steps (default: 5% of the steps)", .lo = 0,
     .hi = STEPS_MAX},
    {"min-lr-frac", OPT_REAL, RUN(optim.min_lr_frac), "X", "cosine decay ends at lr * X", "0", .min = 0.0, .max = 1.0},
    {"weight-decay", OPT_REAL, RUN(optim.weight_decay), "X", "AdamW decay on matrices; iGPT uses none", "0", .min = 0.0,
     .max = 1e6},
    {"beta2", OPT_REAL, RUN(optim.beta2), "X", "Adam beta2", "0.95", .min = 0.0, .max = 0.999999},
    {"grad-clip", OPT_REAL, RUN(optim.grad_clip), "X", "clip the global gradient norm at X, 0 = off", "1", .min = 0.0,
     .max = 1e30},
    {"seed", OPT_UINT64, RUN(seed), "N", "initialisation and data order", "1234", .lo = 0, .hi = INT64_MAX},
};

static const Option evaluation_options[] = {
    {"eval-every", OPT_INT64, RUN(eval_every), "N", "validation loss every N steps (default: 10 times per run)",
     .lo = 1, .hi = STEPS_MAX},
    {"eval-images", OPT_INT64, RUN(eval_images), "N",
     "validation images per evaluation, evenly spaced through val.bin, 0 = all", "512", .lo = 0, .hi = STEPS_MAX},
    {"checkpoint-every", OPT_INT64, RUN(checkpoint_every), "N",
     "a checkpoint every N steps (default: 10 times per run)", .lo = 1, .hi = STEPS_MAX},
    {"resume", OPT_FLAG, RUN(resume), NULL, "continue the run in RUN_DIR from its latest checkpoint"},
    {"stop-at", OPT_INT64, RUN(stop_at), "N", "checkpoint and stop after step N (resume later with --resume)", .lo = 1,
     .hi = STEPS_MAX},
    {"keep-last", OPT_INT64, RUN(keep_last), "N",
     "keep only the newest N checkpoints, deleting older ones as new ones are\n"
     "written (default: keep all; give it again on --resume); see below",
     .lo = 1, .hi = STEPS_MAX},
    {"probe-every", OPT_INT64, RUN(probe_every), "N",
     "every N steps, checkpoint and run ./igpt probe on it (results in RUN_DIR/probe)", .lo = 1, .hi = STEPS_MAX},
    {"probe-train-images", OPT_INT64, RUN(probe_train_images), "N", "probe's --train-images for those probes", .lo = 2,
     .hi = STEPS_MAX},
    {"probe-eval-images", OPT_INT64, RUN(probe_eval_images), "N", "probe's --eval-images for those probes", .lo = 1,
     .hi = STEPS_MAX},
};

static const Option other_options[] = {
    {"recompute", OPT_FLAG, SETTING(TrainArgs, recompute), NULL,
     "on the GPU: keep only each block's input and recompute the rest in\n"
     "backward (about 1/10 of the activation memory, ~1/3 more compute)"},
    {"quiet", OPT_FLAG, RUN(quiet), NULL, "no progress bar"},
};

static const Option process_options[] = {
    {"zero", OPT_FLAG, SETTING(TrainArgs, zero), NULL,
     "ZeRO-1: split the Adam state across ranks (each updates 1/N of every layer)"},
};

static const Option device_options[] = DEVICE_OPTIONS("auto");

static const OptionGroup train_groups[] = {
    {NULL, run_options, COUNT_OF(run_options)},
    {"model", model_options, COUNT_OF(model_options)},
    {"training", training_options, COUNT_OF(training_options)},
    {"evaluation and checkpoints", evaluation_options, COUNT_OF(evaluation_options)},
    {"several processes (mpirun -np N ./igpt train ..., or srun; docs/multi-gpu.md)", process_options,
     COUNT_OF(process_options)},
    {"other", device_options, COUNT_OF(device_options), SETTING(TrainArgs, device)},
    {NULL, other_options, COUNT_OF(other_options)},
};

static const Command train_command = {
    .name = "train",
    .usage = "--data DIR --out RUN_DIR (--steps N | --epochs E) [options]",
    .about =
        "Pretrains the iGPT model to predict each pixel's color from the pixels\n"
        "before it (docs/model.md). DIR is a folder written by ./igpt prepare\n"
        "(train.bin, and val.bin for the validation loss). RUN_DIR gets:\n"
        "  run.json                   the settings of the run\n"
        "  log.jsonl                  one JSON line per step (loss, lr, grad norm, tokens/s),\n"
        "                             per evaluation (val_loss) and per checkpoint\n"
        "  checkpoint-NNNNNNNN.bin    every --checkpoint-every steps and at the end\n",
    .groups = train_groups,
    .num_groups = COUNT_OF(train_groups),
    .epilogue =
        "With several processes, each rank trains on --batch / N images of every batch;\n"
        "gradients are summed across ranks; only rank 0 prints and writes files. A run\n"
        "can move between the CPU and a GPU, and to another number of processes, on --resume.\n"
        "\n"
        "Ctrl-C (SIGINT), SIGTERM (Slurm's preemption, scancel) or SIGHUP: the current\n"
        "step finishes, a checkpoint is written, and the program exits with status\n"
        "128 + the signal's number: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP), the same\n"
        "on every process of the job, so scripts and job schedulers see a run that\n"
        "stopped early (continue it with --resume). A second signal exits at once.\n"
        "Exit status 0: the run is done, or stopped at --stop-at; 1: an error; 2: bad options.\n"
        "\n"
        "--keep-last N: after each checkpoint, all but the newest N are deleted, except\n"
        "one that --probe-every has still to probe. A later ./igpt probe --run RUN_DIR\n"
        "probes only the checkpoints still there; results already in RUN_DIR/probe stay.\n"
        "\n"
        "On start and on --resume, temporary files that a killed checkpoint write left in\n"
        "RUN_DIR (checkpoint-N.bin.tmp.XXXXXX, ...) are removed, and named. A start that\n"
        "fails before its first checkpoint removes the RUN_DIR it created.\n",
};

// What cli_parse cannot see: options that need or exclude each other, and
// the batch split over the job's processes (which sets the default
// --micro-batch: each process's whole share).
static void check_option_combinations(TrainArgs *a, const ParsedArgs *parsed) {
    TrainSettings *s = &a->run;
    if (!s->data_dir) usage_error("train", "--data DIR is required (a folder written by ./igpt prepare)");
    if (!s->out_dir) usage_error("train", "--out RUN_DIR is required");
    if (s->steps && s->epochs) usage_error("train", "give --steps or --epochs, not both");
    if (!s->steps && !s->epochs && !s->resume) usage_error("train", "give --steps N or --epochs E");
    // Each of the job's processes takes an equal share of every batch (a
    // resumed run's batch comes from its checkpoint and is checked there).
    const int world = dist_get()->world;
    if (!s->resume || cli_given(parsed, &s->batch)) {
        if (s->batch % world != 0)
            usage_error("train", "--batch %d must be a multiple of the %d processes of this job", s->batch, world);
        if (!s->micro_batch) s->micro_batch = s->batch / world;
        if ((s->batch / world) % s->micro_batch != 0)
            usage_error("train",
                        "each process's share of --batch (%d / %d processes) is not a multiple of --micro-batch %d",
                        s->batch, world, s->micro_batch);
    }
    ModelConfig named = {0};
    if (!model_config_named(s->config_name, &named))
        usage_error("train", "unknown --config '%s' (tiny, xs, s, m, l)", s->config_name);
}

// Appends `word` as a shell reads it back: single-quoted when it holds
// anything but [A-Za-z0-9_./=:,+@%-], a ' inside written as '\''.
// Returns the new end; needs room for 4 * strlen(word) + 2 chars.
static char *append_shell_word(char *end, const char *word) {
    const char *safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,+@%-";
    const bool quote = word[0] == '\0' || word[strspn(word, safe)] != '\0';
    if (quote) *end++ = '\'';
    for (const char *c = word; *c; c++) {
        if (quote && *c == '\'') {
            memcpy(end, "'\\''", 4);
            end += 4;
        } else {
            *end++ = *c;
        }
    }
    if (quote) *end++ = '\'';
    return end;
}

// The arguments joined with spaces, as a shell command line (allocated).
static char *shell_command_line(int argc, char **argv) {
    size_t cap = 1;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 3;
    char *text = xmalloc(cap);
    char *end = text;
    for (int i = 0; i < argc; i++) {
        if (i > 0) *end++ = ' ';
        end = append_shell_word(end, argv[i]);
    }
    *end = '\0';
    return text;
}

int cmd_train(int argc, char **argv) {
    dist_init();  // a job of one without mpirun/srun
    // main passes its argv from the command's name on: the program's name is just before it.
    char *command_line = shell_command_line(argc + 1, argv - 1);
    TrainArgs a = {0};
    optim_config_defaults(&a.run.optim);  // beta1, eps and the warm-up's default have no option of their own
    ParsedArgs parsed;
    cli_parse(&train_command, argc, argv, &a, &parsed);
    check_option_combinations(&a, &parsed);
    dist_watch_ranks(argv[-1], a.run.data_dir, a.run.out_dir);  // a rank that dies from here on is named
    a.run.command_line = command_line;
    a.run.backend = backend_options_from(&a.device);
    a.run.backend.recompute = a.recompute;
    a.run.backend.zero = a.zero;
    const int status = train_run(&a.run, &parsed);
    parsed_args_free(&parsed);
    free(command_line);
    dist_finalize();
    return status;
}
