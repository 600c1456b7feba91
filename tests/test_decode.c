// Incremental decoding (model/decode.h): the key/value-cache path against the
// full forward pass, and its promise of the same bits whatever the batch,
// the sequences beside each one and the thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/decode.h"
#include "model/model.h"
#include "test.h"

TEST(test_decode_matmul_against_double) {
    Rng rng;
    rng_init(&rng, 3, 0);
    // IC 37: four groups of 8 and a tail of 5; OC 7: an odd last output; B 5: an odd last row.
    const int B = 5, IC = 37, OC = 7;
    float x[5 * 37], W[7 * 37], out[5 * 7];
    fill_uniform(x, sizeof x / 4, 1.0f, &rng);
    fill_uniform(W, sizeof W / 4, 1.0f, &rng);
    decode_matmul(out, x, W, B, IC, OC, 2);
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OC; o++) {
            double ref = 0;
            for (int k = 0; k < IC; k++) ref += (double)x[b * IC + k] * W[o * IC + k];
            worst = fmax(worst, fabs(ref - out[b * OC + o]));
        }
    // fp32 sums of 37 products of size <= 1: a few ulps of 37.
    CHECK(worst < 1e-5, "decode_matmul off by %.2e", worst);
    // Row 3 alone (a single-row call, the dot_fixed path) gives the same bits as inside the 2x2 tiles.
    float alone[7];
    decode_matmul(alone, x + 3 * IC, W, 1, IC, OC, 1);
    CHECK(!memcmp(alone, out + 3 * OC, sizeof alone), "a row alone differs from the same row in a batch");
}

// A model with random parameters (not the init, whose zero head would hide everything).
static void random_model(Model *m, const ModelConfig *cfg, int max_batch, uint64_t seed) {
    model_create(m, cfg, max_batch, 2);
    Rng rng;
    rng_init(&rng, seed, 0);
    fill_uniform(m->params, m->num_params, 0.4f, &rng);
    for (int l = 0; l < cfg->n_layer; l++)  // gains near 1 keep the activations of a usual size
        for (int c = 0; c < cfg->d_model; c++) {
            m->p.layers[l].ln1_g[c] += 1.0f;
            m->p.layers[l].ln2_g[c] += 1.0f;
        }
}

// Decodes `batch` sequences of `tokens` (batch x T) teacher-forced; returns all logits, batch x T x V.
static float *decode_all(const Model *m, const uint16_t *tokens, int batch, int threads) {
    const int T = m->cfg.seq_len, V = m->cfg.vocab_size;
    DecodeState s;
    decode_create(&s, &m->cfg, &m->p, batch, threads);
    decode_begin(&s, batch);
    float *all = xmalloc((size_t)batch * T * V * sizeof(float));
    uint16_t *prev = xcalloc((size_t)batch, sizeof(uint16_t));
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < batch; b++) prev[b] = t ? tokens[b * T + t - 1] : 0;
        const float *logits = decode_step(&s, prev);
        for (int b = 0; b < batch; b++)
            memcpy(all + ((size_t)b * T + t) * V, logits + (size_t)b * V, V * sizeof(float));
    }
    free(prev);
    decode_free(&s);
    return all;
}

TEST(test_decode_matches_full_forward) {
    for (int kind = 0; kind < 2; kind++) {
        // 9x8 image: T = 72 passes the attention's thread threshold and the full pass's 64-row blocks;
        // C 12, 3 heads of 4: no group of 8 lanes in a head, a tail in every product.
        ModelConfig cfg = {.vocab_size = 11,
                           .seq_len = 72,
                           .image_height = 9,
                           .image_width = 8,
                           .d_model = 12,
                           .n_layer = 2,
                           .n_head = 3,
                           .norm = (NormKind)kind};
        Model m;
        random_model(&m, &cfg, 3, 40 + kind);
        const int B = 3, T = 72, V = 11;
        uint16_t tokens[3 * 72];
        Rng rng;
        rng_init(&rng, 7, 0);
        for (int i = 0; i < B * T; i++) tokens[i] = (uint16_t)rng_below(&rng, V);
        model_forward(&m, tokens, B);  // leaves the softmax probabilities in act.logits
        float *logits = decode_all(&m, tokens, B, 2);
        double worst = 0;
        for (int n = 0; n < B * T; n++) {
            const float *z = logits + (size_t)n * V;
            double mx = -INFINITY, sum = 0;
            for (int i = 0; i < V; i++) mx = fmax(mx, z[i]);
            for (int i = 0; i < V; i++) sum += exp(z[i] - mx);
            for (int i = 0; i < V; i++) {
                double logp = z[i] - mx - log(sum), full = log(m.act.logits[(size_t)n * V + i]);
                worst = fmax(worst, fabs(logp - full));
            }
        }
        // The two paths sum in other orders (OpenBLAS vs fixed lanes): fp32 rounding, a few 1e-6 in log-probability.
        CHECK(worst < 1e-4, "%s: decode log-probabilities differ from the full pass by %.2e", norm_kind_name(cfg.norm),
              worst);
        free(logits);
        model_free(&m);
    }
}

TEST(test_decode_bits_do_not_depend_on_batch_or_threads) {
    ModelConfig cfg = {.vocab_size = 9,
                       .seq_len = 40,
                       .image_height = 5,
                       .image_width = 8,
                       .d_model = 16,
                       .n_layer = 2,
                       .n_head = 2,
                       .norm = NORM_IGPT};
    Model m;
    random_model(&m, &cfg, 1, 77);
    const int B = 5, T = 40, V = 9;
    uint16_t tokens[5 * 40];
    Rng rng;
    rng_init(&rng, 8, 0);
    for (int i = 0; i < B * T; i++) tokens[i] = (uint16_t)rng_below(&rng, V);
    float *together = decode_all(&m, tokens, B, 2);
    for (int b = 0; b < B; b++) {
        float *alone = decode_all(&m, tokens + b * T, 1, 1);
        CHECK(!memcmp(alone, together + (size_t)b * T * V, (size_t)T * V * sizeof(float)),
              "sequence %d decoded alone on 1 thread differs from it in a batch of %d on 2", b, B);
        free(alone);
    }
    // And the last three again as a batch of their own: another neighbourhood, the same bits.
    float *tail = decode_all(&m, tokens + 2 * T, 3, 2);
    CHECK(!memcmp(tail, together + (size_t)2 * T * V, (size_t)3 * T * V * sizeof(float)),
          "a batch of the last 3 sequences differs from the batch of 5");
    free(tail);
    free(together);
    model_free(&m);
}

// .igpz files are range-coded with the decoder's logits, so a file written by
// an earlier igpt decodes only while those bits stay the same: this pins them
// (the CRC of every logit of a small model, both norms, taken before issue 17
// gave the training pass a vectorised GELU and decoding kept libm's). A change
// that moves them must come with a new .igpz format version.
TEST(test_decode_bits_are_pinned_for_igpz_files) {
    const uint32_t want[2] = {0xa9bbccda, 0xfec1699c};
    for (int kind = 0; kind < 2; kind++) {
        ModelConfig cfg = {.vocab_size = 13,
                           .seq_len = 30,
                           .image_height = 5,
                           .image_width = 6,
                           .d_model = 24,
                           .n_layer = 2,
                           .n_head = 3,
                           .norm = (NormKind)kind};
        Model m;
        random_model(&m, &cfg, 2, 91 + kind);
        uint16_t tokens[2 * 30];
        Rng rng;
        rng_init(&rng, 5, 0);
        for (int i = 0; i < 2 * 30; i++) tokens[i] = (uint16_t)rng_below(&rng, cfg.vocab_size);
        float *logits = decode_all(&m, tokens, 2, 2);
        const uint32_t got = crc32_update(0, logits, (size_t)2 * 30 * 13 * sizeof(float));
        CHECK(got == want[kind],
              "%s: decode's logits have CRC %08x, not the pinned %08x: .igpz files written before "
              "would no longer decode",
              norm_kind_name(cfg.norm), got, want[kind]);
        free(logits);
        model_free(&m);
    }
}
