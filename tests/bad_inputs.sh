#!/usr/bin/env bash
# Bad command lines and inputs (issue 13's goal): every case is a command that
# must fail, and fail clearly. For each one:
#   - the exit status is non-zero and not a signal (1..127; 124 is our timeout);
#   - stderr holds exactly one line "igpt: error: ..." (naming what is wrong:
#     the case says which text it must contain), and no other line except the
#     usage hint "(see ./igpt CMD --help)"; no warning, no sanitizer report,
#     no core dump;
#   - no partial output: every path the case names as an output is absent
#     afterwards, or unchanged (bytes, names and sizes) if it was there before.
# Cases another part of issue 13 fixes are in PENDING: run and reported, not
# counted as failures until they pass (then they are listed to be turned on).
# Cases that cannot fail as root (permission bits) are skipped as root.
# The binary is ./igpt, or that of the build folder in IGPT_BUILD
# (build/sanitize/igpt under make SANITIZE=address,undefined test).
# The last line is "N passed, N failed", as every suite of tests/run.sh.
set -u
cd "$(dirname "$0")/.."
build=${IGPT_BUILD:-build}
case $build in
build) igpt=$PWD/igpt ;;
/*) igpt=$build/igpt ;;
*) igpt=$PWD/$build/igpt ;;
esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/igpt-bad-inputs.XXXXXX")
cleanup() {
    chmod -R u+w "$tmp" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
# Several seconds per case would be a hang (a FIFO read, a loop on a bad size).
case_timeout=${BAD_INPUTS_TIMEOUT:-30}
# BAD_INPUTS_ONLY=REGEX runs only the cases whose name matches.
only=${BAD_INPUTS_ONLY:-.}

# Cases another part of issue 13 fixes (turn them on by removing them here).
PENDING=(
)

cases=0
clear=0
pending=0
pending_passing=()
skipped=0
failed=0

is_pending() {
    local p
    for p in "${PENDING[@]}"; do [ "$p" = "$1" ] && return 0; done
    return 1
}

# A fingerprint of a path: absent, or every file's name, size and checksum.
state_of() {
    if [ ! -e "$1" ] && [ ! -L "$1" ]; then
        echo absent
    elif [ -d "$1" ]; then
        (cd "$1" && find . -printf '%p %y %s\n' | sort && find . -type f -exec md5sum {} + | sort) 2>&1
    elif [ -f "$1" ]; then
        md5sum <"$1"
    else
        stat -c '%F' "$1"
    fi
}

# Why the output of a failed command is not a clear error ("" if it is).
unclear_because() {
    local status=$1 err=$2 expect=$3
    if [ "$status" -eq 0 ]; then
        echo "exit status 0"
        return
    fi
    if [ "$status" -ge 124 ]; then
        echo "exit status $status (a signal, or the ${case_timeout} s timeout)"
        return
    fi
    local errors others
    errors=$(grep -c '^igpt: error: ' "$err")
    others=$(grep -v -e '^igpt: error: ' -e '^(see \./igpt [a-z ]*--help)$' -e '^$' "$err" | head -n 3)
    if [ "$errors" -ne 1 ]; then
        echo "$errors lines 'igpt: error: ' on stderr, expected 1"
    elif [ -n "$others" ]; then
        echo "stderr has more than the error: $others"
    elif ! grep '^igpt: error: ' "$err" | grep -qF -- "$expect"; then
        echo "the error does not mention '$expect'"
    fi
}

# bad NAME EXPECT [OUTPUT...] -- ARG...: `igpt ARG...` must fail clearly,
# its error mentioning EXPECT, and leave each OUTPUT path as it was.
bad() {
    local name=$1 expect=$2
    shift 2
    local outputs=()
    while [ "$1" != -- ]; do
        outputs+=("$1")
        shift
    done
    shift
    [[ $name =~ $only ]] || return 0
    cases=$((cases + 1))
    rm -rf "$O"  # whatever an earlier case left there was reported then
    local before=() i
    for i in "${!outputs[@]}"; do before[i]=$(state_of "${outputs[i]}"); done
    local err=$tmp/stderr.txt
    (cd "$tmp/cwd" && timeout -k 5 "$case_timeout" "$igpt" "$@" >"$tmp/stdout.txt" 2>"$err" </dev/null)
    local status=$?
    local why
    why=$(unclear_because "$status" "$err" "$expect")
    if [ -z "$why" ] && compgen -G "$tmp/cwd/core*" >/dev/null; then
        why="left a core dump"
        rm -f "$tmp/cwd/"core*
    fi
    for i in "${!outputs[@]}"; do
        if [ -z "$why" ] && [ "$(state_of "${outputs[i]}")" != "${before[i]}" ]; then
            why="left output behind: ${outputs[i]} $([ "${before[i]}" = absent ] && echo exists || echo changed)"
        fi
    done
    if [ -z "$why" ]; then
        clear=$((clear + 1))
        if is_pending "$name"; then
            pending_passing+=("$name")
        fi
        return
    fi
    if is_pending "$name"; then
        pending=$((pending + 1))
        printf 'pending %-44s %s\n' "$name" "$why"
        return
    fi
    failed=$((failed + 1))
    printf 'FAIL  %-46s %s\n' "$name" "$why"
    printf '      igpt'
    printf ' %q' "$@"
    printf '\n'
    sed 's/^/      | /' "$err" | head -n 8
}

skip() {
    skipped=$((skipped + 1))
    printf 'skip  %-46s %s\n' "$1" "$2"
}

# --- Fixtures: a tiny image set, prepared at 16x16 and 32x32, and a checkpoint ----------------
mkdir -p "$tmp/cwd"
quiet() { "$@" >"$tmp/fixture.log" 2>&1 || { cat "$tmp/fixture.log"; echo "fixture failed: $*"; echo "0 passed, 1 failed"; exit 1; }; }
S=$tmp/synth
D16=$tmp/d16
D32=$tmp/d32
D16B=$tmp/d16-other-palette
RUN=$tmp/run16
quiet "$igpt" synth --out "$S" --train-per-class 4 --test-per-class 2 --size 16
for d in "16 $D16 1234" "32 $D32 1234" "16 $D16B 7"; do
    set -- $d
    quiet "$igpt" prepare --images "$S" --out "$2" --resolution "$1" --colors 16 --val 8 --seed "$3" --no-preview --quiet
done
TINY=(--device cpu --d-model 16 --n-layer 1 --n-head 2 --batch 4 --threads 1 --quiet --eval-images 8)
quiet "$igpt" train --data "$D16" --out "$RUN" --steps 1 "${TINY[@]}"
CKPT=$RUN/checkpoint-00000001.bin
PAL=$D16/palette.bin
TRAIN=$D16/train.bin

# Damaged copies of good files.
truncated() { head -c "$2" "$1" >"$3"; }
truncated "$CKPT" 100 "$tmp/ckpt-header-only.bin"
truncated "$CKPT" "$(($(stat -c %s "$CKPT") - 1))" "$tmp/ckpt-short.bin"
truncated "$TRAIN" 40 "$tmp/train-header-only.bin"
truncated "$TRAIN" "$(($(stat -c %s "$TRAIN") - 1))" "$tmp/train-short.bin"
truncated "$PAL" 20 "$tmp/palette-short.bin"
flip_byte() {  # copy of $1 with the byte at $2 inverted
    cp "$1" "$3"
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((255 - b)))" | dd of="$3" bs=1 seek="$2" conv=notrunc status=none
}
flip_byte "$CKPT" $(($(stat -c %s "$CKPT") / 2)) "$tmp/ckpt-flipped.bin"
flip_byte "$TRAIN" $(($(stat -c %s "$TRAIN") / 2)) "$tmp/train-flipped.bin"
: >"$tmp/empty.bin"
echo "not an igpt file" >"$tmp/text.bin"
mkfifo "$tmp/fifo.bin"
mkdir -p "$tmp/a-folder.bin" "$tmp/empty-folder"
# A checkpoint whose parameters are NaN, with its CRCs fixed (tests/nan_checkpoint.py).
python3 tests/nan_checkpoint.py "$CKPT" "$tmp/ckpt-nan.bin"
# Prepared data with a defect each, beside good copies of the rest.
data_with() {  # data_with NAME: a copy of D16 in $tmp/NAME
    cp -r "$D16" "$tmp/$1"
    echo "$tmp/$1"
}
DATA_NO_TRAIN=$(data_with data-no-train)
rm "$DATA_NO_TRAIN/train.bin"
DATA_SHORT_TRAIN=$(data_with data-short-train)
cp "$tmp/train-short.bin" "$DATA_SHORT_TRAIN/train.bin"
DATA_VAL_DIR=$(data_with data-val-dir)
rm "$DATA_VAL_DIR/val.bin"
mkdir "$DATA_VAL_DIR/val.bin"
DATA_TRAIN_DIR=$(data_with data-train-dir)
rm "$DATA_TRAIN_DIR/train.bin"
mkdir "$DATA_TRAIN_DIR/train.bin"
DATA_NO_TEST=$(data_with data-no-test)
rm "$DATA_NO_TEST/test.bin"
# Image folders with one bad image among good ones.
images_with() {  # images_with NAME FILE CONTENT-COMMAND...
    local dir=$tmp/$1
    mkdir -p "$dir/a" "$dir/b"
    cp "$S/train/disc/"*.png "$dir/a/"
    cp "$S/train/ring/"*.png "$dir/b/"
    echo "$dir"
}
IMG_EMPTY_PNG=$(images_with images-empty-png)
: >"$IMG_EMPTY_PNG/a/zero.png"
IMG_TEXT_PNG=$(images_with images-text-png)
echo "hello" >"$IMG_TEXT_PNG/b/text.png"
IMG_ZERO_PPM=$(images_with images-4x0-ppm)
printf 'P6\n4 0\n255\n' >"$IMG_ZERO_PPM/a/flat.ppm"
IMG_HUGE_PPM=$(images_with images-huge-ppm)
printf 'P6\n100000 2\n255\n' >"$IMG_HUGE_PPM/a/wide.ppm"
IMG_ONE_CLASS=$tmp/images-one-empty-class
mkdir -p "$IMG_ONE_CLASS/a" "$IMG_ONE_CLASS/b"
cp "$S/train/disc/"*.png "$IMG_ONE_CLASS/a/"
CIFAR_EMPTY=$tmp/cifar-empty
mkdir -p "$CIFAR_EMPTY"
CIFAR_SHORT=$tmp/cifar-short
mkdir -p "$CIFAR_SHORT"
for b in 1 2 3 4 5; do head -c 3073 /dev/zero >"$CIFAR_SHORT/data_batch_$b.bin"; done
head -c 100 /dev/zero >"$CIFAR_SHORT/test_batch.bin"
# Runs that are not runs.
RUN_NO_LOG=$tmp/run-no-log
mkdir -p "$RUN_NO_LOG"
RUN_BAD_LOG=$tmp/run-bad-log
mkdir -p "$RUN_BAD_LOG"
printf '{"step": 1, "loss": \n{{{\n' >"$RUN_BAD_LOG/log.jsonl"
RUN_NO_CKPT=$tmp/run-no-checkpoint
mkdir -p "$RUN_NO_CKPT"
cp "$RUN/run.json" "$RUN/log.jsonl" "$RUN_NO_CKPT/"
# Places nothing can be written, for root too: under a regular file.
UNDER_FILE=/etc/passwd/igpt-out
O=$tmp/out  # an output folder that must not appear
SYNTH_ONCE=$tmp/synth-existing
mkdir -p "$SYNTH_ONCE"
echo "keep me" >"$SYNTH_ONCE/notes.txt"

BIG=9223372036854775808  # 2^63
HUGE=99999999999999999999

# --- Top level --------------------------------------------------------------------------------
bad top-unknown-command "unknown command 'frobnicate'" -- frobnicate
bad top-unknown-option "unknown command '--frobnicate'" -- --frobnicate
bad top-empty-command "unknown command ''" -- ""

# --- synth ------------------------------------------------------------------------------------
bad synth-no-out "--out" -- synth
bad synth-out-missing-value "--out" -- synth --out
bad synth-unknown-option "--colors" "$O" -- synth --out "$O" --colors 4
bad synth-extra-operand "extra" "$O" -- synth --out "$O" extra
bad synth-size-small "--size" "$O" -- synth --out "$O" --size 7
bad synth-size-large "--size" "$O" -- synth --out "$O" --size 257
bad synth-size-2-63 "--size" "$O" -- synth --out "$O" --size "$BIG"
bad synth-size-20-digits "--size" "$O" -- synth --out "$O" --size "$HUGE"
bad synth-size-text "--size" "$O" -- synth --out "$O" --size abc
bad synth-size-empty "--size" "$O" -- synth --out "$O" --size ""
bad synth-size-suffix "--size" "$O" -- synth --out "$O" --size 16x
bad synth-size-real "--size" "$O" -- synth --out "$O" --size 16.0
bad synth-train-negative "--train-per-class" "$O" -- synth --out "$O" --train-per-class -1
bad synth-test-1e400 "--test-per-class" "$O" -- synth --out "$O" --test-per-class 1e400
bad synth-seed-negative "--seed" "$O" -- synth --out "$O" --seed -5
bad synth-out-exists "$SYNTH_ONCE" "$SYNTH_ONCE" -- synth --out "$SYNTH_ONCE" --train-per-class 1 --test-per-class 1
bad synth-force-foreign-folder "$SYNTH_ONCE" "$SYNTH_ONCE" -- synth --out "$SYNTH_ONCE" --force --train-per-class 1
bad synth-out-under-file "/etc/passwd" -- synth --out "$UNDER_FILE" --train-per-class 1 --test-per-class 1
bad synth-out-is-file "$tmp/text.bin" "$tmp/text.bin" -- synth --out "$tmp/text.bin" --train-per-class 1

# --- prepare ----------------------------------------------------------------------------------
bad prepare-no-source "--cifar10" "$O" -- prepare --out "$O"
bad prepare-two-sources "--images" "$O" -- prepare --images "$S" --cifar10 "$S" --out "$O"
bad prepare-no-out "--out" -- prepare --images "$S"
bad prepare-images-missing "$tmp/missing" "$O" -- prepare --images "$tmp/missing" --out "$O"
bad prepare-images-is-file "$tmp/text.bin" "$O" -- prepare --images "$tmp/text.bin" --out "$O"
bad prepare-images-empty "$tmp/empty-folder" "$O" -- prepare --images "$tmp/empty-folder" --out "$O"
bad prepare-images-empty-class "$IMG_ONE_CLASS/b" "$O" -- prepare --images "$IMG_ONE_CLASS" --out "$O"
bad prepare-image-empty-png "zero.png" "$O" -- prepare --images "$IMG_EMPTY_PNG" --out "$O" --colors 4
bad prepare-image-text-png "text.png" "$O" -- prepare --images "$IMG_TEXT_PNG" --out "$O" --colors 4
bad prepare-image-4x0-ppm "flat.ppm" "$O" -- prepare --images "$IMG_ZERO_PPM" --out "$O" --colors 4
bad prepare-image-100000-wide "wide.ppm" "$O" -- prepare --images "$IMG_HUGE_PPM" --out "$O" --colors 4
bad prepare-cifar-empty "$CIFAR_EMPTY" "$O" -- prepare --cifar10 "$CIFAR_EMPTY" --out "$O"
bad prepare-cifar-truncated "test_batch.bin" "$O" -- prepare --cifar10 "$CIFAR_SHORT" --out "$O"
bad prepare-resolution-zero "--resolution" "$O" -- prepare --images "$S" --out "$O" --resolution 0
bad prepare-resolution-negative "--resolution" "$O" -- prepare --images "$S" --out "$O" --resolution -32
bad prepare-resolution-2-63 "--resolution" "$O" -- prepare --images "$S" --out "$O" --resolution "$BIG"
bad prepare-colors-one "--colors" "$O" -- prepare --images "$S" --out "$O" --colors 1
bad prepare-colors-4097 "--colors" "$O" -- prepare --images "$S" --out "$O" --colors 4097
bad prepare-colors-nan "--colors" "$O" -- prepare --images "$S" --out "$O" --colors nan
bad prepare-val-negative "--val" "$O" -- prepare --images "$S" --out "$O" --val -1
bad prepare-val-all "validation split" "$O" -- prepare --images "$S" --out "$O" --colors 4 --val 40 --quiet
bad prepare-val-20-digits "--val" "$O" -- prepare --images "$S" --out "$O" --val "$HUGE"
bad prepare-threads-zero "--threads" "$O" -- prepare --images "$S" --out "$O" --threads 0
bad prepare-kmeans-iters-text "--kmeans-iters" "$O" -- prepare --images "$S" --out "$O" --kmeans-iters many
bad prepare-split-unknown "--split" "$O" -- prepare --images "$S" --out "$O" --split validation
bad prepare-palette-missing "$tmp/missing.bin" "$O" -- prepare --images "$S" --out "$O" --palette "$tmp/missing.bin"
bad prepare-palette-truncated "palette-short.bin" "$O" -- prepare --images "$S" --out "$O" --palette "$tmp/palette-short.bin"
bad prepare-palette-directory "a-folder.bin" "$O" -- prepare --images "$S" --out "$O" --palette "$tmp/a-folder.bin"
bad prepare-palette-checkpoint "checkpoint-00000001.bin" "$O" -- prepare --images "$S" --out "$O" --palette "$CKPT"
bad prepare-palette-fifo "fifo.bin" "$O" -- prepare --images "$S" --out "$O" --palette "$tmp/fifo.bin"
bad prepare-out-under-file "$UNDER_FILE" -- prepare --images "$S" --out "$UNDER_FILE" --colors 4
bad prepare-out-is-file "$tmp/text.bin" "$tmp/text.bin" -- prepare --images "$S" --out "$tmp/text.bin" --colors 4
bad prepare-out-exists "--force" "$D16" -- prepare --images "$S" --out "$D16" --resolution 16 --colors 16 --val 8

# --- train ------------------------------------------------------------------------------------
T=(--device cpu --d-model 16 --n-layer 1 --n-head 2 --batch 4 --threads 1 --quiet)
bad train-no-data "--data" "$O" -- train --out "$O" --steps 1
bad train-no-out "--out" -- train --data "$D16" --steps 1
bad train-no-length "--steps" "$O" -- train --data "$D16" --out "$O"
bad train-steps-and-epochs "--epochs" "$O" -- train --data "$D16" --out "$O" --steps 1 --epochs 1
bad train-steps-zero "--steps" "$O" -- train --data "$D16" --out "$O" --steps 0
bad train-steps-negative "--steps" "$O" -- train --data "$D16" --out "$O" --steps -3
bad train-steps-2-63 "--steps" "$O" -- train --data "$D16" --out "$O" --steps "$BIG"
bad train-steps-20-digits "--steps" "$O" -- train --data "$D16" --out "$O" --steps "$HUGE"
bad train-steps-1e400 "--steps" "$O" -- train --data "$D16" --out "$O" --steps 1e400
bad train-steps-empty "--steps" "$O" -- train --data "$D16" --out "$O" --steps ""
bad train-steps-missing-value "--steps" "$O" -- train --data "$D16" --out "$O" --steps
bad train-epochs-nan "--epochs" "$O" -- train --data "$D16" --out "$O" --epochs nan
bad train-epochs-inf "--epochs" "$O" -- train --data "$D16" --out "$O" --epochs inf
bad train-epochs-negative "--epochs" "$O" -- train --data "$D16" --out "$O" --epochs -1
bad train-lr-nan "--lr" "$O" -- train --data "$D16" --out "$O" --steps 1 --lr nan
bad train-lr-inf "--lr" "$O" -- train --data "$D16" --out "$O" --steps 1 --lr inf
bad train-lr-1e400 "--lr" "$O" -- train --data "$D16" --out "$O" --steps 1 --lr 1e400
bad train-lr-negative "--lr" "$O" -- train --data "$D16" --out "$O" --steps 1 --lr -0.1
bad train-lr-text "--lr" "$O" -- train --data "$D16" --out "$O" --steps 1 --lr fast
bad train-beta2-one "--beta2" "$O" -- train --data "$D16" --out "$O" --steps 1 --beta2 1.5
bad train-min-lr-frac "--min-lr-frac" "$O" -- train --data "$D16" --out "$O" --steps 1 --min-lr-frac 2
bad train-grad-clip-negative "--grad-clip" "$O" -- train --data "$D16" --out "$O" --steps 1 --grad-clip -1
bad train-batch-zero "--batch" "$O" -- train --data "$D16" --out "$O" --steps 1 --batch 0
bad train-micro-batch-not-divisor "--micro-batch" "$O" -- train --data "$D16" --out "$O" --steps 1 --batch 4 --micro-batch 3
bad train-d-model-heads "n_head" "$O" -- train --data "$D16" --out "$O" --steps 1 --d-model 30 --n-head 4
bad train-n-head-zero "--n-head" "$O" -- train --data "$D16" --out "$O" --steps 1 --n-head 0
bad train-d-model-2-63 "--d-model" "$O" -- train --data "$D16" --out "$O" --steps 1 --d-model "$BIG"
bad train-config-unknown "--config" "$O" -- train --data "$D16" --out "$O" --steps 1 --config xxl
bad train-norm-unknown "--norm" "$O" -- train --data "$D16" --out "$O" --steps 1 --norm batchnorm
bad train-device-unknown "--device" "$O" -- train --data "$D16" --out "$O" --steps 1 --device tpu
bad train-precision-unknown "--precision" "$O" -- train --data "$D16" --out "$O" --steps 1 --precision fp8
bad train-attention-unknown "--attention" "$O" -- train --data "$D16" --out "$O" --steps 1 --attention sparse
bad train-threads-negative "--threads" "$O" -- train --data "$D16" --out "$O" --steps 1 --threads -2
bad train-unknown-option "--learning-rate" "$O" -- train --data "$D16" --out "$O" --steps 1 --learning-rate 1
bad train-data-missing "$tmp/missing" "$O" -- train --data "$tmp/missing" --out "$O" --steps 1 "${T[@]}"
bad train-data-is-file "$TRAIN" "$O" -- train --data "$TRAIN" --out "$O" --steps 1 "${T[@]}"
bad train-data-no-train-bin "train.bin" "$O" -- train --data "$DATA_NO_TRAIN" --out "$O" --steps 1 "${T[@]}"
bad train-data-train-bin-directory "train.bin" "$O" -- train --data "$DATA_TRAIN_DIR" --out "$O" --steps 1 "${T[@]}"
bad train-data-truncated "train.bin" "$O" -- train --data "$DATA_SHORT_TRAIN" --out "$O" --steps 1 "${T[@]}"
bad train-val-bin-directory "val.bin" "$O" -- train --data "$DATA_VAL_DIR" --out "$O" --steps 1 "${T[@]}"
bad train-out-under-file "$UNDER_FILE" -- train --data "$D16" --out "$UNDER_FILE" --steps 1 "${T[@]}"
bad train-out-is-file "$tmp/text.bin" "$tmp/text.bin" -- train --data "$D16" --out "$tmp/text.bin" --steps 1 "${T[@]}"
bad train-out-existing-run "--resume" "$RUN" -- train --data "$D16" --out "$RUN" --steps 1 "${T[@]}"
bad train-resume-nothing "$RUN_NO_CKPT" "$RUN_NO_CKPT" -- train --data "$D16" --out "$RUN_NO_CKPT" --steps 2 --resume "${T[@]}"
bad train-resume-missing-run "$tmp/missing-run" "$tmp/missing-run" -- train --data "$D16" --out "$tmp/missing-run" --steps 2 --resume "${T[@]}"
bad train-resume-32x32-data "32" "$RUN" -- train --data "$D32" --out "$RUN" --steps 2 --resume "${T[@]}"
bad train-resume-other-palette "palette" "$RUN" -- train --data "$D16B" --out "$RUN" --steps 2 --resume "${T[@]}"
bad train-cuda-without-gpu-leaves-no-folder "GPU" "$O" -- train --data "$D16" --out "$O" --steps 1 --device cuda --quiet

# --- probe ------------------------------------------------------------------------------------
P=(--device cpu --threads 1 --quiet --max-iters 5)
bad probe-no-model "--checkpoint" "$O" -- probe --data "$D16" --out "$O"
bad probe-two-models "--run" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --run "$RUN" --out "$O"
bad probe-no-data "--data" "$O" -- probe --checkpoint "$CKPT" --out "$O"
bad probe-baseline-unknown "--baseline" "$O" -- probe --data "$D16" --baseline colors --out "$O"
bad probe-eval-unknown "--eval" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --eval train --out "$O"
bad probe-l2-empty "--l2" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --l2 "" --out "$O"
bad probe-l2-text "--l2" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --l2 "1,abc" --out "$O"
bad probe-l2-negative "--l2" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --l2 "-1" --out "$O"
bad probe-l2-nan "--l2" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --l2 "0.1,nan" --out "$O"
bad probe-l2-too-many "--l2" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --out "$O" \
    --l2 "$(seq -s, 1 1000)"
bad probe-max-iters-zero "--max-iters" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --max-iters 0 --out "$O"
bad probe-batch-2-63 "--batch" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --batch "$BIG" --out "$O"
bad probe-train-images-negative "--train-images" "$O" -- probe --data "$D16" --checkpoint "$CKPT" --train-images -1 --out "$O"
bad probe-checkpoint-missing-leaves-no-folder "$tmp/missing.bin" "$O" -- probe --data "$D16" --checkpoint "$tmp/missing.bin" "${P[@]}" --out "$O"
bad probe-missing-checkpoint-leaves-no-folder "$tmp/missing.bin" "$tmp/probe" -- probe --data "$D16" --checkpoint "$tmp/missing.bin" "${P[@]}"
bad probe-checkpoint-truncated "ckpt-short.bin" "$O" -- probe --data "$D16" --checkpoint "$tmp/ckpt-short.bin" "${P[@]}" --out "$O"
bad probe-checkpoint-flipped "ckpt-flipped.bin" "$O" -- probe --data "$D16" --checkpoint "$tmp/ckpt-flipped.bin" "${P[@]}" --out "$O"
bad probe-checkpoint-directory "a-folder.bin" "$O" -- probe --data "$D16" --checkpoint "$tmp/a-folder.bin" "${P[@]}" --out "$O"
bad probe-checkpoint-is-split "train.bin" "$O" -- probe --data "$D16" --checkpoint "$TRAIN" "${P[@]}" --out "$O"
bad probe-checkpoint-32x32-data "32" "$O" -- probe --data "$D32" --checkpoint "$CKPT" "${P[@]}" --out "$O"
bad probe-checkpoint-other-palette "palette" "$O" -- probe --data "$D16B" --checkpoint "$CKPT" "${P[@]}" --out "$O"
bad probe-nan-checkpoint "ckpt-nan.bin" "$O" -- probe --data "$D16" --checkpoint "$tmp/ckpt-nan.bin" "${P[@]}" --out "$O"
bad probe-run-not-a-run "$RUN_NO_LOG" "$O" -- probe --data "$D16" --run "$RUN_NO_LOG" "${P[@]}" --out "$O"
bad probe-eval-test-missing "test.bin" "$O" -- probe --data "$DATA_NO_TEST" --baseline pixels --eval test "${P[@]}" --out "$O"
bad probe-data-truncated "train.bin" "$O" -- probe --data "$DATA_SHORT_TRAIN" --baseline pixels "${P[@]}" --out "$O"
bad probe-out-under-file "$UNDER_FILE" -- probe --data "$D16" --baseline pixels "${P[@]}" --out "$UNDER_FILE"

# --- plot -------------------------------------------------------------------------------------
bad plot-no-run "RUN_DIR" "$O" -- plot --out "$O"
bad plot-run-missing "$tmp/missing-run" "$O" -- plot "$tmp/missing-run" --out "$O"
bad plot-run-is-file "$tmp/text.bin" "$O" -- plot "$tmp/text.bin" --out "$O"
bad plot-run-no-log "$RUN_NO_LOG" "$O" -- plot "$RUN_NO_LOG" --out "$O"
bad plot-run-bad-log "log.jsonl" "$O" -- plot "$RUN_BAD_LOG" --out "$O"
bad plot-out-under-file "$UNDER_FILE" -- plot "$RUN" --out "$UNDER_FILE"
bad plot-describe-under-file "$UNDER_FILE" "$O" -- plot "$RUN" --out "$O" --describe "$UNDER_FILE/d.json"
bad plot-unknown-option "--format" "$O" -- plot "$RUN" --out "$O" --format pdf

# --- bench ------------------------------------------------------------------------------------
bad bench-mode-unknown "--mode" -- bench --mode everything
bad bench-steps-zero "--steps" -- bench --steps 0
bad bench-side-zero "--side" -- bench --side 0
bad bench-colors-one "--colors" -- bench --colors 1
bad bench-batch-text "--batch" -- bench --batch eight
bad bench-config-unknown "--config" -- bench --config huge
bad bench-dim-negative "--dim" -- bench --mode probe --dim -4
bad bench-attention-on-cpu "GPU" -- bench --mode attention --device cpu --quiet

# --- show -------------------------------------------------------------------------------------
bad show-no-file "FILE" -- show
bad show-missing "$tmp/missing.bin" "$tmp/missing.png" -- show "$tmp/missing.bin"
bad show-directory "a-folder.bin" "$tmp/a-folder.png" -- show "$tmp/a-folder.bin"
bad show-dev-null "/dev/null" "$tmp/null.png" -- show /dev/null --out "$tmp/null.png"
bad show-fifo "fifo.bin" "$tmp/fifo.png" -- show "$tmp/fifo.bin"
bad show-empty "empty.bin" "$tmp/empty.png" -- show "$tmp/empty.bin"
bad show-text "text.bin" "$tmp/text.png" -- show "$tmp/text.bin"
bad show-truncated-split "train-short.bin" "$tmp/train-short.png" -- show "$tmp/train-short.bin"
bad show-checkpoint "checkpoint-00000001.bin" "$RUN/checkpoint-00000001.png" -- show "$CKPT"
bad show-out-under-file "$UNDER_FILE" -- show "$TRAIN" --out "$UNDER_FILE.png"
bad show-out-directory "$tmp/a-folder.bin" "$tmp/a-folder.bin" -- show "$TRAIN" --out "$tmp/a-folder.bin"
bad show-per-class-zero "--per-class" "$D16/train.png" -- show "$TRAIN" --per-class 0
bad show-scale-negative "--scale" "$D16/train.png" -- show "$TRAIN" --scale -3
bad show-scale-2-63 "--scale" "$D16/train.png" -- show "$TRAIN" --scale "$BIG"
bad show-rows-text "--rows" "$D16/train.png" -- show "$TRAIN" --rows all

# --- info -------------------------------------------------------------------------------------
bad info-no-file "FILE" -- info
bad info-missing "$tmp/missing.bin" -- info "$tmp/missing.bin"
bad info-directory "a-folder.bin" -- info "$tmp/a-folder.bin"
bad info-dev-null "/dev/null" -- info /dev/null
bad info-fifo "fifo.bin" -- info "$tmp/fifo.bin"
bad info-empty "empty.bin" -- info "$tmp/empty.bin"
bad info-text "text.bin" -- info "$tmp/text.bin"
bad info-checkpoint-header-only "ckpt-header-only.bin" -- info "$tmp/ckpt-header-only.bin"
bad info-checkpoint-short "ckpt-short.bin" -- info "$tmp/ckpt-short.bin"
bad info-checkpoint-flipped "ckpt-flipped.bin" -- info "$tmp/ckpt-flipped.bin"
bad info-split-header-only "train-header-only.bin" -- info "$tmp/train-header-only.bin"
bad info-split-flipped "train-flipped.bin" -- info "$tmp/train-flipped.bin"
bad info-palette-short "palette-short.bin" -- info "$tmp/palette-short.bin"
bad info-second-file-bad "ckpt-short.bin" -- info "$TRAIN" "$tmp/ckpt-short.bin"
bad info-nan-checkpoint "ckpt-nan.bin" -- info "$tmp/ckpt-nan.bin"

# A read-only folder stops writes only for users other than root.
READ_ONLY=$tmp/read-only
mkdir -p "$READ_ONLY"
chmod a-w "$READ_ONLY"
if [ "$(id -u)" -eq 0 ]; then
    skip synth-out-read-only "root writes into read-only folders"
    skip train-out-read-only "root writes into read-only folders"
    skip show-out-read-only "root writes into read-only folders"
else
    bad synth-out-read-only "$READ_ONLY" "$READ_ONLY" -- synth --out "$READ_ONLY/s" --train-per-class 1
    bad train-out-read-only "$READ_ONLY" "$READ_ONLY" -- train --data "$D16" --out "$READ_ONLY/r" --steps 1 "${T[@]}"
    bad show-out-read-only "$READ_ONLY" "$READ_ONLY" -- show "$TRAIN" --out "$READ_ONLY/t.png"
fi

# --- Summary ----------------------------------------------------------------------------------
counted=$((cases - pending))
printf '\n%-28s %6s\n' "bad inputs" "cases"
printf '%-28s %6d\n' "cases" "$cases" "clear errors" "$clear" "pending (not counted)" "$pending" \
    "not clear (failures)" "$failed" "skipped (as root)" "$skipped"
echo "bad inputs: $cases cases, $clear clear errors, $pending pending"
for name in "${pending_passing[@]}"; do
    echo "note  $name passes now: remove it from PENDING in tests/bad_inputs.sh"
done
echo "$((counted - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
