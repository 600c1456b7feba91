// Data-parallel training across processes on the CPU backend, through
// `mpirun -np N ./igpt train` (OpenMPI): N ranks with the same global batch
// train as one process does (loss per step within 1e-5 relative, parameters
// and Adam state after 20 steps within 1e-5 of their largest magnitude), with
// and without ZeRO-1; a run resumes with another number of processes; only
// rank 0 writes; errors and a killed rank end the job.
//
// Shards: every rank draws the same global batch and takes its own slice of
// it, so a step uses each of its images exactly once across ranks; with a
// batch of 6 over 32 images, 20 steps cross 3 epochs, and the equality with
// one process checks that every image was seen as often as there.
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "train/checkpoint.h"

#define DP_MODEL \
    "--device cpu --d-model 32 --n-layer 2 --n-head 2 --batch 6 --threads 1 --eval-every 10 --eval-images 8 --quiet"

// Losses of the log's training lines, in order; returns how many.
static int logged_losses(const char *run, double *out, int max) {
    char *path = xasprintf("%s/log.jsonl", run);
    char *log = (char *)read_whole_file(path, NULL);
    int n = 0;
    for (char *p = log; p && n < max && (p = strstr(p, "\"loss\": ")); p++) out[n++] = strtod(p + 8, NULL);
    free(log);
    free(path);
    return n;
}

static double max_relative(const float *a, const float *b, size_t n) {
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return scale > 0 ? worst / scale : worst;
}

// The run `other` against `reference`: per-step losses and the final checkpoint's state.
static void check_same_training(const char *reference, const char *other, const char *what) {
    double want[64], got[64];
    int nw = logged_losses(reference, want, 64), ng = logged_losses(other, got, 64);
    CHECK(nw == 20 && ng == 20, "%s: 20 logged steps each (one log for the whole job), got %d and %d", what, nw, ng);
    double worst = 0.0;
    for (int i = 0; i < nw && i < ng; i++) worst = fmax(worst, fabs(got[i] - want[i]) / want[i]);
    CHECK(worst <= 1e-5, "%s: loss differs by %.2g relative from one process", what, worst);
    CheckpointMeta ma, mb;
    float *pa, *a_m, *a_v, *pb, *b_m, *b_v;
    char *fa = xasprintf("%s/checkpoint-00000020.bin", reference), *fb = xasprintf("%s/checkpoint-00000020.bin", other);
    CHECK(file_size(fa) > 0 && file_size(fb) > 0, "%s: both runs reached step 20", what);
    if (file_size(fa) <= 0 || file_size(fb) <= 0) {
        free(fa);
        free(fb);
        return;
    }
    checkpoint_load(fa, &ma, &pa, &a_m, &a_v);
    checkpoint_load(fb, &mb, &pb, &b_m, &b_v);
    const size_t n = ma.num_params;
    CHECK(mb.num_params == n && mb.epoch == ma.epoch && mb.epoch_pos == ma.epoch_pos,
          "%s: same model and data position (epoch %llu/%llu, position %llu/%llu)", what, (unsigned long long)mb.epoch,
          (unsigned long long)ma.epoch, (unsigned long long)mb.epoch_pos, (unsigned long long)ma.epoch_pos);
    if (mb.num_params == n) {
        double ep = max_relative(pb, pa, n), em = max_relative(b_m, a_m, n), ev = max_relative(b_v, a_v, n);
        CHECK(ep <= 1e-5 && em <= 1e-5 && ev <= 1e-5,
              "%s: after 20 steps parameters differ by %.2g, Adam m by %.2g, v by %.2g (relative to the largest)", what,
              ep, em, ev);
    }
    free(pa);
    free(a_m);
    free(a_v);
    free(pb);
    free(b_m);
    free(b_v);
    free(fa);
    free(fb);
}

TEST(test_dist_matches_one_process) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --data %s --out %s --steps 20 " DP_MODEL, data, test_path("one")) == 0, "one process: %s",
          cli_stderr());
    struct {
        int processes;
        const char *flags, *name;
    } cases[] = {{2, "", "two"}, {3, "", "three"}, {2, "--zero", "two-zero"}, {3, "--zero", "three-zero"}};
    for (int i = 0; i < 4; i++) {
        int status = run_mpi(cases[i].processes, NULL, "train --data %s --out %s --steps 20 %s " DP_MODEL, data,
                             test_path("%s", cases[i].name), cases[i].flags);
        CHECK(status == 0, "mpirun -np %d %s: status %d: %s", cases[i].processes, cases[i].flags, status, cli_stderr());
        if (status != 0) continue;
        check_same_training(test_path("one"), test_path("%s", cases[i].name), cases[i].name);
        // One voice: one summary line on stdout, only rank 0's files in the run.
        const char *done = strstr(cli_stdout(), "train: done");
        CHECK(done && !strstr(done + 1, "train: done"), "%s: one final line on stdout: %s", cases[i].name,
              cli_stdout());
        CHECK(strstr(cli_stdout(), "processes (data parallel)"), "%s: says it runs data parallel", cases[i].name);
        CHECK(!strstr(cli_stderr(), "ended before the job did"), "%s: ranks that end together are not said to die: %s",
              cases[i].name, cli_stderr());
    }
    free(data);
}

TEST(test_dist_resume_with_another_process_count) {
    char *data = small_prepared_data();
    CHECK(run_igpt("train --data %s --out %s --steps 20 " DP_MODEL, data, test_path("one")) == 0, "one process: %s",
          cli_stderr());
    // 2 processes to step 10, then 3 to step 20; with ZeRO, 3 then 2.
    CHECK(run_mpi(2, NULL, "train --data %s --out %s --steps 20 --stop-at 10 " DP_MODEL, data, test_path("moved")) == 0,
          "first half on 2: %s", cli_stderr());
    CHECK(run_mpi(3, NULL, "train --data %s --out %s --resume --quiet --threads 1", data, test_path("moved")) == 0,
          "second half on 3: %s", cli_stderr());
    check_same_training(test_path("one"), test_path("moved"), "2 then 3 processes");
    CHECK(run_mpi(3, NULL, "train --data %s --out %s --steps 20 --stop-at 10 --zero " DP_MODEL, data,
                  test_path("moved-zero")) == 0,
          "first half on 3 with ZeRO: %s", cli_stderr());
    CHECK(run_mpi(2, NULL, "train --data %s --out %s --resume --zero --quiet --threads 1", data,
                  test_path("moved-zero")) == 0,
          "second half on 2 with ZeRO: %s", cli_stderr());
    check_same_training(test_path("one"), test_path("moved-zero"), "3 then 2 processes with ZeRO");
    free(data);
}

TEST(test_dist_errors_end_the_job) {
    char *data = small_prepared_data();
    int status = run_mpi(4, NULL, "train --data %s --out %s --steps 5 " DP_MODEL, data, test_path("r"));
    CHECK(status != 0 && strstr(cli_stderr(), "must be a multiple of the 4 processes"),
          "a batch of 6 over 4 processes is refused: %d %s", status, cli_stderr());
    // A resumed run whose micro-batch does not divide the new share is refused, not trained on fewer images.
    CHECK(run_igpt("train --data %s --out %s --steps 4 --stop-at 2 --micro-batch 2 " DP_MODEL, data,
                   test_path("micro")) == 0,
          "single-process run: %s", cli_stderr());
    status = run_mpi(2, NULL, "train --data %s --out %s --resume --micro-batch 2 --quiet", data, test_path("micro"));
    CHECK(status != 0 && strstr(cli_stderr(), "is not a multiple of --micro-batch 2"),
          "a share of 3 with micro-batches of 2 is refused on resume: %d %s", status, cli_stderr());
    status = run_mpi(2, NULL, "train --data %s --out %s --resume --quiet", data, test_path("nothing"));
    CHECK(status != 0 && strstr(cli_stderr(), "igpt: error: rank ") && strstr(cli_stderr(), "holds no checkpoint"),
          "an error names its rank and ends the job: %d %s", status, cli_stderr());
    // An error on one rank only (mpirun's MPMD form gives rank 1 a data folder of its own).
    status = run_mpi(1, NULL,
                     "train --data %s --out %s --steps 50 " DP_MODEL
                     " : -np 1 ./igpt train --data %s --out %s --steps 50 " DP_MODEL,
                     data, test_path("alone"), test_path("missing"), test_path("alone"));
    CHECK(status != 0 && strstr(cli_stderr(), "igpt: error: rank 1: ") && strstr(cli_stderr(), "missing"),
          "rank 1's own error names it and ends the job: %d %s", status, cli_stderr());
    free(data);
}

// Starts `mpirun -np 2 ./igpt train` on a long run, sends `sig` to one rank
// once training is under way, and waits up to 60 s for the job to end.
// Returns true if it ended (then *status is mpirun's wait status); *victim: the rank's PID.
static bool signal_one_rank(int sig, const char *data, const char *out, const char *log, int *status, int *victim) {
    pid_t launcher = fork();
    if (launcher == 0) {  // mpirun itself, so that the ranks are its children
        FILE *f = freopen(log, "w", stdout);
        (void)f;
        dup2(1, 2);
        execlp("mpirun", "mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "--mca",
               "btl_vader_single_copy_mechanism", "none", "-np", "2", igpt_path(), "train", "--data", data, "--out",
               out, "--steps", "100000", "--device", "cpu", "--d-model", "32", "--n-layer", "2", "--n-head", "2",
               "--batch", "6", "--threads", "1", "--quiet", (char *)NULL);
        _exit(127);
    }
    bool sent = false;
    for (int i = 0; i < 300 && !sent; i++) {
        usleep(100000);
        double losses[8];
        if (logged_losses(out, losses, 8) < 3) continue;
        char *find = xasprintf("pgrep -n -x igpt -P %d", (int)launcher);
        FILE *p = popen(find, "r");
        if (p && fscanf(p, "%d", victim) == 1 && *victim > 0) sent = kill(*victim, sig) == 0;
        if (p) pclose(p);
        free(find);
    }
    CHECK(sent, "found a rank and sent it signal %d", sig);
    pid_t done = 0;
    for (int i = 0; i < 600 && done == 0; i++) {
        done = waitpid(launcher, status, WNOHANG);
        if (done == 0) usleep(100000);
    }
    if (done == 0) {
        kill(launcher, SIGKILL);
        waitpid(launcher, status, 0);
        if (system("pkill -9 -x igpt -P 1 2>/dev/null") != 0) {  // orphaned ranks, if any; none is fine
        }
    }
    return done == launcher;
}

// Kills one rank mid-run: mpirun must end the whole job with an error, not
// hang, and rank 0 says which rank died and how to resume the run.
TEST(test_dist_killed_rank_ends_the_job) {
    char *data = small_prepared_data();
    int status = 0, victim = 0;
    bool ended = signal_one_rank(SIGKILL, data, test_path("run"), test_path("mpirun.out"), &status, &victim);
    CHECK(ended, "the job ended within 60 s of a rank's death (it hung)");
    CHECK(!ended || !WIFEXITED(status) || WEXITSTATUS(status) != 0, "the job ended with an error status");
    char *out = (char *)read_whole_file(test_path("mpirun.out"), NULL);
    char *named = xasprintf("of 2 (pid %d) ended before the job did", victim);
    char *resume = xasprintf("mpirun -np 2 %s train --data %s --out %s --resume", igpt_path(), data, test_path("run"));
    const char *line = out ? strstr(out, "igpt: error: rank ") : NULL;
    CHECK(line && strstr(line, named) && strstr(line, resume) && !strstr(line, "rank 0 of"),
          "rank 0 names the dead rank and the resume command: %s", out ? out : "(no output)");
    free(resume);
    free(named);
    free(out);
    free(data);
}

// Ctrl-C (SIGINT) to one rank: every rank stops after the same step, rank 0
// writes the checkpoint, and the job ends with the status of an interrupted
// run, 130, on every rank; the run resumes.
TEST(test_dist_signal_to_one_rank_stops_all) {
    char *data = small_prepared_data();
    int status = 0, victim = 0;
    bool ended = signal_one_rank(SIGINT, data, test_path("run"), test_path("mpirun.out"), &status, &victim);
    char *out = (char *)read_whole_file(test_path("mpirun.out"), NULL);
    CHECK(ended && WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGINT,
          "the job ended with 130 (128 + SIGINT: stopped early, resumable) on every rank: %s", out ? out : "");
    CHECK(out && strstr(out, "interrupted (SIGINT) after step"), "says where it stopped: %s", out ? out : "");
    CHECK(out && !strstr(out, "ended before the job did"), "no rank is said to have died: %s", out ? out : "");
    const char *at = out ? strstr(out, "after step ") : NULL;
    long step = at ? strtol(at + 11, NULL, 10) : 0;
    CHECK(step > 0 && file_size(test_path("run/checkpoint-%08ld.bin", step)) > 0, "checkpoint of step %ld written",
          step);
    CHECK(run_mpi(2, NULL, "train --data %s --out %s --resume --steps %ld --quiet --threads 1", data, test_path("run"),
                  step + 2) == 0,
          "the run resumes on 2 processes: %s", cli_stderr());
    free(out);
    free(data);
}

// The CUDA backend's data-parallel path (gradient sums started from inside
// its backward pass, per layer; ZeRO-1 with split master weights), run by
// build/interp/igpt whose "GPU" is the interpret mode and whose collectives go
// over MPI: 2 and 3 processes train as one does.
// (On a GPU the same path uses NCCL: scripts/gpu_check.sh.)
TEST(test_dist_cuda_backend_through_the_interpreter) {
    char *data = small_prepared_data();
#define GPU_DP                                                                                                  \
    "--device cuda --precision fp32 --d-model 32 --n-layer 2 --n-head 2 --batch 6 --threads 1 --eval-every 10 " \
    "--eval-images 8 --quiet"
    CHECK(run_igpt_interpret("train --data %s --out %s --steps 20 " GPU_DP, data, test_path("one")) == 0,
          "one process: %s", cli_stderr());
    CHECK(run_mpi(2, igpt_interpret_path(), "train --data %s --out %s --steps 20 " GPU_DP, data, test_path("two")) == 0,
          "2 processes: %s", cli_stderr());
    check_same_training(test_path("one"), test_path("two"), "CUDA backend, 2 processes");
    CHECK(
        run_mpi(1, igpt_interpret_path(), "train --data %s --out %s --steps 20 " GPU_DP, data, test_path("mpi1")) == 0,
        "1 process under mpirun (the collectives path): %s", cli_stderr());
    check_same_training(test_path("one"), test_path("mpi1"), "CUDA backend, mpirun -np 1");
    // ZeRO-1 on the GPU backend (master weights and moments split): 3 processes to step 10, then 2.
    CHECK(run_mpi(3, igpt_interpret_path(), "train --data %s --out %s --steps 20 --stop-at 10 --zero " GPU_DP, data,
                  test_path("zero")) == 0,
          "ZeRO, 3 processes: %s", cli_stderr());
    CHECK(run_mpi(2, igpt_interpret_path(),
                  "train --data %s --out %s --resume --zero --precision fp32 --quiet --threads 1", data,
                  test_path("zero")) == 0,
          "ZeRO, resumed on 2: %s", cli_stderr());
    check_same_training(test_path("one"), test_path("zero"), "CUDA backend with ZeRO, 3 then 2 processes");
#undef GPU_DP
    free(data);
}
