// The compressed file of ./igpt compress (.igpz; byte layout in
// docs/formats.md): a header that names everything an encoder and a decoder
// must agree on, then the images in groups, each group one range-coded
// stream (compress/range_coder.h) with its length and two CRCs.
//
// The decoder must see bit for bit the distributions the encoder saw, or it
// decodes garbage. So the header records the model (its configuration and a
// CRC-32 of its fp32 parameters), the palette, the device and precision and,
// on a GPU, the GPU's name, and the group size G: the images of a group are
// decoded together (a GPU's bits may depend on the batch), their stream
// position-major (pixel t of every image of the group, then pixel t + 1), so
// a decoder runs the G images in parallel. Each group also carries a CRC of
// its bytes (a corrupted file is told apart before any model runs) and one of
// the tokens and labels it holds (a decoder that saw other distributions
// fails loudly, never silently).
#ifndef IGPT_IGPZ_H
#define IGPT_IGPZ_H

#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"
#include "model/backend.h"
#include "model/config.h"

#define IGPT_IGPZ_MAGIC "IGPTPIXZ"
#define IGPT_IGPZ_VERSION 1u
#define IGPT_IGPZ_FIXED_HEADER_BYTES 128
#define IGPT_IGPZ_GROUP_HEADER_BYTES 12
#define IGPT_IGPZ_MAX_GROUP 4096
#define IGPT_IGPZ_MAX_GPU_NAME 255

// What the header holds.
typedef struct {
    ModelConfig model;
    uint32_t params_crc;  // CRC-32 of the parameters as loaded (fp32 bytes)
    uint64_t step;        // the checkpoint's step (said in messages; not checked)
    DeviceKind device;
    GpuPrecision precision;                     // GPU_FP32 on the CPU
    char gpu_name[IGPT_IGPZ_MAX_GPU_NAME + 1];  // gpu_device_name() on a GPU, "" on the CPU
    int64_t count;                              // images
    int group;                                  // images per group (the last may have fewer)
    int num_classes;
    ClassName *class_names;
    Palette palette;  // read back: the colors, and exact_crc when they round exact centers
} IgpzHeader;

// One group of a file read back: where its stream lies in the file's bytes.
typedef struct {
    int64_t first, count;  // its images
    const uint8_t *payload;
    uint32_t payload_bytes, payload_crc, tokens_crc;
} IgpzGroup;

typedef struct {
    IgpzHeader header;
    uint8_t *bytes;  // the whole file
    size_t size;
    int64_t num_groups;
    IgpzGroup *groups;
} IgpzFile;

// The header's bytes (allocated; *size its length, the CRC included).
uint8_t *igpz_header_bytes(const IgpzHeader *h, size_t *size);
// A group's 12 bytes: payload length, payload CRC, tokens-and-labels CRC.
void igpz_group_header(uint8_t out[IGPT_IGPZ_GROUP_HEADER_BYTES], uint32_t payload_bytes, uint32_t payload_crc,
                       uint32_t tokens_crc);
// CRC-32 of a group's tokens (count x T uint16, little-endian bytes) and then its labels.
uint32_t igpz_tokens_crc(const uint16_t *tokens, const uint16_t *labels, int64_t count, int64_t T);
int64_t igpz_num_groups(int64_t count, int group);

// Reads and checks the whole container (magic, version, every size, the
// header CRC, each group's length and payload CRC, nothing missing, nothing
// left over); dies with a message naming the file otherwise.
void igpz_read(const char *path, IgpzFile *f);
void igpz_free(IgpzFile *f);
void igpz_header_free(IgpzHeader *h);
// "cpu", "cuda (bf16, NVIDIA H200, ...)": the device in messages.
void igpz_describe_device(const IgpzHeader *h, char *out, size_t cap);

#endif
