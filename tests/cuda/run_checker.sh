#!/usr/bin/env bash
# The interpret mode as a checker (docs/cuda.md, "The checker"): the CUDA
# tests under AddressSanitizer (out-of-bounds accesses) and ThreadSanitizer
# (races), each test in a process of its own, and the sm_90 register table
# against a fresh one from nvcc when make built it. The last line is
# "N passed, N failed", as every suite of tests/run.sh.
#
# Not every kernel test runs here: the slowest (minutes under TSan) are left
# to the plain interpret build. The planted bugs (test_checker_*) always run.
set -u
cd "$(dirname "$0")/../.."
passed=0
failed=0
# Tests too slow under the sanitizers (tens of seconds in the plain build).
slow='^(test_gpu_training_follows_cpu_and_repeats|test_gpu_attention_t1024_hs64|test_gpu_attention_t4096)$'
# Under TSan: a test that runs a racy kernel on purpose, in process.
racy_on_purpose='^test_interp_missing_barrier_is_exposed$'

run_one() {
    local binary=$1 name=$2 log
    log=$(mktemp)
    "$binary" "$name" > "$log" 2>&1
    local status=$? line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ "$status" -eq 0 ] && [ -n "$line" ] && [ "$(echo "$line" | cut -d' ' -f3)" -eq 0 ]; then
        grep -E '^(ok|skip) ' "$log" | sed "s/^/$(basename "$(dirname "$binary")") /"
        passed=$((passed + 1))
    else
        echo "FAIL  $binary $name (exit $status):"
        tail -n 40 "$log"
        failed=$((failed + 1))
    fi
    rm -f "$log"
}

for sanitizer in asan tsan; do
    binary=build/interp-$sanitizer/igpt_cuda_tests
    if [ ! -x "$binary" ]; then
        echo "FAIL  $binary is missing (make builds it with clang++)"
        failed=$((failed + 1))
        continue
    fi
    skip=$slow
    [ "$sanitizer" = tsan ] && skip="$slow|$racy_on_purpose"
    for name in $("$binary" --list | grep -Ev "$skip"); do
        run_one "$binary" "$name"
    done
done

# The committed register table is the one nvcc gives today.
if [ -f build/sm90_kernels.inc ]; then
    if cmp -s build/sm90_kernels.inc cuda/interpret/sm90_kernels.inc; then
        echo "ok    cuda/interpret/sm90_kernels.inc matches the sm_90 build"
        passed=$((passed + 1))
    else
        echo "FAIL  cuda/interpret/sm90_kernels.inc differs from the sm_90 build (build/sm90_kernels.inc):" \
            "run \`make sm90-kernels\` and commit it"
        diff cuda/interpret/sm90_kernels.inc build/sm90_kernels.inc | head -n 20
        failed=$((failed + 1))
    fi
else
    echo "skip  the sm_90 register table (no nvcc: build/sm90_kernels.inc not built)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
