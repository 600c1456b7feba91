// The training stage of ./igpt train: next-pixel pretraining of the model on
// a prepared split (docs/model.md), on the CPU or a GPU, in one process or
// several (docs/multi-gpu.md), with evaluation, checkpoints, resume and
// probes along the way. src/cli/cmd_train.c fills TrainSettings from the
// command line; train_run does the rest.
#ifndef IGPT_TRAIN_H
#define IGPT_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "cli/cli.h"
#include "model/backend.h"
#include "train/optim.h"

typedef struct {
    const char *data_dir;      // a folder written by ./igpt prepare (train.bin, val.bin)
    const char *out_dir;       // the run's folder: run.json, log.jsonl, checkpoints
    const char *command_line;  // recorded in run.json
    // The model: a named config (model_config_named), with overrides (0: the config's).
    const char *config_name;
    int d_model, n_layer, n_head;
    const char *norm;  // "igpt" or "layernorm"
    // Training: its length (steps, or epochs over train.bin; 0: not given), batch and optimizer.
    int64_t steps, epochs;
    int batch;          // images per optimizer step, over all processes
    int micro_batch;    // images per forward/backward pass of one process
    OptimConfig optim;  // total_steps is planned here; warmup_steps -1: 5% of the steps
    uint64_t seed;      // of initialisation and data order
    // Evaluation and checkpoints: every N steps (0: 10 times per run, or as the resumed run did).
    int64_t eval_every, checkpoint_every;
    int64_t eval_images;                            // validation images per evaluation (0: all)
    int64_t stop_at;                                // checkpoint and stop after this step (0: never)
    bool resume;                                    // continue the run in out_dir from its latest checkpoint
    int64_t probe_every;                            // run ./igpt probe on a checkpoint every N steps (0: never) ...
    int64_t probe_train_images, probe_eval_images;  // ... with these limits (0: probe's own)
    BackendOptions backend;
    bool quiet;  // no progress bar
} TrainSettings;

// Trains (or resumes) the run that `s` describes; dies with a message on bad
// data or a run that cannot go on. `parsed` is what cli_parse found when it
// filled `s`: which options the command line gave, since a resumed run keeps
// its settings and refuses an option given again with another value.
void train_run(const TrainSettings *s, const ParsedArgs *parsed);

#endif
