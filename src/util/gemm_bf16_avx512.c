// Our own bf16 matrix products for AVX512-BF16 (gemm_bf16_avx512.h).
//
// The fp32 kernel's design (gemm_avx512.c): tiles of 6 rows x 64 columns of C
// in 24 vector registers of fp32 sums, B packed in panels of 64 columns, A
// read in place. What bf16 changes is the step: vdpbf16ps adds to each lane
// the products of a *pair* of bf16 (two consecutive steps of k), so a step
// of the tile covers two of k. B is packed as pairs: a panel's row q holds,
// for each of its 64 columns, the 32-bit word of op(B)[2q][j] (low half) and
// op(B)[2q + 1][j] (high half), four vectors; op(A)'s pair for row i is the
// same kind of word, broadcast. Not transposed, A's row holds its pairs in
// place (two consecutive bf16); transposed (the weight gradients, dout^T x
// inp), the two halves of a word lie in two rows of A, so a block of A is
// packed as well, by the same interleaving of two rows as B's.
//
// An odd k leaves the last step without its partner: the packed operands hold
// zero there, and the tile's last step reads A's lone bf16 alone (A's next
// element may be past its end).
//
// However vdpbf16ps rounds its pair (Intel documents two fp32 additions; the
// products of bf16 are exact), every element sums its k products in one fixed
// order, pairs in order of k and blocks of 512 steps in order, whatever the
// thread split: the same bits for any thread count.
#include "util/gemm_bf16_avx512.h"

#include <string.h>

#include "util/util.h"

#ifdef __x86_64__
#include "util/bf16_simd.h"
#include "util/gemm_tile.h"
#include "util/vec16.h"

enum {
    TILE_ROWS = GEMM_TILE_ROWS,   // rows of C per tile (util/gemm_tile.h)
    PANEL = 64,                   // columns of C per tile, and of B per packed panel (4 vectors of 16 words)
    BLOCK_K = GEMM_BF16_BLOCK_K,  // steps of k per block (256 pairs): a packed panel, 64 KiB, stays in L2 over it
    BLOCK_ROWS = 384,             // rows of C per block: 6 x 512 bf16 per tile, 384 KiB of A in L2 per block
    // Words between two pairs of a packed block of A^T beyond its rows: an
    // odd number of cache lines apart (25 for 384 rows), so that a tile's
    // steps spread over every set of L1 (an even number would fall into few).
    A_PAD = 16
};

// out[c] = first[c] | second[c] << 16 for c < cols (second NULL: zeros), and
// 0 up to the next multiple of 32: two rows of bf16 interleaved into pairs.
BF16_TARGET static void interleave_rows(uint32_t *out, const uint16_t *first, const uint16_t *second, int cols) {
    // Word w of the low half takes element w of each row, of the high half element 16 + w.
    const __m512i low = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6, 37,
                                         5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0),
                  high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
    for (int c = 0; c < cols; c += 32) {
        const int left = cols - c;
        const __mmask32 lanes = left >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << left) - 1);
        const __m512i a = _mm512_maskz_loadu_epi16(lanes, first + c),
                      b = second ? _mm512_maskz_loadu_epi16(lanes, second + c) : _mm512_setzero_si512();
        _mm512_storeu_si512(out + c, _mm512_permutex2var_epi16(a, low, b));
        _mm512_storeu_si512(out + c + 16, _mm512_permutex2var_epi16(a, high, b));
    }
}

// The word of op(B)'s steps (p, p + 1) in column j, 0 past k's end: B stored
// n x k (transposed), both bf16 in B's row j.
static uint32_t word_of_row(const uint16_t *row, int p, int k_end) {
    const uint32_t second = p + 1 < k_end ? row[p + 1] : 0;
    return p < k_end ? row[p] | second << 16 : 0;
}

// Steps [p0, p0 + kc) of op(B) (k x n) into panels of PANEL columns, pairs
// of steps as words: out[(j / PANEL) * pairs * PANEL + q * PANEL + j % PANEL]
// holds op(B)[p0 + 2q][j] and op(B)[p0 + 2q + 1][j], pairs = (kc + 1) / 2;
// 0 past column n and past step kc.
BF16_TARGET static void pack_b(uint32_t *out, const GemmBf16 *g, int p0, int kc) {
    const int n = g->n, panels_n = (n + PANEL - 1) / PANEL, pairs = (kc + 1) / 2;
    const size_t ldb = (size_t)g->ldb;
    for (int panel = 0; panel < panels_n; panel++) {
        uint32_t *dst = out + (size_t)panel * pairs * PANEL;
        const int j0 = panel * PANEL, cols = n - j0 < PANEL ? n - j0 : PANEL;
        if (!g->trans_b) {
            for (int q = 0; q < pairs; q++) {
                const uint16_t *row = g->B + (size_t)(p0 + 2 * q) * ldb + j0;
                interleave_rows(dst + (size_t)q * PANEL, row, 2 * q + 1 < kc ? row + ldb : NULL, cols);
                if (cols <= 32) memset(dst + (size_t)q * PANEL + 32, 0, 32 * sizeof(uint32_t));
            }
            continue;
        }
        // B stored n x k: a row of B holds column j's words in order, so 16 x
        // 16 blocks of words transposed in registers, the edges word by word.
        int q = 0;
        for (; 2 * (q + LANES) <= kc; q += LANES)
            for (int c = 0; c < PANEL; c += LANES) {
                uint32_t *block = dst + (size_t)q * PANEL + c;
                if (c + LANES <= cols) {
                    transpose16_copy(block, PANEL * sizeof(uint32_t), g->B + (size_t)(j0 + c) * ldb + p0 + 2 * q,
                                     ldb * sizeof(uint16_t));
                    continue;
                }
                for (int r = 0; r < LANES; r++)
                    for (int i = 0; i < LANES; i++)
                        block[(size_t)r * PANEL + i] =
                            c + i < cols ? word_of_row(g->B + (size_t)(j0 + c + i) * ldb + p0, 2 * (q + r), kc) : 0;
            }
        for (; q < pairs; q++)
            for (int i = 0; i < PANEL; i++)
                dst[(size_t)q * PANEL + i] = i < cols ? word_of_row(g->B + (size_t)(j0 + i) * ldb + p0, 2 * q, kc) : 0;
    }
}

// Rows [i0, i1) of op(A) = A^T, steps [p0, p0 + kc), as words: out[q * ld +
// i - i0] holds op(A)[i][p0 + 2q] and op(A)[i][p0 + 2q + 1], that is A's rows
// p0 + 2q and p0 + 2q + 1 interleaved.
BF16_TARGET static void pack_a_transposed(uint32_t *out, size_t ld, const GemmBf16 *g, int p0, int kc, int i0, int i1) {
    const size_t lda = (size_t)g->lda;
    for (int q = 0; q < (kc + 1) / 2; q++) {
        const uint16_t *row = g->A + (size_t)(p0 + 2 * q) * lda + i0;
        interleave_rows(out + q * ld, row, 2 * q + 1 < kc ? row + lda : NULL, i1 - i0);
    }
}

// The word at a: two bf16, the one at a in its low half.
static inline uint32_t load_word(const uint16_t *a) {
    uint32_t w;
    memcpy(&w, a, sizeof w);
    return w;
}

// One step of a tile: the pair of steps whose packed row of B is at b, and
// whose word of op(A)'s row r is at ap + r * a_row; or, lone, the last step
// of an odd k alone (A's element after it may lie past its end).
BF16_TARGET static inline __attribute__((always_inline)) void tile_step(__m512 sum[TILE_ROWS][4], int rows,
                                                                        const uint32_t *b, const uint16_t *ap,
                                                                        size_t a_row, bool lone) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16),
                   b2 = (__m512bh)_mm512_load_si512(b + 32), b3 = (__m512bh)_mm512_load_si512(b + 48);
#pragma GCC unroll 6
    for (int i = 0; i < TILE_ROWS; i++)
        if (i < rows) {
            const uint32_t word = lone ? ap[i * a_row] : load_word(ap + i * a_row);
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)word);
            sum[i][0] = _mm512_dpbf16_ps(sum[i][0], ai, b0);
            sum[i][1] = _mm512_dpbf16_ps(sum[i][1], ai, b1);
            sum[i][2] = _mm512_dpbf16_ps(sum[i][2], ai, b2);
            sum[i][3] = _mm512_dpbf16_ps(sum[i][3], ai, b3);
        }
}

// The tile's sums rounded to bf16 into c16 (the product's C_bf16: one block
// of k, beta 0). Every sum is an output of vdpbf16ps, which flushes subnormal
// results to zero, so vcvtneps2bf16 (which would take one as zero) rounds
// each as bf16_from_float does: the bits of round_to_bf16 of fp32 C.
BF16_TARGET static inline __attribute__((always_inline)) void store_tile_bf16(__m512 sum[TILE_ROWS][4], int rows,
                                                                              uint16_t *c16, size_t ldc,
                                                                              const __mmask16 columns[4]) {
#pragma GCC unroll 6
    for (int i = 0; i < TILE_ROWS; i++)
        if (i < rows)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                _mm256_mask_storeu_epi16(c16 + i * ldc + v * 16, columns[v], (__m256i)_mm512_cvtneps_pbh(sum[i][v]));
}

// One tile: rows C[0, rows) (ldc apart), 64 columns of which `columns` (a
// mask per vector) are stored, from kc steps. Element (r, 2q) of op(A) is at
// a[r * a_row + q * a_step], its pair's partner right after it. The first
// block of k (first) writes sum + beta C, reading C only where beta is not 0;
// later ones add the sum to C; or, c16 not NULL, the sum goes there rounded
// (store_tile_bf16). Inlined with rows constant, so the sums are registers.
//
// next_a, unless NULL: the next tile's rows of A, read in place, which the
// first steps fetch into L1 a cache line a step. A tile of the first panel
// meets its rows of A cold, and at `tiny`'s shapes (C 64 wide, one panel)
// waited on them: the d(input) products with k of 192-512 1.2x-1.8x faster
// with it (cold operands, 2 threads; those with k = 64 and the forward ones
// 0.85x-1.15x, within the noise). (A prefetch never faults, so rows past the
// last do no harm.)
BF16_TARGET static inline __attribute__((always_inline)) void tile(int rows, int kc, const uint16_t *a, size_t a_row,
                                                                   size_t a_step, const uint32_t *panel, float *c,
                                                                   uint16_t *c16, size_t ldc,
                                                                   const __mmask16 columns[4], float beta, bool first,
                                                                   const uint16_t *next_a) {
    __m512 sum[TILE_ROWS][4];
#pragma GCC unroll 6
    for (int i = 0; i < TILE_ROWS; i++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) sum[i][v] = _mm512_setzero_ps();
    const int pairs = kc / 2;
    const int lines = (int)((kc * sizeof(uint16_t) + 63) / 64), prefetches = next_a ? TILE_ROWS * lines : 0;
    for (int q = 0; q < pairs; q++) {
        if (q < prefetches)  // line q / 6 of row q % 6
            _mm_prefetch((const char *)(next_a + (q % TILE_ROWS) * a_row + (q / TILE_ROWS) * 32), _MM_HINT_T0);
        tile_step(sum, rows, panel + (size_t)q * PANEL, a + (size_t)q * a_step, a_row, false);
    }
    if (kc & 1) tile_step(sum, rows, panel + (size_t)pairs * PANEL, a + (size_t)pairs * a_step, a_row, true);
    if (c16) store_tile_bf16(sum, rows, c16, ldc, columns);
    else store_tile(sum, rows, c, ldc, columns, 1.0f, 1.0f, !first || beta != 0.0f);  // beta is 0 or 1
}

// Row i, column j of C, or of C_bf16 (c16) where the product rounds it;
// the other NULL.
static float *c_at(const GemmBf16 *g, int i, int j) { return g->C ? g->C + (size_t)i * g->ldc + j : NULL; }
static uint16_t *c16_at(const GemmBf16 *g, int i, int j) {
    return g->C_bf16 ? g->C_bf16 + (size_t)i * g->ldc + j : NULL;
}

// Rows [i, i + rows) of C (or C_bf16), `cols` columns from j, fetched for
// writing (prefetch_for_writing, util/vec16.h).
static void prefetch_c(const GemmBf16 *g, int i, int j, int rows, int cols) {
    if (g->C) {
        prefetch_for_writing(c_at(g, i, j), (size_t)g->ldc, rows, cols);
        return;
    }
    for (int r = 0; r < rows; r++)  // a line holds 32 bf16
        for (int c = 0; c < cols; c += 32) __builtin_prefetch(c16_at(g, i + r, j + c), 1, 3);
}

// Every tile of one panel over rows [i0, i1) of C: whole tiles, then one of
// the rows left. Tile t finds its rows of op(A) at a + t * TILE_ROWS * a_row;
// cold_a: A is read in place and this is the block's first panel (tile's
// next_a).
BF16_TARGET static void panel_tiles(const GemmBf16 *g, const uint16_t *a, size_t a_row, size_t a_step, bool cold_a,
                                    int i0, int i1, int kc, const uint32_t *panel, int j0, bool first) {
    const size_t ldc = (size_t)g->ldc, tile_a = TILE_ROWS * a_row;
    __mmask16 columns[4];
    for (int v = 0; v < 4; v++) columns[v] = first_lanes(g->n - j0 - v * 16);
    const float beta = g->beta;
    const int cols = g->n - j0 < PANEL ? g->n - j0 : PANEL;
    int i = i0;
    for (; i + TILE_ROWS <= i1; i += TILE_ROWS, a += tile_a) {
        const int next = i1 - (i + TILE_ROWS);  // rows of the next tile
        if (next > 0) prefetch_c(g, i + TILE_ROWS, j0, next < TILE_ROWS ? next : TILE_ROWS, cols);
        tile(TILE_ROWS, kc, a, a_row, a_step, panel, c_at(g, i, j0), c16_at(g, i, j0), ldc, columns, beta, first,
             cold_a && next > 0 ? a + tile_a : NULL);
    }
    float *c = c_at(g, i, j0);
    uint16_t *c16 = c16_at(g, i, j0);
    switch (i1 - i) {
    case 5: tile(5, kc, a, a_row, a_step, panel, c, c16, ldc, columns, beta, first, NULL); break;
    case 4: tile(4, kc, a, a_row, a_step, panel, c, c16, ldc, columns, beta, first, NULL); break;
    case 3: tile(3, kc, a, a_row, a_step, panel, c, c16, ldc, columns, beta, first, NULL); break;
    case 2: tile(2, kc, a, a_row, a_step, panel, c, c16, ldc, columns, beta, first, NULL); break;
    case 1: tile(1, kc, a, a_row, a_step, panel, c, c16, ldc, columns, beta, first, NULL); break;
    default: break;
    }
}

void gemm_bf16_avx512(const GemmBf16 *g) {
    if (g->m <= 0 || g->n <= 0) return;
    if (g->k <= 0) {  // an empty sum: C = beta C, beta 0 or 1
        for (int i = 0; g->beta == 0.0f && i < g->m; i++) {
            if (g->C) memset(c_at(g, i, 0), 0, (size_t)g->n * sizeof(float));
            else memset(c16_at(g, i, 0), 0, (size_t)g->n * sizeof(uint16_t));  // bf16 0 is all zero bits
        }
        return;
    }
    const int panels_n = (g->n + PANEL - 1) / PANEL, block_k = g->k < BLOCK_K ? g->k : BLOCK_K;
    const size_t pairs_max = (size_t)(block_k + 1) / 2;
    const size_t a_ld = round_up((size_t)(g->m < BLOCK_ROWS ? g->m : BLOCK_ROWS), 32) + A_PAD;
    const size_t b_words = (size_t)panels_n * pairs_max * PANEL;
    uint32_t *packed_b = gemm_scratch((b_words + (g->trans_a ? pairs_max * a_ld : 0)) * sizeof(uint32_t));
    uint32_t *packed_a = packed_b + b_words;
    for (int p0 = 0; p0 < g->k; p0 += BLOCK_K) {
        const int kc = g->k - p0 < BLOCK_K ? g->k - p0 : BLOCK_K, pairs = (kc + 1) / 2;
        pack_b(packed_b, g, p0, kc);
        for (int i0 = 0; i0 < g->m; i0 += BLOCK_ROWS) {
            const int i1 = g->m - i0 < BLOCK_ROWS ? g->m : i0 + BLOCK_ROWS;
            // Where op(A)'s element (i0, p0) is, and how far its rows and pairs are apart (in bf16).
            const uint16_t *a = g->A + (size_t)i0 * g->lda + p0;
            size_t a_row = (size_t)g->lda, a_step = 2;
            if (g->trans_a) {
                pack_a_transposed(packed_a, a_ld, g, p0, kc, i0, i1);
                a = (const uint16_t *)packed_a;
                a_row = 2;
                a_step = 2 * a_ld;
            }
            for (int panel = 0; panel < panels_n; panel++)
                panel_tiles(g, a, a_row, a_step, !g->trans_a && panel == 0, i0, i1, kc,
                            packed_b + (size_t)panel * pairs * PANEL, panel * PANEL, p0 == 0);
        }
    }
}

#else  // not x86-64: no AVX512-BF16

void gemm_bf16_avx512(const GemmBf16 *g) {
    (void)g;
    die("internal: gemm_bf16_avx512 on a CPU without AVX512-BF16");
}

#endif
