// Labelled RGB images in memory, and the two readers that fill them:
// the official CIFAR-10 binary batches and folders of image files.
#ifndef IGPT_IMAGES_H
#define IGPT_IMAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "data/decode.h"

#define IGPT_CLASS_NAME_BYTES 64  // a class name is at most 63 bytes
#define IGPT_MAX_CLASSES 65535    // labels are uint16
#define IGPT_MIN_RESOLUTION 2
#define IGPT_MAX_RESOLUTION 256
// IMAGE_MAX_SIDE, the largest image side the image-folder reader decodes, is in decode.h.

typedef char ClassName[IGPT_CLASS_NAME_BYTES];

// `count` images of height x width RGB pixels, row-major, channels
// interleaved: pixel (i, y, x) channel c is pixels[((i*height + y)*width + x)*3 + c].
typedef struct {
    int64_t count;
    int height, width;
    uint8_t *pixels;
    uint16_t *labels;  // in [0, num_classes)
    int num_classes;
    ClassName *class_names;  // label id -> name
} ImageSet;

void imageset_alloc(ImageSet *set, int64_t count, int height, int width, int num_classes);
void imageset_free(ImageSet *set);
// Copies the images whose mask entry equals `keep` into `dst` (same order).
void imageset_select(const ImageSet *src, const uint8_t *mask, uint8_t keep, ImageSet *dst);
// Per-class image counts, `counts` has num_classes entries.
void imageset_class_counts(const ImageSet *set, int64_t *counts);

// Seeded, class-stratified hold-out: marks exactly `val_count` images with
// is_val[i] = 1, each class contributing in proportion to its size (largest
// remainders get the rounding), never a class's last image.
void stratified_split(const uint16_t *labels, int64_t count, int num_classes, int64_t val_count, uint64_t seed,
                      uint8_t *is_val);

// Resizes an RGB image with an area (box) filter: each output pixel is the
// average of the input area it covers, exact for integer downscale ratios.
void resize_rgb_area(const uint8_t *src, int src_w, int src_h, uint8_t *dst, int dst_w, int dst_h);

// --- CIFAR-10 binary version -------------------------------------------------
// Records of 3073 bytes: label (0..9), then 1024 R, 1024 G, 1024 B bytes of a
// 32x32 image in row-major order. train = data_batch_1..5.bin, test = test_batch.bin.
#define CIFAR10_SIDE 32
#define CIFAR10_RECORD_BYTES (1 + 3 * CIFAR10_SIDE * CIFAR10_SIDE)
#define CIFAR10_CLASSES 10

// Returns the folder that holds the batch files: `dir` itself or
// `dir`/cifar-10-batches-bin. Dies with a clear message if neither does.
char *cifar10_locate(const char *dir);
bool cifar10_has_split(const char *batch_dir, const char *split);
// Reads one split ("train" or "test"), resized to resolution x resolution.
void cifar10_load(const char *batch_dir, const char *split, int resolution, ImageSet *out);

// --- Image folders ------------------------------------------------------------
// ROOT/<class>/<image files>; classes sorted by name give label ids. A root
// that holds train/ and test/ class trees has those as splits, otherwise the
// root itself is the train split.
typedef struct {
    int64_t skipped_files;  // files without an image extension (README, .DS_Store, ...)
} FolderStats;

// Returns the class-tree folder of `split` under `root`, or NULL if the root
// has no such split. A root without train/ and test/ is its own "train" split.
char *imagefolder_split_dir(const char *root, const char *split);
void imagefolder_load(const char *class_root, int resolution, int threads, ImageSet *out, FolderStats *stats);

#endif
