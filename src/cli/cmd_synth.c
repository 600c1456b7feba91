// ./igpt synth: writes the built-in synthetic image set as an image folder.
#include <errno.h>
#include <string.h>

#include "cli/cli.h"
#include "data/synthetic.h"

typedef struct {
    const char *out;
    int train_per_class, test_per_class, size;
    uint64_t seed;
    bool force;
} SynthArgs;

static const Option synth_options[] = {
    {"out", OPT_TEXT, SETTING(SynthArgs, out), "DIR", "output folder; must not exist (see --force)"},
    {"train-per-class", OPT_INT, SETTING(SynthArgs, train_per_class), "N", "training images per class", "500", .lo = 1,
     .hi = 1000000},
    {"test-per-class", OPT_INT, SETTING(SynthArgs, test_per_class), "N", "test images per class", "100", .lo = 1,
     .hi = 1000000},
    {"size", OPT_INT, SETTING(SynthArgs, size), "N", "image side in pixels, 8..256", "16", .lo = 8, .hi = 256},
    {"seed", OPT_UINT64, SETTING(SynthArgs, seed), "N", "random seed", "1234", .lo = 0, .hi = INT64_MAX},
    {"force", OPT_FLAG, SETTING(SynthArgs, force), NULL,
     "replace DIR if it holds an earlier synth output (and nothing else)"},
};
static const OptionGroup synth_groups[] = {{"options", synth_options, COUNT_OF(synth_options)}};

static const Command synth_command = {
    .name = "synth",
    .usage = "--out DIR [options]",
    .about =
        "Writes the built-in 10-class synthetic image set, so that the demo and tests\n"
        "need no dataset and no network:\n"
        "  DIR/train/<class>/NNNN.png   --train-per-class images per class\n"
        "  DIR/test/<class>/NNNN.png    --test-per-class images per class\n"
        "ready for ./igpt prepare --images DIR. Classes (shapes, textures, colors):\n"
        "disc, square, triangle, ring, cross, h-stripes, v-stripes, checker, dots,\n"
        "gradient. Each image has a random position, scale, rotation or phase, colors\n"
        "(the foreground hue leans to the class) and a little pixel noise. The same\n"
        "seed gives byte-identical files; a failed run leaves nothing behind.\n",
    .groups = synth_groups,
    .num_groups = COUNT_OF(synth_groups),
};

int cmd_synth(int argc, char **argv) {
    SynthArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&synth_command, argc, argv, &a, &parsed);
    if (!a.out) usage_error("synth", "--out DIR is required");
    if (path_exists(a.out)) {
        if (!a.force) die("%s already exists; pass --force to replace an earlier synth output", a.out);
        if (!synth_looks_like_output(a.out))
            die("%s is not an earlier synth output (train/ and test/ holding only class folders of PNGs); "
                "not replacing it",
                a.out);
        if (!synth_remove_tree(a.out)) die("cannot remove %s: %s", a.out, strerror(errno));
    }
    const double t0 = now_seconds();
    synth_write_folder(a.out, a.train_per_class, a.test_per_class, a.size, a.seed);
    printf("synth: wrote %d train + %d test images of %dx%d in %d classes to %s in %.1f s\n",
           SYNTH_CLASSES * a.train_per_class, SYNTH_CLASSES * a.test_per_class, a.size, a.size, SYNTH_CLASSES, a.out,
           now_seconds() - t0);
    parsed_args_free(&parsed);
    return 0;
}
