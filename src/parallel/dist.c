// The MPI job (dist.h). A job must speak with one voice: only rank 0 prints
// and writes, and any rank's error names the rank and aborts every process,
// so a failure never leaves the others waiting in a collective.
#include "parallel/dist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

// --- A rank that dies --------------------------------------------------------------------
//
// When a rank dies (kill -9, a crash, or MPI_Abort after its error), OpenMPI's
// mpirun ends the job: it sends the others SIGCONT, then SIGTERM a second
// later, then SIGKILL a second after that (OpenMPI 4.1, measured), and prints
// only its own note. So rank 0 watches the processes of the other ranks on its
// machine (their PIDs are gathered when the job starts), and when one is gone
// it says, in one line, which rank it was and how to go on, in the second
// mpirun leaves it. Ranks on other machines cannot be watched this way; for
// them mpirun's note names the rank.

typedef struct {
    int pid;
    char host[64];
} RankProcess;

static RankProcess *processes;  // world entries, gathered by dist_init
static atomic_bool job_aborting = false, watch_stopped = false;
static pthread_t watcher;
static bool watching = false;
static char *death_hint;  // the resume command, once training has begun

static bool process_alive(int pid) {
    char path[64], stat[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    const size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *close = strrchr(stat, ')');                 // "pid (name) S ...": the state follows the name
    return !close || (close[2] != 'Z' && close[2] != 'X');  // a zombie is dead, just not yet reaped
}

static void *watch_ranks(void *unused) {
    (void)unused;
    while (!atomic_load(&watch_stopped)) {
        for (int r = 1; r < job.world; r++) {
            if (strcmp(processes[r].host, processes[0].host) != 0 || process_alive(processes[r].pid)) continue;
            // A moment's grace: if rank 0 is itself failing (the same error on every rank), its own line says it.
            usleep(300 * 1000);
            if (atomic_load(&job_aborting) || atomic_load(&watch_stopped)) return NULL;
            char line[4096];
            const int len =
                snprintf(line, sizeof line,
                         "igpt: error: rank %d of %d (pid %d) ended before the job did (killed, crashed, or "
                         "its error above), so mpirun ends the job; %s\n",
                         r, job.world, processes[r].pid, death_hint);
            // One write, so that it does not interleave with other lines; nothing to do if it fails.
            const ssize_t written =
                write(STDERR_FILENO, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
            (void)written;
            return NULL;
        }
        usleep(100 * 1000);
    }
    return NULL;
}

// `word` as a shell reads it back: single-quoted unless it is plain (allocated).
static char *shell_word(const char *word) {
    const char *plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,+@%-";
    if (word[0] && word[strspn(word, plain)] == '\0') return xstrdup(word);
    char *quoted = xmalloc(4 * strlen(word) + 3), *end = quoted;
    *end++ = '\'';
    for (const char *c = word; *c; c++) {
        if (*c == '\'') {
            memcpy(end, "'\\''", 4);
            end += 4;
        } else {
            *end++ = *c;
        }
    }
    strcpy(end, "'");
    return quoted;
}

void dist_watch_ranks(const char *program, const char *data_dir, const char *run_dir) {
    if (job.world == 1 || job.rank != 0 || watching || !processes) return;
    char *p = shell_word(program), *d = shell_word(data_dir), *r = shell_word(run_dir);
    death_hint = xasprintf(
        "its checkpoints are kept: go on from the last one with mpirun -np %d %s train --data %s --out %s --resume",
        job.world, p, d, r);
    free(p);
    free(d);
    free(r);
    watching = pthread_create(&watcher, NULL, watch_ranks, NULL) == 0;
}

static void stop_watching(void) {
    atomic_store(&watch_stopped, true);
    if (watching) pthread_join(watcher, NULL);
    watching = false;
    free(death_hint);
    death_hint = NULL;
    free(processes);
    processes = NULL;
}

#ifdef IGPT_MPI
static void abort_job(void) {
    atomic_store(&job_aborting, true);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

// Every rank's PID and machine, for rank 0's watch.
static void gather_processes(void) {
    processes = xcalloc((size_t)job.world, sizeof *processes);
    RankProcess self = {.pid = (int)getpid()};
    if (gethostname(self.host, sizeof self.host - 1) != 0) strcpy(self.host, "?");
    MPI_Allgather(&self, (int)sizeof self, MPI_BYTE, processes, (int)sizeof self, MPI_BYTE, MPI_COMM_WORLD);
}

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
        gather_processes();
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
    // Before MPI_Finalize, which holds every rank until all have reached it:
    // a rank that ends now ends with the job, not before it.
    stop_watching();
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
