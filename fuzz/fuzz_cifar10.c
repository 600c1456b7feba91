// Fuzzes the CIFAR-10 binary batch reader (cifar10_load) on one batch,
// test_batch.bin, resized to 16x16 (the area filter) or kept at 32x32 (a
// copy), by the parity of the input's size.
#include <stdio.h>

#include "data/images.h"
#include "fuzz_common.h"

typedef struct {
    const char *dir;
    int resolution;
} CifarCall;

static void read_batch(void *arg) {
    const CifarCall *call = arg;
    ImageSet set;
    cifar10_load(call->dir, "test", call->resolution, &set);
    imageset_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_input_file("test_batch.bin", data, size);
    CifarCall call = {fuzz_scratch_dir(), size % 2 ? 16 : 32};
    fuzz_run(read_batch, &call);
    return 0;
}
