// Incremental decoding on the CPU (model/decode.h): one position at a time,
// keys and values cached, every value computed in a fixed order.
#include "model/decode.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu_ops.h"
#include "util/util.h"

// No a * b + c fused into one FMA anywhere here: GCC does not fuse in ISO C
// (-std=c11), clang does unless told, and the bits must be the same whoever
// compiled them (.igpz files).
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

// ---------------------------------------------------------------------------
// Fixed-order dot products

// Eight floats; GCC lowers the arithmetic to whatever vectors the CPU has
// (one AVX register, two SSE ones). Without contraction (ISO C, see the
// Makefile's -std=c11) each lane is an IEEE multiply then add, as in scalar code.
typedef float Lanes __attribute__((vector_size(32)));

static inline Lanes load_lanes(const float *p) {
    Lanes v;
    memcpy(&v, p, sizeof v);  // unaligned load
    return v;
}

static inline float sum_lanes(Lanes a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

// The order decode.h documents, for one pair of vectors.
static float dot_fixed(const float *x, const float *w, int n) {
    const int n8 = n & ~7;
    Lanes acc = {0};
    for (int k = 0; k < n8; k += 8) acc += load_lanes(x + k) * load_lanes(w + k);
    float s = sum_lanes(acc);
    for (int k = n8; k < n; k++) s += x[k] * w[k];
    return s;
}

// Two rows against two weight rows at once (each weight load serves two
// rows and each input load two outputs), every element in dot_fixed's order.
static void dot_fixed_2x2(const float *x0, const float *x1, const float *w0, const float *w1, int n, float *o00,
                          float *o01, float *o10, float *o11) {
    const int n8 = n & ~7;
    Lanes a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0};
    for (int k = 0; k < n8; k += 8) {
        const Lanes u0 = load_lanes(x0 + k), u1 = load_lanes(x1 + k), v0 = load_lanes(w0 + k), v1 = load_lanes(w1 + k);
        a00 += u0 * v0;
        a01 += u0 * v1;
        a10 += u1 * v0;
        a11 += u1 * v1;
    }
    float s00 = sum_lanes(a00), s01 = sum_lanes(a01), s10 = sum_lanes(a10), s11 = sum_lanes(a11);
    for (int k = n8; k < n; k++) {
        s00 += x0[k] * w0[k];
        s01 += x0[k] * w1[k];
        s10 += x1[k] * w0[k];
        s11 += x1[k] * w1[k];
    }
    *o00 = s00;
    *o01 = s01;
    *o10 = s10;
    *o11 = s11;
}

void decode_matmul(float *out, const float *inp, const float *W, int B, int IC, int OC, int threads) {
    // Threads split the outputs in pairs; each thread runs over every row.
    const int pairs = (OC + 1) / 2;
    const bool worth_threads = (double)B * IC * OC > 2e5;
#pragma omp parallel for schedule(static) num_threads(threads) if (worth_threads)
    for (int pair = 0; pair < pairs; pair++) {
        const int o = 2 * pair;
        const float *w0 = W + (size_t)o * IC;
        if (o + 1 == OC) {  // an odd last output
            for (int b = 0; b < B; b++) out[(size_t)b * OC + o] = dot_fixed(inp + (size_t)b * IC, w0, IC);
            continue;
        }
        const float *w1 = w0 + IC;
        int b = 0;
        for (; b + 2 <= B; b += 2) {
            float *r0 = out + (size_t)b * OC + o, *r1 = r0 + OC;
            dot_fixed_2x2(inp + (size_t)b * IC, inp + (size_t)(b + 1) * IC, w0, w1, IC, &r0[0], &r0[1], &r1[0], &r1[1]);
        }
        if (b < B) {
            const float *x = inp + (size_t)b * IC;
            out[(size_t)b * OC + o] = dot_fixed(x, w0, IC);
            out[(size_t)b * OC + o + 1] = dot_fixed(x, w1, IC);
        }
    }
}

// ---------------------------------------------------------------------------
// The twins of the decode kernels

// The norm of norm_forward with its sums in sequence, one row after another:
// norm_forward (vectorised) may differ from it in the last bits; this one may
// not change, since .igpz files are coded with its bits.
void norm_decode_forward(NormKind kind, float *out, float *rstd, const float *inp, const float *gain, const float *bias,
                         int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        float mu = 0.0f;
        if (kind == NORM_LAYERNORM) {
            for (int c = 0; c < C; c++) mu += x[c];
            mu /= (float)C;
        }
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += (x[c] - mu) * (x[c] - mu);
        float r = 1.0f / sqrtf(ss / (float)C + IGPT_NORM_EPS);
        for (int c = 0; c < C; c++) y[c] = (x[c] - mu) * r * gain[c] + (bias ? bias[c] : 0.0f);
        rstd[n] = r;
    }
}

// x sigmoid(1.702 x) by libm's expf, one float at a time, in place. The
// training pass's gelu_forward (vectorised) may differ from it in the last
// bits; this one may not change, since .igpz files are coded with its bits.
void gelu_decode_forward(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] * (1.0f / (1.0f + expf(-(1.702f * x[i]))));
}

void encoder_decode_forward(float *out, const uint16_t *prev, const ParamPointers *p, int B, int t, int C) {
    const float *pos = p->wpe + (size_t)t * C;
    for (int b = 0; b < B; b++) {
        const float *e = t == 0 ? p->sos : p->wte + (size_t)prev[b] * C;
        float *o = out + (size_t)b * C;
        for (int c = 0; c < C; c++) o[c] = e[c] + pos[c];
    }
}

// y[0 .. 8*groups) = inv * sum_j p[j] rows_j[0 .. 8*groups), rows_j at rows + j*stride: every
// element summed over j in order; `groups` (1..4) vectors of 8 accumulated side by side.
static void weighted_sum_of_rows(float *y, const float *p, const float *rows, int n, int stride, float inv,
                                 int groups) {
    Lanes acc[4] = {{0}, {0}, {0}, {0}};
    for (int j = 0; j < n; j++) {
        const float *row = rows + (size_t)j * stride;
        for (int g = 0; g < groups; g++) acc[g] += p[j] * load_lanes(row + 8 * g);
    }
    for (int g = 0; g < groups; g++) {
        acc[g] *= inv;
        memcpy(y + 8 * g, &acc[g], sizeof acc[g]);
    }
}

void attention_decode_forward(float *atty, const float *qkv, float *k_cache, float *v_cache, float *scratch, int B,
                              int t, int T, int C, int NH, int threads) {
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        const float *row = qkv + (size_t)b * 3 * C;
        memcpy(k_cache + ((size_t)b * T + t) * C, row + C, (size_t)C * sizeof(float));
        memcpy(v_cache + ((size_t)b * T + t) * C, row + 2 * C, (size_t)C * sizeof(float));
    }
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads) if (B * NH > 1 && t >= 32)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *s = scratch + (size_t)omp_get_thread_num() * T;
            const float *q = qkv + (size_t)b * 3 * C + h * hs;
            const float *keys = k_cache + (size_t)b * T * C + h * hs, *values = v_cache + (size_t)b * T * C + h * hs;
            float mx = -INFINITY;
            for (int j = 0; j <= t; j++) {
                s[j] = dot_fixed(q, keys + (size_t)j * C, hs) * scale;
                mx = s[j] > mx ? s[j] : mx;
            }
            float sum = 0.0f;
            for (int j = 0; j <= t; j++) {
                s[j] = expf(s[j] - mx);
                sum += s[j];
            }
            // y = sum_j p_j v_j, each element summed over j in order, 8 elements to a register and
            // up to 4 registers side by side: 4 independent chains of additions instead of one.
            float *y = atty + (size_t)b * C + h * hs;
            const float inv = 1.0f / sum;
            int e0 = 0;
            while (e0 + 8 <= hs) {
                const int groups = (hs - e0) / 8 < 4 ? (hs - e0) / 8 : 4;
                weighted_sum_of_rows(y + e0, s, values + e0, t + 1, C, inv, groups);
                e0 += 8 * groups;
            }
            for (; e0 < hs; e0++) {
                float acc = 0.0f;
                for (int j = 0; j <= t; j++) acc += s[j] * values[(size_t)j * C + e0];
                y[e0] = acc * inv;
            }
        }
}

// ---------------------------------------------------------------------------
// The decoder

// The buffer's parts in order: returns the total in floats and, when base is
// not NULL, points s's fields into it.
static size_t layout_decode(DecodeState *s, float *base, const ModelConfig *cfg, int max_batch, int threads) {
    const size_t B = (size_t)max_batch, T = (size_t)cfg->seq_len, C = (size_t)cfg->d_model, L = (size_t)cfg->n_layer,
                 V = (size_t)cfg->vocab_size;
    struct {
        float **ptr;
        size_t count;
    } parts[] = {
        {&s->k_cache, L * B * T * C},
        {&s->v_cache, L * B * T * C},
        {&s->x, B * C},
        {&s->xn, B * C},
        {&s->qkv, B * 3 * C},
        {&s->atty, B * C},
        {&s->proj, B * C},
        {&s->fc, B * 4 * C},
        {&s->rstd, B},
        {&s->logits, B * V},
        {&s->scratch, (size_t)threads * T},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (base) *parts[i].ptr = base + total;
        total += parts[i].count;
    }
    return total;
}

size_t decode_memory_bytes(const ModelConfig *cfg, int max_batch, int threads) {
    DecodeState unused;
    return layout_decode(&unused, NULL, cfg, max_batch, threads) * sizeof(float);
}

void decode_create(DecodeState *s, const ModelConfig *cfg, const ParamPointers *p, int max_batch, int threads) {
    model_config_validate(cfg);
    if (max_batch < 1) die("internal: decode batch %d", max_batch);
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->p = p;
    s->max_batch = max_batch;
    s->threads = threads < 1 ? 1 : threads;
    s->memory = xcalloc(layout_decode(s, NULL, cfg, max_batch, s->threads), sizeof(float));
    layout_decode(s, s->memory, cfg, max_batch, s->threads);
}

void decode_free(DecodeState *s) {
    free(s->memory);
    memset(s, 0, sizeof *s);
}

void decode_begin(DecodeState *s, int batch) {
    if (batch < 1 || batch > s->max_batch) die("internal: decode batch %d outside 1..%d", batch, s->max_batch);
    s->batch = batch;
    s->pos = 0;
}

const float *decode_step(DecodeState *s, const uint16_t *prev) {
    const ModelConfig *cfg = &s->cfg;
    const int B = s->batch, T = cfg->seq_len, C = cfg->d_model, V = cfg->vocab_size, th = s->threads, t = s->pos;
    if (B < 1 || t >= T) die("internal: decode step at position %d of %d (batch %d)", t, T, B);
    if (t > 0)
        for (int b = 0; b < B; b++)
            if (prev[b] >= V) die("token %u is outside the %d-color palette", prev[b], V);
    const size_t cache_stride = (size_t)s->max_batch * T * C;  // per layer
    const size_t BC = (size_t)B * C;
    encoder_decode_forward(s->x, prev, s->p, B, t, C);
    for (int l = 0; l < cfg->n_layer; l++) {
        const LayerParams *lp = &s->p->layers[l];
        norm_decode_forward(cfg->norm, s->xn, s->rstd, s->x, lp->ln1_g, lp->ln1_b, B, C);
        decode_matmul(s->qkv, s->xn, lp->w_qkv, B, C, 3 * C, th);
        attention_decode_forward(s->atty, s->qkv, s->k_cache + l * cache_stride, s->v_cache + l * cache_stride,
                                 s->scratch, B, t, T, C, cfg->n_head, th);
        decode_matmul(s->proj, s->atty, lp->w_attn_proj, B, C, C, th);
        residual_forward(s->x, s->x, s->proj, BC, 1);
        norm_decode_forward(cfg->norm, s->xn, s->rstd, s->x, lp->ln2_g, lp->ln2_b, B, C);
        decode_matmul(s->fc, s->xn, lp->w_fc, B, C, 4 * C, th);
        gelu_decode_forward(s->fc, BC * 4);
        decode_matmul(s->proj, s->fc, lp->w_fc_proj, B, 4 * C, C, th);
        residual_forward(s->x, s->x, s->proj, BC, 1);
    }
    norm_decode_forward(cfg->norm, s->xn, s->rstd, s->x, s->p->lnf_g, s->p->lnf_b, B, C);
    decode_matmul(s->logits, s->xn, s->p->w_head, B, C, V, th);
    s->pos++;
    return s->logits;
}
