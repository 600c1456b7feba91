#!/usr/bin/env bash
# make bench-data: prepares the 50,000 shared CIFAR-10 training images
# (JPEG, extracted to a temporary folder) at 32x32 with 512 colors and prints
# the figures. Goal: the whole prepare in under 60 s on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
archive=${IGPT_CIFAR_JPEG:-../shared/data/cifar10-train-jpeg.tar.gz}
[ -f "$archive" ] || { echo "bench-data: $archive not found (set IGPT_CIFAR_JPEG)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/igpt-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s.%N)
tar -xzf "$archive" -C "$tmp"
t1=$(date +%s.%N)
echo "bench-data: extracted $(find "$tmp" -name '*.jpg' | wc -l) images in $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s (not counted below)"
echo "bench-data: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
./igpt prepare --images "$tmp/cifar10-jpeg" --out "$tmp/out" --resolution 32 --colors 512 --val 5000 --quiet
t2=$(date +%s.%N)
echo "bench-data: prepare wall time $(awk "BEGIN{printf \"%.1f\", $t2 - $t1}") s for 50,000 images (goal: under 60 s)"
