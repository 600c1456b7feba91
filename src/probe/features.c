// Probe features (features.h). iGPT's linear probes read a layer through the
// normalised input of its block (what the paper calls the post-layernorm
// attention block input), averaged over the T positions: the norm takes out
// the residual stream's scale, which grows with depth, and the average turns
// a T x C sequence into one C-vector per image that a linear classifier can
// use. Layer L is the final norm's output. Features are computed once per
// checkpoint and cached in a checked file (docs/formats.md), keyed by CRCs
// of the parameters and of the images, so a probe never reuses stale ones.
#include "probe/features.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "util/util.h"

enum {
    F_MAGIC = 0,         // 8
    F_VERSION = 8,       // u32
    F_COUNT = 12,        // u64
    F_LAYERS = 20,       // u32
    F_DIM = 24,          // u32
    F_CLASSES = 28,      // u32
    F_MODEL_CRC = 32,    // u32
    F_DATA_CRC = 36,     // u32
    F_STEP = 40,         // u64
    F_PAYLOAD_CRC = 48,  // u32
    F_HEADER_CRC = 52,   // u32 of the 64 header bytes with this field zero
    F_GEN_LOSS = 56,     // f64
    F_HEADER_BYTES = 64,
};

uint32_t images_crc(const TokenDataset *data, const int64_t *indices, int64_t count) {
    const int64_t tpi = dataset_tokens_per_image(data);
    uint32_t crc = 0;
    for (int64_t i = 0; i < count; i++) {
        crc = crc32_update(crc, data->labels + indices[i], 2);
        crc = crc32_update(crc, data->tokens + (size_t)indices[i] * tpi, (size_t)tpi * 2);
    }
    return crc;
}

static void alloc_features(FeatureSet *fs, int64_t count, int layers, int dim, int classes) {
    fs->count = count;
    fs->layers = layers;
    fs->dim = dim;
    fs->num_classes = classes;
    fs->labels = xmalloc((size_t)count * 2);
    fs->values = xmalloc((size_t)count * (size_t)layers * (size_t)dim * sizeof(float));
}

void extract_features(Backend *m, const TokenDataset *data, const int64_t *indices, int64_t count, int batch,
                      uint32_t model_crc, uint64_t step, FeatureSet *out) {
    const int64_t tpi = dataset_tokens_per_image(data);
    const int layers = m->cfg.n_layer + 1, C = m->cfg.d_model;
    alloc_features(out, count, layers, C, data->num_classes);
    out->model_crc = model_crc;
    out->data_crc = images_crc(data, indices, count);
    out->step = step;
    uint16_t *tokens = xmalloc((size_t)batch * tpi * 2);
    double loss = 0.0;
    Progress progress;
    progress_start(&progress, "features", (uint64_t)count);
    for (int64_t i = 0; i < count; i += batch) {
        int n = (int)(count - i < batch ? count - i : batch);
        for (int b = 0; b < n; b++) {
            memcpy(tokens + (size_t)b * tpi, data->tokens + (size_t)indices[i + b] * tpi, (size_t)tpi * 2);
            out->labels[i + b] = data->labels[indices[i + b]];
        }
        loss += backend_forward(m, tokens, n) * n;
        backend_features(m, n, out->values + (size_t)i * layers * C);
        progress_update(&progress, (uint64_t)(i + n), NULL);
    }
    progress_finish(&progress, NULL);
    out->gen_loss = loss / (double)count;
    free(tokens);
}

void pixel_features(const TokenDataset *data, const int64_t *indices, int64_t count, FeatureSet *out) {
    const int64_t tpi = dataset_tokens_per_image(data);
    alloc_features(out, count, 1, (int)(tpi * 3), data->num_classes);
    out->model_crc = 0;
    out->data_crc = images_crc(data, indices, count);
    out->step = 0;
    out->gen_loss = NAN;
    for (int64_t i = 0; i < count; i++) {
        out->labels[i] = data->labels[indices[i]];
        const uint16_t *tok = data->tokens + (size_t)indices[i] * tpi;
        float *f = out->values + (size_t)i * tpi * 3;
        for (int64_t p = 0; p < tpi; p++)
            for (int c = 0; c < 3; c++) f[p * 3 + c] = data->palette.rgb[tok[p] * 3 + c];
    }
}

void features_save(const char *path, const FeatureSet *fs) {
    const size_t label_bytes = (size_t)fs->count * 2;
    const size_t value_bytes = (size_t)fs->count * fs->layers * fs->dim * sizeof(float);
    uint8_t h[F_HEADER_BYTES] = {0};
    memcpy(h + F_MAGIC, IGPT_FEATURES_MAGIC, 8);
    put_u32(h + F_VERSION, IGPT_FEATURES_VERSION);
    put_u64(h + F_COUNT, (uint64_t)fs->count);
    put_u32(h + F_LAYERS, (uint32_t)fs->layers);
    put_u32(h + F_DIM, (uint32_t)fs->dim);
    put_u32(h + F_CLASSES, (uint32_t)fs->num_classes);
    put_u32(h + F_MODEL_CRC, fs->model_crc);
    put_u32(h + F_DATA_CRC, fs->data_crc);
    put_u64(h + F_STEP, fs->step);
    uint64_t loss_bits;
    memcpy(&loss_bits, &fs->gen_loss, 8);
    put_u64(h + F_GEN_LOSS, loss_bits);
    put_u32(h + F_PAYLOAD_CRC, crc32_update(crc32_update(0, fs->labels, label_bytes), fs->values, value_bytes));
    put_u32(h + F_HEADER_CRC, crc32_update(0, h, sizeof h));
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, h, sizeof h);
    atomic_write(&af, fs->labels, label_bytes);
    atomic_write(&af, fs->values, value_bytes);
    atomic_commit(&af);
}

// The largest feature vector: d_model, or the pixels baseline's H x W x 3.
#define FEATURES_MAX_DIM                                               \
    (MODEL_MAX_D_MODEL > IGPT_MAX_RESOLUTION * IGPT_MAX_RESOLUTION * 3 \
         ? MODEL_MAX_D_MODEL                                           \
         : IGPT_MAX_RESOLUTION * IGPT_MAX_RESOLUTION * 3)

// The header's counts, each in the range igpt writes, and the sizes they
// promise equal to the file's (saturating: no product wraps around).
static void check_feature_counts(const char *path, const uint8_t *h, int64_t size, uint64_t *label_bytes,
                                 uint64_t *value_bytes) {
    const uint64_t count = get_u64(h + F_COUNT);
    const uint32_t layers = get_u32(h + F_LAYERS), dim = get_u32(h + F_DIM), classes = get_u32(h + F_CLASSES);
    if (count < 1 || count > (uint64_t)1 << 40 || layers < 1 || layers > MODEL_MAX_LAYERS + 1 || dim < 1 ||
        dim > FEATURES_MAX_DIM || classes < 1 || classes > IGPT_MAX_CLASSES)
        die("%s: %llu images, %u layers, feature size %u, %u classes: out of range (corrupt feature file)", path,
            (unsigned long long)count, layers, dim, classes);
    *label_bytes = saturating_mul(count, 2);
    *value_bytes = saturating_mul(saturating_mul(saturating_mul(count, layers), dim), sizeof(float));
    const uint64_t expected = saturating_add(saturating_add(F_HEADER_BYTES, *label_bytes), *value_bytes);
    if ((uint64_t)size != expected)
        die("%s: %lld bytes, expected %llu (truncated feature file)", path, (long long)size,
            (unsigned long long)expected);
}

void features_load(const char *path, FeatureSet *fs) {
    const int64_t size = regular_file_size(path);
    if (size < 0) die("%s: no such feature file", path);
    FILE *f = xfopen(path, "rb");
    uint8_t h[F_HEADER_BYTES];
    if (fread(h, 1, sizeof h, f) != sizeof h || memcmp(h, IGPT_FEATURES_MAGIC, 8) != 0)
        die("%s is not an igpt feature file (bad magic)", path);
    if (get_u32(h + F_VERSION) != IGPT_FEATURES_VERSION)
        die("%s: feature format version %u, this igpt reads version %u", path, get_u32(h + F_VERSION),
            IGPT_FEATURES_VERSION);
    uint32_t stored = get_u32(h + F_HEADER_CRC);
    put_u32(h + F_HEADER_CRC, 0);
    if (crc32_update(0, h, sizeof h) != stored) die("%s: feature file header is corrupt (CRC mismatch)", path);
    uint64_t label_bytes, value_bytes;
    check_feature_counts(path, h, size, &label_bytes, &value_bytes);
    memset(fs, 0, sizeof *fs);
    alloc_features(fs, (int64_t)get_u64(h + F_COUNT), (int)get_u32(h + F_LAYERS), (int)get_u32(h + F_DIM),
                   (int)get_u32(h + F_CLASSES));
    fs->model_crc = get_u32(h + F_MODEL_CRC);
    fs->data_crc = get_u32(h + F_DATA_CRC);
    fs->step = get_u64(h + F_STEP);
    uint64_t loss_bits = get_u64(h + F_GEN_LOSS);
    memcpy(&fs->gen_loss, &loss_bits, 8);
    xfread(fs->labels, label_bytes, f, path);
    xfread(fs->values, value_bytes, f, path);
    fclose(f);
    if (crc32_update(crc32_update(0, fs->labels, label_bytes), fs->values, value_bytes) != get_u32(h + F_PAYLOAD_CRC))
        die("%s: feature data is corrupt (CRC mismatch)", path);
    for (int64_t i = 0; i < fs->count; i++)  // the probe indexes its classes by label
        if (fs->labels[i] >= fs->num_classes)
            die("%s: image %lld has label %u, but there are %d classes (corrupt feature file)", path, (long long)i,
                fs->labels[i], fs->num_classes);
}

void features_free(FeatureSet *fs) {
    free(fs->labels);
    free(fs->values);
    memset(fs, 0, sizeof *fs);
}
