// An integer range coder (the carry-propagating kind of LZMA: a 32-bit range,
// a 64-bit low whose carry ripples into the bytes already produced, bytes
// out), and the frequency tables that turn the model's next-pixel logits into
// what it codes. A symbol of probability p costs about -log2 p bits, so a
// model that predicts pixels well writes them in few bytes: the compressor of
// ./igpt compress (compress/igpz.h).
//
// Everything here is integer arithmetic on tables that are themselves a
// deterministic function of the logits (softmax in double, libm's exp, fixed
// order), so an encoder and a decoder that see the same logits code the same
// bits, on any machine.
#ifndef IGPT_RANGE_CODER_H
#define IGPT_RANGE_CODER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Frequencies of a table sum to 2^16: fine enough that rounding costs well
// under 1% of the bits, coarse enough that range/total keeps 8 bits of
// precision after normalisation (the range is at least 2^24).
#define RC_TOTAL_BITS 16
#define RC_TOTAL (1u << RC_TOTAL_BITS)

// --- Frequency tables ------------------------------------------------------------------
// freq[s] for s < V and cum[s] = freq[0] + .. + freq[s-1] for s <= V (so cum
// has V + 1 entries, cum[V] = RC_TOTAL). Softmax of the logits in double;
// every symbol gets at least 1 (any pixel stays codable), the others
// round(p * 2^16); what the rounding leaves over or takes (the total must be
// 2^16 exactly) goes to the most probable symbol (the lowest index on ties),
// or, when that one is too small to absorb it, every symbol gets
// 1 + floor(p * (2^16 - V)) and the rest goes to it. 2 <= V <= IGPT_MAX_COLORS (4096).
// False (tables untouched) when a logit is not finite: the model is broken,
// and no table can stand for it.
bool freq_table_from_logits(const float *logits, int V, uint32_t *freq, uint32_t *cum);
// The same, and *bits = -log2 p(symbol) from the same softmax (exact, in
// double): what an ideal coder would spend on it, the yardstick of the
// coder's overhead (symbol -1: no bits).
bool freq_table_with_bits(const float *logits, int V, int symbol, uint32_t *freq, uint32_t *cum, double *bits);
// -log2 of symbol s's probability under the same softmax; NaN when a logit is not finite.
double symbol_bits(const float *logits, int V, int s);

// --- Encoder ---------------------------------------------------------------------------
typedef struct {
    uint64_t low;
    uint32_t range;
    uint8_t cache;        // the last byte not yet final: a carry may still add 1 to it
    uint64_t cache_size;  // it, and the 0xFF bytes after it that a carry would also turn over
    bool first;           // the very first byte shifted out is always 0: not written
    uint8_t *out;         // the bytes written (grows)
    size_t len, cap;
} RangeEncoder;

void rc_encoder_init(RangeEncoder *e);
// Codes the symbol whose slot is [cum, cum + freq) of RC_TOTAL.
void rc_encode(RangeEncoder *e, uint32_t cum, uint32_t freq);
// Codes value in [0, n) with every value equally likely (1 <= n <= 2^16): the labels.
void rc_encode_uniform(RangeEncoder *e, uint32_t value, uint32_t n);
// Writes the last bytes; e->out[0 .. e->len) is the whole stream (free it).
void rc_encoder_finish(RangeEncoder *e);
void rc_encoder_free(RangeEncoder *e);

// --- Decoder ---------------------------------------------------------------------------
// Reads a stream of `len` bytes. Past its end it reads zeros and counts them
// (overrun), so that a truncated or corrupted stream decodes to wrong
// symbols, never out of bounds: the caller's CRC of what was decoded tells.
typedef struct {
    uint32_t range, code;
    const uint8_t *in;
    size_t len, pos;
    size_t overrun;  // bytes asked for past the end
} RangeDecoder;

void rc_decoder_init(RangeDecoder *d, const uint8_t *in, size_t len);
// The symbol of a table (freq, cum over V symbols, as freq_table_from_logits makes).
int rc_decode(RangeDecoder *d, const uint32_t *freq, const uint32_t *cum, int V);
uint32_t rc_decode_uniform(RangeDecoder *d, uint32_t n);

#endif
