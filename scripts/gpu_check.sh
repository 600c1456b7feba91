#!/usr/bin/env bash
# The GPU check: ONE command for a machine with a GPU. Builds ./igpt and the
# CUDA tests with nvcc, runs every GPU test (each kernel against the CPU
# reference op, the whole model against the CPU model, 50 training steps
# against the CPU curve, determinism), compute-sanitizer memcheck and
# racecheck over the kernel tests, an end-to-end run (train on the GPU,
# resume on the CPU, probe on the GPU), and the benchmark; prints a summary.
# Budget: 8 minutes on one H200. Its output goes into docs/gpu-verification.md.
#
# When the machine lacks OpenBLAS or liblbfgs (and cannot download them),
# run scripts/gpu_deps.sh on a machine that can and bring build/gpu-deps.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
t_start=$SECONDS
summary=()
check() {  # check NAME COMMAND...: runs it, records PASS/FAIL with its time
    local name=$1 t0=$SECONDS
    shift
    echo
    echo "=== $name"
    if "$@"; then summary+=("PASS  $name ($((SECONDS - t0)) s)"); else summary+=("FAIL  $name ($((SECONDS - t0)) s)"); fi
}

echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: none"
command -v nvcc >/dev/null && nvcc --version | tail -n 1 || echo "nvcc: not found"

make_args=(-j"$(nproc)")
if ! printf '#include <lbfgs.h>\n#include <cjson/cJSON.h>\n' | cc -E - >/dev/null 2>&1 && [ -d build/gpu-deps/root ]; then
    make_args+=(DEPS_PREFIX="$PWD/build/gpu-deps/root")
    echo "gpu_check: building against build/gpu-deps (the system has no liblbfgs or cJSON)"
fi
# NCCL: the CUDA folder's, or the one PyTorch's wheels bring.
cuda_home=$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")
if [ ! -f "$cuda_home/include/nccl.h" ]; then
    nccl_home=$(python3 -c 'import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null)
    [ -n "$nccl_home" ] && [ -f "$nccl_home/include/nccl.h" ] && make_args+=(NCCL_HOME="$nccl_home") &&
        echo "gpu_check: NCCL from $nccl_home"
fi
check "build: nvcc for sm_80 and sm_90, warnings as errors" make "${make_args[@]}" igpt build/cuda/igpt_cuda_tests
[ -x build/cuda/igpt_cuda_tests ] || { printf '%s\n' "${summary[@]}"; exit 1; }

check "GPU tests: kernels vs CPU ops, whole model vs CPU model, 50 steps, determinism" ./build/cuda/igpt_cuda_tests

if command -v compute-sanitizer >/dev/null; then
    sanitize() {  # tool filter
        compute-sanitizer --tool "$1" --error-exitcode 86 --print-limit 20 ./build/cuda/igpt_cuda_tests "$2"
    }
    check "compute-sanitizer memcheck: layer kernels and matmul" sanitize memcheck test_gpu_
    check "compute-sanitizer racecheck: layer kernels" sanitize racecheck test_gpu_norm
    check "compute-sanitizer racecheck: softmax and cross-entropy" sanitize racecheck test_gpu_softmax
    check "compute-sanitizer racecheck: attention" sanitize racecheck test_gpu_attention_head_sizes
    check "compute-sanitizer racecheck: block reductions" sanitize racecheck test_interp_block_reduction
else
    summary+=("SKIP  compute-sanitizer (not installed)")
fi

end_to_end() {
    local dir
    dir=$(mktemp -d)
    ./igpt synth --out "$dir/syn" --train-per-class 100 --test-per-class 10 >/dev/null &&
        ./igpt prepare --images "$dir/syn" --out "$dir/data" --resolution 16 --colors 64 --val 100 --quiet --no-preview &&
        ./igpt train --device cuda --data "$dir/data" --out "$dir/run" --config tiny --steps 200 --stop-at 100 \
            --eval-every 50 --quiet &&
        ./igpt train --device cpu --data "$dir/data" --out "$dir/run" --resume --quiet &&
        ./igpt probe --device cuda --data "$dir/data" --run "$dir/run" --quiet --l2 0.01 &&
        grep val_loss "$dir/run/log.jsonl" | tail -n 3 && cat "$dir/run/probe/probes.csv" | cut -c1-80
    local status=$?
    rm -rf "$dir"
    return $status
}
check "end to end: train on the GPU, resume on the CPU, probe on the GPU" end_to_end

nccl_one_process() {  # the data-parallel NCCL path with N = 1 must match the plain path
    local dir
    dir=$(mktemp -d)
    ./igpt synth --out "$dir/syn" --train-per-class 20 --test-per-class 2 >/dev/null &&
        ./igpt prepare --images "$dir/syn" --out "$dir/data" --resolution 16 --colors 64 --val 20 --quiet --no-preview &&
        ./igpt train --device cuda --precision fp32 --data "$dir/data" --out "$dir/plain" --steps 20 --batch 8 --quiet &&
        mpirun --allow-run-as-root -np 1 ./igpt train --device cuda --precision fp32 --data "$dir/data" \
            --out "$dir/nccl" --steps 20 --batch 8 --quiet &&
        python3 - "$dir/plain/log.jsonl" "$dir/nccl/log.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p) if '"loss"' in l] for p in sys.argv[1:])
worst = max(abs(x - y) / x for x, y in zip(a, b))
print(f"NCCL path (mpirun -np 1) vs plain: {len(a)} steps, worst loss difference {worst:.2e}")
sys.exit(0 if len(a) == len(b) == 20 and worst <= 1e-5 else 1)
PY
    local status=$?
    rm -rf "$dir"
    return $status
}
if command -v mpirun >/dev/null; then
    check "data parallel: the NCCL path with one process matches the plain path" nccl_one_process
else
    summary+=("SKIP  NCCL path with mpirun -np 1 (no mpirun on this machine)")
fi

check "benchmark (bench/bench_gpu.sh)" bash bench/bench_gpu.sh
check "probe feature extraction on the GPU (s, 32x32)" ./igpt bench --mode features --device cuda --config s --side 32 \
    --batch 64 --steps 5 --warmup-steps 1

echo
echo "=== summary ($((SECONDS - t_start)) s)"
printf '%s\n' "${summary[@]}"
! printf '%s\n' "${summary[@]}" | grep -q '^FAIL'
