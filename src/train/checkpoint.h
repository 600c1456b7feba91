// Training checkpoints (docs/formats.md): model config, optimizer settings,
// step, data position, parameters and Adam moments, with CRCs. Written
// atomically; readers refuse anything inconsistent with a clear message.
#ifndef IGPT_CHECKPOINT_H
#define IGPT_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "model/config.h"
#include "train/optim.h"

#define IGPT_CHECKPOINT_MAGIC "IGPTCKPT"
#define IGPT_CHECKPOINT_VERSION 1u
#define IGPT_CHECKPOINT_HEADER_BYTES 256

typedef struct {
    ModelConfig model;
    OptimConfig optim;
    uint64_t num_params;
    uint64_t step;         // optimizer steps completed
    uint64_t epoch;        // data position: epoch of the next image ...
    uint64_t epoch_pos;    // ... and its index in that epoch's shuffled order
    uint64_t seed;         // of initialisation and shuffling
    uint32_t batch;        // images per optimizer step
    uint32_t micro_batch;  // images per forward/backward pass
    uint64_t data_count;   // training images, and the CRC of the training file's payload,
    uint32_t data_crc;     // so that a run resumes only on the data it started with
    uint32_t palette_crc;  // of the data's palette (palette_crc); 0 in checkpoints from before it was kept
    double train_loss;     // mean loss of the last step (nats/token)
    double val_loss;       // validation loss at this step, NaN if not evaluated
    // Run settings that do not change the math, kept so that --resume needs no flags.
    uint64_t eval_every, eval_images, checkpoint_every;
} CheckpointMeta;

// params, adam_m, adam_v: meta->num_params floats each.
void checkpoint_save(const char *path, const CheckpointMeta *meta, const float *params, const float *adam_m,
                     const float *adam_v);
// Reads and checks the header only.
void checkpoint_read_meta(const char *path, CheckpointMeta *meta);
// Reads and checks everything; buffers are allocated (free them).
void checkpoint_load(const char *path, CheckpointMeta *meta, float **params, float **adam_m, float **adam_v);
// The parameters only (allocated), for the commands that use a model without
// training it (probe, sample, compress, export): Adam's moments are read
// through the CRC check in pieces and dropped, so a model needs its own size
// in memory, not three times it.
void checkpoint_load_params(const char *path, CheckpointMeta *meta, float **params);
// Path of the checkpoint with the most steps in run_dir (checkpoint-NNNNNNNN.bin),
// or NULL if there is none. Only names are compared; nothing is read.
char *checkpoint_latest(const char *run_dir);
// Steps of every checkpoint in run_dir, ascending (allocated; free it); -1
// when run_dir cannot be read.
int64_t checkpoint_steps(const char *run_dir, uint64_t **steps);
char *checkpoint_path(const char *run_dir, uint64_t step);
// Whether the first n chars of `name` are a checkpoint's file name as
// checkpoint_path writes it ("checkpoint-" + 8 or more digits + ".bin"), and
// its step; a step too large for a long long is not one igpt wrote.
bool checkpoint_name_step(const char *name, size_t n, long long *step);
// Dies unless `data` (read from data_path) holds what the model of
// `model_path` reads: its number of colors and image size, and the palette it
// was trained with (palette_crc; 0: not recorded, not checked) — tokens of
// another palette of the same size would be read without an error and mean
// nothing. `remedy` ends the palette message: what it means here and what to do.
void check_model_fits_data(const char *model_path, const ModelConfig *model, uint32_t palette_crc_of_model,
                           const TokenDataset *data, const char *data_path, const char *remedy);
// The first non-finite value of a checkpoint's state (parameters, then Adam's
// first and second moments), described into `where` by its tensor in the
// parameter layout, e.g. "parameter h0.w_qkv[5] is nan (value 1234 of 5000)";
// false when every value is finite. checkpoint_save refuses to write such a
// state (the run diverged) and ./igpt info refuses to pass such a file.
bool checkpoint_find_non_finite(const CheckpointMeta *meta, const float *params, const float *adam_m,
                                const float *adam_v, char *where, size_t cap);

#endif
