#!/usr/bin/env bash
# The crash test (issue 13): kill -9 a small CPU training at random instants,
# many of them in the middle of a checkpoint write, resume it after each
# kill, and check that nothing was lost or taken for what it is not:
#   - after every kill, every checkpoint-*.bin in the run passes ./igpt info,
#     and --resume starts from the newest of them (never from a temporary);
#   - a start removes the temporaries a kill left, names them, and nothing else;
#   - after the final resume no temporary file is left (0 bytes), and the
#     final checkpoint and log.jsonl are byte for byte those of the same run
#     never interrupted (the log without its timings: tokens_per_s, time).
# A kill is "mid-write" when it left a checkpoint-N.bin.tmp.XXXXXX behind;
# two kills in five are aimed at a write, the others at random instants.
# Checkpoints are written every 2 steps, fsync'ed, and rotated (--keep-last 3).
#
# usage: scripts/crash_test.sh [--count N] [--seed S] [--keep]
#   --count N   kills (default 5); make test runs 3
#   --seed S    the kill instants (default: random; printed)
#   --keep      keep the work folder (printed) instead of removing it
# Prints one summary line and exits 0 when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
count=5
seed=$((RANDOM * 32768 + RANDOM))
keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --count) count=$2 && shift 2 ;;
    --seed) seed=$2 && shift 2 ;;
    --keep) keep=1 && shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) echo "crash_test: unknown option $1 (see --help)" >&2 && exit 2 ;;
    esac
done
[[ $count =~ ^[0-9]+$ ]] && [ "$count" -ge 1 ] || { echo "crash_test: --count must be a number >= 1" >&2 && exit 2; }
[ -x ./igpt ] || { echo "crash_test: build ./igpt first (make)" >&2 && exit 2; }
RANDOM=$seed
work=$(mktemp -d "${TMPDIR:-/tmp}/igpt-crash.XXXXXX")
if [ $keep = 1 ]; then echo "crash_test: work folder $work"; else trap 'rm -rf "$work"' EXIT; fi
fail() {
    echo "crash_test: FAILED: $*" >&2
    exit 1
}

# A small prepared set and a run long enough for every kill: each attempt is killed a few steps in, or up
# to 0.3 s after it starts, which on an idle machine is ~60 steps of this model (the whole 56-step run of
# count 3 took 0.28 s once threads spun between regions, and 2 crash tests in 6 saw it end before a kill):
# 80 steps per kill, and as many again to go after the last.
./igpt synth --out "$work/images" --size 8 --train-per-class 4 --test-per-class 1 >/dev/null
./igpt prepare --images "$work/images" --out "$work/data" --resolution 8 --colors 16 --val 8 --no-preview --quiet >/dev/null
steps=$((count * 80 + 80))
settings=(--device cpu --data "$work/data" --steps "$steps" --d-model 64 --n-layer 2 --n-head 2 --batch 2
    --checkpoint-every 2 --keep-last 3 --eval-every 10 --eval-images 8 --quiet)

# The same run, never interrupted, alongside.
./igpt train "${settings[@]}" --out "$work/straight" >"$work/straight.out" 2>&1 &
straight_pid=$!

run=$work/run
# --resume starts from the newest whole checkpoint there was, never from a temporary.
check_resumed_from_newest() {
    local resumed
    resumed=$(sed -nE 's/^train: resuming from (.*) \(step [0-9]+\)$/\1/p' "$work/attempt.out")
    [ -z "$resumed" ] || [ "$resumed" = "$newest" ] || fail "resumed from $resumed; the newest checkpoint was $newest"
}
# The files the last start named in its "igpt: removed N leftover temporary files ...: a, b" line.
names_removed() {
    sed -nE 's/^igpt: removed [0-9]+ leftover temporary files? of an interrupted write \([^)]*\): (.*)$/\1/p' \
        "$work/attempt.err" | sed 's/, \.\.\.$//' | tr ',' '\n' | sed 's/^ *//' | grep . >>"$work/named.txt" || true
}
logged_steps() {
    local n
    n=$(grep -c '"loss"' "$run/log.jsonl" 2>/dev/null || true)
    echo "${n:-0}"
}
kills=0 mid_write=0 checked=0 attempts=0
: >"$work/seen.txt"
: >"$work/named.txt"
while true; do
    attempts=$((attempts + 1))
    if ls "$run"/checkpoint-*.bin >/dev/null 2>&1; then args=(--out "$run" --resume); else args=(--out "$run"); fi
    newest=$(ls "$run"/checkpoint-*.bin 2>/dev/null | sort | tail -n 1 || true)
    ./igpt train "${settings[@]}" "${args[@]}" >"$work/attempt.out" 2>"$work/attempt.err" &
    pid=$!
    if [ $kills -lt "$count" ]; then
        # One kill in five lands while the program starts (reading the checkpoint, cleaning up, rewriting the
        # log); two in five 1-5 steps into the training, at a random instant of the next step; two in five at a
        # checkpoint write: the moment its temporary file appears (a builtin glob in a tight loop, no sleep).
        kind=$((RANDOM % 5))
        if [ $kind -eq 0 ]; then
            sleep "0.$(printf %03d $((RANDOM % 300)))"
        else
            # Wait for the target step, timing the steps on the way (a step's time includes its checkpoint's).
            done_steps=$(logged_steps) step_us=100000 then=${EPOCHREALTIME/./}
            target=$((done_steps + 1 + RANDOM % 5))
            while kill -0 $pid 2>/dev/null && [ "$done_steps" -lt $target ]; do
                sleep 0.005
                now_steps=$(logged_steps) now=${EPOCHREALTIME/./}
                if [ "$now_steps" -gt "$done_steps" ]; then
                    step_us=$(((now - then) / (now_steps - done_steps))) done_steps=$now_steps then=$now
                fi
            done
            if [ $kind -le 2 ]; then
                wait_ms=$((RANDOM % (step_us / 1000 + 1)))
                sleep "$((wait_ms / 1000)).$(printf %03d $((wait_ms % 1000)))"
            else
                deadline=$((SECONDS + 10))
                while ! compgen -G "$run/checkpoint-*.bin.tmp.*" >/dev/null && [ $SECONDS -lt $deadline ]; do :; done
            fi
        fi
        if kill -9 $pid 2>/dev/null; then
            wait $pid 2>/dev/null || true
            kills=$((kills + 1))
        else
            wait $pid || fail "attempt $attempts ended with an error: $(cat "$work/attempt.err")"
            break
        fi
    else
        wait $pid || fail "the final resume failed: $(cat "$work/attempt.err")"
        break
    fi
    check_resumed_from_newest
    names_removed
    # After a kill: what it left, and every checkpoint is whole.
    # (A kill at the next start, before its clean-up, finds the same temporaries: only new ones count.)
    new_write=0
    for temp in $(find "$run" -maxdepth 1 -name '*.tmp.*' -printf '%f\n' 2>/dev/null); do
        grep -qxF "$temp" "$work/seen.txt" && continue
        echo "$temp" >>"$work/seen.txt"
        case $temp in checkpoint-*) new_write=1 ;; esac
    done
    mid_write=$((mid_write + new_write))
    for checkpoint in "$run"/checkpoint-*.bin; do
        [ -e "$checkpoint" ] || continue
        ./igpt info "$checkpoint" >/dev/null 2>"$work/info.err" || fail "after kill $kills: $(cat "$work/info.err")"
        checked=$((checked + 1))
    done
done
[ $kills -eq "$count" ] || fail "the run finished after $kills of $count kills"
check_resumed_from_newest
names_removed
wait $straight_pid || fail "the uninterrupted run failed: $(cat "$work/straight.out")"

# The end: no temporary left, and the same bytes as the uninterrupted run.
temp_bytes=$(find "$run" -name '*.tmp.*' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
[ "$temp_bytes" -eq 0 ] && ! find "$run" -name '*.tmp.*' | grep -q . || fail "temporary files left: $(ls "$run")"
final=$(printf "checkpoint-%08d.bin" "$steps")
cmp -s "$work/straight/$final" "$run/$final" || fail "$final differs from the uninterrupted run's"
without_timings() { sed -E 's/"tokens_per_s": [0-9.eE+-]+, //; s/, "time": "[^"]*"//' "$1"; }
diff <(without_timings "$work/straight/log.jsonl") <(without_timings "$run/log.jsonl") >"$work/log.diff" ||
    fail "log.jsonl differs from the uninterrupted run's: $(head -n 8 "$work/log.diff")"
# What a start removed was a temporary a kill had left, nothing else. (Each is named by the start that removes
# it, unless that start is killed itself between the removal and the line.)
sort -u "$work/seen.txt" -o "$work/seen.txt"
sort -u "$work/named.txt" -o "$work/named.txt"
not_left=$(comm -13 "$work/seen.txt" "$work/named.txt")
[ -z "$not_left" ] || fail "a start removed files no kill had left: $not_left"
temps_seen=$(wc -l <"$work/seen.txt") temps_named=$(wc -l <"$work/named.txt")
echo "crash_test: $kills kills ($mid_write mid-write), $attempts starts; $temps_seen temporary files left by the kills," \
    "$temps_named of them named by the start that removed them, 0 bytes left; $checked checkpoints checked with" \
    "./igpt info; $final and log.jsonl identical to the uninterrupted run (seed $seed)"
