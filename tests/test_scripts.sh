#!/usr/bin/env bash
# The shell logic the scripts share (scripts/train_or_resume.sh), against a
# fake ./igpt that records its arguments and exits as told: a fresh run
# gets the training options, a run with checkpoints is resumed, a trained
# run is left alone, and an interruption or a failure is said and returned.
# Prints one line per check and "N passed, N failed" last. About a second.
set -u
cd "$(dirname "$0")/.." || exit 1
source scripts/train_or_resume.sh
source tests/check_lib.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/igpt-scripts-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
cat >igpt <<'FAKE'
#!/usr/bin/env bash
echo "$*" >>calls
exit "${FAKE_STATUS:-0}"
FAKE
chmod +x igpt
status=0

rm -f calls
train_or_resume demo data runs/a 100 --steps 100 --lr 3e-3 >out 2>err || status=$?
check "a fresh run is trained with the options given" \
    '[ "$status" = 0 ] && [ "$(cat calls)" = "train --data data --out runs/a --steps 100 --lr 3e-3" ]'

mkdir -p runs/a && : >runs/a/checkpoint-00000040.bin && rm -f calls
FAKE_STATUS=143 train_or_resume demo data runs/a 100 --steps 100 >out 2>err || status=$?
check "a run with a checkpoint is resumed; an interruption is said and returned (143)" \
    '[ "$status" = 143 ] && [ "$(cat calls)" = "train --data data --out runs/a --resume" ] &&
     grep -q "interrupted (exit status 143).*scripts/demo.sh again" err'

status=0 && rm -f calls
FAKE_STATUS=1 train_or_resume demo data runs/a 100 --steps 100 >out 2>err || status=$?
check "a failed training is said and returned (1)" '[ "$status" = 1 ] && grep -q "failed (exit status 1)" err'

: >runs/a/checkpoint-00000100.bin && rm -f calls && status=0
FAKE_STATUS=1 train_or_resume demo data runs/a 100 --steps 100 >out 2>err || status=$?
check "a trained run (its final checkpoint here) is left alone" \
    '[ "$status" = 0 ] && [ ! -e calls ] && grep -q "already trained" out'

check_totals
