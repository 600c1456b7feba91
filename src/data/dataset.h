// Prepared pixel-token datasets: one file per split (train.bin, val.bin,
// test.bin) holding the palette, the labels and every image as uint16 color
// ids in raster order. Byte layout in docs/formats.md.
#ifndef IGPT_DATASET_H
#define IGPT_DATASET_H

#include <stdint.h>

#include "data/images.h"
#include "data/palette.h"

#define IGPT_DATASET_MAGIC "IGPTDATA"
#define IGPT_DATASET_VERSION 1u
#define IGPT_DATASET_FIXED_HEADER_BYTES 64

typedef struct {
    int64_t count;
    int height, width;
    int num_classes;
    ClassName *class_names;
    Palette palette;
    uint16_t *labels;  // count
    uint16_t *tokens;  // count x height x width, image i at tokens + i*height*width
} TokenDataset;

// Quantizes `images` with `palette` into a new dataset; returns the summed
// squared quantization error (see palette_quantize).
uint64_t dataset_from_images(const ImageSet *images, const Palette *palette, int threads, TokenDataset *out);
// Writes atomically (temporary file, fsync, rename).
void dataset_write(const char *path, const TokenDataset *ds);
// Reads and checks everything (magic, version, sizes, CRCs, label and token
// ranges); dies with a message naming the file and the problem.
void dataset_read(const char *path, TokenDataset *ds);
void dataset_free(TokenDataset *ds);
// The palette of a palette file or of a prepared split, so that any split
// can seed another.
void palette_from_file(const char *path, Palette *pal);
int64_t dataset_tokens_per_image(const TokenDataset *ds);
// Indices of `count` images spread evenly through a split of n images, the
// same every time (prepared splits are often in class order, so the first
// images would all be of one class).
void evenly_spaced(int64_t n, int64_t count, int64_t *indices);

#endif
