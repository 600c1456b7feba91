// ZeRO-1's split of the optimizer state (docs/multi-gpu.md): each of the
// job's ranks owns a piece of every layer's parameter range, updates only
// that piece with AdamW, and keeps the Adam moments (on GPUs also the fp32
// master weights) of its pieces only, packed one after the other. The layout
// is a pure function of the model configuration, the rank and the number of
// ranks, used by the CPU backend, the GPU model and both memory plans.
#ifndef IGPT_ZERO_H
#define IGPT_ZERO_H

#include <stddef.h>

#include "model/config.h"

// One layer's range of the parameter buffer and this rank's piece of it.
typedef struct {
    size_t begin, end;              // the layer's [begin, end) (layer_param_range)
    size_t piece_begin, piece_end;  // this rank's part of it (dist_piece)
    size_t piece_offset;            // where the piece starts in the rank's packed storage
} ZeroRange;

typedef struct {
    int rank, world;
    int num_ranges;     // L + 2: index l + 1 for layer l = -1 (embeddings) .. L (final norm and head)
    ZeroRange *ranges;  // in parameter-buffer order
    size_t owned;       // floats this rank owns: the sum of its pieces
} ZeroLayout;

ZeroLayout zero_layout(const ModelConfig *cfg, int rank, int world);
void zero_layout_free(ZeroLayout *z);
// The floats `rank` owns, for memory plans made before the model exists.
size_t zero_owned(const ModelConfig *cfg, int rank, int world);

#endif
