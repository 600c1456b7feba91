#!/usr/bin/env bash
# Installs what igpt needs on a fresh Debian/Ubuntu machine (idempotent).
# Run as root, or with sudo available.
set -euo pipefail
# --bench adds PyTorch (Debian's CPU build) for make bench-cpu and the reference scripts.
packages=(build-essential zlib1g-dev python3 libopenblas-openmp-dev liblbfgs-dev libcjson-dev clang clang-format python3-matplotlib libboost-context-dev libopenmpi-dev openmpi-bin procps)
[ "${1:-}" = "--bench" ] && packages+=(python3-torch)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "setup: ok ($(gcc --version | head -n 1))"
