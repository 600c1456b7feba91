// The built-in synthetic image set: deterministic, complete, learnable.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"
#include "stb/stb_image.h"
#include "synthetic.h"
#include "test.h"

void test_synth_deterministic_and_complete(void) {
    CHECK(run_igpt("synth --out %s --train-per-class 5 --test-per-class 2 --size 12 --seed 7", test_path("a")) == 0,
          "synth: %s", cli_stderr());
    CHECK(run_igpt("synth --out %s --train-per-class 5 --test-per-class 2 --size 12 --seed 7", test_path("b")) == 0,
          "synth again");
    CHECK(run_igpt("synth --out %s --train-per-class 5 --test-per-class 2 --size 12 --seed 8", test_path("c")) == 0,
          "another seed");
    CHECK(run_igpt("synth --out %s --train-per-class 1 --test-per-class 1", test_path("new/nested/d")) == 0 &&
              is_directory(test_path("new/nested/d/train/disc")), "missing parent folders are created: %s", cli_stderr());
    int same = 0, differ = 0, sized = 0;
    for (int c = 0; c < SYNTH_CLASSES; c++)
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < (s ? 2 : 5); i++) {
                const char *split = s ? "test" : "train";
                char *rel = xasprintf("%s/%s/%04d.png", split, synth_class_names[c], i);
                same += files_equal(test_path("a/%s", rel), test_path("b/%s", rel));
                differ += !files_equal(test_path("a/%s", rel), test_path("c/%s", rel));
                int w, h, comp;
                sized += stbi_info(test_path("a/%s", rel), &w, &h, &comp) && w == 12 && h == 12;
                free(rel);
            }
    CHECK(same == 70, "same seed, same bytes: %d of 70 files", same);
    CHECK(differ == 70, "another seed, other images: %d of 70 differ", differ);
    CHECK(sized == 70, "70 images of 12x12 in 10 classes x (5 train + 2 test), found %d", sized);
    CHECK(!path_exists(test_path("a/train/disc/0005.png")) && !path_exists(test_path("a/test/disc/0002.png")),
          "no extra images");
}

// Nearest class mean on per-image standardised luma magnitudes: colors are
// random, so only the spatial pattern can carry the class.
static void luma_features(const ImageSet *s, int64_t i, double *f) {
    const int n = s->height * s->width;
    double mean = 0, var = 0;
    for (int p = 0; p < n; p++) {
        const uint8_t *px = s->pixels + ((size_t)i * n + p) * 3;
        f[p] = 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2];
        mean += f[p] / n;
    }
    for (int p = 0; p < n; p++) var += (f[p] - mean) * (f[p] - mean) / n;
    for (int p = 0; p < n; p++) f[p] = fabs(f[p] - mean) / sqrt(var + 1e-6);
}

void test_synth_classes_are_learnable(void) {
    CHECK(run_igpt("synth --out %s --train-per-class 60 --test-per-class 30 --size 16", test_path("s")) == 0, "synth");
    ImageSet train, test;
    FolderStats stats;
    imagefolder_load(test_path("s/train"), 16, 2, &train, &stats);
    imagefolder_load(test_path("s/test"), 16, 2, &test, &stats);
    CHECK(train.count == 600 && test.count == 300 && train.num_classes == 10, "600 + 300 images, 10 classes");
    const int n = 256;
    double *means = xcalloc(10 * n, sizeof(double)), *f = xmalloc(n * sizeof(double));
    for (int64_t i = 0; i < train.count; i++) {
        luma_features(&train, i, f);
        for (int p = 0; p < n; p++) means[train.labels[i] * n + p] += f[p] / 60;
    }
    int correct = 0;
    for (int64_t i = 0; i < test.count; i++) {
        luma_features(&test, i, f);
        int best = 0;
        double best_d = 1e300;
        for (int c = 0; c < 10; c++) {
            double d = 0;
            for (int p = 0; p < n; p++) d += (f[p] - means[c * n + p]) * (f[p] - means[c * n + p]);
            if (d < best_d) best_d = d, best = c;
        }
        correct += best == test.labels[i];
    }
    // Measured about 50% with this crude classifier; chance is 10%.
    double accuracy = correct / 300.0;
    CHECK(accuracy > 0.3, "nearest-class-mean accuracy %.1f%% (chance 10%%)", 100 * accuracy);
    free(means);
    free(f);
    imageset_free(&train);
    imageset_free(&test);
}

void test_synth_bad_input(void) {
    CHECK(run_igpt("synth --out %s --train-per-class 2 --test-per-class 1", test_path("s")) == 0, "synth");
    size_t n;
    uint8_t *before = read_whole_file(test_path("s/train/ring/0001.png"), &n);
    CHECK(run_igpt("synth --out %s --seed 5 --train-per-class 2 --test-per-class 1", test_path("s")) == 1 &&
              strstr(cli_stderr(), "already exists; pass --force"), "existing output refused: %s", cli_stderr());
    CHECK(files_equal(test_path("s/train/ring/0001.png"), test_path("s/train/ring/0001.png")) && before,
          "and left as it was");
    CHECK(run_igpt("synth --out %s --seed 5 --train-per-class 2 --test-per-class 1 --force", test_path("s")) == 0,
          "--force replaces an earlier synth output");
    size_t m;
    uint8_t *after = read_whole_file(test_path("s/train/ring/0001.png"), &m);
    CHECK(after && (m != n || memcmp(after, before, n) != 0), "with the new seed's images");
    make_directories(test_path("mine/photos"));
    CHECK(run_igpt("synth --out %s --force", test_path("mine")) == 1 && strstr(cli_stderr(), "not an earlier synth output"),
          "--force never removes other folders: %s", cli_stderr());
    CHECK(is_directory(test_path("mine/photos")), "the folder survives");
    CHECK(run_igpt("synth --out %s --colour red", test_path("x")) == 2 && strstr(cli_stderr(), "unknown option --colour"),
          "unknown flag");
    CHECK(run_igpt("synth --out %s --size 4", test_path("x")) == 2, "size out of range");
    CHECK(!path_exists(test_path("x")), "nothing written on a usage error");
    free(before);
    free(after);
}
