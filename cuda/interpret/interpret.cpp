// The CUDA interpret mode's scheduler and runtime (see interpret.h): each
// block's threads are fibers (Boost.Context: a switch costs nanoseconds, no
// system call) switched at barriers and warp collectives, which are checked
// as they are released.
#include "interpret/interpret.h"

#include <sys/mman.h>

#include <boost/context/fiber.hpp>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "interpret/internal.h"
#if defined(IGPT_INTERP_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(IGPT_INTERP_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace interp {

thread_local const Coordinates *current_coordinates = nullptr;

namespace {

enum FiberState { RUNNABLE, AT_BARRIER, AT_WARP, DONE };

namespace bctx = boost::context;

struct Fiber {
    bctx::fiber self;       // the suspended thread, resumed by the scheduler
    bctx::fiber scheduler;  // where the thread returns to when it waits
    FiberState state;
    CallSite site;  // where it waits
    WarpOp op;
    unsigned mask;
    uint64_t value, result;
    int arg, width;
    Coordinates coords;
    char *stack;            // its lowest address
    void *tsan_fiber;       // ThreadSanitizer's view of this thread (TSan build)
    void *asan_fake_stack;  // AddressSanitizer's note across switches (ASan build)
};

struct Block {
    std::vector<Fiber> fibers;
    int current;
    const std::function<void()> *body;
    const char *kernel;
    CallSite launch;
};

thread_local Block *running_block = nullptr;
thread_local std::vector<char *> stacks;
thread_local size_t stack_bytes = 0;
thread_local void *dynamic_shared = nullptr;
Order scheduler_order = ORDER_FORWARD;
uint64_t scheduler_seed = 1;

const char *op_name(WarpOp op) {
    static const char *const names[] = {"__syncwarp",       "__shfl_sync",    "__shfl_xor_sync",
                                        "__shfl_down_sync", "__shfl_up_sync", "__ballot_sync",
                                        "__any_sync",       "__all_sync",     "mma_m16n8k16_bf16 (mma.sync)",
                                        "ldmatrix"};
    return names[op];
}

[[noreturn]] void fail_v(const char *format, va_list ap) {
    Block *b = running_block;
    if (b) {
        const uint3 &bi = b->fibers.empty() ? uint3{0, 0, 0} : b->fibers[0].coords.block_idx;
        fprintf(stderr, "interpret: kernel %s (launched at %s:%d), block (%u,%u,%u): ", b->kernel, b->launch.file,
                b->launch.line, bi.x, bi.y, bi.z);
    } else fprintf(stderr, "interpret: ");
    vfprintf(stderr, format, ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}
[[noreturn]] void fail(const char *format, ...) __attribute__((format(printf, 1, 2)));
void fail(const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    fail_v(format, ap);
}

uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// 0..n-1 in the scheduler's order.
void make_order(std::vector<int> &order, int n, uint64_t *rng) {
    order.resize((size_t)n);
    for (int i = 0; i < n; i++) order[(size_t)i] = scheduler_order == ORDER_REVERSE ? n - 1 - i : i;
    if (scheduler_order == ORDER_RANDOM)
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(splitmix(rng) % (uint64_t)(i + 1));
            int t = order[(size_t)i];
            order[(size_t)i] = order[(size_t)j];
            order[(size_t)j] = t;
        }
}

// --- Sanitizer annotations (the checker builds) -----------------------------------------
// AddressSanitizer must be told when the stack changes (each fiber has its
// own). ThreadSanitizer sees each GPU thread as a fiber of its own, switched
// without synchronisation: the only happens-before edges are the GPU's (the
// launch, __syncthreads, __syncwarp, the end of the grid), so two blocks, or
// two threads between barriers, that touch one word without atomics race.
#if defined(IGPT_INTERP_ASAN)
thread_local void *scheduler_fake_stack = nullptr;
thread_local const void *scheduler_stack_bottom = nullptr;
thread_local size_t scheduler_stack_size = 0;
#endif
#if defined(IGPT_INTERP_TSAN)
thread_local void *host_fiber = nullptr;  // the host thread's own TSan context
#endif

// Scheduler side: right before resuming f, and right after it suspended itself.
void switching_to(Fiber &f) {
#if defined(IGPT_INTERP_ASAN)
    __sanitizer_start_switch_fiber(&scheduler_fake_stack, f.stack, stack_bytes);
#elif defined(IGPT_INTERP_TSAN)
    __tsan_switch_to_fiber(f.tsan_fiber, __tsan_switch_to_fiber_no_sync);
#else
    (void)f;
#endif
}
void switched_back(void) {
#if defined(IGPT_INTERP_ASAN)
    __sanitizer_finish_switch_fiber(scheduler_fake_stack, nullptr, nullptr);
#elif defined(IGPT_INTERP_TSAN)
    __tsan_switch_to_fiber(host_fiber, __tsan_switch_to_fiber_no_sync);
#endif
}

// Fiber side: when it starts or resumes, and right before it suspends itself
// (for good when it has returned).
void arrived_on_fiber(Fiber &f) {
#if defined(IGPT_INTERP_ASAN)
    __sanitizer_finish_switch_fiber(f.asan_fake_stack, &scheduler_stack_bottom, &scheduler_stack_size);
#else
    (void)f;
#endif
}
void leaving_fiber(Fiber &f, bool for_good) {
#if defined(IGPT_INTERP_ASAN)
    __sanitizer_start_switch_fiber(for_good ? nullptr : &f.asan_fake_stack, scheduler_stack_bottom,
                                   scheduler_stack_size);
#else
    (void)f;
    (void)for_good;
#endif
}

// A barrier or __syncwarp releases: everything each participant did before
// it happens before everything every participant does after it. One fresh
// token per release, so that nothing leaks from one barrier to the next.
void synchronise(Block *b, const std::vector<int> &participants) {
#if defined(IGPT_INTERP_TSAN)
    char *token = static_cast<char *>(untracked_alloc(1, 1));
    for (int i : participants) {
        __tsan_switch_to_fiber(b->fibers[(size_t)i].tsan_fiber, __tsan_switch_to_fiber_no_sync);
        __tsan_release(token);
    }
    for (int i : participants) {
        __tsan_switch_to_fiber(b->fibers[(size_t)i].tsan_fiber, __tsan_switch_to_fiber_no_sync);
        __tsan_acquire(token);
    }
    __tsan_switch_to_fiber(host_fiber, __tsan_switch_to_fiber_no_sync);
    untracked_free(token);
#else
    (void)b;
    (void)participants;
#endif
}

// Suspends the running thread until the scheduler resumes it.
void yield_to_scheduler(Fiber &f) {
    leaving_fiber(f, false);
    f.scheduler = std::move(f.scheduler).resume();
    arrived_on_fiber(f);
}

// Stacks are ours (mapped once, reused): the allocator never allocates.
struct NoStackAllocator {
    bctx::stack_context allocate() { abort(); }
    void deallocate(bctx::stack_context &) noexcept {}
};

Fiber &current_fiber(const char *what) {
    if (!running_block) {
        fprintf(stderr, "interpret: %s called outside a kernel\n", what);
        abort();
    }
    return running_block->fibers[(size_t)running_block->current];
}

size_t stack_size(void) {
    if (stack_bytes == 0) {
        const char *env = getenv("IGPT_INTERP_STACK_KB");
        stack_bytes = (size_t)(env ? atoi(env) : 256) * 1024;
        if (stack_bytes < 64 * 1024) stack_bytes = 64 * 1024;
    }
    return stack_bytes;
}

// A stack of stack_size() bytes, with a guard page below it that turns an
// overflow into a crash, not corruption.
char *map_stack(void) {
    const size_t page = 4096;
    void *p =
        mmap(nullptr, stack_size() + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fail("cannot map %zu bytes of fiber stack", stack_size());
    mprotect(p, page, PROT_NONE);
    return static_cast<char *>(p) + page;
}

void ensure_stacks(size_t count) {
    while (stacks.size() < count) stacks.push_back(map_stack());
}

const char *state_text(const Fiber &f, char *buf, size_t cap) {
    switch (f.state) {
    case DONE: snprintf(buf, cap, "returned"); break;
    case RUNNABLE: snprintf(buf, cap, "running"); break;
    case AT_BARRIER: snprintf(buf, cap, "at __syncthreads at %s:%d", f.site.file, f.site.line); break;
    case AT_WARP:
        snprintf(buf, cap, "at %s(mask 0x%08x) at %s:%d", op_name(f.op), f.mask, f.site.file, f.site.line);
        break;
    }
    return buf;
}

bool same_site(CallSite a, CallSite b) { return a.line == b.line && strcmp(a.file, b.file) == 0; }

// Releases every warp collective whose lanes have all arrived; true if any was.
bool release_warps(Block *b) {
    const int n = (int)b->fibers.size();
    bool released = false;
    for (int w = 0; w * 32 < n; w++) {
        const int base = w * 32, lanes = n - base < 32 ? n - base : 32;
        for (int l = 0; l < lanes; l++) {
            Fiber &f = b->fibers[(size_t)(base + l)];
            if (f.state != AT_WARP) continue;
            bool ready = true;
            for (int j = 0; j < 32 && ready; j++) {
                if (!(f.mask >> j & 1u)) continue;
                if (j >= lanes)
                    fail("%s at %s:%d names lane %d, but the block's last warp has %d threads", op_name(f.op),
                         f.site.file, f.site.line, j, lanes);
                const Fiber &g = b->fibers[(size_t)(base + j)];
                ready = g.state == AT_WARP && g.op == f.op && g.mask == f.mask && same_site(g.site, f.site);
            }
            if (!ready) continue;
            // Every lane of the mask is here: compute each lane's result.
            const unsigned mask = f.mask;
            if (f.op == MMA_SYNC || f.op == LDMATRIX) {  // all 32 lanes (tensor_core.h)
                void *lane_data[32];
                for (int j = 0; j < 32; j++) lane_data[j] = (void *)(uintptr_t)b->fibers[(size_t)(base + j)].value;
                release_matrix_collective(f.op, f.arg, lane_data);
            }
            uint64_t ballot = 0;
            for (int j = 0; j < 32; j++)
                if (mask >> j & 1u) ballot |= (uint64_t)(b->fibers[(size_t)(base + j)].value != 0) << j;
            for (int j = 0; j < 32; j++) {
                if (!(mask >> j & 1u)) continue;
                Fiber &g = b->fibers[(size_t)(base + j)];
                const int width = g.width;
                if (g.op >= SHFL_IDX && g.op <= SHFL_UP && (width < 1 || width > 32 || (width & (width - 1))))
                    fail("%s at %s:%d: width %d is not a power of two up to 32", op_name(g.op), g.site.file,
                         g.site.line, width);
                int src = j;
                switch (g.op) {
                case SHFL_IDX: src = (j & ~(width - 1)) + (g.arg & (width - 1)); break;
                case SHFL_XOR:
                    src = j ^ g.arg;
                    if (src / width > j / width) src = j;
                    break;
                case SHFL_DOWN: src = (j % width) + g.arg < width ? j + g.arg : j; break;
                case SHFL_UP: src = (j % width) - g.arg >= 0 ? j - g.arg : j; break;
                default: break;
                }
                if (src < 0 || src > 31 || !(mask >> src & 1u))
                    fail("%s at %s:%d: lane %d reads lane %d, which is not in the mask 0x%08x", op_name(g.op),
                         g.site.file, g.site.line, j, src, mask);
                switch (g.op) {
                case WARP_SYNC: g.result = 0; break;
                case BALLOT: g.result = ballot; break;
                case ANY: g.result = ballot != 0; break;
                case ALL: g.result = ballot == (uint64_t)mask; break;
                default: g.result = b->fibers[(size_t)(base + src)].value; break;
                }
            }
            std::vector<int> lanes_of_mask;
            for (int j = 0; j < 32; j++)
                if (mask >> j & 1u) lanes_of_mask.push_back(base + j);
            if (f.op == WARP_SYNC) synchronise(b, lanes_of_mask);
            for (int i : lanes_of_mask) b->fibers[(size_t)i].state = RUNNABLE;
            released = true;
        }
    }
    return released;
}

[[noreturn]] void report_stuck(Block *b) {
    // Name the first few threads whose state differs from thread 0's.
    char first[256], other[256];
    const Fiber &f0 = b->fibers[0];
    state_text(f0, first, sizeof first);
    std::string detail;
    int listed = 0;
    for (size_t i = 1; i < b->fibers.size() && listed < 4; i++) {
        const Fiber &g = b->fibers[i];
        if (g.state == f0.state && (g.state == DONE || (same_site(g.site, f0.site) && g.mask == f0.mask))) continue;
        char line[400];
        snprintf(line, sizeof line, "; thread (%u,%u,%u) %s", g.coords.thread_idx.x, g.coords.thread_idx.y,
                 g.coords.thread_idx.z, state_text(g, other, sizeof other));
        detail += line;
        listed++;
    }
    bool barrier = false;
    for (const Fiber &g : b->fibers) barrier |= g.state == AT_BARRIER;
    fail("%s: thread (0,0,0) %s%s",
         barrier ? "divergent __syncthreads (not every thread of the block reaches it)"
                 : "mismatched warp collective (a lane of its mask never joins it)",
         first, detail.c_str());
}

void init_fiber(Block *b, size_t index) {
    bctx::stack_context sctx;
    sctx.size = stack_size();
    sctx.sp = b->fibers[index].stack + stack_size();  // stacks grow down from the top
    b->fibers[index].self = bctx::fiber(std::allocator_arg, bctx::preallocated(sctx.sp, sctx.size, sctx),
                                        NoStackAllocator(), [b, index](bctx::fiber &&scheduler) {
                                            Fiber &f = b->fibers[index];
                                            arrived_on_fiber(f);
                                            f.scheduler = std::move(scheduler);
                                            (*b->body)();
                                            f.state = DONE;
                                            leaving_fiber(f, true);
                                            return std::move(f.scheduler);
                                        });
}

void run_block(Block *b, int threads, uint64_t *rng) {
    std::vector<int> order;
    for (;;) {
        make_order(order, threads, rng);
        for (int i : order) {
            Fiber &f = b->fibers[(size_t)i];
            if (f.state != RUNNABLE) continue;
            b->current = i;
            current_coordinates = &f.coords;
            switching_to(f);
            f.self = std::move(f.self).resume();
            switched_back();
        }
        current_coordinates = nullptr;
        int done = 0, at_barrier = 0;
        for (const Fiber &f : b->fibers) {
            done += f.state == DONE;
            at_barrier += f.state == AT_BARRIER;
        }
        if (done == threads) return;
        if (release_warps(b)) continue;
        if (at_barrier == threads) {
            const Fiber &f0 = b->fibers[0];
            bool same = true;
            for (const Fiber &f : b->fibers) same = same && same_site(f.site, f0.site);
            if (same) {
                std::vector<int> everyone((size_t)threads);
                for (int i = 0; i < threads; i++) everyone[(size_t)i] = i;
                synchronise(b, everyone);
                for (Fiber &f : b->fibers) f.state = RUNNABLE;
                continue;
            }
        }
        report_stuck(b);
    }
}

}  // namespace

void kernel_fail(const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    fail_v(format, ap);
}

void *dynamic_shared_memory() {
    current_fiber("dynamic shared memory");
    return dynamic_shared;
}

const Coordinates *coordinates() { return current_coordinates; }

bool kernel_running(void) { return running_block != nullptr; }

bool describe_running_thread(char *buf, size_t cap) {
    const Block *b = running_block;
    if (!b || !current_coordinates) return false;
    const Coordinates &c = *current_coordinates;
    snprintf(buf, cap, "kernel %s (launched at %s:%d), block (%u,%u,%u), thread (%u,%u,%u)", b->kernel, b->launch.file,
             b->launch.line, c.block_idx.x, c.block_idx.y, c.block_idx.z, c.thread_idx.x, c.thread_idx.y,
             c.thread_idx.z);
    return true;
}

void syncthreads(CallSite site) {
    Fiber &f = current_fiber("__syncthreads");
    f.state = AT_BARRIER;
    f.site = site;
    yield_to_scheduler(f);
}

uint64_t warp_collective(CallSite site, WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
    Fiber &f = current_fiber(op_name(op));
    const Coordinates &c = f.coords;
    const unsigned linear = c.thread_idx.x + c.block_dim.x * (c.thread_idx.y + c.block_dim.y * c.thread_idx.z);
    if (!(mask >> (linear % 32) & 1u))
        fail("%s at %s:%d: lane %u calls it with mask 0x%08x, which does not include itself", op_name(op), site.file,
             site.line, linear % 32, mask);
    f.state = AT_WARP;
    f.site = site;
    f.op = op;
    f.mask = mask;
    f.value = value;
    f.arg = arg;
    f.width = width;
    yield_to_scheduler(f);
    return f.result;
}

namespace {

#if defined(IGPT_INTERP_TSAN)
// ThreadSanitizer's fibers for the GPU threads: a pool, taken in turn, since
// creating one costs microseconds and thousands of blocks run. A fiber that
// serves two blocks orders them (its own program order), so two blocks of
// one launch that run at least tsan_pool_size / threads blocks apart may
// share fibers and their races go unseen; the kernel tests run each launch
// in three block orders, which pair different blocks. Each fiber has its
// own stack: a stack used by two fibers would look like a race to TSan.
struct TsanFiber {
    void *fiber;
    char *stack;
};
const size_t tsan_pool_size = 4096;
thread_local std::vector<TsanFiber> tsan_pool;
thread_local size_t tsan_pool_next = 0;
#endif

// ThreadSanitizer: each thread of the block gets a fiber (and a stack) of
// its own, which sees what the host did before the launch (launch_begin) and
// is named after its coordinates, which TSan's reports print.
void begin_sanitizer_fibers(Block *b, void *launch_begin) {
#if defined(IGPT_INTERP_TSAN)
    for (Fiber &f : b->fibers) {
        if (tsan_pool.size() <= tsan_pool_next) tsan_pool.push_back({__tsan_create_fiber(0), map_stack()});
        f.tsan_fiber = tsan_pool[tsan_pool_next].fiber;
        f.stack = tsan_pool[tsan_pool_next].stack;
        tsan_pool_next = (tsan_pool_next + 1) % tsan_pool_size;
        const Coordinates &c = f.coords;
        char name[512];
        snprintf(name, sizeof name, "kernel %s block (%u,%u,%u) thread (%u,%u,%u)", b->kernel, c.block_idx.x,
                 c.block_idx.y, c.block_idx.z, c.thread_idx.x, c.thread_idx.y, c.thread_idx.z);
        __tsan_set_fiber_name(f.tsan_fiber, name);
        __tsan_switch_to_fiber(f.tsan_fiber, __tsan_switch_to_fiber_no_sync);
        __tsan_acquire(launch_begin);
    }
    __tsan_switch_to_fiber(host_fiber, __tsan_switch_to_fiber_no_sync);
#else
    (void)b;
    (void)launch_begin;
#endif
}

// The block's threads hand what they did to the end of the grid (launch_end).
void end_sanitizer_fibers(Block *b, void *launch_end) {
#if defined(IGPT_INTERP_TSAN)
    for (Fiber &f : b->fibers) {
        __tsan_switch_to_fiber(f.tsan_fiber, __tsan_switch_to_fiber_no_sync);
        __tsan_release(launch_end);
    }
    __tsan_switch_to_fiber(host_fiber, __tsan_switch_to_fiber_no_sync);
#else
    (void)b;
    (void)launch_end;
#endif
}

}  // namespace

void run_grid(const char *name, const void *kernel, CallSite site, dim3 grid, dim3 block, size_t shared_bytes,
              const std::function<void()> &body) {
    check_launch_limits(name, kernel, site, grid, block, shared_bytes);
    if (running_block) {
        fprintf(stderr, "interpret: kernel %s launched from inside kernel %s\n", name, running_block->kernel);
        abort();
    }
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    const unsigned long long blocks = (unsigned long long)grid.x * grid.y * grid.z;
    ensure_stacks((size_t)threads);
    // Tokens of ThreadSanitizer's happens-before edges into and out of the grid.
    void *launch_begin = untracked_alloc(1, 1), *launch_end = untracked_alloc(1, 1);
#if defined(IGPT_INTERP_TSAN)
    host_fiber = __tsan_get_current_fiber();
    __tsan_release(launch_begin);
#endif
    Block b;
    b.body = &body;
    b.kernel = name;
    b.launch = site;
    b.fibers.resize((size_t)threads);
    uint64_t rng = scheduler_seed;
    std::vector<int> block_order;
    make_order(block_order, (int)blocks, &rng);
    running_block = &b;
    for (int linear_block : block_order) {
        const uint3 bi = {(unsigned)(linear_block % grid.x), (unsigned)(linear_block / grid.x % grid.y),
                          (unsigned)(linear_block / grid.x / grid.y)};
        dynamic_shared = block_alloc(shared_bytes, 16);
        for (unsigned long long t = 0; t < threads; t++) {
            Fiber &f = b.fibers[(size_t)t];
            f.state = RUNNABLE;
            f.coords.thread_idx = {(unsigned)(t % block.x), (unsigned)(t / block.x % block.y),
                                   (unsigned)(t / block.x / block.y)};
            f.coords.block_idx = bi;
            f.coords.block_dim = block;
            f.coords.grid_dim = grid;
            f.stack = stacks[(size_t)t];
        }
        begin_sanitizer_fibers(&b, launch_begin);
        for (unsigned long long t = 0; t < threads; t++) init_fiber(&b, (size_t)t);
        run_block(&b, (int)threads, &rng);
        async_copies_end_block();
        end_sanitizer_fibers(&b, launch_end);
        block_free_all();
        dynamic_shared = nullptr;
    }
    running_block = nullptr;
#if defined(IGPT_INTERP_TSAN)
    __tsan_acquire(launch_end);  // the host sees everything the grid did
#endif
    untracked_free(launch_begin);
    untracked_free(launch_end);
}

}  // namespace interp

void interp_set_order(interp::Order order, uint64_t seed) {
    interp::scheduler_order = order;
    interp::scheduler_seed = seed;
}

// --- Runtime API -------------------------------------------------------------------

cudaError_t cudaMalloc(void **pointer, size_t bytes) {
#if defined(IGPT_INTERP_CHECKER)
    // Exactly the size asked for: ASan's redzone starts right past the end.
    const size_t rounded = bytes;
    if (posix_memalign(pointer, 256, bytes) != 0) return cudaErrorMemoryAllocation;
#else
    const size_t rounded = (bytes + 255) / 256 * 256;
    *pointer = aligned_alloc(256, rounded ? rounded : 256);
    if (!*pointer) return cudaErrorMemoryAllocation;
#endif
    memset(*pointer, 0xFF, rounded);  // unwritten memory reads as NaN
    return cudaSuccess;
}
cudaError_t cudaFree(void *pointer) {
    free(pointer);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind) {
    if (bytes) memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void *dst, int value, size_t bytes) {
    if (bytes) memset(dst, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t) { return cudaMemset(dst, value, bytes); }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamCreate(cudaStream_t *stream) {
    *stream = nullptr;  // work runs when launched: one implicit stream
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaPeekAtLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    }
    return "unknown error";
}
