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
