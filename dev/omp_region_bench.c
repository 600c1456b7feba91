// Scratch harness (not built by make): what one OpenMP parallel region costs
// when its threads wait between regions the way igpt's may (util/blas.c,
// start_again_with_library_settings). Each round runs a region of 2 threads,
// then ~70 us of work on the main thread alone (the other thread waits), and
// the cost of a region is the round's time less that serial work's.
//   cc -O2 -fopenmp dev/omp_region_bench.c -o /tmp/omp_region_bench
//   OMP_WAIT_POLICY=passive /tmp/omp_region_bench; GOMP_SPINCOUNT=3000 /tmp/omp_region_bench
#include <omp.h>
#include <stdio.h>

static volatile double sink;

static void serial_work(void) {
    for (int j = 0; j < 20000; j++) sink += j;
}

int main(void) {
    enum { ROUNDS = 2000 };
    for (int rep = 0; rep < 5; rep++) {
        const double t0 = omp_get_wtime();
        for (int i = 0; i < ROUNDS; i++) {
#pragma omp parallel num_threads(2)
            sink += omp_get_thread_num();
            serial_work();
        }
        const double t1 = omp_get_wtime();
        for (int i = 0; i < ROUNDS; i++) serial_work();
        const double rounds_s = t1 - t0, serial_s = omp_get_wtime() - t1;
        printf("a region: %5.1f us (the serial work between: %.1f us)\n", (rounds_s - serial_s) / ROUNDS * 1e6,
               serial_s / ROUNDS * 1e6);
    }
    return 0;
}
