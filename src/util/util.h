// Small helpers shared by every part of igpt: fatal errors, checked allocation
// and file I/O, atomic file writes, a seeded RNG, CRC32 and timing.
//
// Error model: igpt is a command-line tool, so a bad input ends the program
// with a message that says what is wrong (die). Before exiting, die removes
// every temporary file still registered by atomic_open, so a failed command
// never leaves a partial output behind.
#ifndef IGPT_UTIL_H
#define IGPT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define IGPT_NORETURN __attribute__((noreturn))
#define IGPT_PRINTF(a, b) __attribute__((format(printf, a, b)))

// Prints "igpt: error: <message>" to stderr, removes pending temporary files,
// and exits with status 1.
IGPT_NORETURN IGPT_PRINTF(1, 2) void die(const char *fmt, ...);
// Prints "igpt: warning: <message>" to stderr.
IGPT_PRINTF(1, 2) void warn(const char *fmt, ...);
// For multi-process jobs: errors start with `prefix` (e.g. "rank 3: ") and,
// after cleaning up, call abort_fn (which ends the whole job) instead of exit.
void set_error_context(const char *prefix, void (*abort_fn)(void));
// Silences warn() (ranks other than 0).
void set_warnings_quiet(bool quiet);
// Exit status of die(); usage errors (bad flags) use 2.
enum { EXIT_USAGE = 2 };

void *xmalloc(size_t bytes);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t bytes);
// count x size zeroed bytes starting on a cache line (64 bytes, one AVX-512
// vector), for the model's buffers: a big calloc starts 16 bytes into a page,
// so every vector of a row straddled two lines. Freed only by xfree_aligned.
void *xcalloc_aligned(size_t count, size_t size);
void xfree_aligned(void *p);
char *xstrdup(const char *s);
// printf into a freshly allocated string.
IGPT_PRINTF(1, 2) char *xasprintf(const char *fmt, ...);

FILE *xfopen(const char *path, const char *mode);
// Reads exactly `bytes` or dies naming `path` (truncated file, I/O error).
void xfread(void *dst, size_t bytes, FILE *f, const char *path);
void xfwrite(const void *src, size_t bytes, FILE *f, const char *path);
// Size of a regular file in bytes, or -1 if it does not exist / is not a file.
int64_t file_size(const char *path);
// A whole file, NUL-terminated (so text can be searched); NULL if it cannot
// be opened or is not a regular file. *size (if not NULL) gets its length.
uint8_t *read_whole_file(const char *path, size_t *size);
bool is_directory(const char *path);
bool path_exists(const char *path);
// The folder a path is in ("." for a bare name), allocated.
char *path_folder(const char *path);
// Creates `path` (and missing parents) as a directory; dies on failure.
void make_directories(const char *path);

// What atomic_open puts between a file's name and mkstemp's 6 characters (a
// starting run removes its own leftovers by it: train/run_files.c).
#define ATOMIC_TEMP_TAG ".tmp."
// Atomic file writing: data goes to "<path>.tmp.XXXXXX" in the same folder,
// and atomic_commit flushes, fsyncs and renames it over `path`. Until then the
// old file (if any) is untouched, and die() or a signal removes the temporary.
typedef struct {
    FILE *file;
    char *path;
    char *tmp_path;
} AtomicFile;
void atomic_open(AtomicFile *af, const char *path);
void atomic_write(AtomicFile *af, const void *src, size_t bytes);
void atomic_commit(AtomicFile *af);
void atomic_abort(AtomicFile *af);

// From now on the first SIGINT/SIGTERM/SIGHUP sets a flag (stop_requested()
// returns the signal number) instead of ending the program; a second one
// ends it at once. Used by training to checkpoint before exiting.
void enable_graceful_stop(void);
int stop_requested(void);

// Deterministic pseudo-random numbers (splitmix64): the same seed gives the
// same stream on every machine. `stream` derives independent sub-seeds so
// that e.g. the validation split and k-means do not share draws.
typedef struct {
    uint64_t state;
} Rng;
void rng_init(Rng *rng, uint64_t seed, uint64_t stream);
uint64_t rng_next(Rng *rng);
// Uniform in [0, n), n > 0, without modulo bias.
uint64_t rng_below(Rng *rng, uint64_t n);
// Uniform double in [0, 1).
double rng_uniform(Rng *rng);
// Standard normal.
double rng_normal(Rng *rng);

// CRC-32 (zlib's polynomial), continuing from `crc` (start with 0): zlib's,
// or in a GPU-only build (IGPT_NO_ZLIB) crc32_plain_update, a byte-at-a-time
// table version that gives the same values (tested against zlib).
uint32_t crc32_update(uint32_t crc, const void *data, size_t bytes);
uint32_t crc32_plain_update(uint32_t crc, const void *data, size_t bytes);

// n rounded up to a multiple of `to`.
static inline size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// Little-endian integers in file headers (all igpt formats are little-endian).
static inline void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

// --- Sizes that come from a file (issue 13) -------------------------------------------
// A header can claim any count; products of counts are computed saturating, so
// that a claim too large for 64 bits becomes UINT64_MAX, which no file size
// matches: the reader's "size of the file" check then refuses it, before
// anything is allocated.
static inline uint64_t saturating_mul(uint64_t a, uint64_t b) {
    uint64_t product;
    return __builtin_mul_overflow(a, b, &product) ? UINT64_MAX : product;
}
static inline uint64_t saturating_add(uint64_t a, uint64_t b) {
    uint64_t sum;
    return __builtin_add_overflow(a, b, &sum) ? UINT64_MAX : sum;
}
// Size of the file a reader is about to open: -1 when nothing is at `path`;
// dies naming it when it is a folder, a FIFO, a device or a socket (opening a
// FIFO would block, a folder reads as an I/O error) or cannot be read.
int64_t regular_file_size(const char *path);

double now_seconds(void);
// "512 KB", "3.1 MB", "2.40 GB" (powers of 1000), into buf; returns buf.
const char *format_bytes(double bytes, char *buf, size_t cap);
// Treats subnormal floats as zero on this thread and every OpenMP worker.
// Softmax probabilities of a well-trained model underflow into the subnormal
// range, where x86 arithmetic is ~100x slower; values below 1e-38 do not
// matter to the results.
void flush_denormals_to_zero(void);
// Number of worker threads: --threads if set (>0), else OpenMP's default.
int resolve_threads(int requested);

// Text progress bar on stderr: redraws in place on a terminal, prints a
// line every few seconds otherwise (logs, CI).
typedef struct {
    const char *label;
    uint64_t total;
    double start_time;
    double last_draw;
    bool tty;
    bool quiet;
} Progress;
void progress_start(Progress *p, const char *label, uint64_t total);
// Call from one thread only; cheap when nothing needs drawing.
void progress_update(Progress *p, uint64_t done, const char *extra);
void progress_finish(Progress *p, const char *extra);
// The last line of work that ended early, at `done` of the total (not 100%).
void progress_finish_at(Progress *p, uint64_t done, const char *extra);
// Silences progress bars (tests, --quiet).
void progress_set_quiet(bool quiet);

#endif
