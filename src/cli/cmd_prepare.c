// ./igpt prepare: images -> palette -> prepared token files, one per split
// (the work itself is src/data/prepare.c).
#include "cli/cli.h"
#include "data/images.h"
#include "data/palette.h"
#include "data/prepare.h"
#include "model/config.h"

// A prepared image must fit the models igpt builds.
_Static_assert(IGPT_MAX_RESOLUTION <= MODEL_MAX_IMAGE_SIDE, "prepare makes images no model can take");

// A number macro as the text of a table default: TEXT_OF(512) -> "512".
#define TEXT_OF_(x) #x
#define TEXT_OF(x) TEXT_OF_(x)

typedef struct {
    PrepareSettings stage;
    bool no_preview, quiet;
} PrepareArgs;

static const Option source_options[] = {
    {"cifar10", OPT_TEXT, SETTING(PrepareArgs, stage.cifar_dir), "DIR",
     "official CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin),\n"
     "in DIR or DIR/cifar-10-batches-bin"},
    {"images", OPT_TEXT, SETTING(PrepareArgs, stage.images_dir), "DIR",
     "DIR/<class>/<image files>, or DIR/train/<class>/... and DIR/test/<class>/...;\n"
     "png, jpg, bmp, tga, ppm, pgm (docs/formats.md); classes sorted by name give label ids"},
};

static const Option prepare_options[] = {
    {"out", OPT_TEXT, SETTING(PrepareArgs, stage.out_dir), "DIR", "output folder (created if missing)"},
    {"resolution", OPT_INT, SETTING(PrepareArgs, stage.resolution), "N", "resize images to N x N with an area filter",
     "32", .lo = IGPT_MIN_RESOLUTION, .hi = IGPT_MAX_RESOLUTION},
    {"colors", OPT_INT, SETTING(PrepareArgs, stage.colors), "N",
     "palette size, " TEXT_OF(IGPT_MIN_COLORS) ".." TEXT_OF(IGPT_MAX_COLORS), TEXT_OF(IGPT_DEFAULT_COLORS),
     .lo = IGPT_MIN_COLORS, .hi = IGPT_MAX_COLORS},
    {"val", OPT_INT64, SETTING(PrepareArgs, stage.val), "N",
     "images held out from train for validation (default: 10% of train; 0 for none)", NULL, .lo = 0, .hi = INT64_MAX},
    {"seed", OPT_UINT64, SETTING(PrepareArgs, stage.seed), "N", "seed of the validation split and k-means", "1234",
     .lo = 0, .hi = INT64_MAX},
    {"palette", OPT_TEXT, SETTING(PrepareArgs, stage.palette_path), "FILE",
     "reuse a palette (palette.bin, with exact centers if it has them, or a split prepared without them) instead of "
     "fitting one"},
    {"split", OPT_CHOICE, SETTING(PrepareArgs, stage.split), "NAME",
     "prepare only this split: train or test; all: every split the source has", "all", .choices = "train|test|all"},
    {"kmeans-sample", OPT_INT64, SETTING(PrepareArgs, stage.kmeans_sample), "N",
     "training pixels sampled for k-means; 0: all", "1000000", .lo = 0, .hi = INT64_MAX},
    {"kmeans-iters", OPT_INT, SETTING(PrepareArgs, stage.kmeans_iters), "N", "maximum Lloyd iterations", "100", .lo = 1,
     .hi = 100000},
    {"threads", OPT_INT, SETTING(PrepareArgs, stage.threads), "N", "worker threads (default: all cores)", NULL, .lo = 1,
     .hi = 4096},
    {"force", OPT_FLAG, SETTING(PrepareArgs, stage.force), NULL, "overwrite existing output files"},
    {"no-preview", OPT_FLAG, SETTING(PrepareArgs, no_preview), NULL, "skip preview.png and palette.png"},
    {"quiet", OPT_FLAG, SETTING(PrepareArgs, quiet), NULL, "no progress bars"},
};

static const OptionGroup prepare_groups[] = {
    {"source (one of)", source_options, COUNT_OF(source_options)},
    {"options", prepare_options, COUNT_OF(prepare_options)},
};

static const Command prepare_command = {
    .name = "prepare",
    .usage = "(--cifar10 DIR | --images DIR) --out DIR [options]",
    .about =
        "Reads a dataset, fits a k-means color palette on the training images, and\n"
        "writes every split as a prepared token file (docs/formats.md):\n"
        "  DIR/palette.bin  the palette (unless --palette gives one)\n"
        "  DIR/train.bin    training images minus the validation hold-out\n"
        "  DIR/val.bin      seeded, class-stratified hold-out from train (--val)\n"
        "  DIR/test.bin     the test split, when the source has one\n"
        "  DIR/preview.png  originals beside their quantized versions, one row per class\n"
        "  DIR/palette.png  the palette as color squares (when fitted)\n"
        "  DIR/prepare.json images per class and split, PSNR, timings\n"
        "With --split NAME the preview and summary are preview-NAME.png, prepare-NAME.json.\n"
        "Existing outputs are never overwritten without --force.\n",
    .groups = prepare_groups,
    .num_groups = COUNT_OF(prepare_groups),
};

int cmd_prepare(int argc, char **argv) {
    PrepareArgs a = {0};
    ParsedArgs parsed;
    cli_parse(&prepare_command, argc, argv, &a, &parsed);
    PrepareSettings *s = &a.stage;
    if (!s->cifar_dir == !s->images_dir)
        usage_error("prepare", "give exactly one source: --cifar10 DIR or --images DIR");
    if (!s->out_dir) usage_error("prepare", "--out DIR is required");
    if (!cli_given(&parsed, &s->val)) s->val = -1;  // 10% of train
    // A reused palette brings its own size; a --colors given must match it.
    if (s->palette_path && !cli_given(&parsed, &s->colors)) s->colors = 0;
    s->preview = !a.no_preview;
    progress_set_quiet(a.quiet);
    prepare_run(s);
    parsed_args_free(&parsed);
    return 0;
}
