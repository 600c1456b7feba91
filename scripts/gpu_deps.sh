#!/usr/bin/env bash
# Unpacks the Debian packages ./igpt links against (OpenBLAS with OpenMP,
# liblbfgs, cJSON, zlib) into build/gpu-deps/root, for a GPU machine that has CUDA
# but not these libraries and cannot download them: carry build/gpu-deps
# there and scripts/gpu_check.sh builds with `make DEPS_PREFIX=...` when the
# system has no liblbfgs or cJSON. Run here (network to the Debian mirror needed).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build/gpu-deps
rm -rf "$dir"
mkdir -p "$dir/debs" "$dir/root"
(cd "$dir/debs" && apt-get download -q libopenblas0-openmp libopenblas-openmp-dev liblbfgs0 liblbfgs-dev \
    libcjson1 libcjson-dev libgfortran5 zlib1g zlib1g-dev 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
rm -rf "$dir/debs"
# Only what linking and running need: no static libraries, LAPACK or documentation.
find "$dir/root" \( -name "*.a" -o -name "liblapack*" -o -name "libblas*" \) -delete
rm -rf "$dir/root/usr/share"
echo "gpu-deps: $(du -sh "$dir" | cut -f1) in $dir (carry it; gpu_check.sh uses it when the system lacks the libraries)"
