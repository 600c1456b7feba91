// The prepare stage (./igpt prepare): a dataset -> a k-means color palette
// fitted on the training images -> one prepared token file per split, with
// a preview, the palette as an image, and a summary (prepare.json).
#ifndef IGPT_PREPARE_H
#define IGPT_PREPARE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    // The source, exactly one of: the official CIFAR-10 binary batches, or
    // an image folder (DIR/<class>/..., or DIR/train/<class>/... and DIR/test/<class>/...).
    const char *cifar_dir;
    const char *images_dir;
    const char *out_dir;       // created if missing
    const char *split;         // "train", "test" or "all" (every split the source has)
    const char *palette_path;  // reuse this palette (palette.bin or a prepared split); NULL: fit one
    int colors;                // palette size to fit; with palette_path: 0, or the size it must have
    int resolution;            // images are resized to resolution x resolution
    int64_t val;               // images held out from train for validation; < 0: 10% of train
    uint64_t seed;             // of the validation split and k-means
    int64_t kmeans_sample;     // training pixels sampled for k-means (0: all)
    int kmeans_iters;          // maximum Lloyd iterations
    int threads;               // 0: all cores
    bool force;                // overwrite existing outputs
    bool preview;              // write the preview (and palette.png when fitting)
} PrepareSettings;

// Runs the whole stage, prints a summary table; dies with the reason on any
// bad input, before writing anything where it can (existing outputs, an
// unwritable folder, a bad palette, a missing split).
void prepare_run(const PrepareSettings *s);

#endif
