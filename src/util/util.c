// The helpers of util.h. Everything that can fail with the user's input
// (files, sizes, allocations) fails here with a message naming what, so the
// rest of igpt can be written as if it cannot.
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifndef IGPT_NO_ZLIB
#include <zlib.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <pmmintrin.h>
#include <xmmintrin.h>
#endif

// ---------------------------------------------------------------------------
// Temporary files that must disappear if the program dies before commit.

#define MAX_PENDING_TEMPS 32
static char *pending_temps[MAX_PENDING_TEMPS];
static bool signal_handlers_installed = false;

static void remove_pending_temps(void) {
    for (int i = 0; i < MAX_PENDING_TEMPS; i++) {
        if (pending_temps[i]) unlink(pending_temps[i]);  // async-signal-safe
    }
}

// In graceful mode (training) the first SIGINT/SIGTERM only raises a flag
// that the training loop polls; a second one ends the program at once.
static volatile sig_atomic_t graceful_mode = 0, stop_signal = 0;

static void on_signal(int sig) {
    if (graceful_mode && !stop_signal) {
        stop_signal = sig;
        return;
    }
    remove_pending_temps();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_signal_handlers(void) {
    if (signal_handlers_installed) return;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal_handlers_installed = true;
}

void enable_graceful_stop(void) {
    graceful_mode = 1;
    install_signal_handlers();
}

int stop_requested(void) { return stop_signal; }

static void register_temp(char *path) {
    install_signal_handlers();
    for (int i = 0; i < MAX_PENDING_TEMPS; i++) {
        if (!pending_temps[i]) {
            pending_temps[i] = path;
            return;
        }
    }
    die("internal: too many files open for atomic writing");
}

static void unregister_temp(const char *path) {
    for (int i = 0; i < MAX_PENDING_TEMPS; i++) {
        if (pending_temps[i] == path) pending_temps[i] = NULL;
    }
}

// ---------------------------------------------------------------------------
// Messages

static const char *error_prefix = "";
static void (*error_abort)(void) = NULL;
static bool warnings_quiet = false;

void set_error_context(const char *prefix, void (*abort_fn)(void)) {
    error_prefix = prefix ? prefix : "";
    error_abort = abort_fn;
}

void set_warnings_quiet(bool quiet) { warnings_quiet = quiet; }

void die(const char *fmt, ...) {
    fflush(stdout);
    // One write, so that the lines of several processes do not interleave.
    char message[2048];
    int len = snprintf(message, sizeof message, "igpt: error: %s", error_prefix);
    va_list ap;
    va_start(ap, fmt);
    if (len >= 0 && (size_t)len < sizeof message)
        len += vsnprintf(message + len, sizeof message - (size_t)len, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof message - 1) len = (int)sizeof message - 2;
    message[len] = '\n';
    message[len + 1] = '\0';
    fputs(message, stderr);
    fflush(stderr);
    remove_pending_temps();
    if (error_abort) error_abort();  // ends every process of a multi-process job
    exit(1);
}

void warn(const char *fmt, ...) {
    if (warnings_quiet) return;
    fflush(stdout);
    fputs("igpt: warning: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

// ---------------------------------------------------------------------------
// Memory

void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) die("out of memory allocating %zu bytes", bytes);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

// calloc's own block (zero pages from the kernel, untouched until used),
// the aligned address inside it, and the block's address in the word before.
void *xcalloc_aligned(size_t count, size_t size) {
    enum { LINE = 64 };
    const size_t bytes = count * (size ? size : 1);
    if (size && bytes / size != count) die("out of memory allocating %zu x %zu bytes", count, size);
    const size_t extra = LINE + sizeof(void *);
    if (bytes > SIZE_MAX - extra) die("out of memory allocating %zu bytes", bytes);
    char *block = xcalloc(bytes + extra, 1);
    const uintptr_t start = ((uintptr_t)block + sizeof(void *) + LINE - 1) / LINE * LINE;
    void **aligned = (void **)start;
    aligned[-1] = block;
    return aligned;
}

void xfree_aligned(void *p) {
    if (p) free(((void **)p)[-1]);
}

void *xrealloc(void *ptr, size_t bytes) {
    void *p = realloc(ptr, bytes ? bytes : 1);
    if (!p) die("out of memory allocating %zu bytes", bytes);
    return p;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) die("internal: bad format string");
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

// ---------------------------------------------------------------------------
// Files

FILE *xfopen(const char *path, const char *mode) {
    // What is read must be a file: a FIFO would wait for a writer forever
    // (issue 13: prepare --palette FIFO hung), a folder reads as nothing.
    struct stat st;
    if (mode[0] == 'r' && stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        die("%s is %s, not a file", path, S_ISDIR(st.st_mode) ? "a folder" : "a device, FIFO or socket");
    FILE *f = fopen(path, mode);
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    return f;
}

void xfread(void *dst, size_t bytes, FILE *f, const char *path) {
    if (bytes == 0) return;
    size_t got = fread(dst, 1, bytes, f);
    if (got != bytes) {
        if (ferror(f)) die("cannot read %s: %s", path, strerror(errno));
        die("%s is truncated: expected %zu more bytes, found %zu", path, bytes, got);
    }
}

void xfwrite(const void *src, size_t bytes, FILE *f, const char *path) {
    if (bytes == 0) return;
    if (fwrite(src, 1, bytes, f) != bytes) die("cannot write %s: %s", path, strerror(errno));
}

int64_t file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    return (int64_t)st.st_size;
}

int64_t regular_file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return -1;
        die("cannot read %s: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) die("%s is a folder, not a file", path);
    if (!S_ISREG(st.st_mode)) die("%s is not a regular file (a FIFO, device or socket)", path);
    if (access(path, R_OK) != 0) die("cannot read %s: %s", path, strerror(errno));
    return (int64_t)st.st_size;
}

uint8_t *read_whole_file(const char *path, size_t *size) {
    // Regular files only: a folder opens but has no size to read, a FIFO would block.
    if (file_size(path) < 0) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    const int64_t n = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : 0;
    uint8_t *data = xmalloc((size_t)n + 1);
    size_t got = n > 0 ? fread(data, 1, (size_t)n, f) : 0;
    fclose(f);
    data[got] = 0;
    if (size) *size = got;
    return data;
}

bool is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char *path_folder(const char *path) {
    char *folder = xstrdup(path);
    char *slash = strrchr(folder, '/');
    if (!slash) {
        free(folder);
        return xstrdup(".");
    }
    *slash = '\0';
    return folder;
}

void make_directories(const char *path) {
    char *buf = xstrdup(path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) die("cannot create folder %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) die("cannot create folder %s: %s", buf, strerror(errno));
    if (!is_directory(buf)) die("%s exists and is not a folder", buf);
    free(buf);
}

void atomic_open(AtomicFile *af, const char *path) {
    af->path = xstrdup(path);
    af->tmp_path = xasprintf("%s" ATOMIC_TEMP_TAG "XXXXXX", path);
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) die("cannot write %s: %s", path, strerror(errno));
    register_temp(af->tmp_path);
    fchmod(fd, 0644);
    af->file = fdopen(fd, "wb");
    if (!af->file) die("cannot write %s: %s", path, strerror(errno));
}

void atomic_write(AtomicFile *af, const void *src, size_t bytes) { xfwrite(src, bytes, af->file, af->path); }

void atomic_commit(AtomicFile *af) {
    if (fflush(af->file) != 0 || fsync(fileno(af->file)) != 0) die("cannot write %s: %s", af->path, strerror(errno));
    if (fclose(af->file) != 0) die("cannot write %s: %s", af->path, strerror(errno));
    af->file = NULL;
    if (rename(af->tmp_path, af->path) != 0) die("cannot rename into %s: %s", af->path, strerror(errno));
    // Make the rename itself durable: fsync the folder that holds the file.
    char *dir = xstrdup(af->path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
    unregister_temp(af->tmp_path);
    free(af->tmp_path);
    free(af->path);
    af->tmp_path = af->path = NULL;
}

void atomic_abort(AtomicFile *af) {
    if (af->file) fclose(af->file);
    if (af->tmp_path) {
        unlink(af->tmp_path);
        unregister_temp(af->tmp_path);
    }
    free(af->tmp_path);
    free(af->path);
    af->file = NULL;
    af->tmp_path = af->path = NULL;
}

// ---------------------------------------------------------------------------
// RNG: splitmix64 (Steele, Lea, Flood 2014), small and statistically sound.

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rng_init(Rng *rng, uint64_t seed, uint64_t stream) {
    uint64_t s = seed ^ (stream * 0xD1B54A32D192ED03ull);
    rng->state = splitmix64(&s);
}

uint64_t rng_next(Rng *rng) { return splitmix64(&rng->state); }

uint64_t rng_below(Rng *rng, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // reject the biased tail
    uint64_t x;
    do x = rng_next(rng);
    while (x >= limit);
    return x % n;
}

double rng_uniform(Rng *rng) { return (double)(rng_next(rng) >> 11) * (1.0 / 9007199254740992.0); }

// Box-Muller, cosine branch only: one normal per two uniforms.
double rng_normal(Rng *rng) {
    double u1 = rng_uniform(rng), u2 = rng_uniform(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

// ---------------------------------------------------------------------------

// The reflected CRC-32 of zlib and PNG: each byte steps the register through
// a table of the 256 possible low bytes (0xEDB88320 is the polynomial,
// bit-reversed), built once.
static uint32_t crc_table[256];
static void build_crc_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int bit = 0; bit < 8; bit++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

uint32_t crc32_plain_update(uint32_t crc, const void *data, size_t bytes) {
    static pthread_once_t table_once = PTHREAD_ONCE_INIT;
    pthread_once(&table_once, build_crc_table);
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < bytes; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

#ifdef IGPT_NO_ZLIB
uint32_t crc32_update(uint32_t crc, const void *data, size_t bytes) { return crc32_plain_update(crc, data, bytes); }
#else
uint32_t crc32_update(uint32_t crc, const void *data, size_t bytes) {
    const unsigned char *p = data;
    while (bytes > 0) {  // zlib takes uInt lengths
        uInt chunk = bytes > (1u << 30) ? (1u << 30) : (uInt)bytes;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        bytes -= chunk;
    }
    return crc;
}
#endif

const char *format_bytes(double bytes, char *buf, size_t cap) {
    if (bytes < 1e6) snprintf(buf, cap, "%.0f KB", bytes / 1e3);
    else if (bytes < 1e9) snprintf(buf, cap, "%.1f MB", bytes / 1e6);
    else snprintf(buf, cap, "%.2f GB", bytes / 1e9);
    return buf;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int resolve_threads(int requested) { return requested > 0 ? requested : omp_get_max_threads(); }

// ---------------------------------------------------------------------------
// Progress bar

static bool progress_quiet = false;

void progress_set_quiet(bool quiet) { progress_quiet = quiet; }

void progress_start(Progress *p, const char *label, uint64_t total) {
    p->label = label;
    p->total = total;
    p->start_time = now_seconds();
    p->last_draw = 0.0;
    p->tty = isatty(STDERR_FILENO);
    p->quiet = progress_quiet;
}

static void format_duration(double s, char *buf, size_t n) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%dh%02dm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%dm%02ds", t / 60, t % 60);
    else snprintf(buf, n, "%ds", t);
}

static void progress_draw(Progress *p, uint64_t done, const char *extra, bool final) {
    double elapsed = now_seconds() - p->start_time;
    double frac = p->total ? (double)done / (double)p->total : 1.0;
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    char eta[32], took[32];
    format_duration(rate > 0 ? (double)(p->total - done) / rate : -1, eta, sizeof eta);
    format_duration(elapsed, took, sizeof took);
    const int width = 24;
    char bar[32];
    int filled = (int)(frac * width);
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "%s%-10s [%s] %3d%% %llu/%llu %.*f/s %s %s%s%s%s", p->tty ? "\r" : "", p->label, bar,
            (int)(frac * 100), (unsigned long long)done, (unsigned long long)p->total, rate < 10 ? 2 : 0, rate,
            final ? "in" : "eta", final ? took : eta, extra ? " " : "", extra ? extra : "", p->tty ? "\033[K" : "\n");
    if (final && p->tty) fputc('\n', stderr);
    fflush(stderr);
}

void progress_update(Progress *p, uint64_t done, const char *extra) {
    if (p->quiet) return;
    double t = now_seconds();
    double interval = p->tty ? 0.1 : 5.0;
    if (t - p->last_draw < interval) return;
    if (p->last_draw == 0.0 && !p->tty && t - p->start_time < interval) return;
    p->last_draw = t;
    progress_draw(p, done, extra, false);
}

void progress_finish(Progress *p, const char *extra) { progress_finish_at(p, p->total, extra); }

void progress_finish_at(Progress *p, uint64_t done, const char *extra) {
    if (p->quiet) return;
    progress_draw(p, done, extra, true);
}

// ---------------------------------------------------------------------------

void flush_denormals_to_zero(void) {
#if defined(__x86_64__) || defined(__i386__)
    // Every OpenMP worker has its own MXCSR: set it on each of them.
#pragma omp parallel
    {
        _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
        _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
    }
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#endif
}
