#include "synthetic.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stb/stb_image_write.h"

const char *const synth_class_names[SYNTH_CLASSES] = {"disc",     "square",     "triangle", "ring",       "cross",
                                                      "h-stripes", "v-stripes", "checker",  "dots", "gradient"};

static double uniform(Rng *rng, double lo, double hi) { return lo + (hi - lo) * rng_uniform(rng); }

// Two colors far enough apart that the shape stays visible after quantization.
static void random_colors(Rng *rng, double fg[3], double bg[3]) {
    double d2;
    do {
        d2 = 0;
        for (int c = 0; c < 3; c++) {
            fg[c] = uniform(rng, 0, 255);
            bg[c] = uniform(rng, 0, 255);
            d2 += (fg[c] - bg[c]) * (fg[c] - bg[c]);
        }
    } while (d2 < 120.0 * 120.0);
}

// Is unit-square point (x, y) in the foreground of the class's pattern?
// p holds the random parameters drawn for the image.
static double pattern(int class_id, double x, double y, const double *p) {
    const double cx = p[0], cy = p[1], r = p[2], phase = p[3], period = p[4];
    const double dx = x - cx, dy = y - cy, dist = sqrt(dx * dx + dy * dy);
    switch (class_id) {
    case 0: return dist < r;                                      // disc
    case 1: return fabs(dx) < r * 0.85 && fabs(dy) < r * 0.85;    // square
    case 2: return dy > -r && dy < r && fabs(dx) < (dy + r) * 0.55;  // triangle, apex up
    case 3: return dist < r && dist > r * 0.55;                   // ring
    case 4: return (fabs(dx) < r * 0.25 && fabs(dy) < r) || (fabs(dy) < r * 0.25 && fabs(dx) < r);  // cross
    case 5: return fmod(y / period + phase, 1.0) < 0.5;           // horizontal stripes
    case 6: return fmod(x / period + phase, 1.0) < 0.5;           // vertical stripes
    case 7: return ((int)floor(x / period + phase) + (int)floor(y / period + phase)) % 2 == 0;  // checker
    case 8: {  // a grid of dots
        double gx = fmod(x / period + phase, 1.0) - 0.5, gy = fmod(y / period + phase, 1.0) - 0.5;
        return gx * gx + gy * gy < 0.09;
    }
    default: {  // gradient along a random direction: returns a blend weight
        double t = (x - 0.5) * cos(phase * 2 * M_PI) + (y - 0.5) * sin(phase * 2 * M_PI) + 0.5;
        return t < 0 ? 0 : t > 1 ? 1 : t;
    }
    }
}

void synth_image(int class_id, int size, Rng *rng, uint8_t *rgb) {
    double fg[3], bg[3];
    random_colors(rng, fg, bg);
    const double p[5] = {uniform(rng, 0.35, 0.65), uniform(rng, 0.35, 0.65), uniform(rng, 0.22, 0.34),
                         uniform(rng, 0, 1), uniform(rng, 0.2, 0.4)};
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            double w = pattern(class_id, (x + 0.5) / size, (y + 0.5) / size, p);
            for (int c = 0; c < 3; c++) {
                double v = w * fg[c] + (1 - w) * bg[c] + uniform(rng, -8, 8);
                rgb[((size_t)y * size + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
            }
        }
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
    const char *splits[2] = {"train", "test"};
    const int per_class[2] = {train_per_class, test_per_class};
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < SYNTH_CLASSES; c++) {
            char *dir = xasprintf("%s/%s/%s", tmp, splits[s], synth_class_names[c]);
            make_directories(dir);
            free(dir);
        }
    const int64_t total = (int64_t)SYNTH_CLASSES * (train_per_class + test_per_class);
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < total; i++) {
        int64_t per_split0 = (int64_t)SYNTH_CLASSES * train_per_class;
        int s = i < per_split0 ? 0 : 1;
        int64_t j = s ? i - per_split0 : i;
        int c = (int)(j / per_class[s]), index = (int)(j % per_class[s]);
        Rng rng;  // depends only on (seed, split, class, index)
        rng_init(&rng, seed, ((uint64_t)s << 48) | ((uint64_t)c << 32) | (uint64_t)index);
        uint8_t *rgb = xmalloc((size_t)size * size * 3);
        synth_image(c, size, &rng, rgb);
        char *path = xasprintf("%s/%s/%s/%04d.png", tmp, splits[s], synth_class_names[c], index);
        if (!stbi_write_png(path, size, size, 3, rgb, size * 3)) {
#pragma omp atomic write
            failed = 1;
        }
        free(path);
        free(rgb);
    }
    if (failed || rename(tmp, root) != 0) {
        char *cmd = xasprintf("rm -rf '%s'", tmp);
        if (system(cmd) != 0) warn("could not remove %s", tmp);
        free(cmd);
        die("cannot write the synthetic images to %s", root);
    }
    free(tmp);
}
