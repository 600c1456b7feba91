// The data order (data_order.h): a Fisher-Yates shuffle per epoch, drawn from
// its own RNG stream ("shuffle" + epoch), so no other use of the seed can
// change it.
#include "train/data_order.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

void epoch_order(uint32_t *order, int64_t n, uint64_t seed, uint64_t epoch) {
    for (int64_t i = 0; i < n; i++) order[i] = (uint32_t)i;
    // Fisher-Yates shuffle, its own random stream per epoch.
    Rng rng;
    rng_init(&rng, seed, 0x73687566666c65ull + epoch);  // "shuffle" + epoch
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)rng_below(&rng, (uint64_t)i + 1);
        const uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

void cursor_init(DataCursor *dc, const TokenDataset *data, uint64_t seed, uint64_t epoch, uint64_t pos) {
    dc->data = data;
    dc->seed = seed;
    dc->epoch = epoch;
    dc->pos = pos;
    dc->order = xmalloc((size_t)data->count * sizeof(uint32_t));
    epoch_order(dc->order, data->count, seed, epoch);
}

void cursor_next(DataCursor *dc, uint16_t *dst, int images) {
    const int64_t tpi = dataset_tokens_per_image(dc->data);
    for (int i = 0; i < images; i++) {
        if (dc->pos == (uint64_t)dc->data->count) {
            dc->epoch++;
            dc->pos = 0;
            epoch_order(dc->order, dc->data->count, dc->seed, dc->epoch);
        }
        const uint32_t image = dc->order[dc->pos++];
        memcpy(dst + (size_t)i * tpi, dc->data->tokens + (size_t)image * tpi, (size_t)tpi * sizeof(uint16_t));
    }
}

void cursor_free(DataCursor *dc) {
    free(dc->order);
    dc->order = NULL;
}
