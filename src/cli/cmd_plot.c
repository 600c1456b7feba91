// ./igpt plot: runs src/plot/plot.py (matplotlib) on run folders.
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

typedef struct {
    const char *out, *describe;
} PlotArgs;

static const Option plot_options[] = {
    {"out", OPT_TEXT, SETTING(PlotArgs, out), "DIR", "output folder (default: the first RUN_DIR/plots)"},
    {"describe", OPT_TEXT, SETTING(PlotArgs, describe), "FILE",
     "also write the series drawn, as JSON (for tests and scripts)"},
};
static const OptionGroup plot_groups[] = {{NULL, plot_options, COUNT_OF(plot_options)}};

static const Command plot_command = {
    .name = "plot",
    .usage = "RUN_DIR [RUN_DIR ...] [--out DIR] [--describe FILE]",
    .about =
        "Draws, as PNG and SVG:\n"
        "  loss_vs_accuracy   generative loss on the probe's evaluation images vs best-layer\n"
        "                     probe accuracy, one line per run (loss axis reversed, as in the\n"
        "                     paper; the random init in a panel of its own)\n"
        "  accuracy_vs_layer  probe accuracy vs layer (block inputs, then the final norm),\n"
        "                     one line per checkpoint coloured by step\n"
        "  loss_vs_step       training loss (raw and a moving average) and validation loss\n"
        "  compression_vs_accuracy\n"
        "                     (runs with ./igpt compress results) bits per pixel of each\n"
        "                     compressed checkpoint vs its best-layer probe accuracy; PNG,\n"
        "                     gzip, xz and zstd on the same tokens as marks on the x axis\n"
        "                     (RUN_DIR/compress/baselines.json, scripts/compress_baselines.py)\n"
        "from each run's log.jsonl and probe results (./igpt probe --run RUN_DIR). Losses\n"
        "in bits per token; accuracies with their binomial standard error sqrt(a(1-a)/n),\n"
        "n the evaluation images.\n"
        "It runs src/plot/plot.py with $IGPT_PYTHON (default /usr/bin/python3, which has\n"
        "Debian's python3-matplotlib).\n",
    .groups = plot_groups,
    .num_groups = COUNT_OF(plot_groups),
    .min_operands = 1,
    .max_operands = -1,
    .operands_expected = "at least one RUN_DIR",
};

// The plot script, which ships in src/plot/ beside the binary, or beside
// the checkout of a binary in a build folder (build/sanitize/igpt).
static char *plot_script_path(void) {
    char exe[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) die("cannot find the igpt binary's folder: %s", strerror(errno));
    exe[n] = '\0';
    char *beside = NULL;
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) break;
        *slash = '\0';
        char *script = xasprintf("%s/src/plot/plot.py", exe);
        if (file_size(script) >= 0) {
            free(beside);
            return script;
        }
        if (beside) free(script);
        else beside = script;
    }
    die("%s: no such file (the plot script ships beside ./igpt)", beside ? beside : "src/plot/plot.py");
}

int cmd_plot(int argc, char **argv) {
    PlotArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&plot_command, argc, argv, &a, &parsed);
    const char *python = getenv("IGPT_PYTHON") ? getenv("IGPT_PYTHON") : "/usr/bin/python3";
    // python plot.py [--out DIR] [--describe FILE] -- RUN_DIR...
    char **args = xcalloc((size_t)parsed.num_operands + 8, sizeof(char *));
    int n = 0;
    args[n++] = (char *)python;
    args[n++] = plot_script_path();
    if (a.out) {
        args[n++] = "--out";
        args[n++] = (char *)a.out;
    }
    if (a.describe) {
        args[n++] = "--describe";
        args[n++] = (char *)a.describe;
    }
    args[n++] = "--";
    for (int i = 0; i < parsed.num_operands; i++) args[n++] = parsed.operands[i];
    fflush(stdout);
    execv(python, args);
    die("cannot run %s: %s (set IGPT_PYTHON to a Python with matplotlib)", python, strerror(errno));
}
