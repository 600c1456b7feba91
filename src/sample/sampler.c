// Sampling (sample/sampler.h): top-k / top-p / temperature over one
// position's logits, and the loop that runs many images through the
// key/value-cache decoder at once.
#include "sample/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static int by_probability_then_index(const void *a, const void *b) {
    const ColorProb *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->color - y->color;
}

static int most_likely(const float *logits, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int sample_from_logits(const float *logits, int V, const SamplerSettings *s, double u, ColorProb *scratch) {
    if (s->temperature <= 0.0) return most_likely(logits, V);
    double mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = fmax(mx, (double)logits[i]);
    for (int i = 0; i < V; i++) {
        scratch[i].p = exp(((double)logits[i] - mx) / s->temperature);
        scratch[i].color = i;
    }
    int kept = V;
    if ((s->top_k > 0 && s->top_k < V) || s->top_p < 1.0) {
        qsort(scratch, (size_t)V, sizeof *scratch, by_probability_then_index);
        if (s->top_k > 0 && s->top_k < V) kept = s->top_k;
        if (s->top_p < 1.0) {
            double total = 0.0, run = 0.0;
            for (int i = 0; i < kept; i++) total += scratch[i].p;
            int n = 0;
            while (n < kept) {  // the fewest colors whose mass reaches top_p of what top-k kept
                run += scratch[n++].p;
                if (run >= s->top_p * total) break;
            }
            kept = n;
        }
    }
    double total = 0.0;
    for (int i = 0; i < kept; i++) total += scratch[i].p;
    const double target = u * total;
    double run = 0.0;
    for (int i = 0; i < kept; i++) {
        run += scratch[i].p;
        if (target < run) return scratch[i].color;
    }
    return scratch[kept - 1].color;  // u * total rounded up to the total
}

// One batch of images [first, first + n): every position in order, given
// pixels fed back as they are, the others drawn from their image's stream.
static void sample_group(Backend *b, SampleBatch *job, int first, int n, const SamplerSettings *s, uint64_t seed,
                         ColorProb *scratch, Progress *progress, int64_t *done) {
    const int T = job->seq_len, V = b->cfg.vocab_size;
    uint16_t *prev = xcalloc((size_t)n, sizeof(uint16_t));
    Rng *rngs = xcalloc((size_t)n, sizeof(Rng));
    for (int i = 0; i < n; i++) rng_init(&rngs[i], seed, (uint64_t)(first + i));
    backend_decode_begin(b, n);
    for (int t = 0; t < T; t++) {
        const float *logits = backend_decode_step(b, prev);
        for (int i = 0; i < n; i++) {
            uint16_t *image = job->tokens + (size_t)(first + i) * T;
            if (t >= job->given[first + i]) {
                const double u = rng_uniform(&rngs[i]);
                image[t] = (uint16_t)sample_from_logits(logits + (size_t)i * V, V, s, u, scratch);
                (*done)++;
            }
            prev[i] = image[t];
        }
        progress_update(progress, (uint64_t)*done, NULL);
    }
    free(rngs);
    free(prev);
}

void sample_images(Backend *b, SampleBatch *job, const SamplerSettings *s, uint64_t seed, int batch, bool quiet,
                   SampleTiming *timing) {
    const int T = job->seq_len, V = b->cfg.vocab_size;
    if (T != b->cfg.seq_len) die("internal: sampling %d pixels with a model of %d", T, b->cfg.seq_len);
    int64_t to_draw = 0;
    for (int i = 0; i < job->count; i++) {
        if (job->given[i] < 0 || job->given[i] > T) die("internal: %d given pixels of %d", job->given[i], T);
        to_draw += T - job->given[i];
    }
    ColorProb *scratch = xmalloc((size_t)V * sizeof *scratch);
    Progress progress;
    if (quiet) progress_set_quiet(true);
    progress_start(&progress, "sampling pixels", (uint64_t)to_draw);
    int64_t done = 0;
    const double start = now_seconds();
    for (int first = 0; first < job->count; first += batch) {
        const int n = job->count - first < batch ? job->count - first : batch;
        sample_group(b, job, first, n, s, seed, scratch, &progress, &done);
    }
    timing->seconds = now_seconds() - start;
    timing->pixels_sampled = done;
    timing->positions = (int64_t)job->count * T;
    progress_finish(&progress, NULL);
    free(scratch);
}
