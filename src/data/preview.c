// PNG pictures (preview.h), written through stb_image_write into an
// AtomicFile so that a half-written picture never replaces a good one.
#include "data/preview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/stb_impl.h"
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

// --- Class names -----------------------------------------------------------------------

// stb_easy_font's letters are 7 font pixels tall above the baseline (descenders
// reach 2 below); each font pixel is drawn as text_scale x text_scale.
#define LABEL_GLYPH_HEIGHT 9
#define LABEL_MAX_CHARS 24

// What a row is labelled with: the class name, or its label id when the file
// has no name for it; cut to LABEL_MAX_CHARS so that one long folder name does
// not widen the picture without end.
void preview_class_label(const TokenDataset *ds, int label, char *out, size_t size) {
    const char *name = ds->class_names ? ds->class_names[label] : "";
    if (name[0]) snprintf(out, size, "%.*s", LABEL_MAX_CHARS, name);
    else snprintf(out, size, "%d", label);
}

// The font pixel size that suits images drawn `image_h` canvas pixels tall:
// about half their height, 1 to 3.
int preview_text_scale(int image_h) {
    const int text_scale = image_h / (2 * LABEL_GLYPH_HEIGHT);
    return text_scale < 1 ? 1 : text_scale > 3 ? 3 : text_scale;
}

int preview_text_width(const char *text, int text_scale) { return easy_font_width(text) * text_scale; }

// Draws `text` in black with its top-left corner at (x0, y0). stb_easy_font
// builds every letter from axis-aligned rectangles (it is meant for 3D APIs);
// each is filled here, font pixel by font pixel, clipped to the canvas.
void preview_draw_text(uint8_t *canvas, int canvas_w, int canvas_h, int x0, int y0, const char *text, int text_scale) {
    const int max_rects = 64 * ((int)strlen(text) + 1);
    float *rects = xmalloc((size_t)max_rects * 4 * sizeof(float));
    const int n = easy_font_rectangles(text, rects, max_rects);
    for (int r = 0; r < n; r++) {
        const float *rect = rects + 4 * r;
        const int left = x0 + (int)rect[0] * text_scale, right = x0 + (int)rect[2] * text_scale;
        const int top = y0 + (int)rect[1] * text_scale, bottom = y0 + (int)rect[3] * text_scale;
        for (int y = top < 0 ? 0 : top; y < bottom && y < canvas_h; y++)
            for (int x = left < 0 ? 0 : left; x < right && x < canvas_w; x++)
                memset(canvas + ((size_t)y * canvas_w + x) * 3, 0, 3);
    }
    free(rects);
}

int preview_label_width(const TokenDataset *ds, int max_rows, int scale) {
    const int rows = ds->num_classes < max_rows ? ds->num_classes : max_rows;
    const int text_scale = preview_text_scale(ds->height * scale);
    int widest = 0;
    for (int row = 0; row < rows; row++) {
        char label[LABEL_MAX_CHARS + 16];
        preview_class_label(ds, row, label, sizeof label);
        const int width = preview_text_width(label, text_scale);
        if (width > widest) widest = width;
    }
    return widest + 4 * text_scale;
}

// --- Pictures ---------------------------------------------------------------------------

void write_preview_png(const char *path, const ImageSet *originals, const TokenDataset *ds, int per_row, int max_rows,
                       int scale) {
    const int h = ds->height, w = ds->width, gap = 4, pair_gap = originals ? 1 : 0;
    const int rows = ds->num_classes < max_rows ? ds->num_classes : max_rows;
    const int label_w = preview_label_width(ds, max_rows, scale), text_scale = preview_text_scale(h * scale);
    const int cell_w = (originals ? 2 * w * scale + pair_gap : w * scale) + gap, cell_h = h * scale + gap;
    const int canvas_w = label_w + per_row * cell_w + gap, canvas_h = rows * cell_h + gap;
    uint8_t *canvas = xmalloc((size_t)canvas_w * canvas_h * 3);
    memset(canvas, 255, (size_t)canvas_w * canvas_h * 3);
    uint8_t *tile = xmalloc((size_t)h * w * 3);
    const int64_t tpi = dataset_tokens_per_image(ds);
    for (int row = 0; row < rows; row++) {
        char label[LABEL_MAX_CHARS + 16];
        preview_class_label(ds, row, label, sizeof label);
        const int text_top = gap + row * cell_h + (h * scale - 7 * text_scale) / 2;  // capitals centred on the row
        preview_draw_text(canvas, canvas_w, canvas_h, gap, text_top, label, text_scale);
        int col = 0;
        for (int64_t i = 0; i < ds->count && col < per_row; i++) {
            if (ds->labels[i] != row) continue;
            int x0 = label_w + gap + col * cell_w, y0 = gap + row * cell_h;
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

void write_token_grid_png(const char *path, const Palette *pal, int H, int W, const uint16_t *const *tiles,
                          const int *shown_rows, int rows, int cols, int scale) {
    const int gap = scale, canvas_w = cols * W * scale + (cols + 1) * gap,
              canvas_h = rows * H * scale + (rows + 1) * gap;
    uint8_t *canvas = xmalloc((size_t)canvas_w * canvas_h * 3);
    memset(canvas, 255, (size_t)canvas_w * canvas_h * 3);
    uint8_t *tile_rgb = xmalloc((size_t)H * W * 3);
    for (int i = 0; i < rows * cols; i++) {
        if (!tiles[i]) continue;
        const int shown = shown_rows ? shown_rows[i] : H;
        for (int p = 0; p < H * W; p++) {
            static const uint8_t hidden[3] = {128, 128, 128};
            const uint8_t *rgb = p / W < shown ? pal->rgb + (size_t)tiles[i][p] * 3 : hidden;
            memcpy(tile_rgb + (size_t)p * 3, rgb, 3);
        }
        const int x0 = gap + (i % cols) * (W * scale + gap), y0 = gap + (i / cols) * (H * scale + gap);
        blit(canvas, canvas_w, x0, y0, tile_rgb, W, H, scale);
    }
    write_png_atomically(path, canvas, canvas_w, canvas_h);
    free(tile_rgb);
    free(canvas);
}
