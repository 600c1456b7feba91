// The model as a lossless compressor of prepared images (./igpt compress,
// ./igpt decompress): each pixel is range-coded (compress/range_coder.h) with
// the model's distribution of it given the pixels before, from the
// backend's incremental decoding (model/backend.h), so a pixel costs about
// -log2 p(pixel) bits and a file about the model's cross-entropy on its
// images. Labels are coded uniformly over the classes. The file is .igpz
// (compress/igpz.h).
#ifndef IGPT_COMPRESS_H
#define IGPT_COMPRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "compress/igpz.h"
#include "data/dataset.h"
#include "model/backend.h"

// A model loaded from a checkpoint, with its decode cache, ready to code.
typedef struct {
    Backend backend;
    IgpzHeader header;  // the model's side of a file's header: config, params CRC, step, device, precision, GPU
    const char *checkpoint;
    uint32_t palette_crc;  // of the palette the model was trained with (0: not recorded)
    int threads;           // CPU threads of the frequency tables
    int decode_group;      // sequences of the decode cache (made by the first group coded)
} CodingModel;

// Loads `checkpoint` onto the device of `opt`.
void coding_model_open(CodingModel *m, const char *checkpoint, const BackendOptions *opt);
void coding_model_close(CodingModel *m);

typedef struct {
    int64_t images, pixels;
    uint64_t bytes;         // the whole file
    uint64_t header_bytes;  // of which the header and the groups' 12-byte headers
    double pixel_bits;      // sum of -log2 p(pixel) under the distributions coded (exact, in double)
    double label_bits;      // log2(classes) per image
    double seconds;
} CompressStats;

// Compresses images idx[0 .. n) of ds into `out_path` (written atomically) in
// groups of `group` images.
void compress_images(CodingModel *m, const TokenDataset *ds, const char *data_path, const int64_t *idx, int64_t n,
                     int group, const char *out_path, CompressStats *stats);

// Dies, naming both sides, when the file was not written by this model on
// this device: another configuration, parameter CRC, palette (than the model
// was trained with), device, precision or GPU.
void check_file_matches_model(const char *path, const IgpzHeader *file, const CodingModel *m);
// Decodes every group of f into out (tokens, labels, palette, class names),
// checking each group's CRC of what it decoded.
void decompress_images(CodingModel *m, const IgpzFile *f, const char *path, TokenDataset *out);

#endif
