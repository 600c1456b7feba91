// What the parts of the interpret mode share: the scheduler and runtime
// (interpret.cpp), the target GPU's launch limits (limits.cpp), the
// checker builds' memory and sanitizer glue (checker.cpp) and the
// tensor-core twins (tensor_core.cpp).
#ifndef IGPT_CUDA_INTERPRET_INTERNAL_H
#define IGPT_CUDA_INTERPRET_INTERNAL_H

#include <cstddef>

// From interpret.h, which includes nothing of ours back.
struct dim3;
namespace interp {
struct CallSite;
}

#if defined(IGPT_INTERP_TSAN)
// ThreadSanitizer's ignore annotations (exported by libtsan, not in its
// header): memory allocated, mapped or freed between them has no history.
extern "C" void __tsan_ignore_thread_begin(void);
extern "C" void __tsan_ignore_thread_end(void);
#endif

namespace interp {

// Aborts, naming the kernel and the launch site, when the launch breaks a
// limit of the target GPU (threads, grid, shared memory, registers).
void check_launch_limits(const char *name, const void *kernel, CallSite site, dim3 grid, dim3 block,
                         size_t dynamic_shared_bytes);

// Shared memory of the running block (dynamic, and static in the checker
// builds): exactly `bytes` long, so that AddressSanitizer's redzone starts
// right past its end; filled with 0xFF bytes (NaN as floats); new to
// ThreadSanitizer, so that one block's accesses never meet the next one's.
void *block_alloc(size_t bytes, size_t align);
// Frees every block_alloc of the block that just ended.
void block_free_all(void);

// Memory whose history ThreadSanitizer forgets (the scheduler's own tokens).
void *untracked_alloc(size_t bytes, size_t align);
void untracked_free(void *p);

// Whether a kernel runs now (on this host thread).
bool kernel_running(void);
// "kernel K (launched at F:L), block (x,y,z), thread (x,y,z)" of the thread
// that runs now; false outside a kernel.
bool describe_running_thread(char *buf, size_t cap);

// Aborts like the scheduler's own checks: the kernel, its launch site and
// the block, then the message.
[[noreturn]] void kernel_fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

// The tensor-core twins (tensor_core.cpp): computes an mma.sync or ldmatrix
// (op, a WarpOp) for the whole warp from each lane's data (an MmaLane or
// LdmatrixLane on its stack), once all 32 lanes have arrived.
void release_matrix_collective(int op, int arg, void *const lane_data[32]);
// At the end of each block: aborts if a thread left cp.async copies
// uncommitted or unwaited; forgets every thread's groups.
void async_copies_end_block(void);

}  // namespace interp

#endif
