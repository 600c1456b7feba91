// The image decoders (src/data/decode.c) on hostile and on ordinary files:
// crafted, cut and oversized JPEG/PNG files are clear errors naming the file
// (and `./igpt prepare` exits 1 without a crash); PNGs of every colour type
// decode to exactly what stb_image gave; grey and CMYK JPEGs become RGB as
// stb_image made them. The files are made here with libjpeg and libpng.
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// After stdio.h and stddef.h: jpeglib.h uses FILE and size_t without including them.
#include <jpeglib.h>
#include <png.h>

#include "data/decode.h"
#include "data/images.h"
#include "stb/stb_image.h"
#include "stb/stb_image_write.h"
#include "test.h"

typedef struct {
    uint8_t *data;
    size_t size;
} Bytes;

// --- Writing test files ---------------------------------------------------------------------

// A baseline JPEG of `pixels` (width x height x components, quality 100) in memory.
static Bytes jpeg_encode(const uint8_t *pixels, int width, int height, int components, J_COLOR_SPACE space) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr errors;
    c.err = jpeg_std_error(&errors);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long out_size = 0;
    jpeg_mem_dest(&c, &out, &out_size);
    c.image_width = (JDIMENSION)width;
    c.image_height = (JDIMENSION)height;
    c.input_components = components;
    c.in_color_space = space;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)pixels + (size_t)c.next_scanline * (size_t)width * (size_t)components;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    Bytes b = {xmalloc(out_size), out_size};
    memcpy(b.data, out, out_size);
    free(out);
    return b;
}

// A 16 x 16 colour JPEG of the test pattern.
static Bytes normal_jpeg(void) {
    uint8_t rgb[16 * 16 * 3];
    make_pattern_image(rgb, 16, 16, 1);
    return jpeg_encode(rgb, 16, 16, 3, JCS_RGB);
}

static void png_append(png_structp png, png_bytep data, size_t size) {
    Bytes *b = png_get_io_ptr(png);
    b->data = xrealloc(b->data, b->size + size);
    memcpy(b->data + b->size, data, size);
    b->size += size;
}

static void png_no_flush(png_structp png) { (void)png; }

typedef struct {
    int color_type, bit_depth, interlace;
    bool transparency;  // a tRNS chunk (palette: alpha per entry; grey/RGB: one transparent colour)
} PngKind;

// A width x height PNG of that kind with random samples (palette indices below 16).
static Bytes png_encode(PngKind kind, int width, int height, Rng *rng) {
    Bytes b = {NULL, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) die("libpng could not write the test PNG");
    png_set_write_fn(png, &b, png_append, png_no_flush);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, kind.bit_depth, kind.color_type, kind.interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_color palette[16];
    png_byte alphas[16];
    for (int i = 0; i < 16; i++) {
        palette[i] =
            (png_color){(png_byte)rng_below(rng, 256), (png_byte)rng_below(rng, 256), (png_byte)rng_below(rng, 256)};
        alphas[i] = (png_byte)rng_below(rng, 256);
    }
    const int palette_size = kind.bit_depth < 4 ? 1 << kind.bit_depth : 16;
    if (kind.color_type == PNG_COLOR_TYPE_PALETTE) png_set_PLTE(png, info, palette, palette_size);
    png_color_16 transparent = {.red = 1, .green = 2, .blue = 3, .gray = 1};
    if (kind.transparency)
        png_set_tRNS(png, info, alphas, kind.color_type == PNG_COLOR_TYPE_PALETTE ? palette_size : 0, &transparent);
    png_write_info(png, info);
    const size_t row_bytes = png_get_rowbytes(png, info);
    png_bytep *rows = xmalloc((size_t)height * sizeof(png_bytep));
    uint8_t *samples = xmalloc((size_t)height * row_bytes);
    for (size_t i = 0; i < (size_t)height * row_bytes; i++)
        samples[i] = (uint8_t)(kind.color_type == PNG_COLOR_TYPE_PALETTE && kind.bit_depth == 8 ? rng_below(rng, 16)
                                                                                                : rng_below(rng, 256));
    for (int y = 0; y < height; y++) rows[y] = samples + (size_t)y * row_bytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(samples);
    return b;
}

// A PNG chunk's CRC covers its type and data; after changing them, fix it.
static void png_fix_crc(uint8_t *chunk) {
    const uint32_t length = (uint32_t)chunk[0] << 24 | (uint32_t)chunk[1] << 16 | (uint32_t)chunk[2] << 8 | chunk[3];
    const uint32_t crc = crc32_update(0, chunk + 4, 4 + length);
    for (int i = 0; i < 4; i++) chunk[8 + length + i] = (uint8_t)(crc >> (24 - 8 * i));
}

// --- BMP, TGA, PPM and PGM: the formats stb_image reads --------------------------------------

static void bytes_append(void *context, void *data, int size) {
    Bytes *b = context;
    b->data = xrealloc(b->data, b->size + (size_t)size);
    memcpy(b->data + b->size, data, (size_t)size);
    b->size += (size_t)size;
}

typedef enum { WRITE_BMP, WRITE_TGA, WRITE_TGA_RLE, WRITE_PPM, WRITE_PGM } WriteFormat;
static const char *const write_format_names[] = {"BMP", "TGA", "run-length TGA", "PPM", "PGM"};

// rgb (width x height) as a file of that format: BMP and TGA by
// stb_image_write (24 bits, bottom-up), PPM and PGM (binary, the green
// channel) by hand.
static Bytes write_image(WriteFormat format, const uint8_t *rgb, int width, int height) {
    Bytes b = {NULL, 0};
    if (format == WRITE_BMP) stbi_write_bmp_to_func(bytes_append, &b, width, height, 3, rgb);
    if (format == WRITE_TGA || format == WRITE_TGA_RLE) {
        stbi_write_tga_with_rle = format == WRITE_TGA_RLE;
        stbi_write_tga_to_func(bytes_append, &b, width, height, 3, rgb);
        stbi_write_tga_with_rle = 1;
    }
    if (format == WRITE_PPM || format == WRITE_PGM) {
        char header[64];
        snprintf(header, sizeof header, "P%c\n%d %d\n255\n", format == WRITE_PPM ? '6' : '5', width, height);
        bytes_append(&b, header, (int)strlen(header));
        for (int i = 0; i < width * height; i++)
            bytes_append(&b, (void *)(rgb + 3 * i + (format == WRITE_PGM)), format == WRITE_PPM ? 3 : 1);
    }
    return b;
}

// What a file of that format decodes to: PGM's green channel repeated.
static uint8_t expected_value(WriteFormat format, const uint8_t *rgb, size_t i) {
    return format == WRITE_PGM ? rgb[i / 3 * 3 + 1] : rgb[i];
}

// A width x height image of random pixels.
static uint8_t *random_rgb(int width, int height, Rng *rng) {
    uint8_t *rgb = xmalloc((size_t)width * height * 3);
    for (size_t i = 0; i < (size_t)width * height * 3; i++) rgb[i] = (uint8_t)rng_below(rng, 256);
    return rgb;
}

// Checks `file` decodes to `rgb` (width x height) as `format` gives it.
static void expect_pixels(Bytes file, WriteFormat format, const uint8_t *rgb, int width, int height, const char *what) {
    RgbImage image;
    char *error = decode_image("dir/file.img", file.data, file.size, &image);
    CHECK(!error, "%s %s: %s", write_format_names[format], what, error ? error : "");
    if (!error) {
        size_t wrong = 0;
        for (size_t i = 0; i < (size_t)width * height * 3; i++) wrong += image.rgb[i] != expected_value(format, rgb, i);
        CHECK(image.width == width && image.height == height && wrong == 0, "%s %s: %d x %d, %zu values differ",
              write_format_names[format], what, image.width, image.height, wrong);
    }
    free(image.rgb);
    free(error);
}

// A crafted 8-bit BMP: a colour table of `entries` (entry i is (i, 2i, 3i)),
// then width x height indices, rows bottom-up and padded to 4 bytes.
static Bytes indexed_bmp(int width, int height, int entries, const uint8_t *indices) {
    const int stride = (width + 3) / 4 * 4, offset = 14 + 40 + 4 * entries;
    Bytes b = {xcalloc((size_t)offset + (size_t)stride * height, 1), (size_t)offset + (size_t)stride * height};
    uint8_t *h = b.data;
    h[0] = 'B';
    h[1] = 'M';
    put_u32(h + 2, (uint32_t)b.size);
    put_u32(h + 10, (uint32_t)offset);
    put_u32(h + 14, 40);
    put_u32(h + 18, (uint32_t)width);
    put_u32(h + 22, (uint32_t)height);
    h[26] = 1;  // planes
    h[28] = 8;  // bits a pixel
    put_u32(h + 46, (uint32_t)entries);
    for (int i = 0; i < entries; i++) {
        const uint8_t entry[4] = {(uint8_t)(3 * i), (uint8_t)(2 * i), (uint8_t)i, 0};  // blue, green, red
        memcpy(h + 54 + 4 * i, entry, 4);
    }
    for (int y = 0; y < height; y++) memcpy(h + offset + (size_t)(height - 1 - y) * stride, indices + y * width, width);
    return b;
}

// The first `marker` segment (0xFF, marker) of a JPEG, or NULL.
static uint8_t *jpeg_find_segment(Bytes jpeg, uint8_t marker) {
    for (size_t i = 2; i + 4 <= jpeg.size; i += 2 + ((size_t)jpeg.data[i + 2] << 8 | jpeg.data[i + 3])) {
        if (jpeg.data[i] != 0xff) return NULL;
        if (jpeg.data[i + 1] == marker) return jpeg.data + i;
    }
    return NULL;
}

// The file: a valid JPEG whose first Huffman table (DHT) has code
// counts summing to 300, more than the 256 symbols a table can hold. stb_image
// 2.27 wrote the 300 code sizes into its 257-byte array before it checked them.
static Bytes crafted_huffman_jpeg(void) {
    Bytes normal = normal_jpeg();
    uint8_t *dht = jpeg_find_segment(normal, 0xc4);
    if (!dht) die("the test JPEG has no DHT segment");
    const size_t before = (size_t)(dht - normal.data), old_length = (size_t)dht[2] << 8 | dht[3];
    const size_t counts_sum = 300, new_length = 2 + 1 + 16 + counts_sum;
    Bytes crafted = {xcalloc(normal.size - old_length + new_length, 1), normal.size - old_length + new_length};
    memcpy(crafted.data, normal.data, before + 5);  // up to the table's class/id byte
    uint8_t *segment = crafted.data + before;
    segment[2] = (uint8_t)(new_length >> 8);
    segment[3] = (uint8_t)new_length;
    segment[5 + 14] = 150;  // 150 codes of 15 bits and 150 of 16
    segment[5 + 15] = 150;
    memcpy(segment + 2 + new_length, dht + 2 + old_length, normal.size - before - 2 - old_length);
    free(normal.data);
    return crafted;
}

// --- Decoding -------------------------------------------------------------------------------

// Decodes `file`; checks it fails with `message` and names the file.
static void expect_decode_error(Bytes file, const char *message) {
    RgbImage image;
    char *error = decode_image("dir/file.img", file.data, file.size, &image);
    CHECK(error && strstr(error, message) && strstr(error, "dir/file.img"), "expected \"%s\" naming the file, got %s",
          message, error ? error : "success");
    CHECK(image.rgb == NULL, "no pixels on failure");
    free(error);
}

TEST(test_images_hostile_files_are_clear_errors) {
    Bytes crafted = crafted_huffman_jpeg();
    expect_decode_error(crafted, "JPEG: Bogus Huffman table definition");
    Bytes jpeg = normal_jpeg();
    expect_decode_error((Bytes){jpeg.data, jpeg.size / 2}, "JPEG: Premature end of JPEG file");
    expect_decode_error((Bytes){jpeg.data, 0}, "the file is empty");
    Rng rng;
    rng_init(&rng, 13, 0);
    Bytes png = png_encode((PngKind){PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, false}, 8, 8, &rng);
    uint8_t *ihdr = png.data + 8;  // signature, then IHDR: length, type, width, height, ...
    const uint8_t huge[8] = {0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0};  // 100000 x 100000
    uint8_t saved[8];
    memcpy(saved, ihdr + 8, 8);
    memcpy(ihdr + 8, huge, 8);
    png_fix_crc(ihdr);
    expect_decode_error(png, "is 100000 x 100000 pixels; igpt reads 1..16384 on a side");
    memcpy(ihdr + 8, saved, 8);
    png_fix_crc(ihdr);
    png.data[png.size - 14] ^= 0x40;  // in the IDAT chunk's CRC (IEND is the last 12 bytes)
    expect_decode_error(png, "PNG: IDAT: CRC error");
    Bytes ppm = {(uint8_t *)"P6\n4 0\n255\n", 11};
    expect_decode_error(ppm, "is 4 x 0 pixels");
    Bytes gif = {(uint8_t *)"GIF89a\x01\x00\x01\x00\x00\x00\x00;", 14};
    expect_decode_error(gif, "is a GIF file");
    free(crafted.data);
    free(jpeg.data);
    free(png.data);
}

// Each hostile file in an image folder: `./igpt prepare` exits 1 with one
// message naming it and writes nothing.
TEST(test_images_prepare_refuses_hostile_files) {
    const char *const names[] = {"a", "b"};
    make_image_folder(test_path("images"), names, 2, 2, 8);
    Bytes crafted = crafted_huffman_jpeg(), jpeg = normal_jpeg();
    uint8_t rgb[16 * 16 * 3];
    make_pattern_image(rgb, 16, 16, 2);
    Bytes tga = write_image(WRITE_TGA_RLE, rgb, 16, 16);
    const struct {
        const char *name, *message;
        Bytes bytes;
    } cases[] = {
        {"crafted.jpg", "JPEG: Bogus Huffman table definition", crafted},
        {"cut.jpg", "JPEG: Premature end of JPEG file", {jpeg.data, jpeg.size - 40}},
        {"empty.png", "the file is empty", {jpeg.data, 0}},
        {"cut.tga", "claims 16 x 16 pixels but holds only", {tga.data, tga.size - 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = test_path("images/b/%s", cases[i].name);
        write_whole_file(path, cases[i].bytes.data, cases[i].bytes.size);
        const int status = run_igpt("prepare --images %s --out %s --quiet", test_path("images"), test_path("out"));
        expect_failure(status, 1, cases[i].message, test_path("out"));
        CHECK(strstr(cli_stderr(), "igpt: ") == cli_stderr() && strstr(cli_stderr(), path), "%s: one line naming %s",
              cli_stderr(), path);
        unlink(path);
    }
    free(crafted.data);
    free(jpeg.data);
    free(tga.data);
}

// Every PNG colour type and depth, interlaced or not, with and without tRNS,
// decodes to the bytes stb_image gives (grey repeated, alpha dropped, 16-bit
// samples to their high byte): prepared files of PNG folders do not change.
TEST(test_images_png_matches_stb_image) {
    const PngKind kinds[] = {
        {PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, false},
        {PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, false},
        {PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE, true},
        {PNG_COLOR_TYPE_RGBA, 8, PNG_INTERLACE_NONE, false},
        {PNG_COLOR_TYPE_RGBA, 16, PNG_INTERLACE_ADAM7, false},
        {PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, false},
        {PNG_COLOR_TYPE_GRAY, 2, PNG_INTERLACE_NONE, false},
        {PNG_COLOR_TYPE_GRAY, 4, PNG_INTERLACE_ADAM7, false},
        {PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, true},
        {PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_NONE, false},
        {PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, false},
        {PNG_COLOR_TYPE_GRAY_ALPHA, 16, PNG_INTERLACE_NONE, false},
        {PNG_COLOR_TYPE_PALETTE, 1, PNG_INTERLACE_NONE, false},
        {PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_ADAM7, true},
        {PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE, false},
        {PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE, true},
    };
    Rng rng;
    rng_init(&rng, 14, 0);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const int width = 13, height = 7;  // odd sizes: partial bytes at 1-4 bits, every Adam7 pass
        Bytes png = png_encode(kinds[k], width, height, &rng);
        int w, h, channels;
        uint8_t *want = stbi_load_from_memory(png.data, (int)png.size, &w, &h, &channels, 3);
        RgbImage got;
        char *error = decode_image("kind.png", png.data, png.size, &got);
        CHECK(want && !error, "colour type %d, %d bits: %s", kinds[k].color_type, kinds[k].bit_depth,
              error ? error : stbi_failure_reason());
        if (want && !error) {
            CHECK(got.width == w && got.height == h && memcmp(got.rgb, want, (size_t)w * h * 3) == 0,
                  "colour type %d, %d bits, interlace %d, tRNS %d: pixels differ from stb_image's", kinds[k].color_type,
                  kinds[k].bit_depth, kinds[k].interlace, kinds[k].transparency);
        }
        stbi_image_free(want);
        free(got.rgb);
        free(error);
        free(png.data);
    }
}

// Flat 8x8 blocks at quality 100 survive JPEG exactly, so the conversions
// can be checked to the byte: grey is repeated, CMYK (stored inverted, as
// Adobe writes it) becomes C x K / 255 as stb_image computed it.
TEST(test_images_jpeg_grey_and_cmyk) {
    uint8_t grey[16 * 16], cmyk[16 * 16 * 4];
    for (int i = 0; i < 16 * 16; i++) {
        const int block = (i / 16 / 8) * 2 + (i % 16) / 8;  // which 8x8 block
        grey[i] = (uint8_t)(40 + 50 * block);
        const uint8_t values[4] = {(uint8_t)(200 - 30 * block), 100, (uint8_t)(50 + 40 * block), 128};
        memcpy(cmyk + 4 * i, values, 4);
    }
    Bytes grey_jpeg = jpeg_encode(grey, 16, 16, 1, JCS_GRAYSCALE);
    Bytes cmyk_jpeg = jpeg_encode(cmyk, 16, 16, 4, JCS_CMYK);
    RgbImage g, c;
    char *grey_error = decode_image("grey.jpg", grey_jpeg.data, grey_jpeg.size, &g);
    char *cmyk_error = decode_image("cmyk.jpg", cmyk_jpeg.data, cmyk_jpeg.size, &c);
    CHECK(!grey_error && !cmyk_error, "decoded: %s %s", grey_error ? grey_error : "", cmyk_error ? cmyk_error : "");
    int grey_wrong = 0, cmyk_wrong = 0;
    for (int i = 0; !grey_error && !cmyk_error && i < 16 * 16; i++)
        for (int ch = 0; ch < 3; ch++) {
            grey_wrong += g.rgb[3 * i + ch] != grey[i];
            const unsigned t = (unsigned)cmyk[4 * i + ch] * cmyk[4 * i + 3] + 128;
            cmyk_wrong += c.rgb[3 * i + ch] != (uint8_t)((t + (t >> 8)) >> 8);
        }
    CHECK(grey_wrong == 0 && cmyk_wrong == 0, "%d grey and %d CMYK values differ", grey_wrong, cmyk_wrong);
    free(g.rgb);
    free(c.rgb);
    free(grey_error);
    free(cmyk_error);
    free(grey_jpeg.data);
    free(cmyk_jpeg.data);
}

// Full files written by stb_image_write (and PPM/PGM by hand) decode to the
// pixels written, odd widths (row padding) included; so does a BMP stored
// top-down (negative height), and one whose last row lacks its padding (not
// pixel data: stb skips it).
TEST(test_images_bmp_tga_pnm_decode_as_written) {
    Rng rng;
    rng_init(&rng, 15, 0);
    const int sizes[][2] = {{16, 16}, {13, 7}, {1, 3}};
    for (int format = WRITE_BMP; format <= WRITE_PGM; format++)
        for (int s = 0; s < 3; s++) {
            const int width = sizes[s][0], height = sizes[s][1];
            uint8_t *rgb = random_rgb(width, height, &rng);
            Bytes file = write_image((WriteFormat)format, rgb, width, height);
            expect_pixels(file, (WriteFormat)format, rgb, width, height, "as written");
            free(rgb);
            free(file.data);
        }
    uint8_t *rgb = random_rgb(13, 7, &rng);
    Bytes bmp = write_image(WRITE_BMP, rgb, 13, 7);
    const size_t stride = 40, offset = bmp.size - 7 * stride;  // 13 x 3 bytes, padded to 40
    expect_pixels((Bytes){bmp.data, bmp.size - 1}, WRITE_BMP, rgb, 13, 7, "without the last row's padding");
    uint8_t *top_down = xmalloc(bmp.size);
    memcpy(top_down, bmp.data, offset);
    put_u32(top_down + 22, (uint32_t)-7);
    for (int y = 0; y < 7; y++) memcpy(top_down + offset + y * stride, bmp.data + offset + (6 - y) * stride, stride);
    expect_pixels((Bytes){top_down, bmp.size}, WRITE_BMP, rgb, 13, 7, "stored top-down");
    free(top_down);
    free(bmp.data);
    free(rgb);
}

// Checks `file` is refused as cut short, by the least-size check before
// decoding ("needs at least") or by the reads past the end during it.
static void expect_cut_short(Bytes file, int width, int height, bool before_decoding, const char *what) {
    char message[160];
    snprintf(message, sizeof message, "claims %d x %d pixels but holds only %zu bytes (%s", width, height, file.size,
             before_decoding ? "a " : "its ");
    RgbImage image;
    char *error = decode_image("dir/file.img", file.data, file.size, &image);
    CHECK(error && strstr(error, message) && strstr(error, "cut short?") && strstr(error, "dir/file.img"),
          "%s: expected \"%s...: cut short?\", got %s", what, message, error ? error : "success");
    free(image.rgb);
    free(error);
}

// stb_image reads the bytes past the end of a BMP or TGA as zeros (and leaves
// a short uncompressed TGA row as malloc left it): each cut file decoded to a
// wrong image. Now every cut is an error naming the file; one short of the
// pixels' least size is caught before decoding, one byte short of a
// run-length TGA or a PNM while decoding (its least size cannot tell).
TEST(test_images_cut_bmp_tga_pnm_are_errors) {
    Rng rng;
    rng_init(&rng, 16, 0);
    uint8_t *rgb = random_rgb(16, 16, &rng);
    for (int format = WRITE_BMP; format <= WRITE_PGM; format++) {
        Bytes file = write_image((WriteFormat)format, rgb, 16, 16);
        const size_t header = format == WRITE_BMP ? 54 : format <= WRITE_TGA_RLE ? 18 : 13;
        const bool pixels_bound = format == WRITE_BMP || format == WRITE_TGA;  // exact least sizes
        char what[64];
        snprintf(what, sizeof what, "%s cut by 1 byte", write_format_names[format]);
        expect_cut_short((Bytes){file.data, file.size - 1}, 16, 16, pixels_bound, what);
        snprintf(what, sizeof what, "%s cut in half", write_format_names[format]);
        expect_cut_short((Bytes){file.data, file.size / 2}, 16, 16, format != WRITE_TGA_RLE, what);
        snprintf(what, sizeof what, "%s with the header alone", write_format_names[format]);
        expect_cut_short((Bytes){file.data, header}, 16, 16, true, what);
        free(file.data);
    }
    free(rgb);
}

// The fuzzer's decompression bomb (fuzz/regressions/images/): a 368-byte
// run-length TGA claiming 2614 x 12849 pixels, which took 23 s of CPU to
// decode under ASan. A packet gives at most 128 pixels for 5 bytes: it is
// refused before decoding.
TEST(test_images_tga_bomb_is_refused_before_decoding) {
    uint8_t bomb[368] = {0};
    const uint8_t header[18] = {0, 0, 10, 0, 0, 0, 0, 0, 0, 10, 0x18, 0x50, 0x36, 0x0a, 0x31, 0x32, 32, 0x39};
    memcpy(bomb, header, sizeof header);
    memset(bomb + 18, 0xff, 100);  // packets of 128 repeated pixels
    RgbImage image;
    char *error = decode_image("dir/bomb.tga", bomb, sizeof bomb, &image);
    const char *want =
        "image dir/bomb.tga claims 2614 x 12849 pixels but holds only 368 bytes "
        "(a TGA that size needs at least 1312023): cut short?";
    CHECK(error && strcmp(error, want) == 0, "got %s", error ? error : "success");
    free(error);
}

// What stb 2.30 would misread in a BMP is refused. An 8-bit BMP whose colour
// table is shorter than 256 entries decodes when its pixels use only those
// entries; one that points past the table (stb would read an uninitialised
// stack array) or has no room for a table is refused, and so is a 24-bit BMP
// with a gap before its pixels (stb would read them from the wrong place).
TEST(test_images_bmp_layouts_stb_misreads_are_refused) {
    uint8_t indices[5 * 3];
    for (int i = 0; i < 15; i++) indices[i] = (uint8_t)(i % 4);
    Bytes bmp = indexed_bmp(5, 3, 4, indices);
    uint8_t rgb[5 * 3 * 3];
    for (int i = 0; i < 15; i++) {
        const uint8_t colour[3] = {(uint8_t)indices[i], (uint8_t)(2 * indices[i]), (uint8_t)(3 * indices[i])};
        memcpy(rgb + 3 * i, colour, 3);
    }
    expect_pixels(bmp, WRITE_BMP, rgb, 5, 3, "8 bits, 4 colours");
    free(bmp.data);
    indices[7] = 200;
    bmp = indexed_bmp(5, 3, 4, indices);
    expect_decode_error(bmp, "a pixel uses colour 200 of a BMP colour table of 4");
    put_u32(bmp.data + 10, 50);  // the pixels "start" inside the header
    expect_decode_error(bmp, "leaves no room for the colour table");
    free(bmp.data);
    // A 24-bit BMP with 8 bytes between header and pixels: stb 2.30 would read from 8 bytes further on.
    uint8_t colours[4 * 2 * 3];
    for (int i = 0; i < 24; i++) colours[i] = (uint8_t)(10 * i);
    bmp = write_image(WRITE_BMP, colours, 4, 2);
    Bytes gap = {xcalloc(bmp.size + 8, 1), bmp.size + 8};
    memcpy(gap.data, bmp.data, 54);
    memcpy(gap.data + 62, bmp.data + 54, bmp.size - 54);
    put_u32(gap.data + 10, 62);
    expect_decode_error(gap, "its BMP pixels start 8 bytes after the header, which stb_image 2.30 misreads");
    free(gap.data);
    free(bmp.data);
}
