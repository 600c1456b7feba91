// Test runner: runs every test case, prints one line each and the totals.
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define TEST_LIST(X)                          \
    X(test_cifar_reader_layout_and_labels)    \
    X(test_cifar_reader_class_names_from_meta) \
    X(test_cifar_reader_resizes_with_area_filter) \
    X(test_resize_area_exact_for_integer_ratios) \
    X(test_image_folder_reader)               \
    X(test_image_folder_train_test_layout)    \
    X(test_kmeans_recovers_cluster_centers)   \
    X(test_kmeans_deterministic_across_threads) \
    X(test_palette_fit_rounds_and_sorts)      \
    X(test_quantize_matches_brute_force)      \
    X(test_psnr)                              \
    X(test_stratified_split)                  \
    X(test_dataset_round_trip)                \
    X(test_palette_file_round_trip)           \
    X(test_cli_help)                          \
    X(test_cli_prepare_cifar_end_to_end)      \
    X(test_cli_prepare_image_folder_end_to_end) \
    X(test_cli_same_seed_identical_bytes)     \
    X(test_cli_reuse_palette_for_test_split)  \
    X(test_cli_show)                          \
    X(test_cli_refuses_to_overwrite)          \
    X(test_cli_error_truncated_batch)         \
    X(test_cli_error_wrong_size_batch)        \
    X(test_cli_error_missing_batch)           \
    X(test_cli_error_label_out_of_range)      \
    X(test_cli_error_corrupt_image)           \
    X(test_cli_error_unreadable_image)        \
    X(test_cli_error_empty_class_folder)      \
    X(test_cli_error_palette_color_mismatch)  \
    X(test_cli_error_bad_palette_file)        \
    X(test_cli_error_unknown_flag)            \
    X(test_cli_error_bad_values)              \
    X(test_cli_error_unwritable_output)       \
    X(test_cli_error_val_too_large)           \
    X(test_cli_error_test_classes_differ)     \
    X(test_cli_error_corrupt_prepared_file)   \
    X(test_model_param_count_and_layout)      \
    X(test_op_norm_backward_finite_differences) \
    X(test_op_gelu_backward_finite_differences) \
    X(test_op_softmax_crossentropy_finite_differences) \
    X(test_op_matmul_backward_finite_differences) \
    X(test_op_encoder_backward)               \
    X(test_op_attention_against_naive_and_finite_differences) \
    X(test_model_gradient_finite_differences) \
    X(test_model_features_are_pooled_norm_outputs) \
    X(test_lr_schedule)                       \
    X(test_tiny_overfits_a_few_images)        \
    X(test_train_resume_is_bitwise)           \
    X(test_train_checkpoint_corruption_is_refused) \
    X(test_train_divergence_stops_and_keeps_last_checkpoint) \
    X(test_train_sigint_checkpoints_and_exits) \
    X(test_train_bad_input)                   \
    X(test_train_help_and_version)            \
    X(test_train_run_json_records_the_run)    \
    X(test_model_matches_pytorch_igpt_norm)   \
    X(test_model_matches_pytorch_layernorm)   \
    X(test_synth_deterministic_and_complete)  \
    X(test_synth_classes_are_learnable)       \
    X(test_synth_output_accepted_by_prepare)  \
    X(test_synth_bad_input)                   \
    X(test_probe_solver_matches_scipy)        \
    X(test_probe_separable_data_is_solved)    \
    X(test_probe_standardize)                 \
    X(test_probe_cli_checkpoint_and_run)      \
    X(test_probe_cli_bad_input)               \
    X(test_train_probes_as_it_goes)           \
    X(test_train_moves_between_cpu_and_cuda)  \
    X(test_dist_matches_one_process)          \
    X(test_dist_resume_with_another_process_count) \
    X(test_dist_errors_end_the_job)           \
    X(test_dist_killed_rank_ends_the_job)     \
    X(test_dist_signal_to_one_rank_stops_all) \
    X(test_dist_cuda_backend_through_the_interpreter) \
    X(test_plot_draws_expected_series)

#define DECLARE(name) void name(void);
TEST_LIST(DECLARE)
#define ENTRY(name) {#name, name},
static const TestCase tests[] = {TEST_LIST(ENTRY)};

static char root_dir[256];
static char current_dir[512];
static char path_buf[32][1024];
static int path_slot = 0;
static int failures_in_test = 0;
static char *captured_out = NULL, *captured_err = NULL;
static const char *igpt_binary = "./igpt";

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    if (failures_in_test++ < 20) {
        fprintf(stderr, "    %s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
}

const char *test_dir(void) { return current_dir; }

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

#define RUN_FORMATTED(binary)                      \
    do {                                           \
        char args[4096];                           \
        va_list ap;                                \
        va_start(ap, args_fmt);                    \
        vsnprintf(args, sizeof args, args_fmt, ap); \
        va_end(ap);                                \
        return run_binary(binary, args);           \
    } while (0)

int run_igpt(const char *args_fmt, ...) { RUN_FORMATTED(igpt_binary); }
int run_igpt_interpret(const char *args_fmt, ...) { RUN_FORMATTED("./build/interp/igpt"); }

int run_mpi(int processes, const char *binary, const char *args_fmt, ...) {
    // As root too; more ranks than cores; no cross-process memory mapping (containers often forbid it).
    char *launcher = xasprintf("mpirun --allow-run-as-root --oversubscribe --bind-to none "
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

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    if (getenv("IGPT_BIN")) igpt_binary = getenv("IGPT_BIN");
    snprintf(root_dir, sizeof root_dir, "/tmp/igpt-tests.XXXXXX");
    if (!mkdtemp(root_dir)) die("cannot create a temporary folder for the tests");
    progress_set_quiet(true);
    flush_denormals_to_zero();  // as ./igpt runs
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        snprintf(current_dir, sizeof current_dir, "%s/%s", root_dir, tests[i].name);
        make_directories(current_dir);
        failures_in_test = 0;
        double t0 = now_seconds();
        tests[i].run();
        double secs = now_seconds() - t0;
        if (failures_in_test == 0) {
            passed++;
            printf("ok    %-48s %6.2f s\n", tests[i].name, secs);
            char *cmd = xasprintf("rm -rf '%s'", current_dir);
            if (system(cmd) != 0) warn("cannot remove %s", current_dir);
            free(cmd);
        } else {
            failed++;
            printf("FAIL  %-48s (files kept in %s)\n", tests[i].name, current_dir);
        }
        fflush(stdout);
    }
    if (failed == 0) {
        char *cmd = xasprintf("rm -rf '%s'", root_dir);
        if (system(cmd) != 0) warn("cannot remove %s", root_dir);
        free(cmd);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
