// The layer operations of the fp32 CPU reference: the model (src/model/model.c)
// is built from them, and every CUDA kernel is tested against the operation
// of the same name. Shapes in comments: N rows (batch x positions), C
// features; matrices are [out, in] so that y = x W^T.
#ifndef IGPT_CPU_OPS_H
#define IGPT_CPU_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/params.h"

// Query rows per attention tile (a multiple of 16: the tile's queries are the
// lanes of 16-float vectors).
#define ATT_BLOCK 64

// Worker threads for OpenMP and OpenBLAS: --threads if > 0, else all cores.
// Returns the count.
int cpu_set_threads(int requested);

// out (N x OC) = inp (N x IC) @ W^T; with add, out += it (a residual
// connection without a sweep of its own).
void matmul_forward(float *out, const float *inp, const float *W, int N, int IC, int OC, bool add);
// dinp = dout @ W (overwritten); dW += dout^T @ inp; either skipped when NULL
void matmul_backward(float *dinp, float *dW, const float *dout, const float *inp, const float *W, int N, int IC,
                     int OC);
// bf16 operands (util/gemm_bf16.h): the forward takes its input rounded
// (inp_bf16, N x IC: the producer's rounded copy), the backward the same
// rounded input and rounds dout into dout_bf16 (N x OC), or with dout NULL
// finds it there rounded already; W rounded by the caller; fp32 sums and
// results.
void matmul_forward_bf16(float *out, const uint16_t *inp_bf16, const uint16_t *W, int N, int IC, int OC, bool add);
void matmul_backward_bf16(float *dinp, float *dW, const float *dout, const uint16_t *inp_bf16, const uint16_t *W,
                          uint16_t *dout_bf16, int N, int IC, int OC, int threads);
// out_bf16 = bf16(inp W^T), each sum rounded as round_to_bf16 rounds it, the
// fp32 out never written; IC at most GEMM_BF16_BLOCK_K (util/gemm.h).
void matmul_forward_bf16_rounded(uint16_t *out_bf16, const uint16_t *inp_bf16, const uint16_t *W, int N, int IC,
                                 int OC);
// out[b, 0] = sos + wpe[0]; out[b, t] = wte[tokens[b, t-1]] + wpe[t]
void encoder_forward(float *out, const uint16_t *tokens, const ParamPointers *p, int B, int T, int C, int threads);
// Adds into g->wte, g->wpe, g->sos.
void encoder_backward(const ParamPointers *g, const float *dout, const uint16_t *tokens, int B, int T, int C,
                      int threads);
// iGPT norm or LayerNorm over C; mean (LayerNorm only, may be NULL) and rstd per row are kept for backward.
void norm_forward(NormKind kind, float *out, float *mean, float *rstd, const float *inp, const float *gain,
                  const float *bias, int N, int C, int threads);
// The same, and out's values rounded to bf16 into out_bf16 when not NULL (the bf16 model's product inputs), and
// inp copied into inp_copy when not NULL (the residual stream's copy that the next product adds to: the rows are
// read once for both).
void norm_forward_rounded(NormKind kind, float *out, uint16_t *out_bf16, float *mean, float *rstd, const float *inp,
                          float *inp_copy, const float *gain, const float *bias, int N, int C, int threads);
// dinp += d/d(inp); dgain (and dbias when not NULL) += their gradients.
void norm_backward(NormKind kind, float *dinp, float *dgain, float *dbias, const float *dout, const float *inp,
                   const float *mean, const float *rstd, const float *gain, int N, int C, int threads);
// The same, and dinp's new values rounded to bf16 into dinp_bf16 when not NULL (the next product's dout in the bf16
// model's backward pass).
void norm_backward_rounded(NormKind kind, float *dinp, uint16_t *dinp_bf16, float *dgain, float *dbias,
                           const float *dout, const float *inp, const float *mean, const float *rstd, const float *gain,
                           int N, int C, int threads);
// x sigmoid(1.702 x), vectorised: within a few ulp of libm's expf (decoding
// uses gelu_decode_forward, model/decode.h, whose bits never change).
void gelu_forward(float *out, const float *inp, size_t n, int threads);
// The same values rounded to bf16 (bf16_from_float), and no fp32 copy; the
// input fp32 (inp), or bf16 (inp_bf16 not NULL: the bf16 model's fc).
void gelu_forward_bf16(uint16_t *out, const float *inp, const uint16_t *inp_bf16, size_t n, int threads);
// dinp = dout * gelu'(inp); dinp may alias dout.
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, int threads);
// The same gradient rounded to bf16 (bf16_from_float), and no fp32 copy; the
// input as gelu_forward_bf16's.
void gelu_backward_bf16(uint16_t *dinp, const float *inp, const uint16_t *inp_bf16, const float *dout, size_t n,
                        int threads);
// Both in one sweep over inp (the same bits as the two calls).
void gelu_forward_backward(float *out, float *dinp, const float *inp, const float *dout, size_t n, int threads);
void residual_forward(float *out, const float *a, const float *b, size_t n, int threads);
// Causal multi-head attention over qkv (B x T x 3C: q | k | v, head h at
// columns h*hs..); writes atty (B x T x C) and the log-sum-exp of every
// attention row, lse (B x NH x T). scratch: attention_scratch_floats(T, C,
// NH, threads) floats. The results do not depend on the thread count.
// e^x in place as the fp32 attention computes it, for x <= 0 and -inf: within
// 2 ulp of expf above ln(FLT_MIN), within FLT_MIN of it below. coarse_base2:
// 2^x instead, as the bf16 attention computes it: within 2.8e-6 relative
// above FLT_MIN (x = -126), within FLT_MIN below, 0 below -150.
void exp_nonpositive(float *x, size_t n, bool coarse_base2);
size_t attention_scratch_floats(int T, int C, int NH, int threads);
void attention_forward(float *atty, float *lse, const float *qkv, float *scratch, int B, int T, int C, int NH,
                       int threads);
// dqkv (overwritten) from datty, recomputing the probabilities from lse;
// scratch as for attention_forward.
void attention_backward(float *dqkv, const float *datty, const float *atty, const float *qkv, const float *lse,
                        float *scratch, int B, int T, int C, int NH, int threads);
// The same with bf16 products (--precision bf16): S = (q k^T) scale, P V
// and, in the backward pass, dP = dy v^T, dq, dk and dv from bf16 operands
// (q, k and v from qkv_bf16, B x T x 3C, as the bf16 model keeps them; qkv is
// not read and may be NULL; the probabilities and dS rounded as they are
// made) with fp32 sums, the scale applied to the fp32 scores, as the GPU's
// flash attention has them; the softmax stays fp32. Only where
// attention_bf16_fits; qkv_bf16 NULL: the fp32 attention above. With bf16
// products the attention's output y may be kept only rounded: atty_bf16 not
// NULL, the forward pass writes it there (bf16_from_float's bits; atty unused
// and may be NULL), and the backward pass reads it there; and dqkv_bf16 not
// NULL, the backward pass writes dq, dk and dv only rounded there (dqkv
// unused, may be NULL), as the bf16 model's products take them.
void attention_forward_bf16(float *atty, uint16_t *atty_bf16, float *lse, const float *qkv, const uint16_t *qkv_bf16,
                            float *scratch, int B, int T, int C, int NH, int threads);
void attention_backward_bf16(float *dqkv, uint16_t *dqkv_bf16, const float *datty, const float *atty,
                             const uint16_t *atty_bf16, const float *qkv, const uint16_t *qkv_bf16, const float *lse,
                             float *scratch, int B, int T, int C, int NH, int threads);
// True when this CPU has AVX512-BF16 and the head size (C / NH) is even.
bool attention_bf16_fits(int C, int NH);
// losses[n] = -log softmax(logits[n])[target[n]]; logits become the
// probabilities. Returns the mean loss.
double softmax_crossentropy_forward(float *logits, float *losses, const uint16_t *targets, int N, int V, int threads);
// probs become d(scale * sum of losses)/d(logits).
void softmax_crossentropy_backward(float *probs, const uint16_t *targets, int N, int V, float scale, int threads);
// The same gradient rounded to bf16 (bf16_from_float) into dlogits; probs stay.
void softmax_crossentropy_backward_bf16(uint16_t *dlogits, const float *probs, const uint16_t *targets, int N, int V,
                                        float scale, int threads);

#endif
