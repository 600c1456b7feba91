#!/usr/bin/env bash
# Seeds for the fuzz harnesses, from files igpt itself writes (nothing binary
# is committed but fuzz/regressions/): a tiny synthetic image set prepared at
# 2x2 and 4x4, its palette, a checkpoint after one CPU training step of the
# smallest model, its probe feature caches, its compressed val images, a
# CIFAR-10 batch of one and of two records, one small image per format, and a
# few small safetensors files (and the one tests/fixtures/safetensors/ holds).
#   fuzz/make_seeds.sh [OUT_DIR]     (default build/fuzz/seeds; ./igpt and build/fuzz/image_seeds built)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/fuzz/seeds}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
for reader in dataset palette checkpoint features cifar10 images igpz safetensors; do mkdir -p "$out/$reader"; done

./igpt synth --out "$work/synth" --train-per-class 3 --test-per-class 1 --size 8 >/dev/null
for side in 2 4; do
    ./igpt prepare --images "$work/synth" --out "$work/data$side" --resolution $side --colors $((side * 2)) \
        --val 10 --no-preview --quiet >/dev/null
    for split in train val test; do cp "$work/data$side/$split.bin" "$out/dataset/$split-$side.bin"; done
    cp "$work/data$side/palette.bin" "$out/palette/palette-$side.bin"
done

# A palette with exact centers (palette.bin version 2, docs/formats.md), and a split prepared with it
# (its palette's identity at header offset 56). Python writes it: no command of igpt writes one by itself.
python3 - "$work/exact.bin" <<'PY'
import math, struct, sys, zlib
f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]
centers = [f32((i * 37 % 256) * 0.996 + 0.5) for i in range(8 * 3)]
colors = bytes(min(255, math.floor(c + 0.5)) for c in centers)
body = colors + struct.pack("<24f", *centers)
header = b"IGPTPAL\0" + struct.pack("<III", 2, 8, zlib.crc32(body))
header += struct.pack("<III", zlib.crc32(header), 1, 0)
open(sys.argv[1], "wb").write(header + body)
PY
cp "$work/exact.bin" "$out/palette/palette-exact.bin"
./igpt prepare --images "$work/synth" --out "$work/exact" --resolution 2 --val 10 --palette "$work/exact.bin" \
    --split train --no-preview --quiet >/dev/null
cp "$work/exact/train.bin" "$out/dataset/train-exact.bin"

# The smallest model: d_model 2, one layer, one head, 4 colors at 2x2 (a 1.3 KB checkpoint).
./igpt train --device cpu --data "$work/data2" --out "$work/run" --steps 1 --d-model 2 --n-layer 1 --n-head 1 \
    --batch 2 --quiet >/dev/null
cp "$work/run/checkpoint-00000001.bin" "$out/checkpoint/"
./igpt probe --device cpu --data "$work/data2" --checkpoint "$work/run/checkpoint-00000001.bin" \
    --out "$work/probe" --max-iters 5 --quiet >/dev/null
for f in "$work"/probe/features-*.bin; do cp "$f" "$out/features/"; done
# That model's compressed val images: all 10 in groups of 3 (4 streams), and one alone.
./igpt compress --checkpoint "$work/run/checkpoint-00000001.bin" --in "$work/data2/val.bin" --group 3 \
    --out "$out/igpz/val-10.igpz" --quiet >/dev/null
./igpt compress --checkpoint "$work/run/checkpoint-00000001.bin" --in "$work/data2/val.bin" --images 1 \
    --out "$out/igpz/val-1.igpz" --quiet >/dev/null
rm -f "$out"/igpz/*.json

# safetensors: a few small files written here by hand (the layout of docs/formats.md), and the
# fixture Hugging Face's library wrote (tests/fixtures/safetensors/).
python3 - "$out/safetensors" <<'PY'
import json, struct, sys
def write(name, tensors, metadata=None, pad=True):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for tname, dtype, shape, raw in tensors:
        header[tname] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    open(f"{sys.argv[1]}/{name}.safetensors", "wb").write(struct.pack("<Q", len(text)) + text + data)
write("empty", [])
write("f32", [("h.0.w", "F32", [2, 3], struct.pack("<6f", 0, -0.0, 1.5, -2, 1e-45, 3e38)),
              ("scalar", "F32", [], struct.pack("<f", 7))], {"format": "pt"})
write("mixed", [("pad", "U8", [1], b"\x01"), ("f16", "F16", [2, 2], struct.pack("<4H", 0x3c00, 0x8001, 0x7c00, 0x7e00)),
                ("bf16", "BF16", [3], struct.pack("<3H", 0x3f80, 0x0001, 0xff80)),
                ("f64", "F64", [2], struct.pack("<2d", 0.1, -1e300)), ("none", "F32", [0, 4], b""),
                ("i32", "I32", [1, 2], struct.pack("<2i", 1, -1))], pad=False)
PY
cp tests/fixtures/safetensors/official.safetensors "$out/safetensors/"

# CIFAR-10 binary: records of label + 32x32 R, G, B planes (the reader's format, images.h); one
# record (odd size: the harness resizes to 16x16) and two (even: kept at 32x32).
python3 - "$out/cifar10" <<'PY'
import sys
for n in (1, 2):
    records = bytearray()
    for r in range(n):
        records.append(r * 3 % 10)
        records += bytes((r * 37 + i * 7) % 256 for i in range(3 * 32 * 32))
    open(f"{sys.argv[1]}/test_batch-{n}.bin", "wb").write(records)
PY

build/fuzz/image_seeds "$out/images"
for f in "$work"/synth/test/*/0000.png; do  # igpt's own PNGs, at resolution 8 (selector 0x10)
    { printf '\x10'; cat "$f"; } >"$out/images/synth-$(basename "$(dirname "$f")").png"
done
echo "seeds in $out: $(find "$out" -type f | wc -l) files, $(du -sk "$out" | cut -f1) KB"
