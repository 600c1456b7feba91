// Fuzzes the compressed-file reader (igpz_read: ./igpt decompress's input),
// and the range decoder on every payload it accepts: each group decoded as
// ./igpt decompress would, its labels uniformly and its pixels with a fixed
// table in place of the model's (no model here), up to a bounded count of
// symbols in all. Built twice: as is, and with FUZZ_FIX_CRC, whose mutator rewrites
// the header's CRC and each group's payload CRC so that inputs get past them.
#include <stdlib.h>

#include "compress/igpz.h"
#include "compress/range_coder.h"
#include "fuzz_common.h"
#include "util/util.h"

// The symbols decoded in all at most: a file may claim 2^40 images of 256x256.
#define MAX_SYMBOLS (1 << 16)

static void decode_payloads(const IgpzFile *f) {
    const int V = f->header.model.vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    uint32_t *freq = malloc((size_t)V * sizeof *freq), *cum = malloc((size_t)(V + 1) * sizeof *cum);
    for (int s = 0; s < V; s++) logits[s] = (float)(s % 7) - 3.0f;  // an uneven table: long and short slots
    freq_table_from_logits(logits, V, freq, cum);
    int64_t budget = MAX_SYMBOLS;
    for (int64_t g = 0; g < f->num_groups && budget > 0; g++) {
        const IgpzGroup *group = &f->groups[g];
        RangeDecoder d;
        rc_decoder_init(&d, group->payload, group->payload_bytes);
        for (int64_t i = 0; i < group->count && budget > 0; i++, budget--)
            if (rc_decode_uniform(&d, (uint32_t)f->header.num_classes) >= (uint32_t)f->header.num_classes) abort();
        const int64_t symbols = group->count * f->header.model.seq_len;
        for (int64_t i = 0; i < symbols && budget > 0; i++, budget--)
            if (rc_decode(&d, freq, cum, V) >= V) abort();
    }
    free(logits);
    free(freq);
    free(cum);
}

static void read_compressed(void *path) {
    IgpzFile f;
    igpz_read(path, &f);
    decode_payloads(&f);
    igpz_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(read_compressed, (void *)fuzz_input_file("val.igpz", data, size));
    return 0;
}

#ifdef FUZZ_FIX_CRC
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

// Header: u32 header size at 12, its CRC in its last 4 bytes; then groups of
// u32 length, u32 payload CRC, u32 tokens CRC, payload (docs/formats.md).
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    (void)seed;
    size = LLVMFuzzerMutate(data, size, max_size);
    if (size < IGPT_IGPZ_FIXED_HEADER_BYTES + 4) return size;
    const uint32_t header_bytes = get_u32(data + 12);
    if (header_bytes < IGPT_IGPZ_FIXED_HEADER_BYTES + 4 || header_bytes > size) return size;
    fuzz_store_crc(data, header_bytes - 4, 0, header_bytes - 4);
    for (size_t at = header_bytes; size - at >= IGPT_IGPZ_GROUP_HEADER_BYTES;) {
        const uint32_t length = get_u32(data + at);
        if (length > size - at - IGPT_IGPZ_GROUP_HEADER_BYTES) break;
        fuzz_store_crc(data, at + 4, at + IGPT_IGPZ_GROUP_HEADER_BYTES, at + IGPT_IGPZ_GROUP_HEADER_BYTES + length);
        at += IGPT_IGPZ_GROUP_HEADER_BYTES + length;
    }
    return size;
}
#endif
