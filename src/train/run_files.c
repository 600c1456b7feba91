// The run's files (run_files.h), through the JSON writer. A resumed run first
// drops the log lines of the steps after its checkpoint, which it is about to
// redo, so log.jsonl always reads as one run.
#include "train/run_files.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "model/config.h"
#include "parallel/dist.h"
#include "util/json.h"
#include "util/util.h"
#include "util/version.h"

const char *run_device_name(const BackendOptions *b) { return device_name(b->device); }

const char *run_precision_name(const BackendOptions *b) {
    return b->device == DEVICE_CUDA && b->precision == GPU_BF16 ? "bf16" : "fp32";
}

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

// Keeps only the log lines of steps <= `step`: what a resumed run has really done.
static void truncate_log(const char *path, uint64_t step) {
    char *text = (char *)read_whole_file(path, NULL);
    if (!text) return;
    AtomicFile af;
    atomic_open(&af, path);
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        const size_t len = end ? (size_t)(end - line + 1) : strlen(line);
        const double line_step = json_line_number(line, len, "step");
        if (line_step <= (double)step) atomic_write(&af, line, len);
        line += len;
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
        truncate_log(log->path, p->run.step);
    }
    log->file = fopen(root ? log->path : "/dev/null", "a");
    if (!log->file) die("cannot write %s: %s", log->path, strerror(errno));
}

void close_run_log(RunLog *log) {
    fclose(log->file);
    free(log->path);
    memset(log, 0, sizeof *log);
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
    json_object_end(&w);
    json_write_line(&w, log->file);
}
