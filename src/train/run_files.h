// The files of a run folder besides its checkpoints (docs/formats.md):
// run.json, the settings of the run, written when it starts; log.jsonl, one
// JSON line per step, per evaluation and per checkpoint, appended as it
// goes. Only rank 0 of a job writes them. Also the run folder's upkeep:
// its lock, leftovers of an interrupted write, a folder a failed start
// created, and the rotation of old checkpoints (--keep-last).
#ifndef IGPT_RUN_FILES_H
#define IGPT_RUN_FILES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "train/plan.h"
#include "train/settings.h"

typedef struct {
    char *path;  // RUN_DIR/log.jsonl
    FILE *file;  // the log on rank 0; /dev/null on the others
} RunLog;

// A new run writes its run.json and starts an empty log; a resumed one drops
// the log lines of steps after its checkpoint (which it is about to redo),
// and a torn last line. Then the log is opened for appending.
void open_run_files(const TrainSettings *s, const TrainPlan *p, size_t num_params, RunLog *log);
void close_run_log(RunLog *log);

void log_step(RunLog *log, int64_t step, double loss, double lr, double grad_norm, double tokens_per_s, uint64_t epoch);
void log_evaluation(RunLog *log, int64_t step, double val_loss, int64_t eval_images);
// `checkpoint`: the file's path; the log names it without the folder.
void log_checkpoint(RunLog *log, int64_t step, const char *checkpoint, double val_loss);

// --- The run folder's upkeep (rank 0) ---

// Call before planning: remembers which of run_dir and its parents do not
// exist yet. Until run_folder_keep(), a failed exit (die) removes what this
// command made there: run.json, log.jsonl and the folders it created, if
// they are then empty. A folder the user had is never removed.
void run_folder_watch(const char *run_dir);
// The run has a checkpoint: from now on its folder is kept whatever happens.
void run_folder_keep(void);

// One ./igpt train per run folder: an advisory lock on the folder itself,
// held until the process ends (a kill -9 releases it too). Dies if another
// process holds it.
void lock_run_folder(const char *run_dir);

// Removes the temporary files of atomic writes that a killed run left in
// run_dir ("<checkpoint-N.bin|log.jsonl|run.json>.tmp.XXXXXX", see
// atomic_open) and names them in one line; nothing else is touched. Call
// holding the lock. Returns how many were removed.
int remove_leftover_temps(const char *run_dir);
// True for exactly the names remove_leftover_temps removes.
bool is_leftover_temp_name(const char *name);

// --keep-last N: deletes all but the newest `keep` checkpoints of run_dir,
// except one whose probe is still to be done (every `probe_every` steps and
// no RUN_DIR/probe/probe-N.csv yet), which `./igpt probe --run` needs.
// Returns how many were deleted.
int rotate_checkpoints(const char *run_dir, int64_t keep, int64_t probe_every);

// "cuda" or "cpu", and "bf16" or "fp32" (always fp32 on the CPU).
const char *run_device_name(const BackendOptions *b);
const char *run_precision_name(const BackendOptions *b);

#endif
