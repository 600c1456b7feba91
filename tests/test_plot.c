// ./igpt plot on a small hand-written run: the expected series, both formats.
#include <stdlib.h>
#include <string.h>

#include "test.h"

static void write_text(const char *path, const char *text) { write_whole_file(path, text, strlen(text)); }

static void write_probe(const char *path, int step, const char *gen_loss, double a0, double a1) {
    char *json = xasprintf(
        "{\n  \"model\": \"x\",\n  \"step\": %d,\n  \"eval_split\": \"val\",\n  \"train_images\": 10,\n"
        "  \"eval_images\": 5,\n  \"eval_gen_loss\": %s,\n  \"best_layer\": %d,\n"
        "  \"best_accuracy\": %.6f,\n  \"layers\": [\n    {\"layer\": 0, \"accuracy\": %.6f},\n"
        "    {\"layer\": 1, \"accuracy\": %.6f}\n  ]\n}\n",
        step, gen_loss, a1 > a0, a1 > a0 ? a1 : a0, a0, a1);
    write_text(path, json);
    free(json);
}

TEST(test_plot_draws_expected_series) {
    make_directories(test_path("run/probe"));
    write_text(test_path("run/run.json"), "{\"config\": \"tiny\"}\n");
    write_text(
        test_path("run/log.jsonl"),
        "{\"step\": 1, \"loss\": 3.0}\n{\"step\": 2, \"loss\": 2.5}\n{\"step\": 2, \"val_loss\": 2.6}\n"
        "{\"step\": 2, \"checkpoint\": \"checkpoint-00000002.bin\", \"val_loss\": 2.6}\n{\"step\": 3, \"loss\": 2.2}\n"
        "{\"step\": 4, \"loss\": 2.0}\n{\"step\": 4, \"val_loss\": 2.1}\n");
    write_probe(test_path("run/probe/probe-00000000.json"), 0, "2.772589", 0.20, 0.25);
    write_probe(test_path("run/probe/probe-00000004.json"), 4, "2.100000", 0.30, 0.40);
    write_text(test_path("run/probe/baseline-pixels.json"),
               "{\"model\": \"raw pixels\", \"best_accuracy\": 0.350000, \"layers\": []}\n");
    int status =
        run_igpt("plot %s --out %s --describe %s", test_path("run"), test_path("plots"), test_path("series.json"));
    CHECK(status == 0, "plot: %s %s", cli_stdout(), cli_stderr());
    const char *figures[] = {"loss_vs_accuracy", "accuracy_vs_layer", "loss_vs_step"};
    for (int i = 0; i < 3; i++) {
        CHECK(file_size(test_path("plots/%s.png", figures[i])) > 1000, "%s.png written", figures[i]);
        CHECK(file_size(test_path("plots/%s.svg", figures[i])) > 1000, "%s.svg written", figures[i]);
    }
    char *series = (char *)read_whole_file(test_path("series.json"), NULL);
    CHECK(series != NULL, "series described");
    if (!series) return;
    // Remove whitespace so that the checks do not depend on JSON layout.
    char *w = series;
    for (char *r = series; *r; r++)
        if (*r != ' ' && *r != '\n') *w++ = *r;
    *w = '\0';
    // Loss in bits (2.772589 nats = 4 bits), best-layer accuracy in %, per checkpoint.
    CHECK(
        strstr(series, "\"label\":\"run(tiny)\",\"x\":[4.0000") && strstr(series, "\"y\":[25.0,40.0],\"steps\":[0,4]"),
        "loss vs accuracy: one line through both checkpoints: %s", series);
    CHECK(strstr(series, "\"label\":\"randominit\",\"x\":[0,1],\"y\":[20.0,25.0]") &&
              strstr(series, "\"label\":\"step4\",\"x\":[0,1],\"y\":[30.0,40.0]"),
          "accuracy vs layer: one line per checkpoint");
    CHECK(strstr(series, "{\"label\":\"rawpixels\",\"baseline\":35.0}"), "the pixel baseline is drawn: %s", series);
    CHECK(strstr(series, "\"label\":\"run(tiny)train\",\"x\":[1,2,3,4],\"y\":[3.0,2.5,2.2,2.0]") &&
              strstr(series, "\"label\":\"run(tiny)validation\",\"x\":[2,4],\"y\":[2.6,2.1]"),
          "loss vs step: training and validation series");
    free(series);
    make_directories(test_path("empty"));
    status = run_igpt("plot %s", test_path("empty"));
    CHECK(status != 0 && strstr(cli_stderr(), "nothing to plot"), "an empty run is refused: %s", cli_stderr());
    CHECK(run_igpt("plot %s", test_path("missing")) != 0 && strstr(cli_stderr(), "no such run folder"), "missing run");
}
