// The probe stage (./igpt probe): linear probes on every layer's frozen
// features, for one checkpoint, for every checkpoint of a training run, or
// for the raw pixels. Each probed model gets OUT/probe-NNNNNNNN.json and .csv
// (the pixels: baseline-pixels.json and .csv), its features are cached in
// OUT/features-NNNNNNNN-{train,SPLIT}.bin, and a run gets the table
// OUT/probes.csv, one row per probed step.
#ifndef IGPT_PROBE_RUN_H
#define IGPT_PROBE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "model/backend.h"
#include "probe/probe.h"

typedef struct {
    const char *data_dir;    // prepared data: train.bin and <eval_split>.bin
    const char *eval_split;  // "val" or "test" (with --select val: test)
    int64_t train_images;    // training images used, evenly spaced through train.bin; 0: all
    int64_t eval_images;     // evaluation images, the same way; 0: all
    ProbeProtocol protocol;  // L2 grid, selection, iterations, seed; its threads: the CPU threads of the fits
    int batch;               // images per forward pass
    BackendOptions backend;  // where a model computes the features (not used for the pixels)
    const char *out_dir;     // results and feature cache; created if missing
    bool quiet;              // no line per fitted layer
} ProbeSettings;

void probe_pixels(const ProbeSettings *s);
// "kfold", "holdout", "val": as --select spells it, and the results record it.
const char *probe_select_name(ProbeSelect select);
void probe_checkpoint(const ProbeSettings *s, const char *checkpoint);
// Probes the randomly initialised model (step 0) and every checkpoint of
// the run not probed yet, then writes OUT/probes.csv.
void probe_run(const ProbeSettings *s, const char *run_dir);

#endif
