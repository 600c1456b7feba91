// Fuzzes the palette reader (palette_load: palette.bin). With FUZZ_FIX_CRC
// the mutator rewrites both CRCs, so that inputs reach the checks behind them.
#include "data/palette.h"
#include "fuzz_common.h"
#include "util/util.h"

static void read_palette(void *path) {
    Palette pal;
    palette_load(path, &pal);
    palette_free(&pal);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(read_palette, (void *)fuzz_input_file("palette.bin", data, size));
    return 0;
}

#ifdef FUZZ_FIX_CRC
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

// 32-byte header: CRC of the rest of the file (the colors, then in version 2
// the exact centers) at 16, CRC of bytes 0..19 at 20 (docs/formats.md).
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    (void)seed;
    size = LLVMFuzzerMutate(data, size, max_size);
    if (size < 32) return size;
    fuzz_store_crc(data, 16, 32, size);
    fuzz_store_crc(data, 20, 0, 20);
    return size;
}
#endif
