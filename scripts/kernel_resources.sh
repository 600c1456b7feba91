#!/usr/bin/env bash
# Rewrites the per-kernel resource table of docs/cuda.md ("Registers, shared
# memory and stack per kernel") from the fatbin of ./igpt (or BINARY): each
# kernel's registers per thread, static shared memory, stack frame and
# LDL/STL count, for sm_80 and sm_90, read by cuobjdump (tests/check_sass.py
# --resource-table). Run it after `make` whenever a kernel changes, and commit
# the docs with the change.
#
#   scripts/kernel_resources.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-igpt}
doc=docs/cuda.md
begin='<!-- kernel resources: written by scripts/kernel_resources.sh, do not edit -->'
end='<!-- end of kernel resources -->'
grep -qF "$begin" "$doc" && grep -qF "$end" "$doc" || { echo "kernel_resources: $doc lacks the table's markers" >&2; exit 1; }
nvcc_bin=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
nvcc_version=$([ -n "$nvcc_bin" ] && "$nvcc_bin" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p' || echo "?")
table=$(mktemp)
trap 'rm -f "$table" "$doc.tmp"' EXIT
{
    echo "$begin"
    echo
    echo "nvcc $nvcc_version, \`$binary\` at commit $(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- cuda bench || echo ' with changes'):"
    echo
    python3 tests/check_sass.py --resource-table "$binary"
    echo
    echo "$end"
} > "$table"
# The document with the lines from $begin to $end replaced by the new table.
awk -v begin="$begin" -v end="$end" -v table="$table" '
    $0 == begin { while ((getline line < table) > 0) print line; skip = 1; next }
    $0 == end { skip = 0; next }
    !skip { print }' "$doc" > "$doc.tmp"
mv "$doc.tmp" "$doc"
echo "kernel_resources: $doc: $(grep -c '^| `' "$table") kernels"
