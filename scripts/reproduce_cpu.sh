#!/usr/bin/env bash
# The CPU recipe (docs/results.md): the paper's thesis on a 2-core machine in
# under 3 hours. A next-pixel model is trained on CIFAR-10 at 16x16, linear
# probes are fitted on every layer of its checkpoints (and of its random
# initialisation) with all 45,000 training images and scored on the whole
# 5,000-image validation split, beside the same probe on the raw pixels; the
# checkpoints compress 2,000 validation images (beside PNG, gzip, xz, zstd);
# samples and completions of the last one; then the plots. The learned
# features beat the pixels, and more so as the generative loss falls.
#
#   scripts/reproduce_cpu.sh            # needs CIFAR-10 (scripts/download_cifar10.sh, or $IGPT_CIFAR_JPEG)
#
# Every choice below was tuned on the validation split only (docs/results.md
# says how); the test split is never looked at. Rerunning it goes on where it
# stopped: prepared data, an interrupted training (resumed), probed checkpoints.
# Stage times go to RUN-times.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x ./igpt ] || make -j2 igpt
source scripts/cifar10_data.sh
source scripts/train_or_resume.sh

side=${RECIPE_SIDE:-16}
steps=${RECIPE_STEPS:-3400}
model=(--d-model 128 --n-layer 8 --n-head 4)
run=${RECIPE_RUN:-runs/reproduce-cpu}
times=$run-times.tsv  # this invocation's stage times
# A rehearsal of the whole script in minutes (not the recipe): RECIPE_STEPS=40
# RECIPE_PROBE_TRAIN=1000 RECIPE_PROBE_EVAL=500 RECIPE_RUN=runs/rehearsal.
probe_images=()
[ -z "${RECIPE_PROBE_TRAIN:-}" ] || probe_images+=(--train-images "$RECIPE_PROBE_TRAIN")
[ -z "${RECIPE_PROBE_EVAL:-}" ] || probe_images+=(--eval-images "$RECIPE_PROBE_EVAL")
# Validation images compressed by every checkpoint and by the classical compressors.
compress_images=${RECIPE_COMPRESS_IMAGES:-2000}
mkdir -p "$(dirname "$run")"
: >"$times"

stage_start=0
begin() {
    stage_start=$(date +%s)
    echo "reproduce: $1 ($(date -u +%H:%M:%S) UTC)"
}
finish() {
    local seconds=$(($(date +%s) - stage_start))
    printf "%s\t%d\n" "$1" "$seconds" >>"$times"
    echo "reproduce: $1 took $((seconds / 60)) min $((seconds % 60)) s"
}

begin "data"
data_status=0
data=$(prepare_cifar10 "$side") || data_status=$?
[ "$data_status" -le 1 ] || exit "$data_status"
if [ "$data_status" -eq 1 ]; then
    echo "reproduce: no CIFAR-10 here: run scripts/download_cifar10.sh data (162 MB), or set IGPT_CIFAR_JPEG" \
        "to an archive of CIFAR-10 images (class folders)" >&2
    exit 1
fi
finish "data"

begin "training"
train_or_resume reproduce_cpu "$data" "$run" "$steps" "${model[@]}" --steps "$steps" --batch 32 --lr 3e-3 \
    --checkpoint-every $((steps / 2)) --eval-every $((steps / 10)) --eval-images 1000 || exit $?
finish "training"

begin "probes of the model (every checkpoint and the random init; 45,000 / 5,000 images)"
./igpt probe --data "$data" --run "$run" "${probe_images[@]}"
finish "probes"

begin "probe of the raw pixels"
[ -f "$run/probe/baseline-pixels.json" ] || ./igpt probe --data "$data" --baseline pixels --out "$run/probe" "${probe_images[@]}" --quiet
finish "pixels"

begin "compression of $compress_images validation images (every checkpoint; PNG, gzip, xz, zstd)"
./igpt compress --run "$run" --data "$data" --images "$compress_images" --quiet
[ -f "$run/compress/baselines.json" ] ||
    /usr/bin/python3 scripts/compress_baselines.py --data "$data/val.bin" --images "$compress_images" \
        --out "$run/compress/baselines.json" --quiet
finish "compression"

begin "samples and completions of the last checkpoint"
last=$(ls "$run"/checkpoint-*.bin | tail -n 1)
samples=$run/samples-$(basename "$last" .bin | sed 's/checkpoint-//')
[ -f "$samples/sample.json" ] ||
    ./igpt sample --checkpoint "$last" --data "$data" --out "$samples" --complete 8 --per-image 5 --quiet
finish "samples"

begin "plots"
./igpt plot "$run"
finish "plots"

echo
python3 scripts/probe_table.py "$run"
echo
/usr/bin/python3 scripts/compression_table.py "$run"
echo "reproduce: samples and completions in $samples"
echo "reproduce: stage times in $times; plots in $run/plots"
awk -F'\t' '{ total += $2 } END { printf "reproduce: %d min in all\n", total / 60 }' "$times"
