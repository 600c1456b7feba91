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
thread_local std::vector<unsigned char> shared_memory;
Order scheduler_order = ORDER_FORWARD;
uint64_t scheduler_seed = 1;

const char *op_name(WarpOp op) {
    static const char *const names[] = {"__syncwarp",     "__shfl_sync",   "__shfl_xor_sync", "__shfl_down_sync",
                                        "__shfl_up_sync", "__ballot_sync", "__any_sync",      "__all_sync"};
    return names[op];
}

[[noreturn]] void fail(const char *format, ...) __attribute__((format(printf, 1, 2)));
void fail(const char *format, ...) {
    Block *b = running_block;
    if (b) {
        const uint3 &bi = b->fibers.empty() ? uint3{0, 0, 0} : b->fibers[0].coords.block_idx;
        fprintf(stderr, "interpret: kernel %s (launched at %s:%d), block (%u,%u,%u): ", b->kernel, b->launch.file,
                b->launch.line, bi.x, bi.y, bi.z);
    } else fprintf(stderr, "interpret: ");
    va_list ap;
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
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

// Suspends the running thread until the scheduler resumes it.
void yield_to_scheduler(Fiber &f) { f.scheduler = std::move(f.scheduler).resume(); }

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

void ensure_stacks(size_t count) {
    if (stack_bytes == 0) {
        const char *env = getenv("IGPT_INTERP_STACK_KB");
        stack_bytes = (size_t)(env ? atoi(env) : 256) * 1024;
        if (stack_bytes < 64 * 1024) stack_bytes = 64 * 1024;
    }
    const size_t page = 4096;
    while (stacks.size() < count) {
        // A guard page below each stack turns an overflow into a crash, not corruption.
        void *p = mmap(nullptr, stack_bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (p == MAP_FAILED) fail("cannot map %zu bytes of fiber stack", stack_bytes);
        mprotect(p, page, PROT_NONE);
        stacks.push_back(static_cast<char *>(p) + page);
    }
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
            for (int j = 0; j < 32; j++)
                if (mask >> j & 1u) b->fibers[(size_t)(base + j)].state = RUNNABLE;
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

void init_fiber(Block *b, size_t index, char *stack) {
    bctx::stack_context sctx;
    sctx.size = stack_bytes;
    sctx.sp = stack + stack_bytes;  // stacks grow down from the top
    b->fibers[index].self = bctx::fiber(std::allocator_arg, bctx::preallocated(sctx.sp, sctx.size, sctx),
                                        NoStackAllocator(), [b, index](bctx::fiber &&scheduler) {
                                            Fiber &f = b->fibers[index];
                                            f.scheduler = std::move(scheduler);
                                            (*b->body)();
                                            f.state = DONE;
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
            f.self = std::move(f.self).resume();
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
                for (Fiber &f : b->fibers) f.state = RUNNABLE;
                continue;
            }
        }
        report_stuck(b);
    }
}

}  // namespace

void *dynamic_shared_memory() {
    current_fiber("dynamic shared memory");
    return shared_memory.data();
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

void run_grid(const char *name, CallSite site, dim3 grid, dim3 block, size_t shared_bytes,
              const std::function<void()> &body) {
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    const unsigned long long blocks = (unsigned long long)grid.x * grid.y * grid.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || blocks == 0 || grid.y > 65535 || grid.z > 65535 ||
        grid.x > 2147483647u) {
        fprintf(stderr,
                "interpret: kernel %s launched at %s:%d with grid (%u,%u,%u) and block (%u,%u,%u): invalid "
                "launch configuration\n",
                name, site.file, site.line, grid.x, grid.y, grid.z, block.x, block.y, block.z);
        abort();
    }
    if (shared_bytes > 227 * 1024) {
        fprintf(stderr,
                "interpret: kernel %s launched at %s:%d asks for %zu bytes of dynamic shared memory (the "
                "limit is 227 KiB)\n",
                name, site.file, site.line, shared_bytes);
        abort();
    }
    if (running_block) {
        fprintf(stderr, "interpret: kernel %s launched from inside kernel %s\n", name, running_block->kernel);
        abort();
    }
    ensure_stacks((size_t)threads);
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
        shared_memory.assign(shared_bytes, 0xFF);
        for (unsigned long long t = 0; t < threads; t++) {
            Fiber &f = b.fibers[(size_t)t];
            f.state = RUNNABLE;
            f.coords.thread_idx = {(unsigned)(t % block.x), (unsigned)(t / block.x % block.y),
                                   (unsigned)(t / block.x / block.y)};
            f.coords.block_idx = bi;
            f.coords.block_dim = block;
            f.coords.grid_dim = grid;
            init_fiber(&b, (size_t)t, stacks[(size_t)t]);
        }
        run_block(&b, (int)threads, &rng);
    }
    running_block = nullptr;
}

}  // namespace interp

void interp_set_order(interp::Order order, uint64_t seed) {
    interp::scheduler_order = order;
    interp::scheduler_seed = seed;
}

// --- Runtime API -------------------------------------------------------------------

cudaError_t cudaMalloc(void **pointer, size_t bytes) {
    size_t rounded = (bytes + 255) / 256 * 256;
    *pointer = aligned_alloc(256, rounded ? rounded : 256);
    if (!*pointer) return cudaErrorMemoryAllocation;
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
