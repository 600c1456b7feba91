#!/usr/bin/env bash
# The GPU check's plumbing, on every `make test` (tests/run.sh): the dry run
# of scripts/gpu_check.sh end to end with the interpret build as the GPU, then
# runs with planted faults (a fake CUDA test program and a fake
# compute-sanitizer) that must come out as FAIL, TIMEOUT and SKIP rows while
# every other check still runs, a deadline, a SIGTERM in the middle of a
# check, a missing build; the build's fallbacks (a fake make), no -Werror in
# the GPU-only build, the fatbin (with cuobjdump, or CUOBJDUMP). Prints one line per check and "N passed, N
# failed" last, like the other suites. About 40 s.
set -u
cd "$(dirname "$0")/.." || exit 1
passed=0
failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/igpt-gpu-check-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

check() { # check NAME CONDITION...: one line, ok or FAIL
    local name=$1
    shift
    if "$@"; then
        printf 'ok    %s\n' "$name"
        passed=$((passed + 1))
    else
        printf 'FAIL  %s\n' "$name"
        failed=$((failed + 1))
    fi
}
# The status of check NAME (group and name as results.jsonl has them).
status_of() { # results group name
    python3 - "$@" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(" ".join(r["status"] for r in rows if r.get("group") == sys.argv[2] and r.get("name") == sys.argv[3]) or "none")
PY
}
note_of() { # results group name
    python3 -c 'import json, sys
print(" ".join(r.get("note", "") for r in map(json.loads, open(sys.argv[1])) if r.get("group") == sys.argv[2] and r.get("name") == sys.argv[3]))' "$@"
}
is() { [ "$(status_of "$1" "$2" "$3")" = "$4" ]; }
# The process whose pid the file holds has ended (a zombie whose parent died has ended too).
ended() { [[ "$(ps -o stat= -p "$(cat "$1")" 2>/dev/null)" =~ ^(Z|$) ]]; }
# is, and the row's note says $5.
is_with_note() { is "$1" "$2" "$3" "$4" && note_of "$1" "$2" "$3" | grep -q -- "$5"; }
# Both conditions, each a quoted command line (for check's single command).
both() { eval "$1" && eval "$2"; }
# Every line of results.jsonl parses, and the printed output ends with the table's count line.
well_formed() { # out_dir printed_output
    python3 -c 'import json, sys
for line in open(sys.argv[1] + "/results.jsonl"): json.loads(line)' "$1" &&
        tail -n 1 "$2" | grep -qE '^[0-9]+ PASS, [0-9]+ FAIL, [0-9]+ TIMEOUT, [0-9]+ SKIP' &&
        diff <(tail -n "$(wc -l <"$1/summary.txt")" "$2") "$1/summary.txt" >/dev/null
}

# --- 0. The test runner's exact-name selection, which every check below relies on ----------------
tests_bin=./build/interp/igpt_cuda_tests
check "--exact: runs the one test of that name" bash -c \
    '[ "$("$1" --exact test_gpu_casts | grep -cE "^(ok|FAIL|skip) ")" -eq 1 ]' _ "$tests_bin"
check "--exact: a name no test has (here a prefix) is an error, not 0 passed" bash -c \
    '"$1" --exact test_gpu_cast >/dev/null 2>&1; [ $? -eq 2 ]' _ "$tests_bin"

# --- 1. The dry run, end to end --------------------------------------------------------------
dry=$tmp/dry
t0=$SECONDS
scripts/gpu_check.sh --dry-run --out "$dry" >"$tmp/dry.txt" 2>&1
status=$?
echo "   (dry run: $((SECONDS - t0)) s)"
check "dry run: exits 0 with nothing failed" [ "$status" -eq 0 ]
check "dry run: results.jsonl parses, the table is printed last and kept in summary.txt" well_formed "$dry" "$tmp/dry.txt"
# (the two it leaves out for time are SKIP rows)
expected_tests=$(./build/interp/igpt_cuda_tests --list | grep -c .)
got_tests=$(grep -c '"group": "kernels"' "$dry/results.jsonl")
check "dry run: one row per CUDA test ($got_tests of $expected_tests), each run alone" [ "$got_tests" -eq "$expected_tests" ]
check "dry run: the kernel tests pass" is "$dry/results.jsonl" kernels test_gpu_casts PASS
check "dry run: our training step is timed" is "$dry/results.jsonl" bench "training step (igpt, tiny 8x8)" PASS
check "dry run: our attention is timed, the tensor-core kernels by default" \
    is_with_note "$dry/results.jsonl" bench "attention fwd+bwd (igpt, 2x64x32)" PASS "^flash kernels"
check "dry run: and the portable kernels for comparison" \
    is_with_note "$dry/results.jsonl" bench "attention fwd+bwd (igpt portable, 2x64x32)" PASS "^portable kernels"
check "dry run: no PyTorch numbers (SKIP)" is "$dry/results.jsonl" torch "PyTorch baselines" SKIP
check "dry run: train on the GPU, resume on the CPU, probe on the GPU" \
    [ "$(grep '"group": "e2e"' "$dry/results.jsonl" | grep -c '"PASS"')" -eq 4 ]
check "dry run: probe feature throughput" is "$dry/results.jsonl" features "probe features (igpt, tiny, batch 2)" PASS
check "dry run: the probe solver on the (interpreted) GPU" is "$dry/results.jsonl" features "probe solver (igpt, 2 layers x 8, 300/60 images)" PASS
check "dry run: samples on the (interpreted) GPU with e2e's model" is "$dry/results.jsonl" decode "sample on the GPU (e2e's model)" PASS
check "dry run: a compress -> decompress round trip on the GPU, the images back as on the CPU" \
    is "$dry/results.jsonl" decode "compress -> decompress on the GPU (6 val images, bf16)" PASS
check "dry run: incremental decoding throughput" is "$dry/results.jsonl" decode "decode throughput (igpt, tiny 8x8, batch 2)" PASS
check "dry run: the numbers that matter are in the table" grep -q "tokens/s.*MFU" "$dry/summary.txt"

# --- 2. Planted faults: a fake CUDA test program and a fake compute-sanitizer -----------------
# Each named test behaves as a broken kernel would: a failed comparison, a
# crash, a hang; one passes and one skips. The fake sanitizer finds errors
# in one test, runs the others, and refuses the device for racecheck.
fake=$tmp/fake_cuda_tests
cat >"$fake" <<EOF
#!/usr/bin/env bash
names="test_gpu_casts test_gpu_norm_forward_backward test_gpu_gelu_forward_backward test_gpu_softmax_crossentropy test_gpu_attention_t4096"
[ "\$1" = --list ] && { printf '%s\n' \$names; exit 0; }
[ "\$1" = --exact ] || exit 2
case "\$2" in
    test_gpu_casts) echo "ok    test_gpu_casts  0.01 s"; echo "1 passed, 0 failed" ;;
    test_gpu_norm_forward_backward) echo "    tests/cuda/test_layers.cu:160: bf16 norm backward: relative error 0.3" >&2
        echo "FAIL  test_gpu_norm_forward_backward  0.01 s"; echo "0 passed, 1 failed"; exit 1 ;;
    test_gpu_gelu_forward_backward) echo "about to fault"; kill -SEGV \$\$ ;;
    test_gpu_softmax_crossentropy) sleep 100 & echo \$! >"$tmp/hung.pid"; wait ;;
    test_gpu_attention_t4096) echo "skip  test_gpu_attention_t4096  0.00 s  (needs a GPU)"; echo "0 passed, 0 failed" ;;
esac
EOF
sanitizer=$tmp/fake_sanitizer
cat >"$sanitizer" <<'EOF'
#!/usr/bin/env bash
tool=$2
shift 6
if [ "$tool" = racecheck ]; then echo "========= Error: Device not supported"; exit 1; fi
if [ "$3" = test_gpu_casts ]; then
    echo "========= Invalid __global__ write of size 4 bytes"
    echo "========= ERROR SUMMARY: 1 error"
    exit 86
fi
exec "$@"
EOF
chmod +x "$fake" "$sanitizer"
faults=$tmp/faults
t0=$SECONDS
CUDA_TESTS_BIN=$fake SANITIZER=$sanitizer TEST_TIMEOUT=3 SANITIZER_TIMEOUT=3 scripts/gpu_check.sh --dry-run --out "$faults" \
    --only kernels,sanitizer >"$tmp/faults.txt" 2>&1
status=$?
r=$faults/results.jsonl
check "faults: exit status 1, the table still printed last" both '[ "$status" -eq 1 ]' 'well_formed "$faults" "$tmp/faults.txt"'
check "faults: a passing test passes beside them" is "$r" kernels test_gpu_casts PASS
check "faults: a failed comparison is a FAIL with its message" \
    is_with_note "$r" kernels test_gpu_norm_forward_backward FAIL "relative error 0.3"
check "faults: a crash is a FAIL naming the signal" is_with_note "$r" kernels test_gpu_gelu_forward_backward FAIL SIGSEGV
check "faults: a hang is a TIMEOUT, and the tests after it still run" \
    both 'is "$r" kernels test_gpu_softmax_crossentropy TIMEOUT' 'is "$r" kernels test_gpu_attention_t4096 SKIP'
check "faults: the hung test's processes are gone" ended "$tmp/hung.pid"
check "faults: compute-sanitizer errors are a FAIL" \
    is_with_note "$r" sanitizer "memcheck test_gpu_casts" FAIL "Invalid __global__ write"
check "faults: a device the sanitizer refuses is a SKIP, not a FAIL" \
    both 'is "$r" sanitizer "racecheck test_gpu_norm_forward_backward" SKIP' \
    'is_with_note "$r" sanitizer "racecheck test_gpu_softmax_crossentropy" SKIP "Device not supported"'
check "faults: failures.log keeps the failures' output" grep -q "relative error 0.3" "$faults/failures.log"
check "faults: done in $((SECONDS - t0)) s (the hangs cut at 3 s)" [ $((SECONDS - t0)) -lt 30 ]

# --- 3. The deadline, and a run stopped from outside -------------------------------------------
late=$tmp/late
t0=$SECONDS
CUDA_TESTS_BIN=$fake TEST_TIMEOUT=100 scripts/gpu_check.sh --dry-run --out "$late" --only kernels --deadline 15 \
    >"$tmp/late.txt" 2>&1
took=$((SECONDS - t0))
check "deadline: a 15 s deadline ends the run in time ($took s)" [ "$took" -le 17 ]
check "deadline: the check that ran into it is a TIMEOUT, those after it SKIP" \
    both 'is "$late/results.jsonl" kernels test_gpu_softmax_crossentropy TIMEOUT' \
    'is_with_note "$late/results.jsonl" kernels test_gpu_attention_t4096 SKIP "deadline reached"'
check "deadline: the table is printed last" well_formed "$late" "$tmp/late.txt"

stopped=$tmp/stopped
rm -f "$tmp/hung.pid"
CUDA_TESTS_BIN=$fake TEST_TIMEOUT=100 scripts/gpu_check.sh --dry-run --out "$stopped" --only kernels \
    >"$tmp/stopped.txt" 2>&1 &
pid=$!
for _ in $(seq 1 300); do # until the hanging test runs
    [ -s "$tmp/hung.pid" ] && break
    sleep 0.1
done
kill -TERM "$pid"
wait "$pid"
status=$?
check "SIGTERM: exit status 1" [ "$status" -eq 1 ]
check "SIGTERM: the running check is a TIMEOUT, the table is printed last" \
    both 'is_with_note "$stopped/results.jsonl" kernels test_gpu_softmax_crossentropy TIMEOUT "stopped during"' \
    'well_formed "$stopped" "$tmp/stopped.txt"'
check "SIGTERM: the running test's processes are gone" ended "$tmp/hung.pid"

# --- 4. No build: every check is still accounted for -------------------------------------------
nobuild=$tmp/nobuild
IGPT_BIN=/nonexistent/igpt scripts/gpu_check.sh --dry-run --out "$nobuild" >"$tmp/nobuild.txt" 2>&1
status=$?
check "no build: exit status 1, a FAIL row for the build" both '[ "$status" -eq 1 ]' 'is "$nobuild/results.jsonl" build binaries FAIL'
check "no build: SKIP rows for the rest, the table printed last" \
    both 'is "$nobuild/results.jsonl" e2e "train, resume, probe" SKIP' 'well_formed "$nobuild" "$tmp/nobuild.txt"'

# --- 5. The build on the GPU machine: fallbacks, and no warning stops it ------------------------
# A fake `make` plays the builds: the full one fails as on a machine without
# OpenBLAS; the GPU-only one passes, or fails too (FAKE_GPU_ONLY_FAILS).
mkdir -p "$tmp/bin" "$tmp/old-bundle"
cat >"$tmp/bin/make" <<'FAKE'
#!/usr/bin/env bash
if [[ " $* " == *" GPU_ONLY=1 "* ]] && [ -z "${FAKE_GPU_ONLY_FAILS:-}" ]; then exit 0; fi
if [[ " $* " == *" GPU_ONLY=1 "* ]]; then echo "cuda/layers.cu(1): error: planted"; else
    echo "src/util/blas.c:3: fatal error: cblas.h: No such file or directory"; fi
exit 2
FAKE
printf '#!/bin/sh\necho "igpt 0.1 (commit 0ld0ld)"\n' >"$tmp/old-bundle/igpt"
printf '#!/bin/sh\necho test_gpu_casts\n' >"$tmp/old-bundle/igpt_cuda_tests"
echo 0000 >"$tmp/old-bundle/SOURCES"
chmod +x "$tmp/bin/make" "$tmp/old-bundle/igpt" "$tmp/old-bundle/igpt_cuda_tests"
build_row() { # out_dir: the build row's status and note
    python3 -c 'import json, sys
r = [r for r in map(json.loads, open(sys.argv[1] + "/results.jsonl")) if r.get("name") == "binaries"][0]
print(r["status"], r["note"])' "$1"
}
# Not a dry run (the build is what is tested), so only the build: --only none.
fake_build() { # out_dir [VAR=value...]: gpu_check with the fake make
    local dir=$1
    shift
    env PATH="$tmp/bin:$PATH" TORCH_PYTHON=false "$@" scripts/gpu_check.sh --out "$dir" --only none >"$dir.txt" 2>&1
}
fake_build "$tmp/b1" GPU_BUNDLE="$tmp/none"
check "build: the full build failing, the GPU-only one is built" bash -c \
    '[[ "$1" == "PASS GPU-only build here"*"(the full build failed: "*cblas.h* ]]' _ "$(build_row "$tmp/b1")"
fake_build "$tmp/b2" GPU_BUNDLE="$tmp/old-bundle" FAKE_GPU_ONLY_FAILS=1
check "build: both builds failing, a bundle of other sources is used, and says so" bash -c \
    '[[ "$1" == "PASS carried bundle"*"0ld0ld"*"OF OTHER SOURCES (the build here failed: "*planted* ]]' _ \
    "$(build_row "$tmp/b2")"
check "build: the failed builds' output is in failures.log" \
    both 'grep -q "cblas.h" "$tmp/b2/failures.log"' 'grep -q "error: planted" "$tmp/b2/failures.log"'
fake_build "$tmp/b3" GPU_BUNDLE="$tmp/none" FAKE_GPU_ONLY_FAILS=1
check "build: nothing to run, a FAIL with the error, the table last" \
    both '[[ "$(build_row "$tmp/b3")" == FAIL*"error: planted"* ]]' 'well_formed "$tmp/b3" "$tmp/b3.txt"'

# The GPU-only build passes no -Werror to gcc or nvcc (a planted WERROR=-Werror shows that the
# check would see one), and a compiler warning there leaves the object built.
nvcc_here=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
werror_count() { # make arguments...: the GPU-only build's commands that hold -Werror
    make -n -B GPU_ONLY=1 BUILD="$tmp/go" NVCC="$nvcc_here" "$@" "$tmp/go/igpt" \
        ${nvcc_here:+"$tmp/go/cuda/igpt_cuda_tests"} 2>/dev/null | grep -c -- '-Werror'
}
planted_werror=$(werror_count WERROR=-Werror)
check "GPU-only build: no -Werror in its commands (with one planted: $planted_werror)" \
    both '[ "$(werror_count)" -eq 0 ]' '[ "$planted_werror" -gt 0 ]'
make GPU_ONLY=1 BUILD="$tmp/go" NVCC= CC="gcc -Wconversion" "$tmp/go/src/util/blas.o" >"$tmp/warn.txt" 2>&1
check "GPU-only build: a compiler warning (gcc -Wconversion) does not stop it" \
    both 'grep -q "warning:" "$tmp/warn.txt"' '[ -f "$tmp/go/src/util/blas.o" ]'

# --- 6. The fatbin of ./igpt: sm_80 and sm_90 code, sm_90 PTX ---------------------------------
cuobjdump=${CUOBJDUMP:-$(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump .tools/cuda/nvidia/*/bin/cuobjdump 2>/dev/null | head -n 1)}
if [ -z "$cuobjdump" ] || ! "$cuobjdump" --list-elf ./igpt >/dev/null 2>&1; then
    printf 'skip  fatbin of ./igpt (no cuobjdump here, or ./igpt was built without nvcc)\n'
else
    elf=$("$cuobjdump" --list-elf ./igpt | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')
    ptx=$("$cuobjdump" --list-ptx ./igpt | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')
    check "fatbin of ./igpt: cubins $elf, PTX $ptx" [ "$elf$ptx" = "sm_80 sm_90 sm_90 " ]
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
