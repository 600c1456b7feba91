#!/usr/bin/env bash
# The GPU benchmark (run it on a machine with a GPU; scripts/gpu_check.sh runs it):
#  1. training of the `s` model (d=512, 24 layers, 32x32, 512 colors) at the
#     largest of a few batch sizes that fits: tokens/s, step time, TFLOP/s and
#     MFU (FLOPs per token in docs/cuda.md), beside the same model in PyTorch
#     (bf16 autocast, torch.compile, SDPA, fused AdamW) measured in this run;
#  2. our attention kernels alone (the ones --attention auto selects: tensor
#     cores at head size 64; and the portable ones for comparison) against
#     PyTorch's SDPA (flash and cuDNN backends) at 64 heads x 1024 x 64,
#     causal, forward and backward.
# Environment: STEPS (default 20), BATCHES ("32 16 8"), PEAK_TFLOPS (default
# from the GPU's name: 989 for H100/H200, 312 for A100), TORCH_PYTHON (python3);
# CONFIG, SIDE, ATT_SEQ and IGPT change the sizes and the binary (to try the
# script itself on small sizes, e.g. with build/interp/igpt).
# Each measurement runs under its own timeout (ours 300 s, torch.compile 600 s,
# each attention backend 120 s), so a hang costs one row, not the benchmark;
# the last line sums it up ("bench-gpu: result ..."). scripts/gpu_check.sh
# runs the same measurements one by one within its deadline.
set -uo pipefail
cd "$(dirname "$0")/.."
IGPT=${IGPT:-./igpt}
steps=${STEPS:-20}
config=${CONFIG:-s}
side=${SIDE:-32}
att_seq=${ATT_SEQ:-1024}
py=${TORCH_PYTHON:-python3}
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
case "$gpu" in
    *H100* | *H200*) peak=${PEAK_TFLOPS:-989} ;;
    *A100*) peak=${PEAK_TFLOPS:-312} ;;
    *) peak=${PEAK_TFLOPS:-0} ;;
esac
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
echo "bench-gpu: ${gpu:-unknown GPU}; dense bf16 peak ${peak} TFLOP/s; model $config at ${side}x${side}, $steps timed steps"

ours="" batch=""
for b in ${BATCHES:-32 16 8}; do
    if out=$(timeout -k 5 300 $IGPT bench --device cuda --config "$config" --side "$side" --colors 512 --batch "$b" --optimizer --steps "$steps" \
             --warmup-steps 3 2>&1); then
        ours=$(echo "$out" | tail -n 1)
        batch=$b
        break
    fi
    echo "bench-gpu: batch $b did not fit or failed: $(echo "$out" | tail -n 1)"
done
[ -n "$ours" ] || { echo "bench-gpu: ./igpt bench failed at every batch size"; exit 1; }
torch_log=$(mktemp)
theirs=$(timeout -k 5 600 "$py" bench/torch_gpu_bench.py --mode train --config "$config" --side "$side" --batch "$batch" \
         --steps "$steps" 2>"$torch_log" | tail -n 1)
printf "%-22s %6s %14s %10s %9s %7s\n" implementation batch "tokens/s" "step ms" "TFLOP/s" MFU
flops=$(echo "$ours" | field train_flops_per_token)
row() {  # name tokens_per_s
    awk -v n="$1" -v b="$batch" -v t="$2" -v f="$flops" -v p="$peak" -v T=$((side * side)) 'BEGIN {
        tf = t * f / 1e12; printf "%-22s %6d %14.0f %10.1f %9.1f %6.1f%%\n", n, b, t, 1000 * b * T / t, tf, (p > 0 ? 100 * tf / p : 0) }'
}
row "igpt (cuda, bf16)" "$(echo "$ours" | field tokens_per_s)"
if [ -n "$theirs" ]; then
    row "pytorch (compile)" "$(echo "$theirs" | field tokens_per_s)"
    ratio=$(awk -v a="$(echo "$ours" | field tokens_per_s)" -v b="$(echo "$theirs" | field tokens_per_s)" \
        'BEGIN { printf "%.2fx", a / b }')
    echo "ratio igpt / pytorch: $ratio"
else
    echo "pytorch: not measured: $(tail -n 1 "$torch_log")"
fi

echo
echo "attention alone: 64 heads x $att_seq x 64, causal, bf16"
printf "%-22s %12s %12s %12s %12s\n" implementation "fwd ms" "bwd ms" "fwd TFLOP/s" "bwd TFLOP/s"
{
    for kernels in auto portable; do
        timeout -k 5 120 $IGPT bench --mode attention --attention $kernels --batch-heads 64 --seq "$att_seq" \
            --head-size 64 --steps "$steps"
    done
    for backend in flash cudnn; do
        timeout -k 5 120 "$py" bench/torch_gpu_bench.py --mode attention --batch-heads 64 --seq "$att_seq" \
            --head-size 64 --steps "$steps" --backends $backend 2>>"$torch_log"
    done
} | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if "error" in r:
        print("%-22s %s" % (r["impl"], r["error"][:60])); continue
    impl = r["impl"] + (" " + r["attention"] if "attention" in r else "")  # ours: flash or portable
    print("%-22s %12.3f %12.3f %12.1f %12.1f" % (impl, r["forward_ms"], r["backward_ms"], r["forward_tflops"], r["backward_tflops"]))
'
rm -f "$torch_log"
theirs_tokens=$([ -n "$theirs" ] && echo "$theirs" | field tokens_per_s || echo "not measured")
echo "bench-gpu: result: igpt $(echo "$ours" | field tokens_per_s) tokens/s at batch $batch, pytorch $theirs_tokens tokens/s${ratio:+, igpt / pytorch $ratio}"
