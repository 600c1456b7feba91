// The synthetic image set (synthetic.h): each class is a shape or texture
// drawn with random position, scale, rotation or phase, in colors that lean
// to the class, with a little noise. Every image draws from its own RNG
// stream (split, class, index), so the set is entirely determined by the
// seed and any image can be made without the others.
#include "data/synthetic.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stb/stb_image_write.h"

const char *const synth_class_names[SYNTH_CLASSES] = {"disc",      "square",    "triangle", "ring", "cross",
                                                      "h-stripes", "v-stripes", "checker",  "dots", "gradient"};

static double uniform(Rng *rng, double lo, double hi) { return lo + (hi - lo) * rng_uniform(rng); }

static void hsv_to_rgb(double h, double s, double v, double rgb[3]) {
    h = (h - floor(h)) * 6;
    const int sector = (int)h % 6;
    const double f = h - floor(h), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    const double table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    for (int c = 0; c < 3; c++) rgb[c] = 255 * table[sector][c];
}

// Colors carry some of the class, as in natural images (sky, grass): the
// foreground hue is centred on the class's own hue, jittered by +-1.5 class
// spacings, so any hue fits three classes and color alone gets at most ~1/3
// right. The foreground is bright and saturated, the background darker and
// greyer, so the shape stays visible after palette quantization.
static void random_colors(int class_id, Rng *rng, double fg[3], double bg[3]) {
    hsv_to_rgb(class_id / (double)SYNTH_CLASSES + uniform(rng, -0.15, 0.15), uniform(rng, 0.45, 1.0),
               uniform(rng, 0.65, 1.0), fg);
    hsv_to_rgb(uniform(rng, 0, 1), uniform(rng, 0, 0.6), uniform(rng, 0.08, 0.45), bg);
}

// Random parameters of one image, in unit-square coordinates.
typedef struct {
    double cx, cy, r;     // shapes: centre and radius
    double cos_a, sin_a;  // shapes: rotation (square, triangle, cross)
    double period;        // textures: period
    double phase_x, phase_y;
    double direction;  // gradient: angle in turns
} Params;

// Foreground weight in [0, 1] of unit-square point (x, y).
static double pattern(int class_id, double x, double y, const Params *p) {
    const double dx = x - p->cx, dy = y - p->cy, dist = sqrt(dx * dx + dy * dy);
    // Shape frame: rotated by the image's angle.
    const double u = p->cos_a * dx + p->sin_a * dy, v = -p->sin_a * dx + p->cos_a * dy, r = p->r;
    const double tx = x / p->period + p->phase_x, ty = y / p->period + p->phase_y;
    switch (class_id) {
    case 0: return dist < r;                                                                    // disc
    case 1: return fabs(u) < r * 0.8 && fabs(v) < r * 0.8;                                      // square
    case 2: return v > -r * 0.8 && v < r * 0.9 && fabs(u) < (v + r * 0.8) * 0.6;                // triangle, apex up
    case 3: return dist < r && dist > r * 0.5;                                                  // ring
    case 4: return (fabs(u) < r * 0.28 && fabs(v) < r) || (fabs(v) < r * 0.28 && fabs(u) < r);  // cross
    case 5: return ty - floor(ty) < 0.5;                                                        // horizontal stripes
    case 6: return tx - floor(tx) < 0.5;                                                        // vertical stripes
    case 7: return ((long)floor(tx) + (long)floor(ty)) % 2 == 0;                                // checkerboard
    case 8: {                                                                                   // a grid of dots
        const double gx = tx - floor(tx) - 0.5, gy = ty - floor(ty) - 0.5;
        return gx * gx + gy * gy < 0.3 * 0.3;
    }
    default: {  // a linear ramp from background to foreground along a random direction
        const double t = (x - 0.5) * cos(p->direction * 2 * M_PI) + (y - 0.5) * sin(p->direction * 2 * M_PI) + 0.5;
        return t < 0 ? 0 : t > 1 ? 1 : t;
    }
    }
}

void synth_image(int class_id, int size, Rng *rng, uint8_t *rgb) {
    double fg[3], bg[3];
    random_colors(class_id, rng, fg, bg);
    // Lower bounds in pixels keep small images readable: a ring keeps a hole
    // at 8x8, stripes stay at least 1.5 pixels wide, dots 4 pixels apart.
    const double px = 1.0 / size;
    Params p;
    p.cx = uniform(rng, 0.35, 0.65);
    p.cy = uniform(rng, 0.35, 0.65);
    p.r = fmax(uniform(rng, 0.22, 0.34), 2.8 * px);
    const double angle = class_id == 1 || class_id == 2 || class_id == 4 ? uniform(rng, -0.3, 0.3) : 0;
    p.cos_a = cos(angle);
    p.sin_a = sin(angle);
    p.period = fmax(uniform(rng, 0.2, 0.4), (class_id == 8 ? 4.0 : 3.0) * px);
    p.phase_x = uniform(rng, 0, 1);
    p.phase_y = uniform(rng, 0, 1);
    p.direction = uniform(rng, 0, 1);
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            const double w = pattern(class_id, (x + 0.5) * px, (y + 0.5) * px, &p);
            for (int c = 0; c < 3; c++) {
                const double value = w * fg[c] + (1 - w) * bg[c] + uniform(rng, -8, 8);
                rgb[((size_t)y * size + x) * 3 + c] = (uint8_t)(value < 0 ? 0 : value > 255 ? 255 : value + 0.5);
            }
        }
}

bool synth_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return false;
        bool ok = true;
        struct dirent *e;
        while (ok && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *child = xasprintf("%s/%s", path, e->d_name);
            ok = synth_remove_tree(child);
            free(child);
        }
        const int saved = errno;
        closedir(d);
        errno = saved;
        return ok && rmdir(path) == 0;
    }
    return unlink(path) == 0;
}

// True when `dir` holds only the entries `allowed` (a NULL-terminated list)
// as folders, and holds `required`.
static bool holds_only(const char *dir, const char *const *allowed, int num_allowed, const char *required) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool ok = true, found_required = required == NULL;
    struct dirent *e;
    while (ok && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        bool known = false;
        for (int i = 0; i < num_allowed && !known; i++) known = !strcmp(e->d_name, allowed[i]);
        char *child = xasprintf("%s/%s", dir, e->d_name);
        struct stat st;
        ok = known && lstat(child, &st) == 0 && S_ISDIR(st.st_mode);
        free(child);
        if (required && !strcmp(e->d_name, required)) found_required = true;
    }
    closedir(d);
    return ok && found_required;
}

// True when `dir` holds nothing but regular *.png files.
static bool holds_only_pngs(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        const size_t n = strlen(e->d_name);
        char *child = xasprintf("%s/%s", dir, e->d_name);
        struct stat st;
        ok = n > 4 && !strcmp(e->d_name + n - 4, ".png") && lstat(child, &st) == 0 && S_ISREG(st.st_mode);
        free(child);
    }
    closedir(d);
    return ok;
}

bool synth_looks_like_output(const char *root) {
    static const char *const splits[2] = {"train", "test"};
    if (!holds_only(root, splits, 2, "train")) return false;
    for (int s = 0; s < 2; s++) {
        char *split_dir = xasprintf("%s/%s", root, splits[s]);
        bool ok = !path_exists(split_dir) || holds_only(split_dir, synth_class_names, SYNTH_CLASSES, NULL);
        for (int c = 0; ok && c < SYNTH_CLASSES; c++) {
            char *class_dir = xasprintf("%s/%s", split_dir, synth_class_names[c]);
            ok = !path_exists(class_dir) || holds_only_pngs(class_dir);
            free(class_dir);
        }
        free(split_dir);
        if (!ok) return false;
    }
    return true;
}

// Removes the temporary folder, then dies with the message.
IGPT_NORETURN static void fail(const char *tmp, const char *what, const char *path, int err) {
    char *message = xasprintf("%s %s: %s", what, path, strerror(err));
    if (!synth_remove_tree(tmp)) warn("could not remove the temporary folder %s: %s", tmp, strerror(errno));
    die("%s", message);
}

void synth_write_folder(const char *root, int train_per_class, int test_per_class, int size, uint64_t seed) {
    if (path_exists(root)) die("%s already exists", root);
    char *parent = xstrdup(root);  // the temporary folder is built beside root
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        make_directories(parent);
    }
    free(parent);
    char *tmp = xasprintf("%s.tmp.XXXXXX", root);
    if (!mkdtemp(tmp)) die("cannot create a folder beside %s: %s", root, strerror(errno));
    static const char *const splits[2] = {"train", "test"};
    const int per_class[2] = {train_per_class, test_per_class};
    for (int s = 0; s < 2; s++) {
        char *dir = xasprintf("%s/%s", tmp, splits[s]);
        if (mkdir(dir, 0777) != 0) fail(tmp, "cannot create", dir, errno);
        free(dir);
        for (int c = 0; c < SYNTH_CLASSES; c++) {
            dir = xasprintf("%s/%s/%s", tmp, splits[s], synth_class_names[c]);
            if (mkdir(dir, 0777) != 0) fail(tmp, "cannot create", dir, errno);
            free(dir);
        }
    }
    // Each image's randomness depends only on (seed, split, class, index),
    // so the files do not depend on the order or the number of threads.
    const int64_t train_total = (int64_t)SYNTH_CLASSES * train_per_class;
    const int64_t total = train_total + (int64_t)SYNTH_CLASSES * test_per_class;
    char *failed_path = NULL;
    int failed_errno = 0;
#pragma omp parallel
    {
        uint8_t *rgb = xmalloc((size_t)size * size * 3);
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < total; i++) {
            const int s = i < train_total ? 0 : 1;
            const int64_t j = s ? i - train_total : i;
            const int c = (int)(j / per_class[s]), index = (int)(j % per_class[s]);
            Rng rng;
            rng_init(&rng, seed, ((uint64_t)s << 48) | ((uint64_t)c << 32) | (uint64_t)index);
            synth_image(c, size, &rng, rgb);
            char *path = xasprintf("%s/%s/%s/%04d.png", tmp, splits[s], synth_class_names[c], index);
            errno = 0;
            if (!stbi_write_png(path, size, size, 3, rgb, size * 3)) {
                const int err = errno ? errno : EIO;
#pragma omp critical(synth_failure)
                if (!failed_path) {
                    failed_path = path;
                    failed_errno = err;
                    path = NULL;
                }
            }
            free(path);
        }
        free(rgb);
    }
    if (failed_path) fail(tmp, "cannot write", failed_path, failed_errno);
    if (rename(tmp, root) != 0) fail(tmp, "cannot rename the finished images to", root, errno);
    free(tmp);
}
