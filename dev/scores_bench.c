// Scratch harness (not built by make): the attention's scores kernel on one
// core, by where its keys come from. The kernel is cpu_ops.c's
// rows_times_lanes_from for a whole chunk (64 keys, 4 vectors of queries),
// written here again: 4 keys a group, each key's row of hs floats broadcast
// one element at a time against the tile's hs x 4 vectors, 16 sums in
// registers; with `ahead`, each group asks for the next group's rows first,
// as cpu_ops.c's does. Key rows are 3C floats apart, as in qkv. Three places
// for the keys:
//   L1   one chunk's 64 rows, again and again
//   L2   a head's keys (the rows given) cycled chunk by chunk
//   L3   a long array (the rows given, ~25 MB for 8192 at xs) walked through
// Best of 40 rounds; GFLOP/s against one core's peak (~265 on the EPYC VM).
//   cc -O3 -march=native dev/scores_bench.c -o /tmp/scores_bench
//   /tmp/scores_bench 32 768 1024 8192      # hs, row stride (3C), L2 rows, L3 rows
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef float v16 __attribute__((vector_size(64)));
enum { VECS = 4, CHUNK = 64, ROUNDS = 40 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// out[j] = sum over e of X[j][e] * A[e] for the chunk's keys j.
static inline __attribute__((always_inline)) void scores(v16 *out, const v16 *A, const float *X, int ld, int hs,
                                                         int ahead) {
    for (int j0 = 0; j0 < CHUNK; j0 += 4) {
        v16 acc[4][VECS] = {{{0}}};
        const float *x = X + (size_t)j0 * ld;
        if (ahead && j0 + 8 <= CHUNK)
            for (int j = 4; j < 8; j++)
                for (int e = 0; e < hs; e += 16) __builtin_prefetch(x + (size_t)j * ld + e, 0, 3);
        for (int e = 0; e < hs; e++) {
            v16 a[VECS];
            for (int v = 0; v < VECS; v++) {
                a[v] = A[(size_t)e * VECS + v];
                __asm__("" : "+v"(a[v]));  // kept in a register (cpu_ops.c's HOLD_IN_REGISTER)
            }
            for (int j = 0; j < 4; j++)
                for (int v = 0; v < VECS; v++) acc[j][v] += x[(size_t)j * ld + e] * a[v];
        }
        for (int j = 0; j < 4; j++)
            for (int v = 0; v < VECS; v++) out[(size_t)(j0 + j) * VECS + v] = acc[j][v];
    }
}

static __attribute__((noinline)) void plain(v16 *out, const v16 *A, const float *X, int ld, int hs) {
    scores(out, A, X, ld, hs, 0);
}
static __attribute__((noinline)) void asking_ahead(v16 *out, const v16 *A, const float *X, int ld, int hs) {
    scores(out, A, X, ld, hs, 1);
}

// Seconds per chunk, best of ROUNDS, over `chunks` chunks of X in turn
// (chunks = 1: the same chunk each time).
static double time_chunks(void (*kernel)(v16 *, const v16 *, const float *, int, int), v16 *out, const v16 *A,
                          const float *X, int ld, int hs, int chunks) {
    const int calls = chunks < 64 ? 64 : chunks;
    double best = 1e30;
    for (int r = 0; r < ROUNDS; r++) {
        const double t0 = now();
        for (int c = 0; c < calls; c++) {
            kernel(out, A, X + (size_t)(c % chunks) * CHUNK * ld, ld, hs);
            __asm__ volatile("" ::: "memory");
        }
        const double t = (now() - t0) / calls;
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HS ROW_STRIDE L2_ROWS L3_ROWS\n", argv[0]);
        return 2;
    }
    const int hs = atoi(argv[1]), ld = atoi(argv[2]), l2_rows = atoi(argv[3]), l3_rows = atoi(argv[4]);
    if (hs < 1 || ld < hs || l2_rows < CHUNK || l3_rows < CHUNK) {
        fprintf(stderr, "need HS >= 1, ROW_STRIDE >= HS, and at least %d rows\n", CHUNK);
        return 2;
    }
    v16 *A = aligned_alloc(64, (size_t)hs * VECS * sizeof(v16)), *out = aligned_alloc(64, CHUNK * VECS * sizeof(v16));
    const size_t floats = (size_t)l3_rows * ld;
    float *X = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    if (!A || !out || !X) return 1;
    for (int i = 0; i < hs * VECS; i++)
        for (int l = 0; l < 16; l++) A[i][l] = 0.1f * (float)(i % 7) + (float)l;
    for (size_t i = 0; i < floats; i++) X[i] = 0.01f * (float)(i % 13);
    const struct {
        const char *name;
        int chunks;
    } places[] = {{"L1", 1}, {"L2", l2_rows / CHUNK}, {"L3", l3_rows / CHUNK}};
    const double flops = 2.0 * CHUNK * hs * 16 * VECS;
    for (int p = 0; p < 3; p++) {
        const double t0 = time_chunks(plain, out, A, X, ld, hs, places[p].chunks);
        const double t1 = time_chunks(asking_ahead, out, A, X, ld, hs, places[p].chunks);
        printf("hs %d, keys in %s: %7.1f ns a chunk (%5.1f GFLOP/s); asking for the next rows ahead %7.1f ns "
               "(%5.1f GFLOP/s)\n",
               hs, places[p].name, t0 * 1e9, flops / t0 * 1e-9, t1 * 1e9, flops / t1 * 1e-9);
    }
    free(A);
    free(out);
    free(X);
    return 0;
}
