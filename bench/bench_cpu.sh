#!/usr/bin/env bash
# make bench-cpu: forward+backward tokens/s of the CPU reference next to the
# same model in PyTorch on the CPU, same thread count, measured in this run.
# PyTorch comes from Debian's python3-torch (scripts/setup.sh --bench installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
torch_python=${TORCH_PYTHON:-/usr/bin/python3}
have_torch=1
"$torch_python" -c "import torch" 2>/dev/null || have_torch=0
[ "$have_torch" = 1 ] || echo "bench-cpu: PyTorch not found for $torch_python; run scripts/setup.sh --bench (igpt figures only)"
echo "bench-cpu: $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); forward + backward, 512 colors, 5 timed steps after 2 warm-up steps"
printf "%-6s %-7s %6s %14s %14s %8s\n" config image batch "igpt tok/s" "torch tok/s" ratio
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
for case in "tiny 16 16" "tiny 32 8" "xs 16 8" "xs 32 4"; do
    set -- $case
    ours=$(./igpt bench --quiet --config "$1" --side "$2" --batch "$3" --threads "$threads" | field tokens_per_s)
    theirs="-"
    ratio="-"
    if [ "$have_torch" = 1 ]; then
        theirs=$("$torch_python" bench/torch_cpu_bench.py --config "$1" --side "$2" --colors 512 \
                 --batch "$3" --threads "$threads" --steps 5 --warmup-steps 2 | field tokens_per_s)
        ratio=$(awk "BEGIN{printf \"%.2fx\", $ours / $theirs}")
    fi
    printf "%-6s %-7s %6s %14.0f %14s %8s\n" "$1" "$2x$2" "$3" "$ours" "$theirs" "$ratio"
done
