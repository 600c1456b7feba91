// PNG pictures (preview.h), written through stb_image_write into an
// AtomicFile so that a half-written picture never replaces a good one.
#include "data/preview.h"

#include <stdlib.h>
#include <string.h>

#include "stb/stb_image_write.h"
#include "util/util.h"

static void write_to_atomic_file(void *context, void *data, int size) {
    atomic_write((AtomicFile *)context, data, (size_t)size);
}

static void write_png_atomically(const char *path, const uint8_t *rgb, int width, int height) {
    AtomicFile af;
    atomic_open(&af, path);
    if (!stbi_write_png_to_func(write_to_atomic_file, &af, width, height, 3, rgb, width * 3))
        die("cannot encode PNG %s", path);
    atomic_commit(&af);
}

// Copies a side x side RGB tile, each pixel scaled up, into the canvas at (x0, y0).
static void blit(uint8_t *canvas, int canvas_w, int x0, int y0, const uint8_t *tile, int tile_w, int tile_h,
                 int scale) {
    for (int y = 0; y < tile_h * scale; y++)
        for (int x = 0; x < tile_w * scale; x++)
            memcpy(canvas + ((size_t)(y0 + y) * canvas_w + x0 + x) * 3,
                   tile + ((size_t)(y / scale) * tile_w + x / scale) * 3, 3);
}

void write_preview_png(const char *path, const ImageSet *originals, const TokenDataset *ds, int per_row, int max_rows,
                       int scale) {
    const int h = ds->height, w = ds->width, gap = 4, pair_gap = originals ? 1 : 0;
    const int rows = ds->num_classes < max_rows ? ds->num_classes : max_rows;
    const int cell_w = (originals ? 2 * w * scale + pair_gap : w * scale) + gap, cell_h = h * scale + gap;
    const int canvas_w = per_row * cell_w + gap, canvas_h = rows * cell_h + gap;
    uint8_t *canvas = xmalloc((size_t)canvas_w * canvas_h * 3);
    memset(canvas, 255, (size_t)canvas_w * canvas_h * 3);
    uint8_t *tile = xmalloc((size_t)h * w * 3);
    const int64_t tpi = dataset_tokens_per_image(ds);
    for (int row = 0; row < rows; row++) {
        int col = 0;
        for (int64_t i = 0; i < ds->count && col < per_row; i++) {
            if (ds->labels[i] != row) continue;
            int x0 = gap + col * cell_w, y0 = gap + row * cell_h;
            if (originals) {
                blit(canvas, canvas_w, x0, y0, originals->pixels + (size_t)i * tpi * 3, w, h, scale);
                x0 += w * scale + pair_gap;
            }
            for (int64_t p = 0; p < tpi; p++) memcpy(tile + p * 3, ds->palette.rgb + ds->tokens[i * tpi + p] * 3, 3);
            blit(canvas, canvas_w, x0, y0, tile, w, h, scale);
            col++;
        }
    }
    write_png_atomically(path, canvas, canvas_w, canvas_h);
    free(tile);
    free(canvas);
}

void write_palette_png(const char *path, const Palette *pal) {
    const int per_row = 32, square = 12;
    const int rows = (pal->colors + per_row - 1) / per_row;
    const int canvas_w = per_row * square, canvas_h = rows * square;
    uint8_t *canvas = xmalloc((size_t)canvas_w * canvas_h * 3);
    memset(canvas, 255, (size_t)canvas_w * canvas_h * 3);
    for (int c = 0; c < pal->colors; c++)
        blit(canvas, canvas_w, (c % per_row) * square, (c / per_row) * square, pal->rgb + c * 3, 1, 1, square);
    write_png_atomically(path, canvas, canvas_w, canvas_h);
    free(canvas);
}
