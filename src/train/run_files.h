// The files of a run folder besides its checkpoints (docs/formats.md):
// run.json, the settings of the run, written when it starts; log.jsonl, one
// JSON line per step, per evaluation and per checkpoint, appended as it
// goes. Only rank 0 of a job writes them.
#ifndef IGPT_RUN_FILES_H
#define IGPT_RUN_FILES_H

#include <stdint.h>
#include <stdio.h>

#include "train/plan.h"
#include "train/settings.h"

typedef struct {
    char *path;  // RUN_DIR/log.jsonl
    FILE *file;  // the log on rank 0; /dev/null on the others
} RunLog;

// A new run writes its run.json; a resumed one drops the log lines of steps
// after its checkpoint (which it is about to redo). Then the log is opened
// for appending.
void open_run_files(const TrainSettings *s, const TrainPlan *p, size_t num_params, RunLog *log);
void close_run_log(RunLog *log);

void log_step(RunLog *log, int64_t step, double loss, double lr, double grad_norm, double tokens_per_s, uint64_t epoch);
void log_evaluation(RunLog *log, int64_t step, double val_loss, int64_t eval_images);
// `checkpoint`: the file's path; the log names it without the folder.
void log_checkpoint(RunLog *log, int64_t step, const char *checkpoint, double val_loss);

// "cuda" or "cpu", and "bf16" or "fp32" (always fp32 on the CPU).
const char *run_device_name(const BackendOptions *b);
const char *run_precision_name(const BackendOptions *b);

#endif
