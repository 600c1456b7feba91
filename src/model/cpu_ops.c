// The layer operations of the fp32 CPU reference (docs/model.md). Each CUDA
// kernel is tested against the operation of the same name here.
//
// Shapes: N rows (batch x positions), C features; matrices are [out, in],
// y = x W^T. Every parallel loop writes disjoint outputs and every sum over
// rows runs in one thread in a fixed order, so a run repeats bitwise with the
// same thread count, and, where the build targets AVX-512 (our own products,
// util/gemm_avx512.h), with any. (Elsewhere OpenBLAS's products may round
// differently with another thread count, so runs then agree only to
// rounding.)
#include "model/cpu_ops.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/bf16_simd.h"
#include "util/blas.h"
#include "util/gemm_bf16.h"
#include "util/util.h"
#include "util/vec16.h"

int cpu_set_threads(int requested) {
    int threads = resolve_threads(requested);
    omp_set_num_threads(threads);
    blas_set_threads(threads);
    return threads;
}

// out (N x OC) = inp (N x IC) @ W^T, or out += it
void matmul_forward(float *out, const float *inp, const float *W, int N, int IC, int OC, bool add) {
    gemm_f32(false, true, N, OC, IC, 1.0f, inp, IC, W, IC, add ? 1.0f : 0.0f, out, OC);
}

// dinp = dout @ W (overwritten, if dinp); dW += dout^T @ inp (if dW); both
// in one parallel region.
void matmul_backward(float *dinp, float *dW, const float *dout, const float *inp, const float *W, int N, int IC,
                     int OC) {
    Gemm products[2];
    int count = 0;
    if (dinp) products[count++] = (Gemm){false, false, N, IC, OC, 1.0f, dout, OC, W, IC, 0.0f, dinp, IC};
    if (dW) products[count++] = (Gemm){true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dW, IC};
    gemm_f32_all(products, count);
}

// The same products with bf16 operands (--precision bf16): inp comes rounded
// (inp_bf16, N x IC, written by its producer), as does W; the backward pass
// rounds dout into dout_bf16 (N x OC), or finds it there when dout is NULL.
// Sums and results fp32.
void matmul_forward_bf16(float *out, const uint16_t *inp_bf16, const uint16_t *W, int N, int IC, int OC, bool add) {
    gemm_bf16(false, true, N, OC, IC, inp_bf16, IC, W, IC, add ? 1.0f : 0.0f, out, OC);
}

void matmul_forward_bf16_rounded(uint16_t *out_bf16, const uint16_t *inp_bf16, const uint16_t *W, int N, int IC,
                                 int OC) {
    const GemmBf16 g = {false, true, N, OC, IC, inp_bf16, IC, W, IC, 0.0f, NULL, OC, out_bf16};
    gemm_bf16_all(&g, 1);
}

void matmul_backward_bf16(float *dinp, float *dW, const float *dout, const uint16_t *inp_bf16, const uint16_t *W,
                          uint16_t *dout_bf16, int N, int IC, int OC, int threads) {
    if (dout) round_to_bf16(dout_bf16, dout, (size_t)N * OC, threads);
    GemmBf16 products[2];
    int count = 0;
    if (dinp) products[count++] = (GemmBf16){false, false, N, IC, OC, dout_bf16, OC, W, IC, 0.0f, dinp, IC};
    products[count++] = (GemmBf16){true, false, OC, IC, N, dout_bf16, OC, inp_bf16, IC, 1.0f, dW, IC};
    gemm_bf16_all(products, count);
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

// ---------------------------------------------------------------------------
// Vectors and e^x, for the element-wise passes and the attention.

// ISO C (-std=c11) forbids GCC to fuse a * b + c into one FMA; the polynomials
// and products below are made of them, so this section allows it (and ends
// after the attention).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif

// Macros, not functions: a function passing v16 by value draws GCC's ABI
// warning (-Wpsabi) on CPUs without AVX-512.
#define SPLAT(x) ((v16){0} + (x))
// Lane-wise select: where mask is set a, else b.
#define SELECT16(mask, a, b) ((v16)(((mask) & (v16i)(a)) | (~(mask) & (v16i)(b))))

// Keeps a loaded vector in a register. The attention's kernels use each vector
// they load several times (a row of the tile against 4 keys); left alone, gcc
// folds every use into an FMA's memory operand, and the loop then waits on
// loads (two 64-byte loads a cycle) instead of on the FMAs (the scores kernel
// 20% slower). The empty asm says it may change the value in a register, so
// the value must be in one; it emits no instruction. HOLD_IN_ZMM where the
// code is built for AVX-512 whatever the file's target (the bf16 kernels).
#if defined(__GNUC__) && defined(__x86_64__)
#define HOLD_IN_ZMM(x) __asm__("" : "+v"(x))
#else
#define HOLD_IN_ZMM(x) ((void)0)
#endif
#ifdef __AVX512F__
#define HOLD_IN_REGISTER(x) HOLD_IN_ZMM(x)
#else
#define HOLD_IN_REGISTER(x) ((void)0)
#endif

// e^x lane by lane for x <= 0 (scores minus their row's max or log-sum-exp),
// within 2 ulp of expf down to ln(FLT_MIN) ~ -87.34; below that (-inf of masked
// scores included) within FLT_MIN of it (0 from about -103.3 on). NaN stays
// NaN. As Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, e^r by a polynomial,
// times 2^n; the polynomial of degree 6, fitted for relative error on that
// interval (0.15 ulp with its fp32 coefficients), where Cephes' Taylor-like
// one needs degree 7: a loop of exps (the attention's) runs on the FMA units
// the products need. It is summed in Estrin's order (pairs of terms, then
// pairs of pairs by r^2), not Horner's: its chain of dependent operations is
// shorter, and a loop of exps waits on that chain, not on the FMA units.
#define LOG2_E 1.44269504f  // log2(e): exp16 scales by it, and the bf16 softmax's exponents (exp2_coarse16)
static inline void exp16(v16 *xp) {
    // ln2 in two parts: n * 0.693359375 is exact for the n here, so r keeps its low bits.
#define EXP16_POLYNOMIAL(r)                                                              \
    const v16 r2 = (r) * (r);                                                            \
    const v16 c23 = 4.9999994040e-01f + (r)*1.6666431725e-01f;                           \
    const v16 c456 = 4.1668001562e-02f + (r)*8.3741554990e-03f + r2 * 1.3843653724e-03f; \
    const v16 p = (1.0f + (r)) + r2 * (c23 + r2 * c456);
#ifdef __AVX512F__
    // vscalefps multiplies by 2^n with the under- and overflow handled, so the
    // clamp only keeps n finite: below -110, p 2^n rounds to 0. max takes its
    // second operand when one is NaN: NaN passes through.
    const __m512 x = _mm512_max_ps(_mm512_set1_ps(-110.0f), (__m512)*xp);
    const v16 n = (v16)_mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2_E)),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const v16 r = (v16)x - n * 0.693359375f - n * -2.12194440e-4f;
    EXP16_POLYNOMIAL(r)
    *xp = (v16)_mm512_scalef_ps((__m512)p, (__m512)n);
#else
    // Without AVX-512: 2^n put into the exponent bits, which needs n >= -126,
    // so below ln(FLT_MIN) the result is set to 0.
    const v16 x = *xp;
    const v16i underflow = x < SPLAT(-87.33654f);
    const v16 xc = SELECT16(underflow, SPLAT(-87.33654f), x);
    // Rounds x / ln2 to the nearest integer n: adding 1.5 * 2^23 leaves n in the low mantissa bits.
    const v16 shifted = xc * LOG2_E + 12582912.0f;
    const v16 n = shifted - 12582912.0f;
    const v16 r = xc - n * 0.693359375f - n * -2.12194440e-4f;
    EXP16_POLYNOMIAL(r)
    const v16i two_n = ((v16i)shifted - 0x4B400000 + 127) << 23;
    *xp = (v16)((v16i)(p * (v16)two_n) & ~underflow);
#endif
#undef EXP16_POLYNOMIAL
}

// 2^t lane by lane for t <= 0, coarse: within 2.8e-6 relative down to
// FLT_MIN (t = -126), within FLT_MIN of it below (0 below t = -150, -inf
// included); NaN stays NaN. For the bf16 attention's softmax, whose
// probabilities go into their products rounded to bf16 (2^-9 relative): with
// t in base 2 (the scores' scale times log2 e, in the FMA that subtracts the
// max), the fraction f = t - floor(t) comes from one vreduceps, 2^f from a
// degree-4 polynomial (minimax for relative error on [0, 1)) and vscalefps
// multiplies by 2^floor(t) itself: 6 operations, where exp16 takes 13. On
// the Zen 4, whose 512-bit operations take both halves of its units, the
// exp loop is most of the attention's softmax: bf16 steps of `tiny` at
// 32x32 about 1.05x faster, at 16x16 1.02x (in one process, alternating).
// Degree 3 (7.5e-5, 0.5%-0.9% faster still) doubled the largest gradient
// error of test_model_bf16_products_step_within_gpu_bf16_tolerances: the
// backward pass meets each probability at another point of the
// polynomial's error curve than the forward pass did (its exponent is
// shifted by the log of the row's sum), and dS = P (dP - D) does not
// forgive the mismatch. Without AVX-512 it is exp16 of t ln 2 (slower).
static inline void exp2_coarse16(v16 *tp) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    // vreduceps gives +0 for an infinite t (and any t of 2^23 or more in
    // size, all integers), so -inf needs no clamp: p(0) 2^-inf = 0.
    const __m512 t = (__m512)*tp;
    const v16 f = (v16)_mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const v16 p = 1.000002623e+00f +
                  f * (6.930025220e-01f + f * (2.414514571e-01f + f * (5.199608579e-02f + f * 1.354222186e-02f)));
    *tp = (v16)_mm512_scalef_ps((__m512)p, t);  // p 2^floor(t)
#else
    *tp *= 0.693147181f;
    exp16(tp);
#endif
}

// sigmoid(z) in place from e = e^-|z|, which never overflows: 1 / (1 + e)
// for z >= 0, e / (1 + e) below. NaN stays NaN.
static inline void sigmoid16(v16 *zp) {
    const v16 z = *zp;
    const v16i negative = z < SPLAT(0.0f);
    v16 e = SELECT16(negative, z, -z);
    exp16(&e);
    const v16 r = SPLAT(1.0f) / (1.0f + e);
    *zp = SELECT16(negative, e * r, r);
}

// Lanes [0, len) of src, the rest `fill`; and back. A whole vector has a
// constant size, so that it is one load or store, not a copy loop. Always
// inlined: a call passes the vector through memory (gcc had left calls in
// the bf16 loss gradient's loop, one per 16 logits).
static inline __attribute__((always_inline)) void load_partial(v16 *v, const float *src, size_t len, float fill) {
    if (len == LANES) {
        memcpy(v, src, sizeof *v);
        return;
    }
    *v = SPLAT(fill);
    memcpy(v, src, len * sizeof(float));
}
static inline __attribute__((always_inline)) void store_partial(float *dst, const v16 *v, size_t len) {
    if (len == LANES) memcpy(dst, v, sizeof *v);
    else memcpy(dst, v, len * sizeof(float));
}

// Lanes [0, len) of *v rounded to bf16 into dst, each as bf16_from_float
// rounds it (util/bf16.h; the same bits): the bf16 model's producers
// write the rounded copies the products take, where a sweep of its own would
// read the fp32 values again.
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));
static inline __attribute__((always_inline)) void store_bf16(uint16_t *dst, const v16 *v, size_t len) {
    const v16u bits = (v16u)*v;
    const v16u nan = (v16u)((bits & 0x7fffffffu) > 0x7f800000u);
    const v16u rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16, quiet = (bits >> 16) | 0x40u;
    const v16h h = __builtin_convertvector((nan & quiet) | (~nan & rounded), v16h);
    if (len == LANES) memcpy(dst, &h, sizeof h);
    else memcpy(dst, &h, len * sizeof(uint16_t));
}

// Lanes [0, len) of *v from the bf16 at src (exact: a bf16 is the top half of
// its float), the rest 0.
static inline __attribute__((always_inline)) void load_bf16(v16 *v, const uint16_t *src, size_t len) {
#ifdef __AVX512F__
    if (len == LANES) {  // one widening load (gcc made two halves and a trip through the stack of the code below)
        *v = (v16)_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)src)), 16);
        return;
    }
#endif
    v16h h = {0};
    if (len == LANES) memcpy(&h, src, sizeof h);
    else memcpy(&h, src, len * sizeof(uint16_t));
    *v = (v16)(__builtin_convertvector(h, v16u) << 16);
}

void exp_nonpositive(float *x, size_t n, bool coarse_base2) {
    for (size_t i = 0; i < n; i += LANES) {
        const size_t len = n - i < LANES ? n - i : LANES;
        v16 v;
        load_partial(&v, x + i, len, -INFINITY);
        if (coarse_base2) exp2_coarse16(&v);
        else exp16(&v);
        store_partial(x + i, &v, len);
    }
}

// The training pass's GELU, 16 floats at a time with exp16: within a few ulp
// of x sigmoid(1.702 x) by libm's expf. (Decoding keeps libm's, bit for bit:
// gelu_decode_forward, model/decode.c.) With s = sigmoid(z), z = 1.702 x:
// act = x s where act is given; dinp = dout (s + z s (1 - s)) where dinp is
// (the backward pass). One sweep can do both: the fp32 backward pass needs
// GELU's output again (fc_proj's weight gradient) and its derivative, from
// the same s. The bf16 model writes act, or dinp, only rounded (act_bf16,
// dinp_bf16): its products take them so; and its input comes rounded
// (GeluInput.x_bf16), as the fc product writes it.
typedef struct {
    const float *x;          // GELU's input, fp32; or
    const uint16_t *x_bf16;  // bf16 (x NULL)
    const float *dout;       // the backward pass's d(output); NULL forward
} GeluInput;

// act and dinp always point at the caller's locals, and `forward` and
// `backward` say which to compute: a pointer chosen at run time (act or NULL)
// had gcc keep both vectors on the stack, a store and a reload at every
// vector (without them the fp32 backward pass runs 1.2x-1.5x faster).
static inline __attribute__((always_inline)) void gelu_values(const GeluInput *in, size_t at, size_t len, bool forward,
                                                              bool backward, v16 *act, v16 *dinp) {
    v16 x;
    if (in->x_bf16) load_bf16(&x, in->x_bf16 + at, len);
    else load_partial(&x, in->x + at, len, 0.0f);
    const v16 z = 1.702f * x;
    v16 s = z;
    sigmoid16(&s);
    if (forward) *act = x * s;
    if (backward) {
        load_partial(dinp, in->dout + at, len, 0.0f);
        *dinp *= s + z * s * (1.0f - s);
    }
}

// Lanes [at, at + len): fp32, or rounded on the bits (store_bf16).
static inline __attribute__((always_inline)) void gelu_lanes(float *act, uint16_t *act_bf16, float *dinp,
                                                             uint16_t *dinp_bf16, const GeluInput *in, size_t at,
                                                             size_t len) {
    v16 y, dy;
    gelu_values(in, at, len, act || act_bf16, dinp || dinp_bf16, &y, &dy);
    if (act) store_partial(act + at, &y, len);
    if (act_bf16) store_bf16(act_bf16 + at, &y, len);
    if (dinp) store_partial(dinp + at, &dy, len);
    if (dinp_bf16) store_bf16(dinp_bf16 + at, &dy, len);
}

// Whole vectors [from, to), where loads and stores of a constant size stay
// in registers (a partial one goes through the stack).
static inline __attribute__((always_inline)) void gelu_vectors(float *act, uint16_t *act_bf16, float *dinp,
                                                               uint16_t *dinp_bf16, const GeluInput *in, size_t from,
                                                               size_t to) {
    for (size_t i = from; i < to; i++) gelu_lanes(act, act_bf16, dinp, dinp_bf16, in, i * LANES, LANES);
}

// A loop of its own for each set of outputs (the tests in the loop settled
// once); the last n mod 16 after them.
static void gelu_pass(float *act, uint16_t *act_bf16, float *dinp, uint16_t *dinp_bf16, const GeluInput *in, size_t n,
                      int threads) {
    const size_t full = n / LANES;
#pragma omp parallel num_threads(threads)
    {
        const size_t parts = (size_t)omp_get_num_threads(), p = (size_t)omp_get_thread_num();
        const size_t from = full * p / parts, to = full * (p + 1) / parts;
        if (act && dinp) gelu_vectors(act, NULL, dinp, NULL, in, from, to);
        else if (act) gelu_vectors(act, NULL, NULL, NULL, in, from, to);
        else if (dinp) gelu_vectors(NULL, NULL, dinp, NULL, in, from, to);
        else gelu_vectors(NULL, act_bf16, NULL, dinp_bf16, in, from, to);  // rounded in C: no AVX512-BF16
    }
    if (n % LANES) gelu_lanes(act, act_bf16, dinp, dinp_bf16, in, full * LANES, n % LANES);
}

// Vectors [from, to) of the bf16 outputs on a CPU with AVX512-BF16, rounded
// by vcvtneps2bf16 (util/bf16_simd.h: the same bits). No parallel region in a
// function built for another target: clang 19 fails on its outlined body.
BF16_TARGET static inline __attribute__((always_inline)) void gelu_vectors_rounded(uint16_t *act_bf16,
                                                                                   uint16_t *dinp_bf16,
                                                                                   const GeluInput *in, size_t from,
                                                                                   size_t to, bool check) {
    for (size_t i = from; i < to; i++) {
        v16 y, dy;
        gelu_values(in, i * LANES, LANES, act_bf16 != NULL, dinp_bf16 != NULL, &y, &dy);
        if (act_bf16) store16_bf16(act_bf16 + i * LANES, (const __m512 *)&y, check);
        if (dinp_bf16) store16_bf16(dinp_bf16 + i * LANES, (const __m512 *)&dy, check);
    }
}

// A loop of its own for each case of the check (util/bf16_simd.h) and each
// output (the model asks for one at a time).
BF16_TARGET static void gelu_vectors_bf16(uint16_t *act_bf16, uint16_t *dinp_bf16, const GeluInput *in, size_t from,
                                          size_t to) {
    const bool flushed = results_flushed_to_zero();
    if (act_bf16 && dinp_bf16) gelu_vectors_rounded(act_bf16, dinp_bf16, in, from, to, !flushed);
    else if (act_bf16 && flushed) gelu_vectors_rounded(act_bf16, NULL, in, from, to, false);
    else if (act_bf16) gelu_vectors_rounded(act_bf16, NULL, in, from, to, true);
    else if (flushed) gelu_vectors_rounded(NULL, dinp_bf16, in, from, to, false);
    else gelu_vectors_rounded(NULL, dinp_bf16, in, from, to, true);
}

static void gelu_pass_bf16(uint16_t *act_bf16, uint16_t *dinp_bf16, const GeluInput *in, size_t n, int threads) {
    const size_t full = n / LANES;
#pragma omp parallel num_threads(threads)
    {
        const size_t parts = (size_t)omp_get_num_threads(), p = (size_t)omp_get_thread_num();
        gelu_vectors_bf16(act_bf16, dinp_bf16, in, full * p / parts, full * (p + 1) / parts);
    }
    if (n % LANES) gelu_lanes(NULL, act_bf16, NULL, dinp_bf16, in, full * LANES, n % LANES);
}

void gelu_forward(float *out, const float *inp, size_t n, int threads) {
    const GeluInput in = {.x = inp};
    gelu_pass(out, NULL, NULL, NULL, &in, n, threads);
}

void gelu_forward_bf16(uint16_t *out, const float *inp, const uint16_t *inp_bf16, size_t n, int threads) {
    const GeluInput in = {.x = inp_bf16 ? NULL : inp, .x_bf16 = inp_bf16};
    if (cpu_has_avx512_bf16()) gelu_pass_bf16(out, NULL, &in, n, threads);
    else gelu_pass(NULL, out, NULL, NULL, &in, n, threads);
}

void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, int threads) {
    const GeluInput in = {.x = inp, .dout = dout};
    gelu_pass(NULL, NULL, dinp, NULL, &in, n, threads);
}

void gelu_backward_bf16(uint16_t *dinp, const float *inp, const uint16_t *inp_bf16, const float *dout, size_t n,
                        int threads) {
    const GeluInput in = {.x = inp_bf16 ? NULL : inp, .x_bf16 = inp_bf16, .dout = dout};
    if (cpu_has_avx512_bf16()) gelu_pass_bf16(NULL, dinp, &in, n, threads);
    else gelu_pass(NULL, NULL, NULL, dinp, &in, n, threads);
}

void gelu_forward_backward(float *out, float *dinp, const float *inp, const float *dout, size_t n, int threads) {
    const GeluInput in = {.x = inp, .dout = dout};
    gelu_pass(out, NULL, dinp, NULL, &in, n, threads);
}

// The norms, each row's sums in 16 lanes (row_sum: a fixed order whatever
// the compiler, the CPU and the row's alignment, so that a run repeats
// bitwise). Decoding, whose bits must not move, keeps its own sequential
// norm_decode_forward (model/decode.c).

// sum over c < C of a[c] * b[c] (b NULL: of a[c]), lane l summing c = l mod 16 in order, then the lanes in
// order, then the last C mod 16 in order.
static float row_sum(const float *a, const float *b, int C) {
    const int full = C / LANES * LANES;
    v16 acc = SPLAT(0.0f);
    for (int c = 0; c < full; c += LANES) {
        v16 x;
        memcpy(&x, a + c, sizeof x);
        if (b) {
            v16 y;
            memcpy(&y, b + c, sizeof y);
            x *= y;
        }
        acc += x;
    }
    float sum = 0.0f;
    for (int l = 0; l < LANES; l++) sum += acc[l];
    for (int c = full; c < C; c++) sum += b ? a[c] * b[c] : a[c];
    return sum;
}

void norm_forward(NormKind kind, float *out, float *mean, float *rstd, const float *inp, const float *gain,
                  const float *bias, int N, int C, int threads) {
    norm_forward_rounded(kind, out, NULL, mean, rstd, inp, NULL, gain, bias, N, C, threads);
}

// Row n of norm_forward_rounded, without the rounding.
static void norm_row(NormKind kind, float *out, float *mean, float *rstd, const float *inp, float *inp_copy,
                     const float *gain, const float *bias, int n, int C) {
    const float *x = inp + (size_t)n * C;
    float *y = out + (size_t)n * C;
    if (inp_copy) memcpy(inp_copy + (size_t)n * C, x, (size_t)C * sizeof(float));
    const float mu = kind == NORM_LAYERNORM ? row_sum(x, NULL, C) / (float)C : 0.0f;
    // (x - mu) in y first, for the sum of its squares.
    for (int c = 0; c < C; c++) y[c] = x[c] - mu;
    const float r = 1.0f / sqrtf(row_sum(y, y, C) / (float)C + IGPT_NORM_EPS);
    for (int c = 0; c < C; c++) y[c] = y[c] * r * gain[c] + (bias ? bias[c] : 0.0f);
    if (mean) mean[n] = mu;
    rstd[n] = r;
}

// Rows in blocks of 16, each block's rounded copy written at once (a call
// per row cost a sixth of the bf16 norm at C = 64).
void norm_forward_rounded(NormKind kind, float *out, uint16_t *out_bf16, float *mean, float *rstd, const float *inp,
                          float *inp_copy, const float *gain, const float *bias, int N, int C, int threads) {
    enum { ROWS = 16 };
#pragma omp parallel for num_threads(threads)
    for (int n0 = 0; n0 < N; n0 += ROWS) {
        const int n1 = n0 + ROWS < N ? n0 + ROWS : N;
        for (int n = n0; n < n1; n++) norm_row(kind, out, mean, rstd, inp, inp_copy, gain, bias, n, C);
        if (out_bf16) round_span_to_bf16(out_bf16 + (size_t)n0 * C, out + (size_t)n0 * C, (size_t)(n1 - n0) * C);
    }
}

// Rows per block of the gain and bias gradients' partial sums. Fixed, so
// that their order (a block's rows in order, then the blocks in order) and
// with it the bits do not depend on the thread count.
#define NORM_GRAD_ROWS 128

// dinp += d(norm)/d(inp) dout; dgain, dbias += their gradients. One sweep
// over the rows: each block of rows sums its part of the gain and bias
// gradients on the way, and the blocks' parts are added after (C x blocks
// floats, where a second sweep over the rows would read inp and dout again).
void norm_backward(NormKind kind, float *dinp, float *dgain, float *dbias, const float *dout, const float *inp,
                   const float *mean, const float *rstd, const float *gain, int N, int C, int threads) {
    norm_backward_rounded(kind, dinp, NULL, dgain, dbias, dout, inp, mean, rstd, gain, N, C, threads);
}

void norm_backward_rounded(NormKind kind, float *dinp, uint16_t *dinp_bf16, float *dgain, float *dbias,
                           const float *dout, const float *inp, const float *mean, const float *rstd, const float *gain,
                           int N, int C, int threads) {
    const bool ln = kind == NORM_LAYERNORM;
    const int blocks = (N + NORM_GRAD_ROWS - 1) / NORM_GRAD_ROWS;
    float *parts = xmalloc((size_t)blocks * 2 * C * sizeof(float));  // per block: C of dgain, then C of dbias
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int b = 0; b < blocks; b++) {
        float *restrict part_gain = parts + (size_t)b * 2 * C, *restrict part_bias = part_gain + C;
        for (int c = 0; c < 2 * C; c++) part_gain[c] = 0.0f;
        const int n1 = (b + 1) * NORM_GRAD_ROWS < N ? (b + 1) * NORM_GRAD_ROWS : N;
        for (int n = b * NORM_GRAD_ROWS; n < n1; n++) {
            const float *restrict x = inp + (size_t)n * C, *restrict dy = dout + (size_t)n * C;
            float *restrict dx = dinp + (size_t)n * C;
            const float mu = ln ? mean[n] : 0.0f, r = rstd[n];
            // xhat = (x - mu) r; dxhat = dy g; dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
            // where the mean(dxhat) term exists only for LayerNorm. The row's
            // dxhat and xhat go through a small stack buffer, a block at a time.
            float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
            enum { BLOCK = 256 };
            float dxhat[BLOCK], xhat[BLOCK];
            for (int c0 = 0; c0 < C; c0 += BLOCK) {
                const int len = C - c0 < BLOCK ? C - c0 : BLOCK;
                for (int c = 0; c < len; c++) {
                    dxhat[c] = dy[c0 + c] * gain[c0 + c];
                    xhat[c] = (x[c0 + c] - mu) * r;
                }
                sum_dxhat += ln ? row_sum(dxhat, NULL, len) : 0.0f;
                sum_dxhat_xhat += row_sum(dxhat, xhat, len);
            }
            const float m1 = ln ? sum_dxhat / (float)C : 0.0f, m2 = sum_dxhat_xhat / (float)C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                const float xh = (x[c] - mu) * r;
                dx[c] += r * (dy[c] * gain[c] - m1 - xh * m2);
                part_gain[c] += dy[c] * xh;
                part_bias[c] += dy[c];
            }
        }
        const size_t first = (size_t)b * NORM_GRAD_ROWS * C;  // the block's rows rounded at once, not row by row
        if (dinp_bf16) round_span_to_bf16(dinp_bf16 + first, dinp + first, (size_t)(n1 - b * NORM_GRAD_ROWS) * C);
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int c = 0; c < C; c++) {
        float sum_gain = 0.0f, sum_bias = 0.0f;
        for (int b = 0; b < blocks; b++) {
            sum_gain += parts[(size_t)b * 2 * C + c];
            sum_bias += parts[(size_t)b * 2 * C + C + c];
        }
        dgain[c] += sum_gain;
        if (dbias) dbias[c] += sum_bias;
    }
    free(parts);
}

void residual_forward(float *out, const float *a, const float *b, size_t n, int threads) {
#pragma omp parallel for num_threads(threads)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// ---------------------------------------------------------------------------
// Causal self-attention, flash-attention style on the CPU. Queries go in
// tiles of ATT_BLOCK rows; a tile meets only the keys it can see (0..its
// last row), a chunk of KEY_CHUNK keys at a time, and only the diagonal chunk
// is masked. The probabilities are never stored: the forward pass keeps each
// row's log-sum-exp (its softmax online: a running max and sum per query)
// and the backward pass recomputes them from it. The backward pass sums a
// head's dk and dv in contiguous rows of its own and writes them out once.
//
// Inside a tile the 64 queries are the lanes of four 16-float vectors and the
// tile is held transposed (key j's scores of all 64 queries in a row), so the
// row max, the exp and the row sums are plain vertical vector operations and
// every product is a broadcast of one scalar times a vector of queries. The
// order of every sum is fixed by the code alone (no BLAS here), so the results
// do not depend on the thread count.
//
// With --precision bf16 (attention_forward_bf16) every product takes
// bf16-rounded operands, vdpbf16ps adding a pair's two products to the fp32
// sums: for the scores and dP the tile's queries (or dy) as bf16 pairs of
// lanes, each key's (or value's) pairs broadcast; for P V, dQ, dK and dV the
// probabilities (or dS) rounded after the exp (below: "The probabilities'
// products in bf16"). The softmax is the same fp32 code but for its exp, a
// coarse 2^x for the probabilities (exp2_coarse16) that bf16 rounds after it.

#define TILE_VECS (ATT_BLOCK / LANES)
// Keys per block of the key-side products (and the zero padding they read).
#define KEY_BLOCK 8
// Keys per chunk: a query tile meets its keys a chunk at a time, whose
// scores (64 keys x 64 queries, 16 KB) stay in L1 through the exp and the
// products. A chunk is as long as a tile, so that the diagonal is one chunk.
#define KEY_CHUNK 64
_Static_assert(KEY_CHUNK == ATT_BLOCK, "the diagonal of a query tile is one key chunk");

// The diagonal chunk (its first key is the tile's first query) is a
// triangle: key j is hidden from the queries before it, so from the tile's
// vectors below j / LANES, every lane of which comes before j. Its products
// run over segments of LANES keys, segment g against vectors g.. only, which
// skips 3/8 of the chunk's work; the exp loops skip the same vectors and
// write their probabilities as 0.
static int first_live_vec(bool diagonal, int key) { return diagonal ? key / LANES : 0; }
// The other way round: the rows (keys) of a chunk of nkeys that vector v sees,
// [0, live_rows); on the diagonal the keys up to its last query.
static int live_rows(bool diagonal, int v, int nkeys) {
    return diagonal && (v + 1) * LANES < nkeys ? (v + 1) * LANES : nkeys;
}

// Calls CALL(v0) with v0 a constant 0..3 (TILE_VECS == 4): the kernels below
// are inlined once per first vector, so that their sums stay in registers.
_Static_assert(TILE_VECS == 4, "one case per first vector");
#define WITH_FIRST_VEC(v0, CALL) \
    switch (v0) {                \
    case 0: CALL(0); break;      \
    case 1: CALL(1); break;      \
    case 2: CALL(2); break;      \
    default: CALL(3); break;     \
    }

// The scores kernels take their keys 4 at a time, a row of each (hs floats,
// or hs / 2 words of bf16 pairs) read along; rows are 3C floats apart, and
// no hardware prefetcher carries on from one group's rows to the next's, so
// each group's first loads would wait on L2 or L3. Each group asks for the
// next group's rows (bytes_per_row each, stride bytes apart) while it runs:
// forward and backward 1.02x-1.03x at `xs` 32x32, in fp32 and bf16 alike.
static inline __attribute__((always_inline)) void prefetch_next_keys(const void *next, size_t stride,
                                                                     size_t bytes_per_row) {
    for (int j = 0; j < 4; j++)
        for (size_t at = 0; at < bytes_per_row; at += 64)
            __builtin_prefetch((const char *)next + j * stride + at, 0, 3);
}

// The scores kernel: out[j] (one row of TILE_VECS vectors, lanes = queries) =
// sum over e of X[j][e] * A[e] for keys j < nkeys; A is hs x TILE_VECS, X's
// rows are ld apart. S^T = K (scale Q)^T and dP^T = V dY^T are this. Only
// vectors v0.. of each row are computed (and written).
static inline __attribute__((always_inline)) void rows_times_lanes_from(v16 *out, const v16 *A, const float *X, int ld,
                                                                        int nkeys, int hs, int v0) {
    int j0 = 0;
    for (; j0 + 4 <= nkeys; j0 += 4) {
        v16 acc[4][TILE_VECS] = {0};
        const float *x = X + (size_t)j0 * ld;
        if (j0 + 8 <= nkeys) prefetch_next_keys(x + (size_t)4 * ld, (size_t)ld * sizeof *x, (size_t)hs * sizeof *x);
        for (int e = 0; e < hs; e++) {
            v16 a[TILE_VECS];
            for (int v = v0; v < TILE_VECS; v++) {
                a[v] = A[(size_t)e * TILE_VECS + v];
                HOLD_IN_REGISTER(a[v]);
            }
            for (int jj = 0; jj < 4; jj++)
                for (int v = v0; v < TILE_VECS; v++) acc[jj][v] += x[(size_t)jj * ld + e] * a[v];
        }
        for (int jj = 0; jj < 4; jj++)
            for (int v = v0; v < TILE_VECS; v++) out[(size_t)(j0 + jj) * TILE_VECS + v] = acc[jj][v];
    }
    for (; j0 < nkeys; j0++) {
        v16 acc[TILE_VECS] = {0};
        for (int e = 0; e < hs; e++)
            for (int v = v0; v < TILE_VECS; v++) acc[v] += X[(size_t)j0 * ld + e] * A[(size_t)e * TILE_VECS + v];
        for (int v = v0; v < TILE_VECS; v++) out[(size_t)j0 * TILE_VECS + v] = acc[v];
    }
}

static void tile_rows_times_lanes(v16 *out, const v16 *A, const float *X, int ld, int nkeys, int hs, int v0) {
#define SCORES_FROM(V0) rows_times_lanes_from(out, A, X, ld, nkeys, hs, V0)
    WITH_FIRST_VEC(v0, SCORES_FROM)
#undef SCORES_FROM
}

// Two bf16 side by side, read as one 32-bit word from a uint16_t array
// (may_alias: the words alias the bf16 they were written as).
typedef uint32_t Bf16Pair __attribute__((may_alias));

// The scores kernel on bf16 pairs (--precision bf16): out[j] = sum over
// pairs p of X2[j][p] . A2[p], where A2 holds hs2 pairs of TILE_VECS vectors
// (lane i: the bf16 of row 2p, lane i of the lane-packed tile in its low
// half, of row 2p + 1 in its high half) and X2's rows of bf16 pairs are ld2
// pairs apart. vdpbf16ps adds both products of a pair to a lane's fp32 sum.
// Called only where the CPU has AVX512-BF16 (attention_bf16_fits).
// Vectors v0.. only, as the fp32 kernel.
__attribute__((target("avx512f,avx512bf16"))) static inline __attribute__((always_inline)) void
rows_times_lanes_bf16_from(v16 *out, const v16i *A2, const Bf16Pair *X2, int ld2, int nkeys, int hs2, int v0) {
    int j0 = 0;
    for (; j0 + 4 <= nkeys; j0 += 4) {
        __m512 acc[4][TILE_VECS];
        for (int jj = 0; jj < 4; jj++)
            for (int v = v0; v < TILE_VECS; v++) acc[jj][v] = _mm512_setzero_ps();
        const Bf16Pair *x = X2 + (size_t)j0 * ld2;
        if (j0 + 8 <= nkeys) prefetch_next_keys(x + (size_t)4 * ld2, (size_t)ld2 * sizeof *x, (size_t)hs2 * sizeof *x);
        for (int p = 0; p < hs2; p++) {
            v16i a[TILE_VECS];
            for (int v = v0; v < TILE_VECS; v++) {
                a[v] = A2[(size_t)p * TILE_VECS + v];
                HOLD_IN_ZMM(a[v]);
            }
            for (int jj = 0; jj < 4; jj++) {
                const __m512bh pair = (__m512bh)_mm512_set1_epi32((int)x[(size_t)jj * ld2 + p]);
                for (int v = v0; v < TILE_VECS; v++) acc[jj][v] = _mm512_dpbf16_ps(acc[jj][v], (__m512bh)a[v], pair);
            }
        }
        for (int jj = 0; jj < 4; jj++)
            for (int v = v0; v < TILE_VECS; v++) out[(size_t)(j0 + jj) * TILE_VECS + v] = (v16)acc[jj][v];
    }
    for (; j0 < nkeys; j0++) {
        __m512 acc[TILE_VECS];
        for (int v = v0; v < TILE_VECS; v++) acc[v] = _mm512_setzero_ps();
        for (int p = 0; p < hs2; p++) {
            const __m512bh pair = (__m512bh)_mm512_set1_epi32((int)X2[(size_t)j0 * ld2 + p]);
            for (int v = v0; v < TILE_VECS; v++)
                acc[v] = _mm512_dpbf16_ps(acc[v], (__m512bh)A2[(size_t)p * TILE_VECS + v], pair);
        }
        for (int v = v0; v < TILE_VECS; v++) out[(size_t)j0 * TILE_VECS + v] = (v16)acc[v];
    }
}

__attribute__((target("avx512f,avx512bf16"))) static void tile_rows_times_lanes_bf16(v16 *out, const v16i *A2,
                                                                                     const Bf16Pair *X2, int ld2,
                                                                                     int nkeys, int hs2, int v0) {
#define SCORES_FROM(V0) rows_times_lanes_bf16_from(out, A2, X2, ld2, nkeys, hs2, V0)
    WITH_FIRST_VEC(v0, SCORES_FROM)
#undef SCORES_FROM
}

bool attention_bf16_fits(int C, int NH) { return (C / NH) % 2 == 0 && cpu_has_avx512_bf16(); }

// The scores of a tile against rows of keys (or values): from bf16 pairs when
// the head has them (X2 not NULL), else fp32. On the diagonal chunk only the
// live vectors of each row are written.
static void tile_scores(v16 *out, const v16 *A, const v16i *A2, const float *X, const Bf16Pair *X2, int ld, int nkeys,
                        int hs, bool diagonal) {
    const int segment = diagonal ? LANES : nkeys;
    for (int j0 = 0; j0 < nkeys; j0 += segment) {
        const int n = nkeys - j0 < segment ? nkeys - j0 : segment, v0 = first_live_vec(diagonal, j0);
        v16 *rows = out + (size_t)j0 * TILE_VECS;
        if (X2) tile_rows_times_lanes_bf16(rows, A2, X2 + (size_t)j0 * (ld / 2), ld / 2, n, hs / 2, v0);
        else tile_rows_times_lanes(rows, A, X + (size_t)j0 * ld, ld, n, hs, v0);
    }
}

// --- The probabilities' products in bf16 (--precision bf16) -----------------
// P V and dQ = dS K sum over keys, dV = P^T dY and dK = dS^T Q over queries.
// vdpbf16ps adds two products per lane, so each operand comes as bf16 pairs
// along the summed dimension: for the sums over keys, P (or dS) as pairs of
// its key rows interleaved lane by lane, and V (or K) as pairs of key rows
// per column (a word, broadcast); for the sums over queries, P's (dS's) rows
// as words of two queries (broadcast), and dY (Q) as pairs of query rows,
// lanes = columns. The sums stay fp32, as in the scores.

// *out lane l: bf16(lo[l]) in the low half, bf16(hi[l]) in the high half.
BF16_TARGET static inline void interleave_bf16(v16i *out, const v16 *lo, const v16 *hi) {
    // cvtne2ps2bf16 puts lo's 16 bf16 below hi's; the permutation takes them in turn.
    static const uint16_t in_turn[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                         8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i order = _mm512_loadu_si512(in_turn);
    *out = (v16i)_mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh((__m512)*hi, (__m512)*lo));
}

// Rows [0, nrows) of row_vecs vectors each as bf16 pairs of rows: out[p][c]
// interleaves vector c of rows 2p and 2p + 1 (after an odd last row, 0).
// The lane-packed tile's q and dy (rows = columns e, hs x TILE_VECS), for the
// scores kernel; P and dS (rows = keys), for the sums over keys; and the
// tile's rows of q and dy (rows = queries, ATT_BLOCK x hs_pad), for the sums
// over queries.
BF16_TARGET static void pair_rows(v16i *out, const v16 *rows, int nrows, int row_vecs) {
    const v16 zero = SPLAT(0.0f);
    for (int p = 0; 2 * p < nrows; p++)
        for (int c = 0; c < row_vecs; c++) {
            const v16 *hi = 2 * p + 1 < nrows ? &rows[(size_t)(2 * p + 1) * row_vecs + c] : &zero;
            interleave_bf16(&out[(size_t)p * row_vecs + c], &rows[(size_t)(2 * p) * row_vecs + c], hi);
        }
}

// Rows [0, nkeys) of a head's keys (or values) in bf16, ld apart, as pairs of
// rows per column: out[p hs + e] = X[2p][e] | X[2p + 1][e] << 16 (after an
// odd last row, 0 in the high half).
BF16_TARGET static void pair_key_rows(uint32_t *out, const uint16_t *X, int ld, int nkeys, int hs) {
    for (int p = 0; 2 * p < nkeys; p++) {
        const uint16_t *lo = X + (size_t)(2 * p) * ld, *hi = lo + ld;
        const bool has_hi = 2 * p + 1 < nkeys;
        for (int e = 0; e < hs; e += LANES) {
            const __mmask16 in_row = first_lanes(hs - e);
            const __m512i low = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in_row, lo + e));
            const __m512i high =
                has_hi ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in_row, hi + e)) : _mm512_setzero_si512();
            _mm512_mask_storeu_epi32(out + (size_t)p * hs + e, in_row,
                                     _mm512_or_si512(low, _mm512_slli_epi32(high, 16)));
        }
    }
}

// The bf16 forward pass's probabilities of query vector w: rows [0, live) of
// the chunk's scores S (the rest 0 up to nkeys) as 2^(s sc2 - shift), added
// to *row_sum in order and written as pair_rows writes them (P2[p][w]: key
// rows 2p and 2p + 1 interleaved, 0 after an odd last row) for P V's pairs,
// straight from registers rather than back into S and through a pass of
// pair_rows.
BF16_TARGET static void probabilities_as_key_pairs(v16i *P2, v16 *row_sum, const v16 *S, int w, int live, int nkeys,
                                                   float sc2, const v16 *shift) {
    const v16 zero = SPLAT(0.0f);
    v16 sum = *row_sum;
    for (int j = 0; j < nkeys; j += 2) {
        v16 lo = zero, hi = zero;
        if (j < live) {
            lo = S[(size_t)j * TILE_VECS + w] * sc2 - *shift;
            exp2_coarse16(&lo);
            sum += lo;
        }
        if (j + 1 < live) {
            hi = S[(size_t)(j + 1) * TILE_VECS + w] * sc2 - *shift;
            exp2_coarse16(&hi);
            sum += hi;
        }
        interleave_bf16(&P2[(size_t)(j / 2) * TILE_VECS + w], &lo, &hi);
    }
    *row_sum = sum;
}

// out[e] (lanes = queries) += sum over key pairs p in [p_begin, p_end) of
// P2[p] . X2[p][e], for 4 columns from X2's and vectors v0.. (as
// add_keys_to_lanes).
BF16_TARGET static inline __attribute__((always_inline)) void add_key_pairs_to_lanes(__m512 acc[4][TILE_VECS],
                                                                                     const v16i *P2, const uint32_t *X2,
                                                                                     int hs, int p_begin, int p_end,
                                                                                     int v0) {
    for (int p = p_begin; p < p_end; p++) {
        const uint32_t *x = X2 + (size_t)p * hs;
        v16i pairs[TILE_VECS];
        for (int v = v0; v < TILE_VECS; v++) {
            pairs[v] = P2[(size_t)p * TILE_VECS + v];
            HOLD_IN_ZMM(pairs[v]);
        }
        for (int ee = 0; ee < 4; ee++) {
            const __m512bh word = (__m512bh)_mm512_set1_epi32((int)x[ee]);
            for (int v = v0; v < TILE_VECS; v++) acc[ee][v] = _mm512_dpbf16_ps(acc[ee][v], (__m512bh)pairs[v], word);
        }
    }
}

// tile_lanes_times_rows on bf16 pairs: out[e] += sum over the pairs of keys
// [0, nkeys) of P2[p] . X2[p][e] (P2: pair_rows, X2: pair_key_rows).
BF16_TARGET static void lanes_times_key_pairs(v16 *out, const v16i *P2, const uint32_t *X2, int nkeys, int hs,
                                              bool diagonal) {
    const int pairs = (nkeys + 1) / 2, segment = diagonal ? LANES / 2 : pairs;
    int e0 = 0;
    for (; e0 + 4 <= hs; e0 += 4) {
        __m512 acc[4][TILE_VECS];
        for (int ee = 0; ee < 4; ee++)
            for (int v = 0; v < TILE_VECS; v++) acc[ee][v] = (__m512)out[(size_t)(e0 + ee) * TILE_VECS + v];
        for (int p0 = 0; p0 < pairs; p0 += segment) {
            const int p1 = pairs - p0 < segment ? pairs : p0 + segment;
#define ADD_FROM(V0) add_key_pairs_to_lanes(acc, P2, X2 + e0, hs, p0, p1, V0)
            WITH_FIRST_VEC(first_live_vec(diagonal, 2 * p0), ADD_FROM)
#undef ADD_FROM
        }
        for (int ee = 0; ee < 4; ee++)
            for (int v = 0; v < TILE_VECS; v++) out[(size_t)(e0 + ee) * TILE_VECS + v] = (v16)acc[ee][v];
    }
    for (; e0 < hs; e0++)  // the hs % 4 columns left over, every vector (P2 is 0 where masked)
        for (int p = 0; p < pairs; p++) {
            const __m512bh word = (__m512bh)_mm512_set1_epi32((int)X2[(size_t)p * hs + e0]);
            for (int v = 0; v < TILE_VECS; v++)
                out[(size_t)e0 * TILE_VECS + v] = (v16)_mm512_dpbf16_ps((__m512)out[(size_t)e0 * TILE_VECS + v],
                                                                        (__m512bh)P2[(size_t)p * TILE_VECS + v], word);
        }
}

// keys_times_columns on bf16 pairs of queries (below).
BF16_TARGET static inline __attribute__((always_inline)) void keys_times_columns_bf16(v16 *D, const Bf16Pair *Pw,
                                                                                      const v16i *Y2, int row_vecs,
                                                                                      int p0, int pairs, int j0, int c,
                                                                                      const int WIDTH) {
    __m512 acc[KEY_BLOCK][2];
    for (int jj = 0; jj < KEY_BLOCK; jj++)
        for (int u = 0; u < WIDTH; u++) acc[jj][u] = _mm512_setzero_ps();
    for (int p = p0; p < pairs; p++) {
        v16i y[2];
        for (int u = 0; u < WIDTH; u++) {
            y[u] = Y2[(size_t)p * row_vecs + c + u];
            HOLD_IN_ZMM(y[u]);
        }
        for (int jj = 0; jj < KEY_BLOCK; jj++) {
            const __m512bh word = (__m512bh)_mm512_set1_epi32((int)Pw[(size_t)(j0 + jj) * (ATT_BLOCK / 2) + p]);
            for (int u = 0; u < WIDTH; u++) acc[jj][u] = _mm512_dpbf16_ps(acc[jj][u], (__m512bh)y[u], word);
        }
    }
    for (int jj = 0; jj < KEY_BLOCK; jj++)
        for (int u = 0; u < WIDTH; u++) D[(size_t)(j0 + jj) * row_vecs + c + u] += (v16)acc[jj][u];
}

// keys_times_tile on bf16 pairs: D[j] += sum over the pairs of queries
// [0, nq) of Pw[j][p] . Y2[p] (Pw: probabilities_as_bf16, Y2: pair_rows of the tile's rows; an odd
// last query is paired with a zero row of Y2), for keys j < nkeys rounded up
// to KEY_BLOCK. On the diagonal chunk the pairs before a block's first key
// are skipped.
BF16_TARGET static void keys_times_tile_bf16(v16 *D, const Bf16Pair *Pw, const v16i *Y2, int hs_pad, int nq, int nkeys,
                                             bool diagonal) {
    const int row_vecs = hs_pad / LANES, pairs = (nq + 1) / 2;
    for (int j0 = 0; j0 < nkeys; j0 += KEY_BLOCK) {
        const int p0 = diagonal ? j0 / 2 : 0;
        int c = 0;
        for (; c + 2 <= row_vecs; c += 2) keys_times_columns_bf16(D, Pw, Y2, row_vecs, p0, pairs, j0, c, 2);
        if (c < row_vecs) keys_times_columns_bf16(D, Pw, Y2, row_vecs, p0, pairs, j0, c, 1);
    }
}

// The query-side product: out[e] (lanes = queries) += sum over keys j in
// order of X[j][e] * P[j] for e < hs. O^T += V^T P^T and dQ^T += K^T dS^T
// are this, a key chunk at a time (nkeys <= KEY_CHUNK: the chunk's rows of P
// stay in L1 while every block of 4 columns of out passes over them).
// On the diagonal chunk, key segment g only adds to vectors g.. (P is 0
// elsewhere: the hs % 4 columns left over take every vector).
static inline __attribute__((always_inline)) void add_keys_to_lanes(v16 acc[4][TILE_VECS], const v16 *P, const float *X,
                                                                    int ld, int j_begin, int j_end, int v0) {
    for (int j = j_begin; j < j_end; j++) {
        const float *x = X + (size_t)j * ld;
        v16 p[TILE_VECS];
        for (int v = v0; v < TILE_VECS; v++) {
            p[v] = P[(size_t)j * TILE_VECS + v];
            HOLD_IN_REGISTER(p[v]);
        }
        for (int ee = 0; ee < 4; ee++)
            for (int v = v0; v < TILE_VECS; v++) acc[ee][v] += x[ee] * p[v];
    }
}

static void tile_lanes_times_rows(v16 *out, const v16 *P, const float *X, int ld, int nkeys, int hs, bool diagonal) {
    int e0 = 0;
    for (; e0 + 4 <= hs; e0 += 4) {
        v16 acc[4][TILE_VECS];
        for (int ee = 0; ee < 4; ee++)
            for (int v = 0; v < TILE_VECS; v++) acc[ee][v] = out[(size_t)(e0 + ee) * TILE_VECS + v];
        const int segment = diagonal ? LANES : nkeys;
        for (int j0 = 0; j0 < nkeys; j0 += segment) {
            const int j1 = nkeys - j0 < segment ? nkeys : j0 + segment;
#define ADD_FROM(V0) add_keys_to_lanes(acc, P, X + e0, ld, j0, j1, V0)
            WITH_FIRST_VEC(first_live_vec(diagonal, j0), ADD_FROM)
#undef ADD_FROM
        }
        for (int ee = 0; ee < 4; ee++)
            for (int v = 0; v < TILE_VECS; v++) out[(size_t)(e0 + ee) * TILE_VECS + v] = acc[ee][v];
    }
    for (; e0 < hs; e0++)
        for (int j = 0; j < nkeys; j++)
            for (int v = 0; v < TILE_VECS; v++)
                out[(size_t)e0 * TILE_VECS + v] += X[(size_t)j * ld + e0] * P[(size_t)j * TILE_VECS + v];
}

// Vectors [c, c + WIDTH) of keys [j0, j0 + KEY_BLOCK)'s rows of D: KEY_BLOCK
// x WIDTH sums, each broadcast of P used WIDTH times.
static inline __attribute__((always_inline)) void keys_times_columns(v16 *D, const float *p, const float *Y, int hs_pad,
                                                                     int i0, int nq, int j0, int c, const int WIDTH) {
    const int row_vecs = hs_pad / LANES;
    v16 acc[KEY_BLOCK][2];
    for (int jj = 0; jj < KEY_BLOCK; jj++)
        for (int u = 0; u < WIDTH; u++) acc[jj][u] = SPLAT(0.0f);
    for (int i = i0; i < nq; i++) {
        v16 y[2];
        for (int u = 0; u < WIDTH; u++) {
            y[u] = *(const v16 *)(Y + (size_t)i * hs_pad + (size_t)(c + u) * LANES);
            HOLD_IN_REGISTER(y[u]);
        }
        for (int jj = 0; jj < KEY_BLOCK; jj++) {
            const float pj = p[(size_t)(j0 + jj) * ATT_BLOCK + i];
            for (int u = 0; u < WIDTH; u++) acc[jj][u] += pj * y[u];
        }
    }
    for (int jj = 0; jj < KEY_BLOCK; jj++)
        for (int u = 0; u < WIDTH; u++) D[(size_t)(j0 + jj) * row_vecs + c + u] += acc[jj][u];
}

// The key-side product, a sum over the tile's queries: D[j] += sum over
// i < nq in order of P[j][lane i] * Y[i], for keys j < nkeys rounded up to
// KEY_BLOCK (P's rows past nkeys are zero). Rows of Y and D are hs_pad floats
// (hs rounded up to 16, zero-padded), whole vectors, so the sums stay in
// registers. dV += P^T dY and dK += dS^T Q are this, into the head's own
// contiguous dK and dV (written to dqkv once the head is done). On the
// diagonal chunk the queries before a block's first key (P = 0) are skipped.
static void keys_times_tile(v16 *D, const v16 *P, const float *Y, int hs_pad, int nq, int nkeys, bool diagonal) {
    const float *p = (const float *)P;
    const int row_vecs = hs_pad / LANES;
    for (int j0 = 0; j0 < nkeys; j0 += KEY_BLOCK) {
        const int i0 = diagonal ? j0 : 0;
        int c = 0;
        for (; c + 2 <= row_vecs; c += 2) keys_times_columns(D, p, Y, hs_pad, i0, nq, j0, c, 2);
        if (c < row_vecs) keys_times_columns(D, p, Y, hs_pad, i0, nq, j0, c, 1);
    }
}

// Rows [first, first + LANES) of src (ld apart; fp32, or bf16 in src_bf16),
// columns [e0, e0 + cols), transposed into m: m[c] lane r = src[first +
// r][e0 + c], 0 from row `count` on and past column cols. A whole block
// takes loads of constant size, so that its 16 vectors stay in registers (a
// partial one goes through the stack: the attention 1-5% slower).
static inline __attribute__((always_inline)) void load_rows_transposed(v16 m[LANES], const float *src,
                                                                       const uint16_t *src_bf16, int ld, int first,
                                                                       int count, int e0, int cols) {
    if (cols == LANES && count >= LANES) {
        for (int r = 0; r < LANES; r++) {
            const size_t at = (size_t)(first + r) * ld + e0;
            if (src_bf16) load_bf16(&m[r], src_bf16 + at, LANES);
            else memcpy(&m[r], src + at, sizeof m[r]);
        }
    } else {
        for (int r = 0; r < LANES; r++) {
            m[r] = SPLAT(0.0f);
            const size_t at = (size_t)(first + r) * ld + e0;
            if (r < count && src_bf16) load_bf16(&m[r], src_bf16 + at, (size_t)cols);
            else if (r < count) load_partial(&m[r], src + at, (size_t)cols, 0.0f);
        }
    }
    transpose16(m);
}

// Rows [t0, t0 + rows) of a head's q (or dy), ld apart, times mul, into the
// tile's transposed layout: out[e] lane i = mul * src[t0 + i][e]; lanes past
// rows are 0. The rows are fp32 (src), or bf16 (src_bf16 not NULL: the bf16
// model's queries). 16 rows by 16 columns at a time.
static void pack_lanes(v16 *out, const float *src, const uint16_t *src_bf16, int ld, int t0, int rows, int hs,
                       float mul) {
    for (int i0 = 0; i0 < ATT_BLOCK; i0 += LANES)
        for (int e0 = 0; e0 < hs; e0 += LANES) {
            const int cols = hs - e0 < LANES ? hs - e0 : LANES;
            v16 m[LANES];
            load_rows_transposed(m, src, src_bf16, ld, t0 + i0, rows - i0, e0, cols);
            for (int c = 0; c < cols; c++) out[(size_t)(e0 + c) * TILE_VECS + i0 / LANES] = m[c] * mul;
        }
}

// The other way: rows [t0, t0 + rows) of dst (ld apart, hs wide) from the
// tile's vectors in (hs x TILE_VECS, lanes = queries), each vector v times
// mul[v] lane by lane, or, dst_bf16 not NULL, rounded there instead; whole
// blocks as in pack_lanes.
static void unpack_lanes(float *dst, uint16_t *dst_bf16, int ld, int t0, int rows, int hs, const v16 *in,
                         const v16 *mul) {
    for (int v = 0; v * LANES < rows; v++)
        for (int e0 = 0; e0 < hs; e0 += LANES) {
            const int cols = hs - e0 < LANES ? hs - e0 : LANES;
            v16 m[LANES];
            for (int c = 0; c < LANES; c++)
                m[c] = c < cols ? in[(size_t)(e0 + c) * TILE_VECS + v] * mul[v] : SPLAT(0.0f);
            transpose16(m);
            if (cols == LANES && (v + 1) * LANES <= rows) {
                for (int r = 0; r < LANES; r++) {
                    const size_t at = (size_t)(t0 + v * LANES + r) * ld + e0;
                    if (dst_bf16) store_bf16(dst_bf16 + at, &m[r], LANES);
                    else memcpy(dst + at, &m[r], sizeof m[r]);
                }
                continue;
            }
            for (int r = 0; r < LANES && v * LANES + r < rows; r++) {
                const v16 row = m[r];
                const size_t at = (size_t)(t0 + v * LANES + r) * ld + e0;
                if (dst_bf16) store_bf16(dst_bf16 + at, &row, (size_t)cols);
                else store_partial(dst + at, &row, (size_t)cols);
            }
        }
}

// The attention's D = dy . y of the tile's queries: dot[v] lane i = sum over
// e < hs, in order, of dy[t0 + 16v + i][e] y[t0 + 16v + i][e], each product
// rounded before it is added (no fused multiply-add, as the reference's row
// by row sum), 0 past rows. dy comes lane-packed (dY, as pack_lanes packs
// it), y's rows (ld apart; fp32, or bf16 in y2) 16 x 16 as pack_lanes reads
// them: 16 queries' sums at once where one row's sum waited on each add.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
static void tile_dots(v16 *dot, const v16 *dY, const float *y, const uint16_t *y2, int ld, int t0, int rows, int hs) {
    for (int v = 0; v < TILE_VECS; v++) {
        v16 sum = SPLAT(0.0f);
        for (int e0 = 0; v * LANES < rows && e0 < hs; e0 += LANES) {
            const int cols = hs - e0 < LANES ? hs - e0 : LANES;
            v16 m[LANES];
            load_rows_transposed(m, y, y2, ld, t0 + v * LANES, rows - v * LANES, e0, cols);
            for (int c = 0; c < cols; c++) {
                const v16 product = dY[(size_t)(e0 + c) * TILE_VECS + v] * m[c];
                sum += product;
            }
        }
        dot[v] = sum;
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// The same rows row by row, hs_pad wide, zero-padded to ATT_BLOCK x hs_pad.
static void pack_rows(float *out, const float *src, const uint16_t *src_bf16, int ld, int t0, int rows, int hs,
                      int hs_pad) {
    for (int i = 0; i < ATT_BLOCK; i++) {
        float *row = out + (size_t)i * hs_pad;
        const int copied = i < rows ? hs : 0;
        if (copied && src_bf16)
            for (int e = 0; e < hs; e += LANES) {  // hs_pad is whole vectors: the last one's tail is 0
                v16 v;
                load_bf16(&v, src_bf16 + (size_t)(t0 + i) * ld + e, (size_t)(hs - e < LANES ? hs - e : LANES));
                memcpy(row + e, &v, sizeof v);
            }
        else if (copied) memcpy(row, src + (size_t)(t0 + i) * ld, (size_t)copied * sizeof(float));
        if (!src_bf16 || !copied) memset(row + copied, 0, (size_t)(hs_pad - copied) * sizeof(float));
    }
}

// Masks the scores of the diagonal chunk, whose first key is the tile's first
// query: its key d (row d of S, d < nkeys) is hidden from the queries i < d.
// Of its live vectors only the first, d / LANES, holds such queries.
static void mask_diagonal(v16 *S, int nkeys) {
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int d = 0; d < nkeys; d++) {
        const int v = d / LANES;
        const v16i hidden = lane + v * LANES < d;
        S[(size_t)d * TILE_VECS + v] = SELECT16(hidden, SPLAT(-INFINITY), S[(size_t)d * TILE_VECS + v]);
    }
}

size_t attention_scratch_floats(int T, int C, int NH, int threads) {
    const size_t hs = (size_t)(C / NH), vecs = LANES * TILE_VECS, keys = round_up((size_t)T, KEY_BLOCK);
    // Backward, the larger: q and dy lane-packed, the dq tile, a chunk of P^T
    // and of dS^T, q and dy row-packed, the head's dk and dv; plus room to
    // align to 64 bytes.
    const size_t hs_pad = round_up(hs, LANES);
    // With bf16 products: q and dy as pairs of lanes (hs / 2 x vecs each) and
    // of rows (ATT_BLOCK / 2 x hs_pad each), P's and dS's rows as words
    // (KEY_CHUNK x ATT_BLOCK / 2 each), dS as pairs of key rows (KEY_CHUNK / 2
    // x vecs), the chunk's keys as pairs (KEY_CHUNK / 2 x hs, rounded up to
    // whole vectors). The forward pass needs less.
    const size_t bf16 = (hs / 2) * 2 * vecs + ATT_BLOCK * hs_pad + KEY_CHUNK * ATT_BLOCK + (KEY_CHUNK / 2) * vecs +
                        round_up(KEY_CHUNK / 2 * hs, LANES);
    const size_t per_thread =
        3 * hs * vecs + 2 * KEY_CHUNK * vecs + 2 * ATT_BLOCK * hs_pad + 2 * keys * hs_pad + bf16 + LANES;
    return (size_t)threads * per_thread;
}

// The calling thread's part of the scratch, 64-byte aligned for the vectors.
static v16 *thread_scratch(float *scratch, int T, int C, int NH) {
    float *mine = scratch + (size_t)omp_get_thread_num() * attention_scratch_floats(T, C, NH, 1);
    return (v16 *)round_up((size_t)mine, sizeof(v16));
}

// *max becomes the lane-wise max of itself and rows [0, n) of vectors,
// `stride` vectors apart. Four running maxima: one alone would wait on each
// compare.
static void max_of_rows(v16 *max, const v16 *rows, int stride, int n) {
    v16 m[4] = {*max, *max, *max, *max};
    int j = 0;
    for (; j + 4 <= n; j += 4)
        for (int u = 0; u < 4; u++) {
            const v16 x = rows[(size_t)(j + u) * stride];
            m[u] = SELECT16(x > m[u], x, m[u]);
        }
    for (; j < n; j++) m[0] = SELECT16(rows[(size_t)j * stride] > m[0], rows[(size_t)j * stride], m[0]);
    m[0] = SELECT16(m[1] > m[0], m[1], m[0]);
    m[2] = SELECT16(m[3] > m[2], m[3], m[2]);
    *max = SELECT16(m[2] > m[0], m[2], m[0]);
}

// One query tile, rows [t0, t1) of head (b, h): its scores against keys
// [0, t1) a chunk at a time, with the softmax online (each query's running
// max m and sum l; a new max scales what was summed by e^(m_old - m_new)),
// times V; writes the tile's rows of y and lse. The head's q, k, v rows (ld
// = 3C apart) are fp32 from q, or, for bf16 products, bf16 from q2 (the
// keys' and values' pairs then read as k2, ld / 2 pairs apart; q NULL).
static void attention_forward_tile(float *y, uint16_t *y2, float *row_lse, const float *q, const uint16_t *q2, int t0,
                                   int t1, v16 *scratch, int C, int hs) {
    const int ld = 3 * C, rows = t1 - t0;
    const Bf16Pair *k2 = q2 ? (const Bf16Pair *)(q2 + C) : NULL;
    const float scale = 1.0f / sqrtf((float)hs);
    v16 *Q = scratch, *S = Q + (size_t)hs * TILE_VECS, *O = S + (size_t)KEY_CHUNK * TILE_VECS;
    v16i *Q2 = (v16i *)(O + (size_t)hs * TILE_VECS), *P2 = Q2 + (size_t)(hs / 2) * TILE_VECS;
    uint32_t *V2 = (uint32_t *)(P2 + (size_t)(KEY_CHUNK / 2) * TILE_VECS);
    // fp32 scales the queries. The bf16 queries come unscaled (rounded as the
    // product wrote them), and the softmax scales their fp32 scores (sc), as
    // the GPU's flash attention does: max and rescale on q k^T, the exponent
    // s sc log2(e) - max sc log2(e) in one FMA (sc2), no pass of its own, and
    // 2^ that by exp2_coarse16.
    const float sc = q2 ? scale : 1.0f, sc2 = scale * LOG2_E;
    pack_lanes(Q, q, q2, ld, t0, rows, hs, q2 ? 1.0f : scale);
    if (k2) pair_rows(Q2, Q, hs, TILE_VECS);
    for (size_t i = 0; i < (size_t)hs * TILE_VECS; i++) O[i] = SPLAT(0.0f);
    v16 mx[TILE_VECS], sum[TILE_VECS];
    for (int w = 0; w < TILE_VECS; w++) {
        mx[w] = SPLAT(-INFINITY);
        sum[w] = SPLAT(0.0f);
    }
    for (int c0 = 0; c0 < t1; c0 += KEY_CHUNK) {
        const int nkeys = t1 - c0 < KEY_CHUNK ? t1 - c0 : KEY_CHUNK;
        const bool diagonal = c0 == t0;
        if (k2) tile_scores(S, Q, Q2, NULL, k2 + (size_t)c0 * (ld / 2), ld, nkeys, hs, diagonal);
        else tile_scores(S, Q, NULL, q + C + (size_t)c0 * ld, NULL, ld, nkeys, hs, diagonal);
        if (diagonal) mask_diagonal(S, nkeys);
        // A vector of queries at a time (its max and sum in registers): its
        // live rows (on the diagonal the keys before its last query), then 0
        // in the rest. The first chunk holds key 0, visible to every query:
        // from it on each max is finite.
        v16 rescale[TILE_VECS];
        for (int w = 0; w < TILE_VECS; w++) {
            const int live = live_rows(diagonal, w, nkeys);
            v16 new_mx = mx[w];
            max_of_rows(&new_mx, &S[w], TILE_VECS, live);
            // e^-inf = 0 at the first chunk. exp16 in bf16 too: one a vector
            // of queries per chunk, and the coarse exp's error would add up
            // over the chunks in the sums (and lse).
            rescale[w] = (mx[w] - new_mx) * sc;
            exp16(&rescale[w]);
            v16 row_sum = sum[w] * rescale[w];
            if (k2) {  // (the shift may leave s = max a hair above 0, where exp2_coarse16 is as good)
                const v16 shift = new_mx * sc2;  // (by pointer: a v16 argument changes the ABI without AVX-512)
                probabilities_as_key_pairs(P2, &row_sum, S, w, live, nkeys, sc2, &shift);
            } else {
                for (int j = 0; j < live; j++) {
                    v16 *s = &S[(size_t)j * TILE_VECS + w];
                    *s -= new_mx;
                    exp16(s);
                    row_sum += *s;
                }
                for (int j = live; j < nkeys; j++) S[(size_t)j * TILE_VECS + w] = SPLAT(0.0f);
            }
            sum[w] = row_sum;
            mx[w] = new_mx;
        }
        if (c0 > 0)
            for (int e = 0; e < hs; e++)
                for (int w = 0; w < TILE_VECS; w++) O[(size_t)e * TILE_VECS + w] *= rescale[w];
        if (k2) {  // O^T += V^T P^T on bf16 pairs of key rows (P2: probabilities_as_key_pairs)
            pair_key_rows(V2, (const uint16_t *)k2 + C + (size_t)c0 * ld, ld, nkeys, hs);
            lanes_times_key_pairs(O, P2, V2, nkeys, hs, diagonal);
        } else {
            tile_lanes_times_rows(O, S, q + 2 * C + (size_t)c0 * ld, ld, nkeys, hs, diagonal);
        }
    }
    v16 inv[TILE_VECS];
    for (int w = 0; w < TILE_VECS; w++) inv[w] = 1.0f / sum[w];
    unpack_lanes(y, y2, C, t0, rows, hs, O, inv);
    for (int i = 0; i < rows; i++) row_lse[t0 + i] = mx[i / LANES][i % LANES] * sc + logf(sum[i / LANES][i % LANES]);
}

// Where head (b, h)'s first query is in a B x T x 3C qkv or dqkv, fp32 or
// bf16 alike (its key C further, its value 2C).
static size_t head_at(int b, int h, int T, int C, int NH) { return (size_t)b * T * 3 * C + (size_t)h * (C / NH); }

void attention_forward(float *atty, float *lse, const float *qkv, float *scratch, int B, int T, int C, int NH,
                       int threads) {
    attention_forward_bf16(atty, NULL, lse, qkv, NULL, scratch, B, T, C, NH, threads);
}

void attention_forward_bf16(float *atty, uint16_t *atty_bf16, float *lse, const float *qkv, const uint16_t *qkv_bf16,
                            float *scratch, int B, int T, int C, int NH, int threads) {
    const int hs = C / NH, tiles = (T + ATT_BLOCK - 1) / ATT_BLOCK;
    // Work items (image, head, query tile), head after head, each head's
    // longest tile first: the threads work on the same head at once, whose
    // keys and values then come from their L2 (a head's are 256 KB at `xs`,
    // 32x32) rather than from L3, as when the items went tile by tile across
    // every head (the forward pass 5%-9% faster in fp32). The last items are
    // the last head's shortest tiles.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int item = 0; item < B * NH * tiles; item++) {
        const int b = item / (NH * tiles), h = item / tiles % NH, tile = tiles - 1 - item % tiles;
        const int t0 = tile * ATT_BLOCK, t1 = t0 + ATT_BLOCK < T ? t0 + ATT_BLOCK : T;
        // With bf16 products everything comes from qkv_bf16 (qkv unread); y
        // goes to one of atty and atty_bf16.
        const size_t q_at = head_at(b, h, T, C, NH), y_at = (size_t)b * T * C + (size_t)h * hs;
        attention_forward_tile(atty_bf16 ? NULL : atty + y_at, atty_bf16 ? atty_bf16 + y_at : NULL,
                               lse + ((size_t)b * NH + h) * T, qkv_bf16 ? NULL : qkv + q_at,
                               qkv_bf16 ? qkv_bf16 + q_at : NULL, t0, t1, thread_scratch(scratch, T, C, NH), C, hs);
    }
}

// The backward pass of one head (b, h): its rows of q, k, v (ld = 3C apart),
// dy and y (C apart), its lse, and where dq, dk, dv go.
typedef struct {
    const float *q, *k, *v, *dy, *y, *lse;  // q, k, v NULL with bf16 products; y NULL where y2 is not
    const uint16_t *q2;                     // with bf16 products the queries in bf16 (ld apart), else NULL
    const uint16_t *y2;                     // y in bf16 (C apart), or NULL
    const Bf16Pair *k2, *v2;    // keys and values as bf16 pairs for bf16 products (ld / 2 pairs apart), or NULL
    float *dq, *dk, *dv;        // where dq, dk, dv go; or, NULL,
    uint16_t *dq2, *dk2, *dv2;  // rounded there (the bf16 model's qkv product takes them so), else NULL
    int T, C, ld, hs, hs_pad;
    float scale;
} HeadGrads;

// A thread's work space for one query tile against a key chunk: the tile's
// q (scaled) and dy lane-packed and row-packed, its dq, a chunk of P^T and
// dS^T, and the rows of dk and dv being summed (hs_pad floats each); per
// query, lse and D = dy . y.
typedef struct {
    v16 *Q, *dY, *dQ, *P, *dS, *dK, *dV;
    v16i *Q2, *dY2;  // Q and dY as bf16 pairs of lanes, for the bf16 scores and dP
    // For bf16 products: Q and dY as pairs of rows, P's and dS's rows as
    // words, dS as pairs of key rows, the chunk's keys as pairs.
    v16i *Q_row_pairs, *dY_row_pairs, *dS_key_pairs;
    Bf16Pair *P_words, *dS_words;
    uint32_t *K_pairs;
    float *Q_rows, *dY_rows;
    v16 lse[TILE_VECS], dot[TILE_VECS];
    int t0, t1, rows;
} TileGrads;

static HeadGrads head_grads(float *dqkv, uint16_t *dqkv_bf16, const float *datty, const float *atty,
                            const uint16_t *atty_bf16, const float *qkv, const uint16_t *qkv_bf16, const float *lse,
                            int b, int h, int T, int C, int NH) {
    const int hs = C / NH;
    const size_t row0 = (size_t)b * T;
    // With bf16 products q, k and v come from qkv_bf16 alone (qkv unread); the
    // gradients go to one of dqkv and dqkv_bf16 (the other NULL).
    const size_t at = head_at(b, h, T, C, NH);
    const float *q = qkv_bf16 ? NULL : qkv + at;
    const uint16_t *q2 = qkv_bf16 ? qkv_bf16 + at : NULL;
    float *dq = dqkv_bf16 ? NULL : dqkv + at;
    uint16_t *dq2 = dqkv_bf16 ? dqkv_bf16 + at : NULL;
    HeadGrads g = {.q = q,
                   .k = q ? q + C : NULL,
                   .v = q ? q + 2 * C : NULL,
                   .q2 = q2,
                   .k2 = q2 ? (const Bf16Pair *)(q2 + C) : NULL,
                   .v2 = q2 ? (const Bf16Pair *)(q2 + 2 * C) : NULL,
                   .dy = datty + row0 * C + h * hs,
                   .y = atty_bf16 ? NULL : atty + row0 * C + h * hs,
                   .y2 = atty_bf16 ? atty_bf16 + row0 * C + h * hs : NULL,
                   .lse = lse + ((size_t)b * NH + h) * T,
                   .dq = dq,
                   .dk = dq ? dq + C : NULL,
                   .dv = dq ? dq + 2 * C : NULL,
                   .dq2 = dq2,
                   .dk2 = dq2 ? dq2 + C : NULL,
                   .dv2 = dq2 ? dq2 + 2 * C : NULL,
                   .T = T,
                   .C = C,
                   .ld = 3 * C,
                   .hs = hs,
                   .hs_pad = (int)round_up((size_t)hs, LANES),
                   .scale = 1.0f / sqrtf((float)hs)};
    return g;
}

// The calling thread's scratch laid out for g (attention_scratch_floats).
static TileGrads tile_grads(const HeadGrads *g, float *scratch, int NH) {
    const int keys_max = (int)round_up((size_t)g->T, KEY_BLOCK);
    TileGrads w;
    w.Q = thread_scratch(scratch, g->T, g->C, NH);
    w.dY = w.Q + (size_t)g->hs * TILE_VECS;
    w.dQ = w.dY + (size_t)g->hs * TILE_VECS;
    w.P = w.dQ + (size_t)g->hs * TILE_VECS;
    w.dS = w.P + (size_t)KEY_CHUNK * TILE_VECS;
    w.Q_rows = (float *)(w.dS + (size_t)KEY_CHUNK * TILE_VECS);
    w.dY_rows = w.Q_rows + (size_t)ATT_BLOCK * g->hs_pad;
    w.dK = (v16 *)(w.dY_rows + (size_t)ATT_BLOCK * g->hs_pad);
    w.dV = w.dK + (size_t)keys_max * g->hs_pad / LANES;
    w.Q2 = (v16i *)(w.dV + (size_t)keys_max * g->hs_pad / LANES);
    w.dY2 = w.Q2 + (size_t)(g->hs / 2) * TILE_VECS;
    w.Q_row_pairs = w.dY2 + (size_t)(g->hs / 2) * TILE_VECS;
    w.dY_row_pairs = w.Q_row_pairs + (size_t)(ATT_BLOCK / 2) * g->hs_pad / LANES;
    w.dS_key_pairs = w.dY_row_pairs + (size_t)(ATT_BLOCK / 2) * g->hs_pad / LANES;
    w.P_words = (Bf16Pair *)(w.dS_key_pairs + (size_t)(KEY_CHUNK / 2) * TILE_VECS);
    w.dS_words = w.P_words + (size_t)KEY_CHUNK * (ATT_BLOCK / 2);
    w.K_pairs = (uint32_t *)(w.dS_words + (size_t)KEY_CHUNK * (ATT_BLOCK / 2));
    return w;
}

static void set_tile_rows(const HeadGrads *g, TileGrads *w, int t0) {
    w->t0 = t0;
    w->t1 = t0 + ATT_BLOCK < g->T ? t0 + ATT_BLOCK : g->T;
    w->rows = w->t1 - t0;
}

// Packs query tile [t0, t0 + ATT_BLOCK) and its per-query terms into w.
static void load_query_tile(const HeadGrads *g, TileGrads *w, int t0) {
    set_tile_rows(g, w, t0);
    // fp32 scales the queries; bf16 the scores (chunk_probabilities).
    pack_lanes(w->Q, g->q, g->q2, g->ld, t0, w->rows, g->hs, g->q2 ? 1.0f : g->scale);
    pack_lanes(w->dY, g->dy, NULL, g->C, t0, w->rows, g->hs, 1.0f);
    pack_rows(w->Q_rows, g->q, g->q2, g->ld, t0, w->rows, g->hs, g->hs_pad);
    pack_rows(w->dY_rows, g->dy, NULL, g->C, t0, w->rows, g->hs, g->hs_pad);
    if (g->k2) {
        pair_rows(w->Q2, w->Q, g->hs, TILE_VECS);
        pair_rows(w->dY2, w->dY, g->hs, TILE_VECS);
        pair_rows(w->Q_row_pairs, (const v16 *)w->Q_rows, ATT_BLOCK, g->hs_pad / LANES);
        pair_rows(w->dY_row_pairs, (const v16 *)w->dY_rows, ATT_BLOCK, g->hs_pad / LANES);
    }
    tile_dots(w->dot, w->dY, g->y, g->y2, g->C, t0, w->rows, g->hs);
    for (int v = 0; v < TILE_VECS; v++) w->lse[v] = SPLAT(0.0f);
    for (int i = 0; i < w->rows; i++) w->lse[i / LANES][i % LANES] = g->lse[t0 + i];
}

// The bf16 backward pass's P and dS of a chunk (chunk_probabilities: P
// from the scores in w->P, dS from dP in w->dS) straight into the layouts
// their products take: P's and dS's rows as words of two queries (row j's
// word w: queries 2w and 2w + 1) and dS as pairs of key rows (as pair_rows), two
// key rows at a time in registers, rows [0, KEY_BLOCK-rounded nkeys), 0 past
// each vector's live rows; P and dS are not stored as floats.
BF16_TARGET static void probabilities_as_bf16(const HeadGrads *g, TileGrads *w, int nkeys, bool diagonal) {
    const int rows = (int)round_up((size_t)nkeys, KEY_BLOCK);  // even
    const float sc2 = g->scale * LOG2_E;
    v16 lse[TILE_VECS], dot[TILE_VECS];
    int live[TILE_VECS];
    for (int v = 0; v < TILE_VECS; v++) {
        lse[v] = w->lse[v] * LOG2_E;
        dot[v] = w->dot[v];
        live[v] = live_rows(diagonal, v, nkeys);
    }
    for (int j = 0; j < rows; j += 2) {
        v16 p[2][TILE_VECS], ds[2][TILE_VECS];
        for (int r = 0; r < 2; r++)
            for (int v = 0; v < TILE_VECS; v++) {
                const size_t at = (size_t)(j + r) * TILE_VECS + v;
                p[r][v] = ds[r][v] = SPLAT(0.0f);
                if (j + r < live[v]) {
                    p[r][v] = w->P[at] * sc2 - lse[v];
                    exp2_coarse16(&p[r][v]);
                    ds[r][v] = p[r][v] * (w->dS[at] - dot[v]) * g->scale;
                }
            }
        for (int r = 0; r < 2; r++)
            for (int v = 0; v < TILE_VECS; v += 2) {
                const size_t at = (size_t)(j + r) * (ATT_BLOCK / 2) + (size_t)v * (LANES / 2);
                _mm512_storeu_si512(w->P_words + at,
                                    (__m512i)_mm512_cvtne2ps_pbh((__m512)p[r][v + 1], (__m512)p[r][v]));
                _mm512_storeu_si512(w->dS_words + at,
                                    (__m512i)_mm512_cvtne2ps_pbh((__m512)ds[r][v + 1], (__m512)ds[r][v]));
            }
        for (int v = 0; v < TILE_VECS; v++)
            interleave_bf16(&w->dS_key_pairs[(size_t)(j / 2) * TILE_VECS + v], &ds[0][v], &ds[1][v]);
    }
}

// The loaded tile against key chunk c0 (c0 < t1): P^T = exp(S^T - lse) and
// dS^T = P^T (dP^T - D) scale with dP^T = V dY^T, zero past the chunk's last
// key up to a whole KEY_BLOCK. Returns the chunk's keys.
static int chunk_probabilities(const HeadGrads *g, TileGrads *w, int c0) {
    const int nkeys = w->t1 - c0 < KEY_CHUNK ? w->t1 - c0 : KEY_CHUNK;
    const size_t pairs_at = (size_t)c0 * (g->ld / 2);
    const bool diagonal = c0 == w->t0;
    if (g->k2) {
        tile_scores(w->P, w->Q, w->Q2, NULL, g->k2 + pairs_at, g->ld, nkeys, g->hs, diagonal);
        tile_scores(w->dS, w->dY, w->dY2, NULL, g->v2 + pairs_at, g->ld, nkeys, g->hs, diagonal);
    } else {
        tile_scores(w->P, w->Q, NULL, g->k + (size_t)c0 * g->ld, NULL, g->ld, nkeys, g->hs, diagonal);
        tile_scores(w->dS, w->dY, NULL, g->v + (size_t)c0 * g->ld, NULL, g->ld, nkeys, g->hs, diagonal);
    }
    if (diagonal) mask_diagonal(w->P, nkeys);
    if (g->k2) {
        probabilities_as_bf16(g, w, nkeys, diagonal);
        return nkeys;
    }
    // A vector of queries at a time, as the forward pass: its live rows, then 0.
    for (int v = 0; v < TILE_VECS; v++) {
        const int live = live_rows(diagonal, v, nkeys);
        const v16 lse = w->lse[v], dot = w->dot[v];
        for (int j = 0; j < live; j++) {
            v16 *p = &w->P[(size_t)j * TILE_VECS + v], *ds = &w->dS[(size_t)j * TILE_VECS + v];
            *p -= lse;
            exp16(p);
            *ds = *p * (*ds - dot) * g->scale;
        }
        for (int j = live; j < nkeys; j++)
            w->P[(size_t)j * TILE_VECS + v] = w->dS[(size_t)j * TILE_VECS + v] = SPLAT(0.0f);
    }
    for (size_t i = (size_t)nkeys * TILE_VECS; i < round_up((size_t)nkeys, KEY_BLOCK) * TILE_VECS; i++)
        w->P[i] = w->dS[i] = SPLAT(0.0f);
    return nkeys;
}

// dV += P^T dY and dK += dS^T Q for the chunk's keys, into w's key rows from `row`.
static void add_key_grads(const HeadGrads *g, TileGrads *w, int row, int nkeys, bool diagonal) {
    const size_t at = (size_t)row * g->hs_pad / LANES;
    if (g->k2) {  // on bf16 pairs of queries (probabilities_as_bf16); the rows past nkeys, up to a KEY_BLOCK, are 0
        keys_times_tile_bf16(w->dV + at, w->P_words, w->dY_row_pairs, g->hs_pad, w->rows, nkeys, diagonal);
        keys_times_tile_bf16(w->dK + at, w->dS_words, w->Q_row_pairs, g->hs_pad, w->rows, nkeys, diagonal);
        return;
    }
    keys_times_tile(w->dV + at, w->P, w->dY_rows, g->hs_pad, w->rows, nkeys, diagonal);
    keys_times_tile(w->dK + at, w->dS, w->Q_rows, g->hs_pad, w->rows, nkeys, diagonal);
}

// dQ += dS K for key chunk c0.
static void add_query_grads(const HeadGrads *g, TileGrads *w, int c0, int nkeys, bool diagonal) {
    if (g->k2) {  // on bf16 pairs of keys (dS's: probabilities_as_bf16)
        pair_key_rows(w->K_pairs, (const uint16_t *)g->k2 + (size_t)c0 * g->ld, g->ld, nkeys, g->hs);
        lanes_times_key_pairs(w->dQ, w->dS_key_pairs, w->K_pairs, nkeys, g->hs, diagonal);
        return;
    }
    tile_lanes_times_rows(w->dQ, w->dS, g->k + (size_t)c0 * g->ld, g->ld, nkeys, g->hs, diagonal);
}

static void store_query_grads(const HeadGrads *g, const TileGrads *w) {
    const v16 ones[TILE_VECS] = {SPLAT(1.0f), SPLAT(1.0f), SPLAT(1.0f), SPLAT(1.0f)};
    unpack_lanes(g->dq, g->dq2, g->ld, w->t0, w->rows, g->hs, w->dQ, ones);
}

// Keys [first, first + count) of w's summed rows into dk and dv (or dk2 and dv2).
static void store_key_grads(const HeadGrads *g, const TileGrads *w, int first, int count) {
    const float *dK = (const float *)w->dK, *dV = (const float *)w->dV;
    for (int j = 0; g->dk2 && j < count; j++)
        for (int e = 0; e < g->hs; e += LANES) {  // rows of hs_pad: whole vectors
            const size_t at = (size_t)(first + j) * g->ld + e, len = (size_t)(g->hs - e < LANES ? g->hs - e : LANES);
            store_bf16(g->dk2 + at, &w->dK[((size_t)j * g->hs_pad + e) / LANES], len);
            store_bf16(g->dv2 + at, &w->dV[((size_t)j * g->hs_pad + e) / LANES], len);
        }
    for (int j = 0; g->dk && j < count; j++)
        for (int e = 0; e < g->hs; e++) {
            g->dk[(size_t)(first + j) * g->ld + e] = dK[(size_t)j * g->hs_pad + e];
            g->dv[(size_t)(first + j) * g->ld + e] = dV[(size_t)j * g->hs_pad + e];
        }
}

// A whole head in one thread: the query tiles in order, each against its key
// chunks in order, dk and dv summed over the tiles in w's rows.
static void backward_head(const HeadGrads *g, TileGrads *w) {
    memset(w->dK, 0, round_up((size_t)g->T, KEY_BLOCK) * g->hs_pad * 2 * sizeof(float));
    for (int t0 = 0; t0 < g->T; t0 += ATT_BLOCK) {
        load_query_tile(g, w, t0);
        for (size_t i = 0; i < (size_t)g->hs * TILE_VECS; i++) w->dQ[i] = SPLAT(0.0f);
        for (int c0 = 0; c0 < w->t1; c0 += KEY_CHUNK) {
            const int nkeys = chunk_probabilities(g, w, c0);
            add_key_grads(g, w, c0, nkeys, c0 == t0);
            add_query_grads(g, w, c0, nkeys, c0 == t0);
        }
        store_query_grads(g, w);
    }
    store_key_grads(g, w, 0, g->T);
}

// Every query tile of a head packed once, for the split path below, whose
// work items meet each tile many times: per tile, Q and dY lane-packed,
// their rows, and lse and D.
static size_t packed_tile_floats(const HeadGrads *g) {
    // Q2 and dY2, Q_row_pairs and dY_row_pairs
    const size_t pairs = g->k2 ? 2 * (size_t)(g->hs / 2) * ATT_BLOCK + ATT_BLOCK * (size_t)g->hs_pad : 0;
    return 2 * (size_t)g->hs * ATT_BLOCK + 2 * (size_t)ATT_BLOCK * g->hs_pad + pairs + 2 * ATT_BLOCK;
}

// Points w's Q, dY and their rows at packed tile `tile`; returns where its
// lse and D are kept (ATT_BLOCK floats each).
static float *packed_tile_pointers(const HeadGrads *g, float *packed, int tile, TileGrads *w) {
    float *at = packed + (size_t)tile * packed_tile_floats(g);
    w->Q = (v16 *)at;
    w->dY = w->Q + (size_t)g->hs * TILE_VECS;
    w->Q_rows = (float *)(w->dY + (size_t)g->hs * TILE_VECS);
    w->dY_rows = w->Q_rows + (size_t)ATT_BLOCK * g->hs_pad;
    w->Q2 = (v16i *)(w->dY_rows + (size_t)ATT_BLOCK * g->hs_pad);
    w->dY2 = w->Q2 + (g->k2 ? (size_t)(g->hs / 2) * TILE_VECS : 0);
    w->Q_row_pairs = w->dY2 + (g->k2 ? (size_t)(g->hs / 2) * TILE_VECS : 0);
    w->dY_row_pairs = w->Q_row_pairs + (g->k2 ? (size_t)(ATT_BLOCK / 2) * g->hs_pad / LANES : 0);
    return (float *)(w->dY_row_pairs + (g->k2 ? (size_t)(ATT_BLOCK / 2) * g->hs_pad / LANES : 0));
}

static void pack_tile(const HeadGrads *g, float *packed, int tile) {
    TileGrads w;
    float *terms = packed_tile_pointers(g, packed, tile, &w);
    load_query_tile(g, &w, tile * ATT_BLOCK);
    memcpy(terms, w.lse, sizeof w.lse);
    memcpy(terms + ATT_BLOCK, w.dot, sizeof w.dot);
}

// Points w at packed tile `tile` (its own dQ, P, dS, dK and dV stay w's).
static void use_packed_tile(const HeadGrads *g, float *packed, int tile, TileGrads *w) {
    const float *terms = packed_tile_pointers(g, packed, tile, w);
    set_tile_rows(g, w, tile * ATT_BLOCK);
    memcpy(w->lse, terms, sizeof w->lse);
    memcpy(w->dot, terms + ATT_BLOCK, sizeof w->dot);
}

// The same sums split in two, for heads too few for the threads: dk and dv of
// key chunk c0 (over the query tiles from c0 on, in order), and dq of the
// tile at t0 (over its key chunks, in order). Each computes its tiles'
// probabilities again; the bits are backward_head's.
static void backward_key_chunk(const HeadGrads *g, TileGrads *w, float *packed, int c0) {
    // The rows keys_times_tile writes: the chunk's keys up to a whole KEY_BLOCK (within the scratch's T rows).
    const size_t rows = round_up((size_t)(g->T - c0 < KEY_CHUNK ? g->T - c0 : KEY_CHUNK), KEY_BLOCK);
    memset(w->dK, 0, rows * g->hs_pad * sizeof(float));
    memset(w->dV, 0, rows * g->hs_pad * sizeof(float));
    int count = 0;
    for (int t0 = c0; t0 < g->T; t0 += ATT_BLOCK) {
        use_packed_tile(g, packed, t0 / ATT_BLOCK, w);
        count = chunk_probabilities(g, w, c0);
        add_key_grads(g, w, 0, count, c0 == t0);
    }
    store_key_grads(g, w, c0, count);
}

static void backward_query_tile(const HeadGrads *g, TileGrads *w, float *packed, int t0) {
    use_packed_tile(g, packed, t0 / ATT_BLOCK, w);
    for (size_t i = 0; i < (size_t)g->hs * TILE_VECS; i++) w->dQ[i] = SPLAT(0.0f);
    for (int c0 = 0; c0 < w->t1; c0 += KEY_CHUNK) {
        const int nkeys = chunk_probabilities(g, w, c0);
        add_query_grads(g, w, c0, nkeys, c0 == t0);
    }
    store_query_grads(g, w);
}

// The split path over B x NH heads of T queries: every tile packed once (in
// a buffer of its own, as this path runs only for a few heads), then the key
// chunks (chunk 0, which meets every tile, first), then the query tiles (the
// last, which meets every chunk, first).
static void backward_split(float *dqkv, uint16_t *dqkv_bf16, const float *datty, const float *atty,
                           const uint16_t *atty_bf16, const float *qkv, const uint16_t *qkv_bf16, const float *lse,
                           float *scratch, int B, int T, int C, int NH, int threads) {
    const int tiles = (T + ATT_BLOCK - 1) / ATT_BLOCK;
    const HeadGrads shape = head_grads(dqkv, dqkv_bf16, datty, atty, atty_bf16, qkv, qkv_bf16, lse, 0, 0, T, C, NH);
    const size_t per_head = (size_t)tiles * packed_tile_floats(&shape);
    // 64-byte aligned for the vectors (every packed part is a multiple of 16 floats).
    float *packed = aligned_alloc(64, round_up((size_t)B * NH * per_head * sizeof(float), 64));
    if (!packed) die("out of memory for the attention's packed queries");
#pragma omp parallel for collapse(3) schedule(static) num_threads(threads)
    for (int tile = 0; tile < tiles; tile++)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const HeadGrads g =
                    head_grads(dqkv, dqkv_bf16, datty, atty, atty_bf16, qkv, qkv_bf16, lse, b, h, T, C, NH);
                pack_tile(&g, packed + ((size_t)b * NH + h) * per_head, tile);
            }
#pragma omp parallel for collapse(3) schedule(dynamic, 1) num_threads(threads)
    for (int chunk = 0; chunk < tiles; chunk++)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const HeadGrads g =
                    head_grads(dqkv, dqkv_bf16, datty, atty, atty_bf16, qkv, qkv_bf16, lse, b, h, T, C, NH);
                TileGrads w = tile_grads(&g, scratch, NH);
                backward_key_chunk(&g, &w, packed + ((size_t)b * NH + h) * per_head, chunk * KEY_CHUNK);
            }
#pragma omp parallel for collapse(3) schedule(dynamic, 1) num_threads(threads)
    for (int tile = tiles - 1; tile >= 0; tile--)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const HeadGrads g =
                    head_grads(dqkv, dqkv_bf16, datty, atty, atty_bf16, qkv, qkv_bf16, lse, b, h, T, C, NH);
                TileGrads w = tile_grads(&g, scratch, NH);
                backward_query_tile(&g, &w, packed + ((size_t)b * NH + h) * per_head, tile * ATT_BLOCK);
            }
    free(packed);
}

// dqkv (overwritten) from datty; recomputes probabilities from lse. A head per
// thread; with fewer than half as many heads as threads, which would leave
// cores idle, key chunks and query tiles per thread instead (the
// probabilities computed twice, 7 products for 5: one head of 64 at T 1024
// or 4096 runs 1.2x faster on 2 threads than on 1; more threads share it
// finer).
void attention_backward(float *dqkv, const float *datty, const float *atty, const float *qkv, const float *lse,
                        float *scratch, int B, int T, int C, int NH, int threads) {
    attention_backward_bf16(dqkv, NULL, datty, atty, NULL, qkv, NULL, lse, scratch, B, T, C, NH, threads);
}

void attention_backward_bf16(float *dqkv, uint16_t *dqkv_bf16, const float *datty, const float *atty,
                             const uint16_t *atty_bf16, const float *qkv, const uint16_t *qkv_bf16, const float *lse,
                             float *scratch, int B, int T, int C, int NH, int threads) {
    if (2 * B * NH <= threads) {
        backward_split(dqkv, dqkv_bf16, datty, atty, atty_bf16, qkv, qkv_bf16, lse, scratch, B, T, C, NH, threads);
        return;
    }
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const HeadGrads g = head_grads(dqkv, dqkv_bf16, datty, atty, atty_bf16, qkv, qkv_bf16, lse, b, h, T, C, NH);
            TileGrads w = tile_grads(&g, scratch, NH);
            backward_head(&g, &w);
        }
}

// Softmax + cross-entropy: losses[n] = lse(logits[n]) - logits[n][target];
// logits are replaced by the probabilities. Returns the mean loss.
double softmax_crossentropy_forward(float *logits, float *losses, const uint16_t *targets, int N, int V, int threads) {
#pragma omp parallel for num_threads(threads)
    for (int n = 0; n < N; n++) {
        float *z = logits + (size_t)n * V;
        v16 mx_lanes = SPLAT(-INFINITY), sum_lanes = SPLAT(0.0f);
        for (int i = 0; i < V; i += LANES) {
            v16 v;
            load_partial(&v, z + i, (size_t)(V - i < LANES ? V - i : LANES), -INFINITY);
            mx_lanes = SELECT16(v > mx_lanes, v, mx_lanes);
        }
        float mx = -INFINITY;
        for (int l = 0; l < LANES; l++) mx = mx_lanes[l] > mx ? mx_lanes[l] : mx;
        const float target_logit = z[targets[n]];
        for (int i = 0; i < V; i += LANES) {
            const int len = V - i < LANES ? V - i : LANES;
            v16 v;
            load_partial(&v, z + i, (size_t)len, -INFINITY);  // e^-inf = 0 adds nothing
            v -= mx;
            exp16(&v);
            sum_lanes += v;
            store_partial(z + i, &v, (size_t)len);
        }
        float sum = 0.0f;
        for (int l = 0; l < LANES; l++) sum += sum_lanes[l];
        losses[n] = mx + logf(sum) - target_logit;
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int i = 0; i < V; i++) z[i] *= inv;
    }
    double total = 0.0;
    for (int n = 0; n < N; n++) total += losses[n];
    return total / N;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// dlogits = (probs - onehot(target)) * scale, in place.
void softmax_crossentropy_backward(float *probs, const uint16_t *targets, int N, int V, float scale, int threads) {
#pragma omp parallel for num_threads(threads)
    for (int n = 0; n < N; n++) {
        float *p = probs + (size_t)n * V;
        p[targets[n]] -= 1.0f;
        for (int i = 0; i < V; i++) p[i] *= scale;
    }
}

// Lanes [i, i + len) of the loss's gradient in row p: minus 1 at the target
// (minus 0, exact, elsewhere), then the scale: softmax_crossentropy_backward's bits.
static inline __attribute__((always_inline)) void loss_gradient_lanes(v16 *x, const float *p, int i, size_t len,
                                                                      int target, float scale) {
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    load_partial(x, p + i, len, 0.0f);
    *x = (*x - SELECT16(lane + i == target, SPLAT(1.0f), SPLAT(0.0f))) * scale;
}

// Row p's gradient on a CPU with AVX512-BF16: whole vectors rounded by
// vcvtneps2bf16 (util/bf16_simd.h: the same bits), the rest on the bits.
BF16_TARGET static void loss_gradient_row_bf16(uint16_t *out, const float *p, int V, int target, float scale) {
    const int full = V / LANES * LANES;
    const bool check = !results_flushed_to_zero();
    v16 x;
    for (int i = 0; i < full; i += LANES) {
        loss_gradient_lanes(&x, p, i, LANES, target, scale);
        store16_bf16(out + i, (const __m512 *)&x, check);
    }
    if (full < V) {
        loss_gradient_lanes(&x, p, full, (size_t)(V - full), target, scale);
        store_bf16(out + full, &x, (size_t)(V - full));
    }
}

void softmax_crossentropy_backward_bf16(uint16_t *dlogits, const float *probs, const uint16_t *targets, int N, int V,
                                        float scale, int threads) {
    const bool fast = cpu_has_avx512_bf16();
#pragma omp parallel for num_threads(threads)
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * V;
        if (fast) {
            loss_gradient_row_bf16(dlogits + (size_t)n * V, p, V, targets[n], scale);
            continue;
        }
        for (int i = 0; i < V; i += LANES) {
            const size_t len = V - i < LANES ? (size_t)(V - i) : LANES;
            v16 x;
            loss_gradient_lanes(&x, p, i, len, targets[n], scale);
            store_bf16(dlogits + (size_t)n * V + i, &x, len);
        }
    }
}
