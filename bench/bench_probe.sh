#!/usr/bin/env bash
# make bench-probe: the two costs of probing one checkpoint on CIFAR-10 at
# 32x32 (45,000 training / 5,000 evaluation images): feature extraction
# (images/s, forward passes of the CPU reference) and the solver (seconds per
# layer, ./igpt probe's protocol on synthetic features of the layer's width),
# then the estimated time to probe every layer of an xs and an s checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
train_images=45000
eval_images=5000
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
echo "bench-probe: $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); 32x32, 512 colors, $train_images/$eval_images images"
gpu=0
if ./igpt bench --mode features --device cuda --config tiny --side 8 --batch 2 --steps 1 --warmup-steps 0 >/dev/null 2>&1; then
    gpu=1
    echo "GPU feature extraction: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1), bf16"
else
    echo "GPU feature extraction: no usable GPU here (CPU figures only)"
fi
printf "%-6s %5s %12s %12s %16s %18s %7s %12s %12s\n" config dim "CPU img/s" "GPU img/s" "CPU 50k feat s" "solver s/layer" layers "CPU min" "GPU+CPU min"
for case in "xs 256 13 8" "s 512 25 4"; do
    set -- $case
    img_s=$(./igpt bench --mode features --config "$1" --side 32 --batch "$4" --steps 3 --warmup-steps 1 \
            --threads "$threads" | field images_per_s)
    gpu_img_s="-"
    [ "$gpu" = 1 ] && gpu_img_s=$(./igpt bench --mode features --device cuda --config "$1" --side 32 --batch 64 \
                                  --steps 5 --warmup-steps 1 | field images_per_s)
    solver=$(./igpt bench --mode probe --dim "$2" --train-images $train_images --eval-images $eval_images \
             --threads "$threads")
    per_layer=$(echo "$solver" | field seconds_per_layer)
    iters=$(echo "$solver" | field final_iterations)
    extract=$(awk "BEGIN{printf \"%.0f\", ($train_images + $eval_images) / $img_s}")
    total=$(awk "BEGIN{printf \"%.1f\", ($extract + $3 * $per_layer) / 60}")
    gpu_total="-"
    [ "$gpu" = 1 ] && gpu_total=$(awk "BEGIN{printf \"%.1f\", (($train_images + $eval_images) / $gpu_img_s + $3 * $per_layer) / 60}")
    printf "%-6s %5s %12.2f %12s %16s %18s %7s %12s %12s\n" "$1" "$2" "$img_s" "$gpu_img_s" "$extract" \
        "$per_layer ($iters it)" "$3" "$total" "$gpu_total"
done
echo "solver: 5 L2 strengths on 90% + refit on 100%, L-BFGS to |grad| < 1e-6 or 1000 iterations; synthetic"
echo "features (10 classes, class means + 16 correlated factors); real layers need similar iteration counts."
