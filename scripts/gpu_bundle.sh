#!/usr/bin/env bash
# Builds here what a bare GPU machine runs: build/gpu-bundle/, with igpt and
# igpt_cuda_tests (make BUNDLE=1: sm_80 and sm_90 code with sm_90 PTX, any
# x86-64-v3 CPU, zlib and the CUDA runtime linked in) and lib/
# beside them (cJSON, libgomp; found through rpath $ORIGIN/lib). The C and
# C++ libraries are the GPU machine's: glibc 2.34 and gcc 11's libstdc++ or
# later (a static libstdc++ would ask for glibc 2.36).
# cuBLASLt is the GPU machine's: scripts/gpu_check.sh finds it there (CUDA
# folder or PyTorch's nvidia/*/lib). SOURCES holds a hash of the sources, so
# that gpu_check.sh uses the bundle only with the sources it was built from.
#
# Checks before it says done: both binaries start from a copy in another
# folder with LD_LIBRARY_PATH empty, every library they load is the bundle's,
# the C and C++ libraries or cuBLASLt, glibc 2.34 is enough, the fatbin holds sm_80,
# sm_90 and sm_90 PTX (when cuobjdump is here, or CUOBJDUMP names one), and the
# folder is under 60 MB.
# Carry build/gpu-bundle to the GPU machine (docs/gpu-verification.md).
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc_bin=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null) || {
    echo "gpu_bundle: no nvcc here" >&2
    exit 1
}
bundle=build/gpu-bundle
# From scratch: make does not rebuild objects when only flags change.
rm -rf build/bundle-obj "$bundle"
make BUNDLE=1 NVCC="$nvcc_bin" -j"$(nproc)" build/bundle-obj/igpt build/bundle-obj/cuda/igpt_cuda_tests
mkdir -p "$bundle/lib"
cp build/bundle-obj/igpt build/bundle-obj/cuda/igpt_cuda_tests "$bundle/"
for lib in libcjson.so.1 libgomp.so.1; do
    cp -L "$(ldd "$bundle/igpt" | awk -v l="$lib" '$1 == l { print $3 }')" "$bundle/lib/"
done
# The same hash as scripts/gpu_check.sh's source_hash.
find src cuda tests bench Makefile -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \
    -o -name '*.cpp' -o -name Makefile \) | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -c1-16 >"$bundle/SOURCES"

fail() {
    echo "gpu_bundle: $*" >&2
    exit 1
}
# They start from elsewhere, with nothing from the environment.
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
cp -r "$bundle" "$copy/bundle"
version=$(cd "$copy/bundle" && env LD_LIBRARY_PATH= ./igpt --version) || fail "./igpt does not start from a copy"
tests=$(cd "$copy/bundle" && env LD_LIBRARY_PATH= ./igpt_cuda_tests --list | wc -l) || fail "igpt_cuda_tests does not start"
# Every library either in the bundle, the C and C++ libraries, or cuBLASLt (the GPU machine's).
for bin in igpt igpt_cuda_tests; do
    foreign=$(env LD_LIBRARY_PATH= ldd "$copy/bundle/$bin" | awk -v dir="$copy/bundle/lib/" '
        $1 ~ /^(linux-vdso|\/lib64\/ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libgcc_s\.|libstdc\+\+\.|libcublasLt\.)/ { next }
        index($3, dir) != 1 { print $1 }')
    [ -z "$foreign" ] || fail "$bin loads libraries from outside the bundle: $foreign"
    glibc=$(objdump -T "$bundle/$bin" | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n 1)
    [ "$(printf '%s\nGLIBC_2.34\n' "$glibc" | sort -V | tail -n 1)" = GLIBC_2.34 ] || fail "$bin needs $glibc"
    glibcxx=$(objdump -T "$bundle/$bin" | grep -o 'GLIBCXX_[0-9.]*' | sort -V | tail -n 1)
    [ "$(printf '%s\nGLIBCXX_3.4.29\n' "$glibcxx" | sort -V | tail -n 1)" = GLIBCXX_3.4.29 ] || fail "$bin needs $glibcxx"
done
cuobjdump=${CUOBJDUMP:-$(command -v cuobjdump || ls "$(dirname "$nvcc_bin")"/cuobjdump .tools/cuda/nvidia/*/bin/cuobjdump 2>/dev/null | head -n 1 || true)}
if [ -n "$cuobjdump" ]; then
    for bin in igpt igpt_cuda_tests; do
        code=$("$cuobjdump" --list-elf "$bundle/$bin" | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')
        ptx=$("$cuobjdump" --list-ptx "$bundle/$bin" | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')
        [ "$code$ptx" = "sm_80 sm_90 sm_90 " ] || fail "$bin: cubins $code, PTX $ptx (want sm_80 sm_90, PTX sm_90)"
    done
    fatbin="sm_80 + sm_90 cubins, sm_90 PTX"
else
    fatbin="not checked (no cuobjdump here)"
fi
size_mb=$(du -sm "$bundle" | cut -f1)
[ "$size_mb" -lt 60 ] || fail "$size_mb MB, over 60"
echo "gpu_bundle: $bundle, $size_mb MB: $version, $tests CUDA tests; fatbin $fatbin; needs glibc 2.34, GLIBCXX_3.4.29"
echo "gpu_bundle: carry it (run tool: carry [\"$bundle\"]); scripts/gpu_check.sh uses it"
