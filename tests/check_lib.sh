# What the shell test scripts share (source it): `check NAME 'CONDITION'`
# prints one line, ok or FAIL, and counts it; `check_totals` prints
# "N passed, N failed" last and returns non-zero after a failure.
passed=0
failed=0
check() { # check NAME 'CONDITION' (a shell expression, evaluated here)
    local name=$1
    if eval "$2"; then
        printf 'ok    %s\n' "$name"
        passed=$((passed + 1))
    else
        printf 'FAIL  %s\n' "$name"
        failed=$((failed + 1))
    fi
}
check_totals() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
