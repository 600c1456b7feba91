// PNG pictures for a person to look at: image grids and palette swatches.
#ifndef IGPT_PREVIEW_H
#define IGPT_PREVIEW_H

#include "data/dataset.h"
#include "data/images.h"

// A grid with one row per class (up to max_rows) and `per_row` examples per
// row, the first images of each class in file order. With `originals` each
// example shows the original (left) beside its palette-quantized version
// (right); `originals` must hold the same images as `ds`, or be NULL.
// Every pixel is drawn as a scale x scale square. Written atomically.
void write_preview_png(const char *path, const ImageSet *originals, const TokenDataset *ds, int per_row, int max_rows,
                       int scale);
// The palette as a grid of color squares, 32 per row, in palette order.
void write_palette_png(const char *path, const Palette *pal);

#endif
