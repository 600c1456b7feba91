// The test runner (harness.h): the registry that TEST fills, the run order,
// one line per test and the totals.
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/blas.h"

typedef struct {
    const char *name;
    TestFunction run;
    const char *file;
    int line;
} TestCase;

// Filled by the constructors of TEST, before main.
static TestCase *registered = NULL;
static int registered_count = 0;

// The state of the running test.
static int failures_in_test = 0;
static const char *skip_reason = NULL;

void test_register(const char *name, TestFunction run, const char *file, int line) {
    static int capacity = 0;
    if (registered_count == capacity) {
        capacity = capacity ? 2 * capacity : 64;
        registered = (TestCase *)realloc(registered, (size_t)capacity * sizeof *registered);
        if (!registered) {
            fprintf(stderr, "out of memory registering test %s\n", name);
            exit(2);
        }
    }
    registered[registered_count++] = (TestCase){name, run, file, line};
}

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    // The first 20 failures of a test are enough to see what broke.
    if (failures_in_test++ < 20) {
        fprintf(stderr, "    %s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
}

void test_skip(const char *why) { skip_reason = why; }

static int by_file_then_line(const void *pa, const void *pb) {
    const TestCase *a = (const TestCase *)pa;
    const TestCase *b = (const TestCase *)pb;
    int by_file = strcmp(a->file, b->file);
    if (by_file != 0) return by_file;
    return (a->line > b->line) - (a->line < b->line);
}

// Sorts the registry into the run order; false (with a message) when two tests share a name.
static bool order_tests(void) {
    qsort(registered, (size_t)registered_count, sizeof *registered, by_file_then_line);
    for (int i = 0; i < registered_count; i++) {
        for (int j = i + 1; j < registered_count; j++) {
            if (strcmp(registered[i].name, registered[j].name) == 0) {
                fprintf(stderr, "two tests are called %s (%s:%d and %s:%d)\n", registered[i].name, registered[i].file,
                        registered[i].line, registered[j].file, registered[j].line);
                return false;
            }
        }
    }
    return true;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *out, const char *program) {
    fprintf(out,
            "usage: %s [--list] [--exact] [NAME]\n"
            "  runs the tests whose name contains NAME (every test without it);\n"
            "  --exact: only the test called NAME (none is an error);\n"
            "  --list prints their names instead, one per line\n",
            program);
}

typedef enum { TEST_PASSED, TEST_FAILED, TEST_SKIPPED } TestOutcome;

// Runs one test and prints its line: outcome, name (padded to `width`), seconds, and a note if any.
static TestOutcome run_test(const TestCase *t, int width, const TestHooks *hooks) {
    failures_in_test = 0;
    skip_reason = NULL;
    if (hooks->before_each) hooks->before_each(t->name);
    double start = seconds_now();
    t->run();
    double seconds = seconds_now() - start;
    bool failed = failures_in_test > 0;
    const char *note = hooks->after_each ? hooks->after_each(t->name, failed) : NULL;
    TestOutcome outcome = failed ? TEST_FAILED : skip_reason ? TEST_SKIPPED : TEST_PASSED;
    static const char *const labels[] = {"ok", "FAIL", "skip"};
    printf("%-4s  %-*s %7.2f s", labels[outcome], width, t->name, seconds);
    if (outcome == TEST_SKIPPED) note = skip_reason;
    if (note) printf("  (%s)", note);
    printf("\n");
    fflush(stdout);
    return outcome;
}

int test_main(int argc, char **argv, const TestHooks *hooks) {
    start_again_with_library_settings(argv);  // compute as ./igpt does (util/blas.c)
    static const TestHooks no_hooks = {0};
    if (!hooks) hooks = &no_hooks;
    bool list_only = false, exact = false;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            list_only = true;
        } else if (strcmp(argv[i], "--exact") == 0) {
            exact = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout, argv[0]);
            return 0;
        } else if (argv[i][0] == '-' || filter) {
            usage(stderr, argv[0]);
            return 2;
        } else {
            filter = argv[i];
        }
    }
    if (exact && !filter) {
        usage(stderr, argv[0]);
        return 2;
    }
    if (!order_tests()) return 2;
    // Names padded to the longest, so that the seconds line up.
    int width = 0;
    for (int i = 0; i < registered_count; i++) {
        int length = (int)strlen(registered[i].name);
        if (length > width) width = length;
    }
    int counts[3] = {0}, selected = 0;
    for (int i = 0; i < registered_count; i++) {
        if (filter && !(exact ? strcmp(registered[i].name, filter) == 0 : strstr(registered[i].name, filter) != NULL))
            continue;
        selected++;
        if (list_only) {
            printf("%s\n", registered[i].name);
        } else {
            counts[run_test(&registered[i], width, hooks)]++;
        }
    }
    // A script that names one test must not read a typo as "0 passed, 0 failed".
    if (exact && selected == 0) {
        fprintf(stderr, "no test is called %s (--list prints the names)\n", filter);
        return 2;
    }
    if (list_only) return 0;
    if (hooks->after_all) hooks->after_all(counts[TEST_FAILED] == 0);
    if (counts[TEST_SKIPPED]) printf("(%d skipped)\n", counts[TEST_SKIPPED]);
    printf("%d passed, %d failed\n", counts[TEST_PASSED], counts[TEST_FAILED]);
    return counts[TEST_FAILED] ? 1 : 0;
}
