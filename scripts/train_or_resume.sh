# Sourced by scripts/demo.sh and scripts/reproduce_cpu.sh: one training that a
# rerun of the script resumes where it stopped.
#
# train_or_resume WHO DATA RUN STEPS [TRAIN OPTIONS...]: trains RUN on DATA
# (./igpt train --data DATA --out RUN TRAIN OPTIONS...), resumes it when it
# holds a checkpoint but not the final one of STEPS steps, or says it is
# done. Returns 0 once RUN is trained; else the training's exit status, after
# a line on stderr: an interrupted training (Ctrl-C, SIGTERM) checkpoints
# and exits with 128 + the signal, and running the script again resumes it.
train_or_resume() {
    local who=$1 data=$2 run=$3 steps=$4 status=0
    shift 4
    if [ -f "$(printf "%s/checkpoint-%08d.bin" "$run" "$steps")" ]; then
        echo "$who: $run is already trained"
        return 0
    elif ls "$run"/checkpoint-*.bin >/dev/null 2>&1; then
        ./igpt train --data "$data" --out "$run" --resume || status=$?
    else
        ./igpt train --data "$data" --out "$run" "$@" || status=$?
    fi
    if [ "$status" -ge 128 ]; then
        echo "$who: the training was interrupted (exit status $status) and checkpointed; run scripts/$who.sh" \
            "again to resume it and go on" >&2
    elif [ "$status" -ne 0 ]; then
        echo "$who: the training failed (exit status $status); see the message above" >&2
    fi
    return "$status"
}
