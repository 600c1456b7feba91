// Sampling images from the model: unconditional samples and completions of
// images whose first rows are given, one pixel at a time through the
// backend's key/value-cache decoding (backend_decode_*), many images at once.
//
// Deterministic for a seed: image i draws its random numbers from its own
// stream (seed, i), so what it gets does not depend on the batch it shares
// or on its neighbours; on the CPU the model's distributions do not either
// (model/decode.h), so a sample repeats bit for bit with any --batch and
// thread count. On a GPU it repeats for the same batch.
#ifndef IGPT_SAMPLER_H
#define IGPT_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "model/backend.h"

typedef struct {
    double temperature;  // logits / temperature; 0: always the most likely color
    int top_k;           // keep the k most likely colors (0: all)
    double top_p;        // then the fewest most likely colors whose probability reaches p (1: all)
} SamplerSettings;

// Scratch for sample_from_logits: V entries.
typedef struct {
    double p;
    int color;
} ColorProb;

// The color drawn from `logits` (V) under the settings, by inverting the
// cumulative distribution at u in [0, 1): colors in index order, or, when
// top-k or top-p cut, most likely first (ties by index). Exact in double.
int sample_from_logits(const float *logits, int V, const SamplerSettings *s, double u, ColorProb *scratch);

typedef struct {
    int count;         // images
    int seq_len;       // pixels per image
    uint16_t *tokens;  // count x seq_len: the given pixels in, every pixel out
    const int *given;  // per image: its first given[i] pixels are kept (0: an unconditional sample)
} SampleBatch;

typedef struct {
    double seconds;
    int64_t pixels_sampled;  // pixels drawn (given pixels excluded)
    int64_t positions;       // positions decoded (given pixels included)
} SampleTiming;

// Fills every image of `job` past its given pixels, batch images at a time
// (at most what backend_decode_create was given), image i from the random
// stream (seed, i). Shows progress unless quiet.
void sample_images(Backend *b, SampleBatch *job, const SamplerSettings *s, uint64_t seed, int batch, bool quiet,
                   SampleTiming *timing);

#endif
