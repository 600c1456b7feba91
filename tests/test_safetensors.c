// safetensors (src/hf/safetensors.c): our writer read back bit for bit, a file
// written by Hugging Face's own library (tests/fixtures/safetensors/, made by
// scripts/make_safetensors_fixture.py), the F16/BF16/F64 conversions against
// values worked out by hand, and one refusal per malformed header.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hf/safetensors.h"
#include "test.h"

static uint32_t float_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return bits;
}

// A safetensors file from its parts: the 8-byte length of `header`, the
// header, then `data_size` bytes of data.
static void write_safetensors(const char *path, const char *header, const void *data, size_t data_size) {
    const size_t header_size = strlen(header);
    uint8_t *bytes = xmalloc(8 + header_size + data_size + 1);
    put_u64(bytes, header_size);
    memcpy(bytes + 8, header, header_size);
    if (data_size) memcpy(bytes + 8 + header_size, data, data_size);
    write_whole_file(path, bytes, 8 + header_size + data_size);
    free(bytes);
}

// Runs `body(arg)` in a child (the reader and writer end the process on bad
// input) and checks that it failed with "igpt: error: <what>: ..." containing
// `message` on stderr. Returns whether it did.
static bool expect_die(void (*body)(const void *), const void *arg, const char *what, const char *message) {
    const char *err_path = test_path("stderr.txt");
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(err_path, "w", stderr)) _exit(99);
        body(arg);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    char *err = (char *)read_whole_file(err_path, NULL);
    char *prefix = xasprintf("igpt: error: %s: ", what);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 1 && err && strncmp(err, prefix, strlen(prefix)) == 0 &&
                    strstr(err, message) && strchr(err, '\n') == err + strlen(err) - 1;
    CHECK(ok, "expected a failure \"%s%s\", got exit status %d and: %s", prefix, message, status, err ? err : "");
    free(prefix);
    free(err);
    return ok;
}

static void open_and_close(const void *path) {
    SafeTensors st;
    safetensors_open(path, &st);
    safetensors_close(&st);
}

// --- Our writer, read back ----------------------------------------------------------------------

TEST(test_safetensors_write_read_round_trip) {
    // Values that a careless conversion would change: -0, a subnormal, inf, a NaN with a payload.
    const uint32_t special[] = {0x80000000u, 0x00000001u, 0x7f800000u, 0x7fc01234u, 0xff800000u, 0x3f800000u};
    float a[6], b[2 * 3 * 4], scalar = -3.25f;
    for (int i = 0; i < 6; i++) memcpy(&a[i], &special[i], 4);
    Rng rng;
    rng_init(&rng, 16, 0);
    for (int i = 0; i < 24; i++) b[i] = (float)rng_normal(&rng);
    // Names JSON must escape: a quote, a backslash, a newline, and UTF-8 passed through.
    const SafeTensorOut out[] = {
        {"h.0.attn \"c\\attn\"\n", 2, {2, 3}, a},
        {"wte \xc3\xa9", 3, {2, 3, 4}, b},
        {"scalar", 0, {0}, &scalar},
        {"empty", 2, {0, 5}, NULL},
    };
    const char *keys[] = {"format", "igpt \"run\""}, *values[] = {"pt", "line1\nline2"};
    const char *path = test_path("model.safetensors"), *again = test_path("again.safetensors");
    safetensors_write(path, out, 4, keys, values, 2);
    safetensors_write(again, out, 4, keys, values, 2);
    CHECK(files_equal(path, again), "the same input gives the same bytes");

    SafeTensors st;
    safetensors_open(path, &st);
    CHECK(st.n == 4 && st.n_meta == 2, "4 tensors (%d), 2 metadata entries (%d)", st.n, st.n_meta);
    CHECK(get_u64(st.bytes) % 8 == 0, "the header is padded to a multiple of 8");
    // JSON forbids raw control characters in strings (cJSON lets them pass, the official reader does not).
    for (uint64_t i = 0; i < get_u64(st.bytes); i++)
        CHECK(st.bytes[8 + i] >= 0x20, "header byte %llu is 0x%02x, not escaped", (unsigned long long)i,
              st.bytes[8 + i]);
    for (int i = 0; i < st.n && i < 4; i++) {
        const SafeTensor *t = &st.tensors[i];
        CHECK(strcmp(t->name, out[i].name) == 0, "tensor %d keeps its name and its place: %s", i, t->name);
        CHECK(t->dtype == ST_F32 && t->ndim == out[i].ndim, "tensor %d: F32 with %d dims", i, out[i].ndim);
        uint64_t count = 1;
        for (int d = 0; d < out[i].ndim; d++) {
            CHECK(t->shape[d] == out[i].shape[d], "tensor %d dim %d", i, d);
            count *= (uint64_t)out[i].shape[d];
        }
        CHECK(t->count == count, "tensor %d has %llu values", i, (unsigned long long)t->count);
        float *values_read = xmalloc((count + 1) * sizeof *values_read);
        safetensors_read_f32(&st, t, values_read);
        CHECK(count == 0 || memcmp(values_read, out[i].data, count * 4) == 0, "tensor %d bit for bit", i);
        free(values_read);
    }
    CHECK(safetensors_find(&st, "scalar") == &st.tensors[2] && !safetensors_find(&st, "missing"), "find");
    const char *format = safetensors_meta(&st, "format"), *run = safetensors_meta(&st, "igpt \"run\"");
    CHECK(format && strcmp(format, "pt") == 0 && run && strcmp(run, "line1\nline2") == 0, "metadata read back");
    CHECK(!safetensors_meta(&st, "missing"), "no such key");
    safetensors_close(&st);
}

// The exact bytes of a small file: igpt's inline JSON, metadata first, offsets back to back, spaces up to a multiple of
// 8, little-endian floats.
TEST(test_safetensors_writer_layout) {
    const float x[2] = {1.0f, -2.0f}, y = 0.5f;
    const SafeTensorOut out[] = {{"x", 1, {2}, x}, {"y", 0, {0}, &y}};
    const char *key = "format", *value = "pt";
    const char *path = test_path("layout.safetensors");
    safetensors_write(path, out, 2, &key, &value, 1);
    const char header[] =
        "{\"__metadata__\": {\"format\": \"pt\"}, \"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, "
        "8]}, "
        "\"y\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [8, 12]}}";
    const size_t padded = (sizeof header - 1 + 7) / 8 * 8;
    size_t size;
    uint8_t *bytes = read_whole_file(path, &size);
    CHECK(bytes && size == 8 + padded + 12, "size %zu", size);
    if (bytes && size == 8 + padded + 12) {
        CHECK(get_u64(bytes) == padded, "header length %llu", (unsigned long long)get_u64(bytes));
        CHECK(memcmp(bytes + 8, header, sizeof header - 1) == 0, "header: %.*s", (int)padded, (char *)bytes + 8);
        for (size_t i = sizeof header - 1; i < padded; i++) CHECK(bytes[8 + i] == ' ', "padding is spaces");
        const uint8_t data[12] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 0, 0, 0, 0x3f};
        CHECK(memcmp(bytes + 8 + padded, data, 12) == 0, "data: little-endian F32");
    }
    free(bytes);
    // No tensors, no metadata: "{}" padded, a valid file.
    safetensors_write(path, NULL, 0, NULL, NULL, 0);
    SafeTensors st;
    safetensors_open(path, &st);
    CHECK(st.n == 0 && st.n_meta == 0 && st.size == 16, "an empty file: %d tensors, %zu bytes", st.n, st.size);
    safetensors_close(&st);
}

typedef struct {
    const char *path;
    const SafeTensorOut *tensors;
    int n;
    const char *const *keys;
    int n_meta;
} WriteArgs;

static void write_body(const void *arg) {
    const WriteArgs *w = arg;
    safetensors_write(w->path, w->tensors, w->n, w->keys, w->keys, w->n_meta);
}

TEST(test_safetensors_writer_refuses_bad_names) {
    const float x = 1.0f;
    const SafeTensorOut twice[] = {{"a", 0, {0}, &x}, {"b", 0, {0}, &x}, {"a", 0, {0}, &x}};
    const SafeTensorOut empty[] = {{"a", 0, {0}, &x}, {"", 0, {0}, &x}};
    const SafeTensorOut reserved[] = {{"__metadata__", 0, {0}, &x}};
    const SafeTensorOut no_data[] = {{"a", 1, {2}, NULL}};
    const char *keys[] = {"k", "k"};
    const char *path = test_path("out.safetensors");
    const WriteArgs cases[] = {{path, twice, 3, NULL, 0},
                               {path, empty, 2, NULL, 0},
                               {path, reserved, 1, NULL, 0},
                               {path, twice, 1, keys, 2},
                               {path, no_data, 1, NULL, 0}};
    const char *messages[] = {"tensor \"a\" is given twice", "tensor 1 has an empty name",
                              "a tensor cannot be called \"__metadata__\"", "metadata key \"k\" is given twice",
                              "tensor \"a\" has 2 values but no data"};
    for (int i = 0; i < 5; i++) expect_die(write_body, &cases[i], path, messages[i]);
    CHECK(!path_exists(path), "no output file");
}

// --- A file from Hugging Face's library -------------------------------------------------------

// tests/fixtures/safetensors/official.safetensors, written by safetensors 0.8
// (scripts/make_safetensors_fixture.py): what each tensor holds, in fp32 bits.
TEST(test_safetensors_reads_official_file) {
    static const struct {
        const char *name;
        SafeDtype dtype;
        int ndim;
        int64_t shape[2];
        uint32_t bits[8];
    } expected[] = {
        {"f32", ST_F32, 2, {2, 3}, {0, 0x80000000u, 0x3fc00000u, 0xc0100000u, 0x7f7fffffu, 0x00000001u}},
        // 65504 is F16's largest normal, 2^-24 its smallest subnormal.
        {"f16",
         ST_F16,
         2,
         {2, 4},
         {0, 0x80000000u, 0x3f800000u, 0xc0000000u, 0x477fe000u, 0x33800000u, 0x7f800000u, 0xff800000u}},
        {"f16_nan", ST_F16, 1, {1}, {0x7fc00000u}},  // numpy's NaN, 0x7e00: the quiet bit carried over
        // bf16 0x0001 is 2^-133, a subnormal.
        {"bf16", ST_BF16, 1, {4}, {0x3f800000u, 0xbfc00000u, 0x00010000u, 0xff800000u}},
        // 0.1 rounds to 0x3dcccccd; -1e300 is beyond fp32: -inf; 2^-140 is an fp32 subnormal.
        {"f64", ST_F64, 1, {3}, {0x3dcccccdu, 0xff800000u, 0x00000200u}},
        {"scalar", ST_F32, 0, {0}, {0x40e00000u}},
        {"empty", ST_F32, 2, {0, 3}, {0}},
        {"layer.0.weight", ST_F32, 2, {3, 2}, {0, 0x3f800000u, 0x40000000u, 0x40400000u, 0x40800000u, 0x40a00000u}},
    };
    SafeTensors st;
    safetensors_open("tests/fixtures/safetensors/official.safetensors", &st);
    CHECK(st.n == 9, "9 tensors, not %d", st.n);
    for (size_t e = 0; e < sizeof expected / sizeof expected[0]; e++) {
        const SafeTensor *t = safetensors_find(&st, expected[e].name);
        CHECK(t != NULL, "tensor %s", expected[e].name);
        if (!t) continue;
        CHECK(t->dtype == expected[e].dtype && t->ndim == expected[e].ndim, "%s: %s, %d dims", t->name,
              safetensors_dtype_name(t->dtype), t->ndim);
        uint64_t count = 1;
        for (int d = 0; d < expected[e].ndim; d++) {
            CHECK(t->shape[d] == expected[e].shape[d], "%s: dim %d is %lld", t->name, d, (long long)t->shape[d]);
            count *= (uint64_t)expected[e].shape[d];
        }
        CHECK(t->count == count, "%s: %llu values", t->name, (unsigned long long)t->count);
        float values[8];
        safetensors_read_f32(&st, t, values);
        for (uint64_t i = 0; i < count && i < 8; i++)
            CHECK(float_bits(values[i]) == expected[e].bits[i], "%s[%llu]: 0x%08x, expected 0x%08x", t->name,
                  (unsigned long long)i, float_bits(values[i]), expected[e].bits[i]);
    }
    // The tensors come in the order of their data.
    for (int i = 1; i < st.n; i++) CHECK(st.tensors[i].data >= st.tensors[i - 1].data, "tensor %d in data order", i);
    const char *format = safetensors_meta(&st, "format"), *note = safetensors_meta(&st, "note");
    CHECK(format && strcmp(format, "pt") == 0 && note && strcmp(note, "igpt fixture") == 0, "metadata");
    CHECK(safetensors_find(&st, "i32")->dtype == ST_I32, "an I32 tensor");
    safetensors_close(&st);
}

static void read_i32_body(const void *path) {
    SafeTensors st;
    safetensors_open(path, &st);
    float values[2];
    safetensors_read_f32(&st, safetensors_find(&st, "i32"), values);
}

TEST(test_safetensors_read_f32_refuses_integers) {
    const char *path = "tests/fixtures/safetensors/official.safetensors";
    expect_die(read_i32_body, path, path, "tensor \"i32\" is I32, not a floating-point type");
}

// --- Conversions, value by value -----------------------------------------------------------------

// One tensor `name` of `dtype` holding `bytes`, read as fp32; data starts at
// an odd offset (after a 1-byte U8 tensor), so no read may assume alignment.
static void read_values(const char *dtype, const uint8_t *bytes, int count, int size, float *out) {
    // The file is mapped at a page boundary: 8 + an even header + 1 is odd.
    char *header = xasprintf(
        "{\"pad\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
        "\"v\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[1,%d]}} ",
        dtype, count, 1 + count * size);
    header[strlen(header) - (strlen(header) % 2)] = '\0';
    uint8_t data[1 + 8 * 16] = {0xee};
    memcpy(data + 1, bytes, (size_t)(count * size));
    const char *path = test_path("values.safetensors");
    write_safetensors(path, header, data, (size_t)(1 + count * size));
    SafeTensors st;
    safetensors_open(path, &st);
    const SafeTensor *t = safetensors_find(&st, "v");
    CHECK(t && ((uintptr_t)t->data & 1) == 1, "the values start at an odd address");
    safetensors_read_f32(&st, t, out);
    safetensors_close(&st);
    free(header);
}

TEST(test_safetensors_f16_values) {
    static const struct {
        uint16_t half;
        uint32_t bits;
    } cases[] = {
        {0x0000, 0x00000000u}, {0x8000, 0x80000000u},  // +0, -0
        {0x3c00, 0x3f800000u}, {0xc000, 0xc0000000u},  // 1, -2
        {0x3555, 0x3eaaa000u},                         // 0.33325195: every mantissa bit carried over
        {0x0001, 0x33800000u}, {0x8001, 0xb3800000u},  // +-2^-24, the smallest subnormal
        {0x03ff, 0x387fc000u},                         // 1023 x 2^-24, the largest subnormal
        {0x0400, 0x38800000u},                         // 2^-14, the smallest normal
        {0x7bff, 0x477fe000u},                         // 65504, the largest
        {0x7c00, 0x7f800000u}, {0xfc00, 0xff800000u},  // +-inf
        {0x7e00, 0x7fc00000u}, {0xfc01, 0xff802000u},  // NaNs: sign and payload kept
    };
    enum { N = sizeof cases / sizeof cases[0] };
    uint8_t bytes[2 * N];
    for (int i = 0; i < N; i++) {
        bytes[2 * i] = (uint8_t)cases[i].half;
        bytes[2 * i + 1] = (uint8_t)(cases[i].half >> 8);
    }
    float out[N];
    read_values("F16", bytes, N, 2, out);
    for (int i = 0; i < N; i++)
        CHECK(float_bits(out[i]) == cases[i].bits, "F16 0x%04x: 0x%08x, expected 0x%08x", cases[i].half,
              float_bits(out[i]), cases[i].bits);
}

TEST(test_safetensors_bf16_and_f64_values) {
    static const uint16_t bf16[] = {0x3f80, 0x8000, 0x0001, 0x7f80, 0xff81, 0x4049};
    enum { NB = sizeof bf16 / sizeof bf16[0] };
    uint8_t bytes[8 * 16];
    for (int i = 0; i < NB; i++) {
        bytes[2 * i] = (uint8_t)bf16[i];
        bytes[2 * i + 1] = (uint8_t)(bf16[i] >> 8);
    }
    float out[16];
    read_values("BF16", bytes, NB, 2, out);
    for (int i = 0; i < NB; i++)
        CHECK(float_bits(out[i]) == (uint32_t)bf16[i] << 16, "BF16 0x%04x: 0x%08x", bf16[i], float_bits(out[i]));

    static const struct {
        double value;
        uint32_t bits;
    } f64[] = {
        {-0.0, 0x80000000u},
        {0.1, 0x3dcccccdu},                    // rounded to nearest
        {0x1.fffffefffffffp127, 0x7f7fffffu},  // just below FLT_MAX + half an ulp: FLT_MAX
        {0x1.ffffffp127, 0x7f800000u},         // FLT_MAX + half an ulp: ties to even, inf
        {-1e300, 0xff800000u},                 // beyond fp32: -inf
        {0x1p-149, 0x00000001u},               // fp32's smallest subnormal
        {-0x1p-149, 0x80000001u},              // negative
        {0x1.8p-149, 0x00000002u},             // 1.5 x 2^-149: ties to even, 2
        {0x1.4p-148, 0x00000002u},             // 2.5 x 2^-149: ties to even, 2
        {0x1.fffffep-127, 0x00800000u},        // just below FLT_MIN: rounds up to it
        {1e-50, 0x00000000u},                  // below it: 0
        {INFINITY, 0x7f800000u},
    };
    enum { NF = sizeof f64 / sizeof f64[0] };
    for (int i = 0; i < NF; i++) {
        uint64_t bits;
        memcpy(&bits, &f64[i].value, 8);
        put_u64(bytes + 8 * i, bits);
    }
    read_values("F64", bytes, NF, 8, out);
    for (int i = 0; i < NF; i++)
        CHECK(float_bits(out[i]) == f64[i].bits, "F64 %a: 0x%08x, expected 0x%08x", f64[i].value, float_bits(out[i]),
              f64[i].bits);
    const double nan = NAN;
    uint64_t nan_bits;
    memcpy(&nan_bits, &nan, 8);
    put_u64(bytes, nan_bits);
    read_values("F64", bytes, 1, 8, out);
    CHECK(isnan(out[0]), "F64 NaN stays NaN");
}

// --- Malformed files: one refusal each ----------------------------------------------------------

// A tensor entry: name, then dtype, shape and offsets as JSON text.
#define ENTRY(name, dtype, shape, offsets) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"
#define ONE(dtype, shape, offsets) "{" ENTRY("t", dtype, shape, offsets) "}"

TEST(test_safetensors_refuses_malformed_headers) {
    static const struct {
        const char *header;
        size_t data;  // bytes after the header (zeros)
        const char *message;
    } cases[] = {
        {"[1]", 0, "the header does not start with '{'"},
        {" {}", 0, "the header does not start with '{'"},
        {"{\"t\":", 0, "the header is not valid JSON"},
        {"{} x", 0, "the header has bytes after its JSON object (at byte 3 of it)"},
        {"{}\0 ", 0, "the header has bytes after its JSON object"},
        {ONE("Q4", "[1]", "[0,1]"), 1, "tensor \"t\": unknown dtype \"Q4\""},
        {ONE("F32", "3", "[0,12]"), 12, "tensor \"t\": \"shape\" is not an array"},
        {ONE("F32", "[1.5]", "[0,4]"), 4, "tensor \"t\": shape dimension 0 is not a non-negative integer"},
        {ONE("F32", "[1,-1]", "[0,4]"), 4, "tensor \"t\": shape dimension 1 is not a non-negative integer"},
        {ONE("F32", "[\"2\"]", "[0,8]"), 8, "tensor \"t\": shape dimension 0 is not a non-negative integer"},
        // 2^53 + 1 reads as the double 2^53: refused rather than silently rounded.
        {ONE("U8", "[9007199254740993]", "[0,1]"), 1, "shape dimension 0 is not a non-negative integer below 2^53"},
        {ONE("U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]"), 1, "tensor \"t\" has 9 dimensions (at most 8 are read)"},
        {ONE("U8", "[4294967296,4294967296]", "[0,1]"), 1, "tensor \"t\": its shape has more elements than 64 bits"},
        {ONE("F32", "[1]", "[0,4.5]"), 4, "tensor \"t\": \"data_offsets\" is not [begin, end]"},
        {ONE("F32", "[1]", "[4]"), 4, "tensor \"t\": \"data_offsets\" is not [begin, end]"},
        {ONE("F32", "[1]", "[0,4,8]"), 8, "tensor \"t\": \"data_offsets\" is not [begin, end]"},
        {ONE("F32", "[1]", "[-4,0]"), 4, "tensor \"t\": \"data_offsets\" is not [begin, end]"},
        {ONE("F32", "[0]", "[8,4]"), 8, "tensor \"t\": data_offsets [8, 4] end before they begin"},
        {ONE("F32", "[4]", "[0,16]"), 8, "tensor \"t\": data_offsets [0, 16] run past the data's 8 bytes"},
        {ONE("F32", "[2]", "[0,4]"), 4,
         "tensor \"t\": its shape holds 2 F32 values (8 bytes) but data_offsets [0, 4] hold 4"},
        {"{" ENTRY("a", "U8", "[1]", "[0,1]") "," ENTRY("a", "U8", "[1]", "[1,2]") "}", 2,
         "tensor \"a\" appears twice"},
        {"{" ENTRY("a", "U8", "[1]", "[0,1]") "," ENTRY("b", "U8", "[1]", "[2,3]") "}", 3,
         "bytes 1 to 2 of the data belong to no tensor (a gap before tensor \"b\")"},
        {"{" ENTRY("a", "U8", "[2]", "[0,2]") "," ENTRY("b", "U8", "[1]", "[1,2]") "}", 2,
         "tensor \"b\" overlaps tensor \"a\" (data_offsets begin at 1, before 2)"},
        {ONE("U8", "[1]", "[0,1]"), 3, "the tensors end at byte 1 of the data but the file holds 3"},
        {"{" ENTRY("b", "U8", "[1]", "[1,2]") "}", 2, "bytes 0 to 1 of the data belong to no tensor"},
        {"{\"__metadata__\":{\"a\":\"x\",\"k\":1}}", 0, "\"__metadata__\" value of \"k\" is not a string"},
        {"{\"__metadata__\":[\"x\"]}", 0, "\"__metadata__\" is not an object of strings"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice"},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "\"__metadata__\" key \"k\" appears twice"},
        {"{" ENTRY("", "U8", "[1]", "[0,1]") "}", 1, "a tensor has an empty name"},
        {"{\"t\":[1]}", 0, "tensor \"t\" is not an object"},
        {"{\"t\":{\"dtype\":\"U8\",\"shape\":[0]}}", 0, "tensor \"t\" has no \"data_offsets\""},
        {"{\"t\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
         "tensor \"t\": field \"dtype\" appears twice"},
        {"{\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0],\"scale\":2}}", 0,
         "tensor \"t\": unknown field \"scale\""},
        {ONE("7", "[1]", "[0,1]"), 1, "tensor \"t\": unknown dtype \"7\""},
        {"{\"t\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor \"t\": \"dtype\" is not a string"},
    };
    char *path = xstrdup(test_path("bad.safetensors"));  // test_path's strings are recycled
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        // Header lengths come from sizeof-less strings: "{}\0 " keeps its NUL by an explicit length.
        const char *h = cases[i].header;
        const size_t header_size = strcmp(h, "{}") == 0 && h[3] == ' ' ? 4 : strlen(h);
        uint8_t *bytes = xcalloc(8 + header_size + cases[i].data, 1);
        put_u64(bytes, header_size);
        memcpy(bytes + 8, h, header_size);
        write_whole_file(path, bytes, 8 + header_size + cases[i].data);
        free(bytes);
        if (!expect_die(open_and_close, path, path, cases[i].message)) fprintf(stderr, "    case %zu: %s\n", i, h);
    }
    free(path);
}

TEST(test_safetensors_refuses_bad_lengths) {
    char *path = xstrdup(test_path("bad.safetensors"));
    write_whole_file(path, "\x02\0\0", 3);
    expect_die(open_and_close, path, path, "too short for a safetensors file (3 bytes");
    write_safetensors(path, "{}", NULL, 0);
    uint8_t bytes[10];
    put_u64(bytes, 3);  // 3 bytes of header in a 10-byte file: 1 missing
    memcpy(bytes + 8, "{}", 2);
    write_whole_file(path, bytes, 10);
    expect_die(open_and_close, path, path, "its header of 3 bytes runs past the end of the file (10 bytes");
    put_u64(bytes, UINT64_MAX);  // 8 + N would wrap around
    write_whole_file(path, bytes, 10);
    expect_die(open_and_close, path, path, "runs past the end of the file");
    // A header over the limit needs a file that large: a sparse one costs nothing.
    put_u64(bytes, SAFETENSORS_MAX_HEADER_BYTES + 1);
    write_whole_file(path, bytes, 10);
    CHECK(truncate(path, 8 + SAFETENSORS_MAX_HEADER_BYTES + 8) == 0, "a sparse 100 MB file");
    expect_die(open_and_close, path, path, "its header of 100000001 bytes is larger than the 100000000");
    // The empty file and a folder.
    write_whole_file(path, "", 0);
    expect_die(open_and_close, path, path, "too short for a safetensors file (0 bytes");
    const char *missing = test_path("missing.safetensors");
    expect_die(open_and_close, missing, missing, "no such file");
    free(path);
}

// What the format allows: whitespace after the JSON, empty tensors sharing an
// offset, a scalar, no tensors at all.
TEST(test_safetensors_accepts_edge_cases) {
    const char *path = test_path("edge.safetensors");
    const uint8_t data[5] = {1, 2, 3, 4, 5};
    write_safetensors(path,
                      "{" ENTRY("z", "F32", "[0,7]", "[4,4]") "," ENTRY("s", "F32", "[]", "[0,4]") "," ENTRY(
                          "e", "I64", "[3,0]", "[4,4]") "," ENTRY("b", "BOOL", "[1]", "[4,5]") "} \t\r\n ",
                      data, 5);
    SafeTensors st;
    safetensors_open(path, &st);
    CHECK(st.n == 4, "4 tensors");
    if (st.n == 4) {
        // In the order of the data; the two empty ones at offset 4 in the header's order.
        const char *order[] = {"s", "z", "e", "b"};
        for (int i = 0; i < 4; i++) CHECK(strcmp(st.tensors[i].name, order[i]) == 0, "tensor %d is %s", i, order[i]);
        CHECK(st.tensors[0].ndim == 0 && st.tensors[0].count == 1, "a scalar holds one value");
        CHECK(st.tensors[1].count == 0 && st.tensors[1].shape[1] == 7, "an empty tensor");
    }
    safetensors_close(&st);
    write_safetensors(path, "{}", NULL, 0);
    safetensors_open(path, &st);
    CHECK(st.n == 0 && st.n_meta == 0, "no tensors");
    safetensors_close(&st);
    // The same bytes from memory.
    const uint8_t bytes[] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    safetensors_parse(bytes, sizeof bytes, "memory", &st);
    CHECK(st.n == 0 && st.bytes == bytes && !st.mapped, "parsed in place");
    safetensors_close(&st);
}
