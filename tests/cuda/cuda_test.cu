// The CUDA tests' program (build/interp/igpt_cuda_tests, build/cuda/igpt_cuda_tests;
// the runner is tests/harness.c) and what cuda_test.h adds for kernel tests.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
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

// --- Errors and tolerances ---------------------------------------------------------------

double gamma_n(int n, double u) { return n * u / (1.0 - n * u); }

double rel_frobenius_error(const float *got, const float *want, size_t n) {
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)got[i] - (double)want[i];
        diff += d * d;
        norm += (double)want[i] * (double)want[i];
    }
    if (norm == 0.0) return diff == 0.0 ? 0.0 : INFINITY;
    return std::sqrt(diff / norm);
}

double bound_ratio(const float *got, const double *exact, const double *bound, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double err = std::fabs((double)got[i] - exact[i]);
        const double ratio = err == 0.0 ? 0.0 : err / bound[i];
        if (!(ratio <= worst)) worst = ratio;  // NaN propagates
    }
    return worst;
}

std::vector<float> nudged_one_ulp(const std::vector<float> &x, uint64_t seed) {
    std::vector<float> coin = random_floats(x.size(), seed, -1, 1), out(x.size());
    for (size_t i = 0; i < x.size(); i++) out[i] = std::nextafter(x[i], coin[i] < 0 ? -INFINITY : INFINITY);
    return out;
}

// The worst noted error of each label in the running test, in the order first noted.
struct NotedError {
    std::string label, where;
    double error, tolerance;
};
static std::vector<NotedError> noted_errors;

static std::string json_string(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

static void append_json_line(const char *test_name, const std::string &label, const std::string &where, double error,
                             double tolerance) {
    const char *path = getenv("IGPT_TEST_ERRORS");
    if (!path || !*path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "{\"test\": %s, \"label\": %s, \"where\": %s, \"error\": %.3e, \"tolerance\": %.3e, \"ok\": %s}\n",
            json_string(test_name).c_str(), json_string(label).c_str(), json_string(where).c_str(), error, tolerance,
            error <= tolerance ? "true" : "false");
    fclose(f);
}

// How close an error came to its tolerance; NaN counts as the worst.
static double closeness(double error, double tolerance) {
    if (std::isnan(error)) return INFINITY;
    return tolerance > 0 ? error / tolerance : error > 0 ? INFINITY : 0.0;
}

bool error_within(const char *label, const std::string &where, double error, double tolerance) {
    NotedError *entry = nullptr;
    for (NotedError &e : noted_errors)
        if (e.label == label) entry = &e;
    if (!entry) noted_errors.push_back({label, where, error, tolerance});
    else if (closeness(error, tolerance) > closeness(entry->error, entry->tolerance))
        *entry = {label, where, error, tolerance};
    return error <= tolerance;
}

void print_noted_errors(const char *test_name) {
    for (const NotedError &e : noted_errors) {
        printf("      %-56s %9.2e of %-7.1e (%s)\n", e.label.c_str(), e.error, e.tolerance, e.where.c_str());
        append_json_line(test_name, e.label, e.where, e.error, e.tolerance);
    }
    noted_errors.clear();
}

// Every test starts from the first thread order (the interpreter's forward order).
static void use_first_schedule_order(const char *name) {
    (void)name;
    use_schedule_order(schedule_orders()[0]);
}

static const char *print_errors_after_test(const char *name, bool failed) {
    (void)failed;
    print_noted_errors(name);
    return NULL;
}

int main(int argc, char **argv) {
    // The CPU references run on small tensors: one thread, no OpenMP spinning.
    cpu_set_threads(1);
    const TestHooks hooks = {use_first_schedule_order, print_errors_after_test, NULL};
    return test_main(argc, argv, &hooks);
}
