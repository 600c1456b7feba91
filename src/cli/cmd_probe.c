// ./igpt probe: linear probes on every layer's frozen features (iGPT's
// linear-probe protocol), for one checkpoint, a whole run, or raw pixels
// (the work itself is src/probe/run.c).
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "model/cpu_ops.h"
#include "probe/run.h"

typedef struct {
    const char *data_dir, *checkpoint, *run_dir, *baseline, *eval_split, *out_dir, *select;
    int64_t train_images, eval_images;
    RealList l2;
    int max_iters, batch, folds;
    uint64_t seed;
    bool quiet;
    DeviceSettings device;
} ProbeArgs;

static const Option probe_options[] = {
    {"data", OPT_TEXT, SETTING(ProbeArgs, data_dir), "DIR", "prepared data (train.bin and val.bin or test.bin)"},
    {"checkpoint", OPT_TEXT, SETTING(ProbeArgs, checkpoint), "FILE", "probe one checkpoint"},
    {"run", OPT_TEXT, SETTING(ProbeArgs, run_dir), "RUN_DIR",
     "probe every checkpoint of a run not probed yet, and the\n"
     "randomly initialised model (step 0); writes RUN_DIR/probe/probes.csv"},
    {"baseline", OPT_CHOICE, SETTING(ProbeArgs, baseline), "pixels",
     "probe the raw (palette) pixels instead of a model", .choices = "pixels"},
    {"eval", OPT_CHOICE, SETTING(ProbeArgs, eval_split), "SPLIT", "the evaluation split: val or test", "val",
     .choices = "val|test"},
    {"train-images", OPT_INT64, SETTING(ProbeArgs, train_images), "N",
     "training images used, evenly spaced through train.bin (default: all)", NULL, .lo = 2, .hi = INT64_MAX / 2},
    {"eval-images", OPT_INT64, SETTING(ProbeArgs, eval_images), "N", "evaluation images (default: all)", NULL, .lo = 1,
     .hi = INT64_MAX / 2},
    {"l2", OPT_REALS, SETTING(ProbeArgs, l2), "LIST", "comma-separated L2 strengths to choose from (at most 16)",
     PROBE_DEFAULT_L2, .min = 0.0, .max = 1e6},
    {"select", OPT_CHOICE, SETTING(ProbeArgs, select), "HOW",
     "how the L2 strength is chosen: kfold (cross-validation on the training\n"
     "images), holdout (a 10% hold-out of them), or val (on val.bin, then refit on\n"
     "train + val; needs --eval test)",
     "kfold", .choices = "kfold|holdout|val"},
    {"folds", OPT_INT, SETTING(ProbeArgs, folds), "K", "folds of --select kfold", "5", .lo = 2, .hi = 20},
    {"max-iters", OPT_INT, SETTING(ProbeArgs, max_iters), "N", "L-BFGS iterations per fit", "1000", .lo = 1,
     .hi = 1000000},
    {"out", OPT_TEXT, SETTING(ProbeArgs, out_dir), "DIR",
     "results and feature cache (default: RUN_DIR/probe, or the checkpoint's folder/probe;\n"
     "with --baseline, the --data folder/probe)"},
    {"batch", OPT_INT, SETTING(ProbeArgs, batch), "N", "images per forward pass", "32", .lo = 1, .hi = 4096},
    {"seed", OPT_UINT64, SETTING(ProbeArgs, seed), "N", "seed of the folds or the hold-out", "1234", .lo = 0,
     .hi = INT64_MAX},
    {"quiet", OPT_FLAG, SETTING(ProbeArgs, quiet), NULL, "no progress bars, no line per fitted layer"},
};

static const Option device_options[] = DEVICE_OPTIONS("auto");

static const OptionGroup probe_groups[] = {
    {"options", probe_options, COUNT_OF(probe_options)},
    {"device (where the features are computed)", device_options, COUNT_OF(device_options), SETTING(ProbeArgs, device)},
};

static const Command probe_command = {
    .name = "probe",
    .usage = "--data DIR (--checkpoint FILE | --run RUN_DIR | --baseline pixels) [options]",
    .about =
        "Fits a linear classifier (multinomial logistic regression with L2, by L-BFGS)\n"
        "on the frozen features of every layer: the mean over positions of each\n"
        "block's normalised input, and of the final norm (docs/model.md). Features\n"
        "are standardised with the training statistics. Each layer's L2 strength\n"
        "is chosen by --select (default: 5-fold cross-validation on the training\n"
        "images, seeded and class-stratified); its probe is the fit on all the\n"
        "training images at that strength, scored once on the evaluation split.\n"
        "The paper's protocol: --eval test --select val (probes on train + val).\n",
    .groups = probe_groups,
    .num_groups = COUNT_OF(probe_groups),
    .epilogue =
        "Writes OUT/probe-NNNNNNNN.json and .csv per checkpoint (per layer: accuracy and\n"
        "its standard error, eval loss, chosen L2, the selection's accuracy, final gradient\n"
        "norm) and caches features in OUT/features-NNNNNNNN-{train,SPLIT}.bin.\n",
};

// Where results go without --out: beside what is probed.
static char *default_out_dir(const ProbeArgs *a) {
    if (a->run_dir) return xasprintf("%s/probe", a->run_dir);
    if (!a->checkpoint) return xasprintf("%s/probe", a->data_dir);
    char *dir = path_folder(a->checkpoint);
    char *out = xasprintf("%s/probe", dir);
    free(dir);
    return out;
}

// A failed probe leaves no folder it made. The probe makes its output folder
// only when it writes, after every input is checked; should a write then fail
// (a full disk), the folders it made are removed again on the way out, from
// the deepest up. rmdir removes only empty folders, so nothing else can go.
static char *folders_made;        // out_dir, if it did not exist
static size_t first_made_length;  // length of the outermost folder of it that did not exist
static bool probe_finished;

static void remove_folders_made(void) {
    if (probe_finished || !folders_made) return;
    for (char *slash; strlen(folders_made) >= first_made_length && rmdir(folders_made) == 0;) {
        if (!(slash = strrchr(folders_made, '/'))) break;
        *slash = '\0';
    }
}

static void remove_folders_made_on_failure(const char *out_dir) {
    if (path_exists(out_dir)) return;
    folders_made = xstrdup(out_dir);
    for (size_t n = strlen(folders_made); n > 1 && folders_made[n - 1] == '/';) folders_made[--n] = '\0';
    for (size_t i = 1; folders_made[i]; i++) {
        if (folders_made[i] != '/') continue;
        folders_made[i] = '\0';
        const bool exists = path_exists(folders_made);
        folders_made[i] = '/';
        if (!exists) {
            first_made_length = i;
            break;
        }
    }
    if (!first_made_length) first_made_length = strlen(folders_made);
    atexit(remove_folders_made);
}

int cmd_probe(int argc, char **argv) {
    ProbeArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&probe_command, argc, argv, &a, &parsed);
    if (!a.data_dir) usage_error("probe", "--data DIR is required");
    if (!!a.checkpoint + !!a.run_dir + !!a.baseline != 1)
        usage_error("probe", "give exactly one of --checkpoint FILE, --run RUN_DIR, --baseline pixels");
    if (!strcmp(a.select, "val") && strcmp(a.eval_split, "test") != 0)
        usage_error("probe",
                    "--select val chooses the L2 strength on val.bin, so it needs --eval test (the images it scores)");
    progress_set_quiet(a.quiet);
    char *out_dir = a.out_dir ? xstrdup(a.out_dir) : default_out_dir(&a);
    remove_folders_made_on_failure(out_dir);
    ProbeSettings s = {
        .data_dir = a.data_dir,
        .eval_split = a.eval_split,
        .train_images = a.train_images,
        .eval_images = a.eval_images,
        .protocol = {.l2_grid = a.l2.values,
                     .num_l2 = a.l2.count,
                     .max_iters = a.max_iters,
                     .seed = a.seed,
                     .select = !strcmp(a.select, "kfold")     ? PROBE_SELECT_KFOLD
                               : !strcmp(a.select, "holdout") ? PROBE_SELECT_HOLDOUT
                                                              : PROBE_SELECT_VAL,
                     .folds = a.folds},
        .batch = a.batch,
        .out_dir = out_dir,
        .quiet = a.quiet,
    };
    if (a.baseline) {
        s.protocol.threads = cpu_set_threads(a.device.threads);  // the pixels need no model, so no device
        probe_pixels(&s);
    } else {
        s.backend = backend_options_from(&a.device);
        s.protocol.threads = s.backend.threads;
        if (a.checkpoint) probe_checkpoint(&s, a.checkpoint);
        else probe_run(&s, a.run_dir);
    }
    probe_finished = true;
    free(out_dir);
    parsed_args_free(&parsed);
    return 0;
}
