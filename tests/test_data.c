// Library-level tests: readers, resizing, k-means, quantization, the
// validation split and the file formats.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/images.h"
#include "data/palette.h"
#include "stb/stb_image_write.h"
#include "test.h"

static int pixel_at(const ImageSet *s, int64_t i, int y, int x, int c) {
    return s->pixels[(((size_t)i * s->height + y) * s->width + x) * 3 + c];
}

TEST(test_cifar_reader_layout_and_labels) {
    const char *dir = test_path("cifar");
    make_cifar_batches(dir, 7, 5);
    char *located = cifar10_locate(dir);
    CHECK(strcmp(located, dir) == 0, "located %s, expected %s", located, dir);
    CHECK(cifar10_has_split(located, "train") && cifar10_has_split(located, "test"), "both splits present");
    ImageSet train, test;
    cifar10_load(located, "train", 32, &train);
    cifar10_load(located, "test", 32, &test);
    CHECK(train.count == 35 && test.count == 5, "counts %lld %lld", (long long)train.count, (long long)test.count);
    CHECK(train.num_classes == 10 && strcmp(train.class_names[0], "airplane") == 0 &&
              strcmp(train.class_names[9], "truck") == 0,
          "default CIFAR-10 class names");
    int bad = 0;
    for (int64_t i = 0; i < train.count + test.count; i++) {
        const ImageSet *s = i < train.count ? &train : &test;
        int64_t j = i < train.count ? i : i - train.count;
        int batch = i < train.count ? (int)(j / 7) : 5, record = i < train.count ? (int)(j % 7) : (int)j;
        if (s->labels[j] != cifar_fixture_byte(batch, record, 0)) bad++;
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
                for (int c = 0; c < 3; c++)  // planar record -> interleaved pixels
                    if (pixel_at(s, j, y, x, c) != cifar_fixture_byte(batch, record, 1 + c * 1024 + y * 32 + x)) bad++;
    }
    CHECK(bad == 0, "%d labels or pixel values differ from the batch files", bad);
    imageset_free(&train);
    imageset_free(&test);
    free(located);

    // The extracted archive's folder is found from its parent too.
    const char *parent = test_path("archive");
    make_cifar_batches(test_path("archive/cifar-10-batches-bin"), 1, 1);
    located = cifar10_locate(parent);
    CHECK(strstr(located, "/cifar-10-batches-bin") != NULL, "located %s", located);
    free(located);
}

TEST(test_cifar_reader_class_names_from_meta) {
    const char *dir = test_path("cifar");
    make_cifar_batches(dir, 2, 1);
    const char *names = "n0\nn1\nn2\nn3\nn4\nn5\nn6\nn7\nn8\nnine\n\n";
    write_whole_file(test_path("cifar/batches.meta.txt"), names, strlen(names));
    ImageSet s;
    cifar10_load(dir, "test", 32, &s);
    CHECK(strcmp(s.class_names[0], "n0") == 0 && strcmp(s.class_names[9], "nine") == 0,
          "names from batches.meta.txt: %s %s", s.class_names[0], s.class_names[9]);
    imageset_free(&s);
}

TEST(test_cifar_reader_resizes_with_area_filter) {
    const char *dir = test_path("cifar");
    make_cifar_batches(dir, 3, 2);
    ImageSet full, half;
    cifar10_load(dir, "test", 32, &full);
    cifar10_load(dir, "test", 16, &half);
    CHECK(half.height == 16 && half.width == 16 && half.count == 2, "16x16 images");
    int worst = 0;
    for (int64_t i = 0; i < 2; i++)
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++)
                for (int c = 0; c < 3; c++) {
                    int sum = pixel_at(&full, i, 2 * y, 2 * x, c) + pixel_at(&full, i, 2 * y, 2 * x + 1, c) +
                              pixel_at(&full, i, 2 * y + 1, 2 * x, c) + pixel_at(&full, i, 2 * y + 1, 2 * x + 1, c);
                    int diff = abs(pixel_at(&half, i, y, x, c) * 4 - sum);
                    if (diff > worst) worst = diff;
                }
    // Tolerance: rounding of the average to 8 bits, at most 1 level (4 in sum units).
    CHECK(worst <= 4, "2x2 area average off by %d/4 levels", worst);
    imageset_free(&full);
    imageset_free(&half);
}

TEST(test_resize_area_exact_for_integer_ratios) {
    Rng rng;
    rng_init(&rng, 3, 0);
    const int ratios[][4] = {{64, 48, 16, 12}, {30, 30, 10, 10}, {8, 8, 8, 8}};
    for (int t = 0; t < 3; t++) {
        int sw = ratios[t][0], sh = ratios[t][1], dw = ratios[t][2], dh = ratios[t][3];
        int fx = sw / dw, fy = sh / dh;
        uint8_t *src = xmalloc((size_t)sw * sh * 3), *dst = xmalloc((size_t)dw * dh * 3);
        for (int i = 0; i < sw * sh * 3; i++) src[i] = (uint8_t)rng_below(&rng, 256);
        resize_rgb_area(src, sw, sh, dst, dw, dh);
        double worst = 0;
        for (int y = 0; y < dh; y++)
            for (int x = 0; x < dw; x++)
                for (int c = 0; c < 3; c++) {
                    double sum = 0;
                    for (int v = 0; v < fy; v++)
                        for (int u = 0; u < fx; u++) sum += src[((y * fy + v) * sw + x * fx + u) * 3 + c];
                    double diff = fabs(dst[(y * dw + x) * 3 + c] - sum / (fx * fy));
                    if (diff > worst) worst = diff;
                }
        // Tolerance: the average rounded to 8 bits (0.5) plus filter arithmetic in float.
        CHECK(worst <= 0.51, "%dx%d -> %dx%d: off the box average by %.3f", sw, sh, dw, dh, worst);
        free(src);
        free(dst);
    }
}

TEST(test_image_folder_reader) {
    char *root = xstrdup(test_path("images"));  // test_path strings are recycled
    const int side = 32;
    uint8_t rgb[64 * 64 * 3], rgba[32 * 32 * 4], grey[32 * 32];
    make_directories(test_path("images/zebra"));  // created first: order must come from names
    make_directories(test_path("images/apple"));
    make_directories(test_path("images/mango"));
    make_pattern_image(rgb, side, side, 1);
    stbi_write_png(test_path("images/apple/b.png"), side, side, 3, rgb, side * 3);
    make_pattern_image(rgb, side, side, 2);
    stbi_write_png(test_path("images/apple/a.png"), side, side, 3, rgb, side * 3);
    for (int i = 0; i < side * side; i++) grey[i] = (uint8_t)(i % 251);
    stbi_write_png(test_path("images/mango/grey.png"), side, side, 1, grey, side);
    for (int i = 0; i < side * side; i++) {
        rgba[i * 4 + 0] = (uint8_t)i;
        rgba[i * 4 + 1] = (uint8_t)(3 * i);
        rgba[i * 4 + 2] = 77;
        rgba[i * 4 + 3] = (uint8_t)(i * 7);  // varying alpha must not change RGB
    }
    stbi_write_png(test_path("images/mango/rgba.png"), side, side, 4, rgba, side * 4);
    write_whole_file(test_path("images/mango/readme.txt"), "notes", 5);
    make_pattern_image(rgb, 64, 64, 3);
    stbi_write_png(test_path("images/zebra/big.png"), 64, 64, 3, rgb, 64 * 3);
    for (int y = 0; y < side; y++)  // smooth image: JPEG keeps it close
        for (int x = 0; x < side; x++) {
            rgb[(y * side + x) * 3 + 0] = (uint8_t)(4 * x + 40);
            rgb[(y * side + x) * 3 + 1] = (uint8_t)(4 * y + 20);
            rgb[(y * side + x) * 3 + 2] = 128;
        }
    stbi_write_jpg(test_path("images/zebra/photo.jpg"), side, side, 3, rgb, 95);
    uint8_t smooth[32 * 32 * 3];
    memcpy(smooth, rgb, sizeof smooth);
    make_pattern_image(rgb, side, side, 4);
    stbi_write_bmp(test_path("images/zebra/pic.BMP"), side, side, 3, rgb);

    ImageSet s;
    FolderStats stats;
    imagefolder_load(root, side, 2, &s, &stats);
    CHECK(s.count == 7, "7 images, got %lld", (long long)s.count);
    CHECK(stats.skipped_files == 1, "readme.txt skipped, skipped %lld", (long long)stats.skipped_files);
    CHECK(s.num_classes == 3 && !strcmp(s.class_names[0], "apple") && !strcmp(s.class_names[1], "mango") &&
              !strcmp(s.class_names[2], "zebra"),
          "classes sorted by name");
    const uint16_t expected_labels[7] = {0, 0, 1, 1, 2, 2, 2};  // a.png b.png | grey rgba | big photo pic
    for (int i = 0; i < 7 && i < s.count; i++) CHECK(s.labels[i] == expected_labels[i], "label of image %d", i);
    uint8_t expect[32 * 32 * 3];
    make_pattern_image(expect, side, side, 2);
    CHECK(memcmp(s.pixels, expect, sizeof expect) == 0, "apple/a.png is image 0, pixels exact");
    int bad_grey = 0, bad_rgba = 0, bad_big = 0;
    for (int i = 0; i < side * side; i++) {
        const uint8_t *g = s.pixels + (2 * (size_t)side * side + i) * 3,
                      *a = s.pixels + (3 * (size_t)side * side + i) * 3;
        bad_grey += g[0] != grey[i] || g[1] != grey[i] || g[2] != grey[i];
        bad_rgba += a[0] != rgba[i * 4] || a[1] != rgba[i * 4 + 1] || a[2] != rgba[i * 4 + 2];
    }
    CHECK(bad_grey == 0, "grey expanded to RGB: %d pixels differ", bad_grey);
    CHECK(bad_rgba == 0, "alpha dropped, RGB kept: %d pixels differ", bad_rgba);
    make_pattern_image(expect, side, side, 3);  // 64x64 flat quadrants -> exact 32x32 quadrants
    bad_big = memcmp(s.pixels + 4 * (size_t)side * side * 3, expect, sizeof expect) != 0;
    CHECK(!bad_big, "64x64 image resized to 32x32 by area averaging");
    double abs_err = 0;
    for (int i = 0; i < side * side * 3; i++)
        abs_err += fabs((double)s.pixels[5 * (size_t)side * side * 3 + i] - smooth[i]);
    abs_err /= side * side * 3;
    CHECK(abs_err < 3.0, "JPEG (quality 95) decodes close to its source: mean abs error %.2f (tolerance 3)", abs_err);
    make_pattern_image(expect, side, side, 4);
    CHECK(memcmp(s.pixels + 6 * (size_t)side * side * 3, expect, sizeof expect) == 0, "BMP with upper-case extension");
    imageset_free(&s);
    free(root);
}

TEST(test_image_folder_train_test_layout) {
    const char *const names[] = {"a", "b"};
    make_image_folder(test_path("split/train"), names, 2, 2, 8);
    make_image_folder(test_path("split/test"), names, 2, 1, 8);
    make_image_folder(test_path("flat"), names, 2, 1, 8);
    char *train = imagefolder_split_dir(test_path("split"), "train");
    char *test = imagefolder_split_dir(test_path("split"), "test");
    char *flat_train = imagefolder_split_dir(test_path("flat"), "train");
    char *flat_test = imagefolder_split_dir(test_path("flat"), "test");
    CHECK(train && !strcmp(train, test_path("split/train")), "train/ found");
    CHECK(test && !strcmp(test, test_path("split/test")), "test/ found");
    CHECK(flat_train && !strcmp(flat_train, test_path("flat")), "a flat class tree is the train split");
    CHECK(flat_test == NULL, "a flat class tree has no test split");
    free(train);
    free(test);
    free(flat_train);
    free(flat_test);
}

TEST(test_kmeans_recovers_cluster_centers) {
    const float truth[6][3] = {{30, 30, 30},  {220, 40, 40},  {40, 210, 60},
                               {50, 60, 220}, {200, 200, 50}, {128, 128, 128}};
    const int per = 3000, k = 6;
    float *points = xmalloc((size_t)per * k * 3 * sizeof(float));
    Rng rng;
    rng_init(&rng, 11, 0);
    for (int i = 0; i < per * k; i++)
        for (int d = 0; d < 3; d++) points[i * 3 + d] = truth[i % k][d] + (float)(rng_uniform(&rng) * 12.0 - 6.0);
    float centers[6 * 3];
    KmeansOptions opt = {.k = k, .max_iters = 100, .tol = 1e-6, .seed = 7, .threads = 2};
    KmeansResult res;
    kmeans_fit(points, (int64_t)per * k, &opt, centers, &res);
    for (int t = 0; t < k; t++) {
        float best = 1e30f;
        for (int c = 0; c < k; c++) {
            float d = 0;
            for (int j = 0; j < 3; j++) d += (centers[c * 3 + j] - truth[t][j]) * (centers[c * 3 + j] - truth[t][j]);
            if (d < best) best = d;
        }
        // Tolerance: uniform noise of +-6 averaged over 3000 points has std ~0.06 per axis.
        CHECK(sqrtf(best) < 0.5f, "true center %d recovered within 0.5, off by %.3f", t, sqrtf(best));
    }
    // Uniform noise on [-6, 6] has variance 12 per axis: MSE ~ 36 over 3 channels.
    CHECK(res.converged && fabs(res.mse - 36.0) < 2.0, "converged=%d mse=%.3f (expected ~36)", res.converged, res.mse);
    free(points);
}

TEST(test_kmeans_deterministic_across_threads) {
    const int64_t n = 50000;  // several work chunks
    float *points = xmalloc((size_t)n * 3 * sizeof(float));
    Rng rng;
    rng_init(&rng, 5, 0);
    for (int64_t i = 0; i < n * 3; i++) points[i] = (float)rng_below(&rng, 256);
    float c1[16 * 3], c2[16 * 3], c3[16 * 3], other_seed[16 * 3];
    KmeansOptions opt = {.k = 16, .max_iters = 20, .tol = 0, .seed = 99, .threads = 1};
    KmeansResult r1, r2, r3, r4;
    kmeans_fit(points, n, &opt, c1, &r1);
    opt.threads = 2;
    kmeans_fit(points, n, &opt, c2, &r2);
    opt.threads = 3;
    kmeans_fit(points, n, &opt, c3, &r3);
    CHECK(memcmp(c1, c2, sizeof c1) == 0 && memcmp(c1, c3, sizeof c1) == 0, "same centers with 1, 2 and 3 threads");
    CHECK(r1.iters == r2.iters && r1.mse == r2.mse && r1.mse == r3.mse, "same iterations and error");
    opt.seed = 100;
    kmeans_fit(points, n, &opt, other_seed, &r4);
    CHECK(memcmp(c1, other_seed, sizeof c1) != 0, "another seed gives another initialisation");
    free(points);
}

TEST(test_palette_fit_rounds_and_sorts) {
    // Pixels drawn from 8 exact colors: the palette must be exactly those colors.
    const int w = 40, h = 40, images = 8;
    uint8_t *rgb = xmalloc((size_t)w * h * 3 * images);
    for (int i = 0; i < images; i++) make_pattern_image(rgb + (size_t)i * w * h * 3, w, h, i);
    KmeansOptions opt = {.k = 8, .max_iters = 100, .tol = 0, .seed = 1, .threads = 2};
    Palette pal;
    KmeansResult res;
    palette_fit(rgb, (int64_t)w * h * images, 0, &opt, &pal, &res);
    uint16_t *tokens = xmalloc((size_t)w * h * images * sizeof(uint16_t));
    uint64_t err = palette_quantize(&pal, rgb, (int64_t)w * h * images, tokens, 2);
    CHECK(err == 0, "8 exact colors quantize without error, got %llu", (unsigned long long)err);
    for (int c = 1; c < pal.colors; c++) {
        const uint8_t *a = pal.rgb + (c - 1) * 3, *b = pal.rgb + c * 3;
        CHECK(299 * a[0] + 587 * a[1] + 114 * a[2] <= 299 * b[0] + 587 * b[1] + 114 * b[2], "sorted by luma at %d", c);
    }
    CHECK(pal.rgb[0] == 20 && pal.rgb[1] == 20 && pal.rgb[2] == 20, "darkest color first");
    free(tokens);
    free(rgb);
    palette_free(&pal);
}

TEST(test_quantize_matches_brute_force) {
    Rng rng;
    rng_init(&rng, 17, 0);
    Palette pal;
    palette_alloc(&pal, 100);
    for (int i = 0; i < 300; i++) pal.rgb[i] = (uint8_t)rng_below(&rng, 256);
    memcpy(pal.rgb + 50 * 3, pal.rgb + 10 * 3, 3);  // a duplicate: ties go to the lower index
    const int64_t n = 10007;                        // not a multiple of the block size
    uint8_t *px = xmalloc((size_t)n * 3);
    for (int64_t i = 0; i < n * 3; i++) px[i] = (uint8_t)rng_below(&rng, 256);
    memcpy(px, pal.rgb + 10 * 3, 3);  // pixel 0 sits exactly on the duplicated color
    uint16_t *tokens = xmalloc((size_t)n * sizeof(uint16_t));
    for (int threads = 1; threads <= 2; threads++) {
        uint64_t err = palette_quantize(&pal, px, n, tokens, threads);
        uint64_t ref_err = 0;
        int64_t mismatches = 0;
        for (int64_t i = 0; i < n; i++) {
            int best = 0, best_d = 1 << 30;
            for (int c = 0; c < pal.colors; c++) {
                int d = 0;
                for (int j = 0; j < 3; j++)
                    d += (px[i * 3 + j] - pal.rgb[c * 3 + j]) * (px[i * 3 + j] - pal.rgb[c * 3 + j]);
                if (d < best_d) {
                    best_d = d;
                    best = c;
                }
            }
            ref_err += (uint64_t)best_d;
            mismatches += tokens[i] != best;
        }
        CHECK(mismatches == 0, "%lld tokens differ from brute force (threads=%d)", (long long)mismatches, threads);
        CHECK(err == ref_err, "squared error %llu vs %llu", (unsigned long long)err, (unsigned long long)ref_err);
        CHECK(tokens[0] == 10, "tie resolved to the lower index, got %d", tokens[0]);
    }
    free(px);
    free(tokens);
    palette_free(&pal);
}

// The reference for exact centers: per pixel, every center in order, the
// squared distance in double summed R, G, B, the first minimum kept.
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
static int brute_force_center(const float *centers, int colors, const uint8_t *px) {
    int best = 0;
    double best_d = INFINITY;
    for (int c = 0; c < colors; c++) {
        double d = 0.0;
        for (int j = 0; j < 3; j++) {
            const double diff = (double)px[j] - (double)centers[c * 3 + j];
            d += diff * diff;
        }
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    return best;
}

TEST(test_quantize_exact_centers_matches_brute_force) {
    Rng rng;
    rng_init(&rng, 23, 0);
    enum { COLORS = 100 };
    float centers[COLORS * 3];
    for (int i = 0; i < COLORS * 3; i++) centers[i] = (float)(rng_uniform(&rng) * 255.0);
    // Planted: a duplicate (ties to the lower id), and two centers 0.5 either
    // side of a pixel (an exact tie in double).
    memcpy(centers + 60 * 3, centers + 20 * 3, 3 * sizeof(float));
    const float left[3] = {10.5f, 200.0f, 30.0f}, right[3] = {11.5f, 200.0f, 30.0f};
    memcpy(centers + 5 * 3, left, sizeof left);
    memcpy(centers + 7 * 3, right, sizeof right);
    // Planted: two centers that round to the same color, 101: pixel 102 is
    // nearer to 101.4 (id 9) than to 100.6 (id 8), which the 8-bit colors cannot tell.
    const float low[3] = {100.6f, 0.0f, 255.0f}, high[3] = {101.4f, 0.0f, 255.0f};
    memcpy(centers + 8 * 3, low, sizeof low);
    memcpy(centers + 9 * 3, high, sizeof high);
    // Planted: from pixel 0, id 12 is at 2.25 and id 11 at 2.25 + 3.7e-8,
    // which float arithmetic rounds to 2.25, a tie (and would pick 11).
    const float nearly[3] = {1.0f, 1.1180340051651f, 0.0f}, exactly[3] = {1.5f, 0.0f, 0.0f};
    memcpy(centers + 11 * 3, nearly, sizeof nearly);
    memcpy(centers + 12 * 3, exactly, sizeof exactly);
    Palette pal;
    palette_alloc(&pal, COLORS);
    palette_set_centers(&pal, centers);
    CHECK(memcmp(pal.centers, centers, sizeof centers) == 0 && pal.rgb[8 * 3] == 101 && pal.rgb[9 * 3] == 101,
          "centers copied, colors their rounding");
    const int64_t n = 10007;  // not a multiple of the block size
    uint8_t *px = xmalloc((size_t)n * 3);
    for (int64_t i = 0; i < n * 3; i++) px[i] = (uint8_t)rng_below(&rng, 256);
    const uint8_t on_duplicate[3] = {(uint8_t)roundf(centers[20 * 3]), (uint8_t)roundf(centers[20 * 3 + 1]),
                                     (uint8_t)roundf(centers[20 * 3 + 2])};
    const uint8_t between[3] = {11, 200, 30}, near_high[3] = {102, 0, 255}, black[3] = {0, 0, 0};
    memcpy(px, on_duplicate, 3);
    memcpy(px + 3, between, 3);
    memcpy(px + 6, near_high, 3);
    memcpy(px + 9, black, 3);
    uint16_t *tokens = xmalloc((size_t)n * sizeof(uint16_t));
    for (int threads = 1; threads <= 2; threads++) {
        const uint64_t err = palette_quantize(&pal, px, n, tokens, threads);
        uint64_t ref_err = 0;
        int64_t mismatches = 0;
        for (int64_t i = 0; i < n; i++) {
            const int best = brute_force_center(centers, COLORS, px + i * 3);
            mismatches += tokens[i] != best;
            for (int j = 0; j < 3; j++) {
                const int diff = px[i * 3 + j] - pal.rgb[best * 3 + j];
                ref_err += (uint64_t)(diff * diff);
            }
        }
        CHECK(mismatches == 0, "%lld tokens differ from brute force (threads=%d)", (long long)mismatches, threads);
        CHECK(err == ref_err, "squared error to the colors %llu vs %llu", (unsigned long long)err,
              (unsigned long long)ref_err);
        CHECK(tokens[0] == 20, "a pixel on a duplicated center: the lower id, got %d", tokens[0]);
        CHECK(tokens[1] == 5, "a pixel halfway between two centers: the lower id, got %d", tokens[1]);
        CHECK(tokens[2] == 9, "the exact centers decide where the 8-bit colors tie: got %d", tokens[2]);
        CHECK(tokens[3] == 12, "distances in double, not float: got %d", tokens[3]);
    }
    // Integer centers give the tokens of the 8-bit path (the same distances).
    Palette plain, exact;
    palette_alloc(&plain, COLORS);
    memcpy(plain.rgb, pal.rgb, COLORS * 3);
    palette_alloc(&exact, COLORS);
    float whole[COLORS * 3];
    for (int i = 0; i < COLORS * 3; i++) whole[i] = pal.rgb[i];
    palette_set_centers(&exact, whole);
    uint16_t *a = xmalloc((size_t)n * sizeof(uint16_t)), *b = xmalloc((size_t)n * sizeof(uint16_t));
    const uint64_t err_plain = palette_quantize(&plain, px, n, a, 2), err_exact = palette_quantize(&exact, px, n, b, 2);
    CHECK(memcmp(a, b, (size_t)n * sizeof(uint16_t)) == 0 && err_plain == err_exact,
          "integer centers quantize as their colors do");
    free(a);
    free(b);
    palette_free(&plain);
    palette_free(&exact);
    free(px);
    free(tokens);
    palette_free(&pal);
}

TEST(test_psnr) {
    // MSE of 650.25 = 255^2 / 100 -> exactly 20 dB.
    double p = psnr_db(65025, 100);
    CHECK(fabs(p - 20.0) < 1e-9, "PSNR %.12f, expected 20", p);
    CHECK(isinf(psnr_db(0, 10)), "no error -> infinite PSNR");
}

TEST(test_stratified_split) {
    // 5 classes of 10, 20, 30, 40, 50 images, interleaved; a 30-image hold-out
    // is exactly 1/5 of each class.
    int64_t n = 150;
    uint16_t labels[150];
    int64_t filled[5] = {0}, sizes[5] = {10, 20, 30, 40, 50}, k = 0;
    while (k < n)
        for (int c = 0; c < 5 && k < n; c++)
            if (filled[c] < sizes[c]) {
                labels[k++] = (uint16_t)c;
                filled[c]++;
            }
    uint8_t a[150], b[150], other[150];
    stratified_split(labels, n, 5, 30, 42, a);
    stratified_split(labels, n, 5, 30, 42, b);
    stratified_split(labels, n, 5, 30, 43, other);
    int64_t per_class[5] = {0}, total = 0;
    for (int64_t i = 0; i < n; i++) {
        per_class[labels[i]] += a[i];
        total += a[i];
    }
    CHECK(total == 30, "30 held out, got %lld", (long long)total);
    for (int c = 0; c < 5; c++)
        CHECK(per_class[c] == sizes[c] / 5, "class %d: %lld held out", c, (long long)per_class[c]);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same split");
    CHECK(memcmp(a, other, sizeof a) != 0, "another seed, another split");

    // Rounding: 3 equal classes, 4 held out -> the remainder goes to class 0.
    uint16_t l3[30];
    for (int i = 0; i < 30; i++) l3[i] = (uint16_t)(i % 3);
    uint8_t m3[30];
    stratified_split(l3, 30, 3, 4, 1, m3);
    int64_t c3[3] = {0};
    for (int i = 0; i < 30; i++) c3[l3[i]] += m3[i];
    CHECK(c3[0] == 2 && c3[1] == 1 && c3[2] == 1, "largest remainder: %lld %lld %lld", (long long)c3[0],
          (long long)c3[1], (long long)c3[2]);

    // A class with a single image always keeps it for training.
    uint16_t l4[11] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    uint8_t m4[11];
    stratified_split(l4, 11, 2, 9, 1, m4);
    CHECK(m4[10] == 0, "the only image of class 1 stays in train");
    int64_t held = 0;
    for (int i = 0; i < 11; i++) held += m4[i];
    CHECK(held == 9, "9 held out, got %lld", (long long)held);
}

static void random_dataset(TokenDataset *ds, int64_t count, int side, int colors, int classes, uint64_t seed) {
    Rng rng;
    rng_init(&rng, seed, 0);
    ImageSet s;
    imageset_alloc(&s, count, side, side, classes);
    for (int c = 0; c < classes; c++) snprintf(s.class_names[c], IGPT_CLASS_NAME_BYTES, "class-%d", c);
    for (int64_t i = 0; i < count * side * side * 3; i++) s.pixels[i] = (uint8_t)rng_below(&rng, 256);
    for (int64_t i = 0; i < count; i++) s.labels[i] = (uint16_t)rng_below(&rng, (uint64_t)classes);
    Palette pal;
    palette_alloc(&pal, colors);
    for (int i = 0; i < colors * 3; i++) pal.rgb[i] = (uint8_t)rng_below(&rng, 256);
    dataset_from_images(&s, &pal, 2, ds);
    imageset_free(&s);
    palette_free(&pal);
}

TEST(test_dataset_round_trip) {
    TokenDataset ds, back;
    random_dataset(&ds, 13, 8, 20, 3, 1);
    const char *path = test_path("split.bin");
    dataset_write(path, &ds);
    dataset_read(path, &back);
    CHECK(back.count == 13 && back.height == 8 && back.width == 8 && back.num_classes == 3 && back.palette.colors == 20,
          "header fields");
    CHECK(memcmp(back.palette.rgb, ds.palette.rgb, 60) == 0, "palette");
    CHECK(memcmp(back.labels, ds.labels, 13 * 2) == 0, "labels");
    CHECK(memcmp(back.tokens, ds.tokens, 13 * 64 * 2) == 0, "tokens");
    CHECK(!strcmp(back.class_names[2], "class-2"), "class names");
    int64_t expected = IGPT_DATASET_FIXED_HEADER_BYTES + 3 * IGPT_CLASS_NAME_BYTES + 20 * 3 + 13 * 2 + 13 * 64 * 2;
    CHECK(file_size(path) == expected, "file size %lld, expected %lld", (long long)file_size(path),
          (long long)expected);
    size_t size;
    uint8_t *raw = read_whole_file(path, &size);
    CHECK(raw && memcmp(raw, "IGPTDATA", 8) == 0 && get_u32(raw + 8) == 1, "magic and version at the start");
    // Tokens sit at the end, little-endian uint16 in raster order.
    const uint8_t *tok = raw + size - 13 * 64 * 2;
    CHECK(tok[0] == (ds.tokens[0] & 0xFF) && tok[1] == (ds.tokens[0] >> 8), "first token little-endian at its offset");
    free(raw);
    dataset_free(&ds);
    dataset_free(&back);
}

TEST(test_palette_file_round_trip) {
    TokenDataset ds;
    random_dataset(&ds, 4, 4, 37, 2, 2);
    const char *pal_path = test_path("palette.bin"), *data_path = test_path("train.bin");
    palette_save(&ds.palette, pal_path);
    dataset_write(data_path, &ds);
    Palette a, b;
    palette_load(pal_path, &a);
    palette_from_file(data_path, &b);
    CHECK(a.colors == 37 && memcmp(a.rgb, ds.palette.rgb, 37 * 3) == 0, "palette file round trip");
    CHECK(b.colors == 37 && memcmp(b.rgb, ds.palette.rgb, 37 * 3) == 0, "palette taken from a prepared split");
    CHECK(file_size(pal_path) == 32 + 37 * 3, "palette file size");
    palette_free(&a);
    palette_free(&b);
    dataset_free(&ds);
}

TEST(test_palette_file_v2_round_trip) {
    Palette pal, back;
    make_exact_palette(&pal, 37, 3);
    const char *path = test_path("palette.bin");
    palette_save(&pal, path);
    palette_load(path, &back);
    CHECK(back.colors == 37 && memcmp(back.rgb, pal.rgb, 37 * 3) == 0, "colors round trip");
    CHECK(back.centers && memcmp(back.centers, pal.centers, 37 * 3 * sizeof(float)) == 0, "centers bit for bit");
    size_t size;
    uint8_t *raw = read_whole_file(path, &size);
    CHECK(raw && size == 32 + 37 * 3 + 37 * 3 * 4, "file size %zu", size);
    if (!raw) return;
    CHECK(get_u32(raw + 8) == 2 && get_u32(raw + 24) == 1, "version 2, flags 1 (centers follow)");
    uint32_t bits;
    memcpy(&bits, &pal.centers[5], 4);
    CHECK(get_u32(raw + 32 + 37 * 3 + 5 * 4) == bits, "center values little-endian float32 after the colors");
    // The file's CRC is the palette's identity: colors, then centers.
    CHECK(get_u32(raw + 16) == crc32_update(0, raw + 32, size - 32), "CRC over colors and centers");
    CHECK(palette_crc(&pal) == get_u32(raw + 16) && palette_crc(&back) == palette_crc(&pal),
          "palette_crc %08x = the file's %08x", palette_crc(&back), get_u32(raw + 16));
    CHECK(palette_crc(&pal) != crc32_update(0, pal.rgb, 37 * 3), "the identity is not that of the colors alone");
    // A copy keeps both; exact_crc (a file holding only the colors) stands for the identity.
    Palette copy, rounded;
    palette_copy(&back, &copy);
    CHECK(copy.centers && memcmp(copy.centers, pal.centers, 37 * 3 * sizeof(float)) == 0 &&
              palette_crc(&copy) == palette_crc(&pal),
          "palette_copy keeps the centers");
    palette_alloc(&rounded, 37);
    memcpy(rounded.rgb, pal.rgb, 37 * 3);
    rounded.exact_crc = palette_crc(&pal);
    CHECK(palette_crc(&rounded) == palette_crc(&pal), "exact_crc is the identity");
    free(raw);
    palette_free(&copy);
    palette_free(&rounded);
    palette_free(&back);
    palette_free(&pal);
}

// A palette without centers is written as it always was: version 1, byte for byte.
TEST(test_palette_file_v1_unchanged) {
    Palette pal;
    palette_alloc(&pal, 5);
    for (int i = 0; i < 15; i++) pal.rgb[i] = (uint8_t)(i * 17 + 3);
    const char *path = test_path("palette.bin");
    palette_save(&pal, path);
    uint8_t expected[32 + 15] = "IGPTPAL";
    put_u32(expected + 8, 1);
    put_u32(expected + 12, 5);
    put_u32(expected + 16, crc32_update(0, pal.rgb, 15));
    put_u32(expected + 20, crc32_update(0, expected, 20));
    memcpy(expected + 32, pal.rgb, 15);
    size_t size;
    uint8_t *raw = read_whole_file(path, &size);
    CHECK(raw && size == sizeof expected && memcmp(raw, expected, size) == 0, "the version 1 bytes");
    CHECK(palette_crc(&pal) == crc32_update(0, pal.rgb, 15), "the identity: the CRC of the colors, as before");
    Palette back;
    palette_load(path, &back);
    CHECK(!back.centers && back.exact_crc == 0 && memcmp(back.rgb, pal.rgb, 15) == 0, "read back without centers");
    free(raw);
    palette_free(&back);
    palette_free(&pal);
}

// A split tokenized with exact centers keeps their identity (header offset
// 56), not the centers; tokens are the centers', not the colors'.
TEST(test_dataset_keeps_exact_identity) {
    Rng rng;
    rng_init(&rng, 8, 0);
    ImageSet s;
    imageset_alloc(&s, 6, 8, 8, 2);
    for (int c = 0; c < 2; c++) snprintf(s.class_names[c], IGPT_CLASS_NAME_BYTES, "class-%d", c);
    for (int64_t i = 0; i < 6 * 64 * 3; i++) s.pixels[i] = (uint8_t)rng_below(&rng, 256);
    for (int64_t i = 0; i < 6; i++) s.labels[i] = (uint16_t)(i % 2);
    Palette pal, rounded;
    make_exact_palette(&pal, 64, 4);
    palette_alloc(&rounded, 64);
    memcpy(rounded.rgb, pal.rgb, 64 * 3);
    TokenDataset ds, plain, back;
    dataset_from_images(&s, &pal, 2, &ds);
    dataset_from_images(&s, &rounded, 2, &plain);
    CHECK(memcmp(ds.tokens, plain.tokens, 6 * 64 * 2) != 0, "the centers give other tokens than their rounding");
    const char *path = test_path("train.bin"), *plain_path = test_path("plain.bin");
    dataset_write(path, &ds);
    dataset_write(plain_path, &plain);
    dataset_read(path, &back);
    CHECK(back.palette.exact_crc == palette_crc(&pal) && !back.palette.centers, "exact_crc %08x, expected %08x",
          back.palette.exact_crc, palette_crc(&pal));
    CHECK(palette_crc(&back.palette) == palette_crc(&pal), "the split's palette_crc is the palette's");
    CHECK(memcmp(back.tokens, ds.tokens, 6 * 64 * 2) == 0, "tokens");
    size_t size, plain_size;
    uint8_t *raw = read_whole_file(path, &size), *plain_raw = read_whole_file(plain_path, &plain_size);
    CHECK(raw && get_u32(raw + 56) == palette_crc(&pal) && get_u32(raw + 60) == 0, "the identity at offset 56");
    CHECK(plain_raw && get_u64(plain_raw + 56) == 0, "without centers the field stays 0");
    // The split read back, written again, keeps the identity (decompress does that).
    dataset_write(test_path("again.bin"), &back);
    CHECK(files_equal(path, test_path("again.bin")), "written again, the same bytes");
    // Quantizing with only the rounding of exact centers would give other tokens.
    CHECK(palette_crc(&back.palette) != palette_crc(&rounded), "the rounding is another palette");
    free(raw);
    free(plain_raw);
    imageset_free(&s);
    palette_free(&pal);
    palette_free(&rounded);
    dataset_free(&ds);
    dataset_free(&plain);
    dataset_free(&back);
}
