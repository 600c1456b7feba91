// The order in which training sees its images: each epoch is a seeded
// shuffle of the whole split, so a run's data position is just (epoch, index
// in that epoch's order), which a checkpoint stores and a resumed run
// continues from exactly.
#ifndef IGPT_DATA_ORDER_H
#define IGPT_DATA_ORDER_H

#include <stdint.h>

#include "data/dataset.h"

// The images of `epoch` in a seeded random order: the same for a given
// (seed, epoch) on every machine.
void epoch_order(uint32_t *order, int64_t n, uint64_t seed, uint64_t epoch);

typedef struct {
    const TokenDataset *data;
    uint32_t *order;            // this epoch's order of the images
    uint64_t seed, epoch, pos;  // next image: order[pos] of `epoch`
} DataCursor;

void cursor_init(DataCursor *dc, const TokenDataset *data, uint64_t seed, uint64_t epoch, uint64_t pos);
// Copies the tokens of the next `images` images into dst, moving on to the
// next epoch (and its order) at the end of the split.
void cursor_next(DataCursor *dc, uint16_t *dst, int images);
void cursor_free(DataCursor *dc);

#endif
