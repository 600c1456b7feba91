// ./igpt train: next-pixel pretraining on a prepared split, one clear loop:
// batch -> forward -> backward -> clip -> AdamW -> log / evaluate / checkpoint.
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/backend.h"
#include "train/checkpoint.h"
#include "parallel/data_parallel.h"
#include "parallel/dist.h"
#include "cli/cli.h"
#include "model/cpu_ops.h"
#include "data/dataset.h"
#include "model/model.h"
#include "train/optim.h"

static const char *const train_help =
    "usage: ./igpt train --data DIR --out RUN_DIR (--steps N | --epochs E) [options]\n"
    "\n"
    "Pretrains the iGPT model to predict each pixel's color from the pixels\n"
    "before it (docs/model.md). DIR is a folder written by ./igpt prepare\n"
    "(train.bin, and val.bin for the validation loss). RUN_DIR gets:\n"
    "  run.json                   the settings of the run\n"
    "  log.jsonl                  one JSON line per step (loss, lr, grad norm, tokens/s),\n"
    "                             per evaluation (val_loss) and per checkpoint\n"
    "  checkpoint-NNNNNNNN.bin    every --checkpoint-every steps and at the end\n"
    "\n"
    "model:\n"
    "  --config NAME        tiny, xs, s, m, l (default tiny; docs/model.md)\n"
    "  --d-model N, --n-layer N, --n-head N   override the named config\n"
    "  --norm KIND          igpt (default) or layernorm\n"
    "training:\n"
    "  --steps N            optimizer steps; or --epochs E (passes over train.bin)\n"
    "  --batch N            images per optimizer step (default 16)\n"
    "  --micro-batch N      images per forward/backward pass; gradients accumulate (default: --batch)\n"
    "  --lr X               peak learning rate (default 0.003)\n"
    "  --warmup N           linear warm-up steps (default: 5%% of the steps)\n"
    "  --min-lr-frac X      cosine decay ends at lr * X (default 0)\n"
    "  --weight-decay X     AdamW decay on matrices (default 0, as iGPT)\n"
    "  --beta2 X            Adam beta2 (default 0.95)\n"
    "  --grad-clip X        clip the global gradient norm (default 1; 0 = off)\n"
    "  --seed N             initialisation and data order (default 1234)\n"
    "evaluation and checkpoints:\n"
    "  --eval-every N       validation loss every N steps (default: 10 times per run)\n"
    "  --eval-images N      validation images per evaluation, evenly spaced through val.bin (default 512; 0 = all)\n"
    "  --checkpoint-every N (default: 10 times per run)\n"
    "  --resume             continue the run in RUN_DIR from its latest checkpoint\n"
    "  --stop-at N          checkpoint and stop after step N (resume later with --resume)\n"
    "  --probe-every N      every N steps, checkpoint and run ./igpt probe on it (results in RUN_DIR/probe;\n"
    "                       --probe-train-images, --probe-eval-images limit the images, as probe's options)\n"
    "other:\n"
    "  --device NAME        cuda (a GPU: bf16 with fp32 master weights), cpu (the fp32 reference), or auto\n"
    "                       (default: cuda when a GPU is usable); a run can move between them on --resume\n"
    "  --precision P        on the GPU: bf16 (default) or fp32 (for debugging)\n"
    "  --recompute          on the GPU: keep only each block's input and recompute the rest in\n"
    "                       backward (about 1/10 of the activation memory, ~1/3 more compute)\n"
    "  --threads N          worker threads (default: all cores)\n"
    "several processes (mpirun -np N ./igpt train ..., or srun; docs/multi-gpu.md):\n"
    "                       each rank trains on --batch / N images of every batch; gradients are summed\n"
    "                       across ranks; only rank 0 prints and writes files\n"
    "  --zero               ZeRO-1: split the Adam state across ranks (each updates 1/N of every layer)\n"
    "  --quiet              no progress bar\n"
    "\n"
    "Ctrl-C (SIGINT) or SIGTERM: the current step finishes, a checkpoint is written,\n"
    "and the program exits; a second signal exits at once.\n";

enum {
    O_DATA = 1000, O_OUT, O_CONFIG, O_DMODEL, O_NLAYER, O_NHEAD, O_NORM, O_STEPS, O_EPOCHS, O_BATCH, O_MICRO, O_LR,
    O_WARMUP, O_MINLR, O_WD, O_BETA2, O_CLIP, O_SEED, O_EVAL_EVERY, O_EVAL_IMAGES, O_CKPT_EVERY, O_RESUME, O_STOP_AT,
    O_DEVICE, O_THREADS, O_QUIET, O_HELP, O_PROBE_EVERY, O_PROBE_TRAIN, O_PROBE_EVAL, O_PRECISION, O_RECOMPUTE, O_ZERO, O_COUNT
};

typedef struct {
    const char *data_dir, *out_dir, *config_name, *device, *precision;
    int d_model, n_layer, n_head, norm;
    OptimConfig optim;
    int64_t steps, epochs, eval_every, eval_images, checkpoint_every, stop_at;
    int64_t probe_every, probe_train_images, probe_eval_images;
    int batch, micro_batch, threads;
    uint64_t seed;
    bool resume, quiet, recompute, zero;
    bool set[O_COUNT - 1000];  // which options were given
} TrainArgs;

static void parse_args(int argc, char **argv, TrainArgs *a) {
    memset(a, 0, sizeof *a);
    a->config_name = "tiny";
    a->device = "auto";
    a->precision = "bf16";
    a->norm = NORM_IGPT;
    optim_config_defaults(&a->optim);
    a->batch = 16;
    a->seed = 1234;
    a->eval_images = 512;
    static const struct option options[] = {
        {"data", required_argument, 0, O_DATA},           {"out", required_argument, 0, O_OUT},
        {"config", required_argument, 0, O_CONFIG},       {"d-model", required_argument, 0, O_DMODEL},
        {"n-layer", required_argument, 0, O_NLAYER},      {"n-head", required_argument, 0, O_NHEAD},
        {"norm", required_argument, 0, O_NORM},           {"steps", required_argument, 0, O_STEPS},
        {"epochs", required_argument, 0, O_EPOCHS},       {"batch", required_argument, 0, O_BATCH},
        {"micro-batch", required_argument, 0, O_MICRO},   {"lr", required_argument, 0, O_LR},
        {"warmup", required_argument, 0, O_WARMUP},       {"min-lr-frac", required_argument, 0, O_MINLR},
        {"weight-decay", required_argument, 0, O_WD},     {"beta2", required_argument, 0, O_BETA2},
        {"grad-clip", required_argument, 0, O_CLIP},      {"seed", required_argument, 0, O_SEED},
        {"eval-every", required_argument, 0, O_EVAL_EVERY}, {"eval-images", required_argument, 0, O_EVAL_IMAGES},
        {"checkpoint-every", required_argument, 0, O_CKPT_EVERY}, {"resume", no_argument, 0, O_RESUME},
        {"stop-at", required_argument, 0, O_STOP_AT},     {"device", required_argument, 0, O_DEVICE},
        {"threads", required_argument, 0, O_THREADS},     {"quiet", no_argument, 0, O_QUIET},
        {"probe-every", required_argument, 0, O_PROBE_EVERY}, {"probe-train-images", required_argument, 0, O_PROBE_TRAIN},
        {"probe-eval-images", required_argument, 0, O_PROBE_EVAL}, {"precision", required_argument, 0, O_PRECISION},
        {"recompute", no_argument, 0, O_RECOMPUTE},      {"zero", no_argument, 0, O_ZERO},
        {"help", no_argument, 0, O_HELP},                 {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        if (c >= 1000 && c < O_COUNT) a->set[c - 1000] = true;
        switch (c) {
        case O_DATA: a->data_dir = optarg; break;
        case O_OUT: a->out_dir = optarg; break;
        case O_CONFIG: a->config_name = optarg; break;
        case O_DMODEL: a->d_model = (int)parse_int_option("--d-model", optarg, 1, 65536); break;
        case O_NLAYER: a->n_layer = (int)parse_int_option("--n-layer", optarg, 1, 1024); break;
        case O_NHEAD: a->n_head = (int)parse_int_option("--n-head", optarg, 1, 1024); break;
        case O_NORM:
            if (!strcmp(optarg, "igpt")) a->norm = NORM_IGPT;
            else if (!strcmp(optarg, "layernorm")) a->norm = NORM_LAYERNORM;
            else usage_error("train", "--norm must be igpt or layernorm, got '%s'", optarg);
            break;
        case O_STEPS: a->steps = parse_int_option("--steps", optarg, 1, INT64_MAX / 2); break;
        case O_EPOCHS: a->epochs = parse_int_option("--epochs", optarg, 1, 1000000); break;
        case O_BATCH: a->batch = (int)parse_int_option("--batch", optarg, 1, 1 << 20); break;
        case O_MICRO: a->micro_batch = (int)parse_int_option("--micro-batch", optarg, 1, 1 << 20); break;
        case O_LR: a->optim.lr = parse_float_option("--lr", optarg, 0.0, 1e30); break;
        case O_WARMUP: a->optim.warmup_steps = parse_int_option("--warmup", optarg, 0, INT64_MAX / 2); break;
        case O_MINLR: a->optim.min_lr_frac = parse_float_option("--min-lr-frac", optarg, 0.0, 1.0); break;
        case O_WD: a->optim.weight_decay = parse_float_option("--weight-decay", optarg, 0.0, 1e6); break;
        case O_BETA2: a->optim.beta2 = parse_float_option("--beta2", optarg, 0.0, 0.999999); break;
        case O_CLIP: a->optim.grad_clip = parse_float_option("--grad-clip", optarg, 0.0, 1e30); break;
        case O_SEED: a->seed = (uint64_t)parse_int_option("--seed", optarg, 0, INT64_MAX); break;
        case O_EVAL_EVERY: a->eval_every = parse_int_option("--eval-every", optarg, 1, INT64_MAX / 2); break;
        case O_EVAL_IMAGES: a->eval_images = parse_int_option("--eval-images", optarg, 0, INT64_MAX / 2); break;
        case O_CKPT_EVERY: a->checkpoint_every = parse_int_option("--checkpoint-every", optarg, 1, INT64_MAX / 2); break;
        case O_RESUME: a->resume = true; break;
        case O_STOP_AT: a->stop_at = parse_int_option("--stop-at", optarg, 1, INT64_MAX / 2); break;
        case O_DEVICE: a->device = optarg; break;
        case O_PRECISION: a->precision = optarg; break;
        case O_RECOMPUTE: a->recompute = true; break;
        case O_ZERO: a->zero = true; break;
        case O_THREADS: a->threads = (int)parse_int_option("--threads", optarg, 1, 4096); break;
        case O_QUIET: a->quiet = true; break;
        case O_PROBE_EVERY: a->probe_every = parse_int_option("--probe-every", optarg, 1, INT64_MAX / 2); break;
        case O_PROBE_TRAIN: a->probe_train_images = parse_int_option("--probe-train-images", optarg, 2, INT64_MAX / 2); break;
        case O_PROBE_EVAL: a->probe_eval_images = parse_int_option("--probe-eval-images", optarg, 1, INT64_MAX / 2); break;
        case O_HELP: fputs(train_help, stdout); exit(0);
        default: bad_option("train", c, argv);
        }
    }
    if (optind < argc) usage_error("train", "unexpected argument '%s'", argv[optind]);
    if (!a->data_dir) usage_error("train", "--data DIR is required (a folder written by ./igpt prepare)");
    if (!a->out_dir) usage_error("train", "--out RUN_DIR is required");
    if (a->steps && a->epochs) usage_error("train", "give --steps or --epochs, not both");
    if (!a->steps && !a->epochs && !a->resume) usage_error("train", "give --steps N or --epochs E");
    if (strcmp(a->device, "cpu") && strcmp(a->device, "cuda") && strcmp(a->device, "auto"))
        usage_error("train", "--device must be auto, cpu or cuda, got '%s'", a->device);
    if (strcmp(a->precision, "bf16") && strcmp(a->precision, "fp32"))
        usage_error("train", "--precision must be bf16 or fp32, got '%s'", a->precision);
    // Each of the job's processes takes an equal share of every batch (a
    // resumed run's batch comes from its checkpoint and is checked there).
    const int world = dist_get()->world;
    if (!a->resume || a->set[O_BATCH - 1000]) {
        if (a->batch % world != 0)
            usage_error("train", "--batch %d must be a multiple of the %d processes of this job", a->batch, world);
        if (!a->micro_batch) a->micro_batch = a->batch / world;
        if ((a->batch / world) % a->micro_batch != 0)
            usage_error("train",
                        "each process's share of --batch (%d / %d processes) is not a multiple of --micro-batch %d",
                        a->batch, world, a->micro_batch);
    }
}

// --- Data order ------------------------------------------------------------------

// The images of `epoch` in a seeded random order: the same for a given
// (seed, epoch), so a resumed run continues exactly where it stopped.
static void epoch_order(uint32_t *order, int64_t n, uint64_t seed, uint64_t epoch) {
    for (int64_t i = 0; i < n; i++) order[i] = (uint32_t)i;
    Rng rng;
    rng_init(&rng, seed, 0x73687566666c65ull + epoch);  // "shuffle" + epoch
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&rng, (uint64_t)i + 1);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

typedef struct {
    TokenDataset *data;
    uint32_t *order;
    uint64_t seed, epoch, pos;  // next image: order[pos] of `epoch`
} DataCursor;

static void cursor_init(DataCursor *dc, TokenDataset *data, uint64_t seed, uint64_t epoch, uint64_t pos) {
    dc->data = data;
    dc->seed = seed;
    dc->epoch = epoch;
    dc->pos = pos;
    dc->order = xmalloc((size_t)data->count * sizeof(uint32_t));
    epoch_order(dc->order, data->count, seed, epoch);
}

static void cursor_next(DataCursor *dc, uint16_t *dst, int images) {
    const int64_t tpi = dataset_tokens_per_image(dc->data);
    for (int i = 0; i < images; i++) {
        if (dc->pos == (uint64_t)dc->data->count) {
            dc->epoch++;
            dc->pos = 0;
            epoch_order(dc->order, dc->data->count, dc->seed, dc->epoch);
        }
        memcpy(dst + (size_t)i * tpi, dc->data->tokens + (size_t)dc->order[dc->pos++] * tpi, (size_t)tpi * 2);
    }
}

// Mean loss (nats/token) over `images` images evenly spaced through `data`
// (the same images at every evaluation).
// With several processes each takes every world-th micro-batch of them.
static double evaluate(Backend *m, const TokenDataset *data, int64_t images, int micro_batch, uint16_t *buffer) {
    const int64_t tpi = dataset_tokens_per_image(data);
    const Dist *d = dist_get();
    int64_t *index = xmalloc((size_t)images * sizeof(int64_t));
    evenly_spaced(data->count, images, index);
    double total = 0.0;
    for (int64_t i = (int64_t)d->rank * micro_batch; i < images; i += (int64_t)d->world * micro_batch) {
        int n = (int)(images - i < micro_batch ? images - i : micro_batch);
        for (int k = 0; k < n; k++)
            memcpy(buffer + (size_t)k * tpi, data->tokens + (size_t)index[i + k] * tpi, (size_t)tpi * 2);
        total += backend_forward(m, buffer, n) * n;
    }
    free(index);
    return dist_sum_double(total) / (double)images;
}

// --- Run files --------------------------------------------------------------------

// Keeps only the log lines of steps <= `step` (what a resumed run has really done).
static void truncate_log(const char *path, uint64_t step) {
    char *text = (char *)read_whole_file(path, NULL);
    if (!text) return;
    AtomicFile af;
    atomic_open(&af, path);
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line + 1) : strlen(line);
        unsigned long long s;
        if (sscanf(line, "{\"step\": %llu", &s) == 1 && s <= step) atomic_write(&af, line, len);
        line += len;
    }
    atomic_commit(&af);
    free(text);
}

static void write_run_json(const char *path, const TrainArgs *a, const ModelConfig *cfg, const OptimConfig *oc,
                           size_t num_params) {
    AtomicFile af;
    atomic_open(&af, path);
    char *json = xasprintf(
        "{\n  \"data\": \"%s\",\n  \"config\": \"%s\",\n  \"model\": {\"vocab_size\": %d, \"seq_len\": %d, "
        "\"image_height\": %d, \"image_width\": %d, \"d_model\": %d, \"n_layer\": %d, \"n_head\": %d, \"norm\": "
        "\"%s\", \"parameters\": %zu},\n  \"optim\": {\"lr\": %g, \"min_lr_frac\": %g, \"warmup_steps\": %lld, "
        "\"total_steps\": %lld, \"beta1\": %g, \"beta2\": %g, \"eps\": %g, \"weight_decay\": %g, \"grad_clip\": "
        "%g},\n  \"batch\": %d,\n  \"micro_batch\": %d,\n  \"seed\": %llu,\n  \"device\": \"%s\",\n  \"precision\": "
        "\"%s\",\n  \"processes\": %d,\n  \"zero\": %s\n}\n",
        a->data_dir, a->config_name, cfg->vocab_size, cfg->seq_len, cfg->image_height, cfg->image_width, cfg->d_model,
        cfg->n_layer, cfg->n_head, norm_kind_name(cfg->norm), num_params, oc->lr, oc->min_lr_frac,
        (long long)oc->warmup_steps, (long long)oc->total_steps, oc->beta1, oc->beta2, oc->eps, oc->weight_decay,
        oc->grad_clip, a->batch, a->micro_batch, (unsigned long long)a->seed, a->device, a->precision,
        dist_get()->world, a->zero ? "true" : "false");
    atomic_write(&af, json, strlen(json));
    atomic_commit(&af);
    free(json);
}

// A resumed run keeps its settings: an explicitly given option that differs is an error.
static void check_resume_option(const TrainArgs *a, int opt, const char *name, double given, double stored) {
    if (a->set[opt - 1000] && given != stored)
        die("--%s %g differs from the run's %g: a resumed run keeps its settings (start a new --out to change them)",
            name, given, stored);
}

// Runs `./igpt probe` on a checkpoint in a child process and waits for it; a
// failed probe is reported but does not stop training.
static void probe_checkpoint(const TrainArgs *a, const char *checkpoint) {
    char *out = xasprintf("%s/probe", a->out_dir);
    char train_images[32], eval_images[32];
    snprintf(train_images, sizeof train_images, "%lld", (long long)a->probe_train_images);
    snprintf(eval_images, sizeof eval_images, "%lld", (long long)a->probe_eval_images);
    char *argv[20] = {"igpt", "probe", "--data", (char *)a->data_dir, "--checkpoint", (char *)checkpoint, "--out", out,
                      "--quiet", "--device", (char *)a->device, "--precision", (char *)a->precision};
    int n = 13;
    if (a->probe_train_images) argv[n++] = "--train-images", argv[n++] = train_images;
    if (a->probe_eval_images) argv[n++] = "--eval-images", argv[n++] = eval_images;
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        warn("probing %s failed; training goes on (rerun ./igpt probe --run %s later)", checkpoint, a->out_dir);
    free(out);
}

// --- Training ---------------------------------------------------------------------

static void load_split(const char *dir, const char *name, TokenDataset *ds, bool required, bool *present) {
    char *path = xasprintf("%s/%s.bin", dir, name);
    *present = file_size(path) >= 0;
    if (!*present && required) die("%s: no such file; prepare the data with ./igpt prepare --out %s", path, dir);
    if (*present) dataset_read(path, ds);
    free(path);
}

int cmd_train(int argc, char **argv) {
    dist_init();  // a job of one without mpirun/srun
    const Dist *job = dist_get();
    const bool root = dist_is_root();
    TrainArgs a;
    parse_args(argc, argv, &a);
    progress_set_quiet(a.quiet || !root);
    const int threads = cpu_set_threads(a.threads);

    TokenDataset train, val;
    bool has_train, has_val;
    if (!is_directory(a.data_dir)) die("--data %s: no such folder", a.data_dir);
    load_split(a.data_dir, "train", &train, true, &has_train);
    load_split(a.data_dir, "val", &val, false, &has_val);
    if (has_val && (val.palette.colors != train.palette.colors ||
                    memcmp(val.palette.rgb, train.palette.rgb, (size_t)train.palette.colors * 3) != 0 ||
                    val.height != train.height || val.width != train.width))
        die("%s: val.bin and train.bin were prepared with different palettes or sizes", a.data_dir);
    const uint32_t data_crc = crc32_update(0, train.tokens, (size_t)(train.count * dataset_tokens_per_image(&train)) * 2);

    // Model configuration: named config + overrides; colors and length from the data.
    ModelConfig cfg = {.vocab_size = train.palette.colors, .seq_len = train.height * train.width,
                       .image_height = train.height, .image_width = train.width, .norm = (NormKind)a.norm};
    if (!model_config_named(a.config_name, &cfg))
        usage_error("train", "unknown --config '%s' (tiny, xs, s, m, l)", a.config_name);
    if (a.d_model) cfg.d_model = a.d_model;
    if (a.n_layer) cfg.n_layer = a.n_layer;
    if (a.n_head) cfg.n_head = a.n_head;
    model_config_validate(&cfg);

    // A new run or a resumed one.
    char *latest = checkpoint_latest(a.out_dir);
    CheckpointMeta meta = {0};
    float *loaded = NULL, *loaded_m = NULL, *loaded_v = NULL;
    if (a.resume) {
        if (!latest) die("--resume: %s holds no checkpoint to resume from", a.out_dir);
        checkpoint_load(latest, &meta, &loaded, &loaded_m, &loaded_v);
        const ModelConfig *c = &meta.model;
        if (a.set[O_CONFIG - 1000] || a.set[O_DMODEL - 1000] || a.set[O_NLAYER - 1000] || a.set[O_NHEAD - 1000] ||
            a.set[O_NORM - 1000]) {
            if (c->d_model != cfg.d_model || c->n_layer != cfg.n_layer || c->n_head != cfg.n_head || c->norm != cfg.norm)
                die("%s is a model with d_model %d, n_layer %d, n_head %d, %s norm; you asked for %d, %d, %d, %s", latest,
                    c->d_model, c->n_layer, c->n_head, norm_kind_name(c->norm), cfg.d_model, cfg.n_layer, cfg.n_head,
                    norm_kind_name(cfg.norm));
        }
        if (c->vocab_size != cfg.vocab_size || c->seq_len != cfg.seq_len)
            die("%s was trained on %d colors at %dx%d, but %s has %d colors at %dx%d", latest, c->vocab_size,
                c->image_height, c->image_width, a.data_dir, cfg.vocab_size, cfg.image_height, cfg.image_width);
        if (meta.data_count != (uint64_t)train.count || meta.data_crc != data_crc)
            die("%s was trained on other data than %s/train.bin (image count or content differs)", latest, a.data_dir);
        check_resume_option(&a, O_LR, "lr", a.optim.lr, meta.optim.lr);
        check_resume_option(&a, O_MINLR, "min-lr-frac", a.optim.min_lr_frac, meta.optim.min_lr_frac);
        check_resume_option(&a, O_WARMUP, "warmup", (double)a.optim.warmup_steps, (double)meta.optim.warmup_steps);
        check_resume_option(&a, O_WD, "weight-decay", a.optim.weight_decay, meta.optim.weight_decay);
        check_resume_option(&a, O_BETA2, "beta2", a.optim.beta2, meta.optim.beta2);
        check_resume_option(&a, O_CLIP, "grad-clip", a.optim.grad_clip, meta.optim.grad_clip);
        check_resume_option(&a, O_BATCH, "batch", a.batch, meta.batch);
        check_resume_option(&a, O_MICRO, "micro-batch", a.micro_batch, meta.micro_batch);
        check_resume_option(&a, O_SEED, "seed", (double)a.seed, (double)meta.seed);
        cfg = meta.model;
        int64_t total = meta.optim.total_steps;
        if (a.steps || a.epochs) {
            total = a.steps ? a.steps : a.epochs * ((train.count + meta.batch - 1) / meta.batch);
            if (total != meta.optim.total_steps)
                warn("the run was planned for %lld steps, now %lld: the learning-rate schedule changes from here on",
                     (long long)meta.optim.total_steps, (long long)total);
        }
        a.optim = meta.optim;
        a.optim.total_steps = total;
        a.batch = (int)meta.batch;
        a.micro_batch = (int)meta.micro_batch;
        if (a.batch % job->world != 0)
            die("the run's batch of %d images cannot be split over %d processes", a.batch, job->world);
        if (!a.set[O_MICRO - 1000] && (a.batch / job->world) % a.micro_batch != 0)
            a.micro_batch = a.batch / job->world;  // another process count: each takes its whole share
        if ((a.batch / job->world) % a.micro_batch != 0)
            die("each process's share of the run's batch (%d / %d processes) is not a multiple of --micro-batch %d",
                a.batch, job->world, a.micro_batch);
        a.seed = meta.seed;
        if (meta.step >= (uint64_t)total) die("%s is at step %llu: the run's %lld steps are done", latest,
                                              (unsigned long long)meta.step, (long long)total);
    } else {
        if (latest) die("%s already holds a run (%s); pass --resume to continue it, or choose another --out", a.out_dir, latest);
        if (root) make_directories(a.out_dir);
        a.optim.total_steps = a.steps ? a.steps : a.epochs * ((train.count + a.batch - 1) / a.batch);
        if (a.optim.warmup_steps < 0) a.optim.warmup_steps = a.optim.total_steps / 20 > 0 ? a.optim.total_steps / 20 : 1;
        if (a.optim.warmup_steps > a.optim.total_steps) a.optim.warmup_steps = a.optim.total_steps;
        meta = (CheckpointMeta){.model = cfg, .optim = a.optim, .num_params = param_count(&cfg), .seed = a.seed,
                                .batch = (uint32_t)a.batch, .micro_batch = (uint32_t)a.micro_batch,
                                .data_count = (uint64_t)train.count, .data_crc = data_crc, .val_loss = NAN};
    }
    const OptimConfig *oc = &a.optim;
    const int64_t total_steps = oc->total_steps;
    // Evaluation and checkpoint cadence: given, else the run's (when resuming), else 10 per run.
    const int64_t tenth = total_steps / 10 > 0 ? total_steps / 10 : 1;
    const int64_t eval_every = a.eval_every ? a.eval_every : meta.eval_every ? (int64_t)meta.eval_every : tenth;
    const int64_t ckpt_every =
        a.checkpoint_every ? a.checkpoint_every : meta.checkpoint_every ? (int64_t)meta.checkpoint_every : tenth;
    const int64_t wanted_images = a.set[O_EVAL_IMAGES - 1000] || !a.resume ? a.eval_images : (int64_t)meta.eval_images;
    const int64_t eval_images = !has_val ? 0 : wanted_images == 0 || wanted_images > val.count ? val.count : wanted_images;
    meta.eval_every = (uint64_t)eval_every;
    meta.eval_images = (uint64_t)wanted_images;
    meta.checkpoint_every = (uint64_t)ckpt_every;

    // Every rank has decided the same before rank 0 writes anything.
    dist_barrier();
    const DeviceKind device = backend_choose_device(a.device);
    GpuPrecision precision = GPU_BF16;
    if (!parse_precision(a.precision, &precision))
        usage_error("train", "--precision must be bf16 or fp32, got '%s'", a.precision);
    a.device = device_name(device);
    if (device == DEVICE_CPU) a.precision = "fp32";
    const int T = cfg.seq_len;
    printf("train: %s model (d_model %d, %d layers, %d heads, %s norm), %zu parameters, %d colors, %dx%d = %d tokens/image\n",
           a.config_name, cfg.d_model, cfg.n_layer, cfg.n_head, norm_kind_name(cfg.norm), param_count(&cfg),
           cfg.vocab_size, cfg.image_height, cfg.image_width, T);
    printf("train: %lld images in train.bin, %lld of %lld val images per evaluation; batch %d (micro-batch %d), %lld steps, lr %g (warm-up %lld)\n",
           (long long)train.count, (long long)eval_images, has_val ? (long long)val.count : 0LL, a.batch, a.micro_batch,
           (long long)total_steps, oc->lr, (long long)oc->warmup_steps);
    // The memory plan is printed before anything is allocated.
    char plan[512];
    const BackendOptions backend_options = {.device = device, .precision = precision, .recompute = a.recompute,
                                            .zero = a.zero, .threads = threads};
    backend_plan(&backend_options, &cfg, a.micro_batch, plan, sizeof plan);
    printf("train: %s\n", plan);
    if (job->world > 1)
        printf("train: %d processes (data parallel), %d images each per step%s\n", job->world, a.batch / job->world,
               a.zero ? ", Adam state split across them (ZeRO-1)" : "");
    if (a.resume) printf("train: resuming from %s (step %llu)\n", latest, (unsigned long long)meta.step);
    fflush(stdout);
    Backend model;
    backend_create(&model, &backend_options, &cfg, a.micro_batch);
    DataParallel dp;
    dp_init(&dp, &model, a.zero);
    if (loaded) {
        dp_set_state(&dp, loaded, loaded_m, loaded_v);
        free(loaded), free(loaded_m), free(loaded_v);
    } else {
        float *init = xmalloc(model.num_params * sizeof(float));
        model_init_params(&cfg, init, a.seed);
        dp_set_state(&dp, init, NULL, NULL);
        free(init);
    }

    char *run_json = xasprintf("%s/run.json", a.out_dir), *log_path = xasprintf("%s/log.jsonl", a.out_dir);
    // Only rank 0 writes run files; the others' log lines go nowhere.
    if (root && !a.resume) write_run_json(run_json, &a, &cfg, oc, model.num_params);
    else if (root) truncate_log(log_path, meta.step);
    FILE *log = fopen(root ? log_path : "/dev/null", "a");
    if (!log) die("cannot write %s: %s", log_path, strerror(errno));

    DataCursor cursor;
    cursor_init(&cursor, &train, a.seed, meta.epoch, meta.epoch_pos);
    // Every rank draws the whole batch (so the data order and position are the
    // same everywhere) and trains on its share of it.
    uint16_t *batch_tokens = xmalloc((size_t)a.batch * T * sizeof(uint16_t));
    const int share = a.batch / job->world;
    const uint16_t *my_share = batch_tokens + (size_t)job->rank * share * T;
    enable_graceful_stop();
    Progress progress;
    progress_start(&progress, "train", (uint64_t)(total_steps - (int64_t)meta.step));
    const int micro_steps = share / a.micro_batch;
    const float loss_scale = 1.0f / ((float)a.batch * (float)T);
    double train_seconds = 0.0;
    int64_t step = (int64_t)meta.step;
    const int64_t first_step = step;
    char *last_checkpoint = latest ? xstrdup(latest) : NULL;

    while (step < total_steps) {
        double t0 = now_seconds();
        backend_zero_grads(&model);
        cursor_next(&cursor, batch_tokens, a.batch);
        double loss = 0.0;
        for (int micro = 0; micro < micro_steps; micro++) {
            const uint16_t *tokens = my_share + (size_t)micro * a.micro_batch * T;
            loss += backend_forward(&model, tokens, a.micro_batch) * a.micro_batch / a.batch;
            dp_backward(&dp, tokens, a.micro_batch, loss_scale, micro == micro_steps - 1);
        }
        loss = dist_sum_double(loss);
        double grad_norm = dp_finish_gradients(&dp);
        if (!isfinite(loss) || !isfinite(grad_norm))
            die("training diverged at step %lld: loss %g, gradient norm %g (lr %g). Nothing was saved from this "
                "step; the last good checkpoint is %s. Try a lower --lr or a longer --warmup.",
                (long long)step + 1, loss, grad_norm, lr_at_step(oc, step), last_checkpoint ? last_checkpoint : "none");
        double lr = lr_at_step(oc, step);
        dp_adamw(&dp, oc, step, clip_factor(oc, grad_norm));
        step++;
        double dt = now_seconds() - t0;
        train_seconds += dt;
        double tokens_per_s = (double)a.batch * T / dt;
        fprintf(log,
                "{\"step\": %lld, \"loss\": %.6f, \"bits_per_token\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, "
                "\"tokens_per_s\": %.1f, \"epoch\": %llu}\n",
                (long long)step, loss, loss / M_LN2, lr, grad_norm, tokens_per_s, (unsigned long long)cursor.epoch);
        meta.train_loss = loss;
        meta.val_loss = NAN;
        if (eval_images > 0 && (step % eval_every == 0 || step == total_steps)) {
            double v = evaluate(&model, &val, eval_images, a.micro_batch, batch_tokens);
            meta.val_loss = v;
            fprintf(log, "{\"step\": %lld, \"val_loss\": %.6f, \"val_bits_per_token\": %.6f, \"eval_images\": %lld}\n",
                    (long long)step, v, v / M_LN2, (long long)eval_images);
            if (progress.quiet || !progress.tty) {
                printf("step %lld: val loss %.4f nats/token (%.4f bits)\n", (long long)step, v, v / M_LN2);
                fflush(stdout);
            }
        }
        // A signal to any rank stops every rank after the same step.
        const int local_signal = stop_requested();
        const bool signalled = dist_sum_double(local_signal != 0) > 0;
        const bool stopping = signalled || step == a.stop_at;
        const bool probe_now = a.probe_every && step % a.probe_every == 0;
        if (step % ckpt_every == 0 || step == total_steps || stopping || probe_now) {
            meta.step = (uint64_t)step;
            meta.epoch = cursor.epoch;
            meta.epoch_pos = cursor.pos;
            free(last_checkpoint);
            last_checkpoint = checkpoint_path(a.out_dir, meta.step);
            const float *params, *adam_m, *adam_v;
            dp_get_state(&dp, &params, &adam_m, &adam_v);  // every rank: ZeRO gathers the moments
            meta.micro_batch = (uint32_t)a.micro_batch;
            if (root) checkpoint_save(last_checkpoint, &meta, params, adam_m, adam_v);
            char val_text[32] = "null";
            if (!isnan(meta.val_loss)) snprintf(val_text, sizeof val_text, "%.6f", meta.val_loss);
            fprintf(log, "{\"step\": %lld, \"checkpoint\": \"%s\", \"val_loss\": %s}\n", (long long)step,
                    strrchr(last_checkpoint, '/') + 1, val_text);
        }
        fflush(log);
        if (probe_now && !signalled && root) probe_checkpoint(&a, last_checkpoint);
        char extra[160];
        int len = snprintf(extra, sizeof extra, "loss %.4f lr %.2e |g| %.3f %.0f tok/s", loss, lr, grad_norm,
                           (double)a.batch * T * (step - first_step) / train_seconds);
        if (!isnan(meta.val_loss)) snprintf(extra + len, sizeof extra - (size_t)len, " val %.4f", meta.val_loss);
        progress_update(&progress, (uint64_t)(step - first_step), extra);
        if (stopping && step < total_steps) {
            progress_finish(&progress, extra);
            printf("train: %s after step %lld; checkpoint %s. Continue with: ./igpt train --data %s --out %s --resume\n",
                   signalled ? (local_signal == 2 ? "interrupted (SIGINT)" : "stopped by a signal") : "stopped (--stop-at)",
                   (long long)step, last_checkpoint, a.data_dir, a.out_dir);
            break;
        }
    }
    if (step == total_steps) {
        char extra[128];
        snprintf(extra, sizeof extra, "loss %.4f", meta.train_loss);
        progress_finish(&progress, extra);
        printf("train: done, %lld steps, final train loss %.4f nats/token", (long long)step, meta.train_loss);
        if (!isnan(meta.val_loss)) printf(", val loss %.4f (%.4f bits/token)", meta.val_loss, meta.val_loss / M_LN2);
        printf("; %.0f tokens/s; checkpoint %s, log %s\n",
               train_seconds > 0 ? (double)a.batch * T * (step - first_step) / train_seconds : 0.0, last_checkpoint,
               log_path);
    }
    fclose(log);
    free(batch_tokens);
    free(cursor.order);
    free(run_json);
    free(log_path);
    free(latest);
    free(last_checkpoint);
    dp_free(&dp);
    backend_free(&model);
    dataset_free(&train);
    if (has_val) dataset_free(&val);
    dist_finalize();
    return 0;
}
