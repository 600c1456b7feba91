// Fuzzes the checkpoint reader (checkpoint_load: the header's bounds, the
// parameter count, the file size, the payload). With FUZZ_FIX_CRC the
// mutator rewrites both CRCs, so that inputs reach the checks behind them.
#include <stdlib.h>

#include "fuzz_common.h"
#include "train/checkpoint.h"
#include "util/util.h"

static void read_checkpoint(void *path) {
    CheckpointMeta meta;
    float *params, *adam_m, *adam_v;
    checkpoint_load(path, &meta, &params, &adam_m, &adam_v);
    free(params);
    free(adam_m);
    free(adam_v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(read_checkpoint, (void *)fuzz_input_file("checkpoint-00000001.bin", data, size));
    return 0;
}

#ifdef FUZZ_FIX_CRC
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

// 256-byte header: payload CRC at 180, header CRC at 200 (docs/formats.md).
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    (void)seed;
    size = LLVMFuzzerMutate(data, size, max_size);
    if (size < IGPT_CHECKPOINT_HEADER_BYTES) return size;
    fuzz_store_crc(data, 180, IGPT_CHECKPOINT_HEADER_BYTES, size);
    fuzz_store_crc(data, 200, 0, IGPT_CHECKPOINT_HEADER_BYTES);
    return size;
}
#endif
