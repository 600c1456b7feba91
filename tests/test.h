// What the C tests share: the harness (TEST, CHECK, test_skip), a fresh
// folder per test, running ./igpt as a user does, and the fixtures.
#ifndef IGPT_TEST_H
#define IGPT_TEST_H

#include <stdbool.h>
#include <stdint.h>

#include "data/palette.h"
#include "harness.h"
#include "util/util.h"

// A fresh empty folder for the running test (removed after a passing run).
const char *test_dir(void);
// A path inside test_dir(). The string is recycled after 32 more calls:
// copy it to keep it longer.
IGPT_PRINTF(1, 2) const char *test_path(const char *fmt, ...);

// The binaries under test: "./igpt" and "./build/interp/igpt", or those of
// the build folder in $IGPT_BUILD (make sets it: build/sanitize/igpt, ...).
const char *igpt_path(void);
const char *igpt_interpret_path(void);

// Runs `./igpt <args>` through the shell with stdout and stderr captured;
// returns the exit status (or 128+signal). The captured text is available
// through cli_stdout() / cli_stderr() until the next run.
IGPT_PRINTF(1, 2) int run_igpt(const char *args_fmt, ...);
// The same with build/interp/igpt: ./igpt whose CUDA backend runs in the
// interpret mode on the CPU (--device cuda works without a GPU).
IGPT_PRINTF(1, 2) int run_igpt_interpret(const char *args_fmt, ...);
// The same under `mpirun -np processes` (OpenMPI; as root too), of binary
// (NULL: ./igpt).
IGPT_PRINTF(3, 4) int run_mpi(int processes, const char *binary, const char *args_fmt, ...);
const char *cli_stdout(void);
const char *cli_stderr(void);
// Checks a command that must fail: its exit status, a message on its stderr
// and, when out_dir is not NULL, that it left no file in out_dir.
void expect_failure(int status, int expected_status, const char *message, const char *out_dir);
// True when `dir` holds no regular files (sub-folders are ignored).
bool folder_has_no_files(const char *dir);
bool files_equal(const char *a, const char *b);
// max |got - want| / max |want| over n values, want the reference in double;
// NaN when any difference is NaN (an unwritten or poisoned output).
double relative_error(const float *got, const double *want, size_t n);
// x[i] uniform in [-scale, scale), drawn in order from rng.
void fill_uniform(float *x, size_t n, float scale, Rng *rng);
void write_whole_file(const char *path, const void *data, size_t size);
// Makes a checkpoint's payload and header CRCs right again after a test
// changed its bytes, so that the change meets the checks behind the CRCs.
void reseal_checkpoint(uint8_t *bytes, size_t size);

// --- Fixtures ----------------------------------------------------------------
// Writes CIFAR-10 binary batches into `dir`: data_batch_1..5.bin with
// `per_batch` records each and test_batch.bin with `test_records`, pixels
// from a seeded RNG, label of record r = (r + batch) % 10 so every class is
// present. Returns nothing; use cifar_record_value to know a pixel.
void make_cifar_batches(const char *dir, int per_batch, int test_records);
// The byte make_cifar_batches wrote at (batch 0..5 where 5 = test, record,
// byte offset within the record).
uint8_t cifar_fixture_byte(int batch, int record, int offset);
// A synthetic RGB image whose colors come from a few flat regions, so that
// palettes and JPEG stay well-behaved. `kind` selects the pattern.
void make_pattern_image(uint8_t *rgb, int w, int h, int kind);
// Writes an image folder root/<class>/NNN.png with `per_class` images of
// side x side per class, classes named by `class_names`.
void make_image_folder(const char *root, const char *const *class_names, int num_classes, int per_class, int side);

// A palette with exact centers (palette_set_centers) from a seeded RNG, the
// red of each on a half (where rounding is furthest from it).
void make_exact_palette(Palette *pal, int colors, uint64_t seed);

// A prepared dataset in test_path("data"): 32 training and 8 validation
// images of 8x8 in 16 colors (tests/test_train.c). Returns the folder.
char *small_prepared_data(void);

// --- Reference fixtures (IGPTFIX1, docs/model.md "Test fixtures") ---------------
typedef struct {
    char name[64];
    uint32_t dtype;  // 0 f32, 1 i32, 2 f64
    uint32_t ndim, dims[8];
    size_t count;
    void *data;
} FixtureArray;

typedef struct {
    int count;
    FixtureArray arrays[32];
} Fixture;

bool fixture_load(const char *path, Fixture *fx);
// The array called `name`, or NULL.
const FixtureArray *fixture_get(const Fixture *fx, const char *name);
void fixture_free(Fixture *fx);

#endif
