// Runner of the CUDA tests: one line per test and "N passed, N failed" last.
// Usage: igpt_cuda_tests [NAME_FILTER]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdlib>
#include <cstring>

#include "cuda_test.h"

#define CUDA_TEST_LIST(X)                       \
    X(test_interp_block_reduction_all_orders)   \
    X(test_interp_missing_barrier_is_exposed)   \
    X(test_interp_divergent_barrier_aborts)     \
    X(test_interp_early_return_before_barrier_aborts) \
    X(test_interp_warp_shuffles)                \
    X(test_interp_mismatched_warp_mask_aborts)  \
    X(test_interp_mask_without_caller_aborts)   \
    X(test_interp_atomics_across_blocks)        \
    X(test_interp_dynamic_shared_is_poisoned)   \
    X(test_interp_coordinates)                  \
    X(test_interp_bf16_rounding)                \
    X(test_gpu_encoder_forward_backward)        \
    X(test_gpu_norm_forward_backward)           \
    X(test_gpu_gelu_forward_backward)           \
    X(test_gpu_softmax_crossentropy)            \
    X(test_gpu_adamw_and_grad_norm)             \
    X(test_gpu_casts)                           \
    X(test_gpu_attention_head_sizes_and_tiles)  \
    X(test_gpu_attention_t1024_hs64)            \
    X(test_gpu_attention_t4096)                 \
    X(test_gpu_matmul_against_cpu)             \
    X(test_gpu_model_matches_cpu_loss_gradients_features) \
    X(test_gpu_training_follows_cpu_and_repeats) \
    X(test_gpu_recompute_gives_the_same_gradients)

#define DECLARE(name) void name(void);
CUDA_TEST_LIST(DECLARE)
#define ENTRY(name) {#name, name},
struct TestEntry {
    const char *name;
    void (*run)(void);
};
static const TestEntry tests[] = {CUDA_TEST_LIST(ENTRY)};

static int failures_in_test = 0;
static const char *skipped = nullptr;

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    if (failures_in_test++ < 20) {
        fprintf(stderr, "    %s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
}

void test_skip(const char *why) { skipped = why; }

int run_in_child(void (*fn)(void), std::string *err) {
    char path[] = "/tmp/igpt-cuda-test-stderr.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        exit(1);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 2);
        fn();
        fflush(stderr);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    err->clear();
    lseek(fd, 0, SEEK_SET);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) err->append(buf, (size_t)n);
    close(fd);
    unlink(path);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

std::vector<ScheduleOrder> schedule_orders() {
#ifdef IGPT_INTERPRET
    return {{"forward", interp::ORDER_FORWARD}, {"reverse", interp::ORDER_REVERSE}, {"random", interp::ORDER_RANDOM}};
#else
    return {{"gpu", 0}};
#endif
}

void use_schedule_order(const ScheduleOrder &o) {
#ifdef IGPT_INTERPRET
    interp_set_order(static_cast<interp::Order>(o.order), 12345);
#else
    (void)o;
#endif
}

std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi) {
    std::vector<float> v(n);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        v[i] = lo + (hi - lo) * (float)((s >> 11) * (1.0 / 9007199254740992.0));
    }
    return v;
}

double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = std::fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;  // NaN propagates
    }
    return m;
}

double max_rel_diff(const float *a, const float *b, size_t n) {
    double scale = 1.0;
    for (size_t i = 0; i < n; i++) scale = std::fmax(scale, std::fabs((double)b[i]));
    return max_abs_diff(a, b, n) / scale;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : nullptr;
    // The CPU references run on small tensors: one thread, no OpenMP spinning.
    cpu_set_threads(1);
    int passed = 0, failed = 0, skips = 0;
    for (const TestEntry &t : tests) {
        if (filter && !strstr(t.name, filter)) continue;
        failures_in_test = 0;
        skipped = nullptr;
        use_schedule_order(schedule_orders()[0]);
        auto t0 = std::chrono::steady_clock::now();
        t.run();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (failures_in_test) {
            failed++;
            printf("FAIL  %s\n", t.name);
        } else if (skipped) {
            skips++;
            printf("skip  %-52s (%s)\n", t.name, skipped);
        } else {
            passed++;
            printf("ok    %-52s %6.2f s\n", t.name, secs);
        }
        fflush(stdout);
    }
    if (skips) printf("(%d skipped)\n", skips);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
