#!/usr/bin/env bash
# Runs every test suite and prints the totals as the last line:
# "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
passed=0
failed=0
run_suite() {
    local name=$1
    shift
    echo "== $name"
    local log
    log=$(mktemp)
    "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$line" ]; then
        echo "suite $name ended without a result line (exit $status)"
        failed=$((failed + 1))
        return
    fi
    local p f
    p=$(echo "$line" | cut -d' ' -f1)
    f=$(echo "$line" | cut -d' ' -f3)
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "suite $name exited with status $status"
        failed=$((failed + 1))
    fi
}
# The build under test: build (./igpt) or the folder make names, e.g. build/sanitize
# (make SANITIZE=address,undefined test); the C tests and scripts find its binaries
# through IGPT_BUILD too.
export IGPT_BUILD=${IGPT_BUILD:-build}
build=$IGPT_BUILD
if [ "$build" = build/sanitize ]; then
    # UBSan stops at the first finding (-fno-sanitize-recover) and prints its stack. LeakSanitizer
    # checks when an ./igpt command returns and when the C tests end: not at error exits (they end
    # the program with its buffers in use on purpose), not in mpirun's ranks (src/cli/main.c); it
    # ignores the libraries' own leaks (tests/sanitize.supp). The interpret build's ASan settings
    # (abort on the first report: the checker's planted bugs expect SIGABRT) are its own defaults.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:leak_check_at_exit=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
    export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/sanitize.supp:print_suppressions=0}
fi
run_suite "C tests" "./$build/igpt_tests" "$@"
run_suite "CUDA kernels in the interpret mode" "./$build/interp/igpt_cuda_tests" "$@"
if [ $# -eq 0 ] && [ "$build" != build ]; then
    run_suite "prepare vs an independent Python reader" python3 tests/test_prepare_reference.py
    run_suite "bad command lines and inputs: clear errors, no partial output" bash tests/bad_inputs.sh
    echo "skip  style, SASS, the checker builds, the GPU check's dry run, the crash test and the fuzz harnesses (sanitized already): make test runs them"
elif [ $# -eq 0 ]; then
    run_suite "prepare vs an independent Python reader" python3 tests/test_prepare_reference.py
    run_suite "bad command lines and inputs: clear errors, no partial output" bash tests/bad_inputs.sh
    run_suite "style: format, one statement per line, no include cycle" python3 tests/check_style.py
    run_suite "SASS of the nvcc build: HMMA in tensor-core kernels, no local memory" python3 tests/check_sass.py
    run_suite "the checker: CUDA tests under ASan and TSan, planted bugs" bash tests/cuda/run_checker.sh
    run_suite "the scripts' shared training step (train, resume, interrupted)" bash tests/test_scripts.sh
    # scripts/compress_baselines.py (PNG, gzip, xz, zstd on a split's tokens) and scripts/compression_table.py.
    run_suite "classical compressors and the compression table" bash tests/test_compress_baselines.sh
    # ./igpt export loaded by transformers' from_pretrained (skips without torch + transformers).
    run_suite "Hugging Face round trip: transformers loads the export" bash tests/test_hf_transformers.sh
    # scripts/gpu_check.sh --dry-run (the interpret build as the GPU) and its planted faults.
    run_suite "GPU check: the dry run, planted faults, deadline" bash tests/test_gpu_check.sh
    # kill -9 a small training at random instants (some mid-checkpoint-write), resume, compare (issue 13).
    run_suite "crash test: kill -9 and resume, 3 kills" bash -c 'scripts/crash_test.sh --count 3 && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"'
    # Every reader's fuzz harness: its regression inputs, then a few seconds of fuzzing (fuzz/, docs/fuzzing.md).
    run_suite "fuzz: the file readers' harnesses, regressions and a short run" bash fuzz/short_run.sh
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
