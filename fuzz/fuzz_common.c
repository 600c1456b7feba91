// The harnesses' shared part (fuzz_common.h): the die() hook, the record of
// what a reader allocated and opened, and the scratch files.
#define _XOPEN_SOURCE 700  // nftw
#include "fuzz_common.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

// --- What a reader holds ------------------------------------------------------------
// Recorded only while a reader runs (fuzz_run); libFuzzer's own allocations pass by.

enum { MAX_HELD = 1 << 16 };
static bool recording = false;
static void *held_memory[MAX_HELD];
static int num_held_memory = 0;
static FILE *held_files[256];
static int num_held_files = 0;

void *__real_malloc(size_t bytes);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *ptr, size_t bytes);
void __real_free(void *ptr);
FILE *__real_fopen(const char *path, const char *mode);
int __real_fclose(FILE *f);

static void remember(void **list, int *n, int cap, void *p) {
    if (!p) return;
    if (*n == cap) {
        fprintf(stderr, "fuzz: more than %d allocations or files held at once\n", cap);
        abort();
    }
    list[(*n)++] = p;
}

static void forget(void **list, int *n, void *p) {
    for (int i = *n - 1; i >= 0; i--)  // newest first: most frees are of recent allocations
        if (list[i] == p) {
            list[i] = list[--(*n)];
            return;
        }
}

void *__wrap_malloc(size_t bytes) {
    void *p = __real_malloc(bytes);
    if (recording) remember(held_memory, &num_held_memory, MAX_HELD, p);
    return p;
}

void *__wrap_calloc(size_t count, size_t size) {
    void *p = __real_calloc(count, size);
    if (recording) remember(held_memory, &num_held_memory, MAX_HELD, p);
    return p;
}

void *__wrap_realloc(void *ptr, size_t bytes) {
    void *p = __real_realloc(ptr, bytes);
    if (recording && p) {
        if (ptr) forget(held_memory, &num_held_memory, ptr);
        remember(held_memory, &num_held_memory, MAX_HELD, p);
    }
    return p;
}

void __wrap_free(void *ptr) {
    if (recording && ptr) forget(held_memory, &num_held_memory, ptr);
    __real_free(ptr);
}

FILE *__wrap_fopen(const char *path, const char *mode) {
    FILE *f = __real_fopen(path, mode);
    if (recording) remember((void **)held_files, &num_held_files, 256, f);
    return f;
}

int __wrap_fclose(FILE *f) {
    if (recording) forget((void **)held_files, &num_held_files, f);
    return __real_fclose(f);
}

// --- die() comes back here ------------------------------------------------------------

static jmp_buf refusal;

static void on_die(void) { longjmp(refusal, 1); }

static void setup_once(void) {
    static bool done = false;
    if (done) return;
    done = true;
    set_error_context("", on_die);
    set_warnings_quiet(true);
    progress_set_quiet(true);
}

bool fuzz_run(void (*body)(void *), void *arg) {
    setup_once();
    num_held_memory = 0;
    num_held_files = 0;
    recording = true;
    const bool finished = setjmp(refusal) == 0;
    if (finished) body(arg);
    recording = false;
    if (finished && (num_held_memory || num_held_files)) {
        fprintf(stderr, "fuzz: the reader succeeded but left %d allocations and %d files behind (a leak)\n",
                num_held_memory, num_held_files);
        abort();
    }
    for (int i = 0; i < num_held_files; i++) __real_fclose(held_files[i]);
    for (int i = 0; i < num_held_memory; i++) __real_free(held_memory[i]);
    num_held_memory = 0;
    num_held_files = 0;
    return finished;
}

// --- Scratch files ---------------------------------------------------------------------

static char scratch_dir[256];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_scratch_dir(void) { nftw(scratch_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

// A harness ended by a crash or a timeout exits without atexit: its folder is
// removed by the next harness that starts, once its process is gone.
static void remove_stale_scratch_dirs(const char *base) {
    DIR *d = opendir(base);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid;
        char proc[64];
        if (sscanf(e->d_name, "igpt-fuzz-%d", &pid) != 1) continue;
        snprintf(proc, sizeof proc, "/proc/%d", pid);
        if (access(proc, F_OK) == 0) continue;
        snprintf(scratch_dir, sizeof scratch_dir, "%s/%s", base, e->d_name);
        remove_scratch_dir();
    }
    closedir(d);
    scratch_dir[0] = '\0';
}

const char *fuzz_scratch_dir(void) {
    if (!scratch_dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        remove_stale_scratch_dirs(base);
        snprintf(scratch_dir, sizeof scratch_dir, "%s/igpt-fuzz-%d", base, (int)getpid());
        mkdir(scratch_dir, 0700);
        atexit(remove_scratch_dir);
    }
    return scratch_dir;
}

const char *fuzz_input_file(const char *name, const uint8_t *data, size_t size) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_scratch_dir(), name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size)) {
        perror(path);
        abort();
    }
    close(fd);
    return path;
}

void fuzz_store_crc(uint8_t *data, size_t field, size_t begin, size_t end) {
    put_u32(data + field, 0);
    put_u32(data + field, crc32_update(0, data + begin, end - begin));
}
