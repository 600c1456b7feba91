// The one translation unit that compiles the vendored stb libraries.
// stb_image is compiled for the formats it still reads (src/data/decode.c):
// BMP, TGA, PPM/PGM, and PNG (for builds without libpng, and for the tests'
// checks of the PNGs igpt writes). JPEG is read by libjpeg-turbo; GIF, PSD,
// PIC and HDR are not read at all, so their stb decoders are not compiled in.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_TGA
#define STBI_ONLY_PNM
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include "stb/stb_image.h"
#include "stb/stb_image_resize.h"
#include "stb/stb_image_write.h"

// stb_easy_font is all static functions: the two that the previews' class
// names need (src/data/preview.c) are exported here, where stb compiles
// without our warning flags.
#include <stdlib.h>
#include <string.h>

#include "stb/stb_easy_font.h"
#include "stb_impl.h"  // beside this file: stb compiles with -Ithird_party only

int easy_font_width(const char *text) { return stb_easy_font_width((char *)text); }

int easy_font_rectangles(const char *text, float *rects, int max_rects) {
    typedef struct {
        float x, y, z;
        unsigned char color[4];
    } Vertex;
    const int max_quads = 64 * ((int)strlen(text) + 1);  // a letter takes 1 to ~10; stb stops at the buffer's end
    Vertex *quads = malloc((size_t)max_quads * 4 * sizeof(Vertex));
    if (!quads) abort();  // a few KB: no caller would draw a label without its letters
    int n = stb_easy_font_print(0, 0, (char *)text, NULL, quads, max_quads * 4 * (int)sizeof(Vertex));
    if (n > max_rects) n = max_rects;
    for (int q = 0; q < n; q++) {  // corners: top-left, top-right, bottom-right, bottom-left
        rects[4 * q + 0] = quads[4 * q].x;
        rects[4 * q + 1] = quads[4 * q].y;
        rects[4 * q + 2] = quads[4 * q + 2].x;
        rects[4 * q + 3] = quads[4 * q + 2].y;
    }
    free(quads);
    return n;
}
