// The job's collectives on device buffers (cuda/collectives.cu), for the GPU
// model's data parallelism: NCCL on GPUs, MPI over host memory in the
// interpret mode. Each call covers the whole job (parallel/dist.h); the
// communicator is made by gpu_collectives_init (model/gpu_model.h).
#ifndef IGPT_CUDA_COLLECTIVES_CUH
#define IGPT_CUDA_COLLECTIVES_CUH

#include <cstddef>

#include "common.cuh"

extern "C" {
#include "parallel/zero.h"
}

// Starts summing buf[0, n) over the ranks, in place, on a communication
// stream that first waits for the work queued on `stream` so far.
void gpu_sum_start(float *buf, size_t n, cudaStream_t stream);
// Waits for every collective started; a failed or stuck one (IGPT_NCCL_TIMEOUT
// seconds, default 600) ends the job with a message.
void gpu_collectives_wait(void);
// For every range of the layout: sums grads over the ranks and leaves each
// rank the sum on its piece (the rest of the range is undefined afterwards).
// Returns when done.
void gpu_reduce_scatter(float *grads, const ZeroLayout *z, cudaStream_t stream);
// For every range of the layout: every rank's piece of `weights` (elements of
// element_bytes: 4 fp32, 2 bf16) to every rank. Returns when done.
void gpu_all_gather(void *weights, size_t element_bytes, const ZeroLayout *z, cudaStream_t stream);

#endif
