// The layer operations of the fp32 CPU reference (docs/model.md). Each CUDA
// kernel is tested against the operation of the same name here.
//
// Shapes: N rows (batch x positions), C features; matrices are [out, in],
// y = x W^T. Every parallel loop writes disjoint outputs and every sum over
// rows runs in one thread in a fixed order, so a run repeats bitwise with the
// same thread count. (With another thread count OpenBLAS's products may round
// differently, so runs then agree only to rounding.)
#include "model/cpu_ops.h"

#include <math.h>
#include <omp.h>

#include "util/blas.h"
#include "util/util.h"

int cpu_set_threads(int requested) {
    int threads = resolve_threads(requested);
    omp_set_num_threads(threads);
    blas_set_threads(threads);
    return threads;
}

// out (N x OC) = inp (N x IC) @ W^T
void matmul_forward(float *out, const float *inp, const float *W, int N, int IC, int OC) {
    gemm_f32(false, true, N, OC, IC, 1.0f, inp, IC, W, IC, 0.0f, out, OC);
}

// dinp = dout @ W (overwritten, if dinp); dW += dout^T @ inp.
void matmul_backward(float *dinp, float *dW, const float *dout, const float *inp, const float *W, int N, int IC,
                     int OC) {
    if (dinp) gemm_f32(false, false, N, IC, OC, 1.0f, dout, OC, W, IC, 0.0f, dinp, IC);
    gemm_f32(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dW, IC);
}

void encoder_forward(float *out, const uint16_t *tokens, const ParamPointers *p, int B, int T, int C, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *e = t == 0 ? p->sos : p->wte + (size_t)tokens[b * T + t - 1] * C;
            const float *pos = p->wpe + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = e[c] + pos[c];
        }
}

void encoder_backward(const ParamPointers *g, const float *dout, const uint16_t *tokens, int B, int T, int C,
                      int threads) {
    // Parallel over channel ranges: each thread owns a slice of every row of
    // dwte/dwpe/dsos and visits the tokens in order, so sums are deterministic.
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int c0 = C * id / nt, c1 = C * (id + 1) / nt;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const float *d = dout + ((size_t)b * T + t) * C;
                float *de = t == 0 ? g->sos : g->wte + (size_t)tokens[b * T + t - 1] * C;
                float *dp = g->wpe + (size_t)t * C;
                for (int c = c0; c < c1; c++) {
                    de[c] += d[c];
                    dp[c] += d[c];
                }
            }
    }
}

void norm_forward(NormKind kind, float *out, float *mean, float *rstd, const float *inp, const float *gain,
                  const float *bias, int N, int C, int threads) {
#pragma omp parallel for num_threads(threads)
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
        if (mean) mean[n] = mu;
        rstd[n] = r;
    }
}

// dinp += d(norm)/d(inp) dout; dgain, dbias += their gradients.
void norm_backward(NormKind kind, float *dinp, float *dgain, float *dbias, const float *dout, const float *inp,
                   const float *mean, const float *rstd, const float *gain, int N, int C, int threads) {
    const bool ln = kind == NORM_LAYERNORM;
#pragma omp parallel for num_threads(threads)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        const float mu = ln ? mean[n] : 0.0f, r = rstd[n];
        // xhat = (x - mu) r; dxhat = dy g; dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
        // where the mean(dxhat) term exists only for LayerNorm.
        float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
        for (int c = 0; c < C; c++) {
            float dxhat = dy[c] * gain[c];
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * (x[c] - mu) * r;
        }
        const float m1 = ln ? sum_dxhat / (float)C : 0.0f, m2 = sum_dxhat_xhat / (float)C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - mu) * r;
            dx[c] += r * (dy[c] * gain[c] - m1 - xhat * m2);
        }
    }
    // Gain and bias gradients: sums over rows, parallel over channels.
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int c0 = C * id / nt, c1 = C * (id + 1) / nt;
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            const float mu = ln ? mean[n] : 0.0f, r = rstd[n];
            for (int c = c0; c < c1; c++) {
                dgain[c] += dy[c] * (x[c] - mu) * r;
                if (dbias) dbias[c] += dy[c];
            }
        }
    }
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void gelu_forward(float *out, const float *inp, size_t n, int threads) {
#pragma omp parallel for simd num_threads(threads)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoidf(1.702f * inp[i]);
}

// dinp = dout * d/dx [x sigmoid(1.702 x)] (overwrites dinp; may alias dout)
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, int threads) {
#pragma omp parallel for simd num_threads(threads)
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(1.702f * inp[i]);
        dinp[i] = dout[i] * (s + 1.702f * inp[i] * s * (1.0f - s));
    }
}

void residual_forward(float *out, const float *a, const float *b, size_t n, int threads) {
#pragma omp parallel for num_threads(threads)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// ---------------------------------------------------------------------------
// Causal self-attention, flash-attention style on the CPU: queries in blocks
// of ATT_BLOCK rows; each block is multiplied only with the keys it can see
// (0..end of block), probabilities are never stored: the forward pass keeps
// each row's log-sum-exp and the backward pass recomputes them.

// Scores of query rows [t0, t1) against keys [0, t1), scaled, causal mask
// applied: S is (t1-t0) x t1 with leading dimension t1.
static void attention_scores(float *S, const float *q, const float *k, int t0, int t1, int hs, int ld, float scale) {
    gemm_f32(false, true, t1 - t0, t1, hs, scale, q + (size_t)t0 * ld, ld, k, ld, 0.0f, S, t1);
    for (int i = 0; i < t1 - t0; i++)
        for (int j = t0 + i + 1; j < t1; j++) S[(size_t)i * t1 + j] = -INFINITY;
}

void attention_forward(float *atty, float *lse, const float *qkv, float *scratch, int B, int T, int C, int NH,
                       int threads) {
    const int hs = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *S = scratch + (size_t)omp_get_thread_num() * 2 * ATT_BLOCK * T;
            const float *q = qkv + (size_t)b * T * ld + h * hs, *k = q + C, *v = q + 2 * C;
            float *y = atty + (size_t)b * T * C + h * hs;
            float *row_lse = lse + ((size_t)b * NH + h) * T;
            for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
                int t1 = t0 + ATT_BLOCK < T ? t0 + ATT_BLOCK : T;
                attention_scores(S, q, k, t0, t1, hs, ld, scale);
                for (int i = 0; i < t1 - t0; i++) {
                    float *s = S + (size_t)i * t1;
                    int visible = t0 + i + 1;
                    float mx = -INFINITY;
                    for (int j = 0; j < visible; j++) mx = s[j] > mx ? s[j] : mx;
                    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                    for (int j = 0; j < visible; j++) {
                        s[j] = expf(s[j] - mx);
                        sum += s[j];
                    }
                    float inv = 1.0f / sum;
                    for (int j = 0; j < visible; j++) s[j] *= inv;
                    for (int j = visible; j < t1; j++) s[j] = 0.0f;
                    row_lse[t0 + i] = mx + logf(sum);
                }
                gemm_f32(false, false, t1 - t0, hs, t1, 1.0f, S, t1, v, ld, 0.0f, y + (size_t)t0 * C, C);
            }
        }
}

// dqkv (overwritten) from datty; recomputes probabilities from lse.
void attention_backward(float *dqkv, const float *datty, const float *atty, const float *qkv, const float *lse,
                        float *scratch, int B, int T, int C, int NH, int threads) {
    const int hs = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *P = scratch + (size_t)omp_get_thread_num() * 2 * ATT_BLOCK * T;
            float *dP = P + (size_t)ATT_BLOCK * T;
            const float *q = qkv + (size_t)b * T * ld + h * hs, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + (size_t)b * T * ld + h * hs, *dk = dq + C, *dv = dq + 2 * C;
            const float *dy = datty + (size_t)b * T * C + h * hs, *y = atty + (size_t)b * T * C + h * hs;
            const float *row_lse = lse + ((size_t)b * NH + h) * T;
            for (int t = 0; t < T; t++)
                for (int e = 0; e < hs; e++) dk[(size_t)t * ld + e] = dv[(size_t)t * ld + e] = 0.0f;
            for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
                int t1 = t0 + ATT_BLOCK < T ? t0 + ATT_BLOCK : T, rows = t1 - t0;
                attention_scores(P, q, k, t0, t1, hs, ld, scale);
                for (int i = 0; i < rows; i++) {
                    float *p = P + (size_t)i * t1;
                    const float row = row_lse[t0 + i];
#pragma omp simd
                    for (int j = 0; j < t1; j++) p[j] = expf(p[j] - row);
                }
                // dP = dY V^T
                gemm_f32(false, true, rows, t1, hs, 1.0f, dy + (size_t)t0 * C, C, v, ld, 0.0f, dP, t1);
                // dS = P (dP - rowsum(dY * Y)), then scaled for q k^T
                for (int i = 0; i < rows; i++) {
                    float dot = 0.0f;
                    for (int e = 0; e < hs; e++) dot += dy[(size_t)(t0 + i) * C + e] * y[(size_t)(t0 + i) * C + e];
                    for (int j = 0; j < t1; j++) {
                        size_t idx = (size_t)i * t1 + j;
                        dP[idx] = P[idx] * (dP[idx] - dot) * scale;
                    }
                }
                // dV += P^T dY; dQ = dS K; dK += dS^T Q
                gemm_f32(true, false, t1, hs, rows, 1.0f, P, t1, dy + (size_t)t0 * C, C, 1.0f, dv, ld);
                gemm_f32(false, false, rows, hs, t1, 1.0f, dP, t1, k, ld, 0.0f, dq + (size_t)t0 * ld, ld);
                gemm_f32(true, false, t1, hs, rows, 1.0f, dP, t1, q + (size_t)t0 * ld, ld, 1.0f, dk, ld);
            }
        }
}

// Softmax + cross-entropy: losses[n] = lse(logits[n]) - logits[n][target];
// logits are replaced by the probabilities. Returns the mean loss.
double softmax_crossentropy_forward(float *logits, float *losses, const uint16_t *targets, int N, int V, int threads) {
#pragma omp parallel for num_threads(threads)
    for (int n = 0; n < N; n++) {
        float *z = logits + (size_t)n * V;
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = z[i] > mx ? z[i] : mx;
        const float target_logit = z[targets[n]];
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) {
            z[i] = expf(z[i] - mx);
            sum += z[i];
        }
        losses[n] = mx + logf(sum) - target_logit;
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int i = 0; i < V; i++) z[i] *= inv;
    }
    double total = 0.0;
    for (int n = 0; n < N; n++) total += losses[n];
    return total / N;
}

// dlogits = (probs - onehot(target)) * scale, in place.
void softmax_crossentropy_backward(float *probs, const uint16_t *targets, int N, int V, float scale, int threads) {
#pragma omp parallel for num_threads(threads)
    for (int n = 0; n < N; n++) {
        float *p = probs + (size_t)n * V;
        p[targets[n]] -= 1.0f;
        for (int i = 0; i < V; i++) p[i] *= scale;
    }
}
