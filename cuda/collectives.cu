// The collectives of the GPU model's data parallelism (collectives.cuh), in
// the three builds that have them:
//   nvcc with NCCL: a communicator over the job's GPUs and a communication
//     stream, so that gradient sums overlap the backward pass;
//   the interpret mode: "device" memory is host memory, so MPI does the work
//     (parallel/dist.h), which lets `make test` run data-parallel training on
//     the GPU model without a GPU;
//   nvcc without NCCL (-DIGPT_NO_NCCL): one GPU per job; asking for more says so.
#include <cstdlib>

#include "collectives.cuh"

extern "C" {
#include "model/gpu_model.h"
#include "parallel/dist.h"
#include "util/util.h"
}

extern "C" void gpu_use_device(int local_rank) {
#ifdef IGPT_INTERPRET
    (void)local_rank;  // one "device"
#else
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return;
    CUDA_CHECK(cudaSetDevice(local_rank % count));
#endif
}

#if defined(IGPT_INTERPRET)

extern "C" void gpu_collectives_init(int, int) {}
extern "C" void gpu_collectives_finalize(void) {}

void gpu_sum_start(float *buf, size_t n, cudaStream_t) { dist_sum_floats_start(buf, n); }

void gpu_collectives_wait(void) { dist_wait_all(); }

void gpu_reduce_scatter(float *grads, const ZeroLayout *z, cudaStream_t) {
    for (int i = 0; i < z->num_ranges; i++)
        dist_reduce_scatter(grads + z->ranges[i].begin, z->ranges[i].end - z->ranges[i].begin);
}

void gpu_all_gather(void *weights, size_t element_bytes, const ZeroLayout *z, cudaStream_t) {
    for (int i = 0; i < z->num_ranges; i++)
        dist_all_gather_elements(static_cast<char *>(weights) + z->ranges[i].begin * element_bytes,
                                 z->ranges[i].end - z->ranges[i].begin, element_bytes);
}

#elif defined(IGPT_NO_NCCL)

extern "C" void gpu_collectives_init(int, int) {
    die("this ./igpt was built without NCCL (make found no nccl.h; set NCCL_HOME): it cannot train on several GPUs");
}
extern "C" void gpu_collectives_finalize(void) {}

void gpu_sum_start(float *, size_t, cudaStream_t) { die("internal: no NCCL in this build"); }

void gpu_collectives_wait(void) {}

// A job of one (ZeRO without a launcher) has nothing to exchange.
void gpu_reduce_scatter(float *, const ZeroLayout *z, cudaStream_t) {
    if (z->world > 1) die("internal: no NCCL in this build");
}

void gpu_all_gather(void *, size_t, const ZeroLayout *z, cudaStream_t) {
    if (z->world > 1) die("internal: no NCCL in this build");
}

#else

#include <nccl.h>
#include <unistd.h>

#include <chrono>

static ncclComm_t nccl_comm = nullptr;
static cudaStream_t comm_stream = nullptr;
static cudaEvent_t work_queued = nullptr;

static void nccl_check(ncclResult_t r, const char *what) {
    if (r != ncclSuccess && r != ncclInProgress) die("NCCL error in %s: %s", what, ncclGetErrorString(r));
}

extern "C" void gpu_collectives_init(int rank, int world) {
    ncclUniqueId id;
    if (rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    dist_broadcast(&id, sizeof id);
    nccl_check(ncclCommInitRank(&nccl_comm, world, id, rank), "ncclCommInitRank");
    CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&work_queued, cudaEventDisableTiming));
}

extern "C" void gpu_collectives_finalize(void) {
    if (!nccl_comm) return;
    ncclCommDestroy(nccl_comm);
    cudaStreamDestroy(comm_stream);
    cudaEventDestroy(work_queued);
    nccl_comm = nullptr;
}

static void require_communicator(void) {
    if (!nccl_comm) die("internal: gpu_collectives_init was not called");
}

void gpu_sum_start(float *buf, size_t n, cudaStream_t stream) {
    require_communicator();
    CUDA_CHECK(cudaEventRecord(work_queued, stream));
    CUDA_CHECK(cudaStreamWaitEvent(comm_stream, work_queued, 0));
    nccl_check(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, nccl_comm, comm_stream), "ncclAllReduce");
}

// Polls rather than blocks, so that a collective stuck on a dead rank or a
// NCCL error is seen and reported instead of hanging the job.
void gpu_collectives_wait(void) {
    if (!nccl_comm) return;
    const char *env = getenv("IGPT_NCCL_TIMEOUT");
    const double timeout = env ? atof(env) : 600.0;
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
        cudaError_t state = cudaStreamQuery(comm_stream);
        if (state == cudaSuccess) break;
        if (state != cudaErrorNotReady) CUDA_CHECK(state);
        ncclResult_t async = ncclSuccess;
        nccl_check(ncclCommGetAsyncError(nccl_comm, &async), "ncclCommGetAsyncError");
        if (async != ncclSuccess && async != ncclInProgress) {
            ncclCommAbort(nccl_comm);
            die("NCCL all-reduce failed: %s", ncclGetErrorString(async));
        }
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout) {
            ncclCommAbort(nccl_comm);
            die("the gradient all-reduce did not finish in %.0f s (another rank died or hangs; IGPT_NCCL_TIMEOUT "
                "sets the limit)",
                timeout);
        }
        usleep(200);
    }
}

// The pieces differ in size by one element, so NCCL's reduce-scatter and
// all-gather (equal counts) do not fit: one grouped reduce (all-gather:
// broadcast) per rank's piece instead.
void gpu_reduce_scatter(float *grads, const ZeroLayout *z, cudaStream_t stream) {
    if (z->world == 1) return;
    require_communicator();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (int i = 0; i < z->num_ranges; i++) {
        const ZeroRange *range = &z->ranges[i];
        for (int r = 0; r < z->world; r++) {
            size_t b, e;
            dist_piece(range->end - range->begin, r, z->world, &b, &e);
            float *piece = grads + range->begin + b;
            nccl_check(ncclReduce(piece, piece, e - b, ncclFloat, ncclSum, r, nccl_comm, comm_stream), "ncclReduce");
        }
    }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    gpu_collectives_wait();
}

void gpu_all_gather(void *weights, size_t element_bytes, const ZeroLayout *z, cudaStream_t stream) {
    if (z->world == 1) return;
    require_communicator();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    const ncclDataType_t type = element_bytes == 2 ? ncclBfloat16 : ncclFloat;
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (int i = 0; i < z->num_ranges; i++) {
        const ZeroRange *range = &z->ranges[i];
        for (int r = 0; r < z->world; r++) {
            size_t b, e;
            dist_piece(range->end - range->begin, r, z->world, &b, &e);
            char *piece = static_cast<char *>(weights) + (range->begin + b) * element_bytes;
            nccl_check(ncclBroadcast(piece, piece, e - b, type, r, nccl_comm, comm_stream), "ncclBroadcast");
        }
    }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    gpu_collectives_wait();
}

#endif
