#!/usr/bin/env bash
# Runs /usr/bin/python3 with the PyTorch 2.11 that scripts/setup.sh --bench puts in .tools/torch
# (pip --target, beside the system's Python, which keeps Debian's torch 1.13 for the fixture
# scripts of tests/reference/). The wheel is the CUDA 13 build: its libraries load from the
# CUDA folder (libcudart, cuBLAS, ...) and from .tools/torch/nvidia/*/lib (the few the CUDA
# folder lacks), and it runs on the CPU where no GPU is found.
#     bench/torch_python.sh bench/torch_cpu_bench.py --config xs
# Exits 3 with one line on stderr when .tools/torch is not installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools/torch"
if [ ! -d "$tools/torch" ]; then
    echo "torch_python: no PyTorch in $tools (run scripts/setup.sh --bench)" >&2
    exit 3
fi
nvcc_bin=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
cuda_lib=${CUDA_LIB:-$(dirname "${nvcc_bin:-/usr/local/cuda/bin/nvcc}")/../lib64}
libs="$cuda_lib"
for d in "$tools"/nvidia/*/lib; do
    [ -d "$d" ] && libs="$libs:$d"
done
export PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}"
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec /usr/bin/python3 "$@"
