// The checker builds of the interpret mode: the CUDA tests built a second
// and a third time, under AddressSanitizer (out-of-bounds accesses to
// cudaMalloc memory and to shared memory) and under ThreadSanitizer (races
// in shared and global memory), with the kernel, block and thread of the
// faulty access added to each report. This file holds their memory and
// report glue; the fiber annotations are in the scheduler (interpret.cpp).
//
// Shared memory is where the sanitizers need help:
//   - dynamic shared memory is one allocation per block of exactly the size
//     the launch asked for, so an access past its end meets ASan's redzone;
//   - static __shared__ arrays are `static thread_local` (interpret.h), which
//     neither sanitizer guards: ASan puts no redzones around thread-local or
//     template-static variables, and TSan would see each block reuse the
//     previous block's array. So the checker builds compile the kernel
//     sources with -femulated-tls, which turns every access to a thread-local
//     variable into a call __emutls_get_address(&control_block); ours (below)
//     gives each block its own exact-size allocation of each array.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "interpret/internal.h"
#include "interpret/interpret.h"

namespace interp {

namespace {

thread_local std::vector<void *> block_allocations;
// Which block the arrays in block_allocations belong to (one host thread
// runs kernels: the checker builds share no thread-local state here).
uint64_t block_serial = 1;

void ignore_begin(void) {
#if defined(IGPT_INTERP_TSAN)
    __tsan_ignore_thread_begin();
#endif
}
void ignore_end(void) {
#if defined(IGPT_INTERP_TSAN)
    __tsan_ignore_thread_end();
#endif
}

}  // namespace

void *untracked_alloc(size_t bytes, size_t align) {
    void *p = nullptr;
    ignore_begin();
    const int err = posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, bytes);
    ignore_end();
    if (err != 0) {
        fprintf(stderr, "interpret: cannot allocate %zu bytes\n", bytes);
        abort();
    }
    return p;
}

void untracked_free(void *p) {
    ignore_begin();
    free(p);
    ignore_end();
}

void *block_alloc(size_t bytes, size_t align) {
    void *p = untracked_alloc(bytes, align);
    ignore_begin();
    memset(p, 0xFF, bytes);
    ignore_end();
    block_allocations.push_back(p);
    return p;
}

void block_free_all(void) {
    for (void *p : block_allocations) untracked_free(p);
    block_allocations.clear();
    block_serial++;
}

}  // namespace interp

#if defined(IGPT_INTERP_CHECKER)

// libgcc's control block of an emulated thread-local variable; `loc` is
// ours to use, since we replace the only function that reads it.
struct EmutlsObject {
    size_t size, align;
    void *loc;
    void *templ;
};
struct StaticSharedArray {
    uint64_t block;
    void *memory;
};

// The slow path: the running block's first access to this array.
__attribute__((noinline)) static void *allocate_static_shared(EmutlsObject *object) {
    if (!interp::kernel_running()) {
        fprintf(stderr,
                "interpret: a thread_local variable of a kernel source used outside a kernel (the checker "
                "builds treat each one as a static __shared__ array)\n");
        abort();
    }
    StaticSharedArray *a = static_cast<StaticSharedArray *>(object->loc);
    if (!a) {
        a = new StaticSharedArray;
        object->loc = a;
    }
    a->memory = interp::block_alloc(object->size, object->align);
    a->block = interp::block_serial;
    return a->memory;
}

// Called at every access to a static __shared__ array: keep it short, and
// out of the sanitizers' sight (it is their bookkeeping, not the kernel's).
extern "C" __attribute__((no_sanitize("address", "thread"))) void *__emutls_get_address(EmutlsObject *object) {
    const StaticSharedArray *a = static_cast<const StaticSharedArray *>(object->loc);
    if (__builtin_expect(a != nullptr && a->block == interp::block_serial, 1)) return a->memory;
    return allocate_static_shared(object);
}

// Reports end with the kernel, block and thread that made the access.
extern "C" void __sanitizer_report_error_summary(const char *summary) {
    fprintf(stderr, "%s\n", summary);
    char where[512];
    if (interp::describe_running_thread(where, sizeof where))
        fprintf(stderr, "interpret: the access above was made by %s\n", where);
}

#endif

#if defined(IGPT_INTERP_ASAN)
// abort_on_error: the first report ends the program with SIGABRT, as the
// interpreter's own checks do; leaks are not a GPU matter.
extern "C" const char *__asan_default_options(void) {
    return "abort_on_error=1:detect_leaks=0:detect_stack_use_after_return=0";
}
#endif

#if defined(IGPT_INTERP_TSAN)
extern "C" const char *__tsan_default_options(void) {
    return "halt_on_error=1:abort_on_error=1:atexit_sleep_ms=0:report_signal_unsafe=0:detect_deadlocks=0:"
           "ignore_noninstrumented_modules=1";
}
#endif
