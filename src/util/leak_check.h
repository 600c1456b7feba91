// make SANITIZE=address,undefined: LeakSanitizer checks when a command
// returns (src/cli/main.c) and when the C tests end (tests/test.c), not at
// every exit: an error exit (die) ends the program with its buffers in use on
// purpose (tests/run.sh sets leak_check_at_exit=0). leak_check_now() runs
// the check in a sanitized build and does nothing in any other.
#ifndef IGPT_LEAK_CHECK_H
#define IGPT_LEAK_CHECK_H

#if defined(__SANITIZE_ADDRESS__)
#define IGPT_LEAK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IGPT_LEAK_CHECK 1
#endif
#endif

#if defined(IGPT_LEAK_CHECK)
#include <sanitizer/lsan_interface.h>
static inline void leak_check_now(void) { __lsan_do_leak_check(); }
#else
static inline void leak_check_now(void) {}
#endif

#endif
