// Incremental decoding on the CPU: the model run one position at a time for
// a batch of sequences, with each layer's keys and values kept in a cache,
// so that pixel t costs O(t) attention work and one row of every matrix
// product instead of a whole forward pass over the image. Sampling
// (./igpt sample) and the compressor (./igpt compress) are built on it.
//
// Position t's input is pixel t-1 (the sos vector at t = 0) and its output
// is the distribution of pixel t, exactly as in the full forward pass
// (model.c); tests check that the logits agree.
//
// Bit-exact by construction: every value of a step is a function of the
// parameters and the tokens of its own sequence only, computed in a fixed
// order (decode_matmul's lanes, the attention's sums over positions in
// order), whatever the batch, the other sequences in it and the thread
// count. A compressor needs this: the decoder must see the very
// distributions the encoder saw, and it decodes with another batch and
// other threads than the encoder may have used. The full forward pass does
// not promise it (OpenBLAS's rounding may change with the shape).
//
// The CUDA backend has the same operations (cuda/decode.cu); the functions
// named *_forward below are the CPU twins its kernels are tested against.
#ifndef IGPT_MODEL_DECODE_H
#define IGPT_MODEL_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/params.h"

// out (B x OC) = inp (B x IC) @ W^T, each output a dot product over IC in a
// fixed order: 8 lanes (lane j sums the products k = j mod 8, in order), the
// lanes added pairwise ((0+1)+(2+3))+((4+5)+(6+7)), then the last IC mod 8
// products in order. The same bits for any B, row, thread count or alignment.
void decode_matmul(float *out, const float *inp, const float *W, int B, int IC, int OC, int threads);

// norm_forward's norm of N rows with its sums in sequence (rstd kept per row):
// the bits .igpz files are coded with.
void norm_decode_forward(NormKind kind, float *out, float *rstd, const float *inp, const float *gain, const float *bias,
                         int N, int C);
// x sigmoid(1.702 x) in place by libm's expf: the bits .igpz files are coded with.
void gelu_decode_forward(float *x, size_t n);
// Embedding of position t for B sequences: out[b] = sos + wpe[0] when t = 0,
// else wte[prev[b]] + wpe[t] (prev: each sequence's pixel t-1).
void encoder_decode_forward(float *out, const uint16_t *prev, const ParamPointers *p, int B, int t, int C);

// Attention of position t for B sequences. qkv: B x 3C (q | k | v of position
// t). Stores k and v at position t of the caches (B x T x C each, sequence b
// at b*T*C, head h at columns h*hs), then attends the query to positions
// 0..t: scores q.k_j / sqrt(hs), softmax by its maximum, y = sum_j p_j v_j,
// sums over j in order. atty: B x C. scratch: threads x T floats.
void attention_decode_forward(float *atty, const float *qkv, float *k_cache, float *v_cache, float *scratch, int B,
                              int t, int T, int C, int NH, int threads);

// A key/value cache for up to max_batch sequences and the buffers of one
// step; one allocation, pointers into it.
typedef struct {
    ModelConfig cfg;
    const ParamPointers *p;  // the model's parameters (not owned)
    int max_batch, threads;
    int batch;  // sequences of the current pass (decode_begin)
    int pos;    // positions done: the next step computes position pos
    float *memory;
    float *k_cache, *v_cache;  // L x max_batch x T x C each
    float *x;                  // B x C: the residual stream
    float *xn;                 // B x C: its norm
    float *qkv;                // B x 3C
    float *atty;               // B x C
    float *proj;               // B x C: an attention or MLP output before the residual add
    float *fc;                 // B x 4C
    float *rstd;               // B: the norm's per-row scale (kept by norm_forward; unused here)
    float *logits;             // B x V: the last step's output
    float *scratch;            // threads x T: attention scores
} DecodeState;

void decode_create(DecodeState *s, const ModelConfig *cfg, const ParamPointers *p, int max_batch, int threads);
void decode_free(DecodeState *s);
// Bytes decode_create allocates.
size_t decode_memory_bytes(const ModelConfig *cfg, int max_batch, int threads);
// Starts `batch` new sequences (1..max_batch) at position 0.
void decode_begin(DecodeState *s, int batch);
// Runs position s->pos for every sequence of the pass, whose pixel pos-1 is
// prev[b] (ignored at position 0), and advances. Returns the logits of
// pixel pos, batch x V (valid until the next step). Dies past the last position.
const float *decode_step(DecodeState *s, const uint16_t *prev);

#endif
