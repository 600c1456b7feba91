// Before the first step of a training run: the data, and what the run is. A
// new run is planned from the settings; a resumed run is read back from its
// latest checkpoint and keeps its settings.
#ifndef IGPT_TRAIN_PLAN_H
#define IGPT_TRAIN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "cli/cli.h"
#include "data/dataset.h"
#include "train/checkpoint.h"
#include "train/settings.h"

typedef struct {
    TokenDataset train, val;
    bool has_val;  // val.bin is there (else no evaluation)
    // The run as its checkpoints record it: model, optimizer, batch and
    // micro-batch, seed, data, cadence, and the step and data position the
    // loop starts from.
    CheckpointMeta run;
    // The optimizer as this invocation runs it: the run's, with the total
    // steps of --steps or --epochs when a resumed run is given them
    // (checkpoints keep recording the total the run was planned with).
    OptimConfig optim;
    int64_t eval_images;  // per evaluation: the run's count, at most val.bin's (0 without val.bin)
    // A resumed run: the checkpoint, and its parameters and Adam moments
    // (all NULL for a new run).
    char *resumed_from;
    float *params, *adam_m, *adam_v;
} TrainPlan;

// Loads the data and plans a new run or reads back the resumed one; dies
// with the reason when the data or the run folder does not fit the settings.
void plan_training(const TrainSettings *s, const ParsedArgs *parsed, TrainPlan *p);
// Frees what plan_training allocated; the loaded state (params, adam_m,
// adam_v) may have been freed and set to NULL already.
void plan_free(TrainPlan *p);

#endif
