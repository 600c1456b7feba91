// Our own fp32 matrix products for AVX-512 (gemm_avx512.h).
//
// The design, as OpenBLAS's and BLIS's (Goto's): C is computed in tiles of
// 6 rows x 64 columns held in 24 vector registers, each a running sum over a
// block of 256 steps of k. A step loads one row of B's 64 columns (4
// vectors) and broadcasts 6 elements of op(A): 24 FMAs for 10 loads, enough
// for the 2 FMA units, with 24 independent sums to cover their latency.
//
// What differs: A is packed only where it is transposed. Not transposed, a
// tile's 6 elements of A per step are read where they are, from 6 rows of
// A, which the hardware prefetchers follow. OpenBLAS packs both operands and
// zeroes C first when beta is 0 (those passes 11.8% of an `xs` training
// step, perf). B is packed because its rows are ldb apart: 256 of them with
// ldb = 768 fall into 4 of the L1 cache's 64 sets and evict each other (the
// kernel at 4/5 of its speed reading B in place).
//
// With A transposed (the weight gradients, dout^T x inp) op(A)'s rows are 1
// apart and its steps a row of A apart, where they fall into few L1 sets
// the same way. Two things make these products as fast as OpenBLAS's (on 2
// threads, operands cold, 400-450 GFLOP/s at `xs`'s shapes, 0.99x-1.07x
// OpenBLAS's speed, where they ran at 0.71x-0.90x): their tiles run from a
// copy of the code compiled for rows 1 apart (panel_tiles_packed_a: compiled
// for any distance, the compiler kept one of the 24 sums on the stack, a
// store and a load every step, and a weight gradient ran 1.16x-1.25x slower
// alone); and, as in the bf16 kernel (gemm_bf16_avx512.c), a block's rows
// of A^T are copied to rows an odd number of cache lines apart, whose steps
// spread over every L1 set (on 2 threads 1.00x-1.07x faster than read in
// place; copied tile by tile, each step's 6 elements side by side, as
// fast). How the threads share a weight gradient is blas.c's choice.
//
// Every element of C sums its k products in the same order whatever the
// thread split, so the result does not depend on the thread count.
#include "util/gemm_avx512.h"

#include <stddef.h>
#include <string.h>

#ifdef __AVX512F__
#include <immintrin.h>

#include "util/gemm_tile.h"
#include "util/util.h"
#include "util/vec16.h"

enum {
    TILE_ROWS = GEMM_TILE_ROWS,  // rows of C per tile (util/gemm_tile.h)
    PANEL = 64,                  // columns of C per tile, and of B per packed panel (4 vectors)
    BLOCK_K = GEMM_F32_BLOCK_K,  // steps of k per block: a packed panel, 64 KiB, stays in L2 over its block
    BLOCK_ROWS = 384,            // rows of A per block: 6 x 256 floats per tile, 384 KiB of A in L2 per block
    // Floats between two steps of a packed block of A^T beyond its rows: an
    // odd number of cache lines apart (25 for 384 rows).
    A_PAD = 16
};

bool gemm_avx512_suits(const Gemm *g) { return g->n >= 32 && g->m >= 1 && g->k >= 1; }

// Rows [p0, p0 + kc) of op(B) (k x n) into panels of PANEL columns:
// out[(j / PANEL) * kc * PANEL + p * PANEL + j % PANEL] = op(B)[p0 + p][j],
// and 0 past column n, so that every tile runs on whole vectors.
static void pack_b(float *out, const Gemm *g, int p0, int kc) {
    const int n = g->n, panels_n = (n + PANEL - 1) / PANEL;
    const size_t ldb = (size_t)g->ldb;
    for (int panel = 0; panel < panels_n; panel++) {
        float *dst = out + (size_t)panel * kc * PANEL;
        const int j0 = panel * PANEL, cols = n - j0 < PANEL ? n - j0 : PANEL;
        if (!g->trans_b) {
            // Vector by vector, masked past column n (memcpy's call per row took twice as long).
            __mmask16 columns[4];
            for (int v = 0; v < 4; v++) columns[v] = first_lanes(cols - v * 16);
            for (int p = 0; p < kc; p++) {
                const float *src = g->B + (size_t)(p0 + p) * ldb + j0;
                for (int v = 0; v < 4; v++)
                    _mm512_store_ps(dst + (size_t)p * PANEL + v * 16, _mm512_maskz_loadu_ps(columns[v], src + v * 16));
            }
            continue;
        }
        // B stored n x k: 16 x 16 blocks transposed in registers, and the
        // partial blocks at the edges element by element.
        int p = 0;
        for (; p + LANES <= kc; p += LANES)
            for (int c = 0; c < PANEL; c += LANES) {
                float *block = dst + (size_t)p * PANEL + c;
                if (c + LANES <= cols) {
                    transpose16_copy(block, PANEL * sizeof(float), g->B + (size_t)(j0 + c) * ldb + p0 + p,
                                     ldb * sizeof(float));
                    continue;
                }
                for (int r = 0; r < LANES; r++)
                    for (int i = 0; i < LANES; i++)
                        block[(size_t)r * PANEL + i] =
                            c + i < cols ? g->B[(size_t)(j0 + c + i) * ldb + p0 + p + r] : 0.0f;
            }
        for (; p < kc; p++)
            for (int i = 0; i < PANEL; i++)
                dst[(size_t)p * PANEL + i] = i < cols ? g->B[(size_t)(j0 + i) * ldb + p0 + p] : 0.0f;
    }
}

// Rows [i0, i1) of op(A) = A^T, steps [p0, p0 + kc): out[p * ld + i - i0]
// = op(A)[i][p0 + p], that is A's row p0 + p, columns [i0, i1), copied.
static void pack_a_transposed(float *out, size_t ld, const Gemm *g, int p0, int kc, int i0, int i1) {
    for (int p = 0; p < kc; p++)
        memcpy(out + (size_t)p * ld, g->A + (size_t)(p0 + p) * g->lda + i0, (size_t)(i1 - i0) * sizeof(float));
}

// One tile: rows C[0, rows) (ldc apart), 64 columns of which `columns` (a
// mask per vector) are stored, from kc steps. a_row and a_step: how far apart
// op(A)'s rows and its steps are. The first block of k (first) writes
// alpha sum + beta C, reading C only where beta is not 0; later ones add
// alpha sum. Inlined with rows constant, so the sums are registers.
//
// next_a, unless NULL: the next tile's rows of A, read in place, which the
// first steps fetch into L1 a cache line a step. A tile of the first panel
// meets its rows of A cold: at `tiny`'s shapes (C 64 wide, one panel) the
// forward and d(input) products ran 1.12x-1.14x faster with it, operands
// cold (dev/gemm_bench.c's shapes; `xs`'s 1.00x), though a training step,
// whose operands are often warm, gained nothing measurable. (A prefetch never
// faults, so rows past the last do no harm.)
static inline __attribute__((always_inline)) void tile(int rows, int kc, const float *a, size_t a_row, size_t a_step,
                                                       const float *panel, float *c, size_t ldc,
                                                       const __mmask16 columns[4], float alpha, float beta, bool first,
                                                       const float *next_a) {
    __m512 sum[TILE_ROWS][4];
#pragma GCC unroll 6
    for (int i = 0; i < TILE_ROWS; i++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) sum[i][v] = _mm512_setzero_ps();
    const int prefetches = next_a ? TILE_ROWS * ((kc + LANES - 1) / LANES) : 0;
    for (int p = 0; p < kc; p++) {
        if (p < prefetches)  // line p / 6 of row p % 6
            _mm_prefetch((const char *)(next_a + (p % TILE_ROWS) * a_row + (p / TILE_ROWS) * LANES), _MM_HINT_T0);
        const float *b = panel + (size_t)p * PANEL;
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), b2 = _mm512_load_ps(b + 32),
                     b3 = _mm512_load_ps(b + 48);
        const float *ap = a + (size_t)p * a_step;
#pragma GCC unroll 6
        for (int i = 0; i < TILE_ROWS; i++)
            if (i < rows) {
                const __m512 ai = _mm512_set1_ps(ap[i * a_row]);
                sum[i][0] = _mm512_fmadd_ps(ai, b0, sum[i][0]);
                sum[i][1] = _mm512_fmadd_ps(ai, b1, sum[i][1]);
                sum[i][2] = _mm512_fmadd_ps(ai, b2, sum[i][2]);
                sum[i][3] = _mm512_fmadd_ps(ai, b3, sum[i][3]);
            }
    }
    store_tile(sum, rows, c, ldc, columns, alpha, first ? beta : 1.0f, !first || beta != 0.0f);
}

// Every tile of one panel over rows [i0, i1) of C: whole tiles, then one of
// the rows left (a tile per row count, each with its sums in registers).
// Tile t finds its element (r, p) of op(A) at a + t * tile_step + r * a_row +
// p * a_step; cold_a: A is read along its rows and this is the block's first
// panel (tile's next_a). Inlined into the two callers below, each with its
// own constant strides.
static inline __attribute__((always_inline)) void panel_tiles(const Gemm *g, const float *a, size_t tile_step,
                                                              size_t a_row, size_t a_step, bool cold_a, int i0, int i1,
                                                              int kc, const float *panel, int j0, bool first) {
    const size_t ldc = (size_t)g->ldc;
    __mmask16 columns[4];
    for (int v = 0; v < 4; v++) columns[v] = first_lanes(g->n - j0 - v * 16);
    const float alpha = g->alpha, beta = g->beta;
    int i = i0;
    const int cols = g->n - j0 < PANEL ? g->n - j0 : PANEL;
    for (; i + TILE_ROWS <= i1; i += TILE_ROWS, a += tile_step) {
        const int next = i1 - (i + TILE_ROWS);  // rows of the next tile
        if (next > 0)
            prefetch_for_writing(g->C + (i + TILE_ROWS) * ldc + j0, ldc, next < TILE_ROWS ? next : TILE_ROWS, cols);
        tile(TILE_ROWS, kc, a, a_row, a_step, panel, g->C + i * ldc + j0, ldc, columns, alpha, beta, first,
             cold_a && next > 0 ? a + tile_step : NULL);
    }
    float *c = g->C + i * ldc + j0;
    switch (i1 - i) {
    case 5: tile(5, kc, a, a_row, a_step, panel, c, ldc, columns, alpha, beta, first, NULL); break;
    case 4: tile(4, kc, a, a_row, a_step, panel, c, ldc, columns, alpha, beta, first, NULL); break;
    case 3: tile(3, kc, a, a_row, a_step, panel, c, ldc, columns, alpha, beta, first, NULL); break;
    case 2: tile(2, kc, a, a_row, a_step, panel, c, ldc, columns, alpha, beta, first, NULL); break;
    case 1: tile(1, kc, a, a_row, a_step, panel, c, ldc, columns, alpha, beta, first, NULL); break;
    default: break;
    }
}

// A panel's tiles reading A in place (rows lda apart, steps 1), and reading
// the packed A^T (rows 1 apart, steps ld), each compiled for its own
// constants (above: with op(A)'s rows a variable distance apart one sum
// lived on the stack).
static void panel_tiles_in_place(const Gemm *g, const float *a, bool cold_a, int i0, int i1, int kc, const float *panel,
                                 int j0, bool first) {
    const size_t lda = (size_t)g->lda;
    panel_tiles(g, a, TILE_ROWS * lda, lda, 1, cold_a, i0, i1, kc, panel, j0, first);
}
static void panel_tiles_packed_a(const Gemm *g, const float *packed_a, size_t ld, int i0, int i1, int kc,
                                 const float *panel, int j0, bool first) {
    panel_tiles(g, packed_a, TILE_ROWS, 1, ld, false, i0, i1, kc, panel, j0, first);
}

void gemm_avx512(const Gemm *g) {
    const int panels_n = (g->n + PANEL - 1) / PANEL;
    const int block_k = g->k < BLOCK_K ? g->k : BLOCK_K;
    const size_t a_ld = round_up((size_t)(g->m < BLOCK_ROWS ? g->m : BLOCK_ROWS), 32) + A_PAD;
    const size_t b_floats = (size_t)panels_n * block_k * PANEL;
    float *packed_b = gemm_scratch((b_floats + (g->trans_a ? (size_t)block_k * a_ld : 0)) * sizeof(float));
    float *packed_a = packed_b + b_floats;
    for (int p0 = 0; p0 < g->k; p0 += BLOCK_K) {
        const int kc = g->k - p0 < BLOCK_K ? g->k - p0 : BLOCK_K;
        pack_b(packed_b, g, p0, kc);
        for (int i0 = 0; i0 < g->m; i0 += BLOCK_ROWS) {
            const int i1 = g->m - i0 < BLOCK_ROWS ? g->m : i0 + BLOCK_ROWS;
            if (g->trans_a) pack_a_transposed(packed_a, a_ld, g, p0, kc, i0, i1);
            for (int panel = 0; panel < panels_n; panel++) {
                const float *panel_b = packed_b + (size_t)panel * kc * PANEL;
                if (g->trans_a) panel_tiles_packed_a(g, packed_a, a_ld, i0, i1, kc, panel_b, panel * PANEL, p0 == 0);
                else
                    panel_tiles_in_place(g, g->A + (size_t)i0 * g->lda + p0, panel == 0, i0, i1, kc, panel_b,
                                         panel * PANEL, p0 == 0);
            }
        }
    }
}

#else  // a build without AVX-512: OpenBLAS computes every product

bool gemm_avx512_suits(const Gemm *g) {
    (void)g;
    return false;
}
void gemm_avx512(const Gemm *g) { (void)g; }

#endif
