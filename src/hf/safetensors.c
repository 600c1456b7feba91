// safetensors files: the reader (every field checked before a size is
// computed from it) and the writer (fp32 tensors, deterministic bytes).
// docs/formats.md, "safetensors", describes the format and the checks.
#include "hf/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/gemm_bf16.h"
#include "util/json.h"
#include "util/util.h"
#ifndef IGPT_NO_CJSON
#include <cjson/cJSON.h>
#endif

static const struct {
    const char *name;
    size_t size;
} DTYPES[] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},     [ST_I16] = {"I16", 2},
    [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4},
    [ST_U32] = {"U32", 4},   [ST_F32] = {"F32", 4}, [ST_I64] = {"I64", 8},   [ST_U64] = {"U64", 8},
    [ST_F64] = {"F64", 8},
};
enum { NUM_DTYPES = sizeof DTYPES / sizeof DTYPES[0] };

const char *safetensors_dtype_name(SafeDtype dtype) {
    return (unsigned)dtype < NUM_DTYPES ? DTYPES[dtype].name : "unknown";
}
size_t safetensors_dtype_size(SafeDtype dtype) { return (unsigned)dtype < NUM_DTYPES ? DTYPES[dtype].size : 0; }

const SafeTensor *safetensors_find(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *safetensors_meta(const SafeTensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

// Releases what safetensors_open/parse allocated, also when they stopped
// half-way (a refusal: entries not filled yet are NULL).
void safetensors_close(SafeTensors *st) {
    for (int i = 0; i < st->n; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    if (st->mapped && st->size > 0) munmap((void *)st->bytes, st->size);
    free(st->path);
    memset(st, 0, sizeof *st);
}

// --- Reading values ---------------------------------------------------------------------
// IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Every half is a
// float exactly, so the conversion is bit manipulation, not rounding.
static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0) {  // zero and subnormals: mantissa x 2^-24, exact in fp32
        const float magnitude = (float)mantissa * 0x1p-24f;
        memcpy(&bits, &magnitude, 4);
        bits |= sign;
    } else if (exponent == 31) {  // inf, or NaN with its payload kept (as numpy does)
        bits = sign | 0x7f800000u | mantissa << 13;
    } else {  // rebias the exponent from 15 to 127
        bits = sign | (exponent + 112) << 23 | mantissa << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// A double to the nearest float. Two ranges are spelled out: beyond FLT_MAX +
// half an ulp (where rounding reaches infinity) C leaves the conversion
// undefined, and below FLT_MIN the result is subnormal, which the hardware
// flushes to 0 once flush_denormals_to_zero has run: there the float is
// m x 2^-149, m the double scaled by 2^149 (exact) rounded to an integer.
static float double_to_float(double d) {
    const double magnitude = fabs(d);
    if (magnitude >= 0x1.ffffffp127) return d > 0 ? INFINITY : -INFINITY;
    if (magnitude >= 0x1p-126 || isnan(d)) return (float)d;
    const uint32_t m = (uint32_t)nearbyint(magnitude * 0x1p149);  // ties to even; 2^23 is FLT_MIN
    const uint32_t bits = (signbit(d) ? 0x80000000u : 0) | m;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void safetensors_read_f32(const SafeTensors *st, const SafeTensor *t, float *out) {
    // Values are little-endian and need not be aligned: read byte by byte
    // (get_u32 compiles to one load on x86).
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32:
        for (uint64_t i = 0; i < t->count; i++) {
            const uint32_t bits = get_u32(p + 4 * i);
            memcpy(&out[i], &bits, 4);
        }
        break;
    case ST_F16:
        for (uint64_t i = 0; i < t->count; i++) out[i] = half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case ST_BF16:
        for (uint64_t i = 0; i < t->count; i++) out[i] = bf16_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case ST_F64:
        for (uint64_t i = 0; i < t->count; i++) {
            const uint64_t bits = get_u64(p + 8 * i);
            double d;
            memcpy(&d, &bits, 8);
            out[i] = double_to_float(d);
        }
        break;
    default:
        die("%s: tensor \"%s\" is %s, not a floating-point type (F32, F16, BF16 or F64)", st->path, t->name,
            safetensors_dtype_name(t->dtype));
    }
}

// --- The writer -----------------------------------------------------------------------------
// Names must be non-empty and distinct (a reader would refuse the file).
static void check_names(const char *path, const char *what, const char *const *names, int n) {
    for (int i = 0; i < n; i++) {
        if (!names[i] || names[i][0] == '\0') die("%s: %s %d has an empty name", path, what, i);
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0) die("%s: %s \"%s\" is given twice", path, what, names[i]);
    }
}

static uint64_t tensor_out_count(const char *path, const SafeTensorOut *t) {
    if (t->ndim < 0 || t->ndim > SAFETENSORS_MAX_DIMS)
        die("%s: tensor \"%s\" has %d dimensions (0 to %d can be written)", path, t->name, t->ndim,
            SAFETENSORS_MAX_DIMS);
    uint64_t count = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) die("%s: tensor \"%s\" has a negative dimension", path, t->name);
        count = saturating_mul(count, (uint64_t)t->shape[d]);
    }
    if (saturating_mul(count, 4) > ((uint64_t)1 << 53)) die("%s: tensor \"%s\" is too large", path, t->name);
    if (count > 0 && !t->data)
        die("%s: tensor \"%s\" has %llu values but no data", path, t->name, (unsigned long long)count);
    return count;
}

// The header, igpt's inline JSON (util/json.h): metadata first, then the
// tensors back to back; spaces up to a multiple of 8, so that the data starts
// 8-byte aligned (as the official writer does). Returns it (free it), its
// length in *len.
static char *header_json(const char *path, const SafeTensorOut *tensors, int n, const char *const *meta_keys,
                         const char *const *meta_values, int n_meta, size_t *len) {
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_INLINE);
    if (n_meta > 0) {
        json_object_begin(&w, "__metadata__", JSON_INLINE);
        for (int i = 0; i < n_meta; i++) json_string(&w, meta_keys[i], meta_values[i] ? meta_values[i] : "");
        json_object_end(&w);
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const SafeTensorOut *t = &tensors[i];
        json_object_begin(&w, t->name, JSON_INLINE);
        json_string(&w, "dtype", "F32");
        json_array_begin(&w, "shape", JSON_INLINE);
        for (int d = 0; d < t->ndim; d++) json_int(&w, NULL, t->shape[d]);
        json_array_end(&w);
        json_array_begin(&w, "data_offsets", JSON_INLINE);
        json_uint(&w, NULL, offset);
        offset += 4 * tensor_out_count(path, t);
        json_uint(&w, NULL, offset);
        json_array_end(&w);
        json_object_end(&w);
    }
    json_object_end(&w);
    char *text = json_finish(&w, len);
    (*len)--;  // its closing newline: the header holds no control character
    text = xrealloc(text, *len + 8);
    while (*len % 8 != 0) text[(*len)++] = ' ';
    return text;
}

void safetensors_write(const char *path, const SafeTensorOut *tensors, int n, const char *const *meta_keys,
                       const char *const *meta_values, int n_meta) {
    const char **names = xmalloc(((size_t)n + 1) * sizeof *names);
    for (int i = 0; i < n; i++) {
        names[i] = tensors[i].name;
        if (names[i] && strcmp(names[i], "__metadata__") == 0)
            die("%s: a tensor cannot be called \"__metadata__\"", path);
    }
    check_names(path, "tensor", names, n);
    check_names(path, "metadata key", meta_keys, n_meta);
    free(names);
    size_t header_len;
    char *header = header_json(path, tensors, n, meta_keys, meta_values, n_meta, &header_len);

    AtomicFile af;
    atomic_open(&af, path);
    uint8_t length[8];
    put_u64(length, header_len);
    atomic_write(&af, length, 8);
    atomic_write(&af, header, header_len);
    free(header);
    enum { CHUNK = 4096 };
    uint8_t *chunk = xmalloc(4 * CHUNK);
    for (int i = 0; i < n; i++) {
        const uint64_t count = tensor_out_count(path, &tensors[i]);
        for (uint64_t start = 0; start < count; start += CHUNK) {
            const uint64_t m = count - start < CHUNK ? count - start : CHUNK;
            for (uint64_t k = 0; k < m; k++) {
                uint32_t bits;
                memcpy(&bits, &tensors[i].data[start + k], 4);
                put_u32(chunk + 4 * k, bits);
            }
            atomic_write(&af, chunk, 4 * m);
        }
    }
    free(chunk);
    atomic_commit(&af);
}

// --- The reader ---------------------------------------------------------------------------
#ifndef IGPT_NO_CJSON
// JSON numbers are doubles: integers are exact below 2^53 (a larger one in
// the text may have been rounded, so it is refused).
#define MAX_EXACT_INTEGER 9007199254740992.0

typedef struct {
    SafeTensors *st;
    cJSON *root;
    char *header;          // the JSON, NUL-terminated
    uint64_t buffer_size;  // bytes after the header
    const uint8_t *buffer;
} Parser;

// Dies with "<file>: <message>", after releasing everything the reader holds
// (the message is formatted first: its arguments may point into them).
IGPT_NORETURN IGPT_PRINTF(2, 3) static void refuse(Parser *p, const char *fmt, ...) {
    char message[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    char *path = xstrdup(p->st->path);
    cJSON_Delete(p->root);
    free(p->header);
    safetensors_close(p->st);
    char *line = xasprintf("%s: %s", path, message);
    free(path);
    // die() does not return; the line is freed by the exit (or by the fuzz harness).
    die("%s", line);
}

// A JSON number that is a non-negative integer JSON can hold exactly.
static bool json_count(const cJSON *item, uint64_t *value) {
    if (!cJSON_IsNumber(item)) return false;
    const double d = item->valuedouble;
    if (!(d >= 0.0 && d < MAX_EXACT_INTEGER && d == floor(d))) return false;
    *value = (uint64_t)d;
    return true;
}

static void parse_metadata(Parser *p, const cJSON *meta) {
    if (!cJSON_IsObject(meta)) refuse(p, "\"__metadata__\" is not an object of strings");
    const int n = cJSON_GetArraySize(meta);
    SafeTensors *st = p->st;
    st->meta_keys = xcalloc((size_t)n + 1, sizeof *st->meta_keys);
    st->meta_values = xcalloc((size_t)n + 1, sizeof *st->meta_values);
    st->n_meta = n;
    int i = 0;
    for (const cJSON *item = meta->child; item; item = item->next, i++) {
        if (!cJSON_IsString(item)) refuse(p, "\"__metadata__\" value of \"%s\" is not a string", item->string);
        st->meta_keys[i] = xstrdup(item->string);
        st->meta_values[i] = xstrdup(item->valuestring);
    }
}

static void parse_shape(Parser *p, SafeTensor *t, const cJSON *shape) {
    if (!cJSON_IsArray(shape)) refuse(p, "tensor \"%s\": \"shape\" is not an array", t->name);
    const int ndim = cJSON_GetArraySize(shape);
    if (ndim > SAFETENSORS_MAX_DIMS)
        refuse(p, "tensor \"%s\" has %d dimensions (at most %d are read)", t->name, ndim, SAFETENSORS_MAX_DIMS);
    t->ndim = ndim;
    t->count = 1;
    bool zero = false;
    int d = 0;
    for (const cJSON *item = shape->child; item; item = item->next, d++) {
        uint64_t size;
        if (!json_count(item, &size))
            refuse(p, "tensor \"%s\": shape dimension %d is not a non-negative integer below 2^53", t->name, d);
        t->shape[d] = (int64_t)size;
        t->count = saturating_mul(t->count, size);
        zero |= size == 0;
    }
    // A zero anywhere makes the product 0, whatever overflowed before it.
    if (zero) t->count = 0;
    if (t->count == UINT64_MAX) refuse(p, "tensor \"%s\": its shape has more elements than 64 bits count", t->name);
}

// Checks data_offsets against the shape; returns the begin offset.
static uint64_t parse_offsets(Parser *p, SafeTensor *t, const cJSON *offsets) {
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 || !json_count(offsets->child, &begin) ||
        !json_count(offsets->child->next, &end))
        refuse(p, "tensor \"%s\": \"data_offsets\" is not [begin, end], two non-negative integers", t->name);
    if (begin > end)
        refuse(p, "tensor \"%s\": data_offsets [%llu, %llu] end before they begin", t->name, (unsigned long long)begin,
               (unsigned long long)end);
    if (end > p->buffer_size)
        refuse(p, "tensor \"%s\": data_offsets [%llu, %llu] run past the data's %llu bytes (truncated file?)", t->name,
               (unsigned long long)begin, (unsigned long long)end, (unsigned long long)p->buffer_size);
    const uint64_t bytes = saturating_mul(t->count, safetensors_dtype_size(t->dtype));
    if (end - begin != bytes)
        refuse(p, "tensor \"%s\": its shape holds %llu %s values (%llu bytes) but data_offsets [%llu, %llu] hold %llu",
               t->name, (unsigned long long)t->count, safetensors_dtype_name(t->dtype), (unsigned long long)bytes,
               (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin));
    t->data = p->buffer + begin;
    return begin;
}

static SafeDtype parse_dtype(Parser *p, const SafeTensor *t, const cJSON *dtype) {
    if (!cJSON_IsString(dtype)) refuse(p, "tensor \"%s\": \"dtype\" is not a string", t->name);
    for (int d = 0; d < NUM_DTYPES; d++)
        if (strcmp(dtype->valuestring, DTYPES[d].name) == 0) return (SafeDtype)d;
    refuse(p, "tensor \"%s\": unknown dtype \"%s\"", t->name, dtype->valuestring);
}

// One entry name -> {"dtype", "shape", "data_offsets"}, each exactly once.
static uint64_t parse_tensor(Parser *p, SafeTensor *t, const cJSON *entry) {
    t->name = xstrdup(entry->string);
    if (t->name[0] == '\0') refuse(p, "a tensor has an empty name");
    if (!cJSON_IsObject(entry)) refuse(p, "tensor \"%s\" is not an object", t->name);
    const cJSON *fields[3] = {NULL, NULL, NULL};
    static const char *const FIELD_NAMES[3] = {"dtype", "shape", "data_offsets"};
    for (const cJSON *item = entry->child; item; item = item->next) {
        int f = 0;
        while (f < 3 && strcmp(item->string, FIELD_NAMES[f]) != 0) f++;
        if (f == 3) refuse(p, "tensor \"%s\": unknown field \"%s\"", t->name, item->string);
        if (fields[f]) refuse(p, "tensor \"%s\": field \"%s\" appears twice", t->name, FIELD_NAMES[f]);
        fields[f] = item;
    }
    for (int f = 0; f < 3; f++)
        if (!fields[f]) refuse(p, "tensor \"%s\" has no \"%s\"", t->name, FIELD_NAMES[f]);
    t->dtype = parse_dtype(p, t, fields[0]);
    parse_shape(p, t, fields[1]);
    return parse_offsets(p, t, fields[2]);
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Sorting n names finds a duplicate in n log n (a header can hold millions).
static void refuse_duplicates(Parser *p, char **names, int n, const char *what) {
    if (n < 2) return;
    char **sorted = xmalloc((size_t)n * sizeof *sorted);
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, compare_strings);
    for (int i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            const char *name = sorted[i];
            free(sorted);
            refuse(p, "%s \"%s\" appears twice", what, name);
        }
    }
    free(sorted);
}

typedef struct {
    uint64_t begin, end;
    int index;  // in the header: ties (empty tensors) keep the header's order
} Span;

static int compare_spans(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

// Sorted by offset, the tensors must tile the data exactly: no byte
// unaccounted for, none claimed twice (the format's own reader refuses both).
static void check_layout(Parser *p, Span *spans) {
    SafeTensors *st = p->st;
    qsort(spans, (size_t)st->n, sizeof *spans, compare_spans);
    uint64_t expected = 0;
    for (int i = 0; i < st->n; i++) {
        const char *name = st->tensors[spans[i].index].name;
        if (spans[i].begin > expected)
            refuse(p, "bytes %llu to %llu of the data belong to no tensor (a gap before tensor \"%s\")",
                   (unsigned long long)expected, (unsigned long long)spans[i].begin, name);
        if (spans[i].begin < expected)
            refuse(p, "tensor \"%s\" overlaps tensor \"%s\" (data_offsets begin at %llu, before %llu)", name,
                   st->tensors[spans[i - 1].index].name, (unsigned long long)spans[i].begin,
                   (unsigned long long)expected);
        expected = spans[i].end;
    }
    if (expected != p->buffer_size)
        refuse(p, "the tensors end at byte %llu of the data but the file holds %llu (bytes that belong to no tensor)",
               (unsigned long long)expected, (unsigned long long)p->buffer_size);
    // The tensors in the order of their data.
    SafeTensor *ordered = xmalloc((size_t)st->n * sizeof *ordered);
    for (int i = 0; i < st->n; i++) ordered[i] = st->tensors[spans[i].index];
    memcpy(st->tensors, ordered, (size_t)st->n * sizeof *ordered);
    free(ordered);
}

// Parses the header JSON into p->root: an object, nothing after it but whitespace.
static void parse_json(Parser *p, const uint8_t *text, uint64_t length) {
    if (length == 0 || text[0] != '{') refuse(p, "the header does not start with '{' (not a safetensors file?)");
    // A NUL-terminated copy, so that cJSON can never read past it.
    p->header = xmalloc(length + 1);
    memcpy(p->header, text, length);
    p->header[length] = '\0';
    const char *end = NULL;
    p->root = cJSON_ParseWithLengthOpts(p->header, length, &end, false);
    if (!p->root) {
        const char *at = cJSON_GetErrorPtr();
        const long offset = at && at >= p->header && at <= p->header + length ? (long)(at - p->header) : -1;
        refuse(p, "the header is not valid JSON (near byte %ld of it)", offset);
    }
    if (!cJSON_IsObject(p->root)) refuse(p, "the header is not a JSON object");
    for (const char *c = end; c < p->header + length; c++)
        if (!strchr(" \t\r\n", *c) || *c == '\0')
            refuse(p, "the header has bytes after its JSON object (at byte %ld of it)", (long)(c - p->header));
}

static void parse_file(Parser *p) {
    SafeTensors *st = p->st;
    if (st->size < 8)
        refuse(p, "too short for a safetensors file (%zu bytes; the header's length alone takes 8)", st->size);
    const uint64_t header_size = get_u64(st->bytes);
    if (header_size > st->size - 8)
        refuse(p, "its header of %llu bytes runs past the end of the file (%zu bytes; truncated?)",
               (unsigned long long)header_size, st->size);
    if (header_size > SAFETENSORS_MAX_HEADER_BYTES)
        refuse(p, "its header of %llu bytes is larger than the %u a safetensors header may have",
               (unsigned long long)header_size, SAFETENSORS_MAX_HEADER_BYTES);
    p->buffer = st->bytes + 8 + header_size;
    p->buffer_size = st->size - 8 - header_size;
    parse_json(p, st->bytes + 8, header_size);

    int entries = 0;
    for (const cJSON *item = p->root->child; item; item = item->next) entries++;
    st->tensors = xcalloc((size_t)entries + 1, sizeof *st->tensors);
    Span *spans = xcalloc((size_t)entries + 1, sizeof *spans);
    char **names = xcalloc((size_t)entries + 1, sizeof *names);
    const cJSON *metadata = NULL;
    for (const cJSON *item = p->root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (metadata) refuse(p, "\"__metadata__\" appears twice");
            metadata = item;
            continue;
        }
        SafeTensor *t = &st->tensors[st->n++];
        spans[st->n - 1].index = st->n - 1;
        spans[st->n - 1].begin = parse_tensor(p, t, item);
        spans[st->n - 1].end = spans[st->n - 1].begin + (uint64_t)(t->count * safetensors_dtype_size(t->dtype));
        names[st->n - 1] = t->name;
    }
    if (metadata) parse_metadata(p, metadata);
    refuse_duplicates(p, names, st->n, "tensor");
    refuse_duplicates(p, st->meta_keys, st->n_meta, "\"__metadata__\" key");
    free(names);
    check_layout(p, spans);
    free(spans);
    cJSON_Delete(p->root);
    free(p->header);
}

void safetensors_parse(const uint8_t *bytes, size_t size, const char *name, SafeTensors *st) {
    memset(st, 0, sizeof *st);
    st->path = xstrdup(name);
    st->bytes = bytes;
    st->size = size;
    Parser p = {.st = st};
    parse_file(&p);
}

void safetensors_open(const char *path, SafeTensors *st) {
    const int64_t size = regular_file_size(path);
    if (size < 0) die("%s: no such file", path);
    const int fd = open(path, O_RDONLY);
    if (fd < 0) die("%s: cannot open: %s", path, strerror(errno));
    const uint8_t *bytes = NULL;
    if (size > 0) {  // mmap refuses a length of 0
        void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        const int error = errno;
        close(fd);
        if (map == MAP_FAILED) die("%s: cannot map %lld bytes: %s", path, (long long)size, strerror(error));
        bytes = map;
    } else {
        close(fd);
    }
    memset(st, 0, sizeof *st);
    st->path = xstrdup(path);
    st->bytes = bytes;
    st->size = (size_t)size;
    st->mapped = true;
    Parser p = {.st = st};
    parse_file(&p);
}
#else
void safetensors_parse(const uint8_t *bytes, size_t size, const char *name, SafeTensors *st) {
    (void)bytes;
    (void)size;
    (void)st;
    die("%s: this build has no cJSON (GPU_ONLY), so it cannot read safetensors files", name);
}
void safetensors_open(const char *path, SafeTensors *st) {
    (void)st;
    die("%s: this build has no cJSON (GPU_ONLY), so it cannot read safetensors files", path);
}
#endif
