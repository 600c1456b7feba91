#!/usr/bin/env bash
# Installs what igpt needs on a fresh Debian/Ubuntu machine (idempotent).
# Run as root, or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."
# --bench adds PyTorch: Debian's 1.13 for the reference scripts (tests/reference/), and 2.11 into
# .tools/torch for make bench-cpu (below).
packages=(build-essential zlib1g-dev libjpeg-dev libpng-dev python3 libopenblas-openmp-dev libcjson-dev clang clang-format python3-matplotlib libboost-context-dev libopenmpi-dev openmpi-bin procps)
# scripts/compress_baselines.py: numpy, Pillow and the xz and zstd tools (the classical compressors).
packages+=(python3-numpy python3-pil xz-utils zstd)
[ "${1:-}" = "--bench" ] && packages+=(python3-torch python3-pip)
# --hf adds PyTorch and transformers (into .tools/hf) for the optional round trip of make test
# (tests/test_hf_transformers.sh) and tests/reference/hf_fixtures.py.
[ "${1:-}" = "--hf" ] && packages+=(python3-torch)
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
# cuobjdump (PyPI's nvidia-cuda-cuobjdump, into .tools/ of the project) where the CUDA folder
# lacks it: make test and scripts/gpu_bundle.sh check with it that the fatbin holds sm_80 and
# sm_90 code and sm_90 PTX (they say "skip" without it).
nvcc_bin=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -n "$nvcc_bin" ] && [ ! -x "$(dirname "$nvcc_bin")/cuobjdump" ] && ! command -v cuobjdump >/dev/null &&
    ! ls .tools/cuda/nvidia/*/bin/cuobjdump >/dev/null 2>&1; then
    cuda_major=$("$nvcc_bin" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    echo "setup: installing cuobjdump (nvidia-cuda-cuobjdump==$cuda_major.*) into .tools/cuda"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .tools/cuda "nvidia-cuda-cuobjdump==$cuda_major.*" ||
        echo "setup: no cuobjdump (pip failed): the fatbin checks will say skip"
fi
# nvdisasm (PyPI's nvidia-cuda-nvdisasm, into .tools/nvdisasm), which cuobjdump -sass runs: the
# SASS check of make test (tests/check_sass.py) reads the kernels' machine code with it.
if [ -n "$nvcc_bin" ] && [ ! -x "$(dirname "$nvcc_bin")/nvdisasm" ] && ! command -v nvdisasm >/dev/null &&
    ! ls .tools/nvdisasm/nvidia/*/bin/nvdisasm >/dev/null 2>&1; then
    cuda_major=$("$nvcc_bin" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    echo "setup: installing nvdisasm (nvidia-cuda-nvdisasm==$cuda_major.*) into .tools/nvdisasm"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .tools/nvdisasm "nvidia-cuda-nvdisasm==$cuda_major.*" ||
        echo "setup: no nvdisasm (pip failed): the SASS check will say skip"
fi
# transformers 4.40 is the last series that works with Debian's torch 1.13; its own dependencies
# beside it (pip --target: the system's Python stays as Debian made it).
if [ "${1:-}" = "--hf" ] && ! PYTHONPATH=.tools/hf /usr/bin/python3 -c "import transformers" 2>/dev/null; then
    echo "setup: installing transformers 4.40.2 into .tools/hf"
    pip_hf() { /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .tools/hf "$@"; }
    # transformers without its dependencies: they would bring a numpy that Debian's torch was not built for.
    pip_hf --no-deps "transformers==4.40.2" safetensors
    pip_hf "huggingface_hub<0.24" "tokenizers>=0.19,<0.20" regex pyyaml requests tqdm filelock packaging fsspec typing_extensions
fi
# --bench: PyTorch 2.11, the version users run, as make bench-cpu's baseline (bench/torch_python.sh
# runs it). Its CUDA 13 wheel without dependencies runs on CPUs too, given the CUDA folder's
# libraries and the three the wheel links that the CUDA folder lacks (the versions its metadata
# pins), and the pure-Python modules it imports; no numpy here: Debian's serves both torches.
if [ "${1:-}" = "--bench" ] && ! bench/torch_python.sh -c "import torch" 2>/dev/null; then
    echo "setup: installing PyTorch 2.11.0 into .tools/torch (about 1.5 GB)"
    pip_torch() { /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .tools/torch --no-deps "$@"; }
    pip_torch "torch==2.11.0" "nvidia-cusparselt-cu13==0.8.0" "nvidia-nvshmem-cu13==3.4.5" "nvidia-cufile==1.15.1.6.*" \
        "typing_extensions>=4.10" "sympy>=1.13.3" "mpmath<1.4" "networkx>=2.5.1" jinja2 markupsafe filelock "fsspec>=0.8.5"
    bench/torch_python.sh -c "import torch" ||
        echo "setup: PyTorch 2.11 does not import (is the CUDA 13 folder, /usr/local/cuda/lib64, there?): make bench-cpu falls back to Debian's 1.13"
fi
echo "setup: ok ($(gcc --version | head -n 1))"
