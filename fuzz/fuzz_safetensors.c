// Fuzzes the safetensors reader (safetensors_parse / safetensors_open: the
// weights of a Hugging Face model, ./igpt import's input), then
// safetensors_read_f32 on every floating-point tensor it accepts. The input
// is parsed in place first, from libFuzzer's own heap buffer, so that
// AddressSanitizer sees a read one byte past the file (a mapped file hides
// it up to the end of its page); an accepted input is then also opened as a
// file, through mmap, as ./igpt reads it. No CRC variant: the format has none.
#include <stdlib.h>

#include "fuzz_common.h"
#include "hf/safetensors.h"
#include "util/util.h"

typedef struct {
    const uint8_t *data;
    size_t size;
} Input;

static void convert_floats(const SafeTensors *st) {
    for (int i = 0; i < st->n; i++) {
        const SafeTensor *t = &st->tensors[i];
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) continue;
        float *values = malloc((t->count + 1) * sizeof *values);
        safetensors_read_f32(st, t, values);
        free(values);
    }
}

static void parse_in_place(void *arg) {
    const Input *in = arg;
    SafeTensors st;
    safetensors_parse(in->data, in->size, "fuzz input", &st);
    convert_floats(&st);
    safetensors_close(&st);
}

static void open_file(void *path) {
    SafeTensors st;
    safetensors_open(path, &st);
    convert_floats(&st);
    safetensors_close(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Input in = {data, size};
    if (fuzz_run(parse_in_place, &in) && !fuzz_run(open_file, (void *)fuzz_input_file("model.safetensors", data, size)))
        abort();  // the same bytes accepted in memory but refused as a file
    return 0;
}
