// Prepared token files (dataset.h; byte layout in docs/formats.md). Training
// reads tokens, not images: quantizing once at prepare time makes every later
// stage exact and fast. The reader trusts nothing: magic, version, sizes,
// both CRCs, every label and every color id are checked before use, so a
// truncated or corrupted file stops with a message instead of training on
// garbage.
#include "data/dataset.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "igpt writes its uint16 arrays in host order and expects a little-endian host"
#endif

// Fixed header fields (byte offsets), all little-endian.
enum {
    OFF_MAGIC = 0,           // 8 bytes "IGPTDATA"
    OFF_VERSION = 8,         // u32
    OFF_HEADER_BYTES = 12,   // u32: 64 + 64 * classes
    OFF_COUNT = 16,          // u64 images
    OFF_HEIGHT = 24,         // u32
    OFF_WIDTH = 28,          // u32
    OFF_COLORS = 32,         // u32
    OFF_CLASSES = 36,        // u32
    OFF_PAYLOAD_BYTES = 40,  // u64
    OFF_PAYLOAD_CRC = 48,    // u32 CRC-32 of the payload
    OFF_HEADER_CRC = 52,     // u32 CRC-32 of the whole header with this field zeroed
    OFF_EXACT_CRC = 56,      // u32 the palette's identity when tokenized with exact centers, else 0; 60..63 zero
};

void palette_from_file(const char *path, Palette *pal) {
    if (regular_file_size(path) < 0) die("%s: no such palette or prepared data file", path);
    FILE *f = xfopen(path, "rb");
    char magic[8] = {0};
    const bool is_dataset =
        fread(magic, 1, sizeof magic, f) == sizeof magic && memcmp(magic, IGPT_DATASET_MAGIC, sizeof magic) == 0;
    fclose(f);
    if (!is_dataset) {
        palette_load(path, pal);
        return;
    }
    TokenDataset ds;
    dataset_read(path, &ds);
    // Its colors are only the rounding of the centers its tokens came from:
    // they would tokenize other images differently.
    if (ds.palette.exact_crc)
        die("%s was tokenized with exact cluster centers it does not hold; give --palette the palette.bin it was "
            "prepared with",
            path);
    palette_copy(&ds.palette, pal);
    dataset_free(&ds);
}

int64_t dataset_tokens_per_image(const TokenDataset *ds) { return (int64_t)ds->height * ds->width; }

void evenly_spaced(int64_t n, int64_t count, int64_t *indices) {
    for (int64_t i = 0; i < count; i++) indices[i] = i * n / count;
}

// Saturating: a header's count times its image size may not fit in 64 bits.
static uint64_t payload_bytes(int64_t count, int64_t tokens_per_image, int colors) {
    const uint64_t token_bytes = saturating_mul(saturating_mul((uint64_t)count, (uint64_t)tokens_per_image), 2);
    return saturating_add(saturating_add((uint64_t)colors * 3, saturating_mul((uint64_t)count, 2)), token_bytes);
}

uint64_t dataset_from_images(const ImageSet *images, const Palette *palette, int threads, TokenDataset *out) {
    memset(out, 0, sizeof *out);
    out->count = images->count;
    out->height = images->height;
    out->width = images->width;
    out->num_classes = images->num_classes;
    out->class_names = xcalloc((size_t)images->num_classes, sizeof(ClassName));
    memcpy(out->class_names, images->class_names, (size_t)images->num_classes * sizeof(ClassName));
    palette_copy(palette, &out->palette);
    out->labels = xmalloc((size_t)images->count * sizeof(uint16_t));
    memcpy(out->labels, images->labels, (size_t)images->count * sizeof(uint16_t));
    int64_t pixels = images->count * images->height * images->width;
    out->tokens = xmalloc((size_t)pixels * sizeof(uint16_t));
    return palette_quantize(palette, images->pixels, pixels, out->tokens, threads);
}

void dataset_write(const char *path, const TokenDataset *ds) {
    const uint32_t header_bytes = IGPT_DATASET_FIXED_HEADER_BYTES + (uint32_t)ds->num_classes * IGPT_CLASS_NAME_BYTES;
    const int64_t tpi = dataset_tokens_per_image(ds);
    uint8_t *header = xcalloc(header_bytes, 1);
    memcpy(header + OFF_MAGIC, IGPT_DATASET_MAGIC, 8);
    put_u32(header + OFF_VERSION, IGPT_DATASET_VERSION);
    put_u32(header + OFF_HEADER_BYTES, header_bytes);
    put_u64(header + OFF_COUNT, (uint64_t)ds->count);
    put_u32(header + OFF_HEIGHT, (uint32_t)ds->height);
    put_u32(header + OFF_WIDTH, (uint32_t)ds->width);
    put_u32(header + OFF_COLORS, (uint32_t)ds->palette.colors);
    put_u32(header + OFF_CLASSES, (uint32_t)ds->num_classes);
    put_u64(header + OFF_PAYLOAD_BYTES, payload_bytes(ds->count, tpi, ds->palette.colors));
    memcpy(header + IGPT_DATASET_FIXED_HEADER_BYTES, ds->class_names, (size_t)ds->num_classes * IGPT_CLASS_NAME_BYTES);
    uint32_t crc = crc32_update(0, ds->palette.rgb, (size_t)ds->palette.colors * 3);
    crc = crc32_update(crc, ds->labels, (size_t)ds->count * 2);
    crc = crc32_update(crc, ds->tokens, (size_t)(ds->count * tpi) * 2);
    put_u32(header + OFF_PAYLOAD_CRC, crc);
    // The file holds the 8-bit colors only: a palette with exact centers leaves its identity.
    const Palette *pal = &ds->palette;
    if (pal->centers || pal->exact_crc) put_u32(header + OFF_EXACT_CRC, palette_crc(pal));
    put_u32(header + OFF_HEADER_CRC, crc32_update(0, header, header_bytes));

    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, header, header_bytes);
    atomic_write(&af, ds->palette.rgb, (size_t)ds->palette.colors * 3);
    atomic_write(&af, ds->labels, (size_t)ds->count * 2);
    atomic_write(&af, ds->tokens, (size_t)(ds->count * tpi) * 2);
    atomic_commit(&af);
    free(header);
}

static uint32_t checked_field(const char *path, const char *what, uint32_t value, uint32_t lo, uint32_t hi) {
    if (value < lo || value > hi) die("%s: %s is %u, expected %u..%u (corrupt header?)", path, what, value, lo, hi);
    return value;
}

// The header: the fixed part, then the class names, checked by its CRC.
static uint8_t *read_header(const char *path, FILE *f, int64_t size, uint32_t *header_bytes) {
    uint8_t fixed[IGPT_DATASET_FIXED_HEADER_BYTES];
    if (size < IGPT_DATASET_FIXED_HEADER_BYTES || fread(fixed, 1, sizeof fixed, f) != sizeof fixed)
        die("%s is too short to be an igpt prepared data file (%lld bytes)", path, (long long)size);
    if (memcmp(fixed + OFF_MAGIC, IGPT_DATASET_MAGIC, 8) != 0)
        die("%s is not an igpt prepared data file (bad magic)", path);
    const uint32_t version = get_u32(fixed + OFF_VERSION);
    if (version != IGPT_DATASET_VERSION)
        die("%s: data format version %u, this igpt reads version %u (prepare it again)", path, version,
            IGPT_DATASET_VERSION);
    const uint32_t classes = checked_field(path, "class count", get_u32(fixed + OFF_CLASSES), 1, IGPT_MAX_CLASSES);
    *header_bytes = get_u32(fixed + OFF_HEADER_BYTES);
    if (*header_bytes != IGPT_DATASET_FIXED_HEADER_BYTES + classes * IGPT_CLASS_NAME_BYTES || *header_bytes > size)
        die("%s: header size %u does not match %u classes (corrupt or truncated header)", path, *header_bytes, classes);
    uint8_t *header = xmalloc(*header_bytes);
    memcpy(header, fixed, sizeof fixed);
    xfread(header + sizeof fixed, *header_bytes - sizeof fixed, f, path);
    const uint32_t stored_header_crc = get_u32(header + OFF_HEADER_CRC);
    put_u32(header + OFF_HEADER_CRC, 0);
    if (crc32_update(0, header, *header_bytes) != stored_header_crc) die("%s: header is corrupt (CRC mismatch)", path);
    return header;
}

// The header's fields into ds (no payload yet), each in range and the sizes
// they promise equal to the file's; returns the palette's color count.
static int decode_header(const char *path, const uint8_t *header, uint32_t header_bytes, int64_t size,
                         TokenDataset *ds) {
    const uint32_t classes = get_u32(header + OFF_CLASSES);
    ds->count = (int64_t)get_u64(header + OFF_COUNT);
    ds->height =
        (int)checked_field(path, "height", get_u32(header + OFF_HEIGHT), IGPT_MIN_RESOLUTION, IGPT_MAX_RESOLUTION);
    ds->width =
        (int)checked_field(path, "width", get_u32(header + OFF_WIDTH), IGPT_MIN_RESOLUTION, IGPT_MAX_RESOLUTION);
    const int colors =
        (int)checked_field(path, "color count", get_u32(header + OFF_COLORS), IGPT_MIN_COLORS, IGPT_MAX_COLORS);
    ds->num_classes = (int)classes;
    if (ds->count < 1 || ds->count > (int64_t)1 << 40)
        die("%s: image count %lld is implausible", path, (long long)ds->count);
    const int64_t tpi = dataset_tokens_per_image(ds);
    const uint64_t expected_payload = payload_bytes(ds->count, tpi, colors);
    if (get_u64(header + OFF_PAYLOAD_BYTES) != expected_payload)
        die("%s: payload size field does not match %lld images of %dx%d (corrupt header)", path, (long long)ds->count,
            ds->height, ds->width);
    if ((uint64_t)size != saturating_add(header_bytes, expected_payload))
        die("%s: %lld bytes, expected %llu for %lld images of %dx%d with %d colors (truncated or padded file)", path,
            (long long)size, (unsigned long long)saturating_add(header_bytes, expected_payload), (long long)ds->count,
            ds->height, ds->width, colors);
    ds->class_names = xcalloc(classes, sizeof(ClassName));
    memcpy(ds->class_names, header + IGPT_DATASET_FIXED_HEADER_BYTES, (size_t)classes * IGPT_CLASS_NAME_BYTES);
    for (uint32_t c = 0; c < classes; c++)
        if (ds->class_names[c][0] == '\0' || ds->class_names[c][IGPT_CLASS_NAME_BYTES - 1] != '\0')
            die("%s: class name %u is empty or unterminated (corrupt header)", path, c);
    return colors;
}

// The palette, labels and tokens, checked by the payload CRC and for labels
// and color ids in range.
static void read_payload(const char *path, FILE *f, uint32_t payload_crc, int colors, TokenDataset *ds) {
    const int64_t tpi = dataset_tokens_per_image(ds);
    palette_alloc(&ds->palette, colors);
    ds->labels = xmalloc((size_t)ds->count * 2);
    ds->tokens = xmalloc((size_t)(ds->count * tpi) * 2);
    xfread(ds->palette.rgb, (size_t)colors * 3, f, path);
    xfread(ds->labels, (size_t)ds->count * 2, f, path);
    xfread(ds->tokens, (size_t)(ds->count * tpi) * 2, f, path);
    uint32_t crc = crc32_update(0, ds->palette.rgb, (size_t)colors * 3);
    crc = crc32_update(crc, ds->labels, (size_t)ds->count * 2);
    crc = crc32_update(crc, ds->tokens, (size_t)(ds->count * tpi) * 2);
    if (crc != payload_crc) die("%s: data is corrupt (payload CRC mismatch)", path);
    for (int64_t i = 0; i < ds->count; i++)
        if (ds->labels[i] >= ds->num_classes)
            die("%s: image %lld has label %u, but there are %d classes", path, (long long)i, ds->labels[i],
                ds->num_classes);
    for (int64_t i = 0; i < ds->count * tpi; i++)
        if (ds->tokens[i] >= colors)
            die("%s: image %lld has color id %u, but the palette has %d colors", path, (long long)(i / tpi),
                ds->tokens[i], colors);
}

void dataset_read(const char *path, TokenDataset *ds) {
    memset(ds, 0, sizeof *ds);
    const int64_t size = regular_file_size(path);
    if (size < 0) die("%s: no such file (prepare one with ./igpt prepare)", path);
    FILE *f = xfopen(path, "rb");
    uint32_t header_bytes;
    uint8_t *header = read_header(path, f, size, &header_bytes);
    const int colors = decode_header(path, header, header_bytes, size, ds);
    read_payload(path, f, get_u32(header + OFF_PAYLOAD_CRC), colors, ds);
    ds->palette.exact_crc = get_u32(header + OFF_EXACT_CRC);
    fclose(f);
    free(header);
}

void dataset_free(TokenDataset *ds) {
    free(ds->class_names);
    palette_free(&ds->palette);
    free(ds->labels);
    free(ds->tokens);
    memset(ds, 0, sizeof *ds);
}
