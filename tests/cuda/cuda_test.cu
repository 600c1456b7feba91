// The CUDA tests' program (build/interp/igpt_cuda_tests, build/cuda/igpt_cuda_tests;
// the runner is tests/harness.c) and what cuda_test.h adds for kernel tests.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "cuda_test.h"

extern "C" {
#include "model/cpu_ops.h"
}

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
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
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

// Every test starts from the first thread order (the interpreter's forward order).
static void use_first_schedule_order(const char *name) {
    (void)name;
    use_schedule_order(schedule_orders()[0]);
}

int main(int argc, char **argv) {
    // The CPU references run on small tensors: one thread, no OpenMP spinning.
    cpu_set_threads(1);
    const TestHooks hooks = {use_first_schedule_order, NULL, NULL};
    return test_main(argc, argv, &hooks);
}
