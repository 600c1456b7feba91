// A built-in 10-class synthetic image set (shapes, textures, colors), so
// that the demo and tests run with no dataset and no network.
#ifndef IGPT_SYNTHETIC_H
#define IGPT_SYNTHETIC_H

#include <stdint.h>

#include "util.h"

#define SYNTH_CLASSES 10
extern const char *const synth_class_names[SYNTH_CLASSES];

// Draws one size x size RGB image (interleaved, row-major) of a class, with
// random position, scale, phase, colors and a little pixel noise from rng.
void synth_image(int class_id, int size, Rng *rng, uint8_t *rgb);
// Writes root/{train,test}/<class>/NNNN.png. The images depend only on
// (seed, split, class, index). Built in a temporary sibling folder renamed
// to root at the end, so a failure leaves nothing; dies if root exists.
void synth_write_folder(const char *root, int train_per_class, int test_per_class, int size, uint64_t seed);

#endif
