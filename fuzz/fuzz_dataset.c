// Fuzzes the prepared split reader (dataset_read: train.bin, val.bin,
// test.bin). Built twice: as is, and with FUZZ_FIX_CRC, whose mutator
// rewrites both CRCs after every mutation so that inputs get past them to
// the size, label and color checks behind.
#include <stdlib.h>

#include "data/dataset.h"
#include "fuzz_common.h"
#include "util/util.h"

static void read_split(void *path) {
    TokenDataset ds;
    dataset_read(path, &ds);
    dataset_free(&ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(read_split, (void *)fuzz_input_file("train.bin", data, size));
    return 0;
}

#ifdef FUZZ_FIX_CRC
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

// Header: u32 header size at 12, payload CRC at 48, header CRC at 52 (docs/formats.md).
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    (void)seed;
    size = LLVMFuzzerMutate(data, size, max_size);
    if (size < IGPT_DATASET_FIXED_HEADER_BYTES) return size;
    const uint32_t header_bytes = get_u32(data + 12);
    if (header_bytes < IGPT_DATASET_FIXED_HEADER_BYTES || header_bytes > size) return size;
    fuzz_store_crc(data, 48, header_bytes, size);
    fuzz_store_crc(data, 52, 0, header_bytes);
    return size;
}
#endif
