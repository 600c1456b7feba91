# Sourced by scripts/demo.sh and scripts/reproduce_cpu.sh: CIFAR-10 prepared
# at a resolution, from whatever copy of CIFAR-10 this machine has.
#
# prepare_cifar10 SIDE: prints the prepared folder (data/prepared/cifar10-SIDE,
# 5,000 validation images, 512 colors) after preparing it if needed, from, in
# order: an earlier prepared copy; the official binary version in
# data/cifar-10-batches-bin (scripts/download_cifar10.sh); the image-folder
# archive $IGPT_CIFAR_JPEG (default ../shared/data/cifar10-train-jpeg.tar.gz),
# extracted into data/cifar10-jpeg. Returns 1, printing nothing, when there
# is no CIFAR-10 here, and 2 when preparing it failed (the error is on
# stderr). Progress goes to stderr. (Called as data=$(prepare_cifar10 16), where
# set -e does not stop at a failing command: each one is checked here.)
prepare_cifar10() {
    local side=$1 out=data/prepared/cifar10-$1
    local archive=${IGPT_CIFAR_JPEG:-../shared/data/cifar10-train-jpeg.tar.gz}
    if [ -f "$out/train.bin" ]; then
        :
    elif [ -f data/cifar-10-batches-bin/data_batch_1.bin ]; then
        ./igpt prepare --cifar10 data/cifar-10-batches-bin --out "$out" --resolution "$side" --val 5000 >&2 || return 2
    elif [ -f "$archive" ]; then
        if [ ! -d data/cifar10-jpeg/train ]; then
            echo "extracting $archive into data/" >&2
            mkdir -p data || return 2
            tar -xzf "$archive" -C data || return 2
        fi
        ./igpt prepare --images data/cifar10-jpeg --out "$out" --resolution "$side" --val 5000 >&2 || return 2
    else
        return 1
    fi
    echo "$out"
}
