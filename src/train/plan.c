// Planning a run (plan.h). A resumed run is its checkpoint: the model,
// optimizer, batch, seed and data come from there, and an option given again
// with another value is refused instead of silently changing the run. What
// may change on --resume: the length (--steps/--epochs), the evaluation and
// checkpoint cadence, the device and the number of processes.
#include "train/plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "data/palette.h"
#include "model/config.h"
#include "model/params.h"
#include "parallel/dist.h"
#include "util/util.h"

// --- The data ---------------------------------------------------------------------

// A split is absent only when nothing is at its path: a folder, a FIFO, a
// dangling link or an unreadable file named val.bin is an error
// (dataset_read says which), never a run without validation.
static void load_split(const char *dir, const char *name, TokenDataset *ds, bool required, bool *present) {
    char *path = xasprintf("%s/%s.bin", dir, name);
    struct stat st;
    *present = lstat(path, &st) == 0;
    if (!*present && required) die("%s: no such file; prepare the data with ./igpt prepare --out %s", path, dir);
    if (*present) dataset_read(path, ds);
    free(path);
}

// train.bin and, when there, val.bin; returns the CRC of train.bin's tokens,
// which a checkpoint records so that a run resumes only on its own data.
static uint32_t load_data(const char *data_dir, TrainPlan *p) {
    bool has_train;
    if (!is_directory(data_dir)) die("--data %s: no such folder", data_dir);
    load_split(data_dir, "train", &p->train, true, &has_train);
    load_split(data_dir, "val", &p->val, false, &p->has_val);
    const Palette *train_palette = &p->train.palette, *val_palette = &p->val.palette;
    if (p->has_val && (val_palette->colors != train_palette->colors ||
                       memcmp(val_palette->rgb, train_palette->rgb, (size_t)train_palette->colors * 3) != 0 ||
                       palette_crc(val_palette) != palette_crc(train_palette) ||  // exact centers (imported)
                       p->val.height != p->train.height || p->val.width != p->train.width))
        die("%s: val.bin and train.bin were prepared with different palettes or sizes", data_dir);
    const size_t tokens = (size_t)(p->train.count * dataset_tokens_per_image(&p->train));
    return crc32_update(0, p->train.tokens, tokens * sizeof(uint16_t));
}

// The named config with the overrides; the colors and the image size come from the data.
static ModelConfig model_config_from(const TrainSettings *s, const TokenDataset *train) {
    ModelConfig cfg = {.vocab_size = train->palette.colors,
                       .seq_len = train->height * train->width,
                       .image_height = train->height,
                       .image_width = train->width,
                       .norm = strcmp(s->norm, "layernorm") ? NORM_IGPT : NORM_LAYERNORM};
    if (!model_config_named(s->config_name, &cfg)) die("unknown --config '%s' (tiny, xs, s, m, l)", s->config_name);
    if (s->d_model) cfg.d_model = s->d_model;
    if (s->n_layer) cfg.n_layer = s->n_layer;
    if (s->n_head) cfg.n_head = s->n_head;
    model_config_validate(&cfg);
    return cfg;
}

// Steps of --steps, or of --epochs passes over the training images.
static int64_t planned_steps(const TrainSettings *s, int64_t images, int64_t batch) {
    return s->steps ? s->steps : s->epochs * ((images + batch - 1) / batch);
}

// --- A new run ----------------------------------------------------------------------

static void plan_new_run(const TrainSettings *s, const ModelConfig *cfg, uint32_t data_crc, const char *latest,
                         TrainPlan *p) {
    if (latest)
        die("%s already holds a run (%s); pass --resume to continue it, or choose another --out", s->out_dir, latest);
    if (dist_is_root()) make_directories(s->out_dir);
    OptimConfig oc = s->optim;
    oc.total_steps = planned_steps(s, p->train.count, s->batch);
    if (oc.warmup_steps < 0) oc.warmup_steps = oc.total_steps / 20 > 0 ? oc.total_steps / 20 : 1;
    if (oc.warmup_steps > oc.total_steps) oc.warmup_steps = oc.total_steps;
    p->optim = oc;
    p->run = (CheckpointMeta){.model = *cfg,
                              .optim = oc,
                              .num_params = param_count(cfg),
                              .seed = s->seed,
                              .batch = (uint32_t)s->batch,
                              .micro_batch = (uint32_t)s->micro_batch,
                              .data_count = (uint64_t)p->train.count,
                              .data_crc = data_crc,
                              .palette_crc = palette_crc(&p->train.palette),
                              .val_loss = NAN};
}

// --- A resumed run --------------------------------------------------------------------

// The model in the checkpoint is the run's; a model asked for on the command line must be the same.
static void check_resumed_model(const TrainSettings *s, const ParsedArgs *parsed, const ModelConfig *asked,
                                const ModelConfig *c, const char *checkpoint) {
    const void *model_options[] = {&s->config_name, &s->d_model, &s->n_layer, &s->n_head, &s->norm};
    bool asked_for_a_model = false;
    for (int i = 0; i < COUNT_OF(model_options); i++) asked_for_a_model |= cli_given(parsed, model_options[i]);
    if (asked_for_a_model && (c->d_model != asked->d_model || c->n_layer != asked->n_layer ||
                              c->n_head != asked->n_head || c->norm != asked->norm))
        die("%s is a model with d_model %d, n_layer %d, n_head %d, %s norm; you asked for %d, %d, %d, %s", checkpoint,
            c->d_model, c->n_layer, c->n_head, norm_kind_name(c->norm), asked->d_model, asked->n_layer, asked->n_head,
            norm_kind_name(asked->norm));
}

// A resumed run keeps its settings: an option given again with another value is an error.
static void check_kept_settings(const TrainSettings *s, const ParsedArgs *parsed, const CheckpointMeta *run) {
    const OptimConfig *oc = &s->optim, *stored = &run->optim;
    const struct {
        const void *field;
        double value, stored;
    } kept[] = {
        {&oc->lr, oc->lr, stored->lr},
        {&oc->min_lr_frac, oc->min_lr_frac, stored->min_lr_frac},
        {&oc->warmup_steps, (double)oc->warmup_steps, (double)stored->warmup_steps},
        {&oc->weight_decay, oc->weight_decay, stored->weight_decay},
        {&oc->beta2, oc->beta2, stored->beta2},
        {&oc->grad_clip, oc->grad_clip, stored->grad_clip},
        {&s->batch, s->batch, run->batch},
        {&s->micro_batch, s->micro_batch, run->micro_batch},
        {&s->seed, (double)s->seed, (double)run->seed},
    };
    for (int i = 0; i < COUNT_OF(kept); i++)
        if (cli_given(parsed, kept[i].field) && kept[i].value != kept[i].stored)
            die("--%s %g differs from the run's %g: a resumed run keeps its settings (start a new --out to change "
                "them)",
                cli_option_name(parsed, kept[i].field), kept[i].value, kept[i].stored);
}

// The run's batch over this job's processes (which may be more or fewer than
// before): each takes an equal share, in whole micro-batches.
static void split_resumed_batch(const TrainSettings *s, const ParsedArgs *parsed, CheckpointMeta *run) {
    const int world = dist_get()->world;
    const int batch = (int)run->batch;
    if (batch % world != 0) die("the run's batch of %d images cannot be split over %d processes", batch, world);
    int micro_batch = (int)run->micro_batch;
    if (!cli_given(parsed, &s->micro_batch) && (batch / world) % micro_batch != 0)
        micro_batch = batch / world;  // another process count: each takes its whole share at once
    if ((batch / world) % micro_batch != 0)
        die("each process's share of the run's batch (%d / %d processes) is not a multiple of --micro-batch %d", batch,
            world, micro_batch);
    run->micro_batch = (uint32_t)micro_batch;
}

static void plan_resumed_run(const TrainSettings *s, const ParsedArgs *parsed, const ModelConfig *asked,
                             uint32_t data_crc, const char *latest, TrainPlan *p) {
    if (!latest) die("--resume: %s holds no checkpoint to resume from", s->out_dir);
    CheckpointMeta *run = &p->run;
    checkpoint_load(latest, run, &p->params, &p->adam_m, &p->adam_v);
    p->resumed_from = xstrdup(latest);
    if (run->batch == 0)  // ./igpt import records no batch: the weights were trained elsewhere
        die("%s holds imported weights (./igpt import), not a training run to resume: igpt does not fine-tune them",
            latest);
    const ModelConfig *c = &run->model;
    check_resumed_model(s, parsed, asked, c, latest);
    if (c->vocab_size != asked->vocab_size || c->seq_len != asked->seq_len)
        die("%s was trained on %d colors at %dx%d, but %s has %d colors at %dx%d", latest, c->vocab_size,
            c->image_height, c->image_width, s->data_dir, asked->vocab_size, asked->image_height, asked->image_width);
    if (run->data_count != (uint64_t)p->train.count || run->data_crc != data_crc)
        die("%s was trained on other data than %s/train.bin (image count or content differs)", latest, s->data_dir);
    // The same tokens with other colors are other images. Checkpoints from before the palette was
    // recorded (0) take the data's from here on.
    const uint32_t data_palette = palette_crc(&p->train.palette);
    if (run->palette_crc != 0 && run->palette_crc != data_palette)
        die("%s was trained with another palette than %s/train.bin's (its colors differ)", latest, s->data_dir);
    run->palette_crc = data_palette;
    check_kept_settings(s, parsed, run);
    p->optim = run->optim;
    if (s->steps || s->epochs) {
        p->optim.total_steps = planned_steps(s, p->train.count, run->batch);
        if (p->optim.total_steps != run->optim.total_steps)
            warn("the run was planned for %lld steps, now %lld: the learning-rate schedule changes from here on",
                 (long long)run->optim.total_steps, (long long)p->optim.total_steps);
    }
    split_resumed_batch(s, parsed, run);
    if (run->step >= (uint64_t)p->optim.total_steps)
        die("%s is at step %llu: the run's %lld steps are done", latest, (unsigned long long)run->step,
            (long long)p->optim.total_steps);
}

// --- Both -------------------------------------------------------------------------------

// How often to evaluate and checkpoint: as given, else as the resumed run
// did, else 10 times per run; and how many validation images to use.
static void plan_cadence(const TrainSettings *s, const ParsedArgs *parsed, TrainPlan *p) {
    CheckpointMeta *run = &p->run;
    const int64_t total_steps = p->optim.total_steps;
    const int64_t tenth = total_steps / 10 > 0 ? total_steps / 10 : 1;
    if (s->eval_every) run->eval_every = (uint64_t)s->eval_every;
    else if (!run->eval_every) run->eval_every = (uint64_t)tenth;
    if (s->checkpoint_every) run->checkpoint_every = (uint64_t)s->checkpoint_every;
    else if (!run->checkpoint_every) run->checkpoint_every = (uint64_t)tenth;
    if (!s->resume || cli_given(parsed, &s->eval_images)) run->eval_images = (uint64_t)s->eval_images;
    const int64_t wanted = (int64_t)run->eval_images;
    const int64_t val_count = p->has_val ? p->val.count : 0;
    p->eval_images = wanted == 0 || wanted > val_count ? val_count : wanted;
}

void plan_training(const TrainSettings *s, const ParsedArgs *parsed, TrainPlan *p) {
    memset(p, 0, sizeof *p);
    const uint32_t data_crc = load_data(s->data_dir, p);
    const ModelConfig cfg = model_config_from(s, &p->train);
    char *latest = checkpoint_latest(s->out_dir);
    if (s->resume) plan_resumed_run(s, parsed, &cfg, data_crc, latest, p);
    else plan_new_run(s, &cfg, data_crc, latest, p);
    free(latest);
    plan_cadence(s, parsed, p);
}

void plan_free(TrainPlan *p) {
    dataset_free(&p->train);
    if (p->has_val) dataset_free(&p->val);
    free(p->resumed_from);
    free(p->params);
    free(p->adam_m);
    free(p->adam_v);
    memset(p, 0, sizeof *p);
}
