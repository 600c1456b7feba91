// PNG pictures for a person to look at: image grids and palette swatches.
#ifndef IGPT_PREVIEW_H
#define IGPT_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/images.h"

// A grid with one row per class (up to max_rows) and `per_row` examples per
// row, the first images of each class in file order, each row starting with
// its class name (preview_class_label) in a column preview_label_width wide. With `originals` each
// example shows the original (left) beside its palette-quantized version
// (right); `originals` must hold the same images as `ds`, or be NULL.
// Every pixel is drawn as a scale x scale square. Written atomically.
void write_preview_png(const char *path, const ImageSet *originals, const TokenDataset *ds, int per_row, int max_rows,
                       int scale);
// What a row is labelled with: the class name (at most 24 characters), or the
// label id as a number when the file has no name for it.
void preview_class_label(const TokenDataset *ds, int label, char *out, size_t size);
// The width of the label column, in canvas pixels, of write_preview_png with
// these arguments.
int preview_label_width(const TokenDataset *ds, int max_rows, int scale);
// Text in stb_easy_font's bitmap letters, each font pixel text_scale x
// text_scale: its font pixel size for images image_h canvas pixels tall, its
// width, and drawing it black with its top-left corner at (x0, y0).
int preview_text_scale(int image_h);
int preview_text_width(const char *text, int text_scale);
void preview_draw_text(uint8_t *canvas, int canvas_w, int canvas_h, int x0, int y0, const char *text, int text_scale);
// A grid of token images (each H x W color ids) drawn through a palette:
// `rows` x `cols` tiles, tile i at row i / cols, column i % cols (NULL: left
// white), every pixel a scale x scale square, tiles `scale` canvas pixels
// apart. shown_rows (NULL: all) gives per tile how many of its image rows are
// drawn; the rest is gray, as the hidden half of an image to complete.
// Written atomically.
void write_token_grid_png(const char *path, const Palette *pal, int H, int W, const uint16_t *const *tiles,
                          const int *shown_rows, int rows, int cols, int scale);
// The palette as a grid of color squares, 32 per row, in palette order.
void write_palette_png(const char *path, const Palette *pal);

#endif
