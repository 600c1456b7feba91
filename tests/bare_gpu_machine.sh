#!/usr/bin/env bash
# The GPU machine as the GPU check meets it, simulated on this one (no GPU):
# in a private mount namespace (root, unshare -m) the headers and libraries
# it lacks are hidden behind files that break any use of them (OpenBLAS,
# liblbfgs, zlib's headers, cJSON, Boost, MPI), and cuBLASLt and NCCL move
# from the CUDA folder to a pip-like site-packages/nvidia/{cu13,nccl}, as in
# PyTorch's wheels. Then:
#   1. the carried bundle (scripts/gpu_bundle.sh, run first) is found,
#      starts with cuBLASLt from there, and scripts/gpu_check.sh uses it;
#   2. without it, gpu_check.sh builds the GPU-only igpt there (make
#      GPU_ONLY=1) with nothing but the CUDA toolkit;
#   3. that igpt trains, resumes and probes (features and fits) on the CPU
#      (the plain products, CRC-32 and log reading it uses instead).
# Both gpu_check.sh runs end with the table; their GPU checks FAIL (no GPU).
# Not part of make test (root, ~3 minutes): docs/gpu-verification.md.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# The mounts live and die with the private namespace of the child; the parent cleans up after it.
if [ -z "${IGPT_BARE_SANDBOX:-}" ]; then
    sandbox=$(mktemp -d)
    IGPT_BARE_SANDBOX=$sandbox unshare -m bash "$0" "$@"
    status=$?
    rm -rf "$sandbox"
    exit $status
fi
sandbox=$IGPT_BARE_SANDBOX
mount --make-rprivate /
passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@"; then
        printf 'ok    %s\n' "$name"
        passed=$((passed + 1))
    else
        printf 'FAIL  %s\n' "$name"
        failed=$((failed + 1))
    fi
}
printf '#error "hidden: the bare GPU machine has no such file"\n' >"$sandbox/hidden"
mkdir -p "$sandbox/empty"
hide() { # paths (links resolved), each replaced by a broken file or an empty folder
    local p
    for p in "$@"; do
        p=$(readlink -f "$p")
        [ -e "$p" ] || continue
        if [ -d "$p" ]; then mount --bind "$sandbox/empty" "$p"; else mount --bind "$sandbox/hidden" "$p"; fi
    done
}
# A folder seen without some of its entries: a copy of it whose entries are bound to the
# originals (links copied as links), mounted over it.
without() { # folder patterns...
    local dir=$1 view
    shift
    view=$(mktemp -d "$sandbox/view.XXXXXX")
    for entry in "$dir"/* "$dir"/.[!.]*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        local name=${entry##*/} skip=0
        # shellcheck disable=SC2053 # the patterns are globs
        for pattern in "$@"; do [[ "$name" == $pattern ]] && skip=1; done
        [ "$skip" -eq 0 ] || continue
        if [ -L "$entry" ]; then cp -P "$entry" "$view/"
        elif [ -d "$entry" ]; then mkdir "$view/$name" && mount --bind "$entry" "$view/$name"
        else touch "$view/$name" && mount --bind "$entry" "$view/$name"; fi
    done
    mount --rbind "$view" "$dir"
}
# cuBLASLt and NCCL where pip puts them, bound before the CUDA folder's copies are hidden.
cuda=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")")
site=$sandbox/site
mkdir -p "$site/nvidia/cu13/lib" "$site/nvidia/cu13/include" "$site/nvidia/nccl/lib" "$site/nvidia/nccl/include"
move() { # file destination_folder
    touch "$2/$(basename "$1")"
    mount --bind "$1" "$2/$(basename "$1")"
}
move "$cuda/lib/libcublasLt.so.13" "$site/nvidia/cu13/lib"
move "$cuda/lib/libnccl.so.2" "$site/nvidia/nccl/lib"
for h in "$cuda"/include/cublas*.h; do move "$h" "$site/nvidia/cu13/include"; done
move "$cuda/include/nccl.h" "$site/nvidia/nccl/include"
export PYTHONPATH=$site
multiarch=$(gcc -print-multiarch)
without "$cuda/lib" 'libcublas*' 'libnccl*'
without "$cuda/include" 'cublas*' 'nccl*'
# (zlib's runtime library stays: the compiler itself needs it; its header goes.)
hide /usr/include/"$multiarch"/cblas*.h /usr/include/"$multiarch"/openblas* /usr/include/lbfgs.h \
    /usr/include/zlib.h /usr/include/zconf.h /usr/include/cjson /usr/include/boost \
    /usr/lib/"$multiarch"/openmpi/include /usr/lib/"$multiarch"/openblas-openmp/* \
    /usr/lib/"$multiarch"/liblbfgs* /usr/lib/"$multiarch"/libcjson* /usr/lib/"$multiarch"/libboost_context* \
    /usr/lib/"$multiarch"/libmpi.so*
check "hidden: cblas.h, lbfgs.h, zlib.h, cJSON, Boost, mpi.h do not compile" bash -c '
    for h in cblas.h lbfgs.h zlib.h cjson/cJSON.h boost/context/fiber.hpp mpi.h; do
        ! printf "#include <%s>\n" $h | cc -isystem /usr/include/'"$multiarch"'/openblas-openmp \
            -isystem /usr/lib/'"$multiarch"'/openmpi/include -E - >/dev/null 2>&1 || exit 1
    done'
check "hidden: cuBLASLt and NCCL only in the pip-like folders" bash -c \
    '! compgen -G "$1/lib/libcublas*" && ! compgen -G "$1/lib/libnccl*" && ! compgen -G "$1/include/nccl*" &&
     [ -f "$1/lib/libcudart_static.a" ] && [ -f "$1/include/cuda_runtime.h" ]' _ "$cuda"

# --- 1. The carried bundle ------------------------------------------------------------------
if [ -x build/gpu-bundle/igpt ]; then
    hide /usr/lib/"$multiarch"/libgomp.so.1 # the bundle brings its own
    scripts/gpu_check.sh --out "$sandbox/bundle" --deadline 120 --only kernels >"$sandbox/bundle.txt" 2>&1
    check "bundle: gpu_check uses it" grep -q '"build".*"PASS".*carried bundle' "$sandbox/bundle/results.jsonl"
    check "bundle: the tests start (and fail: no GPU, a CUDA error), the table is printed last" bash -c \
        'grep -q "\"kernels\".*\"FAIL\".*CUDA" "$1/results.jsonl" && tail -n 1 "$2" | grep -q " PASS, .* SKIP"' _ \
        "$sandbox/bundle" "$sandbox/bundle.txt"
    umount "$(readlink -f /usr/lib/"$multiarch"/libgomp.so.1)"
else
    printf 'skip  bundle (build/gpu-bundle is missing: scripts/gpu_bundle.sh builds it)\n'
fi

# --- 2. No bundle: the GPU-only build there ---------------------------------------------------
mount --bind "$sandbox/empty" build/gpu-bundle 2>/dev/null || true
rm -rf build/gpu-only
scripts/gpu_check.sh --out "$sandbox/built" --deadline 400 --only kernels,e2e >"$sandbox/built.txt" 2>&1
check "GPU-only: gpu_check builds it with nothing but the CUDA toolkit" \
    grep -q '"build".*"PASS".*GPU-only build' "$sandbox/built/results.jsonl"
check "GPU-only: cuBLASLt and NCCL linked from the pip-like folders, no zlib, OpenBLAS, cJSON" bash -c \
    'ldd build/gpu-only/igpt | grep -q "libcublasLt.so.13 => $1/nvidia/cu13/lib" &&
     ldd build/gpu-only/igpt | grep -q "libnccl.so.2 => $1/nvidia/nccl/lib" &&
     ! ldd build/gpu-only/igpt build/gpu-only/cuda/igpt_cuda_tests | grep -qE "libz|openblas|cjson|lbfgs|mpi"' _ "$site"
check "GPU-only: the table is printed last" bash -c 'tail -n 1 "$1" | grep -q " PASS, .* SKIP"' _ "$sandbox/built.txt"
[ "$failed" -eq 0 ] || tail -n 30 "$sandbox/built.txt"

# --- 3. The GPU-only igpt on the CPU: products, CRC-32, log reading, probe features -----------
run=$sandbox/cpu
igpt=build/gpu-only/igpt
"$igpt" synth --out "$run/syn" --train-per-class 10 --test-per-class 2 --size 8 >/dev/null &&
    "$igpt" prepare --images "$run/syn" --out "$run/data" --resolution 8 --colors 16 --val 20 --quiet --no-preview >/dev/null
model=(--d-model 32 --n-layer 1 --n-head 2 --batch 4 --eval-images 8 --eval-every 4 --checkpoint-every 4 --quiet)
"$igpt" train --device cpu --data "$run/data" --out "$run/run" "${model[@]}" --steps 8 --stop-at 4 >/dev/null 2>&1
"$igpt" train --device cpu --data "$run/data" --out "$run/run" --resume --quiet >/dev/null 2>&1
check "GPU-only igpt: trains, stops, resumes on the CPU (CRC-checked files, log cut at the checkpoint)" \
    bash -c '[ -f "$1/checkpoint-00000008.bin" ] && [ "$(grep -c "\"step\": 4, \"val_loss\"" "$1/log.jsonl")" -eq 1 ]' _ "$run/run"
"$igpt" train --device cpu --data "$run/data" --out "$run/straight" "${model[@]}" --steps 8 >/dev/null 2>&1
check "GPU-only igpt: stopped and resumed ends bitwise where straight through does" \
    cmp -s "$run/run/checkpoint-00000008.bin" "$run/straight/checkpoint-00000008.bin"
"$igpt" probe --device cpu --data "$run/data" --run "$run/run" --quiet --train-images 40 --eval-images 10 \
    >"$sandbox/probe.txt" 2>&1
check "GPU-only igpt: probe extracts and caches the features and fits the probes (our own L-BFGS)" bash -c \
    '[ -f "$2/probe/features-00000000-train.bin" ] && [ -f "$2/probe/probe-00000008.json" ] &&
     grep -q "best layer" "$1"' _ "$sandbox/probe.txt" "$run/run"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
