// Data-parallel training across processes (docs/multi-gpu.md): one process
// per device, launched by mpirun or srun. This module is the MPI job and its
// collectives only: the job's shape (rank, world size, local rank) and sums,
// gathers and broadcasts of host buffers. It knows nothing of models (the
// ZeRO split of a model is parallel/zero.h). A process started without a
// launcher is a job of one and never touches MPI; built without MPI (no
// mpicc found by make), every job is one process.
#ifndef IGPT_DIST_H
#define IGPT_DIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int rank, world;  // 0..world-1
    int local_rank;   // rank among the processes on this machine (which GPU it drives)
    bool mpi;         // MPI is initialised (launched by mpirun/srun)
} Dist;

// Detects a launcher (OpenMPI, PMI/PMIx, Slurm), initialises MPI, and makes
// the job speak with one voice: ranks other than 0 print nothing on stdout
// and no warnings; any rank's error names the rank and ends the whole job.
void dist_init(void);
// Stops rank 0's watch (dist_watch_ranks) first.
void dist_finalize(void);
// Once training has begun: rank 0 watches the other ranks on its machine, and
// if one dies, prints one line naming it and the command that resumes the run
// from its last checkpoint (the job itself is ended by mpirun).
void dist_watch_ranks(const char *program, const char *data_dir, const char *run_dir);
const Dist *dist_get(void);
static inline bool dist_is_root(void) { return dist_get()->rank == 0; }

// The sum of x over all ranks (blocking).
double dist_sum_double(double x);
// Rank 0's bytes to every rank.
void dist_broadcast(void *buf, size_t bytes);
void dist_barrier(void);

// Non-blocking sums of gradient slices, started as soon as a layer's
// gradients are final and all waited for before the optimizer step.
void dist_sum_floats_start(float *buf, size_t n);
void dist_wait_all(void);

// The part of [0, n) that `rank` of `world` holds after a reduce-scatter and
// gives to an all-gather: [n*rank/world, n*(rank+1)/world).
void dist_piece(size_t n, int rank, int world, size_t *begin, size_t *end);
// Sums buf over ranks and leaves each rank the sum on its piece (the rest of
// buf is undefined afterwards).
void dist_reduce_scatter(float *buf, size_t n);
// Every rank's piece of buf to every rank (in place).
void dist_all_gather(float *buf, size_t n);
// The same for n elements of element_bytes each (e.g. bf16 weights).
void dist_all_gather_elements(void *buf, size_t n, size_t element_bytes);

#endif
