#!/usr/bin/env bash
# The long fuzzing campaign (docs/fuzzing.md): runs every harness of
# `make fuzz` in turn, each for --minutes or --runs, on a corpus kept in
# build/fuzz/corpus/<harness>/ (seeded from build/fuzz/seeds/ and
# fuzz/regressions/, growing from run to run), and prints per harness the
# executions, executions per second and findings. A finding (crash, leak,
# timeout, out-of-memory) is written to build/fuzz/findings/<harness>/; fix the
# reader, then copy the input into fuzz/regressions/<reader>/, where make test
# replays it.
#   make fuzz && scripts/fuzz.sh --minutes 30
#   scripts/fuzz.sh --runs 1000000 --only checkpoint_crc --jobs 2
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=""
runs=""
jobs=1
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "scripts/fuzz.sh: unknown option $1 (--minutes M | --runs N, --jobs J, --only HARNESS)" >&2; exit 2 ;;
    esac
done
if [ -z "$minutes" ] && [ -z "$runs" ]; then minutes=5; fi
harnesses=$(cd build/fuzz 2>/dev/null && ls fuzz_* 2>/dev/null | sed 's/^fuzz_//' || true)
if [ -z "$harnesses" ]; then echo "scripts/fuzz.sh: no harnesses in build/fuzz; run make fuzz first" >&2; exit 1; fi
[ -d build/fuzz/seeds ] || bash fuzz/make_seeds.sh
printf '%-16s %12s %8s %10s %s\n' harness executions seconds exec/s findings
status=0
for h in $harnesses; do
    [ -n "$only" ] && [ "$h" != "$only" ] && continue
    reader=${h%_crc}
    corpus=$PWD/build/fuzz/corpus/$h
    findings=$PWD/build/fuzz/findings/$h
    mkdir -p "$corpus" "$findings"
    log=$(mktemp)
    limit=()
    [ -n "$minutes" ] && limit+=(-max_total_time=$((minutes * 60)))
    # -runs counts one process's executions: split it over the jobs.
    [ -n "$runs" ] && limit+=(-runs=$(((runs + jobs - 1) / jobs)))
    dirs=("$corpus" "$PWD/build/fuzz/seeds/$reader")
    [ -d "fuzz/regressions/$reader" ] && dirs+=("$PWD/fuzz/regressions/$reader")
    start=$(date +%s.%N)
    # -close_fd_mask=3: the readers' "igpt: error:" lines are not libFuzzer's business.
    # -rss_limit_mb/-malloc_limit_mb: a reader that allocates before checking sizes is a finding.
    flags=(-close_fd_mask=3 -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1
           -artifact_prefix="$findings/" "${limit[@]}")
    [ "$jobs" -gt 1 ] && flags+=(-jobs="$jobs" -workers="$jobs")
    # With -jobs, each worker logs to fuzz-N.log in the current folder (and the parent repeats it).
    (cd "$findings" && "$OLDPWD/build/fuzz/fuzz_$h" "${flags[@]}" "${dirs[@]}") >"$log" 2>&1 || true
    rm -f "$findings"/fuzz-*.log
    seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
    execs=$(grep -h 'stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
    found=$(find "$findings" -type f | wc -l)
    printf '%-16s %12d %8.0f %10.0f %d\n' "$h" "$execs" "$seconds" "$(awk -v e="$execs" -v s="$seconds" 'BEGIN {print e / s}')" "$found"
    if [ "$found" -gt 0 ]; then
        status=1
        grep -h -m 3 -E 'ERROR|runtime error|SUMMARY' "$log" | sed 's/^/    /' || true
        find "$findings" -type f | sed 's/^/    finding: /'
    fi
    rm -f "$log"
done
exit $status
