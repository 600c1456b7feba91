// Scratch harness (not built by make): the attention's P V kernel on one
// core, by how far apart the value rows lie. The kernel is cpu_ops.c's
// tile_lanes_times_rows for a whole chunk off the diagonal (64 keys, 4
// vectors of queries), written here again: 4 columns of the output at a
// time, 16 sums in registers, each key's 4 vectors of P loaded and its 4
// values broadcast. Beside it the same sums 8 columns x 2 vectors at a time
// (each value row's cache line serves 8 columns before the next). Value rows
// ROW_STRIDE floats apart (3C in qkv; HS: dense), one chunk again and again
// (L1) or a head's rows cycled chunk by chunk (L2). Best of 40 rounds;
// GFLOP/s against one core's peak (~265 on the EPYC VM), to set beside
// dev/scores_bench.c's scores kernel, which does the same work per chunk.
//   cc -O3 -march=native dev/pv_bench.c -o /tmp/pv_bench
//   /tmp/pv_bench 32 768 1024 && /tmp/pv_bench 32 32 1024   # hs, row stride, rows
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef float v16 __attribute__((vector_size(64)));
enum { VECS = 4, CHUNK = 64, ROUNDS = 40, CALLS = 256 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// out[e] += sum over the chunk's keys j of X[j][e] * P[j], COLS columns and
// VS vectors of queries at a time.
static inline __attribute__((always_inline)) void pv(v16 *out, const v16 *P, const float *X, int ld, int hs,
                                                     const int COLS, const int VS) {
    for (int e0 = 0; e0 + COLS <= hs; e0 += COLS)
        for (int v0 = 0; v0 < VECS; v0 += VS) {
            v16 acc[8][4];
            for (int c = 0; c < COLS; c++)
                for (int v = 0; v < VS; v++) acc[c][v] = out[(size_t)(e0 + c) * VECS + v0 + v];
            for (int j = 0; j < CHUNK; j++) {
                const float *x = X + (size_t)j * ld + e0;
                v16 p[4];
                for (int v = 0; v < VS; v++) {
                    p[v] = P[(size_t)j * VECS + v0 + v];
                    __asm__("" : "+v"(p[v]));  // kept in a register (cpu_ops.c's HOLD_IN_REGISTER)
                }
                for (int c = 0; c < COLS; c++)
                    for (int v = 0; v < VS; v++) acc[c][v] += x[c] * p[v];
            }
            for (int c = 0; c < COLS; c++)
                for (int v = 0; v < VS; v++) out[(size_t)(e0 + c) * VECS + v0 + v] = acc[c][v];
        }
}

static __attribute__((noinline)) void four_columns(v16 *out, const v16 *P, const float *X, int ld, int hs) {
    pv(out, P, X, ld, hs, 4, 4);
}
static __attribute__((noinline)) void eight_columns(v16 *out, const v16 *P, const float *X, int ld, int hs) {
    pv(out, P, X, ld, hs, 8, 2);
}

// Seconds per chunk, best of ROUNDS, over `chunks` chunks of X in turn.
static double time_chunks(void (*kernel)(v16 *, const v16 *, const float *, int, int), v16 *out, const v16 *P,
                          const float *X, int ld, int hs, int chunks) {
    double best = 1e30;
    for (int r = 0; r < ROUNDS; r++) {
        const double t0 = now();
        for (int c = 0; c < CALLS; c++) {
            kernel(out, P, X + (size_t)(c % chunks) * CHUNK * ld, ld, hs);
            __asm__ volatile("" ::: "memory");
        }
        const double t = (now() - t0) / CALLS;
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s HS ROW_STRIDE ROWS\n", argv[0]);
        return 2;
    }
    const int hs = atoi(argv[1]), ld = atoi(argv[2]), rows = atoi(argv[3]);
    if (hs < 8 || hs % 8 || ld < hs || rows < CHUNK) {
        fprintf(stderr, "need HS a multiple of 8, ROW_STRIDE >= HS, and at least %d rows\n", CHUNK);
        return 2;
    }
    v16 *P = aligned_alloc(64, CHUNK * VECS * sizeof(v16)), *out = aligned_alloc(64, (size_t)hs * VECS * sizeof(v16));
    const size_t floats = (size_t)rows * ld;
    float *X = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    if (!P || !out || !X) return 1;
    for (int i = 0; i < CHUNK * VECS; i++)
        for (int l = 0; l < 16; l++) P[i][l] = 0.001f * (float)(i % 5);
    for (int i = 0; i < hs * VECS; i++)
        for (int l = 0; l < 16; l++) out[i][l] = 0.0f;
    for (size_t i = 0; i < floats; i++) X[i] = 0.01f * (float)(i % 13);
    const double flops = 2.0 * CHUNK * hs * 16 * VECS;
    const struct {
        const char *name;
        int chunks;
    } places[] = {{"L1", 1}, {"L2", rows / CHUNK}};
    for (int p = 0; p < 2; p++) {
        const double t4 = time_chunks(four_columns, out, P, X, ld, hs, places[p].chunks);
        const double t8 = time_chunks(eight_columns, out, P, X, ld, hs, places[p].chunks);
        printf("hs %d, value rows %d floats apart, in %s: 4 columns x 4 vectors %5.1f GFLOP/s, 8 x 2 %5.1f GFLOP/s\n",
               hs, ld, places[p].name, flops / t4 * 1e-9, flops / t8 * 1e-9);
    }
    free(P);
    free(out);
    free(X);
    return 0;
}
