// A built-in 10-class synthetic image set (shapes, textures, colors), so
// that the demo and tests run with no dataset and no network.
#ifndef IGPT_SYNTHETIC_H
#define IGPT_SYNTHETIC_H

#include <stdbool.h>
#include <stdint.h>

#include "util/util.h"

#define SYNTH_CLASSES 10
extern const char *const synth_class_names[SYNTH_CLASSES];

// Draws one size x size RGB image (interleaved, row-major) of a class, with
// random position, scale, rotation, phase, colors and a little pixel noise
// from rng. The foreground hue leans to the class (any hue fits 3 classes).
void synth_image(int class_id, int size, Rng *rng, uint8_t *rgb);
// Writes root/{train,test}/<class>/NNNN.png. The images depend only on
// (seed, split, class, index). Built in a temporary sibling folder renamed
// to root at the end, so a failure leaves nothing; dies if root exists.
void synth_write_folder(const char *root, int train_per_class, int test_per_class, int size, uint64_t seed);
// True when `root` looks like an earlier synth output: a train/ folder (and
// maybe test/) and nothing else, holding only class folders of *.png files.
bool synth_looks_like_output(const char *root);
// Removes a file or a folder tree without following links; false (errno
// set) on failure. A missing path counts as removed.
bool synth_remove_tree(const char *path);

#endif
