#!/usr/bin/env bash
# make bench-cpu (docs/cpu-performance.md: what it measures, its tables): forward+backward tokens/s
# and GFLOP/s of the CPU reference next to the same
# model in PyTorch on the CPU, same thread count, measured in this run, after the CPU's measured
# fp32 (and bf16) peak (./igpt bench --mode peak).
# PyTorch is the 2.11 that scripts/setup.sh --bench puts in .tools/torch (bench/torch_python.sh),
# else Debian's python3-torch; TORCH_PYTHON=/usr/bin/python3 picks Debian's.
# Each figure is the best of REPEATS runs (default 3), igpt's and PyTorch's taken in turn, so that
# a burst of load on a shared machine spoils neither side alone; the peak is measured in every run
# too, and "% peak" is against the highest measurement. "by run" is the median of the runs' own
# igpt / PyTorch ratios (below, median_ratio).
# GFLOP/s of both count the same FLOPs: ./igpt bench's train_flops_per_token (bench/step_costs.c:
# the matrix products and causal attention, half the T x T scores, forward + backward).
# Where the CPU runs bf16 products (AVX512-BF16: --precision bf16), the last columns give
# igpt's tokens/s with them and their ratio to igpt's fp32, taken in the same turns, and that ratio
# measured in one process, the two models taking turns (./igpt bench --mode precisions).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
repeats=${REPEATS:-3}
if [ -n "${TORCH_PYTHON:-}" ]; then
    torch_python=$TORCH_PYTHON
elif bench/torch_python.sh -c "import torch" 2>/dev/null; then
    torch_python=bench/torch_python.sh
else
    torch_python=/usr/bin/python3
    echo "bench-cpu: no PyTorch 2.11 in .tools/torch (scripts/setup.sh --bench installs it): comparing with Debian's"
fi
torch_version=$("$torch_python" -c "import torch; print(torch.__version__)" 2>/dev/null || true)
[ -n "$torch_version" ] || echo "bench-cpu: PyTorch not found for $torch_python; run scripts/setup.sh --bench (igpt figures only)"
# What the CPU is, beyond a VM's model name ("AMD EPYC" says nothing of the generation): its vendor, family,
# model and caches, and for AMD the core it names. Tables of different machines are not comparable: a Zen 4
# runs AVX-512 on 256-bit units (half a Zen 5's FMAs per cycle), and the shares of the peak move with that.
cpu_identity() {
    local info vendor family model stepping core="" caches="" index level type size
    info=$(grep -m1 -B30 '^flags' /proc/cpuinfo || true)
    vendor=$(awk -F': ' '/^vendor_id/ {print $2; exit}' <<<"$info")
    family=$(awk -F': ' '/^cpu family/ {print $2; exit}' <<<"$info")
    model=$(awk -F': ' '/^model[[:space:]]*:/ {print $2; exit}' <<<"$info")
    stepping=$(awk -F': ' '/^stepping/ {print $2; exit}' <<<"$info")
    if [ "$vendor" = AuthenticAMD ]; then
        case "$family" in
        25) grep -qw avx512f <<<"$info" && core=", Zen 4: AVX-512 on 256-bit units" || core=", Zen 3" ;;
        26) core=", Zen 5" ;;
        esac
    fi
    for index in /sys/devices/system/cpu/cpu0/cache/index*; do
        [ -r "$index/size" ] || continue
        level=$(cat "$index/level")
        type=$(cat "$index/type")
        size=$(cat "$index/size")
        [ "$type" = Instruction ] && continue
        [ "$type" = Data ] && level+=d
        caches+="${caches:+, }L$level $size"
    done
    echo "${vendor:-?} family ${family:-?} model ${model:-?} stepping ${stepping:-?}$core; ${caches:-caches unknown} (cpu0's)"
}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
echo "bench-cpu: $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); forward + backward, 512 colors, 5 timed steps after 2 warm-up steps, best of $repeats runs each (and igpt / PyTorch run by run)"
echo "bench-cpu: CPU $(cpu_identity)"
# The fp32 peak is measured again before every run of every row, and "% peak" is against the highest
# measurement: on a shared machine a burst of load can halve one (a share of 130% has been seen).
peak=$(./igpt bench --mode peak --threads "$threads")
peak_fp32=$(field fp32_gflops_per_s <<<"$peak")
peak_low=$peak_fp32
peaks=1
echo "bench-cpu: measured peak ($threads threads): fp32 $peak_fp32 GFLOP/s ($(field fp32_isa <<<"$peak") FMAs)," \
    "bf16 $(field bf16_gflops_per_s <<<"$peak") GFLOP/s ($(field bf16_isa <<<"$peak")); measured again in every run"
measure_peak() {
    local fp32
    fp32=$(./igpt bench --mode peak --threads "$threads" | field fp32_gflops_per_s)
    peak_fp32=$(awk "BEGIN{print ($fp32 > $peak_fp32 ? $fp32 : $peak_fp32)}")
    peak_low=$(awk "BEGIN{print ($fp32 < $peak_low ? $fp32 : $peak_low)}")
    peaks=$((peaks + 1))
}
echo "bench-cpu: GFLOP/s count the matrix products and causal attention (half the scores), forward + backward;" \
    "PyTorch ${torch_version:-absent} ($torch_python)"
blas_core=$(./igpt bench --quiet --config tiny --side 4 --batch 1 --steps 1 --warmup-steps 0 --threads "$threads" |
    field blas_core)
echo "bench-cpu: OpenBLAS runs its $blas_core kernels${OPENBLAS_CORETYPE:+ (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE is set, and igpt keeps what you set)}"
bf16=yes
why=$(./igpt bench --quiet --precision bf16 --config tiny --side 4 --batch 1 --steps 1 --warmup-steps 0 \
    --threads "$threads" 2>&1 >/dev/null) || {
    echo "bench-cpu: no bf16 products here: $(tail -1 <<<"$why")"
    bf16=
}
# "by run": the median over the runs of igpt / PyTorch, each run's igpt figure against the PyTorch
# run taken right after it. The best of each side ("ratio") favours the side whose speed moves more
# from run to run (its luckiest run stands against the other's); a pair's two runs share the
# machine's mood of the moment, and the median of the pairs favours neither.
median_ratio() {
    printf '%s\n' "$@" | sort -g | awk '{r[NR] = $1} END {printf "%.2fx", NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2}'
}
rows=()
run_lines=()
declare -A waits  # how igpt's threads waited (./igpt bench's omp_wait), runs of each
note_wait() {
    local wait
    wait=$(field omp_wait <<<"$1")
    waits[$wait]=$((${waits[$wait]:-0} + 1))
}
for case in "tiny 16 16" "tiny 32 8" "xs 16 8" "xs 32 4"; do
    set -- $case
    ours=0
    theirs=0
    ours_bf16=0
    run_ratios=()
    for ((run = 0; run < repeats; run++)); do
        measure_peak
        line=$(./igpt bench --quiet --config "$1" --side "$2" --batch "$3" --threads "$threads")
        note_wait "$line"
        flops_per_token=$(field train_flops_per_token <<<"$line")
        ours_run=$(field tokens_per_s <<<"$line")
        ours=$(awk "BEGIN{print ($ours_run > $ours ? $ours_run : $ours)}")
        if [ -n "$bf16" ]; then
            line=$(./igpt bench --quiet --precision bf16 --config "$1" --side "$2" --batch "$3" --threads "$threads")
            note_wait "$line"
            ours_bf16=$(awk "BEGIN{t = $(field tokens_per_s <<<"$line"); print (t > $ours_bf16 ? t : $ours_bf16)}")
        fi
        if [ -n "$torch_version" ]; then
            t=$("$torch_python" bench/torch_cpu_bench.py --config "$1" --side "$2" --colors 512 \
                --batch "$3" --threads "$threads" --steps 5 --warmup-steps 2 | field tokens_per_s)
            theirs=$(awk "BEGIN{print ($t > $theirs ? $t : $theirs)}")
            run_ratios+=("$(awk "BEGIN{printf \"%.4f\", $ours_run / $t}")")
        fi
    done
    ours_gflops=$(awk "BEGIN{printf \"%.1f\", $ours * $flops_per_token / 1e9}")
    theirs_gflops="-"
    ratio="-"
    by_run="-"
    if [ -n "$torch_version" ]; then
        theirs_gflops=$(awk "BEGIN{printf \"%.1f\", $theirs * $flops_per_token / 1e9}")
        ratio=$(awk "BEGIN{printf \"%.2fx\", $ours / $theirs}")
        by_run=$(median_ratio "${run_ratios[@]}")
        run_lines+=("$1 $2x$2: $(printf '%.2fx ' "${run_ratios[@]}")")
        theirs=$(printf "%.0f" "$theirs")
    else
        theirs="-"
    fi
    bf16_text="-"
    bf16_ratio="-"
    in_turns="-"
    if [ -n "$bf16" ]; then
        bf16_text=$(printf "%.0f" "$ours_bf16")
        bf16_ratio=$(awk "BEGIN{printf \"%.2fx\", $ours_bf16 / $ours}")
        line=$(./igpt bench --mode precisions --config "$1" --side "$2" --batch "$3" --threads "$threads" --steps 1 \
            --turns 10)
        in_turns=$(awk "BEGIN{printf \"%.2fx\", $(field bf16_speedup <<<"$line")}")
    fi
    rows+=("$1 $2x$2 $3 $ours $ours_gflops $theirs $theirs_gflops $ratio $by_run $bf16_text $bf16_ratio $in_turns")
    echo "bench-cpu: $1 at $2x$2 done" >&2
done
for wait in "${!waits[@]}"; do
    echo "bench-cpu: igpt's waiting threads: $wait in ${waits[$wait]} runs (README, \"Threads on a shared machine\")"
done
echo "bench-cpu: fp32 peak, highest of $peaks measurements: $peak_fp32 GFLOP/s (lowest $peak_low)"
[ -z "$bf16" ] || echo "bench-cpu: \"in turns\": bf16 / fp32 in one process, an fp32 and a bf16 model taking turns" \
    "(./igpt bench --mode precisions: the median of 10 turns of one step each; steadier than two runs' best)"
[ ${#run_lines[@]} -eq 0 ] ||
    echo "bench-cpu: igpt / PyTorch run by run (\"by run\" their median; \"ratio\" best against best):" \
        "$(IFS=';' && echo "${run_lines[*]}" | sed 's/ ;/; /g')"
printf "%-6s %-7s %5s %12s %8s %7s %12s %8s %7s %7s %12s %9s %9s\n" config image batch "igpt tok/s" GFLOP/s "% peak" \
    "torch tok/s" GFLOP/s ratio "by run" "bf16 tok/s" "bf16/fp32" "in turns"
for row in "${rows[@]}"; do
    set -- $row
    share=$(awk "BEGIN{printf \"%.1f%%\", 100 * $5 / $peak_fp32}")
    printf "%-6s %-7s %5s %12.0f %8.1f %7s %12s %8s %7s %7s %12s %9s %9s\n" "$1" "$2" "$3" "$4" "$5" "$share" "$6" "$7" \
        "$8" "$9" "${10}" "${11}" "${12}"
done
