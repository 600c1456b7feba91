// ./igpt plot: runs src/plot/plot.py (matplotlib) on run folders.
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char *const plot_help =
    "usage: ./igpt plot RUN_DIR [RUN_DIR ...] [--out DIR] [--describe FILE]\n"
    "\n"
    "Draws, as PNG and SVG (default folder: the first RUN_DIR/plots):\n"
    "  loss_vs_accuracy   validation generative loss vs best-layer probe accuracy,\n"
    "                     one line per run (loss axis reversed, as in the paper)\n"
    "  accuracy_vs_layer  probe accuracy vs layer, one line per checkpoint\n"
    "  loss_vs_step       training and validation loss vs step\n"
    "from each run's log.jsonl and probe results (./igpt probe --run RUN_DIR).\n"
    "It runs src/plot/plot.py with $IGPT_PYTHON (default /usr/bin/python3, which has\n"
    "Debian's python3-matplotlib).\n";

int cmd_plot(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(plot_help, stdout);
            return 0;
        }
    if (argc < 2) usage_error("plot", "expected at least one RUN_DIR");
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && strcmp(argv[i], "--out") && strcmp(argv[i], "--describe"))
            usage_error("plot", "unknown option %s for 'plot'", argv[i]);
    // The script lives in scripts/ beside the binary.
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) die("cannot find the igpt binary's folder: %s", strerror(errno));
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    char *script = xasprintf("%s/src/plot/plot.py", exe);
    if (file_size(script) < 0) die("%s: no such file (the plot script ships beside ./igpt)", script);
    const char *python = getenv("IGPT_PYTHON") ? getenv("IGPT_PYTHON") : "/usr/bin/python3";
    char **args = xcalloc((size_t)argc + 2, sizeof(char *));
    args[0] = (char *)python;
    args[1] = script;
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    fflush(stdout);
    execv(python, args);
    die("cannot run %s: %s (set IGPT_PYTHON to a Python with matplotlib)", python, strerror(errno));
}
