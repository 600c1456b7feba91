#!/usr/bin/env bash
# The main job, end to end on this machine. Today: find CIFAR-10, prepare it
# as 512-color pixel tokens with a 5,000-image validation split, and draw the
# preview. (Training, probes and plots join this script as they land.)
#
# CIFAR-10 is taken from, in order:
#   data/cifar-10-batches-bin            (scripts/download_cifar10.sh puts it there)
#   $IGPT_CIFAR_JPEG, default ../shared/data/cifar10-train-jpeg.tar.gz
#                                        (an image-folder copy, extracted to data/)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x ./igpt ] || make -j2 igpt
jpeg_archive=${IGPT_CIFAR_JPEG:-../shared/data/cifar10-train-jpeg.tar.gz}
out=data/prepared/cifar10-32

if [ -f "$out/train.bin" ]; then
    echo "demo: $out already prepared; checking it"
    ./igpt info "$out/train.bin" "$out/val.bin"
elif [ -f data/cifar-10-batches-bin/data_batch_1.bin ]; then
    ./igpt prepare --cifar10 data/cifar-10-batches-bin --out "$out" --val 5000
elif [ -f "$jpeg_archive" ]; then
    if [ ! -d data/cifar10-jpeg/train ]; then
        echo "demo: extracting $jpeg_archive into data/"
        mkdir -p data
        tar -xzf "$jpeg_archive" -C data
    fi
    ./igpt prepare --images data/cifar10-jpeg --out "$out" --val 5000
else
    echo "demo: no CIFAR-10 here. Download it (162 MB) with scripts/download_cifar10.sh," >&2
    echo "      or point IGPT_CIFAR_JPEG at an image-folder archive." >&2
    exit 1
fi
echo "demo: prepared splits in $out; look at $out/preview.png and $out/palette.png"
