#!/usr/bin/env bash
# The GPU check: ONE command on a machine with a GPU, and a complete answer
# whatever happens there (docs/gpu-verification.md).
#
#   scripts/gpu_check.sh [--out DIR] [--deadline SECONDS] [--only GROUPS] [--dry-run]
#
# Binaries: build/gpu-bundle (scripts/gpu_bundle.sh built it elsewhere, from
# these very sources) when it starts here, else a build here: the full one
# when this machine has every library, the GPU-only one (make GPU_ONLY=1:
# nothing but the CUDA toolkit) when not or when the full one fails, and last
# a bundle of other sources. No warning stops a build here.
# Then the checks, most valuable first, until the deadline (default 540 s):
#   kernels    every CUDA test, each in its own process under a timeout with
#              CUDA_LAUNCH_BLOCKING=1, so one fault hides nothing else
#   bench      our training step (s, 32x32) and attention kernels (the default
#              ones, then the portable ones for comparison)
#   torch      the PyTorch baselines: SDPA flash, SDPA cuDNN, a torch.compile
#              training step, each under its own timeout
#   sanitizer  compute-sanitizer memcheck and racecheck over the kernel tests
#              (SKIP where the runtime refuses the device)
#   e2e        train on the GPU, resume on the CPU, probe on the GPU
#   features   the probe's feature extraction throughput (s, 32x32) and the probe solver
#              on the GPU (25 layers x 512 features, 45,000/5,000 images)
#   decode     samples and a compress -> decompress round trip on the GPU with e2e's model
#              (the images back byte for byte), and incremental decoding throughput (s, 32x32)
# DIR is --out, else $OUT (the run tool's), else build/gpu-check.
# Every result is appended to DIR/results.jsonl the moment it is known; the
# failures' log tails go to DIR/failures.log; on exit (even on SIGTERM) the
# PASS / FAIL / TIMEOUT / SKIP table is printed last and kept in
# DIR/summary.txt. Exit status 0 when nothing failed or timed out.
#
# --dry-run runs the same script with the interpret build (build/interp/) as
# the GPU, at small sizes, without PyTorch or compute-sanitizer: make test
# runs it (tests/test_gpu_check.sh), so this plumbing is tested on every
# commit. IGPT_BIN, CUDA_TESTS_BIN and SANITIZER replace the binaries and
# GPU_BUNDLE the bundle's folder (the dry-run suite plants faults that way);
# TORCH_PYTHON names PyTorch's Python; PEAK_TFLOPS the GPU's dense bf16 peak
# for MFU; TEST_TIMEOUT and SANITIZER_TIMEOUT the seconds per test (150, 120).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1

out=${OUT:-build/gpu-check}
deadline=540
dry_run=0
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2 && shift ;;
        --deadline) deadline=$2 && shift ;;
        --only) only=$2 && shift ;;
        --dry-run) dry_run=1 ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
        *) echo "gpu_check: unknown option $1 (--help)" >&2 && exit 2 ;;
    esac
    shift
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/igpt-gpu-check.XXXXXX")
results=$out/results.jsonl
: >"$results"
: >"$out/failures.log"
rm -f "$out/summary.txt"
rows=$work/rows.txt
: >"$rows"
t_start=$SECONDS
deadline_at=$((SECONDS + deadline))
reserve=10 # seconds kept for the table after the last check

wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

# --- Results -------------------------------------------------------------------------------

json_string() { # the text as a JSON string
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/ }
    printf '"%s"' "$(printf '%s' "$s" | tr -d '\000-\037')"
}
# record GROUP NAME STATUS SECONDS NOTE [JSON_FIELDS]: one line of results.jsonl and one row of the table.
record() {
    local group=$1 name=$2 status=$3 seconds=$4 note=$5 fields=${6:-}
    printf '{"group": %s, "name": %s, "status": "%s", "seconds": %s, "note": %s%s}\n' "$(json_string "$group")" \
        "$(json_string "$name")" "$status" "$seconds" "$(json_string "$note")" "${fields:+, $fields}" >>"$results"
    local row
    row=$(printf '%-7s %5ss  %-9s %-46s %s' "$status" "$seconds" "$group" "$name" "$note")
    echo "${row:0:170}" | tee -a "$rows"
}
# Keeps the tail of a failed check's log in failures.log (at most 256 KB in all).
keep_failure() { # group name log
    [ -f "$3" ] || return 0
    [ "$(stat -c %s "$out/failures.log")" -lt 262144 ] || return 0
    {
        echo "=== $1: $2"
        tail -n 40 "$3" | cut -c1-300
        echo
    } >>"$out/failures.log"
}

current_pid="" current_group="" current_name="" current_t0=0 no_time=0
# attempt LIMIT COMMAND...: runs it in its own process group under `timeout`,
# output to $log; sets rc, took, timed_out and no_time (not run: the deadline
# left no time).
attempt() {
    local limit=$1
    shift
    local left=$((deadline_at - SECONDS - reserve))
    took=0 timed_out=0 no_time=0
    if [ "$left" -lt 3 ]; then
        rc=1 no_time=1
        echo "gpu_check: the deadline left no time for this" >"$log"
        return
    fi
    [ "$limit" -le "$left" ] || limit=$left
    current_t0=$SECONDS
    timeout -k 5 "$limit" "$@" >"$log" 2>&1 </dev/null &
    current_pid=$!
    wait "$current_pid"
    rc=$?
    current_pid=""
    took=$((SECONDS - current_t0))
    if [ "$rc" -eq 124 ] || { [ "$rc" -eq 137 ] && [ "$took" -ge "$limit" ]; }; then timed_out=1; fi
}
# begin GROUP NAME: names the check that runs now (for the log file and an interrupted run).
begin() {
    current_group=$1 current_name=$2
    log=$work/$(printf '%s-%s' "$1" "$2" | tr -c 'A-Za-z0-9_.-' '_').log
}
# The common verdict: PASS on exit 0, TIMEOUT, SKIP when the deadline came first, else FAIL with the log's last line.
verdict() { # note_on_pass [json_fields]
    if [ "$no_time" -eq 1 ]; then
        record "$current_group" "$current_name" SKIP 0 "deadline reached"
    elif [ "$timed_out" -eq 1 ]; then
        record "$current_group" "$current_name" TIMEOUT "$took" "stopped after $took s"
        keep_failure "$current_group" "$current_name" "$log"
    elif [ "$rc" -eq 0 ]; then
        record "$current_group" "$current_name" PASS "$took" "$1" "${2:-}"
    else
        record "$current_group" "$current_name" FAIL "$took" "$(exit_reason) $(last_line "$log")"
        keep_failure "$current_group" "$current_name" "$log"
    fi
}
exit_reason() {
    if [ "$rc" -gt 128 ]; then echo "killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))):"; else echo "exit $rc:"; fi
}
last_line() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-120; }
# The number `key` of the last JSON line holding it (as igpt and our Python scripts write them).
json_number() { # key file
    sed -n 's/.*"'"$1"'": \(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p' "$2" | tail -n 1
}
calc() { awk "BEGIN { printf \"$1\", ($2) }"; } # calc FORMAT EXPRESSION
num() { echo "${1:-null}"; }                        # a number for results.jsonl, null when unknown

# --- The table, printed last on every exit --------------------------------------------------

# Stops the running check: its whole process group (timeout made one), KILL if TERM is not enough.
stop_current() {
    kill -TERM -- "-$current_pid" 2>/dev/null || kill -TERM "$current_pid" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$current_pid" 2>/dev/null || break
        sleep 0.3
    done
    kill -KILL -- "-$current_pid" 2>/dev/null
    wait "$current_pid" 2>/dev/null
}
# The rows, with the passing kernel tests and sanitizer runs counted in one row each
# (results.jsonl names every one), so that the table stays a few thousand characters.
table_rows() {
    awk '$1 == "PASS" && ($3 == "kernels" || $3 == "sanitizer") {
            if (!($3 in n)) out[++m] = "@" $3
            n[$3]++; t[$3] += $2; next }
         { out[++m] = $0 }
         END { for (i = 1; i <= m; i++) {
                 g = substr(out[i], 2)
                 if (out[i] ~ /^@/) printf "%-7s %5ss  %-9s %-46s %s\n", "PASS", t[g], g, n[g] " passed", "(each in results.jsonl)"
                 else print out[i] } }' "$rows"
}
header=()
print_table() {
    trap - EXIT INT TERM HUP
    if [ -n "$current_pid" ]; then # interrupted in the middle of a check: stop it, count it
        stop_current
        record "$current_group" "$current_name" TIMEOUT $((SECONDS - current_t0)) "the run was stopped during this check"
        current_pid=""
    fi
    local counts
    counts=$(awk '{ n[$1]++ } END { printf "%d PASS, %d FAIL, %d TIMEOUT, %d SKIP", n["PASS"], n["FAIL"], n["TIMEOUT"], n["SKIP"] }' "$rows")
    {
        echo
        echo "=== gpu_check summary ($((SECONDS - t_start)) s of a $deadline s deadline)"
        printf '%s\n' "${header[@]}"
        printf '%-7s %6s  %-9s %-46s %s\n' status time group check "note"
        table_rows
        echo "$counts (results: $results)"
    } | tee "$out/summary.txt"
    local status=0
    grep -qE '^(FAIL|TIMEOUT) ' "$rows" && status=1
    rm -rf "$work"
    exit $status
}
trap print_table EXIT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 130' INT

# --- The machine ---------------------------------------------------------------------------

if [ "$dry_run" -eq 1 ]; then
    gpu="none (dry run: the CUDA interpret mode on the CPU)" driver="-"
else
    smi=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
    gpu=${smi%%,*} driver=$(echo "$smi" | cut -d, -f2 | tr -d ' ')
    [ -n "$smi" ] || gpu="unknown (nvidia-smi: none)" driver="?"
fi
# The commit: IGPT_COMMIT, else git's (a copied tree may have no .git), else the binary's (below).
commit=${IGPT_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
nvcc_bin=$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
cuda_home=$(dirname "$(dirname "${nvcc_bin:-/usr/local/cuda/bin/nvcc}")")
nvcc_version=$([ -n "$nvcc_bin" ] && "$nvcc_bin" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
cpu_name=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
case "$gpu" in
    *H100* | *H200*) peak=${PEAK_TFLOPS:-989} ;;
    *A100*) peak=${PEAK_TFLOPS:-312} ;;
    *) peak=${PEAK_TFLOPS:-0} ;;
esac
# PyTorch's Python: TORCH_PYTHON, else the first python that imports torch.
torch_py="" torch_version=""
if [ "$dry_run" -eq 0 ]; then
    for py in ${TORCH_PYTHON:-} python3 python; do
        if v=$(timeout 60 "$py" -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>/dev/null); then
            torch_py=$py torch_version=$v
            break
        fi
    done
fi
# Folders holding file $1 (a glob): the CUDA folder's, then those of pip's nvidia-* packages.
nvidia_dirs() { # lib | include
    for py in $torch_py python3; do
        "$py" -c "import glob, os, sys
print('\n'.join(sorted({d for p in sys.path for d in glob.glob(os.path.join(p or '.', 'nvidia', '*', '$1'))})))" 2>/dev/null
    done | awk '!seen[$0]++'
}
find_dir() { # subfolder glob
    local d
    for d in "$cuda_home/$1"* "$cuda_home"/targets/*/"$1" $(nvidia_dirs "$1"); do
        if compgen -G "$d/$2" >/dev/null; then
            echo "$d"
            return 0
        fi
    done
    return 1
}
cublas_lib=$(find_dir lib 'libcublasLt.so*')
header+=("date $(date -u '+%Y-%m-%d %H:%M UTC'); commit $commit; GPU $gpu; driver $driver; nvcc ${nvcc_version:-none}")
header+=("torch ${torch_version:-none}${torch_py:+ ($torch_py)}; cuBLASLt ${cublas_lib:-not found}; CPU ${cpu_name:-?} x $(nproc)")
printf '{"group": "env", "date": %s, "commit": %s, "gpu": %s, "driver": %s, "nvcc": %s, "torch": %s, "cpu": %s, "dry_run": %s, "deadline_s": %s}\n' \
    "$(json_string "$(date -u '+%Y-%m-%dT%H:%M:%SZ')")" "$(json_string "$commit")" "$(json_string "$gpu")" \
    "$(json_string "$driver")" "$(json_string "${nvcc_version:-none}")" "$(json_string "${torch_version:-none}")" \
    "$(json_string "$cpu_name")" "$([ "$dry_run" -eq 1 ] && echo true || echo false)" "$deadline" >>"$results"
echo "gpu_check: ${header[0]}"
echo "gpu_check: ${header[1]}"

# --- Build ---------------------------------------------------------------------------------

# A hash of the sources, so that a carried bundle is used only when built from these very files.
source_hash() {
    find src cuda tests bench Makefile -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \
        -o -name '*.cpp' -o -name Makefile \) | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -c1-16
}
# The GPU libraries for the carried bundle (and any build here): cuBLASLt, NCCL.
for d in $cublas_lib $(find_dir lib 'libnccl.so*'); do LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; done
export LD_LIBRARY_PATH
bundle=${GPU_BUNDLE:-build/gpu-bundle}
use_bundle() { # [any]: why not, on stdout, when the bundle cannot be used (any: of other sources too)
    local b=$bundle
    [ -x "$b/igpt" ] && [ -x "$b/igpt_cuda_tests" ] || { echo "no $b" && return 1; }
    [ "${1:-}" = any ] || [ "$(cat "$b/SOURCES" 2>/dev/null)" = "$(source_hash)" ] ||
        { echo "$b is of other sources" && return 1; }
    grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo || { echo "this CPU lacks AVX2/FMA" && return 1; }
    timeout 60 "$b/igpt" --version >"$log" 2>&1 && timeout 60 "$b/igpt_cuda_tests" --list >>"$log" 2>&1 ||
        { echo "it does not start: $(last_line "$log")" && return 1; }
}
bundle_kind() { echo "carried bundle (scripts/gpu_bundle.sh, $("$bundle/igpt" --version | sed 's/.*commit //; s/)//'))"; }
# make_here full|gpu-only: one build here; sets the binaries, build_kind and rc.
make_here() {
    local args=(-j"$(nproc)" WERROR= NVCC="$nvcc_bin")
    local inc
    if [ "$1" = gpu-only ]; then
        args+=(GPU_ONLY=1)
        build_kind="GPU-only build here (make GPU_ONLY=1: plain C products)"
        igpt=build/gpu-only/igpt tests_bin=build/gpu-only/cuda/igpt_cuda_tests
    else
        build_kind="full build here (make)"
        igpt=./igpt tests_bin=build/cuda/igpt_cuda_tests
    fi
    # cuBLASLt and NCCL where the CUDA folder lacks them: pip's nvidia/*/lib and include
    # (there, libcublasLt.so.13 without the libcublasLt.so link that -lcublasLt wants).
    if [ -n "$cublas_lib" ] && [[ "$cublas_lib" != "$cuda_home"/* ]]; then
        args+=(GPU_LIB_DIRS="$cublas_lib")
        [ -e "$cublas_lib/libcublasLt.so" ] || args+=(CUBLASLT=-l:"$(basename "$(ls "$cublas_lib"/libcublasLt.so.* | head -n 1)")")
    fi
    if inc=$(find_dir include cublasLt.h) && [[ "$inc" != "$cuda_home"/* ]]; then args+=(GPU_INC_DIRS="$inc"); fi
    if inc=$(find_dir include nccl.h) && [[ "$inc" != "$cuda_home"/* ]]; then args+=(NCCL_HOME="$(dirname "$inc")"); fi
    echo "gpu_check: make ${args[*]}"
    attempt 300 make "${args[@]}" "$igpt" "$tests_bin"
}
# Every way to binaries, until one works: the full build when every library is here, the
# GPU-only one, and last a carried bundle of other sources (better old code tested than none).
build_here() {
    local t0=$SECONDS failed=""
    rc=1 timed_out=0
    if printf '#include <cblas.h>\n#include <zlib.h>\n#include <cjson/cJSON.h>\n' |
        cc -isystem /usr/include/"$(cc -print-multiarch)"/openblas-openmp -E - >/dev/null 2>&1; then
        make_here full
        [ "$rc" -eq 0 ] || [ "$timed_out" -eq 1 ] || failed="the full build failed: $(last_line "$log")"
        [ -z "$failed" ] || keep_failure build "full build" "$log"
    fi
    if [ "$rc" -ne 0 ] && [ "$timed_out" -eq 0 ]; then
        make_here gpu-only
        [ "$rc" -eq 0 ] || [ "$timed_out" -eq 1 ] || keep_failure build "GPU-only build" "$log"
    fi
    local why
    why="the build here $([ "$timed_out" -eq 1 ] && echo "timed out" || echo "failed: $(last_line "$log")")"
    if [ "$rc" -ne 0 ] && cp "$log" "$log.build" && use_bundle any >/dev/null; then
        failed=$why
        igpt=$bundle/igpt tests_bin=$bundle/igpt_cuda_tests
        build_kind="$(bundle_kind) OF OTHER SOURCES"
        rc=0 timed_out=0
    fi
    build_kind="$build_kind${failed:+ ($failed)}"
    took=$((SECONDS - t0))
    [ ! -f "$log.build" ] || mv "$log.build" "$log" # the build's output, not the bundle's
}

igpt="" tests_bin="" build_kind=""
begin build binaries
if [ "$dry_run" -eq 1 ]; then
    igpt=${IGPT_BIN:-build/interp/igpt} tests_bin=${CUDA_TESTS_BIN:-build/interp/igpt_cuda_tests}
    build_kind="interpret build (dry run)"
    [ -x "$igpt" ] && [ -x "$tests_bin" ] && rc=0 || rc=1
    echo "missing $igpt or $tests_bin (make test builds them)" >"$log"
    took=0 timed_out=0
elif [ -n "${IGPT_BIN:-}" ]; then
    igpt=$IGPT_BIN tests_bin=${CUDA_TESTS_BIN:?CUDA_TESTS_BIN with IGPT_BIN} build_kind="given binaries"
    rc=0 took=0 timed_out=0
elif why_not=$(use_bundle); then
    igpt=$bundle/igpt tests_bin=$bundle/igpt_cuda_tests
    build_kind=$(bundle_kind)
    rc=0 took=0 timed_out=0
else
    echo "gpu_check: not the carried bundle ($why_not): building here"
    build_here
fi
if [ "$rc" -eq 0 ] && [ "$commit" = unknown ]; then
    commit=$("$igpt" --version 2>/dev/null | sed -n 's/.*commit \(.*\))/\1/p')
    header[0]=${header[0]/commit unknown/commit ${commit:-unknown}}
fi
verdict "$build_kind" "\"commit\": $(json_string "${commit:-unknown}")"
header+=("build: $build_kind")
built=$([ "$rc" -eq 0 ] && echo 1 || echo 0)
[ "$built" -eq 1 ] || tail -n 15 "$log" | cut -c1-200

# The fatbin: sm_80 and sm_90 machine code and sm_90 PTX, so that newer GPUs can run it too.
cuobjdump=${CUOBJDUMP:-$(command -v cuobjdump || ls "$cuda_home"/bin/cuobjdump .tools/cuda/nvidia/*/bin/cuobjdump 2>/dev/null | head -n 1)}
if [ "$built" -eq 1 ] && [ "$dry_run" -eq 0 ] && [ -n "$cuobjdump" ]; then
    begin build fatbin
    elf=$("$cuobjdump" --list-elf "$igpt" 2>&1 | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')
    ptx=$("$cuobjdump" --list-ptx "$igpt" 2>&1 | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')
    note="cubins: ${elf:-none}; PTX: ${ptx:-none}"
    if [[ "$elf" == *sm_80*sm_90* ]] && [[ "$ptx" == *sm_90* ]]; then record build fatbin PASS 0 "$note"; else record build fatbin FAIL 0 "$note"; fi
fi

skip_unbuilt() { # group name...: SKIP rows when there is nothing to run
    local g=$1
    shift
    for n in "$@"; do record "$g" "$n" SKIP 0 "no binaries (the build failed)"; done
}

# --- Kernel tests, each in its own process --------------------------------------------------

# Left out of the dry run for time: they add nothing to the plumbing.
dry_run_leaves_out=" test_gpu_training_follows_cpu_and_repeats test_gpu_attention_t1024_hs64 "
test_names=()
if [ "$built" -eq 1 ]; then
    mapfile -t test_names < <(timeout 60 "$tests_bin" --list 2>/dev/null)
fi
# The verdict on one test from its line of the harness (ok, FAIL or skip) and how it ended.
test_verdict() { # name
    local line
    line=$(grep -E "^(ok|FAIL|skip)  +$1 " "$log" | tail -n 1)
    if [ "$timed_out" -eq 0 ] && [ "$rc" -eq 0 ] && [[ "$line" == skip* ]]; then
        record "$current_group" "$current_name" SKIP "$took" "$(echo "$line" | sed -n 's/.*s  (\(.*\))$/\1/p')"
    elif [ "$timed_out" -eq 0 ] && [ "$rc" -eq 1 ] && [[ "$line" == FAIL* ]]; then
        record "$current_group" "$current_name" FAIL "$took" "$(grep -m 1 '^    ' "$log" | sed 's/^ *//' | cut -c1-120)"
        keep_failure "$current_group" "$current_name" "$log"
    elif [ "$timed_out" -eq 0 ] && [ "$rc" -eq 0 ] && [[ "$line" != ok* ]]; then
        rc=1 && verdict "" # exited 0 without its result line
    else
        verdict "" # PASS, a crash (FAIL with the signal) or TIMEOUT
    fi
}
run_kernel_test() { # name
    begin kernels "$1"
    attempt "${TEST_TIMEOUT:-150}" env CUDA_LAUNCH_BLOCKING=1 "$tests_bin" --exact "$1"
    test_verdict "$1"
}
if wanted kernels; then
    [ "$built" -eq 1 ] || skip_unbuilt kernels "every CUDA test"
    [ "$built" -eq 0 ] || [ "${#test_names[@]}" -gt 0 ] || record kernels "--list" FAIL 0 "$tests_bin --list printed no test"
    for name in "${test_names[@]}"; do
        if [ "$dry_run" -eq 1 ] && [[ "$dry_run_leaves_out" == *" $name "* ]]; then
            record kernels "$name" SKIP 0 "dry run: left out for time (make test runs it)"
            continue
        fi
        run_kernel_test "$name"
    done
fi

# --- Our benchmarks ------------------------------------------------------------------------

if [ "$dry_run" -eq 1 ]; then
    # (head size 32: the tensor-core kernels run too)
    bench_model=(--config tiny --side 8 --colors 16) batches="4 2" steps=1 warmup=0 att=(--batch-heads 2 --seq 64 --head-size 32)
    feature_args=(--config tiny --side 8 --batch 2 --steps 1 --warmup-steps 0)
    probe_args=(--dim 8 --layers 2 --train-images 300 --eval-images 60)
else
    bench_model=(--config s --side 32 --colors 512) batches=${BATCHES:-32 16 8} steps=20 warmup=3
    att=(--batch-heads 64 --seq 1024 --head-size 64)
    feature_args=(--config s --side 32 --batch 64 --steps 5 --warmup-steps 1)
    # The probe goal (issue 14): features + solver for the 25 layers of s on 45,000/5,000 images in 2 minutes.
    probe_args=(--dim 512 --layers 25 --train-images 45000 --eval-images 5000)
fi
ours_tokens="" ours_batch="" ours_fwd="" ours_bwd=""
model_label="${bench_model[1]} ${bench_model[3]}x${bench_model[3]}"
bench_train() { # at the largest batch that fits
    local b failed=""
    begin bench "training step (igpt, $model_label)"
    for b in $batches; do
        attempt 150 "$igpt" bench --device cuda "${bench_model[@]}" --batch "$b" --optimizer --steps "$steps" \
            --warmup-steps "$warmup"
        [ "$rc" -ne 0 ] || break
        [ "$timed_out" -eq 0 ] || break
        failed="${failed:+$failed, }$b"
        keep_failure bench "training step, batch $b" "$log"
    done
    local flops tflops mfu
    ours_tokens=$(json_number tokens_per_s "$log") ours_batch=$b
    flops=$(json_number train_flops_per_token "$log")
    tflops=$(calc '%.1f' "${ours_tokens:-0} * ${flops:-0} / 1e12")
    mfu=$(calc '%.1f' "$peak > 0 ? 100 * ${ours_tokens:-0} * ${flops:-0} / ($peak * 1e12) : 0")
    verdict "batch $b: $(calc '%.0f' "${ours_tokens:-0}") tokens/s, $tflops TFLOP/s, MFU $mfu%${failed:+ (batch $failed failed)}" \
        "\"batch\": $b, \"tokens_per_s\": $(num "$ours_tokens"), \"tflops\": $(num "$tflops"), \"mfu_percent\": $(num "$mfu"), \"peak_tflops\": $peak"
    [ "$rc" -eq 0 ] || ours_tokens=""
}
# The kernels --attention selects (auto: tensor cores at head size 64), which PyTorch is compared with;
# then, for comparison, the portable ones (one more row).
bench_attention() { # [--attention portable]
    local label=igpt kernels fwd bwd
    [ $# -eq 0 ] || label="igpt $2"
    begin bench "attention fwd+bwd ($label, ${att[1]}x${att[3]}x${att[5]})"
    attempt 90 "$igpt" bench --mode attention "${att[@]}" --steps "$steps" "$@"
    kernels=$(sed -n 's/.*"attention": "\([a-z]*\)".*/\1/p' "$log" | tail -n 1)
    fwd=$(json_number forward_ms "$log") bwd=$(json_number backward_ms "$log")
    verdict "${kernels:-?} kernels: fwd ${fwd:-?} ms ($(json_number forward_tflops "$log") TFLOP/s), bwd ${bwd:-?} ms ($(json_number backward_tflops "$log") TFLOP/s)" \
        "\"attention\": $(json_string "${kernels:-?}"), \"forward_ms\": $(num "$fwd"), \"backward_ms\": $(num "$bwd")"
    [ $# -gt 0 ] || { ours_fwd=$fwd ours_bwd=$bwd; }
}
if wanted bench; then
    if [ "$built" -eq 1 ]; then
        bench_train
        bench_attention
        bench_attention --attention portable
    else
        skip_unbuilt bench "training step" "attention"
    fi
fi

# --- PyTorch baselines ---------------------------------------------------------------------

ratio() { [ -n "$1" ] && [ -n "$2" ] && calc '%.2fx' "$1 / $2" || echo "?"; }
torch_verdict() { # note fields: a JSON "error" line (a backend this GPU/PyTorch lacks) is a SKIP
    if [ "$timed_out" -eq 0 ] && [ "$rc" -eq 3 ] && grep -q '"error"' "$log"; then
        record torch "$current_name" SKIP "$took" "$(sed -n 's/.*"error": "\([^"]*\)".*/\1/p' "$log" | tail -n 1 | cut -c1-120)"
    else
        verdict "$@"
    fi
}
if wanted torch; then
    if [ "$dry_run" -eq 1 ]; then
        record torch "PyTorch baselines" SKIP 0 "dry run: no PyTorch numbers"
    elif [ -z "$torch_py" ]; then
        record torch "PyTorch baselines" SKIP 0 "no Python here imports torch (TORCH_PYTHON)"
    else
        for backend in flash cudnn; do
            begin torch "SDPA $backend attention fwd+bwd"
            attempt 120 "$torch_py" bench/torch_gpu_bench.py --mode attention "${att[@]}" --steps "$steps" --backends "$backend"
            fwd=$(json_number forward_ms "$log") bwd=$(json_number backward_ms "$log")
            torch_verdict "fwd $fwd ms, bwd $bwd ms; igpt speed / $backend: fwd $(ratio "$fwd" "$ours_fwd"), bwd $(ratio "$bwd" "$ours_bwd")" \
                "\"forward_ms\": $(num "$fwd"), \"backward_ms\": $(num "$bwd")"
        done
        b=${ours_batch:-${batches%% *}}
        begin torch "torch.compile training step ($model_label, batch $b)"
        attempt 300 "$torch_py" bench/torch_gpu_bench.py --mode train --config "${bench_model[1]}" --side "${bench_model[3]}" \
            --batch "$b" --steps "$steps"
        theirs=$(json_number tokens_per_s "$log")
        torch_verdict "$(calc '%.0f' "${theirs:-0}") tokens/s; igpt / pytorch $(ratio "$ours_tokens" "$theirs")" \
            "\"tokens_per_s\": $(num "$theirs"), \"batch\": $b"
    fi
fi

# --- compute-sanitizer over the kernel tests -----------------------------------------------

sanitizer=${SANITIZER:-$(command -v compute-sanitizer || ls "$cuda_home"/compute-sanitizer/compute-sanitizer 2>/dev/null)}
sanitizer_refused=""
sanitize() { # tool test
    begin sanitizer "$1 $2"
    if [ -n "$sanitizer_refused" ]; then
        record sanitizer "$1 $2" SKIP 0 "$sanitizer_refused"
        return
    fi
    attempt "${SANITIZER_TIMEOUT:-120}" env CUDA_LAUNCH_BLOCKING=1 "$sanitizer" --tool "$1" --error-exitcode 86 \
        --print-limit 20 "$tests_bin" --exact "$2"
    local errors
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$log" | tail -n 1)
    # The runtime refusing the device (no support, no permission) is no finding about our kernels.
    if [ "$timed_out" -eq 0 ] && [ "$rc" -ne 0 ] && [ "$rc" -ne 86 ] && [ "${errors:-0}" -eq 0 ] &&
        grep -qiE 'not supported|unsupported|permission|refused|unable to|could not (start|attach|find)|injection' "$log"; then
        sanitizer_refused="refused: $(grep -iE -m 1 'not supported|unsupported|permission|refused|unable to|could not|injection' "$log" | sed 's/^=* *//' | cut -c1-100)"
        record sanitizer "$1 $2" SKIP "$took" "$sanitizer_refused"
    elif [ "$timed_out" -eq 0 ] && [ "$rc" -eq 86 ]; then
        record sanitizer "$1 $2" FAIL "$took" "${errors:-some} errors: $(grep -m 1 -E '^=+ (Invalid|Race|Error|.*hazard)' "$log" | sed 's/^=* *//' | cut -c1-100)"
        keep_failure sanitizer "$1 $2" "$log"
    else
        test_verdict "$2" # the test itself, under the sanitizer
    fi
}
memcheck_tests="test_gpu_encoder_forward_backward test_gpu_norm_forward_backward test_gpu_gelu_forward_backward
    test_gpu_softmax_crossentropy test_gpu_adamw_and_grad_norm test_gpu_casts test_gpu_matmul_against_cpu
    test_gpu_attention_head_sizes_and_tiles test_gpu_model_matches_cpu_loss_gradients_features"
racecheck_tests="test_gpu_norm_forward_backward test_gpu_softmax_crossentropy test_gpu_adamw_and_grad_norm
    test_gpu_attention_head_sizes_and_tiles test_interp_block_reduction_all_orders"
if wanted sanitizer; then
    if [ "$dry_run" -eq 1 ] && [ -z "${SANITIZER:-}" ]; then
        record sanitizer "memcheck and racecheck" SKIP 0 "dry run: compute-sanitizer needs a GPU"
    elif [ "$built" -eq 0 ]; then
        skip_unbuilt sanitizer "memcheck and racecheck"
    elif [ -z "$sanitizer" ]; then
        record sanitizer "memcheck and racecheck" SKIP 0 "compute-sanitizer not found"
    else
        for t in $memcheck_tests; do [[ " ${test_names[*]} " == *" $t "* ]] && sanitize memcheck "$t"; done
        for t in $racecheck_tests; do [[ " ${test_names[*]} " == *" $t "* ]] && sanitize racecheck "$t"; done
    fi
fi

# --- End to end: train on the GPU, resume on the CPU, probe on the GPU ------------------------

# Each step needs the one before: after a step that did not pass, the rest are SKIP rows.
e2e_step() { # name: false (with a SKIP row) when an earlier step did not pass
    begin e2e "$1"
    [ -z "$e2e_broken" ] && return 0
    record e2e "$1" SKIP 0 "$e2e_broken"
    return 1
}
e2e_done() { [ "$rc" -eq 0 ] || e2e_broken="not run: an earlier step did not pass"; }
e2e() {
    local dir=$work/e2e model steps=200 stop=100 images=100 side=16 colors=64
    model=(--config tiny --batch 16 --eval-images 100)
    if [ "$dry_run" -eq 1 ]; then
        model=(--d-model 32 --n-layer 1 --n-head 2 --batch 4 --eval-images 8) steps=8 stop=4 images=10 side=8 colors=16
    fi
    e2e_broken=""
    if e2e_step "data: synthetic set, prepared at ${side}x$side"; then
        attempt 120 bash -c "'$igpt' synth --out '$dir/syn' --train-per-class $images --test-per-class 2 --size $side &&
            '$igpt' prepare --images '$dir/syn' --out '$dir/data' --resolution $side --colors $colors --val $((2 * images)) --quiet --no-preview"
        verdict "$((10 * images)) images, $colors colors"
        e2e_done
    fi
    if e2e_step "train on the GPU to step $stop"; then
        attempt 180 "$igpt" train --data "$dir/data" --out "$dir/run" "${model[@]}" --steps $steps --eval-every $stop \
            --checkpoint-every $stop --quiet --device cuda --stop-at $stop
        verdict "val loss $(json_number val_loss "$dir/run/log.jsonl")"
        e2e_done
    fi
    if e2e_step "resume on the CPU to step $steps"; then
        attempt 180 "$igpt" train --data "$dir/data" --out "$dir/run" --resume --device cpu --quiet
        verdict "val loss $(json_number val_loss "$dir/run/log.jsonl")"
        e2e_done
    fi
    if e2e_step "probe every checkpoint on the GPU"; then
        attempt 180 "$igpt" probe --device cuda --data "$dir/data" --run "$dir/run" --quiet --l2 0.01 \
            --train-images $((5 * images)) --eval-images $((2 * images))
        # (A GPU-only build writes no probes.csv: it reads no JSON back; its summary lines are in the log.)
        verdict "best layer accuracy by step: $(awk -F, 'NR > 1 { printf "%s: %.0f%% ", $1, 100 * $4 }' "$dir/run/probe/probes.csv" 2>/dev/null)"
    fi
}
if wanted e2e; then
    if [ "$built" -eq 1 ]; then e2e; else skip_unbuilt e2e "train, resume, probe"; fi
fi

# --- Probe feature extraction throughput ---------------------------------------------------

if wanted features; then
    if [ "$built" -eq 1 ]; then
        begin features "probe features (igpt, ${feature_args[1]}, batch ${feature_args[5]})"
        attempt 120 "$igpt" bench --mode features --device cuda "${feature_args[@]}"
        verdict "$(json_number images_per_s "$log") images/s" "\"images_per_s\": $(num "$(json_number images_per_s "$log")")"
        feature_rate=$(json_number images_per_s "$log")
        begin features "probe solver (igpt, ${probe_args[3]} layers x ${probe_args[1]}, ${probe_args[5]}/${probe_args[7]} images)"
        attempt 600 "$igpt" bench --mode probe --device cuda "${probe_args[@]}" --quiet
        solver_s=$(json_number seconds "$log")
        total=""
        [ -z "$feature_rate" ] || [ -z "$solver_s" ] ||
            total=$(calc "%.0f" "(${probe_args[5]} + ${probe_args[7]}) / $feature_rate + $solver_s")
        verdict "solver ${solver_s:-?} s; with the features of every image: ${total:-?} s (goal 120 s)" \
            "\"solver_s\": $(num "$solver_s"), \"features_and_solver_s\": $(num "$total")"
    else
        skip_unbuilt features "probe features" "probe solver"
    fi
fi

# --- Incremental decoding: samples, the compressor, throughput ------------------------------

decode_checks() {
    local dir=$work/e2e last images=40
    [ "$dry_run" -eq 0 ] || images=6
    last=$(ls "$dir"/run/checkpoint-*.bin 2>/dev/null | tail -n 1)
    if [ -z "$last" ]; then
        record decode "sample, compress (e2e's model)" SKIP 0 "no model: e2e did not train one"
    else
        begin decode "sample on the GPU (e2e's model)"
        attempt 120 "$igpt" sample --device cuda --checkpoint "$last" --data "$dir/data" --out "$dir/samples" \
            --samples 8 --complete 4 --per-image 4 --quiet
        verdict "$(json_number pixels_per_second "$dir/samples/sample.json") pixels/s"
        begin decode "compress -> decompress on the GPU ($images val images, bf16)"
        attempt 180 bash -c "'$igpt' compress --device cuda --checkpoint '$last' --in '$dir/data/val.bin' --images $images \
                --out '$dir/gpu.igpz' --quiet &&
            '$igpt' decompress --checkpoint '$last' --in '$dir/gpu.igpz' --out '$dir/gpu-back.bin' --quiet &&
            '$igpt' compress --device cpu --checkpoint '$last' --in '$dir/data/val.bin' --images $images \
                --out '$dir/cpu.igpz' --quiet &&
            '$igpt' decompress --checkpoint '$last' --in '$dir/cpu.igpz' --out '$dir/cpu-back.bin' --quiet &&
            cmp '$dir/gpu-back.bin' '$dir/cpu-back.bin'"
        verdict "back byte for byte; bits/pixel GPU $(json_number bits_per_pixel "$dir/gpu.igpz.json"), CPU $(json_number bits_per_pixel "$dir/cpu.igpz.json")" \
            "\"gpu_bits_per_pixel\": $(num "$(json_number bits_per_pixel "$dir/gpu.igpz.json")")"
    fi
    local decode_args=(--config s --side 32 --batch 64 --steps 1 --warmup-steps 0)
    [ "$dry_run" -eq 0 ] || decode_args=(--config tiny --side 8 --batch 2 --steps 1 --warmup-steps 0)
    begin decode "decode throughput (igpt, ${decode_args[1]} ${decode_args[3]}x${decode_args[3]}, batch ${decode_args[5]})"
    attempt 150 "$igpt" bench --mode decode --device cuda "${decode_args[@]}"
    verdict "$(json_number positions_per_s "$log") positions/s, $(json_number step_ms "$log") ms per step" \
        "\"positions_per_s\": $(num "$(json_number positions_per_s "$log")")"
}
if wanted decode; then
    if [ "$built" -eq 1 ]; then decode_checks; else skip_unbuilt decode "sample, compress, decode throughput"; fi
fi
