// ./igpt plot on small hand-written runs, checked through what --describe says
// was drawn: the series in bits per token, the error bars' values against the
// binomial formula, the broken axis for the random init, labels that do not
// overlap, probes.csv with and without its newer columns; with ./igpt compress
// results, compression against accuracy and the classical compressors' marks.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "util/json.h"

static void write_text(const char *path, const char *text) { write_whole_file(path, text, strlen(text)); }

// A probe-NNNNNNNN.json as ./igpt probe writes it (eval_images < 0: an older
// file without the count), three layers: block 0 input, block 1 input, final norm.
static void write_probe_json(const char *run, int step, double gen_loss, const double accuracy[3], int eval_images) {
    char count[64] = "";
    if (eval_images >= 0) snprintf(count, sizeof count, "  \"eval_images\": %d,\n", eval_images);
    char *json = xasprintf(
        "{\n  \"model\": \"x\",\n  \"step\": %d,\n  \"eval_split\": \"val\",\n  \"train_images\": 1000,\n%s"
        "  \"eval_gen_loss\": %.6f,\n  \"best_layer\": 0,\n  \"best_accuracy\": %.6f,\n  \"layers\": [\n"
        "    {\"layer\": 0, \"accuracy\": %.6f},\n    {\"layer\": 1, \"accuracy\": %.6f},\n"
        "    {\"layer\": 2, \"accuracy\": %.6f}\n  ]\n}\n",
        step, count, gen_loss, accuracy[2], accuracy[0], accuracy[1], accuracy[2]);
    write_text(test_path("%s/probe/probe-%08d.json", run, step), json);
    free(json);
}

// A probes.csv row; with se_column, the newer eval_images and best_accuracy_se columns at its end.
static void append_csv_row(FILE *f, int step, double gen_loss, const double accuracy[3], int eval_images,
                           bool se_column) {
    fprintf(f, "%d,%.6f,2,%.6f,%.6f,%.6f,%.6f", step, gen_loss, accuracy[2], accuracy[0], accuracy[1], accuracy[2]);
    if (se_column) fprintf(f, ",%d,%.6f", eval_images, sqrt(accuracy[2] * (1 - accuracy[2]) / eval_images));
    fprintf(f, "\n");
}

// Run "a", files as before probes.csv had its newer columns: the counts are in
// the JSONs only. probe-00000030.json is a result with other settings, not in
// probes.csv: it must not be drawn.
static void write_old_run(void) {
    make_directories(test_path("a/probe"));
    // An older run.json names only the config; a newer one also has the model's width and depth.
    write_text(test_path("a/run.json"), "{\"config\": \"tiny\"}\n");
    FILE *log = xfopen(test_path("a/log.jsonl"), "w");
    for (int step = 1; step <= 60; step++) {
        fprintf(log, "{\"step\": %d, \"loss\": %.6f}\n", step, 2.0 + 2.0 / step);
        if (step % 20 == 0) fprintf(log, "{\"step\": %d, \"val_loss\": %.6f, \"eval_images\": 512}\n", step, 2.1);
    }
    fclose(log);
    FILE *table = xfopen(test_path("a/probe/probes.csv"), "w");
    fprintf(table, "step,eval_gen_loss,best_layer,best_accuracy,acc_layer_0,acc_layer_1,acc_layer_2\n");
    const double gen_loss[4] = {2.772589, 2.2, 2.1, 2.05},
                 accuracy[4][3] = {{0.20, 0.22, 0.25}, {0.30, 0.33, 0.36}, {0.31, 0.36, 0.38}, {0.30, 0.37, 0.40}};
    for (int i = 0; i < 4; i++) {
        write_probe_json("a", 20 * i, gen_loss[i], accuracy[i], 200);
        append_csv_row(table, 20 * i, gen_loss[i], accuracy[i], 200, false);
    }
    fclose(table);
    write_probe_json("a", 30, 2.15, accuracy[0], 200);
    write_text(
        test_path("a/probe/baseline-pixels.json"),
        "{\"model\": \"raw pixels\", \"eval_split\": \"val\", \"eval_images\": 200, \"best_accuracy\": 0.350000, "
        "\"layers\": []}\n");
}

// Run "b": probes.csv with the newer columns, JSONs without the count (the
// column is what gives it), and 12 checkpoints crowded together, whose step
// labels must find places that do not overlap.
static void write_crowded_run(void) {
    make_directories(test_path("b/probe"));
    write_text(test_path("b/run.json"), "{\"config\": \"tiny\", \"model\": {\"d_model\": 128, \"n_layer\": 8}}\n");
    FILE *table = xfopen(test_path("b/probe/probes.csv"), "w");
    fprintf(table,
            "step,eval_gen_loss,best_layer,best_accuracy,acc_layer_0,acc_layer_1,acc_layer_2,eval_images,"
            "best_accuracy_se\n");
    for (int i = 0; i <= 12; i++) {
        const double gen_loss = i == 0 ? 2.8 : 2.3 - 0.004 * i, best = i == 0 ? 0.2 : 0.30 + 0.001 * i;
        const double accuracy[3] = {best - 0.05, best - 0.02, best};
        write_probe_json("b", 10 * i, gen_loss, accuracy, -1);
        append_csv_row(table, 10 * i, gen_loss, accuracy, 400, true);
    }
    fclose(table);
}

static const cJSON *get(const cJSON *object, const char *key) { return cJSON_GetObjectItemCaseSensitive(object, key); }
static const cJSON *item(const cJSON *array, int i) { return cJSON_GetArrayItem(array, i); }
static double number_at(const cJSON *array, int i) {
    const cJSON *value = item(array, i);
    return cJSON_IsNumber(value) ? value->valuedouble : NAN;
}
static const char *text_of(const cJSON *value) { return cJSON_IsString(value) ? value->valuestring : ""; }

static bool near(double a, double b) { return fabs(a - b) < 1e-6 * (1 + fabs(b)); }

// Every point's error bar is sqrt(a (1 - a) / n) of its own accuracy and count (in %).
static int wrong_error_bars(const cJSON *series, int n_eval) {
    const cJSON *y = get(series, "y"), *se = get(series, "se"), *counts = get(series, "n_eval");
    int wrong = cJSON_GetArraySize(y) == 0;
    for (int i = 0; i < cJSON_GetArraySize(y); i++) {
        const double a = number_at(y, i) / 100;
        wrong += !near(number_at(se, i), 100 * sqrt(a * (1 - a) / n_eval));
        if (counts) wrong += !near(cJSON_IsArray(counts) ? number_at(counts, i) : counts->valuedouble, n_eval);
    }
    return wrong;
}

// Pairs of placed labels whose boxes (each item's `key`) overlap; the number placed in *placed.
static int overlapping_boxes(const cJSON *labels, const char *key, int *placed) {
    int overlaps = 0;
    *placed = 0;
    for (int i = 0; i < cJSON_GetArraySize(labels); i++) {
        const cJSON *a = get(item(labels, i), key);
        if (!cJSON_IsArray(a)) continue;
        (*placed)++;
        for (int j = 0; j < i; j++) {
            const cJSON *b = get(item(labels, j), key);
            if (!cJSON_IsArray(b)) continue;
            overlaps += number_at(a, 0) < number_at(b, 2) && number_at(b, 0) < number_at(a, 2) &&
                        number_at(a, 1) < number_at(b, 3) && number_at(b, 1) < number_at(a, 3);
        }
    }
    return overlaps;
}

static void check_loss_vs_accuracy(const cJSON *figure) {
    CHECK(!strcmp(text_of(get(figure, "unit")), "bits per token") &&
              strstr(text_of(get(figure, "title")), "on 200-400 val images"),
          "one loss unit; the title says on how many images: %s", text_of(get(figure, "title")));
    const cJSON *series = get(figure, "series"), *a = item(series, 0), *b = item(series, 1), *pixels = item(series, 2);
    const cJSON *steps = get(a, "steps"), *x = get(a, "x");
    CHECK(!strcmp(text_of(get(a, "label")), "a (tiny)") && cJSON_GetArraySize(steps) == 4 &&
              number_at(steps, 1) == 20 && number_at(steps, 3) == 60 && near(number_at(x, 0), 4.0) &&
              near(number_at(x, 3), 2.05 / log(2)) && near(number_at(get(a, "y"), 3), 40.0),
          "run a: the steps of probes.csv (not the stale step 30), loss in bits, best accuracy in %%");
    CHECK(wrong_error_bars(a, 200) == 0, "run a: error bars from the JSONs' eval_images");
    CHECK(wrong_error_bars(b, 400) == 0, "run b: error bars from probes.csv's eval_images column");
    CHECK(near(number_at(get(b, "y"), 12), 31.2), "run b: 13 checkpoints");
    CHECK(!strcmp(text_of(get(b, "label")), "b (d=128, 8 blocks)"), "run b is labelled by its width and depth: %s",
          text_of(get(b, "label")));
    CHECK(near(get(pixels, "baseline")->valuedouble, 35.0) &&
              near(get(pixels, "se")->valuedouble, 100 * sqrt(0.35 * 0.65 / 200)),
          "the pixel baseline with its own error band");
    // The random init (4 bits, and 2.8 nats for b) far from the trained points (< 3.4 bits): a panel of its own.
    const cJSON *main_xlim = get(figure, "main_xlim"), *init_xlim = get(figure, "init_xlim");
    CHECK(cJSON_IsTrue(get(figure, "broken_axis")) && !strcmp(text_of(item(get(a, "panel"), 0)), "init") &&
              !strcmp(text_of(item(get(a, "panel"), 1)), "main") && number_at(main_xlim, 0) < 3.4 &&
              number_at(main_xlim, 1) > 2.8 && number_at(init_xlim, 0) > 2.8 / log(2) && number_at(init_xlim, 1) < 4.0,
          "broken axis: the init points in their own panel, the trained ones spread over the main one");
    int placed;
    const int overlaps = overlapping_boxes(get(figure, "labels"), "box", &placed);
    CHECK(overlaps == 0 && placed >= 10, "%d of 17 step labels placed, %d overlapping pairs", placed, overlaps);
}

static void check_accuracy_vs_layer(const cJSON *panels) {
    const cJSON *a = item(panels, 0), *ticks = get(a, "xticklabels");
    CHECK(cJSON_GetArraySize(panels) == 2 && !strcmp(text_of(item(ticks, 0)), "0") &&
              !strcmp(text_of(item(ticks, 2)), "final\nnorm") && strstr(text_of(get(a, "title")), "on 200 val images"),
          "one panel per run; the last layer is the final norm; the title says the count");
    const cJSON *series = get(a, "series"), *last = item(series, 3);
    CHECK(cJSON_GetArraySize(series) == 5 && number_at(get(last, "y"), 2) == 40.0 &&
              !strcmp(text_of(item(get(last, "layers"), 2)), "final norm") &&
              !strcmp(text_of(item(get(last, "layers"), 0)), "block 0 input"),
          "one line per checkpoint, and the pixel baseline");
    int wrong = 0;
    for (int i = 0; i < 4; i++) wrong += wrong_error_bars(item(series, i), 200);
    CHECK(wrong == 0, "every layer's band is sqrt(a(1-a)/n)");
    const cJSON *b = get(item(panels, 1), "series");
    CHECK(cJSON_IsTrue(get(item(series, 0), "band")) && cJSON_IsTrue(get(item(series, 3), "band")) &&
              cJSON_IsTrue(get(item(b, 0), "band")) && cJSON_IsFalse(get(item(b, 6), "band")) &&
              cJSON_IsTrue(get(item(b, 12), "band")),
          "bands on each of 4 checkpoints; of 13, on the first and last only");
}

static void check_loss_vs_step(const cJSON *figure) {
    const cJSON *series = get(figure, "series"), *raw = item(series, 0), *average = item(series, 1);
    const cJSON *val = item(series, 2);
    const double expected = (2.0 + 2.0 / 1 + 2.0 + 2.0 / 2 + 2.0 + 2.0 / 3) / 3 / log(2);
    CHECK(near(number_at(get(raw, "y"), 0), 4.0 / log(2)) && number_at(get(raw, "x"), 59) == 60,
          "the training loss, per step, in bits");
    CHECK(cJSON_IsNumber(get(average, "window")) && get(average, "window")->valuedouble == 3, "a window of 3 steps");
    CHECK(number_at(get(average, "x"), 0) == 2 && near(number_at(get(average, "y"), 0), expected) &&
              cJSON_GetArraySize(get(average, "y")) == 58,
          "the smoothed loss: a centred moving average (%g, expected %g)", number_at(get(average, "y"), 0), expected);
    CHECK(near(number_at(get(val, "y"), 0), 2.1 / log(2)) && number_at(get(val, "x"), 2) == 60, "validation points");
}

static cJSON *plot_and_describe(const char *runs, const char *out, const char *description) {
    const int status =
        run_igpt("plot %s --out %s --describe %s", runs, test_path("%s", out), test_path("%s", description));
    CHECK(status == 0, "plot %s: %s %s", runs, cli_stdout(), cli_stderr());
    return json_read_file(test_path("%s", description));
}

TEST(test_plot_draws_expected_series) {
    write_old_run();
    write_crowded_run();
    char *runs = xasprintf("%s %s", test_path("a"), test_path("b"));
    cJSON *described = plot_and_describe(runs, "plots", "series.json");
    free(runs);
    const char *figures[] = {"loss_vs_accuracy", "accuracy_vs_layer", "loss_vs_step"};
    for (int i = 0; i < 3; i++) {
        CHECK(file_size(test_path("plots/%s.png", figures[i])) > 1000, "%s.png written", figures[i]);
        CHECK(file_size(test_path("plots/%s.svg", figures[i])) > 1000, "%s.svg written", figures[i]);
    }
    CHECK(described != NULL, "series described");
    if (!described) return;
    check_loss_vs_accuracy(get(described, "loss_vs_accuracy"));
    check_accuracy_vs_layer(get(described, "accuracy_vs_layer"));
    check_loss_vs_step(get(described, "loss_vs_step"));
    CHECK(!get(described, "compression_vs_accuracy") && file_size(test_path("plots/compression_vs_accuracy.png")) < 0,
          "runs without ./igpt compress results: no compression plot");
    cJSON_Delete(described);

    make_directories(test_path("empty"));
    int status = run_igpt("plot %s", test_path("empty"));
    CHECK(status != 0 && strstr(cli_stderr(), "nothing to plot"), "an empty run is refused: %s", cli_stderr());
    CHECK(run_igpt("plot %s", test_path("missing")) != 0 && strstr(cli_stderr(), "no such run folder"), "missing run");
}

// A random init whose loss is near the trained points' needs no broken axis;
// without probes.csv every probe-NNNNNNNN.json is drawn. The best layer is the
// one the probe reports (the last, here), not the one best on the evaluation images.
TEST(test_plot_keeps_one_axis_when_init_is_near) {
    make_directories(test_path("c/probe"));
    const double accuracy[3] = {0.2, 0.3, 0.25};
    write_probe_json("c", 0, 2.2, accuracy, 100);
    write_probe_json("c", 10, 2.18, accuracy, 100);
    write_probe_json("c", 20, 2.1, accuracy, 100);
    cJSON *described = plot_and_describe(test_path("c"), "plots", "series.json");
    if (!described) return;
    const cJSON *figure = get(described, "loss_vs_accuracy"), *c = item(get(figure, "series"), 0);
    CHECK(cJSON_IsFalse(get(figure, "broken_axis")) && cJSON_IsNull(get(figure, "init_xlim")) &&
              !strcmp(text_of(item(get(c, "panel"), 0)), "main") && cJSON_GetArraySize(get(c, "steps")) == 3,
          "one axis, every point on it");
    CHECK(near(number_at(get(c, "y"), 0), 25.0), "the reported best accuracy: %g", number_at(get(c, "y"), 0));
    CHECK(wrong_error_bars(c, 100) == 0, "error bars from the JSONs");
    cJSON_Delete(described);
}

// ./igpt compress's result for one checkpoint (the fields the plot reads and a few more).
static void write_compress_json(const char *run, int step, int images, double bits, double cross_entropy) {
    char *json = xasprintf(
        "{\"checkpoint\": \"%s/checkpoint-%08d.bin\", \"step\": %d, \"data\": \"d/val.bin\", \"images\": %d, "
        "\"pixels\": %d, \"bytes\": %d, \"bits_per_pixel\": %.6f, \"cross_entropy_bits_per_pixel\": %.6f, "
        "\"overhead_percent\": %.4f, \"seconds\": 1, \"pixels_per_second\": 1000, \"device\": \"cpu\", "
        "\"precision\": \"fp32\"}\n",
        run, step, step, images, 256 * images, (int)(bits * 256 * images / 8), bits, cross_entropy,
        100 * (bits / cross_entropy - 1));
    write_text(test_path("%s/compress/compress-%08d.json", run, step), json);
    free(json);
}

// scripts/compress_baselines.py's JSON on 100 images: each stream compressor on u16 and u8
// (u8 the better); xz and zstd so close that their names must be pushed apart.
static void write_baselines_json(const char *run) {
    write_text(test_path("%s/compress/baselines.json", run),
               "{\"data\": \"d/val.bin\", \"images\": 100, \"pixels\": 25600, \"colors\": 256, \"compressors\": [\n"
               " {\"name\": \"png\", \"how\": \"indexed\", \"bytes\": 25280, \"bits_per_pixel\": 7.9},\n"
               " {\"name\": \"gzip -9 (u16)\", \"how\": \"\", \"bytes\": 21760, \"bits_per_pixel\": 6.8},\n"
               " {\"name\": \"xz -9e (u16)\", \"how\": \"\", \"bytes\": 19520, \"bits_per_pixel\": 6.1},\n"
               " {\"name\": \"zstd -19 (u16)\", \"how\": \"\", \"bytes\": 19680, \"bits_per_pixel\": 6.15},\n"
               " {\"name\": \"gzip -9 (u8)\", \"how\": \"\", \"bytes\": 20800, \"bits_per_pixel\": 6.5},\n"
               " {\"name\": \"xz -9e (u8)\", \"how\": \"\", \"bytes\": 19200, \"bits_per_pixel\": 6.0},\n"
               " {\"name\": \"zstd -19 (u8)\", \"how\": \"\", \"bytes\": 19264, \"bits_per_pixel\": 6.02}]}\n");
}

// Run "d": probed at steps 0, 100 and 200, compressed at 100, 200 and 300 (never probed: not
// drawn, but said). Run "e": compressed on 50 images, its baselines on 100: said, not hidden.
static void write_compressed_runs(void) {
    make_directories(test_path("d/probe"));
    make_directories(test_path("d/compress"));
    const double accuracy[3][3] = {{0.20, 0.22, 0.25}, {0.30, 0.33, 0.36}, {0.31, 0.36, 0.38}};
    for (int i = 0; i < 3; i++) write_probe_json("d", 100 * i, 2.8 - 0.3 * i, accuracy[i], 500);
    write_compress_json("d", 100, 100, 5.0, 4.98);
    write_compress_json("d", 200, 100, 4.5, 4.48);
    write_compress_json("d", 300, 100, 4.4, 4.38);
    write_baselines_json("d");
    make_directories(test_path("e/probe"));
    make_directories(test_path("e/compress"));
    write_probe_json("e", 100, 2.5, accuracy[2], 500);
    write_compress_json("e", 100, 50, 4.8, 4.78);
    write_baselines_json("e");
}

static void check_compression_series(const cJSON *figure) {
    const cJSON *d = item(get(figure, "series"), 0), *e = item(get(figure, "series"), 1);
    const cJSON *steps = get(d, "steps"), *x = get(d, "x"), *y = get(d, "y"), *ce = get(d, "cross_entropy");
    CHECK(!strcmp(text_of(get(figure, "unit")), "bits per pixel") && cJSON_GetArraySize(steps) == 2 &&
              number_at(steps, 0) == 100 && number_at(steps, 1) == 200 && near(number_at(x, 0), 5.0) &&
              near(number_at(x, 1), 4.5) && near(number_at(y, 0), 36.0) && near(number_at(y, 1), 38.0) &&
              near(number_at(ce, 1), 4.48),
          "run d: x the file's bits per pixel, y the step's best-layer accuracy, the cross-entropy beside");
    CHECK(wrong_error_bars(d, 500) == 0, "run d: error bars sqrt(a(1-a)/n)");
    CHECK(cJSON_GetArraySize(get(d, "unprobed_steps")) == 1 && number_at(get(d, "unprobed_steps"), 0) == 300 &&
              cJSON_IsTrue(get(d, "same_images")),
          "run d: the unprobed step 300 is left out and listed; the same images as its baselines");
    const cJSON *notes = get(figure, "notes");
    CHECK(cJSON_IsFalse(get(e, "same_images")) && cJSON_GetArraySize(notes) == 2 &&
              strstr(text_of(item(notes, 1)), "classical compressors on 100 images/25600 pixels, the model on 50") &&
              strstr(cli_stderr(), "the model on 50 images"),
          "run e: compressed on other images than its baselines, said on the plot and on stderr: %s",
          text_of(item(notes, 1)));
}

// The compressors' marks: each at its better stream, one set for runs that share them, names apart.
static void check_compressor_marks(const cJSON *figure) {
    const cJSON *marks = get(figure, "compressors");
    const char *names[4] = {"xz -9e (u8)", "zstd -19 (u8)", "gzip -9 (u8)", "png"};
    const double bits[4] = {6.0, 6.02, 6.5, 7.9};
    int wrong = cJSON_GetArraySize(marks) != 4;
    for (int i = 0; i < 4 && !wrong; i++) {
        wrong += strcmp(text_of(get(item(marks, i), "name")), names[i]) != 0;
        wrong += !near(get(item(marks, i), "x")->valuedouble, bits[i]);
    }
    CHECK(!wrong, "four marks, each compressor at its better stream, sorted by bits per pixel");
    int placed;
    const int overlaps = overlapping_boxes(marks, "label_box", &placed);
    CHECK(placed == 4 && overlaps == 0, "the compressors' names do not overlap (%d placed, %d overlapping)", placed,
          overlaps);
    const cJSON *xlim = get(figure, "xlim");
    CHECK(number_at(xlim, 0) > 7.9 && number_at(xlim, 1) < 4.38,
          "the axis, reversed, holds the checkpoints and every mark: [%g, %g]", number_at(xlim, 0), number_at(xlim, 1));
}

TEST(test_plot_compression_vs_accuracy) {
    write_compressed_runs();
    char *runs = xasprintf("%s %s", test_path("d"), test_path("e"));
    cJSON *described = plot_and_describe(runs, "plots", "series.json");
    free(runs);
    CHECK(file_size(test_path("plots/compression_vs_accuracy.png")) > 1000 &&
              file_size(test_path("plots/compression_vs_accuracy.svg")) > 1000,
          "compression_vs_accuracy.png and .svg written");
    if (!described) return;
    const cJSON *figure = get(described, "compression_vs_accuracy");
    CHECK(figure != NULL, "described");
    if (figure) {
        check_compression_series(figure);
        check_compressor_marks(figure);
    }
    cJSON_Delete(described);
}
