// Reading images (images.h). Both readers resize to the prepared resolution
// with an area filter (the mean of the source pixels each output pixel
// covers), which is exact for integer ratios and shrinks CIFAR's 32x32 to
// 16x16 without aliasing. Class ids come from sorted folder names, so the
// same folder gives the same labels everywhere. The validation split is
// seeded and class-stratified: every class keeps the same share.
#include "data/images.h"

#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/decode.h"
#include "stb/stb_image_resize.h"
#include "util/util.h"

void imageset_alloc(ImageSet *set, int64_t count, int height, int width, int num_classes) {
    set->count = count;
    set->height = height;
    set->width = width;
    // Saturating: a count read from a file's size cannot wrap into a small buffer.
    set->pixels = xmalloc(saturating_mul(saturating_mul((uint64_t)count, (uint64_t)height * (uint64_t)width), 3));
    set->labels = xmalloc((size_t)count * sizeof(uint16_t));
    set->num_classes = num_classes;
    set->class_names = xcalloc((size_t)num_classes, sizeof(ClassName));
}

void imageset_free(ImageSet *set) {
    free(set->pixels);
    free(set->labels);
    free(set->class_names);
    memset(set, 0, sizeof *set);
}

void imageset_select(const ImageSet *src, const uint8_t *mask, uint8_t keep, ImageSet *dst) {
    int64_t n = 0;
    for (int64_t i = 0; i < src->count; i++) n += mask[i] == keep;
    imageset_alloc(dst, n, src->height, src->width, src->num_classes);
    memcpy(dst->class_names, src->class_names, (size_t)src->num_classes * sizeof(ClassName));
    size_t image_bytes = (size_t)src->height * (size_t)src->width * 3;
    int64_t j = 0;
    for (int64_t i = 0; i < src->count; i++) {
        if (mask[i] != keep) continue;
        memcpy(dst->pixels + (size_t)j * image_bytes, src->pixels + (size_t)i * image_bytes, image_bytes);
        dst->labels[j++] = src->labels[i];
    }
}

void imageset_class_counts(const ImageSet *set, int64_t *counts) {
    memset(counts, 0, (size_t)set->num_classes * sizeof(int64_t));
    for (int64_t i = 0; i < set->count; i++) counts[set->labels[i]]++;
}

void resize_rgb_area(const uint8_t *src, int src_w, int src_h, uint8_t *dst, int dst_w, int dst_h) {
    // stb_image_resize asserts (SIGABRT) on an empty image: callers check the sides first.
    if (src_w < 1 || src_h < 1 || dst_w < 1 || dst_h < 1)
        die("cannot resize a %dx%d image to %dx%d: a side is 0", src_w, src_h, dst_w, dst_h);
    if (src_w == dst_w && src_h == dst_h) {
        memcpy(dst, src, (size_t)src_w * (size_t)src_h * 3);
        return;
    }
    // Box filter in linear space: plain averages of the covered area.
    int ok = stbir_resize_uint8_generic(src, src_w, src_h, 0, dst, dst_w, dst_h, 0, 3, STBIR_ALPHA_CHANNEL_NONE, 0,
                                        STBIR_EDGE_CLAMP, STBIR_FILTER_BOX, STBIR_COLORSPACE_LINEAR, NULL);
    if (!ok) die("cannot resize a %dx%d image to %dx%d", src_w, src_h, dst_w, dst_h);
}

static void set_class_name(ClassName *names, int label, const char *name, const char *where) {
    if (name[0] == '\0') die("%s: empty class name for label %d", where, label);
    if (strlen(name) >= IGPT_CLASS_NAME_BYTES)
        die("%s: class name '%s' is longer than %d bytes", where, name, IGPT_CLASS_NAME_BYTES - 1);
    snprintf(names[label], IGPT_CLASS_NAME_BYTES, "%s", name);
}

// ---------------------------------------------------------------------------
// CIFAR-10

static const char *const cifar10_default_names[CIFAR10_CLASSES] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                                   "dog",      "frog",       "horse", "ship", "truck"};

char *cifar10_locate(const char *dir) {
    if (!is_directory(dir)) die("--cifar10 %s: no such folder", dir);
    const char *candidates[] = {"", "/cifar-10-batches-bin"};
    for (int i = 0; i < 2; i++) {
        char *batch_dir = xasprintf("%s%s", dir, candidates[i]);
        char *probe1 = xasprintf("%s/data_batch_1.bin", batch_dir);
        char *probe2 = xasprintf("%s/test_batch.bin", batch_dir);
        bool found = path_exists(probe1) || path_exists(probe2);
        free(probe1);
        free(probe2);
        if (found) return batch_dir;
        free(batch_dir);
    }
    die("%s holds no CIFAR-10 binary batches (data_batch_1.bin ... test_batch.bin); "
        "download them with scripts/download_cifar10.sh",
        dir);
}

bool cifar10_has_split(const char *batch_dir, const char *split) {
    char *path = xasprintf("%s/%s", batch_dir, strcmp(split, "test") == 0 ? "test_batch.bin" : "data_batch_1.bin");
    bool found = path_exists(path);
    free(path);
    return found;
}

// Class names from batches.meta.txt when present (one per line), else the
// standard CIFAR-10 names.
static void cifar10_class_names(const char *batch_dir, ClassName *names) {
    char *meta = xasprintf("%s/batches.meta.txt", batch_dir);
    FILE *f = regular_file_size(meta) >= 0 ? xfopen(meta, "r") : NULL;
    int n = 0;
    if (f) {
        char line[256];
        while (n < CIFAR10_CLASSES && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (line[0] == '\0') continue;
            set_class_name(names, n++, line, meta);
        }
        fclose(f);
        if (n != CIFAR10_CLASSES) die("%s lists %d class names, expected %d", meta, n, CIFAR10_CLASSES);
    } else {
        for (int i = 0; i < CIFAR10_CLASSES; i++) set_class_name(names, i, cifar10_default_names[i], "cifar10");
    }
    free(meta);
}

void cifar10_load(const char *batch_dir, const char *split, int resolution, ImageSet *out) {
    const bool test = strcmp(split, "test") == 0;
    const int num_files = test ? 1 : 5;
    char *paths[5];
    int64_t records[5], total = 0;
    for (int i = 0; i < num_files; i++) {
        paths[i] =
            test ? xasprintf("%s/test_batch.bin", batch_dir) : xasprintf("%s/data_batch_%d.bin", batch_dir, i + 1);
        int64_t size = regular_file_size(paths[i]);
        if (size < 0) die("%s is missing: the CIFAR-10 %s split needs it", paths[i], split);
        if (size == 0 || size % CIFAR10_RECORD_BYTES != 0)
            die("%s has %lld bytes, which is not a whole number of %d-byte CIFAR-10 records "
                "(truncated download, or not the binary version?)",
                paths[i], (long long)size, CIFAR10_RECORD_BYTES);
        records[i] = size / CIFAR10_RECORD_BYTES;
        total += records[i];
    }
    imageset_alloc(out, total, resolution, resolution, CIFAR10_CLASSES);
    cifar10_class_names(batch_dir, out->class_names);

    uint8_t *record = xmalloc(CIFAR10_RECORD_BYTES);
    uint8_t rgb[CIFAR10_SIDE * CIFAR10_SIDE * 3];
    const size_t plane = CIFAR10_SIDE * CIFAR10_SIDE;
    const size_t out_bytes = (size_t)resolution * resolution * 3;
    int64_t index = 0;
    for (int i = 0; i < num_files; i++) {
        FILE *f = xfopen(paths[i], "rb");
        for (int64_t r = 0; r < records[i]; r++, index++) {
            xfread(record, CIFAR10_RECORD_BYTES, f, paths[i]);
            if (record[0] >= CIFAR10_CLASSES)
                die("%s: record %lld has label %d, expected 0..%d", paths[i], (long long)r, record[0],
                    CIFAR10_CLASSES - 1);
            out->labels[index] = record[0];
            for (size_t p = 0; p < plane; p++)  // planar RRR..GGG..BBB -> interleaved RGB
                for (int c = 0; c < 3; c++) rgb[p * 3 + c] = record[1 + c * plane + p];
            resize_rgb_area(rgb, CIFAR10_SIDE, CIFAR10_SIDE, out->pixels + (size_t)index * out_bytes, resolution,
                            resolution);
        }
        fclose(f);
        free(paths[i]);
    }
    free(record);
}

// ---------------------------------------------------------------------------
// Image folders

static const char *const image_extensions[] = {"png", "jpg", "jpeg", "bmp", "gif", "tga",
                                               "psd", "pnm", "ppm",  "pgm", "pic"};

static bool has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    for (size_t i = 0; i < sizeof image_extensions / sizeof image_extensions[0]; i++)
        if (strcasecmp(dot + 1, image_extensions[i]) == 0) return true;
    return false;
}

static int compare_names(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);  // byte order: independent of locale
}

static int not_hidden(const struct dirent *e) { return e->d_name[0] != '.'; }

// Sorted entries of `dir` (hidden ones excluded); dies if it cannot be read.
static int list_folder(const char *dir, struct dirent ***entries) {
    int n = scandir(dir, entries, not_hidden, compare_names);
    if (n < 0) die("cannot read folder %s: %s", dir, strerror(errno));
    return n;
}

char *imagefolder_split_dir(const char *root, const char *split) {
    if (!is_directory(root)) die("--images %s: no such folder", root);
    char *train = xasprintf("%s/train", root);
    char *test = xasprintf("%s/test", root);
    bool has_split_dirs = is_directory(train) || is_directory(test);
    char *result = NULL;
    if (has_split_dirs) {
        char *wanted = strcmp(split, "test") == 0 ? test : train;
        if (is_directory(wanted)) result = xstrdup(wanted);
    } else if (strcmp(split, "train") == 0) {
        result = xstrdup(root);
    }
    free(train);
    free(test);
    return result;
}

typedef struct {
    char *path;
    uint16_t label;
} ImageFile;

// The sub-folders of class_root, sorted by name: one per class.
static char **list_class_dirs(const char *class_root, int *num_classes) {
    struct dirent **entries;
    const int n = list_folder(class_root, &entries);
    char **class_dirs = xcalloc((size_t)n + 1, sizeof(char *));
    *num_classes = 0;
    for (int i = 0; i < n; i++) {
        char *path = xasprintf("%s/%s", class_root, entries[i]->d_name);
        if (is_directory(path)) class_dirs[(*num_classes)++] = path;
        else free(path);
        free(entries[i]);
    }
    free(entries);
    if (*num_classes == 0) die("%s has no class folders: expected %s/<class>/<images>", class_root, class_root);
    if (*num_classes > IGPT_MAX_CLASSES)
        die("%s has %d class folders, at most %d are supported", class_root, *num_classes, IGPT_MAX_CLASSES);
    return class_dirs;
}

// Every image file of every class folder, class by class, by name within a
// class; other files are counted in stats->skipped_files.
static ImageFile *list_image_files(char **class_dirs, int num_classes, int64_t *num_files, FolderStats *stats) {
    ImageFile *files = NULL;
    int64_t capacity = 0;
    *num_files = 0;
    stats->skipped_files = 0;
    for (int c = 0; c < num_classes; c++) {
        struct dirent **entries;
        const int n = list_folder(class_dirs[c], &entries);
        int64_t found = 0;
        for (int i = 0; i < n; i++) {
            char *path = xasprintf("%s/%s", class_dirs[c], entries[i]->d_name);
            if (has_image_extension(entries[i]->d_name) && !is_directory(path)) {
                if (*num_files == capacity) {
                    capacity = capacity ? 2 * capacity : 1024;
                    files = xrealloc(files, (size_t)capacity * sizeof *files);
                }
                files[(*num_files)++] = (ImageFile){path, (uint16_t)c};
                found++;
            } else {
                stats->skipped_files++;
                free(path);
            }
            free(entries[i]);
        }
        free(entries);
        if (found == 0) die("class folder %s has no images (.png, .jpg, .jpeg, .bmp, ...)", class_dirs[c]);
    }
    return files;
}

// Decodes and resizes the files into out (allocated by the caller) in
// parallel. Each failure is remembered and the first one by file order is
// reported, so the message does not depend on thread timing.
static void decode_image_files(const ImageFile *files, int64_t num_files, int resolution, int threads, ImageSet *out) {
    char **errors = xcalloc((size_t)num_files, sizeof(char *));
    const size_t out_bytes = (size_t)resolution * resolution * 3;
    int64_t done = 0;
    Progress progress;
    progress_start(&progress, "decode", (uint64_t)num_files);
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
    for (int64_t i = 0; i < num_files; i++) {
        // decode.c checks the sides before it decodes; they are checked again
        // here, before the resize, whichever decoder produced the pixels (a
        // 0-pixel image made the resize assert).
        RgbImage image;
        errors[i] = decode_image_file(files[i].path, &image);
        if (!errors[i] &&
            !(image.width >= 1 && image.height >= 1 && image.width <= IMAGE_MAX_SIDE && image.height <= IMAGE_MAX_SIDE))
            errors[i] = xasprintf("image %s decoded to %d x %d pixels; igpt reads 1..%d on a side", files[i].path,
                                  image.width, image.height, IMAGE_MAX_SIDE);
        if (!errors[i])
            resize_rgb_area(image.rgb, image.width, image.height, out->pixels + (size_t)i * out_bytes, resolution,
                            resolution);
        free(image.rgb);
        out->labels[i] = files[i].label;
        int64_t finished;
#pragma omp atomic capture
        finished = ++done;
        if (finished % 256 == 0 && omp_get_thread_num() == 0) progress_update(&progress, (uint64_t)finished, NULL);
    }
    for (int64_t i = 0; i < num_files; i++)
        if (errors[i]) die("%s", errors[i]);
    progress_finish(&progress, NULL);
    free(errors);
}

void imagefolder_load(const char *class_root, int resolution, int threads, ImageSet *out, FolderStats *stats) {
    int num_classes;
    char **class_dirs = list_class_dirs(class_root, &num_classes);
    int64_t num_files;
    ImageFile *files = list_image_files(class_dirs, num_classes, &num_files, stats);
    imageset_alloc(out, num_files, resolution, resolution, num_classes);
    for (int c = 0; c < num_classes; c++)
        set_class_name(out->class_names, c, strrchr(class_dirs[c], '/') + 1, class_root);
    decode_image_files(files, num_files, resolution, threads, out);
    for (int64_t i = 0; i < num_files; i++) free(files[i].path);
    free(files);
    for (int c = 0; c < num_classes; c++) free(class_dirs[c]);
    free(class_dirs);
}

// ---------------------------------------------------------------------------
// Validation split

void stratified_split(const uint16_t *labels, int64_t count, int num_classes, int64_t val_count, uint64_t seed,
                      uint8_t *is_val) {
    if (val_count < 0 || val_count >= count)
        die("a validation split of %lld images leaves no training images (%lld in all)", (long long)val_count,
            (long long)count);
    int64_t *class_count = xcalloc((size_t)num_classes, sizeof(int64_t));
    int64_t *quota = xcalloc((size_t)num_classes, sizeof(int64_t));
    double *remainder = xcalloc((size_t)num_classes, sizeof(double));
    for (int64_t i = 0; i < count; i++) class_count[labels[i]]++;
    int64_t assigned = 0;
    for (int c = 0; c < num_classes; c++) {
        double exact = (double)val_count * (double)class_count[c] / (double)count;
        quota[c] = (int64_t)exact;
        if (quota[c] > class_count[c] - 1) quota[c] = class_count[c] > 0 ? class_count[c] - 1 : 0;
        remainder[c] = exact - (double)quota[c];
        assigned += quota[c];
    }
    // Hand out the rest one image at a time: largest remainder first (lower
    // class id on ties), to classes that keep at least one training image.
    while (assigned < val_count) {
        int best = -1;
        for (int c = 0; c < num_classes; c++)
            if (quota[c] < class_count[c] - 1 && (best < 0 || remainder[c] > remainder[best])) best = c;
        if (best < 0) die("cannot hold out %lld images and keep one of each class for training", (long long)val_count);
        quota[best]++;
        remainder[best] -= 1.0;
        assigned++;
    }
    // Within each class, a seeded shuffle of its images picks the held-out ones.
    memset(is_val, 0, (size_t)count);
    // members: image indices grouped by class (counting sort, file order within a class).
    int64_t *members = xmalloc((size_t)count * sizeof(int64_t));
    int64_t *start = xcalloc((size_t)num_classes + 1, sizeof(int64_t));
    for (int c = 0; c < num_classes; c++) start[c + 1] = start[c] + class_count[c];
    int64_t *fill = xmalloc((size_t)num_classes * sizeof(int64_t));
    memcpy(fill, start, (size_t)num_classes * sizeof(int64_t));
    for (int64_t i = 0; i < count; i++) members[fill[labels[i]]++] = i;
    Rng rng;
    rng_init(&rng, seed, 0x73706c6974ull /* "split" */);
    for (int c = 0; c < num_classes; c++) {
        int64_t *m = members + start[c], n = class_count[c];
        for (int64_t i = 0; i < quota[c]; i++) {  // partial Fisher-Yates
            int64_t j = i + (int64_t)rng_below(&rng, (uint64_t)(n - i));
            int64_t t = m[i];
            m[i] = m[j];
            m[j] = t;
            is_val[m[i]] = 1;
        }
    }
    free(members);
    free(start);
    free(fill);
    free(class_count);
    free(quota);
    free(remainder);
}
