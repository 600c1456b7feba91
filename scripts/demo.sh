#!/usr/bin/env bash
# The main job, end to end on this machine, no GPU and no network needed:
#   1. data: CIFAR-10 if it is here, else the built-in synthetic 10-class set;
#   2. prepare it at 16x16 with a 512-color k-means palette and a validation split;
#   3. train the `tiny` model and show the validation loss falling;
#   4. fit linear probes on every layer of every checkpoint (and of the random init);
#   5. compress the validation images with every checkpoint, beside PNG, gzip, xz and zstd;
#   6. draw samples and completions of the last checkpoint;
#   7. plot generative loss and compression against probe accuracy.
# Rerunning it reuses what is already done: prepared data, a finished or
# interrupted run, probed checkpoints.
#
# CIFAR-10 is taken from, in order:
#   data/prepared/cifar10-16               an earlier prepared copy
#   data/cifar-10-batches-bin              scripts/download_cifar10.sh puts the official binary version there
#   $IGPT_CIFAR_JPEG (default ../shared/data/cifar10-train-jpeg.tar.gz), an image-folder archive
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x ./igpt ] || make -j2 igpt
steps=${DEMO_STEPS:-1000}
source scripts/cifar10_data.sh
source scripts/train_or_resume.sh

data_status=0
data=$(prepare_cifar10 16) || data_status=$?
[ "$data_status" -le 1 ] || exit "$data_status"
if [ "$data_status" -eq 1 ]; then
    data=data/prepared/synthetic-16
    if [ ! -f "$data/train.bin" ]; then
        echo "demo: no CIFAR-10 here (scripts/download_cifar10.sh fetches it); using the built-in synthetic set"
        [ -d data/synthetic ] || ./igpt synth --out data/synthetic --size 16
        ./igpt prepare --images data/synthetic --out "$data" --resolution 16 --val 500
    fi
fi

run=runs/demo-$(basename "$data")
train_or_resume demo "$data" "$run" "$steps" --config tiny --steps "$steps" --batch 16 --lr 3e-3 \
    --eval-every $((steps / 10)) --eval-images 512 || exit $?

echo
echo "demo: validation loss of the tiny model on $(basename "$data") (nats per token; bits = nats / ln 2)"
echo "    step   val loss   bits/token"
grep '"val_loss": [0-9]' "$run/log.jsonl" | grep -v checkpoint |
    sed -E 's/.*"step": ([0-9]+), "val_loss": ([0-9.]+), "val_bits_per_token": ([0-9.]+).*/\1 \2 \3/' |
    awk '{printf "  %6d   %8.4f   %10.4f\n", $1, $2, $3}'

# Linear probes on a subset (a CPU budget): 5,000 training and 1,000 validation images.
./igpt probe --data "$data" --run "$run" --train-images ${DEMO_PROBE_TRAIN:-5000} --eval-images ${DEMO_PROBE_EVAL:-1000}
# The same probe on the raw pixels, for the dashed line in the plots.
[ -f "$run/probe/baseline-pixels.json" ] ||
    ./igpt probe --data "$data" --baseline pixels --out "$run/probe" --train-images ${DEMO_PROBE_TRAIN:-5000} \
        --eval-images ${DEMO_PROBE_EVAL:-1000} --quiet

# The model as a lossless compressor of the validation images (every checkpoint), beside the
# classical compressors on the same tokens.
# At most the validation split's images (the synthetic set holds 500): ./igpt compress would take
# them all, and the classical compressors refuse more than there are.
images=${DEMO_COMPRESS_IMAGES:-1000}
val_images=$(./igpt info "$data/val.bin" | sed -n 's/^  images \([0-9]*\),.*/\1/p')
if [ -n "$val_images" ] && [ "$images" -gt "$val_images" ]; then images=$val_images; fi
./igpt compress --run "$run" --data "$data" --images "$images" --quiet
[ -f "$run/compress/baselines.json" ] ||
    /usr/bin/python3 scripts/compress_baselines.py --data "$data/val.bin" --images "$images" \
        --out "$run/compress/baselines.json" --quiet

# Samples and completions of the last checkpoint.
last=$(ls "$run"/checkpoint-*.bin | tail -n 1)
samples=$run/samples-$(basename "$last" .bin | sed 's/checkpoint-//')
[ -f "$samples/sample.json" ] ||
    ./igpt sample --checkpoint "$last" --data "$data" --out "$samples" --samples 8 --complete 4 --per-image 4 --quiet

./igpt plot "$run"
echo
echo "demo: probe accuracy of the best layer against the generative loss ($run/probe/probes.csv)"
python3 scripts/probe_table.py "$run"
echo
echo "demo: bits per pixel of the validation images compressed by the model and by classical compressors"
/usr/bin/python3 scripts/compression_table.py "$run"
echo
echo "demo: samples and completions of the model in $samples (samples.png, completions.png)"
echo "demo: plots in $run/plots (loss_vs_accuracy.png, accuracy_vs_layer.png, loss_vs_step.png,"
echo "      compression_vs_accuracy.png); the run in $run (log.jsonl, checkpoints);"
echo "      the data in $data (preview.png, palette.png)"
