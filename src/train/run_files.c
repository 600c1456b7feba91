// The run's files (run_files.h), through the JSON writer. A resumed run first
// drops the log lines of the steps after its checkpoint, which it is about to
// redo, so log.jsonl always reads as one run. Below them, the upkeep of the
// run folder: what a kill or a failed start leaves there, and old checkpoints.
#include "train/run_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model/backend.h"
#include "model/config.h"
#include "parallel/dist.h"
#include "train/checkpoint.h"
#include "util/json.h"
#include "util/util.h"
#include "util/version.h"

const char *run_device_name(const BackendOptions *b) { return device_name(b->device); }

const char *run_precision_name(const BackendOptions *b) { return precision_name(b->precision); }

static void write_run_json(const char *path, const TrainSettings *s, const TrainPlan *p, size_t num_params) {
    const ModelConfig *cfg = &p->run.model;
    const OptimConfig *oc = &p->optim;
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_BLOCK);
    json_string(&w, "data", s->data_dir);
    json_string(&w, "config", s->config_name);
    json_object_begin(&w, "model", JSON_INLINE);
    json_int(&w, "vocab_size", cfg->vocab_size);
    json_int(&w, "seq_len", cfg->seq_len);
    json_int(&w, "image_height", cfg->image_height);
    json_int(&w, "image_width", cfg->image_width);
    json_int(&w, "d_model", cfg->d_model);
    json_int(&w, "n_layer", cfg->n_layer);
    json_int(&w, "n_head", cfg->n_head);
    json_string(&w, "norm", norm_kind_name(cfg->norm));
    json_uint(&w, "parameters", num_params);
    json_object_end(&w);
    json_object_begin(&w, "optim", JSON_INLINE);
    json_real(&w, "lr", "%g", oc->lr);
    json_real(&w, "min_lr_frac", "%g", oc->min_lr_frac);
    json_int(&w, "warmup_steps", oc->warmup_steps);
    json_int(&w, "total_steps", oc->total_steps);
    json_real(&w, "beta1", "%g", oc->beta1);
    json_real(&w, "beta2", "%g", oc->beta2);
    json_real(&w, "eps", "%g", oc->eps);
    json_real(&w, "weight_decay", "%g", oc->weight_decay);
    json_real(&w, "grad_clip", "%g", oc->grad_clip);
    json_object_end(&w);
    json_int(&w, "batch", p->run.batch);
    json_int(&w, "micro_batch", p->run.micro_batch);
    json_uint(&w, "seed", p->run.seed);
    json_string(&w, "device", run_device_name(&s->backend));
    json_string(&w, "precision", run_precision_name(&s->backend));
    if (s->backend.device == DEVICE_CUDA) json_string(&w, "attention", attention_name(s->backend.attention));
    json_int(&w, "processes", dist_get()->world);
    json_bool(&w, "zero", s->backend.zero);
    json_string(&w, "version", igpt_version());
    json_string(&w, "commit", igpt_commit());
    json_string(&w, "command_line", s->command_line);
    json_object_end(&w);
    json_write_file(&w, path);
}

// Keeps only the whole log lines of steps <= `step`: what a resumed run has
// really done (a kill can tear the last line). A kill between committing the
// checkpoint and logging it leaves the checkpoint's own line out: it is
// written again, as the run would have.
static void truncate_log(const char *path, uint64_t step, const char *checkpoint, double val_loss) {
    char *text = (char *)read_whole_file(path, NULL);
    if (!text) return;
    AtomicFile af;
    atomic_open(&af, path);
    bool checkpoint_logged = false;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        if (!end) break;  // torn by a kill
        const size_t len = (size_t)(end - line + 1);
        const double line_step = json_line_number(line, len, "step");
        if (line_step <= (double)step) atomic_write(&af, line, len);
        *end = '\0';
        checkpoint_logged |= line_step == (double)step && strstr(line, "\"checkpoint\": ") != NULL;
        line = end + 1;
    }
    if (!checkpoint_logged) {
        RunLog missing = {.file = af.file};
        log_checkpoint(&missing, (int64_t)step, checkpoint, val_loss);
    }
    atomic_commit(&af);
    free(text);
}

void open_run_files(const TrainSettings *s, const TrainPlan *p, size_t num_params, RunLog *log) {
    log->path = xasprintf("%s/log.jsonl", s->out_dir);
    const bool root = dist_is_root();
    if (root && !s->resume) {
        char *run_json = xasprintf("%s/run.json", s->out_dir);
        write_run_json(run_json, s, p, num_params);
        free(run_json);
    } else if (root) {
        truncate_log(log->path, p->run.step, p->resumed_from, p->run.val_loss);
    }
    // A new run starts its own log (a folder without checkpoints may hold the log of a start that never made one).
    log->file = fopen(root ? log->path : "/dev/null", root && !s->resume ? "w" : "a");
    if (!log->file) die("cannot write %s: %s", log->path, strerror(errno));
}

void close_run_log(RunLog *log) {
    fclose(log->file);
    free(log->path);
    memset(log, 0, sizeof *log);
}

// The last member of every log line: when it was written, as UTC in ISO 8601
// with milliseconds ("2025-03-01T17:04:05.123Z"), so that a log can be laid
// against the clock (a slow node, a preemption, the hours of a long run).
static void json_wall_clock(JsonWriter *w) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    char text[48];
    const size_t len = strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(text + len, sizeof text - len, ".%03ldZ", now.tv_nsec / 1000000);
    json_string(w, "time", text);
}

void log_step(RunLog *log, int64_t step, double loss, double lr, double grad_norm, double tokens_per_s,
              uint64_t epoch) {
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_INLINE);
    json_int(&w, "step", step);
    json_real(&w, "loss", "%.6f", loss);
    json_real(&w, "bits_per_token", "%.6f", loss / M_LN2);
    json_real(&w, "lr", "%.6e", lr);
    json_real(&w, "grad_norm", "%.6f", grad_norm);
    json_real(&w, "tokens_per_s", "%.1f", tokens_per_s);
    json_uint(&w, "epoch", epoch);
    json_wall_clock(&w);
    json_object_end(&w);
    json_write_line(&w, log->file);
}

void log_evaluation(RunLog *log, int64_t step, double val_loss, int64_t eval_images) {
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_INLINE);
    json_int(&w, "step", step);
    json_real(&w, "val_loss", "%.6f", val_loss);
    json_real(&w, "val_bits_per_token", "%.6f", val_loss / M_LN2);
    json_int(&w, "eval_images", eval_images);
    json_wall_clock(&w);
    json_object_end(&w);
    json_write_line(&w, log->file);
}

void log_checkpoint(RunLog *log, int64_t step, const char *checkpoint, double val_loss) {
    const char *slash = strrchr(checkpoint, '/');
    JsonWriter w;
    json_init(&w);
    json_object_begin(&w, NULL, JSON_INLINE);
    json_int(&w, "step", step);
    json_string(&w, "checkpoint", slash ? slash + 1 : checkpoint);
    json_real(&w, "val_loss", "%.6f", val_loss);
    json_wall_clock(&w);
    json_object_end(&w);
    json_write_line(&w, log->file);
}

// --- The run folder's upkeep ------------------------------------------------------------

// The folders a new run is about to create (run_dir and missing parents,
// outermost first), to take back if the command fails before its first
// checkpoint.
#define MAX_WATCHED_FOLDERS 64
static struct {
    char *made[MAX_WATCHED_FOLDERS];
    int count;
    char *run_dir;
    bool armed;
} watched;

static void remove_failed_run_folder(void) {
    if (!watched.armed || watched.count == 0) return;  // the folder was there before: leave it as it is
    // Only this command wrote in a folder it created: its run.json and log.jsonl (temporaries are gone already).
    const char *own_files[] = {"run.json", "log.jsonl"};
    for (size_t i = 0; i < sizeof own_files / sizeof own_files[0]; i++) {
        char *path = xasprintf("%s/%s", watched.run_dir, own_files[i]);
        unlink(path);
        free(path);
    }
    // rmdir removes only empty folders: anything else found there stays.
    for (int i = watched.count - 1; i >= 0; i--) rmdir(watched.made[i]);
}

void run_folder_watch(const char *run_dir) {
    char *path = xstrdup(run_dir);
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') path[--len] = '\0';
    watched.run_dir = xstrdup(path);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        const char kept = path[i];
        path[i] = '\0';
        if (!path_exists(path) && watched.count < MAX_WATCHED_FOLDERS) watched.made[watched.count++] = xstrdup(path);
        path[i] = kept;
    }
    free(path);
    watched.armed = true;
    atexit(remove_failed_run_folder);  // die() ends with exit(1)
}

void run_folder_keep(void) { watched.armed = false; }

void lock_run_folder(const char *run_dir) {
    const int fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return;  // held until the process ends: fd stays open
    if (errno == EWOULDBLOCK)
        die("%s is in use by another ./igpt train (it holds the folder's lock); wait for it to end or choose another "
            "--out",
            run_dir);
    close(fd);  // a file system without locks: go on without one
}

bool is_leftover_temp_name(const char *name) {
    // atomic_open's "<file>" ATOMIC_TEMP_TAG "XXXXXX", where mkstemp puts 6 of [A-Za-z0-9] for the Xs.
    const char *tag = ATOMIC_TEMP_TAG, *alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const size_t len = strlen(name), tail = strlen(tag) + 6;
    if (len <= tail || strncmp(name + len - tail, tag, strlen(tag)) != 0) return false;
    if (strspn(name + len - 6, alnum) != 6) return false;
    const size_t base = len - tail;
    long long step;
    return (base == strlen("log.jsonl") && !strncmp(name, "log.jsonl", base)) ||
           (base == strlen("run.json") && !strncmp(name, "run.json", base)) || checkpoint_name_step(name, base, &step);
}

int remove_leftover_temps(const char *run_dir) {
    DIR *d = opendir(run_dir);
    if (!d) return 0;
    char names[512] = "";
    int removed = 0, named = 0;
    double bytes = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_leftover_temp_name(e->d_name)) continue;
        char *path = xasprintf("%s/%s", run_dir, e->d_name);
        struct stat st;
        const bool plain_file = lstat(path, &st) == 0 && S_ISREG(st.st_mode);
        if (plain_file && unlink(path) == 0) {
            removed++;
            bytes += (double)st.st_size;
            const size_t used = strlen(names);
            if (used + strlen(e->d_name) + 3 < sizeof names) {
                snprintf(names + used, sizeof names - used, "%s%s", named ? ", " : "", e->d_name);
                named++;
            }
        }
        free(path);
    }
    closedir(d);
    if (removed) {
        char size[32];
        fprintf(stderr, "igpt: removed %d leftover temporary file%s of an interrupted write (%s): %s%s\n", removed,
                removed == 1 ? "" : "s", format_bytes(bytes, size, sizeof size), names, named < removed ? ", ..." : "");
        fflush(stderr);
    }
    return removed;
}

// A checkpoint of a probe step whose results are not in RUN_DIR/probe yet.
static bool probe_pending(const char *run_dir, uint64_t step, int64_t probe_every) {
    if (probe_every <= 0 || step % (uint64_t)probe_every != 0) return false;
    char *done = xasprintf("%s/probe/probe-%08llu.csv", run_dir, (unsigned long long)step);
    const bool pending = file_size(done) < 0;
    free(done);
    return pending;
}

int rotate_checkpoints(const char *run_dir, int64_t keep, int64_t probe_every) {
    uint64_t *steps;
    const int64_t n = checkpoint_steps(run_dir, &steps);
    int deleted = 0;
    for (int64_t i = 0; i < n - keep; i++) {
        if (probe_pending(run_dir, steps[i], probe_every)) continue;
        char *path = checkpoint_path(run_dir, steps[i]);
        if (unlink(path) == 0) deleted++;
        else warn("--keep-last: cannot delete %s: %s", path, strerror(errno));
        free(path);
    }
    free(steps);
    return deleted;
}
