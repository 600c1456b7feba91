// Hostile and unlucky inputs to the file readers (issue 13): checkpoints
// whose CRCs are right but whose numbers are not finite, split files that
// are not regular files, and headers whose sizes overflow 64 bits. The
// fuzz harnesses (fuzz/, make fuzz) try millions more; these are the cases a
// person should be able to read.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/params.h"
#include "probe/features.h"
#include "test.h"
#include "train/checkpoint.h"

#define SMALLEST "--d-model 4 --n-layer 1 --n-head 1 --batch 4 --quiet"

enum { CKPT_HEADER = 256 };  // bytes: checkpoint.c

// A copy of `good` with value `value` planted at float index `index` of the
// payload and both CRCs made right again, so only the finite check can catch it.
static void write_planted_checkpoint(const char *path, const uint8_t *good, size_t n, size_t index, float value) {
    uint8_t *bad = xmalloc(n);
    memcpy(bad, good, n);
    memcpy(bad + CKPT_HEADER + 4 * index, &value, 4);
    reseal_checkpoint(bad, n);
    write_whole_file(path, bad, n);
    free(bad);
}

TEST(test_info_refuses_non_finite_checkpoints) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --device cpu --data %s --out %s --steps 1 " SMALLEST, data, test_path("run")) == 0,
          "train: %s", cli_stderr());
    char *good_path = xstrdup(test_path("run/checkpoint-00000001.bin"));
    size_t n;
    uint8_t *good = read_whole_file(good_path, &n);
    CHECK(good && n > CKPT_HEADER, "checkpoint written");
    if (!good) return;
    CHECK(run_igpt("info %s", good_path) == 0, "the trained checkpoint passes: %s", cli_stderr());
    CheckpointMeta meta;
    checkpoint_read_meta(good_path, &meta);
    const int num_tensors = param_tensors(&meta.model, NULL);
    TensorInfo *tensors = xcalloc((size_t)num_tensors, sizeof *tensors);
    param_tensors(&meta.model, tensors);
    const TensorInfo *qkv = &tensors[4];  // wte, wpe, sos, h0.ln1_g, h0.w_qkv
    CHECK(strcmp(qkv->name, "h0.w_qkv") == 0, "layout: %s", qkv->name);
    const size_t P = meta.num_params;
    struct {
        size_t index;
        float value;
        const char *message;
    } cases[] = {
        {qkv->offset + 5, NAN, "parameter h0.w_qkv[5] is nan"},
        {0, -INFINITY, "parameter wte[0] is -inf"},
        {P + P - 1, INFINITY, "Adam first moment of w_head["},
        {2 * P + qkv->offset, NAN, "Adam second moment of h0.w_qkv[0] is nan"},
    };
    const char *bad_path = test_path("bad.bin");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_planted_checkpoint(bad_path, good, n, cases[i].index, cases[i].value);
        const int status = run_igpt("info %s", bad_path);
        CHECK(status == 1 && strstr(cli_stderr(), "igpt: error: ") && strstr(cli_stderr(), bad_path) &&
                  strstr(cli_stderr(), cases[i].message) && !strchr(strchr(cli_stderr(), '\n') + 1, '\n'),
              "case %zu: one line naming the checkpoint, the tensor and the index; exit %d: %s", i, status,
              cli_stderr());
    }
    free(tensors);
    free(good);
    free(good_path);
    free(data);
}

TEST(test_split_files_must_be_regular_files) {
    char *data = small_prepared_data();
    char *val = xasprintf("%s/val.bin", data), *saved = xasprintf("%s/val.saved", data);
    CHECK(rename(val, saved) == 0, "move val.bin aside");
    // A folder, a FIFO (opening it would block) and a dangling link, each named val.bin.
    CHECK(mkdir(val, 0755) == 0, "mkdir");
    int status = run_igpt("train --device cpu --data %s --out %s --steps 1 " SMALLEST, data, test_path("run1"));
    expect_failure(status, 1, "val.bin is a folder, not a file", NULL);
    CHECK(!path_exists(test_path("run1")), "no run folder is left");
    rmdir(val);
    CHECK(mkfifo(val, 0644) == 0, "mkfifo");
    status = run_igpt("train --device cpu --data %s --out %s --steps 1 " SMALLEST, data, test_path("run2"));
    expect_failure(status, 1, "val.bin is not a regular file", NULL);
    unlink(val);
    CHECK(symlink("nowhere.bin", val) == 0, "symlink");
    status = run_igpt("train --device cpu --data %s --out %s --steps 1 " SMALLEST, data, test_path("run3"));
    expect_failure(status, 1, "val.bin: no such file", NULL);
    unlink(val);
    // Unreadable: only when not root (root reads any file).
    if (geteuid() != 0) {
        CHECK(rename(saved, val) == 0 && chmod(val, 0) == 0, "chmod");
        status = run_igpt("train --device cpu --data %s --out %s --steps 1 " SMALLEST, data, test_path("run4"));
        expect_failure(status, 1, "cannot read", NULL);
        chmod(val, 0644);
        rename(val, saved);
    }
    // train.bin and test.bin: the same check in every reader of a split.
    char *test = xasprintf("%s/test.bin", data);
    CHECK(unlink(test) == 0 && mkdir(test, 0755) == 0, "test.bin as a folder");
    expect_failure(run_igpt("info %s", test), 1, "test.bin is a folder, not a file", NULL);
    expect_failure(run_igpt("show %s", test), 1, "test.bin is a folder, not a file", NULL);
    char *train = xasprintf("%s/train.bin", data);
    CHECK(unlink(train) == 0 && mkfifo(train, 0644) == 0, "train.bin as a FIFO");
    status = run_igpt("train --device cpu --data %s --out %s --steps 1 " SMALLEST, data, test_path("run5"));
    expect_failure(status, 1, "train.bin is not a regular file", NULL);
    free(train);
    free(test);
    free(val);
    free(saved);
    free(data);
}

// Runs features_load in a child (it ends the process on a bad file) and
// returns its exit status; the child's stderr goes to `err_path`.
static int features_load_status(const char *path, const char *err_path) {
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(err_path, "w", stderr)) _exit(99);
        FeatureSet fs;
        features_load(path, &fs);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A feature file whose image count makes 2N + 4N x layers x dim wrap around
// 64 bits to the size of the file: without saturating arithmetic the sizes
// check passes and the reader allocates from a wrapped count.
TEST(test_feature_file_sizes_cannot_wrap) {
    enum { COUNT = 12, LAYERS = 20, DIM = 24, CLASSES = 28, PAYLOAD_CRC = 48, HEADER_CRC = 52, HEADER = 64 };
    struct {
        uint64_t count;
        uint32_t layers, dim, classes;
        uint16_t label;
        size_t payload;  // bytes after the header
        const char *message;
    } cases[] = {
        // 6 x 3074457345618258603 = 2^64 + 2: a 66-byte file that "holds" 3e18 images.
        {3074457345618258603ull, 1, 1, 1, 0, 2, "out of range (corrupt feature file)"},
        {1, 1u << 31, 1, 1, 0, 6, "out of range"},  // a negative int once cast
        {1, 1, 1, 2, 7, 6, "image 0 has label 7, but there are 2 classes"},
    };
    const char *path = test_path("features-00000000-val.bin"), *err = test_path("err.txt");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t file[HEADER + 6] = {0};
        memcpy(file, IGPT_FEATURES_MAGIC, 8);
        put_u32(file + 8, IGPT_FEATURES_VERSION);
        put_u64(file + COUNT, cases[i].count);
        put_u32(file + LAYERS, cases[i].layers);
        put_u32(file + DIM, cases[i].dim);
        put_u32(file + CLASSES, cases[i].classes);
        memcpy(file + HEADER, &cases[i].label, 2);
        put_u32(file + PAYLOAD_CRC, crc32_update(0, file + HEADER, cases[i].payload));
        put_u32(file + HEADER_CRC, crc32_update(0, file, HEADER));
        write_whole_file(path, file, HEADER + cases[i].payload);
        const int status = features_load_status(path, err);
        char *text = (char *)read_whole_file(err, NULL);
        CHECK(status == 1 && text && strstr(text, path) && strstr(text, cases[i].message), "case %zu: exit %d: %s", i,
              status, text ? text : "");
        free(text);
    }
}
