#!/usr/bin/env bash
# The round trip through transformers itself: the fixture model imported by
# ./igpt import, written back by ./igpt export, loaded by
# ImageGPTForCausalImageModeling.from_pretrained and ImageGPTImageProcessor,
# must compute the fixture's logits, losses and features (relative 1e-5) and
# tokenize its image alike (tests/reference/hf_fixtures.py check-export).
# Needs torch and transformers under /usr/bin/python3: .tools/hf, where
# scripts/setup.sh --hf installs them, or $IGPT_HF_PYTHONPATH; says skip without
# them (scripts/setup.sh alone does not install them). About 5 seconds.
set -u
cd "$(dirname "$0")/.." || exit 1
root=$PWD
igpt="$root/${IGPT_BUILD:-build}/igpt"
[ -x "$igpt" ] || igpt="$root/igpt"
source "$root/tests/check_lib.sh"
hf_path=${IGPT_HF_PYTHONPATH:-}
[ -z "$hf_path" ] && [ -d .tools/hf ] && hf_path=$root/.tools/hf
export PYTHONPATH="${hf_path:-${PYTHONPATH:-}}"
if ! /usr/bin/python3 -c "import torch, transformers" 2>/dev/null; then
    echo "skip  no torch + transformers for /usr/bin/python3 (scripts/setup.sh --hf installs them)"
    echo "0 passed, 0 failed"
    exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/igpt-hf-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$igpt" import tests/fixtures/hf --out "$tmp/run" >/dev/null &&
    "$igpt" export "$tmp/run/checkpoint-00000000.bin" --out "$tmp/hf" >/dev/null
check "import then export of the fixture" '[ -f "$tmp/hf/model.safetensors" ]'
/usr/bin/python3 tests/reference/hf_fixtures.py check-export "$tmp/hf" >"$tmp/check.txt" 2>&1
check "transformers loads the export and computes the fixture's logits, losses, features and ids" \
    'grep -q "check-export: ok" "$tmp/check.txt" || { cat "$tmp/check.txt"; false; }'
check_totals
