#!/usr/bin/env bash
# scripts/compress_baselines.py and scripts/compression_table.py on small data:
# a synthetic split prepared at 32x32 with 16 colors (the indexed-PNG path, and
# one byte per id) and with 512 (no indexed PNG; u16 only). The stream sizes
# are checked against the tools run here on the bytes this test cuts from the
# file itself (its own reader, not the script's); the PNG sizes against
# Pillow on this test's own images; then the clear errors (a missing tool, too
# many images, a damaged file) and the table of a hand-made run.
# Prints one line per check and "N passed, N failed" last. About 3 seconds.
set -u
cd "$(dirname "$0")/.." || exit 1
root=$PWD
igpt="$root/${IGPT_BUILD:-build}/igpt"
[ -x "$igpt" ] || igpt="$root/igpt"
python=/usr/bin/python3 # Debian's: numpy and Pillow (python3-numpy, python3-pil)
source "$root/tests/check_lib.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/igpt-baselines-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
baselines() { "$python" "$root/scripts/compress_baselines.py" --quiet "$@"; }
field() { # field FILE.json PYTHON-EXPRESSION-ON-j
    "$python" -c "import json, sys; j = json.load(open(sys.argv[1])); print($2)" "$1"
}

"$igpt" synth --out synth --train-per-class 3 --test-per-class 1 --size 32 >/dev/null &&
    "$igpt" prepare --images synth --out p16 --resolution 32 --colors 16 --val 10 --quiet >/dev/null &&
    "$igpt" prepare --images synth --out p512 --resolution 32 --colors 512 --val 10 --quiet >/dev/null
check "a small split prepared (32x32) with 16 and with 512 colors" '[ -f p16/val.bin ] && [ -f p512/val.bin ]'

# This test's own reader (docs/formats.md): images i*n/N of N, their tokens as u16 and u8 files,
# and each image's indexed PNG as Pillow writes it at level 9 + optimize.
cut_tokens() { # cut_tokens SPLIT N
    "$python" - "$1" "$2" <<'EOF'
import io, struct, sys
from PIL import Image
path, count = sys.argv[1], int(sys.argv[2])
raw = open(path, "rb").read()
header = struct.unpack_from("<I", raw, 12)[0]
n, h, w, k = struct.unpack_from("<QIII", raw, 16)
start = header + 3 * k + 2 * n
chosen = [raw[start + 2 * h * w * (i * n // count):][:2 * h * w] for i in range(count)]
open("u16.bin", "wb").write(b"".join(chosen))
open("u8.bin", "wb").write(bytes(b for image in chosen for b in image[0::2]))
png = 0
for image in chosen if k <= 256 else []:
    picture = Image.frombytes("P", (w, h), image[0::2])
    picture.putpalette(raw[header:header + 3 * k])
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", optimize=True, compress_level=9)
    png += len(buffer.getvalue())
print(png)
EOF
}

baselines --data p16/val.bin --images 4 --out b16.json >out16 2>err16
status=$?
check "16 colors: runs, writes its JSON and a table" '[ $status = 0 ] && [ -f b16.json ] && grep -q "zstd -19 (u8)" out16'
check "16 colors: data, images, pixels, colors" \
    '[ "$(field b16.json "j[\"data\"], j[\"images\"], j[\"pixels\"], j[\"colors\"]")" = "p16/val.bin 4 4096 16" ]'
check "16 colors: png, then gzip/xz/zstd on u16 and on u8" \
    '[ "$(field b16.json "\",\".join(c[\"name\"] for c in j[\"compressors\"])")" = "png,gzip -9 (u16),xz -9e (u16),zstd -19 (u16),gzip -9 (u8),xz -9e (u8),zstd -19 (u8)" ]'
check "16 colors: every bits_per_pixel is 8 bytes / pixels" \
    '[ "$(field b16.json "all(c[\"bits_per_pixel\"] == 8 * c[\"bytes\"] / j[\"pixels\"] for c in j[\"compressors\"])")" = True ]'
png16=$(cut_tokens p16/val.bin 4)
size() { field b16.json "next(c[\"bytes\"] for c in j[\"compressors\"] if c[\"name\"] == \"$1\")"; }
check "16 colors: an indexed PNG per image, sizes summed (Pillow here: $png16 bytes)" \
    '[ "$(size png)" = "$png16" ] && field b16.json "j[\"compressors\"][0][\"how\"]" | grep -q "indexed PNG (16-color palette)"'
# Each file's chunks around its pixels: signature 8, IHDR 25, PLTE 12 + 3 x 16, IDAT's own 12, IEND 12.
check "16 colors: the PNG container's bytes said: 4 x 117" \
    'field b16.json "j[\"compressors\"][0][\"how\"]" | grep -q "; 468 of the bytes are the files. chunks"'
check "16 colors: gzip -9 of images 0, 2, 5, 7 as u16, and as u8" \
    '[ "$(size "gzip -9 (u16)")" = "$(gzip -9 -n -c <u16.bin | wc -c)" ] &&
     [ "$(size "gzip -9 (u8)")" = "$(gzip -9 -n -c <u8.bin | wc -c)" ]'
check "16 colors: xz -9e and zstd -19 of the same bytes" \
    '[ "$(size "xz -9e (u16)")" = "$(xz -9e -T1 -c <u16.bin | wc -c)" ] &&
     [ "$(size "xz -9e (u8)")" = "$(xz -9e -T1 -c <u8.bin | wc -c)" ] &&
     [ "$(size "zstd -19 (u16)")" = "$(zstd -19 -q -c <u16.bin | wc -c)" ] &&
     [ "$(size "zstd -19 (u8)")" = "$(zstd -19 -q -c <u8.bin | wc -c)" ]'

baselines --data p512/val.bin >out512 2>err512
status=$?
b512=p512/compress-baselines-val-10.json
check "512 colors: every image by default, the JSON beside the data" '[ $status = 0 ] && [ -f $b512 ] &&
     [ "$(field $b512 "j[\"images\"], j[\"pixels\"], j[\"colors\"]")" = "10 10240 512" ]'
check "512 colors: no u8 stream; the PNG says it cannot be indexed" \
    '[ "$(field $b512 "\",\".join(c[\"name\"] for c in j[\"compressors\"])")" = "png,gzip -9 (u16),xz -9e (u16),zstd -19 (u16)" ] &&
     field $b512 "j[\"compressors\"][0][\"how\"]" | grep -q "cannot be indexed beyond 256"'
check "512 colors: the PNG container's bytes said: 10 x 57 (no palette)" \
    'field $b512 "j[\"compressors\"][0][\"how\"]" | grep -q "; 570 of the bytes are the files. chunks"'
cut_tokens p512/val.bin 10 >/dev/null
check "512 colors: gzip -9 of every image's u16 tokens" \
    '[ "$(field $b512 "j[\"compressors\"][1][\"bytes\"]")" = "$(gzip -9 -n -c <u16.bin | wc -c)" ]'
# The smaller of RGB and 16-bit grayscale, each image: no more than the all-RGB or all-gray total it reports.
check "512 colors: PNG bytes the smaller of RGB and 16-bit grayscale per image" \
    '[ "$(field $b512 "(lambda c, t: c[\"bytes\"] <= min(t) and c[\"bytes\"] > 10 * 60)(j[\"compressors\"][0], [int(s.replace(\",\", \"\")) for s in __import__(\"re\").findall(r\"all \\w+ ([\\d,]+)\", j[\"compressors\"][0][\"how\"])])")" = True ]'

# Clear errors, and nothing written.
mkdir bin && ln -s "$(command -v gzip)" bin/gzip && ln -s "$(command -v xz)" bin/xz
PATH="$tmp/bin" baselines --data p16/val.bin --out missing.json >out 2>err
status=$?
check "a missing zstd tool: one clear line naming it and its package" \
    '[ $status = 1 ] && [ ! -e missing.json ] && grep -q "^igpt: error: .*the zstd tool is missing.*package zstd" err'
baselines --data p16/val.bin --images 11 --out many.json >out 2>err
status=$?
check "--images beyond the split: a clear error" '[ $status = 1 ] && [ ! -e many.json ] &&
     grep -q "^igpt: error: .*--images 11: p16/val.bin has 10 images" err'
cp p16/val.bin damaged.bin && printf 'x' | dd of=damaged.bin bs=1 seek=2000 conv=notrunc status=none
baselines --data damaged.bin --out damaged.json >out 2>err
status=$?
check "a damaged split: refused (CRC), not measured" '[ $status = 1 ] && [ ! -e damaged.json ] && grep -q "CRC mismatch" err'

# compression_table.py on a hand-made run: two compressed checkpoints (one never probed), the probes,
# and the 16-color baselines above.
mkdir -p run/compress run/probe
for step in 500 1000 1500; do
    bits=$(echo "$step" | awk '{printf "%.4f", 6 - $1 / 500}')
    printf '{"checkpoint": "run/checkpoint-%08d.bin", "step": %d, "data": "p16/val.bin", "images": 4, "pixels": 4096, "bytes": 1, "bits_per_pixel": %s, "cross_entropy_bits_per_pixel": %s, "overhead_percent": 0.75, "seconds": 1, "pixels_per_second": 256, "device": "cpu", "precision": "fp32"}\n' \
        "$step" "$step" "$bits" "$(echo "$bits" | awk '{printf "%.4f", $1 / 1.0075}')" >"run/compress/compress-$(printf %08d "$step").json"
done
printf 'step,eval_gen_loss,best_layer,best_accuracy,acc_layer_0,acc_layer_1,eval_images,best_accuracy_se\n500,3.0,1,0.36,0.30,0.36,1000,0.015179\n1000,2.9,1,0.375,0.30,0.375,1000,0.015309\n' >run/probe/probes.csv
cp b16.json run/compress/baselines.json
python3 "$root/scripts/compression_table.py" run >table 2>err
status=$?
check "the table: a row per checkpoint (file, cross-entropy, overhead, accuracy ± s.e.)" \
    '[ $status = 0 ] && grep -qxF "| model, step 500 | 5.000 | 4.963 | 0.75% | 36.00% ± 1.52 |" table &&
     grep -qxF "| model, step 1,000 | 4.000 | 3.970 | 0.75% | 37.50% ± 1.53 |" table'
check "the table: an unprobed step has no accuracy" 'grep -qxF "| model, step 1,500 | 3.000 | 2.978 | 0.75% | - |" table'
zstd8=$(field b16.json "\"%.3f\" % j[\"compressors\"][6][\"bits_per_pixel\"]")
check "the table: then each classical compressor's bits per pixel" \
    'grep -qxF "| zstd -19 (u8) | $zstd8 | | | |" table && [ "$(grep -c "^| " table)" = 11 ] && ! grep -q Note table'
sed -i 's/"images": 4, "pixels": 4096/"images": 5, "pixels": 5120/' run/compress/compress-00001500.json
python3 "$root/scripts/compression_table.py" run >table 2>err
check "the table says so when the checkpoints were compressed on other images" \
    'grep -q "Note: checkpoints compressed on different images" table'
sed -i 's/"images": 5, "pixels": 5120/"images": 4, "pixels": 4096/' run/compress/compress-00001500.json
sed -i 's|"data": "p16/val.bin"|"data": "p16/test.bin"|' run/compress/baselines.json
python3 "$root/scripts/compression_table.py" run >table 2>err
check "the table says so when the compressors measured another split (as many images)" \
    'grep -q "Note: compression figures from different data: p16/test.bin, p16/val.bin" table'
rm -r run/compress/compress-*.json
python3 "$root/scripts/compression_table.py" run >table 2>err
status=$?
check "a run without compression results: a clear error" \
    '[ $status = 1 ] && grep -q "^igpt: error: .*no compress-NNNNNNNN.json" err'

check_totals
