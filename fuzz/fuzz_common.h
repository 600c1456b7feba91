// What every fuzz harness shares (docs/fuzzing.md). The readers take paths
// and end the program with die() on bad input, as a command-line tool should.
// Under the fuzzer a clean refusal is a normal outcome, not a crash, so:
//   - die() returns here: set_error_context's hook (the one multi-process jobs
//     use to end every rank) longjmps back to the harness;
//   - what the reader held when it died is released: the fuzz build is linked
//     with -Wl,--wrap=malloc,calloc,realloc,free,fopen,fclose, and while a
//     reader runs every allocation and open file is recorded. A refusal frees
//     them (a command-line tool leaves that to exit); after a success nothing
//     may be left, or it is a leak and the harness aborts.
// The product code is unchanged: nothing here is compiled into ./igpt.
#ifndef IGPT_FUZZ_COMMON_H
#define IGPT_FUZZ_COMMON_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Writes the input to `name` in this process's scratch folder (under
// /dev/shm: no disk I/O) and returns the file's path (valid until the next call).
const char *fuzz_input_file(const char *name, const uint8_t *data, size_t size);
// This process's scratch folder.
const char *fuzz_scratch_dir(void);

// Runs `body` as one reader call: returns true when it finished, false when
// it died (a refusal). Everything it left allocated or open is released.
bool fuzz_run(void (*body)(void *), void *arg);

// For the checksum-fixing variants (LLVMFuzzerCustomMutator): the CRC-32 of
// `bytes` at `data` stored little-endian at `field`, computed with the field
// zeroed when it lies inside the range.
void fuzz_store_crc(uint8_t *data, size_t field, size_t begin, size_t end);

#endif
