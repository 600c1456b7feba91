// The training stage of ./igpt train: next-pixel pretraining of the model on
// a prepared split (docs/model.md), on the CPU or a GPU, in one process or
// several (docs/multi-gpu.md), with evaluation, checkpoints, resume and
// probes along the way. src/cli/cmd_train.c fills TrainSettings from the
// command line; train_run does the rest.
#ifndef IGPT_TRAIN_H
#define IGPT_TRAIN_H

#include "cli/cli.h"
#include "train/settings.h"

// Trains (or resumes) the run that `s` describes; dies with a message on bad
// data or a run that cannot go on. `parsed` is what cli_parse found when it
// filled `s`: which options the command line gave, since a resumed run keeps
// its settings and refuses an option given again with another value.
// Returns the exit status: 0 when the run is done or stopped at --stop-at;
// 128 + the signal's number when SIGINT (130), SIGTERM (143) or SIGHUP (129)
// stopped it after a checkpoint, the same on every process of the job.
int train_run(const TrainSettings *s, const ParsedArgs *parsed);

#endif
