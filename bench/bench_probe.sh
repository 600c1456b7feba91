#!/usr/bin/env bash
# make bench-probe: the two costs of probing one checkpoint on CIFAR-10 at
# 32x32 (45,000 training / 5,000 evaluation images): feature extraction
# (images/s, forward passes of the CPU reference) and the solver (./igpt
# probe's whole protocol for every layer at once: 5-fold cross-validation over
# the default L2 grid, the final fits and their scores, on synthetic features
# shaped like the layers: correlated, 10 classes), then the time to probe every
# layer of an xs (13 layers x 256) and an s (25 x 512) checkpoint.
# SOLVER_ONLY=1: the solver alone (no feature extraction timed).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
train_images=${TRAIN_IMAGES:-45000}
eval_images=${EVAL_IMAGES:-5000}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
echo "bench-probe: $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); 32x32, 512 colors, $train_images/$eval_images images"
gpu=0
if [ "${SOLVER_ONLY:-0}" != 1 ] &&
    ./igpt bench --mode features --device cuda --config tiny --side 8 --batch 2 --steps 1 --warmup-steps 0 >/dev/null 2>&1; then
    gpu=1
    echo "GPU feature extraction: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1), bf16"
else
    echo "GPU feature extraction: not timed (no usable GPU here, or SOLVER_ONLY=1)"
fi
printf "%-6s %5s %7s %12s %12s %16s %12s %10s %12s %12s\n" config dim layers "CPU img/s" "GPU img/s" "CPU 50k feat s" \
    "solver s" "iters" "CPU min" "GPU+CPU min"
for case in "xs 256 13 8" "s 512 25 4"; do
    set -- $case
    img_s="-" extract="-" gpu_img_s="-"
    if [ "${SOLVER_ONLY:-0}" != 1 ]; then
        img_s=$(./igpt bench --mode features --config "$1" --side 32 --batch "$4" --steps 3 --warmup-steps 1 \
                --threads "$threads" | field images_per_s)
        extract=$(awk "BEGIN{printf \"%.0f\", ($train_images + $eval_images) / $img_s}")
    fi
    [ "$gpu" = 1 ] && gpu_img_s=$(./igpt bench --mode features --device cuda --config "$1" --side 32 --batch 64 \
                                  --steps 5 --warmup-steps 1 | field images_per_s)
    solver=$(./igpt bench --mode probe --dim "$2" --layers "$3" --train-images $train_images \
             --eval-images $eval_images --threads "$threads" --quiet)
    seconds=$(echo "$solver" | field seconds)
    iters=$(echo "$solver" | field evaluations)
    total="-"
    [ "$extract" != "-" ] && total=$(awk "BEGIN{printf \"%.1f\", ($extract + $seconds) / 60}")
    gpu_total="-"
    [ "$gpu" = 1 ] && gpu_total=$(awk "BEGIN{printf \"%.1f\", (($train_images + $eval_images) / $gpu_img_s + $seconds) / 60}")
    printf "%-6s %5s %7s %12s %12s %16s %12s %10s %12s %12s\n" "$1" "$2" "$3" "$img_s" "$gpu_img_s" "$extract" \
        "$seconds" "$iters" "$total" "$gpu_total"
done
echo "solver: all layers together, 5-fold CV + the fit on all images at each of the default grid's L2 strengths"
echo "(strongest first, warm-started), L-BFGS to |grad| <= 1e-6 max(1, |w|); iters: evaluations of the batch, summed"
echo "over the grid (each one 2 products per layer of n x d x 60). Synthetic features: 10 classes, class means +"
echo "16 correlated factors, neighbouring layers correlated; real layers take similar iteration counts."
