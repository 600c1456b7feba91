// The .igpz container: writing its header, reading and checking a whole file
// (compress/igpz.h; the byte layout is in docs/formats.md).
#include "compress/igpz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "util/util.h"

// Offsets in the fixed header.
enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 8,
    OFF_HEADER_BYTES = 12,
    OFF_COLORS = 16,
    OFF_HEIGHT = 20,
    OFF_WIDTH = 24,
    OFF_D_MODEL = 28,
    OFF_N_LAYER = 32,
    OFF_N_HEAD = 36,
    OFF_NORM = 40,
    OFF_PARAMS_CRC = 44,
    OFF_STEP = 48,
    OFF_DEVICE = 56,
    OFF_PRECISION = 60,
    OFF_COUNT = 64,
    OFF_GROUP = 72,
    OFF_CLASSES = 76,
    OFF_PALETTE_CRC = 80,  // palette_crc: of the colors, or the identity of exact centers they round
    OFF_GPU_NAME_BYTES = 84,
    OFF_GROUPS = 88,
    // 92..127: zeros, for later fields
};

static size_t class_names_bytes(const IgpzHeader *h) {
    size_t bytes = 0;
    for (int c = 0; c < h->num_classes; c++) bytes += 1 + strlen(h->class_names[c]);
    return bytes;
}

int64_t igpz_num_groups(int64_t count, int group) { return (count + group - 1) / group; }

uint8_t *igpz_header_bytes(const IgpzHeader *h, size_t *size) {
    const size_t name_bytes = strlen(h->gpu_name), colors = (size_t)h->palette.colors;
    const size_t bytes = IGPT_IGPZ_FIXED_HEADER_BYTES + name_bytes + colors * 3 + class_names_bytes(h) + 4;
    uint8_t *out = xcalloc(bytes, 1);
    memcpy(out + OFF_MAGIC, IGPT_IGPZ_MAGIC, 8);
    put_u32(out + OFF_VERSION, IGPT_IGPZ_VERSION);
    put_u32(out + OFF_HEADER_BYTES, (uint32_t)bytes);
    put_u32(out + OFF_COLORS, (uint32_t)h->model.vocab_size);
    put_u32(out + OFF_HEIGHT, (uint32_t)h->model.image_height);
    put_u32(out + OFF_WIDTH, (uint32_t)h->model.image_width);
    put_u32(out + OFF_D_MODEL, (uint32_t)h->model.d_model);
    put_u32(out + OFF_N_LAYER, (uint32_t)h->model.n_layer);
    put_u32(out + OFF_N_HEAD, (uint32_t)h->model.n_head);
    put_u32(out + OFF_NORM, (uint32_t)h->model.norm);
    put_u32(out + OFF_PARAMS_CRC, h->params_crc);
    put_u64(out + OFF_STEP, h->step);
    put_u32(out + OFF_DEVICE, (uint32_t)h->device);
    put_u32(out + OFF_PRECISION, (uint32_t)h->precision);
    put_u64(out + OFF_COUNT, (uint64_t)h->count);
    put_u32(out + OFF_GROUP, (uint32_t)h->group);
    put_u32(out + OFF_CLASSES, (uint32_t)h->num_classes);
    put_u32(out + OFF_PALETTE_CRC, palette_crc(&h->palette));
    put_u32(out + OFF_GPU_NAME_BYTES, (uint32_t)name_bytes);
    put_u32(out + OFF_GROUPS, (uint32_t)igpz_num_groups(h->count, h->group));
    uint8_t *p = out + IGPT_IGPZ_FIXED_HEADER_BYTES;
    memcpy(p, h->gpu_name, name_bytes);
    p += name_bytes;
    memcpy(p, h->palette.rgb, colors * 3);
    p += colors * 3;
    for (int c = 0; c < h->num_classes; c++) {
        const size_t len = strlen(h->class_names[c]);
        *p++ = (uint8_t)len;
        memcpy(p, h->class_names[c], len);
        p += len;
    }
    put_u32(p, crc32_update(0, out, bytes - 4));
    *size = bytes;
    return out;
}

void igpz_group_header(uint8_t out[IGPT_IGPZ_GROUP_HEADER_BYTES], uint32_t payload_bytes, uint32_t payload_crc,
                       uint32_t tokens_crc) {
    put_u32(out, payload_bytes);
    put_u32(out + 4, payload_crc);
    put_u32(out + 8, tokens_crc);
}

uint32_t igpz_tokens_crc(const uint16_t *tokens, const uint16_t *labels, int64_t count, int64_t T) {
    // igpt's files are little-endian and so are the hosts it runs on: the uint16s' bytes as they lie.
    const uint32_t crc = crc32_update(0, tokens, (size_t)(count * T) * 2);
    return crc32_update(crc, labels, (size_t)count * 2);
}

// --- Reading ---------------------------------------------------------------------------

static uint32_t field(const char *path, const char *what, uint32_t value, uint32_t lo, uint32_t hi) {
    if (value < lo || value > hi) die("%s: %s is %u, expected %u..%u (corrupt header?)", path, what, value, lo, hi);
    return value;
}

// The fixed header's numbers into h (the model's configuration checked whole).
static void read_fixed(const char *path, const uint8_t *b, IgpzHeader *h) {
    ModelConfig *m = &h->model;
    m->vocab_size = (int)field(path, "color count", get_u32(b + OFF_COLORS), IGPT_MIN_COLORS, IGPT_MAX_COLORS);
    m->image_height = (int)field(path, "height", get_u32(b + OFF_HEIGHT), 1, MODEL_MAX_IMAGE_SIDE);
    m->image_width = (int)field(path, "width", get_u32(b + OFF_WIDTH), 1, MODEL_MAX_IMAGE_SIDE);
    m->seq_len = m->image_height * m->image_width;
    m->d_model = (int)field(path, "d_model", get_u32(b + OFF_D_MODEL), 1, MODEL_MAX_D_MODEL);
    m->n_layer = (int)field(path, "layer count", get_u32(b + OFF_N_LAYER), 1, MODEL_MAX_LAYERS);
    m->n_head = (int)field(path, "head count", get_u32(b + OFF_N_HEAD), 1, MODEL_MAX_HEADS);
    m->norm = (NormKind)field(path, "norm", get_u32(b + OFF_NORM), NORM_IGPT, NORM_LAYERNORM);
    char why[256];
    if (model_config_problem(m, why, sizeof why))
        die("%s: the model it names is impossible: %s (corrupt header?)", path, why);
    h->params_crc = get_u32(b + OFF_PARAMS_CRC);
    h->step = get_u64(b + OFF_STEP);
    h->device = (DeviceKind)field(path, "device", get_u32(b + OFF_DEVICE), DEVICE_CPU, DEVICE_CUDA);
    h->precision = (GpuPrecision)field(path, "precision", get_u32(b + OFF_PRECISION), GPU_BF16, GPU_FP32);
    const uint64_t count = get_u64(b + OFF_COUNT);
    if (count < 1 || count > (uint64_t)1 << 40)
        die("%s: image count %llu is implausible (corrupt header?)", path, (unsigned long long)count);
    h->count = (int64_t)count;
    h->group = (int)field(path, "group size", get_u32(b + OFF_GROUP), 1, IGPT_IGPZ_MAX_GROUP);
    h->num_classes = (int)field(path, "class count", get_u32(b + OFF_CLASSES), 1, IGPT_MAX_CLASSES);
    if (get_u32(b + OFF_GROUPS) != (uint64_t)igpz_num_groups(h->count, h->group))
        die("%s: %u groups recorded for %lld images in groups of %d (corrupt header)", path, get_u32(b + OFF_GROUPS),
            (long long)h->count, h->group);
}

// The variable part: GPU name, palette, class names; checked against the fixed part.
static void read_variable(const char *path, const uint8_t *b, size_t header_bytes, IgpzHeader *h) {
    const uint8_t *p = b + IGPT_IGPZ_FIXED_HEADER_BYTES, *end = b + header_bytes - 4;
    const size_t name_bytes = get_u32(b + OFF_GPU_NAME_BYTES);  // already checked to fit
    memcpy(h->gpu_name, p, name_bytes);
    h->gpu_name[name_bytes] = '\0';
    if (strlen(h->gpu_name) != name_bytes) die("%s: the GPU's name holds a NUL byte (corrupt header)", path);
    if ((h->device == DEVICE_CPU) != (name_bytes == 0))
        die("%s: a GPU name is recorded %s (corrupt header)", path,
            h->device == DEVICE_CPU ? "for the CPU" : "missing");
    p += name_bytes;
    palette_alloc(&h->palette, h->model.vocab_size);
    memcpy(h->palette.rgb, p, (size_t)h->model.vocab_size * 3);
    p += (size_t)h->model.vocab_size * 3;
    // The palette's identity (palette_crc): the CRC of its colors, or, for a
    // palette with exact centers, the identity of those (the header's own CRC
    // covers both the field and the colors).
    const uint32_t identity = get_u32(b + OFF_PALETTE_CRC);
    if (identity == 0) die("%s: the palette's CRC is 0 (corrupt header)", path);
    if (identity != palette_crc(&h->palette)) h->palette.exact_crc = identity;
    h->class_names = xcalloc((size_t)h->num_classes, sizeof(ClassName));
    for (int c = 0; c < h->num_classes; c++) {
        const size_t len = p < end ? *p++ : 0;
        if (len < 1 || len >= IGPT_CLASS_NAME_BYTES || len > (size_t)(end - p))
            die("%s: class name %d has a length of %zu bytes, expected 1..%d within the header (corrupt header)", path,
                c, len, IGPT_CLASS_NAME_BYTES - 1);
        memcpy(h->class_names[c], p, len);
        if (strlen(h->class_names[c]) != len) die("%s: class name %d holds a NUL byte (corrupt header)", path, c);
        p += len;
    }
    if (p != end) die("%s: the header holds %zu bytes more than its fields (corrupt header)", path, (size_t)(end - p));
}

// The header of bytes[0 .. size): checked and decoded into f->header; returns its length.
static size_t read_header(const char *path, const uint8_t *bytes, size_t size, IgpzHeader *h) {
    if (size < 8 || memcmp(bytes, IGPT_IGPZ_MAGIC, 8) != 0)
        die("%s is not an igpt compressed file (bad magic; ./igpt compress writes them)", path);
    if (size < IGPT_IGPZ_FIXED_HEADER_BYTES + 4)
        die("%s is too short to be an igpt compressed file (%zu bytes; truncated?)", path, size);
    const uint32_t version = get_u32(bytes + OFF_VERSION);
    if (version != IGPT_IGPZ_VERSION)
        die("%s: compressed format version %u, this igpt reads version %u", path, version, IGPT_IGPZ_VERSION);
    const size_t header_bytes = get_u32(bytes + OFF_HEADER_BYTES);
    if (header_bytes < IGPT_IGPZ_FIXED_HEADER_BYTES + 4 || header_bytes > size)
        die("%s: header size %zu, but the file has %zu bytes (truncated or corrupt)", path, header_bytes, size);
    if (crc32_update(0, bytes, header_bytes - 4) != get_u32(bytes + header_bytes - 4))
        die("%s: header is corrupt (CRC mismatch)", path);
    read_fixed(path, bytes, h);
    const uint64_t needed = IGPT_IGPZ_FIXED_HEADER_BYTES + (uint64_t)get_u32(bytes + OFF_GPU_NAME_BYTES) +
                            (uint64_t)h->model.vocab_size * 3 + 2 * (uint64_t)h->num_classes + 4;
    if (get_u32(bytes + OFF_GPU_NAME_BYTES) > IGPT_IGPZ_MAX_GPU_NAME || needed > header_bytes)
        die("%s: header size %zu is too small for its GPU name, %d colors and %d class names (corrupt header)", path,
            header_bytes, h->model.vocab_size, h->num_classes);
    read_variable(path, bytes, header_bytes, h);
    return header_bytes;
}

// Each group's length and payload CRC, in order, to the last byte of the file.
static void read_groups(const char *path, IgpzFile *f, size_t offset) {
    const IgpzHeader *h = &f->header;
    f->num_groups = igpz_num_groups(h->count, h->group);
    if ((uint64_t)f->num_groups > (f->size - offset) / IGPT_IGPZ_GROUP_HEADER_BYTES)
        die("%s: %lld groups cannot fit in its %zu bytes (truncated file)", path, (long long)f->num_groups, f->size);
    f->groups = xcalloc((size_t)f->num_groups, sizeof *f->groups);
    for (int64_t g = 0; g < f->num_groups; g++) {
        IgpzGroup *group = &f->groups[g];
        group->first = g * h->group;
        group->count = h->count - group->first < h->group ? h->count - group->first : h->group;
        if (f->size - offset < IGPT_IGPZ_GROUP_HEADER_BYTES)
            die("%s: truncated: group %lld of %lld (images %lld..) is missing", path, (long long)g + 1,
                (long long)f->num_groups, (long long)group->first);
        const uint8_t *b = f->bytes + offset;
        group->payload_bytes = get_u32(b);
        group->payload_crc = get_u32(b + 4);
        group->tokens_crc = get_u32(b + 8);
        offset += IGPT_IGPZ_GROUP_HEADER_BYTES;
        if (group->payload_bytes > f->size - offset)
            die("%s: truncated: group %lld of %lld holds %u bytes, %zu are left", path, (long long)g + 1,
                (long long)f->num_groups, group->payload_bytes, f->size - offset);
        if (group->payload_bytes < 4)  // the coder ends every stream with 4 bytes
            die("%s: group %lld of %lld holds %u bytes, less than any stream (corrupt file)", path, (long long)g + 1,
                (long long)f->num_groups, group->payload_bytes);
        group->payload = f->bytes + offset;
        if (crc32_update(0, group->payload, group->payload_bytes) != group->payload_crc)
            die("%s: group %lld of %lld (images %lld..%lld) is corrupt (CRC mismatch)", path, (long long)g + 1,
                (long long)f->num_groups, (long long)group->first, (long long)(group->first + group->count - 1));
        offset += group->payload_bytes;
    }
    if (offset != f->size)
        die("%s: %zu bytes after the last group (a padded or concatenated file?)", path, f->size - offset);
}

void igpz_read(const char *path, IgpzFile *f) {
    memset(f, 0, sizeof *f);
    const int64_t size = regular_file_size(path);
    if (size < 0) die("%s: no such file", path);
    f->bytes = read_whole_file(path, &f->size);
    if (!f->bytes) die("%s: cannot read it", path);
    const size_t header_bytes = read_header(path, f->bytes, f->size, &f->header);
    read_groups(path, f, header_bytes);
}

void igpz_header_free(IgpzHeader *h) {
    free(h->class_names);
    palette_free(&h->palette);
    h->class_names = NULL;
}

void igpz_free(IgpzFile *f) {
    igpz_header_free(&f->header);
    free(f->groups);
    free(f->bytes);
    memset(f, 0, sizeof *f);
}

void igpz_describe_device(const IgpzHeader *h, char *out, size_t cap) {
    if (h->device == DEVICE_CPU) snprintf(out, cap, "cpu");
    else snprintf(out, cap, "cuda (%s, %s)", precision_name(h->precision), h->gpu_name);
}
