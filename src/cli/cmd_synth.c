// ./igpt synth: writes the built-in synthetic image set as an image folder.
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/synthetic.h"

static const char *const synth_help =
    "usage: ./igpt synth --out DIR [options]\n"
    "\n"
    "Writes the built-in 10-class synthetic image set, so that the demo and tests\n"
    "need no dataset and no network:\n"
    "  DIR/train/<class>/NNNN.png   --train-per-class images per class\n"
    "  DIR/test/<class>/NNNN.png    --test-per-class images per class\n"
    "ready for ./igpt prepare --images DIR. Classes (shapes, textures, colors):\n"
    "disc, square, triangle, ring, cross, h-stripes, v-stripes, checker, dots,\n"
    "gradient. Each image has a random position, scale, rotation or phase, colors\n"
    "(the foreground hue leans to the class) and a little pixel noise. The same\n"
    "seed gives byte-identical files; a failed run leaves nothing behind.\n"
    "\n"
    "options:\n"
    "  --out DIR              output folder; must not exist (see --force)\n"
    "  --train-per-class N    training images per class (default 500)\n"
    "  --test-per-class N     test images per class (default 100)\n"
    "  --size N               image side in pixels, 8..256 (default 16)\n"
    "  --seed N               (default 1234)\n"
    "  --force                replace DIR if it holds an earlier synth output (and nothing else)\n"
    "  --help                 this text\n";

int cmd_synth(int argc, char **argv) {
    const char *out = NULL;
    int train_per_class = 500, test_per_class = 100, size = 16;
    uint64_t seed = 1234;
    bool force = false;
    enum { O_OUT = 1000, O_TRAIN, O_TEST, O_SIZE, O_SEED, O_FORCE, O_HELP };
    static const struct option options[] = {
        {"out", required_argument, 0, O_OUT},   {"train-per-class", required_argument, 0, O_TRAIN},
        {"test-per-class", required_argument, 0, O_TEST}, {"size", required_argument, 0, O_SIZE},
        {"seed", required_argument, 0, O_SEED}, {"force", no_argument, 0, O_FORCE},
        {"help", no_argument, 0, O_HELP},       {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case O_OUT: out = optarg; break;
        case O_TRAIN: train_per_class = (int)parse_int_option("--train-per-class", optarg, 1, 1000000); break;
        case O_TEST: test_per_class = (int)parse_int_option("--test-per-class", optarg, 1, 1000000); break;
        case O_SIZE: size = (int)parse_int_option("--size", optarg, 8, 256); break;
        case O_SEED: seed = (uint64_t)parse_int_option("--seed", optarg, 0, INT64_MAX); break;
        case O_FORCE: force = true; break;
        case O_HELP: fputs(synth_help, stdout); return 0;
        default: bad_option("synth", c, argv);
        }
    }
    if (optind < argc) usage_error("synth", "unexpected argument '%s'", argv[optind]);
    if (!out) usage_error("synth", "--out DIR is required");
    if (path_exists(out)) {
        if (!force) die("%s already exists; pass --force to replace an earlier synth output", out);
        if (!synth_looks_like_output(out))
            die("%s is not an earlier synth output (train/ and test/ holding only class folders of PNGs); "
                "not replacing it", out);
        if (!synth_remove_tree(out)) die("cannot remove %s: %s", out, strerror(errno));
    }
    double t0 = now_seconds();
    synth_write_folder(out, train_per_class, test_per_class, size, seed);
    printf("synth: wrote %d train + %d test images of %dx%d in %d classes to %s in %.1f s\n",
           SYNTH_CLASSES * train_per_class, SYNTH_CLASSES * test_per_class, size, size, SYNTH_CLASSES, out,
           now_seconds() - t0);
    return 0;
}
