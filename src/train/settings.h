// What a training run is asked to do: ./igpt train's options, filled by
// src/cli/cmd_train.c and read by the training stage (train.c, plan.c,
// run_files.c).
#ifndef IGPT_TRAIN_SETTINGS_H
#define IGPT_TRAIN_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

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
    int64_t keep_last;                              // keep only the newest N checkpoints (0: all)
    bool resume;                                    // continue the run in out_dir from its latest checkpoint
    int64_t probe_every;                            // run ./igpt probe on a checkpoint every N steps (0: never) ...
    int64_t probe_train_images, probe_eval_images;  // ... with these limits (0: probe's own)
    BackendOptions backend;
    bool quiet;  // no progress bar
} TrainSettings;

#endif
