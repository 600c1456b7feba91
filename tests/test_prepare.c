// End-to-end tests of ./igpt prepare, and of show and info on the files it
// writes, as a user runs them, including every bad input the data pipeline
// must refuse cleanly.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/images.h"
#include "data/palette.h"
#include "data/preview.h"
#include "stb/stb_image.h"
#include "stb/stb_image_write.h"
#include "test.h"
#include "util/json.h"

static const char *const outputs[] = {"palette.bin", "train.bin",   "val.bin",     "test.bin",
                                      "preview.png", "palette.png", "prepare.json"};

static void prepare_cifar_fixture(int per_batch, int test_records) {
    make_cifar_batches(test_path("cifar"), per_batch, test_records);
}

TEST(test_prepare_cifar_end_to_end) {
    prepare_cifar_fixture(40, 30);
    const char *out = test_path("out");
    int status = run_igpt("prepare --cifar10 %s --out %s --colors 16 --val 20 --seed 5 --threads 2 --quiet",
                          test_path("cifar"), out);
    CHECK(status == 0, "prepare succeeds: %s", cli_stderr());
    for (int i = 0; i < 7; i++) CHECK(path_exists(test_path("out/%s", outputs[i])), "%s written", outputs[i]);
    CHECK(strstr(cli_stdout(), "PSNR") && strstr(cli_stdout(), "airplane") && strstr(cli_stdout(), "images/s"),
          "summary printed: %s", cli_stdout());
    CHECK(run_igpt("info %s/train.bin %s/val.bin %s/test.bin %s/palette.bin", out, out, out, out) == 0,
          "info accepts every file: %s", cli_stderr());
    CHECK(strstr(cli_stdout(), "checks passed") != NULL, "info reports checks passed");

    // Round trip: the tokens on disk are the palette applied to the source images.
    TokenDataset train, val, test;
    dataset_read(test_path("out/train.bin"), &train);
    dataset_read(test_path("out/val.bin"), &val);
    dataset_read(test_path("out/test.bin"), &test);
    CHECK(train.count == 180 && val.count == 20 && test.count == 30, "split sizes %lld %lld %lld",
          (long long)train.count, (long long)val.count, (long long)test.count);
    Palette pal;
    palette_load(test_path("out/palette.bin"), &pal);
    CHECK(pal.colors == 16 && memcmp(pal.rgb, train.palette.rgb, 48) == 0 && memcmp(pal.rgb, test.palette.rgb, 48) == 0,
          "every split carries the palette");
    ImageSet all, train_images, val_images;
    cifar10_load(test_path("cifar"), "train", 32, &all);
    uint8_t *is_val = xmalloc((size_t)all.count);
    stratified_split(all.labels, all.count, all.num_classes, 20, 5, is_val);
    imageset_select(&all, is_val, 0, &train_images);
    imageset_select(&all, is_val, 1, &val_images);
    TokenDataset expect_train, expect_val;
    dataset_from_images(&train_images, &pal, 1, &expect_train);
    dataset_from_images(&val_images, &pal, 1, &expect_val);
    CHECK(memcmp(expect_train.tokens, train.tokens, (size_t)180 * 1024 * 2) == 0, "train tokens round-trip");
    CHECK(memcmp(expect_train.labels, train.labels, 180 * 2) == 0, "train labels round-trip");
    CHECK(memcmp(expect_val.tokens, val.tokens, (size_t)20 * 1024 * 2) == 0, "val tokens round-trip");
    int64_t per_class[10] = {0};
    for (int64_t i = 0; i < val.count; i++) per_class[val.labels[i]]++;
    for (int c = 0; c < 10; c++) CHECK(per_class[c] == 2, "validation holds 2 images of class %d", c);

    int w, h, comp;
    const int label_w = preview_label_width(&train, 10, 2);
    CHECK(label_w > 0 && stbi_info(test_path("out/preview.png"), &w, &h, &comp) &&
              w == label_w + 8 * (2 * 64 + 1 + 4) + 4 && h == 10 * 68 + 4,
          "preview.png is a 10-row grid of original|quantized pairs after a %d-pixel label column (%dx%d)", label_w, w,
          h);
    CHECK(stbi_info(test_path("out/palette.png"), &w, &h, &comp) && w == 32 * 12 && h == 12, "palette.png swatch");
    size_t json_size;
    char *json = (char *)read_whole_file(test_path("out/prepare.json"), &json_size);
    CHECK(json && strstr(json, "\"train\": {") && strstr(json, "\"per_class\": [18, 18"), "prepare.json: %s",
          json ? json : "(missing)");
    free(json);
    char *list_tmp = xasprintf("ls %s | grep -q tmp", out);
    CHECK(run_igpt("prepare --help") == 0 && system(list_tmp) != 0, "no temporary files left");
    free(list_tmp);

    free(is_val);
    imageset_free(&all);
    imageset_free(&train_images);
    imageset_free(&val_images);
    dataset_free(&expect_train);
    dataset_free(&expect_val);
    dataset_free(&train);
    dataset_free(&val);
    dataset_free(&test);
    palette_free(&pal);
}

TEST(test_prepare_image_folder_end_to_end) {
    const char *const names[] = {"cats", "dogs", "owls"};
    make_image_folder(test_path("images/train"), names, 3, 6, 40);
    make_image_folder(test_path("images/test"), names, 3, 2, 40);
    const char *out = test_path("out");
    int status =
        run_igpt("prepare --images %s --out %s --resolution 16 --colors 8 --val 3 --quiet", test_path("images"), out);
    CHECK(status == 0, "prepare succeeds: %s", cli_stderr());
    TokenDataset train, val, test;
    dataset_read(test_path("out/train.bin"), &train);
    dataset_read(test_path("out/val.bin"), &val);
    dataset_read(test_path("out/test.bin"), &test);
    CHECK(train.count == 15 && val.count == 3 && test.count == 6, "15/3/6 images");
    CHECK(train.height == 16 && train.width == 16 && train.palette.colors == 8, "16x16, 8 colors");
    CHECK(train.num_classes == 3 && !strcmp(train.class_names[2], "owls") && !strcmp(test.class_names[0], "cats"),
          "class names stored");
    dataset_free(&train);
    dataset_free(&val);
    dataset_free(&test);
}

TEST(test_prepare_same_seed_identical_bytes) {
    prepare_cifar_fixture(30, 10);
    const char *files[] = {"palette.bin", "train.bin", "val.bin", "test.bin", "preview.png"};
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 12 --val 10 --seed 9 --threads 1 --quiet",
                   test_path("cifar"), test_path("one")) == 0,
          "first run: %s", cli_stderr());
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 12 --val 10 --seed 9 --threads 2 --quiet",
                   test_path("cifar"), test_path("two")) == 0,
          "second run: %s", cli_stderr());
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 12 --val 10 --seed 10 --threads 2 --quiet",
                   test_path("cifar"), test_path("other")) == 0,
          "third run: %s", cli_stderr());
    for (int i = 0; i < 5; i++)
        CHECK(files_equal(test_path("one/%s", files[i]), test_path("two/%s", files[i])),
              "%s identical for the same seed (1 vs 2 threads)", files[i]);
    CHECK(!files_equal(test_path("one/val.bin"), test_path("other/val.bin")), "another seed holds out other images");
}

TEST(test_prepare_reuse_palette_for_test_split) {
    prepare_cifar_fixture(20, 15);
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 10 --split train --quiet", test_path("cifar"),
                   test_path("staged")) == 0,
          "train only: %s", cli_stderr());
    CHECK(!path_exists(test_path("staged/test.bin")), "--split train writes no test.bin");
    CHECK(path_exists(test_path("staged/preview-train.png")) && path_exists(test_path("staged/prepare-train.json")),
          "preview and summary named after the split");
    CHECK(run_igpt("prepare --cifar10 %s --out %s --split test --palette %s --quiet", test_path("cifar"),
                   test_path("staged"), test_path("staged/palette.bin")) == 0,
          "test with saved palette: %s", cli_stderr());
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 10 --quiet", test_path("cifar"), test_path("full")) == 0,
          "everything at once: %s", cli_stderr());
    CHECK(path_exists(test_path("staged/prepare-test.json")) && path_exists(test_path("staged/prepare-train.json")),
          "both summaries kept");
    CHECK(files_equal(test_path("staged/test.bin"), test_path("full/test.bin")),
          "a test split prepared later with the saved palette equals the one prepared with train");
    CHECK(run_igpt("prepare --cifar10 %s --out %s --split test --palette %s --quiet", test_path("cifar"),
                   test_path("from-split"), test_path("full/train.bin")) == 0,
          "palette taken from train.bin");
    CHECK(files_equal(test_path("from-split/test.bin"), test_path("full/test.bin")), "same tokens");
    int status = run_igpt("prepare --cifar10 %s --out %s --split test --quiet", test_path("cifar"), test_path("nopal"));
    expect_failure(status, 1, "needs the train split", test_path("nopal"));
}

// Each row of a preview starts with its class name: the label column holds
// exactly the letters preview_draw_text draws for that name (dark pixels on
// white), so rows of different classes differ there, and no row is blank.
static void check_class_names_drawn(const char *png, const TokenDataset *ds, int rows, int cell_h) {
    int w, h, comp;
    uint8_t *pixels = stbi_load(png, &w, &h, &comp, 3);
    CHECK(pixels != NULL, "%s readable", png);
    if (!pixels) return;
    const int label_w = preview_label_width(ds, rows, 1), text_scale = preview_text_scale(ds->height);
    uint8_t *expected = xmalloc((size_t)w * h * 3);
    memset(expected, 255, (size_t)w * h * 3);
    for (int row = 0; row < rows; row++) {
        char label[64];
        preview_class_label(ds, row, label, sizeof label);
        CHECK(strcmp(label, ds->class_names[row]) == 0, "row %d is labelled with its class name '%s'", row, label);
        preview_draw_text(expected, w, h, 4, 4 + row * cell_h + (ds->height - 7 * text_scale) / 2, label, text_scale);
    }
    int dark_rows = 0, mismatches = 0;
    for (int row = 0; row < rows; row++) {
        int dark = 0;
        for (int y = row * cell_h; y < (row + 1) * cell_h; y++)
            for (int x = 0; x < label_w; x++) {
                const size_t at = ((size_t)y * w + x) * 3;
                dark += pixels[at] < 128;
                mismatches += memcmp(pixels + at, expected + at, 3) != 0;
            }
        dark_rows += dark > 10;
    }
    CHECK(dark_rows == rows && mismatches == 0, "%d of %d rows carry a name; %d label pixels differ from the names",
          dark_rows, rows, mismatches);
    free(expected);
    stbi_image_free(pixels);
}

TEST(test_preview_labels_fall_back_to_label_ids) {
    TokenDataset ds = {.num_classes = 12, .height = 8, .width = 8};
    ds.class_names = xcalloc(12, sizeof(ClassName));
    snprintf(ds.class_names[0], sizeof ds.class_names[0], "cat");
    memset(ds.class_names[1], 'x', sizeof ds.class_names[1] - 1);
    char label[64];
    preview_class_label(&ds, 0, label, sizeof label);
    CHECK(strcmp(label, "cat") == 0, "a name is drawn as it is: %s", label);
    preview_class_label(&ds, 1, label, sizeof label);
    CHECK(strlen(label) == 24, "a long name is cut to 24 characters: %s", label);
    preview_class_label(&ds, 11, label, sizeof label);
    CHECK(strcmp(label, "11") == 0, "a class without a name is drawn as its label id: %s", label);
    uint8_t canvas[40 * 12 * 3];
    memset(canvas, 255, sizeof canvas);
    preview_draw_text(canvas, 40, 12, 1, 1, label, 1);
    int dark = 0;
    for (size_t i = 0; i < sizeof canvas; i += 3) dark += canvas[i] == 0;
    CHECK(dark > 6 && preview_text_width(label, 2) == 2 * preview_text_width(label, 1),
          "the id's digits are drawn (%d dark pixels), widths scale", dark);
    free(ds.class_names);
}

TEST(test_show_draws_grid_and_palette_swatch) {
    prepare_cifar_fixture(10, 0);
    unlink(test_path("cifar/test_batch.bin"));
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 8 --val 0 --no-preview --quiet", test_path("cifar"),
                   test_path("out")) == 0,
          "prepare: %s", cli_stderr());
    CHECK(!path_exists(test_path("out/preview.png")) && !path_exists(test_path("out/val.bin")),
          "--no-preview and --val 0 honoured");
    CHECK(run_igpt("show %s --per-class 4 --rows 3 --scale 1", test_path("out/train.bin")) == 0, "show: %s",
          cli_stderr());
    TokenDataset train;
    dataset_read(test_path("out/train.bin"), &train);
    const int label_w = preview_label_width(&train, 3, 1);
    int w, h, comp;
    CHECK(stbi_info(test_path("out/train.png"), &w, &h, &comp) && w == label_w + 4 * 36 + 4 && h == 3 * 36 + 4,
          "train.png grid %dx%d after a %d-pixel label column", w, h, label_w);
    check_class_names_drawn(test_path("out/train.png"), &train, 3, 36);
    dataset_free(&train);
    CHECK(run_igpt("show %s --out %s", test_path("out/palette.bin"), test_path("swatch.png")) == 0, "show palette");
    CHECK(stbi_info(test_path("swatch.png"), &w, &h, &comp) && w == 384 && h == 12, "swatch %dx%d", w, h);
    int status = run_igpt("show %s --out %s", test_path("out/train.bin"), test_path("out/val.bin"));
    expect_failure(status, 2, "must name a .png", NULL);
}

TEST(test_prepare_refuses_to_overwrite) {
    prepare_cifar_fixture(10, 5);
    const char *out = test_path("out");
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 8 --quiet", test_path("cifar"), out) == 0, "first run");
    size_t n;
    uint8_t *before = read_whole_file(test_path("out/train.bin"), &n);
    int status = run_igpt("prepare --cifar10 %s --out %s --colors 6 --quiet", test_path("cifar"), out);
    CHECK(status == 1 && strstr(cli_stderr(), "already exists; pass --force"), "refused: %s", cli_stderr());
    size_t m;
    uint8_t *after = read_whole_file(test_path("out/train.bin"), &m);
    CHECK(before && after && n == m && memcmp(before, after, n) == 0, "train.bin untouched");
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 6 --force --quiet", test_path("cifar"), out) == 0,
          "--force overwrites");
    TokenDataset ds;
    dataset_read(test_path("out/train.bin"), &ds);
    CHECK(ds.palette.colors == 6, "new file in place");
    dataset_free(&ds);
    free(before);
    free(after);
}

// --- Bad input -----------------------------------------------------------------

static void truncate_file(const char *path, int64_t bytes) { CHECK(truncate(path, bytes) == 0, "truncate %s", path); }

TEST(test_prepare_error_truncated_batch) {
    prepare_cifar_fixture(5, 2);
    truncate_file(test_path("cifar/data_batch_2.bin"), 5 * CIFAR10_RECORD_BYTES - 100);
    int status = run_igpt("prepare --cifar10 %s --out %s --quiet", test_path("cifar"), test_path("out"));
    expect_failure(status, 1, "data_batch_2.bin has 15265 bytes, which is not a whole number of 3073-byte",
                   test_path("out"));
}

TEST(test_prepare_error_wrong_size_batch) {
    prepare_cifar_fixture(5, 2);
    FILE *f = xfopen(test_path("cifar/test_batch.bin"), "ab");
    fputs("extra", f);
    fclose(f);
    int status = run_igpt("prepare --cifar10 %s --out %s --quiet", test_path("cifar"), test_path("out"));
    expect_failure(status, 1, "test_batch.bin has 6151 bytes", test_path("out"));
    truncate_file(test_path("cifar/test_batch.bin"), 0);
    status = run_igpt("prepare --cifar10 %s --out %s --quiet", test_path("cifar"), test_path("out"));
    expect_failure(status, 1, "test_batch.bin has 0 bytes", test_path("out"));
}

TEST(test_prepare_error_missing_batch) {
    prepare_cifar_fixture(5, 2);
    unlink(test_path("cifar/data_batch_3.bin"));
    int status = run_igpt("prepare --cifar10 %s --out %s --quiet", test_path("cifar"), test_path("out"));
    expect_failure(status, 1, "data_batch_3.bin is missing", test_path("out"));
    status = run_igpt("prepare --cifar10 %s --out %s --quiet", test_path("nowhere"), test_path("out"));
    expect_failure(status, 1, "no such folder", test_path("out"));
    make_directories(test_path("empty"));
    status = run_igpt("prepare --cifar10 %s --out %s --quiet", test_path("empty"), test_path("out"));
    expect_failure(status, 1, "holds no CIFAR-10 binary batches", test_path("out"));
}

TEST(test_prepare_error_label_out_of_range) {
    prepare_cifar_fixture(5, 2);
    FILE *f = xfopen(test_path("cifar/data_batch_5.bin"), "r+b");
    fseek(f, 3 * CIFAR10_RECORD_BYTES, SEEK_SET);
    fputc(10, f);
    fclose(f);
    int status = run_igpt("prepare --cifar10 %s --out %s --quiet", test_path("cifar"), test_path("out"));
    expect_failure(status, 1, "data_batch_5.bin: record 3 has label 10, expected 0..9", test_path("out"));
}

static void small_folder(void) {
    const char *const names[] = {"a", "b"};
    make_image_folder(test_path("images"), names, 2, 3, 16);
}

TEST(test_prepare_error_corrupt_image) {
    small_folder();
    write_whole_file(test_path("images/b/broken.jpg"), "\xff\xd8\xff\xe0 this is not a JPEG", 24);
    int status = run_igpt("prepare --images %s --out %s --quiet", test_path("images"), test_path("out"));
    expect_failure(status, 1, "cannot decode image", test_path("out"));
    CHECK(strstr(cli_stderr(), "b/broken.jpg") != NULL, "names the file: %s", cli_stderr());
    // A PNG cut short is refused too.
    unlink(test_path("images/b/broken.jpg"));
    size_t n;
    uint8_t *png = read_whole_file(test_path("images/a/000.png"), &n);
    write_whole_file(test_path("images/a/cut.png"), png, n / 2);
    free(png);
    status = run_igpt("prepare --images %s --out %s --quiet", test_path("images"), test_path("out"));
    expect_failure(status, 1, "a/cut.png", test_path("out"));
}

// An image that claims no pixels (it made the resize assert: SIGABRT) or a
// side beyond the reader's limit is an error naming the file, found before
// decoding.
TEST(test_prepare_error_image_size) {
    small_folder();
    write_whole_file(test_path("images/a/empty.ppm"), "P6\n4 0\n255\n", 11);
    int status = run_igpt("prepare --images %s --out %s --quiet", test_path("images"), test_path("out"));
    expect_failure(status, 1, "a/empty.ppm is 4 x 0 pixels; igpt reads 1..16384 on a side", test_path("out"));
    unlink(test_path("images/a/empty.ppm"));
    write_whole_file(test_path("images/b/huge.ppm"), "P6\n100000 2\n255\n", 17);
    status = run_igpt("prepare --images %s --out %s --quiet", test_path("images"), test_path("out"));
    expect_failure(status, 1, "b/huge.ppm is 100000 x 2 pixels", test_path("out"));
}

TEST(test_prepare_error_unreadable_image) {
    small_folder();
    // A dangling link cannot be opened (tests run as root, so permissions would not stop a read).
    CHECK(symlink(test_path("nowhere.png"), test_path("images/a/gone.png")) == 0, "symlink");
    int status = run_igpt("prepare --images %s --out %s --quiet", test_path("images"), test_path("out"));
    expect_failure(status, 1, "cannot decode image", test_path("out"));
    CHECK(strstr(cli_stderr(), "gone.png") != NULL, "names the file: %s", cli_stderr());
}

TEST(test_prepare_error_empty_class_folder) {
    small_folder();
    make_directories(test_path("images/c"));
    write_whole_file(test_path("images/c/notes.txt"), "x", 1);
    int status = run_igpt("prepare --images %s --out %s --quiet", test_path("images"), test_path("out"));
    expect_failure(status, 1, "class folder", test_path("out"));
    CHECK(strstr(cli_stderr(), "images/c has no images"), "names the folder: %s", cli_stderr());
    make_directories(test_path("no-classes"));
    status = run_igpt("prepare --images %s --out %s --quiet", test_path("no-classes"), test_path("out"));
    expect_failure(status, 1, "has no class folders", test_path("out"));
}

TEST(test_prepare_error_palette_color_mismatch) {
    prepare_cifar_fixture(5, 3);
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 8 --quiet", test_path("cifar"), test_path("first")) == 0,
          "palette made");
    int status = run_igpt("prepare --cifar10 %s --out %s --split test --palette %s --colors 16 --quiet",
                          test_path("cifar"), test_path("out"), test_path("first/palette.bin"));
    expect_failure(status, 1, "--colors 16 does not match the 8 colors of palette", test_path("out"));
}

TEST(test_prepare_error_bad_palette_file) {
    prepare_cifar_fixture(5, 3);
    write_whole_file(test_path("junk.bin"), "not a palette at all, really not", 32);
    int status = run_igpt("prepare --cifar10 %s --out %s --palette %s --quiet", test_path("cifar"), test_path("out"),
                          test_path("junk.bin"));
    expect_failure(status, 1, "is not an igpt palette", test_path("out"));
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 8 --quiet", test_path("cifar"), test_path("first")) == 0,
          "palette made");
    FILE *f = xfopen(test_path("first/palette.bin"), "r+b");
    fseek(f, 40, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    status = run_igpt("prepare --cifar10 %s --out %s --palette %s --quiet", test_path("cifar"), test_path("out"),
                      test_path("first/palette.bin"));
    expect_failure(status, 1, "palette colors are corrupt (CRC mismatch)", test_path("out"));
}

TEST(test_prepare_error_bad_values) {
    prepare_cifar_fixture(5, 3);
    const char *cifar = test_path("cifar"), *out = test_path("out");
    expect_failure(run_igpt("prepare --cifar10 %s --out %s --colors 1", cifar, out), 2,
                   "--colors must be between 2 and 4096", out);
    expect_failure(run_igpt("prepare --cifar10 %s --out %s --colors 5000", cifar, out), 2, "--colors must be between",
                   out);
    expect_failure(run_igpt("prepare --cifar10 %s --out %s --colors 12abc", cifar, out), 2,
                   "--colors expects an integer", out);
    expect_failure(run_igpt("prepare --cifar10 %s --out %s --resolution 1000", cifar, out), 2, "--resolution must be",
                   out);
    expect_failure(run_igpt("prepare --cifar10 %s --out %s --split validation", cifar, out), 2, "--split must be", out);
    expect_failure(run_igpt("prepare --cifar10 %s --images %s --out %s", cifar, cifar, out), 2, "exactly one source",
                   out);
    expect_failure(run_igpt("prepare --out %s", out), 2, "exactly one source", out);
    expect_failure(run_igpt("prepare --cifar10 %s", cifar), 2, "--out DIR is required", NULL);
    expect_failure(run_igpt("prepare --cifar10 %s --out %s extra", cifar, out), 2, "unexpected argument 'extra'", out);
}

TEST(test_prepare_error_unwritable_output) {
    prepare_cifar_fixture(5, 3);
    write_whole_file(test_path("file"), "x", 1);
    int status = run_igpt("prepare --cifar10 %s --out %s --quiet", test_path("cifar"), test_path("file/out"));
    expect_failure(status, 1, "is not a folder", NULL);
    CHECK(!path_exists(test_path("file/out")), "nothing created");
    status = run_igpt("prepare --cifar10 %s --out %s --quiet", test_path("cifar"), test_path("file"));
    expect_failure(status, 1, "is not a folder", NULL);
    size_t n;
    uint8_t *content = read_whole_file(test_path("file"), &n);
    CHECK(content && n == 1 && content[0] == 'x', "the file in the way is untouched");
    free(content);
}

TEST(test_prepare_error_val_too_large) {
    prepare_cifar_fixture(4, 3);
    int status = run_igpt("prepare --cifar10 %s --out %s --val 20 --quiet", test_path("cifar"), test_path("out"));
    expect_failure(status, 1, "leaves no training images", test_path("out"));
}

TEST(test_prepare_error_test_classes_differ) {
    const char *const train_names[] = {"a", "b"}, *const test_names[] = {"a", "c"};
    make_image_folder(test_path("images/train"), train_names, 2, 3, 8);
    make_image_folder(test_path("images/test"), test_names, 2, 1, 8);
    int status = run_igpt("prepare --images %s --out %s --val 0 --quiet", test_path("images"), test_path("out"));
    expect_failure(status, 1, "classes differ", test_path("out"));
}

TEST(test_info_error_corrupt_prepared_file) {
    prepare_cifar_fixture(5, 3);
    CHECK(run_igpt("prepare --cifar10 %s --out %s --colors 8 --quiet", test_path("cifar"), test_path("out")) == 0,
          "prepared");
    size_t n;
    uint8_t *good = read_whole_file(test_path("out/train.bin"), &n);
    CHECK(good != NULL, "train.bin");
    if (!good) return;
    struct {
        const char *name;
        int64_t flip_at;  // -1: none
        size_t keep;      // bytes kept
        const char *message;
    } cases[] = {
        {"payload.bin", (int64_t)n - 7, n, "data is corrupt (payload CRC mismatch)"},
        {"header.bin", 20, n, "header is corrupt (CRC mismatch)"},
        {"names.bin", 64 + 3, n, "header is corrupt (CRC mismatch)"},
        {"magic.bin", 0, n, "is not an igpt palette or prepared data file (bad magic)"},
        {"short.bin", -1, n - 1000, "truncated or padded file"},
        {"tiny.bin", -1, 10, "too short"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *bad = xmalloc(n);
        memcpy(bad, good, n);
        if (cases[i].flip_at >= 0) bad[cases[i].flip_at] ^= 0x40;
        const char *path = test_path("%s", cases[i].name);
        write_whole_file(path, bad, cases[i].keep);
        int status = run_igpt("info %s", path);
        expect_failure(status, 1, cases[i].message, NULL);
        size_t m;
        uint8_t *after = read_whole_file(path, &m);
        CHECK(after && m == cases[i].keep && memcmp(after, bad, m) == 0, "%s left untouched", cases[i].name);
        free(after);
        free(bad);
    }
    // A version from the future is refused with a hint.
    uint8_t *future = xmalloc(n);
    memcpy(future, good, n);
    put_u32(future + 8, 99);
    write_whole_file(test_path("future.bin"), future, n);
    expect_failure(run_igpt("info %s", test_path("future.bin")), 1, "data format version 99", NULL);
    // The corrupt file is also refused as a palette source.
    int status = run_igpt("prepare --cifar10 %s --out %s --split test --palette %s --quiet", test_path("cifar"),
                          test_path("out2"), test_path("payload.bin"));
    expect_failure(status, 1, "payload CRC mismatch", test_path("out2"));
    free(future);
    free(good);
}

// A palette.bin with exact centers, damaged in every way the reader checks.
TEST(test_info_error_corrupt_exact_palette) {
    enum { COLORS = 6, CENTERS_AT = 32 + COLORS * 3, SIZE = 32 + COLORS * 15 };
    Palette pal;
    make_exact_palette(&pal, COLORS, 9);
    const char *good_path = test_path("good.bin");
    palette_save(&pal, good_path);
    CHECK(run_igpt("info %s", good_path) == 0 && strstr(cli_stdout(), "checks passed"), "info reads it: %s",
          cli_stderr());
    size_t n;
    uint8_t *good = read_whole_file(good_path, &n);
    CHECK(good && n == SIZE, "palette.bin of %zu bytes", n);
    if (!good || n != SIZE) return;
    const float nan_value = NAN, too_big = 255.5f;
    struct {
        const char *name;
        size_t at;       // the u32 changed, at this offset
        uint32_t value;  // to this
        bool reseal;     // both CRCs made right again
        size_t keep;     // bytes kept
        const char *message;
    } cases[] = {
        {"flags.bin", 24, 3, false, SIZE, "palette flags are 3, this igpt knows 0 and 1"},
        {"no-flag.bin", 24, 0, false, SIZE, "truncated or padded file"},
        {"short.bin", 24, 1, false, SIZE - 4, "of 6 colors with exact centers takes 122 (truncated or padded file)"},
        {"version.bin", 8, 3, false, SIZE, "palette format version 3, this igpt reads versions 1 and 2"},
        {"flipped.bin", CENTERS_AT + 9, get_u32(good + CENTERS_AT + 9) ^ 0x100, false, SIZE,
         "palette colors or centers are corrupt (CRC mismatch)"},
        {"nan.bin", CENTERS_AT + 4 * 4, 0, true, SIZE, "exact center 1 (channel 1) is nan"},
        {"range.bin", CENTERS_AT + 5 * 4, 0, true, SIZE, "exact center 1 (channel 2) is 255.5, expected"},
        {"negative.bin", CENTERS_AT, 0xbf000000u, true, SIZE, "exact center 0 (channel 0) is -0.5"},
        {"subnormal.bin", CENTERS_AT + 3 * 4, 1, true, SIZE, "exact center 1 (channel 0) is 1.4013e-45"},
        {"rounding.bin", 32, get_u32(good + 32) ^ 0x2, true, SIZE, "color 0 is not the rounding of its exact center"},
    };
    memcpy(&cases[5].value, &nan_value, 4);
    memcpy(&cases[6].value, &too_big, 4);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t bad[SIZE];
        memcpy(bad, good, SIZE);
        put_u32(bad + cases[i].at, cases[i].value);
        if (cases[i].reseal) {
            put_u32(bad + 16, crc32_update(0, bad + 32, SIZE - 32));
            put_u32(bad + 20, crc32_update(0, bad, 20));
        }
        const char *path = test_path("%s", cases[i].name);
        write_whole_file(path, bad, cases[i].keep);
        expect_failure(run_igpt("info %s", path), 1, cases[i].message, NULL);
    }
    free(good);
    palette_free(&pal);
}

// prepare --palette with exact centers: the tokens are the centers', each
// split keeps the palette's identity, and such a split cannot stand in for
// the palette it does not hold.
TEST(test_prepare_with_exact_palette) {
    prepare_cifar_fixture(8, 6);
    Palette pal, rounded;
    make_exact_palette(&pal, 16, 11);
    palette_alloc(&rounded, 16);
    memcpy(rounded.rgb, pal.rgb, 16 * 3);
    palette_save(&pal, test_path("exact.bin"));
    palette_save(&rounded, test_path("rounded.bin"));
    const char *cifar = test_path("cifar"), *out = test_path("out");
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --val 8 --palette %s --quiet", cifar, out,
                   test_path("exact.bin")) == 0,
          "prepare with exact centers: %s", cli_stderr());
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --val 8 --palette %s --quiet", cifar,
                   test_path("plain"), test_path("rounded.bin")) == 0,
          "prepare with their rounding: %s", cli_stderr());
    char *json = (char *)read_whole_file(test_path("out/prepare.json"), NULL);
    char *plain_json = (char *)read_whole_file(test_path("plain/prepare.json"), NULL);
    CHECK(json && strstr(json, "\"palette_exact_centers\": true"), "prepare.json says exact centers");
    CHECK(plain_json && strstr(plain_json, "\"palette_exact_centers\": false"), "and not for their rounding");
    CHECK(run_igpt("info %s/train.bin %s/val.bin %s/test.bin", out, out, out) == 0, "info reads the splits: %s",
          cli_stderr());
    // The tokens of the test split: the exact centers applied to its images.
    ImageSet images;
    cifar10_load(cifar, "test", 8, &images);
    TokenDataset expected, test, plain_test;
    dataset_from_images(&images, &pal, 1, &expected);
    dataset_read(test_path("out/test.bin"), &test);
    dataset_read(test_path("plain/test.bin"), &plain_test);
    const size_t token_bytes = (size_t)test.count * 64 * 2;
    CHECK(test.count == 6 && memcmp(test.tokens, expected.tokens, token_bytes) == 0, "the centers' tokens");
    CHECK(memcmp(plain_test.tokens, test.tokens, token_bytes) != 0, "not those of the rounded colors");
    CHECK(test.palette.exact_crc == palette_crc(&pal) && palette_crc(&test.palette) == palette_crc(&pal),
          "the split keeps the identity %08x of exact.bin, got %08x", palette_crc(&pal), test.palette.exact_crc);
    CHECK(plain_test.palette.exact_crc == 0 && palette_crc(&plain_test.palette) == palette_crc(&rounded),
          "the rounded palette's split is a plain one");
    // A split of exact centers is no palette source; its palette.bin is.
    expect_failure(
        run_igpt("prepare --cifar10 %s --out %s --split test --palette %s/train.bin", cifar, test_path("again"), out),
        1,
        "train.bin was tokenized with exact cluster centers it does not hold; give --palette the "
        "palette.bin it was prepared with",
        test_path("again"));
    CHECK(run_igpt("prepare --cifar10 %s --out %s --resolution 8 --split test --palette %s --quiet", cifar,
                   test_path("again"), test_path("exact.bin")) == 0 &&
              files_equal(test_path("again/test.bin"), test_path("out/test.bin")),
          "the test split prepared again with exact.bin: the same file: %s", cli_stderr());
    free(json);
    free(plain_json);
    imageset_free(&images);
    dataset_free(&expected);
    dataset_free(&test);
    dataset_free(&plain_test);
    palette_free(&pal);
    palette_free(&rounded);
}

// prepare.json stays valid JSON when the source folder, a class and the
// output folder have a double quote in their names.
TEST(test_prepare_json_with_quotes_in_paths) {
    const char *const names[] = {"plain", "q\"uote"};
    char *images = xstrdup(test_path("im\"ages"));
    char *out = xstrdup(test_path("o\"ut"));
    make_image_folder(images, names, 2, 4, 8);
    CHECK(run_igpt("prepare --images '%s' --out '%s' --resolution 8 --colors 4 --val 2 --quiet", images, out) == 0,
          "prepare: %s", cli_stderr());
    char *summary = xasprintf("%s/prepare.json", out);
    cJSON *root = json_read_file(summary);
    CHECK(root != NULL, "%s parses as JSON", summary);
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(root, "source");
    CHECK(cJSON_IsString(source) && strcmp(source->valuestring, images) == 0, "the source folder, as given");
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(root, "classes");
    const cJSON *second = cJSON_GetArrayItem(classes, 1);
    CHECK(cJSON_IsString(second) && strcmp(second->valuestring, "q\"uote") == 0, "the class names");
    const cJSON *splits = cJSON_GetObjectItemCaseSensitive(root, "splits");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(splits, "train"), "file");
    char *train = xasprintf("%s/train.bin", out);
    CHECK(cJSON_IsString(file) && strcmp(file->valuestring, train) == 0, "the file of each split");
    cJSON_Delete(root);
    free(train);
    free(summary);
    free(images);
    free(out);
}
