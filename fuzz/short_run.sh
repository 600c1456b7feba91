#!/usr/bin/env bash
# make test's fuzz suite: for every harness of `make fuzz`, replays each input
# in fuzz/regressions/<reader>/ (every input that ever crashed a reader), then
# fuzzes for a few seconds from fresh seeds (fuzz/make_seeds.sh). One line per
# harness; the last line is "N passed, N failed". Skipped where the harnesses
# could not be built (no clang with libFuzzer).
#   fuzz/short_run.sh [SECONDS]     (default 2 per harness)
set -u
cd "$(dirname "$0")/.."
seconds=${1:-2}
harnesses=$(cd build/fuzz 2>/dev/null && ls fuzz_* 2>/dev/null | sed 's/^fuzz_//')
if [ -z "$harnesses" ]; then
    echo "skip: no fuzz harnesses in build/fuzz (make fuzz needs clang with libFuzzer)"
    echo "0 passed, 0 failed"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! bash fuzz/make_seeds.sh "$work/seeds" >"$work/seeds.log" 2>&1; then
    cat "$work/seeds.log"
    echo "0 passed, 1 failed"
    exit 1
fi
passed=0
failed=0
for h in $harnesses; do
    reader=${h%_crc}
    mkdir -p "$work/corpus-$h" "$work/findings-$h"
    inputs=(fuzz/regressions/"$reader"/*)
    [ -e "${inputs[0]}" ] || inputs=()
    problem=""
    # Each regression input once (a crash there is a reader that regressed) ...
    if [ ${#inputs[@]} -gt 0 ] &&
        ! build/fuzz/fuzz_"$h" -close_fd_mask=1 "${inputs[@]}" >"$work/replay.log" 2>&1; then
        problem="a regression input crashes it again"
        grep -m 3 -E 'ERROR|runtime error|SUMMARY|Running' "$work/replay.log" | tail -n 3 | sed 's/^/    /'
    fi
    # ... then a short run from the seeds.
    if ! build/fuzz/fuzz_"$h" -max_total_time="$seconds" -close_fd_mask=3 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$work/findings-$h/" "$work/corpus-$h" \
        "$work/seeds/$reader" >"$work/run.log" 2>&1; then
        problem="${problem:+$problem; }a finding in ${seconds} s"
        grep -m 3 -E 'ERROR|runtime error|SUMMARY' "$work/run.log" | sed 's/^/    /'
        mkdir -p build/fuzz/findings/"$h"
        cp "$work/findings-$h"/* build/fuzz/findings/"$h"/ 2>/dev/null
        echo "    kept in build/fuzz/findings/$h/ (fix the reader, then add it to fuzz/regressions/$reader/)"
    fi
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$work/run.log")
    if [ -z "$problem" ]; then
        passed=$((passed + 1))
        echo "ok   $h: ${#inputs[@]} regression inputs, ${execs:-0} executions in ${seconds} s"
    else
        failed=$((failed + 1))
        echo "FAIL $h: $problem"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
