// Small datasets the tests create on the fly.
#include <stdlib.h>
#include <string.h>

#include "data/images.h"
#include "data/palette.h"
#include "stb/stb_image_write.h"
#include "test.h"

uint8_t cifar_fixture_byte(int batch, int record, int offset) {
    if (offset == 0) return (uint8_t)((record + batch) % CIFAR10_CLASSES);
    // A hash of the position: deterministic, independent of write order.
    uint64_t h = (uint64_t)batch * 1000003u + (uint64_t)record * 7919u + (uint64_t)offset * 104729u;
    h ^= h >> 13;
    h *= 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    // Coarse levels (multiples of 32) keep k-means on the fixture well-posed.
    return (uint8_t)((h >> 8) & 0xE0);
}

void make_cifar_batches(const char *dir, int per_batch, int test_records) {
    make_directories(dir);
    uint8_t record[CIFAR10_RECORD_BYTES];
    for (int batch = 0; batch < 6; batch++) {
        char *path =
            batch < 5 ? xasprintf("%s/data_batch_%d.bin", dir, batch + 1) : xasprintf("%s/test_batch.bin", dir);
        int n = batch < 5 ? per_batch : test_records;
        FILE *f = xfopen(path, "wb");
        for (int r = 0; r < n; r++) {
            for (int o = 0; o < CIFAR10_RECORD_BYTES; o++) record[o] = cifar_fixture_byte(batch, r, o);
            xfwrite(record, sizeof record, f, path);
        }
        fclose(f);
        free(path);
    }
}

void make_pattern_image(uint8_t *rgb, int w, int h, int kind) {
    static const uint8_t colors[8][3] = {{200, 30, 30}, {30, 180, 40},   {40, 60, 210},  {230, 220, 40},
                                         {20, 20, 20},  {240, 240, 240}, {150, 80, 200}, {30, 200, 200}};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            // Four quadrants, colors chosen by kind: flat regions, sharp edges.
            int q = (y * 2 / h) * 2 + (x * 2 / w);
            const uint8_t *c = colors[(kind + q * 3) % 8];
            memcpy(rgb + ((size_t)y * w + x) * 3, c, 3);
        }
}

void make_image_folder(const char *root, const char *const *class_names, int num_classes, int per_class, int side) {
    uint8_t *rgb = xmalloc((size_t)side * side * 3);
    for (int c = 0; c < num_classes; c++) {
        char *dir = xasprintf("%s/%s", root, class_names[c]);
        make_directories(dir);
        for (int i = 0; i < per_class; i++) {
            make_pattern_image(rgb, side, side, c + i);
            char *path = xasprintf("%s/%03d.png", dir, i);
            if (!stbi_write_png(path, side, side, 3, rgb, side * 3)) die("cannot write fixture %s", path);
            free(path);
        }
        free(dir);
    }
    free(rgb);
}

void make_exact_palette(Palette *pal, int colors, uint64_t seed) {
    Rng rng;
    rng_init(&rng, seed, 0);
    float *centers = xmalloc((size_t)colors * 3 * sizeof(float));
    for (int i = 0; i < colors * 3; i++)
        centers[i] = i % 3 ? (float)(rng_uniform(&rng) * 255.0) : (float)rng_below(&rng, 255) + 0.5f;
    palette_alloc(pal, colors);
    palette_set_centers(pal, centers);
    free(centers);
}

bool fixture_load(const char *path, Fixture *fx) {
    size_t size;
    uint8_t *raw = read_whole_file(path, &size);
    if (!raw || size < 12 || memcmp(raw, "IGPTFIX1", 8) != 0) {
        free(raw);
        return false;
    }
    size_t off = 8;
    fx->count = (int)get_u32(raw + off);
    off += 4;
    if (fx->count > 32) fx->count = 32;
    for (int i = 0; i < fx->count; i++) {
        FixtureArray *a = &fx->arrays[i];
        uint32_t len = get_u32(raw + off);
        off += 4;
        snprintf(a->name, sizeof a->name, "%.*s", (int)len, (const char *)raw + off);
        off += len;
        a->dtype = get_u32(raw + off);
        a->ndim = get_u32(raw + off + 4);
        off += 8;
        a->count = 1;
        for (uint32_t d = 0; d < a->ndim && d < 8; d++) {
            a->dims[d] = get_u32(raw + off);
            a->count *= a->dims[d];
            off += 4;
        }
        size_t bytes = a->count * (a->dtype == 2 ? 8 : 4);
        if (off + bytes > size) {
            free(raw);
            return false;
        }
        a->data = xmalloc(bytes);
        memcpy(a->data, raw + off, bytes);
        off += bytes;
    }
    free(raw);
    return true;
}

const FixtureArray *fixture_get(const Fixture *fx, const char *name) {
    for (int i = 0; i < fx->count; i++)
        if (!strcmp(fx->arrays[i].name, name)) return &fx->arrays[i];
    return NULL;
}

void fixture_free(Fixture *fx) {
    for (int i = 0; i < fx->count; i++) free(fx->arrays[i].data);
}
