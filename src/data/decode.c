// Decoding one image file (decode.h). The file is read whole, its format is
// told by its first bytes, and each decoder reads the header first: the sides
// are checked (1..IMAGE_MAX_SIDE) before a pixel buffer is allocated, so a
// 100-byte file cannot ask for gigabytes. Conversions match what stb_image did
// when it read every format: grey becomes RGB by repeating the value, alpha is
// dropped (not composited), 16-bit samples keep their high byte, gamma and
// colour profiles are ignored.
#include "data/decode.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stb/stb_image.h"
#include "util/util.h"

#ifndef IGPT_NO_JPEG
#include <setjmp.h>
// (jpeglib.h needs stdio.h's FILE and stddef.h's size_t before it.)
#include <jpeglib.h>
// After jpeglib.h: the message codes (JWRN_*) and ERREXIT.
#include <jerror.h>
#endif
#ifndef IGPT_NO_PNG
#include <png.h>
#endif

static bool sides_ok(long long width, long long height) {
    return width >= 1 && height >= 1 && width <= IMAGE_MAX_SIDE && height <= IMAGE_MAX_SIDE;
}

static char *size_error(const char *name, long long width, long long height) {
    return xasprintf("image %s is %lld x %lld pixels; igpt reads 1..%d on a side", name, width, height, IMAGE_MAX_SIDE);
}

static bool starts_with(const uint8_t *data, size_t size, const char *magic, size_t magic_size) {
    return size >= magic_size && memcmp(data, magic, magic_size) == 0;
}

// Sides within limits, so width x height x 3 fits easily in size_t (<= 805 MB).
static uint8_t *alloc_rgb(int width, int height) { return xmalloc((size_t)width * (size_t)height * 3); }

// ---------------------------------------------------------------------------
// JPEG: libjpeg-turbo

#ifndef IGPT_NO_JPEG
// A progressive JPEG may hold any number of scans, each a pass over the whole
// image: a few KB of them can keep a decoder busy for minutes. Real encoders
// write at most a few dozen.
#define JPEG_MAX_SCANS 256

typedef struct {
    struct jpeg_error_mgr base;  // first: libjpeg hands us a pointer to it
    struct jpeg_progress_mgr progress;
    jmp_buf jump;  // where an error returns to, instead of libjpeg's exit()
    char message[JMSG_LENGTH_MAX];
} JpegErrors;

static void jpeg_fail(j_common_ptr cinfo) {
    JpegErrors *errors = (JpegErrors *)cinfo->err;
    cinfo->err->format_message(cinfo, errors->message);
    longjmp(errors->jump, 1);
}

// libjpeg only warns about corrupt data (missing or bad bytes become grey
// blocks): those warnings are errors here, a damaged photo is not a training
// image. Notices about the headers leave the pixels intact.
static void jpeg_warn(j_common_ptr cinfo, int level) {
    if (level >= 0) return;  // trace messages
    const int code = cinfo->err->msg_code;
    if (code == JWRN_EXTRANEOUS_DATA || code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM || code == JWRN_BOGUS_ICC)
        return;
    jpeg_fail(cinfo);
}

static void jpeg_count_scans(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number <= JPEG_MAX_SCANS) return;
    JpegErrors *errors = (JpegErrors *)cinfo->err;
    snprintf(errors->message, sizeof errors->message, "more than %d progressive scans", JPEG_MAX_SCANS);
    longjmp(errors->jump, 1);
}

// Stored CMYK (Adobe's inverted values, as libjpeg returns them) to RGB the
// way stb_image did: each of C, M, Y times K, divided by 255 with rounding.
static void cmyk_row_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int width) {
    for (int x = 0; x < width; x++)
        for (int c = 0; c < 3; c++) {
            const unsigned t = (unsigned)cmyk[4 * x + c] * cmyk[4 * x + 3] + 128;
            rgb[3 * x + c] = (uint8_t)((t + (t >> 8)) >> 8);
        }
}

// Decodes after the header was read and checked; errors longjmp out.
static void jpeg_read_pixels(struct jpeg_decompress_struct *cinfo, uint8_t *rgb, uint8_t *cmyk_row) {
    const int width = (int)cinfo->output_width;
    while (cinfo->output_scanline < cinfo->output_height) {
        uint8_t *row = rgb + (size_t)cinfo->output_scanline * (size_t)width * 3;
        JSAMPROW target = cmyk_row ? cmyk_row : row;
        if (jpeg_read_scanlines(cinfo, &target, 1) != 1) ERREXIT(cinfo, JERR_INPUT_EMPTY);
        if (cmyk_row) cmyk_row_to_rgb(cmyk_row, row, width);
    }
    jpeg_finish_decompress(cinfo);  // reads on to the end marker: a cut file fails here
}

static char *decode_jpeg(const char *name, const uint8_t *data, size_t size, RgbImage *out) {
    struct jpeg_decompress_struct cinfo;
    JpegErrors errors;
    // volatile: assigned after setjmp and read after a longjmp back to it.
    uint8_t *volatile rgb = NULL;
    uint8_t *volatile cmyk_row = NULL;
    cinfo.err = jpeg_std_error(&errors.base);
    errors.base.error_exit = jpeg_fail;
    errors.base.emit_message = jpeg_warn;
    errors.progress.progress_monitor = jpeg_count_scans;
    if (setjmp(errors.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        free(cmyk_row);
        return xasprintf("cannot decode image %s: JPEG: %s", name, errors.message);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &errors.progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (!sides_ok(cinfo.image_width, cinfo.image_height)) {
        char *message = size_error(name, cinfo.image_width, cinfo.image_height);
        jpeg_destroy_decompress(&cinfo);
        return message;
    }
    const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  // grey, YCbCr and RGB all become RGB
    // The accurate integer IDCT and smooth chroma upsampling: the closest to stb_image's output.
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);
    rgb = alloc_rgb((int)cinfo.output_width, (int)cinfo.output_height);
    if (cmyk) cmyk_row = xmalloc((size_t)cinfo.output_width * 4);
    jpeg_read_pixels(&cinfo, rgb, cmyk_row);
    *out = (RgbImage){(int)cinfo.output_width, (int)cinfo.output_height, rgb};
    free(cmyk_row);
    jpeg_destroy_decompress(&cinfo);
    return NULL;
}
#endif

// ---------------------------------------------------------------------------
// PNG: libpng

#ifndef IGPT_NO_PNG
typedef struct {
    const uint8_t *data;
    size_t size, position;
    char message[256];
} PngSource;

static void png_fail(png_structp png, png_const_charp message) {
    PngSource *source = png_get_error_ptr(png);
    snprintf(source->message, sizeof source->message, "%s", message);
    png_longjmp(png, 1);
}

// Warnings concern chunks we do not use (a bad CRC of a text chunk, an odd
// colour profile); the pixels are checked (CRC of IDAT, zlib's Adler-32) by errors.
static void png_ignore_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_memory(png_structp png, png_bytep dst, size_t bytes) {
    PngSource *source = png_get_io_ptr(png);
    if (bytes > source->size - source->position) png_error(png, "the file ends early (truncated)");
    memcpy(dst, source->data + source->position, bytes);
    source->position += bytes;
}

// The transformations that give 8-bit RGB as stb_image gave it.
static void png_ask_for_rgb(png_structp png, int color_type, int bit_depth) {
    if (bit_depth == 16) png_set_strip_16(png);  // the high byte
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (!(color_type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);  // also the alpha a palette's tRNS chunk expands to
    png_set_interlace_handling(png);
}

static void png_read_pixels(png_structp png, png_infop info, uint8_t *rgb, png_bytep *rows, int width, int height) {
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)width * 3) png_error(png, "unexpected row size after conversion");
    for (int y = 0; y < height; y++) rows[y] = rgb + (size_t)y * (size_t)width * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);  // reads on to IEND: a cut file fails here
}

static char *decode_png(const char *name, const uint8_t *data, size_t size, RgbImage *out) {
    PngSource source = {.data = data, .size = size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source, png_fail, png_ignore_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) die("out of memory (libpng)");
    // volatile: assigned after setjmp and read after a longjmp back to it.
    uint8_t *volatile rgb = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rgb);
        free(rows);
        return xasprintf("cannot decode image %s: PNG: %s", name, source.message);
    }
    png_set_read_fn(png, &source, png_read_memory);
    png_set_user_limits(png, 1u << 30, 1u << 30);  // our own check below names the sides
    png_read_info(png, info);
    const long long width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if (!sides_ok(width, height)) {
        png_destroy_read_struct(&png, &info, NULL);
        return size_error(name, width, height);
    }
    png_ask_for_rgb(png, png_get_color_type(png, info), png_get_bit_depth(png, info));
    rgb = alloc_rgb((int)width, (int)height);
    rows = xmalloc((size_t)height * sizeof(png_bytep));
    png_read_pixels(png, info, rgb, rows, (int)width, (int)height);
    *out = (RgbImage){(int)width, (int)height, rgb};
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return NULL;
}
#endif

// ---------------------------------------------------------------------------
// BMP, TGA, PPM/PGM (and PNG without libpng): stb_image, compiled for those
// formats only (stb_impl.c)
//
// stb_image reads a byte past the end of the data as 0, and leaves the rest of
// a short uncompressed TGA row as malloc left it: a cut BMP or TGA would
// decode "successfully" to a wrong image. And a run-length TGA can claim far
// more pixels than its bytes could hold (a 368-byte file claimed 2614 x 12849:
// 34 million pixels, 23 s of CPU under ASan). Two guards:
// 1. Before decoding, the least size a file must have for the pixels its
//    header claims (stb_least_size); a file below it is refused at once.
// 2. stb reads through callbacks (StbSource) that note when it goes past the
//    end; the decoded image is then refused. This catches what a lower bound
//    cannot (the last run-length packet cut, BMP data that stb reads from
//    further in than the header says).

typedef enum { STB_BMP, STB_TGA, STB_PNM, STB_PNG } StbFormat;

// The format as stb_image tells it: it tries PNG, BMP, PNM, then TGA (which
// has no magic), and their first bytes exclude each other.
static StbFormat stb_format(const uint8_t *data, size_t size) {
    if (starts_with(data, size, "\x89PNG", 4)) return STB_PNG;
    if (starts_with(data, size, "BM", 2)) return STB_BMP;
    if (starts_with(data, size, "P5", 2) || starts_with(data, size, "P6", 2)) return STB_PNM;
    return STB_TGA;
}

static const char *const stb_format_names[] = {"BMP", "TGA", "PNM", "PNG"};

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

// Bytes of one row of BMP pixels as stb reads them (1, 4, 8 bits: packed;
// 16, 24 bits; anything else: 4 bytes a pixel), before the padding to 4.
static uint64_t bmp_row_bytes(uint64_t width, unsigned bits) {
    if (bits == 1) return (width + 7) / 8;
    if (bits == 4) return (width + 1) / 2;
    if (bits == 8) return width;
    if (bits == 16) return 2 * width;
    if (bits == 24) return 3 * width;
    return 4 * width;
}

// BMP: the pixel data starts at the header's offset and holds `height` rows,
// each padded to 4 bytes (the last row's padding is not needed). A lower
// bound: for 16/24/32 bits, stb 2.30 starts further in when the offset leaves
// a gap after the header (it skips the gap twice), which guard 2 catches.
// stb reads no run-length BMP ("BMP type not supported: RLE").
static uint64_t bmp_least_size(const uint8_t *header, uint64_t width, uint64_t height) {
    const uint32_t offset = get_u32(header + 10);
    const unsigned bits = get_u32(header + 14) == 12 ? le16(header + 24) : le16(header + 28);
    const uint64_t row = bmp_row_bytes(width, bits), padded_row = (row + 3) / 4 * 4;
    return saturating_add(saturating_add(offset, saturating_mul(height - 1, padded_row)), row);
}

// TGA: 18 bytes of header, an ID of header[0] bytes, a colour map (when
// header[1] says so: stb skips header[3..4] bytes, then reads header[5..6]
// entries), then the pixels. Uncompressed, each pixel is 1-4 bytes. Run-length
// coded, one packet gives at most 128 pixels and costs at least a count byte
// and one pixel: that bounds how few bytes can hold width x height pixels.
static uint64_t tga_least_size(const uint8_t *header, uint64_t width, uint64_t height) {
    uint64_t least = 18 + (uint64_t)header[0];
    if (header[1]) least += le16(header + 3) + (uint64_t)le16(header + 5) * ((header[7] + 7u) / 8);
    const uint64_t pixels = width * height, pixel_bytes = (header[16] + 7u) / 8;  // 15 and 16 bits: 2 bytes
    const bool run_length = header[2] >= 8;
    const uint64_t pixel_data = run_length ? (pixels + 127) / 128 * (1 + pixel_bytes) : pixels * pixel_bytes;
    return saturating_add(least, pixel_data);
}

// The least size (bytes) a file of that format can have for a width x height
// image of `channels` (PNM: the samples alone, a lower bound without the
// header). PNG is compressed: no bound (zlib gives at most ~1000:1).
static uint64_t stb_least_size(StbFormat format, const uint8_t *data, size_t size, int width, int height,
                               int channels) {
    uint8_t header[64] = {0};  // stb reads bytes past the end as 0, so do we
    memcpy(header, data, size < sizeof header ? size : sizeof header);
    const uint64_t w = (uint64_t)width, h = (uint64_t)height;
    if (format == STB_BMP) return bmp_least_size(header, w, h);
    if (format == STB_TGA) return tga_least_size(header, w, h);
    if (format == STB_PNM) {
        const uint64_t sample_bytes = stbi_is_16_bit_from_memory(data, (int)size) ? 2 : 1;
        return w * h * (uint64_t)channels * sample_bytes;
    }
    return 0;
}

// The colour index of pixel x of a row of 1, 4 or 8-bit BMP pixels.
static unsigned bmp_index(const uint8_t *row, uint64_t x, unsigned bits) {
    if (bits == 8) return row[x];
    if (bits == 4) return (row[x / 2] >> (x % 2 ? 0 : 4)) & 15;
    return (row[x / 8] >> (7 - x % 8)) & 1;
}

// A BMP of 1, 4 or 8 bits a pixel indexes a colour table that lies between
// the header and the pixel offset. stb 2.30 takes the table's length from the
// offset, refuses only a length of 0, and keeps the table in an uninitialised
// stack array: a length below 1 (an offset inside the header) or an index past
// the table would give pixels of whatever was on the stack. NULL if neither;
// called after stb_least_size's check, so the rows are inside the file.
static char *bmp_palette_problem(const char *name, const uint8_t *data, const uint8_t *header, int width, int height) {
    const long long offset = (int32_t)get_u32(header + 10), header_size = (int32_t)get_u32(header + 14);
    const unsigned bits = header_size == 12 ? le16(header + 24) : le16(header + 28);
    if (bits != 1 && bits != 4 && bits != 8) return NULL;  // no table, or stb refuses the depth itself
    // stb's lengths: (offset - 38) / 3 entries after a 12-byte header, (offset - 14 - header) / 4 after the others.
    const long long entries = header_size == 12 ? (offset - 38) / 3 : (offset - 14 - header_size) / 4;
    if (entries < 1)
        return xasprintf(
            "cannot decode image %s: its BMP pixel offset (%lld) leaves no room for the colour table "
            "stb_image reads; convert it to PNG",
            name, offset);
    if (entries >= 1LL << bits) return NULL;
    const uint64_t row_bytes = bmp_row_bytes((uint64_t)width, bits), stride = (row_bytes + 3) / 4 * 4;
    for (int y = 0; y < height; y++) {
        const uint8_t *row = data + offset + (uint64_t)y * stride;
        for (int x = 0; x < width; x++)
            if (bmp_index(row, (uint64_t)x, bits) >= entries)
                return xasprintf(
                    "cannot decode image %s: a pixel uses colour %u of a BMP colour table of %lld "
                    "(stb_image would read memory it never set); convert it to PNG",
                    name, bmp_index(row, (uint64_t)x, bits), entries);
    }
    return NULL;
}

// A BMP of 16, 24 or 32 bits a pixel may leave a gap between its header and
// its pixels (the offset says where they start). stb 2.30 skips the gap twice
// and reads the pixels from the wrong place: refused, naming the cause. NULL
// if the pixels follow the header (stb checks that the offset is not inside it).
static char *bmp_gap_problem(const char *name, const uint8_t *header) {
    const long long offset = (int32_t)get_u32(header + 10), header_size = (int32_t)get_u32(header + 14);
    const unsigned bits = header_size == 12 ? le16(header + 24) : le16(header + 28);
    const uint32_t compression = header_size == 12 ? 0 : get_u32(header + 30);
    // stb goes this way for these depths only; a 16-bit BMP with a 12-byte header reads a colour table.
    if (bits < (header_size == 12 ? 24u : 16u)) return NULL;
    // The header, then 3 colour masks after a 40- or 56-byte header with bit fields (compression 3).
    const long long masks = (header_size == 40 || header_size == 56) && compression == 3 ? 12 : 0;
    const long long gap = offset - (14 + header_size + masks);
    if (gap <= 0) return NULL;
    return xasprintf(
        "cannot decode image %s: its BMP pixels start %lld bytes after the header, which stb_image 2.30 "
        "misreads (it skips the gap twice); convert it to PNG",
        name, gap);
}

// Where stb reads the file from (stbi_io_callbacks), noting whether it ever
// needed a byte the file does not have.
typedef struct {
    const uint8_t *data;
    size_t size, position;
    const char *refill_buffer;  // stb's own 128-byte buffer
    bool past_end;
} StbSource;

static int stb_read(void *user, char *dst, int wanted) {
    StbSource *source = user;
    const size_t left = source->position < source->size ? source->size - source->position : 0;
    const size_t got = (size_t)wanted < left ? (size_t)wanted : left;
    // stb's first read fills its own buffer (stbi__start_callbacks) and so do
    // all its refills: one that gets nothing makes stb go on with a 0 that is
    // not in the file. Any other read (stbi__getn) wants all it asks for.
    if (!source->refill_buffer) source->refill_buffer = dst;
    const bool refill = dst == source->refill_buffer;
    if (refill ? got == 0 : got < (size_t)wanted) source->past_end = true;
    if (got) memcpy(dst, source->data + source->position, got);
    source->position += got;
    return (int)got;
}

static void stb_skip(void *user, int bytes) {
    StbSource *source = user;
    source->position = (size_t)saturating_add(source->position, (uint64_t)(bytes > 0 ? bytes : 0));
}

static int stb_eof(void *user) {
    const StbSource *source = user;
    return source->position >= source->size;
}

static char *cut_short_error(const char *name, int width, int height, size_t size, StbFormat format, uint64_t least) {
    if (least)
        return xasprintf(
            "image %s claims %d x %d pixels but holds only %zu bytes (a %s that size needs at least %llu): "
            "cut short?",
            name, width, height, size, stb_format_names[format], (unsigned long long)least);
    return xasprintf(
        "image %s claims %d x %d pixels but holds only %zu bytes (its %s pixels run past the end): "
        "cut short?",
        name, width, height, size, stb_format_names[format]);
}

static char *decode_stb(const char *name, const uint8_t *data, size_t size, RgbImage *out) {
    if (size > INT_MAX) return xasprintf("cannot decode image %s: %zu bytes is too large for stb_image", name, size);
    // stb reads the header alone first; it reports the sides it read even when it rejects them (a 4 x 0 PPM).
    int width = -1, height = -1, channels;
    const int known = stbi_info_from_memory(data, (int)size, &width, &height, &channels);
    const StbFormat format = stb_format(data, size);
    // A BMP's height is negative when its rows are stored top-down; stbi_info passes the sign on.
    if (known && format == STB_BMP && height < 0 && height > -IMAGE_MAX_SIDE - 1) height = -height;
    if ((known || (width >= 0 && height >= 0)) && !sides_ok(width, height)) return size_error(name, width, height);
    if (!known) return xasprintf("cannot decode image %s: %s", name, stbi_failure_reason());
    const uint64_t least = stb_least_size(format, data, size, width, height, channels);
    if (size < least) return cut_short_error(name, width, height, size, format, least);
    if (format == STB_BMP) {
        uint8_t header[64] = {0};
        memcpy(header, data, size < sizeof header ? size : sizeof header);
        char *problem = bmp_palette_problem(name, data, header, width, height);
        if (!problem) problem = bmp_gap_problem(name, header);
        if (problem) return problem;
    }
    StbSource source = {.data = data, .size = size};
    const stbi_io_callbacks callbacks = {stb_read, stb_skip, stb_eof};
    int w = 0, h = 0;
    uint8_t *rgb = stbi_load_from_callbacks(&callbacks, &source, &w, &h, &channels, 3);
    if (source.past_end) {  // whether stb noticed or not
        stbi_image_free(rgb);
        return cut_short_error(name, width, height, size, format, 0);
    }
    if (!rgb) return xasprintf("cannot decode image %s: %s", name, stbi_failure_reason());
    if (w != width || h != height) {  // the header read twice must agree
        stbi_image_free(rgb);
        return xasprintf("cannot decode image %s: its header says %d x %d, its pixels %d x %d", name, width, height, w,
                         h);
    }
    // stb's buffer is freed with stbi_image_free; ours with free(): copy (small next to the decode).
    out->rgb = alloc_rgb(w, h);
    memcpy(out->rgb, rgb, (size_t)w * (size_t)h * 3);
    stbi_image_free(rgb);
    out->width = w;
    out->height = h;
    return NULL;
}

// ---------------------------------------------------------------------------
// Dispatch by the first bytes

// Formats stb_image could read that igpt no longer reads: their stb decoders
// carry open security reports (GIF) or see little use and testing (PSD, PIC).
static const char *unsupported_format(const uint8_t *data, size_t size) {
    if (starts_with(data, size, "GIF8", 4)) return "GIF";
    if (starts_with(data, size, "8BPS", 4)) return "PSD";
    if (starts_with(data, size, "\x53\x80\xf6\x34", 4)) return "Softimage PIC";
    if (starts_with(data, size, "#?RADIANCE", 10) || starts_with(data, size, "#?RGBE", 6)) return "Radiance HDR";
    return NULL;
}

char *decode_image(const char *name, const uint8_t *data, size_t size, RgbImage *out) {
    *out = (RgbImage){0, 0, NULL};
    if (size == 0) return xasprintf("cannot decode image %s: the file is empty", name);
    const bool jpeg = starts_with(data, size, "\xff\xd8\xff", 3);
    const bool png = starts_with(data, size, "\x89PNG\r\n\x1a\n", 8);
    const char *unsupported = unsupported_format(data, size);
    if (unsupported)
        return xasprintf("image %s is a %s file; igpt reads JPEG, PNG, BMP, TGA, PPM and PGM: convert it to PNG", name,
                         unsupported);
#ifndef IGPT_NO_JPEG
    if (jpeg) return decode_jpeg(name, data, size, out);
#else
    if (jpeg)
        return xasprintf(
            "image %s is a JPEG and this build (make GPU_ONLY=1) reads no JPEG: prepare the folder on a "
            "machine with the full build and copy the prepared .bin files",
            name);
#endif
#ifndef IGPT_NO_PNG
    if (png) return decode_png(name, data, size, out);
#else
    (void)png;  // stb_image reads PNG in this build
#endif
    return decode_stb(name, data, size, out);
}

// The whole file, or NULL with errno set.
static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *data = NULL;
    size_t used = 0, capacity = 0;
    for (;;) {
        if (used == capacity) {
            capacity = capacity ? 2 * capacity : 65536;
            data = xrealloc(data, capacity);
        }
        const size_t got = fread(data + used, 1, capacity - used, f);
        used += got;
        if (got == 0) break;
    }
    const int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(data);
        errno = EIO;
        return NULL;
    }
    *size = used;
    return data;
}

char *decode_image_file(const char *path, RgbImage *out) {
    *out = (RgbImage){0, 0, NULL};
    size_t size = 0;
    uint8_t *data = read_file(path, &size);
    if (!data) return xasprintf("cannot decode image %s: %s", path, strerror(errno));
    char *error = decode_image(path, data, size, out);
    free(data);
    return error;
}

#define QUOTE_(x) #x
#define QUOTE(x) QUOTE_(x)  // a macro's value as a string
#ifndef IGPT_NO_JPEG
#define JPEG_DECODER "JPEG: libjpeg-turbo " QUOTE(LIBJPEG_TURBO_VERSION) " (islow IDCT, fancy upsampling); "
#else
#define JPEG_DECODER "JPEG: not read (make GPU_ONLY=1); "
#endif
#ifndef IGPT_NO_PNG
#define PNG_DECODER "PNG: libpng " PNG_LIBPNG_VER_STRING "; BMP, TGA, PPM, PGM: stb_image 2.30"
#else
#define PNG_DECODER "PNG, BMP, TGA, PPM, PGM: stb_image 2.30"
#endif

const char *decode_image_decoders(void) { return JPEG_DECODER PNG_DECODER; }
