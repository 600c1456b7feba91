// Scratch tool (not built by make): where a training step's wall time goes,
// parallel region by parallel region. Preloaded into igpt, it wraps libgomp's
// GOMP_parallel (every `#pragma omp parallel` of igpt and OpenBLAS
// goes through it), sums each region's wall time by the function it runs,
// and at exit prints the sums, the calls and the time between regions (the
// main thread alone). Divide by the steps run (warm-up included); the first
// steps also fault the activations' pages in.
//   cc -O2 -shared -fPIC dev/region_times.c -o /tmp/region_times.so -ldl
//   LD_PRELOAD=/tmp/region_times.so ./igpt bench --quiet --config tiny --steps 200 >/dev/null
// Static functions print as file+offset: `addr2line -f -e igpt 0xOFFSET` names them.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    void *fn;
    double seconds;
    long calls;
} Region;

enum { MAX_REGIONS = 512 };
static Region regions[MAX_REGIONS];
static int num_regions;
static long total_calls;
static double last_end, between;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int by_time(const void *a, const void *b) {
    const double x = ((const Region *)a)->seconds, y = ((const Region *)b)->seconds;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void report(void) {
    qsort(regions, (size_t)num_regions, sizeof regions[0], by_time);
    double inside = 0.0;
    for (int i = 0; i < num_regions; i++) inside += regions[i].seconds;
    fprintf(stderr, "%ld regions, %.3f s inside them, %.3f s between them\n", total_calls, inside, between);
    for (int i = 0; i < num_regions; i++) {
        Dl_info info;
        char where[256] = "?";
        if (dladdr(regions[i].fn, &info)) {
            const char *file = strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1 : info.dli_fname;
            if (info.dli_sname) snprintf(where, sizeof where, "%s", info.dli_sname);
            else
                snprintf(where, sizeof where, "%s+0x%lx", file,
                         (unsigned long)((char *)regions[i].fn - (char *)info.dli_fbase));
        }
        fprintf(stderr, "%9.3f s %8ld calls %9.1f us each  %s\n", regions[i].seconds, regions[i].calls,
                regions[i].seconds / (double)regions[i].calls * 1e6, where);
    }
}

void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags) {
    static void (*real)(void (*)(void *), void *, unsigned, unsigned);
    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "GOMP_parallel");
        atexit(report);
    }
    const double start = now();
    if (last_end > 0.0) between += start - last_end;
    real(fn, data, num_threads, flags);
    const double end = now();
    total_calls++;
    int i = 0;
    while (i < num_regions && regions[i].fn != (void *)fn) i++;
    if (i == num_regions && num_regions < MAX_REGIONS) regions[num_regions++].fn = (void *)fn;
    if (i < MAX_REGIONS) {
        regions[i].seconds += end - start;
        regions[i].calls++;
    }
    last_end = end;
}
