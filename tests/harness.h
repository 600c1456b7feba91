// The test harness of both test programs: the C tests (build/igpt_tests) and
// the CUDA tests (build/interp/igpt_cuda_tests in the interpret mode,
// build/cuda/igpt_cuda_tests on a GPU). Written in C; the CUDA tests link it
// from C++.
//
// A test is a function defined with TEST(name) in any test file. The macro
// registers it before main runs (through a constructor function), so adding
// a test touches only the file that holds it: no central list. Constructors
// run in an order the compiler and linker choose, so the runner sorts the
// tests itself: by file name (alphabetical), then by line, which is file by
// file and in source order within a file. Two tests with one name are an
// error.
//
// CHECK records a failure and the test goes on, so one run reports every
// broken expectation. test_skip marks a test as skipped, with the reason.
//
// A runner takes [--list] [--exact] [NAME]: it runs (or, with --list, prints
// one per line) the tests whose name contains NAME, or with --exact the one
// test called NAME (scripts/gpu_check.sh runs each test in its own process
// that way; a name no test has is an error); for each test it prints one line
// "ok", "FAIL" or "skip", the name and the seconds, and last the totals
// "N passed, N failed", which tests/run.sh reads.
#ifndef IGPT_HARNESS_H
#define IGPT_HARNESS_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*TestFunction)(void);

// Called by TEST before main; `file` and `line` give the test's place in the run order.
void test_register(const char *name, TestFunction run, const char *file, int line);

#define TEST(name)                                                                                                     \
    static void name(void);                                                                                            \
    __attribute__((constructor)) static void name##_register(void) { test_register(#name, name, __FILE__, __LINE__); } \
    static void name(void)

__attribute__((format(printf, 3, 4))) void test_fail_at(const char *file, int line, const char *fmt, ...);
#define CHECK(cond, ...)                                            \
    do {                                                            \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

// Marks the running test as skipped (unless it also fails), with the reason;
// the test returns right after.
void test_skip(const char *why);

// What a test program does around each test (any of them may be NULL).
typedef struct {
    void (*before_each)(const char *name);
    // Returns a note for the line of a failed test (e.g. where its files
    // were kept), or NULL.
    const char *(*after_each)(const char *name, bool failed);
    // After the last test, whether every test that ran passed or was skipped.
    void (*after_all)(bool all_passed);
} TestHooks;

// The test program's main: reads [--list] [--exact] [NAME], runs the tests, prints
// their lines and the totals; returns the exit status (1 if a test failed,
// 2 for a usage error).
int test_main(int argc, char **argv, const TestHooks *hooks);

#ifdef __cplusplus
}
#endif

#endif
