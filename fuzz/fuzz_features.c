// Fuzzes the probe feature cache reader (features_load). With FUZZ_FIX_CRC
// the mutator rewrites both CRCs, so that inputs reach the checks behind them.
#include "fuzz_common.h"
#include "probe/features.h"
#include "util/util.h"

static void read_features(void *path) {
    FeatureSet fs;
    features_load(path, &fs);
    features_free(&fs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(read_features, (void *)fuzz_input_file("features-00000001-val.bin", data, size));
    return 0;
}

#ifdef FUZZ_FIX_CRC
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

// 64-byte header: payload CRC at 48, header CRC at 52 (docs/formats.md).
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    (void)seed;
    size = LLVMFuzzerMutate(data, size, max_size);
    if (size < 64) return size;
    fuzz_store_crc(data, 48, 64, size);
    fuzz_store_crc(data, 52, 0, 64);
    return size;
}
#endif
