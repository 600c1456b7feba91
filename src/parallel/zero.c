// The ZeRO-1 layout (zero.h): each layer's range is cut into `world` pieces
// that differ by at most one element, so every rank owns about 1/world of
// every layer and the pieces of one layer can be reduced and gathered as
// soon as that layer is done.
#include "parallel/zero.h"

#include <stdlib.h>
#include <string.h>

#include "model/params.h"
#include "parallel/dist.h"
#include "util/util.h"

ZeroLayout zero_layout(const ModelConfig *cfg, int rank, int world) {
    ZeroLayout z = {.rank = rank, .world = world, .num_ranges = cfg->n_layer + 2};
    z.ranges = xcalloc((size_t)z.num_ranges, sizeof(ZeroRange));
    for (int l = -1; l <= cfg->n_layer; l++) {
        ZeroRange *r = &z.ranges[l + 1];
        layer_param_range(cfg, l, &r->begin, &r->end);
        size_t b, e;
        dist_piece(r->end - r->begin, rank, world, &b, &e);
        r->piece_begin = r->begin + b;
        r->piece_end = r->begin + e;
        r->piece_offset = z.owned;
        z.owned += e - b;
    }
    return z;
}

void zero_layout_free(ZeroLayout *z) {
    free(z->ranges);
    memset(z, 0, sizeof *z);
}

size_t zero_owned(const ModelConfig *cfg, int rank, int world) {
    ZeroLayout z = zero_layout(cfg, rank, world);
    const size_t owned = z.owned;
    zero_layout_free(&z);
    return owned;
}
