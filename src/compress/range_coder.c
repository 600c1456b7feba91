// The range coder and its frequency tables (compress/range_coder.h).
#include "compress/range_coder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/palette.h"
#include "util/util.h"

// --- Frequency tables ------------------------------------------------------------------

// Softmax in double, in a fixed order: exps[s] = exp(logit_s - max), returns
// their sum. False when a logit is not finite.
static bool softmax_terms(const float *logits, int V, double *exps, double *sum) {
    double max = -INFINITY;
    for (int s = 0; s < V; s++) {
        if (!isfinite(logits[s])) return false;
        if (logits[s] > max) max = logits[s];
    }
    double total = 0.0;
    for (int s = 0; s < V; s++) {
        exps[s] = exp((double)logits[s] - max);
        total += exps[s];
    }
    *sum = total;
    return true;
}

static int most_probable(const uint32_t *freq, int V) {
    int best = 0;
    for (int s = 1; s < V; s++)
        if (freq[s] > freq[best]) best = s;
    return best;
}

// The tables from the softmax terms (see the header for the rule).
static void tables_from_terms(const double *exps, double sum, int V, uint32_t *freq, uint32_t *cum) {
    int64_t total = 0;
    for (int s = 0; s < V; s++) {
        const long rounded = lround(exps[s] / sum * RC_TOTAL);
        freq[s] = rounded < 1 ? 1u : (uint32_t)rounded;
        total += freq[s];
    }
    int top = most_probable(freq, V);
    const int64_t left_over = (int64_t)RC_TOTAL - total;
    if ((int64_t)freq[top] + left_over >= 1) {
        freq[top] = (uint32_t)((int64_t)freq[top] + left_over);
    } else {
        // So many symbols were raised to 1 that the top one cannot pay for them:
        // reserve the 1s first; the floors leave a remainder in [0, V).
        total = 0;
        for (int s = 0; s < V; s++) {
            freq[s] = 1u + (uint32_t)floor(exps[s] / sum * (double)(RC_TOTAL - (uint32_t)V));
            total += freq[s];
        }
        top = most_probable(freq, V);
        freq[top] += (uint32_t)((int64_t)RC_TOTAL - total);
    }
    cum[0] = 0;
    for (int s = 0; s < V; s++) cum[s + 1] = cum[s] + freq[s];
}

bool freq_table_with_bits(const float *logits, int V, int symbol, uint32_t *freq, uint32_t *cum, double *bits) {
    if (V < 2 || V > IGPT_MAX_COLORS) die("internal: a frequency table of %d symbols (2..%d)", V, IGPT_MAX_COLORS);
    double exps[IGPT_MAX_COLORS], sum;
    if (!softmax_terms(logits, V, exps, &sum)) return false;
    tables_from_terms(exps, sum, V, freq, cum);
    if (bits) *bits = symbol >= 0 ? -log2(exps[symbol] / sum) : 0.0;
    return true;
}

bool freq_table_from_logits(const float *logits, int V, uint32_t *freq, uint32_t *cum) {
    return freq_table_with_bits(logits, V, -1, freq, cum, NULL);
}

double symbol_bits(const float *logits, int V, int s) {
    double exps[IGPT_MAX_COLORS], sum;
    if (V < 2 || V > IGPT_MAX_COLORS || !softmax_terms(logits, V, exps, &sum)) return NAN;
    return -log2(exps[s] / sum);
}

// --- Encoder ---------------------------------------------------------------------------

#define RC_TOP (1u << 24)  // the range is renormalised to at least this

void rc_encoder_init(RangeEncoder *e) {
    memset(e, 0, sizeof *e);
    e->range = 0xFFFFFFFFu;
    e->cache_size = 1;
    e->first = true;
}

static void put_byte(RangeEncoder *e, uint8_t byte) {
    if (e->first) {  // the interval starts inside [0, 2^32): nothing ever carries into this byte
        e->first = false;
        return;
    }
    if (e->len == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 256;
        e->out = xrealloc(e->out, e->cap);
    }
    e->out[e->len++] = byte;
}

// Moves the top byte of low out. A byte of 0xFF is held back (cache_size
// counts them) until it is known whether a carry turns it into 0x00.
static void shift_low(RangeEncoder *e) {
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32) != 0) {
        const uint8_t carry = (uint8_t)(e->low >> 32);
        uint8_t byte = e->cache;
        do {
            put_byte(e, (uint8_t)(byte + carry));
            byte = 0xFF;
        } while (--e->cache_size != 0);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->cache_size++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static void encoder_normalise(RangeEncoder *e) {
    while (e->range < RC_TOP) {
        e->range <<= 8;
        shift_low(e);
    }
}

void rc_encode(RangeEncoder *e, uint32_t cum, uint32_t freq) {
    const uint32_t r = e->range >> RC_TOTAL_BITS;
    e->low += (uint64_t)r * cum;
    e->range = r * freq;
    encoder_normalise(e);
}

void rc_encode_uniform(RangeEncoder *e, uint32_t value, uint32_t n) {
    const uint32_t r = e->range / n;
    e->low += (uint64_t)r * value;
    e->range = r;
    encoder_normalise(e);
}

void rc_encoder_finish(RangeEncoder *e) {
    for (int i = 0; i < 5; i++) shift_low(e);
}

void rc_encoder_free(RangeEncoder *e) {
    free(e->out);
    memset(e, 0, sizeof *e);
}

// --- Decoder ---------------------------------------------------------------------------

static uint8_t next_byte(RangeDecoder *d) {
    if (d->pos < d->len) return d->in[d->pos++];
    d->overrun++;
    return 0;
}

void rc_decoder_init(RangeDecoder *d, const uint8_t *in, size_t len) {
    memset(d, 0, sizeof *d);
    d->in = in;
    d->len = len;
    d->range = 0xFFFFFFFFu;
    for (int i = 0; i < 4; i++) d->code = d->code << 8 | next_byte(d);
}

static void decoder_normalise(RangeDecoder *d) {
    while (d->range < RC_TOP) {
        d->code = d->code << 8 | next_byte(d);
        d->range <<= 8;
    }
}

int rc_decode(RangeDecoder *d, const uint32_t *freq, const uint32_t *cum, int V) {
    const uint32_t r = d->range >> RC_TOTAL_BITS;
    uint32_t value = d->code / r;
    if (value >= RC_TOTAL) value = RC_TOTAL - 1;  // only in a corrupt stream
    int lo = 0, hi = V - 1;                       // the symbol with cum[s] <= value < cum[s + 1]
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (cum[mid] <= value) lo = mid;
        else hi = mid - 1;
    }
    d->code -= r * cum[lo];
    d->range = r * freq[lo];
    decoder_normalise(d);
    return lo;
}

uint32_t rc_decode_uniform(RangeDecoder *d, uint32_t n) {
    const uint32_t r = d->range / n;
    uint32_t value = d->code / r;
    if (value >= n) value = n - 1;
    d->code -= r * value;
    d->range = r;
    decoder_normalise(d);
    return value;
}
