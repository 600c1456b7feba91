// The training loop: batch -> forward -> backward -> reduce -> clip -> AdamW
// -> log -> evaluate -> checkpoint, one optimizer step per turn, on any
// backend and any number of processes. What comes before the first step
// (the data, a new run or a resumed one) is in plan.c; run.json and
// log.jsonl in run_files.c; the order of the images in data_order.c.
#include "train/train.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/dataset.h"
#include "model/backend.h"
#include "model/config.h"
#include "model/params.h"
#include "parallel/data_parallel.h"
#include "parallel/dist.h"
#include "train/checkpoint.h"
#include "train/data_order.h"
#include "train/optim.h"
#include "train/plan.h"
#include "train/run_files.h"
#include "util/util.h"

// Everything the loop and its helpers share.
typedef struct {
    const TrainSettings *s;
    TrainPlan plan;
    CheckpointMeta *run;  // &plan.run: what the next checkpoint records
    Backend model;
    DataParallel dp;  // the model's gradients summed over the job's processes
    DataCursor cursor;
    RunLog log;
    uint16_t *batch_tokens;  // the whole batch (every process draws all of it); also the evaluation buffer
    char *last_checkpoint;   // NULL until there is one
    Progress progress;
    int64_t first_step;    // of this invocation
    double train_seconds;  // spent in steps, for tokens/s
    int exit_status;       // 0, or 128 + the signal that stopped the run (train_run)
} Trainer;

// --- Evaluation -------------------------------------------------------------------------

// Mean loss (nats/token) over `images` images evenly spaced through `data`
// (the same images at every evaluation). With several processes each takes
// every world-th micro-batch of them.
static double evaluate(Backend *m, const TokenDataset *data, int64_t images, int micro_batch, uint16_t *buffer) {
    const int64_t tpi = dataset_tokens_per_image(data);
    const Dist *d = dist_get();
    int64_t *index = xmalloc((size_t)images * sizeof(int64_t));
    evenly_spaced(data->count, images, index);
    double total = 0.0;
    for (int64_t i = (int64_t)d->rank * micro_batch; i < images; i += (int64_t)d->world * micro_batch) {
        const int n = (int)(images - i < micro_batch ? images - i : micro_batch);
        for (int k = 0; k < n; k++)
            memcpy(buffer + (size_t)k * tpi, data->tokens + (size_t)index[i + k] * tpi, (size_t)tpi * sizeof(uint16_t));
        total += backend_forward(m, buffer, n) * n;
    }
    free(index);
    return dist_sum_double(total) / (double)images;
}

static void evaluate_and_log(Trainer *t, int64_t step) {
    const double v = evaluate(&t->model, &t->plan.val, t->plan.eval_images, (int)t->run->micro_batch, t->batch_tokens);
    t->run->val_loss = v;
    log_evaluation(&t->log, step, v, t->plan.eval_images);
    // Without a progress bar on a terminal, each evaluation gets a line of its own.
    if (t->progress.quiet || !t->progress.tty) {
        printf("step %lld: val loss %.4f nats/token (%.4f bits)\n", (long long)step, v, v / M_LN2);
        fflush(stdout);
    }
}

// --- Checkpoints and probes --------------------------------------------------------------

static void save_checkpoint(Trainer *t, int64_t step) {
    CheckpointMeta *run = t->run;
    run->step = (uint64_t)step;
    run->epoch = t->cursor.epoch;
    run->epoch_pos = t->cursor.pos;
    free(t->last_checkpoint);
    t->last_checkpoint = checkpoint_path(t->s->out_dir, run->step);
    const float *params, *adam_m, *adam_v;
    backend_get_state(&t->model, &params, &adam_m, &adam_v);  // every rank: ZeRO gathers the pieces
    if (dist_is_root()) checkpoint_save(t->last_checkpoint, run, params, adam_m, adam_v);
    run_folder_keep();  // the run has a checkpoint: its folder stays whatever happens next
    log_checkpoint(&t->log, step, t->last_checkpoint, run->val_loss);
}

// Runs `./igpt probe` on a checkpoint in a child process and waits for it; a
// failed probe is reported but does not stop training.
static void probe_checkpoint(const TrainSettings *s, const char *checkpoint) {
    char *out = xasprintf("%s/probe", s->out_dir);
    char train_images[32], eval_images[32];
    snprintf(train_images, sizeof train_images, "%lld", (long long)s->probe_train_images);
    snprintf(eval_images, sizeof eval_images, "%lld", (long long)s->probe_eval_images);
    const char *args[20];
    int n = 0;
    args[n++] = "igpt";
    args[n++] = "probe";
    args[n++] = "--data";
    args[n++] = s->data_dir;
    args[n++] = "--checkpoint";
    args[n++] = checkpoint;
    args[n++] = "--out";
    args[n++] = out;
    args[n++] = "--quiet";
    args[n++] = "--device";
    args[n++] = run_device_name(&s->backend);
    args[n++] = "--precision";
    args[n++] = run_precision_name(&s->backend);
    if (s->probe_train_images) {
        args[n++] = "--train-images";
        args[n++] = train_images;
    }
    if (s->probe_eval_images) {
        args[n++] = "--eval-images";
        args[n++] = eval_images;
    }
    args[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", (char *const *)args);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        warn("probing %s failed; training goes on (rerun ./igpt probe --run %s later)", checkpoint, s->out_dir);
    free(out);
}

// --- The progress line ---------------------------------------------------------------------

static double tokens_per_second(const Trainer *t, int64_t step) {
    const double tokens = (double)t->run->batch * t->run->model.seq_len * (double)(step - t->first_step);
    return tokens / t->train_seconds;
}

static void show_progress(Trainer *t, int64_t step, double loss, double lr, double grad_norm, char *line, size_t cap) {
    const int len =
        snprintf(line, cap, "loss %.4f lr %.2e |g| %.3f %.0f tok/s", loss, lr, grad_norm, tokens_per_second(t, step));
    if (!isnan(t->run->val_loss)) snprintf(line + len, cap - (size_t)len, " val %.4f", t->run->val_loss);
    progress_update(&t->progress, (uint64_t)(step - t->first_step), line);
}

// The signal that stops every process of the job, the same on all: SIGINT
// if any process got one, else SIGTERM, else SIGHUP; 0 if none. One sum over
// the processes (each count in its own 20 bits of a double), once a step.
static int agreed_stop_signal(int local_signal) {
    const int order[3] = {SIGINT, SIGTERM, SIGHUP};
    double mine = 0.0;
    for (int i = 0; i < 3; i++)
        if (local_signal == order[i]) mine = ldexp(1.0, 20 * i);
    const double all = dist_sum_double(mine);
    for (int i = 0; i < 3; i++)
        if (fmod(floor(ldexp(all, -20 * i)), 1048576.0) > 0) return order[i];
    return 0;
}

static const char *signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP"; }

// A signal (or --stop-at) ends the run early: the last step was checkpointed.
// The progress bar and the line say where it stopped; a signal sets the exit
// status to 128 + its number, as a shell reports a command the signal ended.
static void report_stop(Trainer *t, int64_t step, int stop_signal, const char *line) {
    progress_finish_at(&t->progress, (uint64_t)(step - t->first_step), line);
    const int64_t total = t->plan.optim.total_steps;
    char why[64];
    if (stop_signal) snprintf(why, sizeof why, "interrupted (%s)", signal_name(stop_signal));
    else snprintf(why, sizeof why, "stopped (--stop-at)");
    t->exit_status = stop_signal ? 128 + stop_signal : 0;
    printf(
        "train: %s after step %lld of %lld (%d%%); checkpoint %s. Continue with: ./igpt train --data %s --out %s "
        "--resume\n",
        why, (long long)step, (long long)total, (int)(100 * step / total), t->last_checkpoint, t->s->data_dir,
        t->s->out_dir);
    if (stop_signal)
        printf("train: exit status %d (128 + %s): stopped early, resumable\n", t->exit_status,
               signal_name(stop_signal));
}

static void report_done(Trainer *t, int64_t step) {
    char line[128];
    snprintf(line, sizeof line, "loss %.4f", t->run->train_loss);
    progress_finish(&t->progress, line);
    printf("train: done, %lld steps, final train loss %.4f nats/token", (long long)step, t->run->train_loss);
    if (!isnan(t->run->val_loss))
        printf(", val loss %.4f (%.4f bits/token)", t->run->val_loss, t->run->val_loss / M_LN2);
    printf("; %.0f tokens/s; checkpoint %s, log %s\n", t->train_seconds > 0 ? tokens_per_second(t, step) : 0.0,
           t->last_checkpoint, t->log.path);
}

IGPT_NORETURN static void die_diverged(const Trainer *t, int64_t step, double loss, double grad_norm) {
    die("training diverged at step %lld: loss %g, gradient norm %g (lr %g). Nothing was saved from this step; the "
        "last good checkpoint is %s. Try a lower --lr or a longer --warmup.",
        (long long)step + 1, loss, grad_norm, lr_at_step(&t->plan.optim, step),
        t->last_checkpoint ? t->last_checkpoint : "none");
}

// --- The loop ---------------------------------------------------------------------------------

// Every `every` steps, and at the last one.
static bool due(int64_t step, uint64_t every, int64_t total_steps) {
    return step % (int64_t)every == 0 || step == total_steps;
}

static void train_loop(Trainer *t) {
    const TrainSettings *s = t->s;
    const OptimConfig *oc = &t->plan.optim;
    const int batch = (int)t->run->batch, micro_batch = (int)t->run->micro_batch, T = t->run->model.seq_len;
    const Dist *job = dist_get();
    const int share = batch / job->world;  // this process's images of every batch
    const int micro_steps = share / micro_batch;
    const uint16_t *my_share = t->batch_tokens + (size_t)job->rank * share * T;
    const float loss_scale = 1.0f / ((float)batch * (float)T);  // the loss is the mean over the whole batch
    int64_t step = t->first_step;
    while (step < oc->total_steps) {
        const double t0 = now_seconds();
        // Batch: every process draws the whole batch, so the data order is the same everywhere.
        cursor_next(&t->cursor, t->batch_tokens, batch);
        // Forward and backward through this process's share, a micro-batch at a time; gradients accumulate.
        backend_zero_grads(&t->model);
        double loss = 0.0;
        for (int micro = 0; micro < micro_steps; micro++) {
            const uint16_t *tokens = my_share + (size_t)micro * micro_batch * T;
            loss += backend_forward(&t->model, tokens, micro_batch) * micro_batch / batch;
            dp_backward(&t->dp, tokens, micro_batch, loss_scale, micro == micro_steps - 1);
        }
        // Reduce: the loss and the gradients summed over the processes; then clip the gradients to the
        // global norm and take the AdamW step (on a GPU without a wait for the norm). A diverged step
        // is not saved.
        loss = dist_sum_double(loss);
        const double lr = lr_at_step(oc, step);
        const double grad_norm = dp_clip_and_step(&t->dp, oc, step);
        if (!isfinite(loss) || !isfinite(grad_norm)) die_diverged(t, step, loss, grad_norm);
        step++;
        const double seconds = now_seconds() - t0;
        t->train_seconds += seconds;
        // Log the step; evaluate, checkpoint and probe when due.
        log_step(&t->log, step, loss, lr, grad_norm, (double)batch * T / seconds, t->cursor.epoch);
        t->run->train_loss = loss;
        t->run->val_loss = NAN;
        if (t->plan.eval_images > 0 && due(step, t->run->eval_every, oc->total_steps)) evaluate_and_log(t, step);
        // A signal to any process stops every process after the same step.
        const int stop_signal = agreed_stop_signal(stop_requested());
        const bool stopping = stop_signal || step == s->stop_at;
        const bool probe_now = s->probe_every && step % s->probe_every == 0;
        fflush(t->log.file);  // the step's lines are in the log before its checkpoint exists
        if (due(step, t->run->checkpoint_every, oc->total_steps) || stopping || probe_now) save_checkpoint(t, step);
        fflush(t->log.file);
        if (probe_now && !stop_signal && dist_is_root()) probe_checkpoint(s, t->last_checkpoint);
        if (s->keep_last && dist_is_root()) rotate_checkpoints(s->out_dir, s->keep_last, s->probe_every);
        char line[160];
        show_progress(t, step, loss, lr, grad_norm, line, sizeof line);
        if (stopping && step < oc->total_steps) {
            report_stop(t, step, stop_signal, line);
            return;
        }
    }
    report_done(t, step);
}

// --- Before and after -------------------------------------------------------------------------

static void print_run(const TrainSettings *s, const TrainPlan *p) {
    const ModelConfig *cfg = &p->run.model;
    printf(
        "train: %s model (d_model %d, %d layers, %d heads, %s norm), %zu parameters, %d colors, %dx%d = %d "
        "tokens/image\n",
        s->config_name, cfg->d_model, cfg->n_layer, cfg->n_head, norm_kind_name(cfg->norm), param_count(cfg),
        cfg->vocab_size, cfg->image_height, cfg->image_width, cfg->seq_len);
    printf(
        "train: %lld images in train.bin, %lld of %lld val images per evaluation; batch %d (micro-batch %d), %lld "
        "steps, lr %g (warm-up %lld)\n",
        (long long)p->train.count, (long long)p->eval_images, p->has_val ? (long long)p->val.count : 0LL,
        (int)p->run.batch, (int)p->run.micro_batch, (long long)p->optim.total_steps, p->optim.lr,
        (long long)p->optim.warmup_steps);
    // The memory plan is printed before anything is allocated.
    char plan[512];
    backend_plan(&s->backend, cfg, (int)p->run.micro_batch, plan, sizeof plan);
    printf("train: %s\n", plan);
    const int world = dist_get()->world;
    if (world > 1)
        printf("train: %d processes (data parallel), %d images each per step%s\n", world, (int)p->run.batch / world,
               s->backend.zero ? ", Adam state split across them (ZeRO-1)" : "");
    if (s->resume) printf("train: resuming from %s (step %llu)\n", p->resumed_from, (unsigned long long)p->run.step);
    if (s->keep_last)
        printf("train: keeping the newest %lld checkpoints (--keep-last); older ones are deleted once probed\n",
               (long long)s->keep_last);
    fflush(stdout);
}

// The model on its device, with the resumed run's state or a fresh initialisation.
static void create_model(Trainer *t) {
    TrainPlan *p = &t->plan;
    backend_create(&t->model, &t->s->backend, &p->run.model, (int)p->run.micro_batch);
    dp_init(&t->dp, &t->model);
    if (p->params) {
        backend_set_state(&t->model, p->params, p->adam_m, p->adam_v);
    } else {
        float *init = xmalloc(t->model.num_params * sizeof(float));
        model_init_params(&p->run.model, init, p->run.seed);
        backend_set_state(&t->model, init, NULL, NULL);
        free(init);
    }
    // The loaded state is in the model now.
    free(p->params);
    free(p->adam_m);
    free(p->adam_v);
    p->params = p->adam_m = p->adam_v = NULL;
}

int train_run(const TrainSettings *s, const ParsedArgs *parsed) {
    progress_set_quiet(s->quiet || !dist_is_root());
    Trainer t = {.s = s};
    // A start that fails takes back the folder it made (run_files.h).
    if (dist_is_root()) run_folder_watch(s->out_dir);
    plan_training(s, parsed, &t.plan);
    t.run = &t.plan.run;
    // Every rank has decided the same before rank 0 writes anything.
    dist_barrier();
    if (dist_is_root()) {
        lock_run_folder(s->out_dir);
        remove_leftover_temps(s->out_dir);
    }
    print_run(s, &t.plan);
    create_model(&t);
    open_run_files(s, &t.plan, t.model.num_params, &t.log);
    cursor_init(&t.cursor, &t.plan.train, t.run->seed, t.run->epoch, t.run->epoch_pos);
    t.batch_tokens = xmalloc((size_t)t.run->batch * t.run->model.seq_len * sizeof(uint16_t));
    t.first_step = (int64_t)t.run->step;
    t.last_checkpoint = t.plan.resumed_from ? xstrdup(t.plan.resumed_from) : NULL;
    enable_graceful_stop();
    progress_start(&t.progress, "train", (uint64_t)(t.plan.optim.total_steps - t.first_step));

    train_loop(&t);

    close_run_log(&t.log);
    free(t.batch_tokens);
    cursor_free(&t.cursor);
    free(t.last_checkpoint);
    dp_free(&t.dp);
    backend_free(&t.model);
    plan_free(&t.plan);
    return t.exit_status;
}
