// Writes the image harness's seeds (fuzz_images.c): one small picture in
// each format igpt's image folders hold, written by the vendored stb writer
// (PNG, JPEG, BMP, TGA) or by hand (binary PPM and PGM). Each seed starts with
// the harness's selector byte: low nibble the extension's index, high bits
// the resolution's.
//   build/fuzz/image_seeds OUT_DIR
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stb/stb_image_write.h"

enum { W = 12, H = 9 };  // not square, not a power of two: the resize has work to do
static unsigned char seed[1 << 16];
static size_t seed_size;

static void append(void *context, void *data, int size) {
    (void)context;
    if (seed_size + (size_t)size > sizeof seed) exit(1);
    memcpy(seed + seed_size, data, (size_t)size);
    seed_size += (size_t)size;
}

static void save(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(seed, 1, seed_size, f) != seed_size || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

// selector: extension index (fuzz_images.c: png 0, jpg 1, bmp 3, tga 5, ppm 8, pgm 9) | resolution index << 4.
static void start(unsigned char selector) {
    seed[0] = selector;
    seed_size = 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    unsigned char rgb[W * H * 3], grey[W * H];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            unsigned char *p = rgb + (y * W + x) * 3;
            p[0] = (unsigned char)(x * 20);
            p[1] = (unsigned char)(y * 28);
            p[2] = (unsigned char)((x + y) % 2 ? 200 : 30);
            grey[y * W + x] = p[1];
        }
    start(0x10);
    stbi_write_png_to_func(append, NULL, W, H, 3, rgb, W * 3);
    save(argv[1], "rgb.png");
    start(0x00);
    stbi_write_png_to_func(append, NULL, W, H, 1, grey, W);
    save(argv[1], "grey.png");
    start(0x21);
    stbi_write_jpg_to_func(append, NULL, W, H, 3, rgb, 90);
    save(argv[1], "rgb.jpg");
    start(0x31);
    stbi_write_jpg_to_func(append, NULL, W, H, 1, grey, 50);
    save(argv[1], "grey.jpg");
    start(0x13);
    stbi_write_bmp_to_func(append, NULL, W, H, 3, rgb);
    save(argv[1], "rgb.bmp");
    start(0x25);
    stbi_write_tga_to_func(append, NULL, W, H, 3, rgb);
    save(argv[1], "rgb.tga");
    start(0x18);
    char head[32];
    int n = snprintf(head, sizeof head, "P6\n%d %d\n255\n", W, H);
    append(NULL, head, n);
    append(NULL, rgb, sizeof rgb);
    save(argv[1], "rgb.ppm");
    start(0x09);
    n = snprintf(head, sizeof head, "P5\n%d %d\n255\n", W, H);
    append(NULL, head, n);
    append(NULL, grey, sizeof grey);
    save(argv[1], "grey.pgm");
    return 0;
}
