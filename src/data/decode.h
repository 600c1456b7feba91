// One image file to 8-bit RGB pixels, whichever decoder reads its format:
// JPEG by libjpeg-turbo, PNG by libpng (both continuously fuzzed by OSS-Fuzz
// and patched by Debian), BMP, TGA, PPM and PGM by the vendored stb_image.
// The format comes from the file's first bytes, not its name. A build
// without the libraries (make GPU_ONLY=1) reads PNG with stb_image and
// refuses JPEG (docs/formats.md, "Image folders").
#ifndef IGPT_DATA_DECODE_H
#define IGPT_DATA_DECODE_H

#include <stddef.h>
#include <stdint.h>

// The largest image side the image-folder reader decodes (a 16384 x 16384 RGB image is 768 MiB).
#define IMAGE_MAX_SIDE 16384

typedef struct {
    int width, height;  // 1..IMAGE_MAX_SIDE each
    uint8_t *rgb;       // width x height x 3 bytes, row-major, malloc'd
} RgbImage;

// Decodes the `size` bytes of an image file named `name`. Returns NULL with
// *out filled, or a message (malloc'd) that names `name` and says what is
// wrong; *out is then empty. Sides are checked against 1..IMAGE_MAX_SIDE
// before any pixel buffer is allocated. Thread-safe.
char *decode_image(const char *name, const uint8_t *data, size_t size, RgbImage *out);
// The same for the file at `path` (a file that cannot be read is a message too).
char *decode_image_file(const char *path, RgbImage *out);
// Which decoder reads which format in this build, one line (for messages and prepare.json).
const char *decode_image_decoders(void);

#endif
