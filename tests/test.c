// The C tests' program (build/igpt_tests) and what test.h promises: a fresh
// folder per test under one temporary root, and running ./igpt as a user does.
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "util/leak_check.h"

static char root_dir[256];
static char current_dir[512];
static char path_buf[32][1024];
static int path_slot = 0;
static char *captured_out = NULL;
static char *captured_err = NULL;
// The binaries under test: ./igpt and build/interp/igpt, or those of the
// build folder make names in IGPT_BUILD (build/sanitize/igpt, ...).
static char igpt_binary[512] = "./igpt";
static char interpret_binary[512] = "./build/interp/igpt";

const char *test_dir(void) { return current_dir; }
const char *igpt_path(void) { return igpt_binary; }
const char *igpt_interpret_path(void) { return interpret_binary; }

static void find_binaries(void) {
    const char *build = getenv("IGPT_BUILD");
    if (!build || !*build || !strcmp(build, "build")) return;
    snprintf(igpt_binary, sizeof igpt_binary, "%s/igpt", build);
    snprintf(interpret_binary, sizeof interpret_binary, "%s/interp/igpt", build);
}

const char *test_path(const char *fmt, ...) {
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    char *out = path_buf[path_slot++ % 32];
    snprintf(out, sizeof path_buf[0], "%s/%s", current_dir, rel);
    return out;
}

void reseal_checkpoint(uint8_t *bytes, size_t size) {
    enum { HEADER = 256, PAYLOAD_CRC = 180, HEADER_CRC = 200 };  // byte offsets: checkpoint.c
    put_u32(bytes + PAYLOAD_CRC, crc32_update(0, bytes + HEADER, size - HEADER));
    put_u32(bytes + HEADER_CRC, 0);
    put_u32(bytes + HEADER_CRC, crc32_update(0, bytes, HEADER));
}

void write_whole_file(const char *path, const void *data, size_t size) {
    FILE *f = xfopen(path, "wb");
    xfwrite(data, size, f, path);
    fclose(f);
}

bool files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *da = read_whole_file(a, &na), *db = read_whole_file(b, &nb);
    bool same = da && db && na == nb && memcmp(da, db, na) == 0;
    free(da);
    free(db);
    return same;
}

static int run_binary(const char *binary, const char *args) {
    char out_path[600], err_path[600];
    snprintf(out_path, sizeof out_path, "%s/cli.stdout", root_dir);
    snprintf(err_path, sizeof err_path, "%s/cli.stderr", root_dir);
    char *cmd = xasprintf("%s %s >%s 2>%s </dev/null", binary, args, out_path, err_path);
    int status = system(cmd);
    free(cmd);
    free(captured_out);
    free(captured_err);
    captured_out = (char *)read_whole_file(out_path, NULL);
    captured_err = (char *)read_whole_file(err_path, NULL);
    if (!captured_out) captured_out = xstrdup("");
    if (!captured_err) captured_err = xstrdup("");
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

#define RUN_FORMATTED(binary)                       \
    do {                                            \
        char args[4096];                            \
        va_list ap;                                 \
        va_start(ap, args_fmt);                     \
        vsnprintf(args, sizeof args, args_fmt, ap); \
        va_end(ap);                                 \
        return run_binary(binary, args);            \
    } while (0)

int run_igpt(const char *args_fmt, ...) { RUN_FORMATTED(igpt_binary); }
int run_igpt_interpret(const char *args_fmt, ...) { RUN_FORMATTED(interpret_binary); }

int run_mpi(int processes, const char *binary, const char *args_fmt, ...) {
    // As root too; more ranks than cores; no cross-process memory mapping (containers often forbid it).
    char *launcher = xasprintf(
        "mpirun --allow-run-as-root --oversubscribe --bind-to none "
        "--mca btl_vader_single_copy_mechanism none -np %d %s",
        processes, binary ? binary : igpt_binary);
    char args[4096];
    va_list ap;
    va_start(ap, args_fmt);
    vsnprintf(args, sizeof args, args_fmt, ap);
    va_end(ap);
    int status = run_binary(launcher, args);
    free(launcher);
    return status;
}

const char *cli_stdout(void) { return captured_out ? captured_out : ""; }
const char *cli_stderr(void) { return captured_err ? captured_err : ""; }

void expect_failure(int status, int expected_status, const char *message, const char *out_dir) {
    CHECK(status == expected_status, "exit status %d, expected %d; stderr: %s", status, expected_status, cli_stderr());
    CHECK(strstr(cli_stderr(), message) != NULL, "stderr should mention '%s', got: %s", message, cli_stderr());
    if (out_dir) CHECK(folder_has_no_files(out_dir), "%s should hold no output file", out_dir);
}

bool folder_has_no_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return true;
    bool empty = true;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *p = xasprintf("%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && !S_ISDIR(st.st_mode)) empty = false;
        free(p);
    }
    closedir(d);
    return empty;
}

static void remove_folder(const char *dir) {
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) warn("cannot remove %s", dir);
    free(cmd);
}

// The root folder is made when the first test starts (not for --list).
static void make_test_folder(const char *name) {
    if (!root_dir[0]) {
        snprintf(root_dir, sizeof root_dir, "/tmp/igpt-tests.XXXXXX");
        if (!mkdtemp(root_dir)) die("cannot create a temporary folder for the tests");
    }
    snprintf(current_dir, sizeof current_dir, "%s/%s", root_dir, name);
    make_directories(current_dir);
}

// A passing test's folder goes; a failing test's stays for a look.
static const char *clean_test_folder(const char *name, bool failed) {
    (void)name;
    static char note[600];
    if (failed) {
        snprintf(note, sizeof note, "files kept in %s", current_dir);
        return note;
    }
    remove_folder(current_dir);
    return NULL;
}

static void clean_root_folder(bool all_passed) {
    if (all_passed && root_dir[0]) remove_folder(root_dir);
}

int main(int argc, char **argv) {
    find_binaries();
    progress_set_quiet(true);
    flush_denormals_to_zero();  // as ./igpt runs
    const TestHooks hooks = {make_test_folder, clean_test_folder, clean_root_folder};
    const int status = test_main(argc, argv, &hooks);
    leak_check_now();  // make SANITIZE=address,undefined (util/leak_check.h)
    return status;
}

void fill_uniform(float *x, size_t n, float scale, Rng *rng) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)(2.0 * rng_uniform(rng) - 1.0);
}

double relative_error(const float *got, const double *want, size_t n) {
    double err = 0.0, size = 1e-30;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs(got[i] - want[i]);
        err = isnan(d) || isnan(err) ? NAN : fmax(err, d);
        size = fmax(size, fabs(want[i]));
    }
    return err / size;
}
