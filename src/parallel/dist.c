// The MPI job (dist.h). A job must speak with one voice: only rank 0 prints
// and writes, and any rank's error names the rank and aborts every process,
// so a failure never leaves the others waiting in a collective.
#include "parallel/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#ifdef IGPT_MPI
#include <mpi.h>
#endif

static Dist job = {.rank = 0, .world = 1, .local_rank = 0, .mpi = false};

const Dist *dist_get(void) { return &job; }

// A launcher sets one of these in every process it starts.
static bool launched_by_mpi(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

#ifdef IGPT_MPI
static void abort_job(void) { MPI_Abort(MPI_COMM_WORLD, 1); }

static void mpi_check(int err, const char *what) {
    if (err == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, text, &len);
    die("MPI error in %s: %s", what, text);
}
#endif

void dist_init(void) {
    if (!launched_by_mpi()) return;
#ifdef IGPT_MPI
    int provided = 0;
    mpi_check(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init");
    // Errors come back as codes, so that die() can name them and abort the job.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &job.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &job.world);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, job.rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &job.local_rank);
    MPI_Comm_free(&local);
    job.mpi = true;
    if (job.world > 1) {
        static char prefix[32];
        snprintf(prefix, sizeof prefix, "rank %d: ", job.rank);
        set_error_context(prefix, abort_job);
        if (job.rank != 0) {
            // One voice: only rank 0 prints progress, results and warnings.
            if (!freopen("/dev/null", "w", stdout)) die("cannot silence stdout");
            set_warnings_quiet(true);
        }
    }
#else
    warn(
        "started by an MPI launcher, but this ./igpt was built without MPI (no mpicc found by make): every "
        "process would train alone");
    die("rebuild with OpenMPI installed (scripts/setup.sh installs it) to train across processes");
#endif
}

void dist_finalize(void) {
#ifdef IGPT_MPI
    if (job.mpi) MPI_Finalize();
#endif
    job.mpi = false;
}

double dist_sum_double(double x) {
#ifdef IGPT_MPI
    if (job.world > 1) mpi_check(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "all-reduce");
#endif
    return x;
}

void dist_broadcast(void *buf, size_t bytes) {
    if (job.world == 1) return;
#ifdef IGPT_MPI
    for (size_t done = 0; done < bytes;) {  // MPI counts are ints
        int count = bytes - done > (size_t)1 << 30 ? 1 << 30 : (int)(bytes - done);
        mpi_check(MPI_Bcast((char *)buf + done, count, MPI_BYTE, 0, MPI_COMM_WORLD), "broadcast");
        done += (size_t)count;
    }
#else
    (void)buf;
    (void)bytes;
#endif
}

void dist_barrier(void) {
#ifdef IGPT_MPI
    if (job.world > 1) mpi_check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
#endif
}

#ifdef IGPT_MPI
#define MAX_PENDING 4096
static MPI_Request pending[MAX_PENDING];
static int num_pending = 0;
#endif

void dist_sum_floats_start(float *buf, size_t n) {
    if (job.world == 1 || n == 0) return;
#ifdef IGPT_MPI
    for (size_t done = 0; done < n;) {
        int count = n - done > (size_t)1 << 30 ? 1 << 30 : (int)(n - done);
        if (num_pending == MAX_PENDING) dist_wait_all();
        mpi_check(MPI_Iallreduce(MPI_IN_PLACE, buf + done, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                 &pending[num_pending++]),
                  "all-reduce");
        done += (size_t)count;
    }
#else
    (void)buf;
#endif
}

void dist_wait_all(void) {
#ifdef IGPT_MPI
    if (num_pending) mpi_check(MPI_Waitall(num_pending, pending, MPI_STATUSES_IGNORE), "all-reduce wait");
    num_pending = 0;
#endif
}

void dist_piece(size_t n, int rank, int world, size_t *begin, size_t *end) {
    *begin = n * (size_t)rank / (size_t)world;
    *end = n * (size_t)(rank + 1) / (size_t)world;
}

#ifdef IGPT_MPI
// Counts and displacements of every rank's piece of n (ints: pieces < 2^31).
static void piece_layout(size_t n, int *counts, int *displs) {
    for (int r = 0; r < job.world; r++) {
        size_t b, e;
        dist_piece(n, r, job.world, &b, &e);
        if (e - b > (size_t)1 << 30) die("a ZeRO piece of %zu floats is too large for one MPI call", e - b);
        counts[r] = (int)(e - b);
        displs[r] = (int)b;
    }
}
#endif

void dist_reduce_scatter(float *buf, size_t n) {
    if (job.world == 1) return;
#ifdef IGPT_MPI
    int *counts = xmalloc((size_t)job.world * sizeof(int));
    int *displs = xmalloc((size_t)job.world * sizeof(int));
    piece_layout(n, counts, displs);
    mpi_check(MPI_Reduce_scatter(MPI_IN_PLACE, buf, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "reduce-scatter");
    // MPI leaves this rank's result at the start of buf; move it to its piece.
    memmove(buf + displs[job.rank], buf, (size_t)counts[job.rank] * sizeof(float));
    free(counts);
    free(displs);
#else
    (void)buf;
    (void)n;
#endif
}

void dist_all_gather(float *buf, size_t n) { dist_all_gather_elements(buf, n, sizeof(float)); }

void dist_all_gather_elements(void *buf, size_t n, size_t element_bytes) {
    if (job.world == 1) return;
#ifdef IGPT_MPI
    int *counts = xmalloc((size_t)job.world * sizeof(int));
    int *displs = xmalloc((size_t)job.world * sizeof(int));
    piece_layout(n, counts, displs);
    MPI_Datatype element;
    MPI_Type_contiguous((int)element_bytes, MPI_BYTE, &element);
    MPI_Type_commit(&element);
    mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, element, MPI_COMM_WORLD),
              "all-gather");
    MPI_Type_free(&element);
    free(counts);
    free(displs);
#else
    (void)buf;
    (void)n;
    (void)element_bytes;
#endif
}
