// safetensors files (docs/formats.md, "safetensors"): the format Hugging Face
// models ship their weights in, read to import a released iGPT and written to
// export one of our runs. A file is an 8-byte little-endian header length N,
// N bytes of JSON (name -> {dtype, shape, data_offsets}, and an optional
// "__metadata__" of strings), then the tensors' bytes.
//
// The reader is user input's first stop: it checks every field before any
// size is computed from it (lengths, offsets, shapes, products that could
// overflow, gaps or overlaps between tensors), and dies with a message that
// names the file and what is wrong. It maps the file, so a 5 GB model is not
// read twice.
#ifndef IGPT_SAFETENSORS_H
#define IGPT_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SAFETENSORS_MAX_DIMS 8
// Larger headers are refused (the format's own reader has the same limit).
#define SAFETENSORS_MAX_HEADER_BYTES (100u * 1000u * 1000u)

typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_I64,
    ST_U64,
    ST_F64,
} SafeDtype;

typedef struct {
    char *name;
    SafeDtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    uint64_t count;       // product of the shape (1 for a scalar)
    const uint8_t *data;  // count x the dtype's size, inside the file's bytes
} SafeTensor;

typedef struct {
    char *path;  // for messages
    int n;       // tensors, in the order of their data
    SafeTensor *tensors;
    int n_meta;  // "__metadata__" entries
    char **meta_keys, **meta_values;
    // The bytes: mapped (safetensors_open) or borrowed (safetensors_parse).
    const uint8_t *bytes;
    size_t size;
    bool mapped;
} SafeTensors;

// Maps and checks `path`; dies with a message on anything malformed.
void safetensors_open(const char *path, SafeTensors *st);
// Checks `size` bytes already in memory (kept, not copied: they must outlive
// st); `name` is used in messages. Dies on anything malformed.
void safetensors_parse(const uint8_t *bytes, size_t size, const char *name, SafeTensors *st);
void safetensors_close(SafeTensors *st);

// The tensor called `name`, or NULL.
const SafeTensor *safetensors_find(const SafeTensors *st, const char *name);
// The value of a "__metadata__" key, or NULL.
const char *safetensors_meta(const SafeTensors *st, const char *key);
const char *safetensors_dtype_name(SafeDtype dtype);
size_t safetensors_dtype_size(SafeDtype dtype);
// A tensor's values as fp32 (from F32, F16, BF16 or F64; F64 values outside
// fp32's range become +-inf). Dies naming the tensor for other dtypes.
void safetensors_read_f32(const SafeTensors *st, const SafeTensor *t, float *out);

// One tensor to write: fp32 values, row-major.
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const float *data;
} SafeTensorOut;

// Writes F32 tensors in the given order, with "__metadata__" (n_meta
// key/value strings; may be 0) first in the header; the header is padded with
// spaces to a multiple of 8 bytes. The same input gives the same bytes. Written
// atomically (util.h).
void safetensors_write(const char *path, const SafeTensorOut *tensors, int n, const char *const *meta_keys,
                       const char *const *meta_values, int n_meta);

#endif
