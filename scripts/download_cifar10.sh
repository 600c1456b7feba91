#!/usr/bin/env bash
# Downloads the official CIFAR-10 binary version and checks it.
# usage: scripts/download_cifar10.sh [DEST]   (default DEST: data/)
# Leaves DEST/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin, ready for
#   ./igpt prepare --cifar10 DEST/cifar-10-batches-bin --out ...
set -euo pipefail
dest=${1:-data}
url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
md5="c32a1d4ab5d03f1284b67883e8d87530"  # published next to the download
archive="$dest/cifar-10-binary.tar.gz"
mkdir -p "$dest"
if [ -f "$dest/cifar-10-batches-bin/test_batch.bin" ]; then
    echo "CIFAR-10 already in $dest/cifar-10-batches-bin"
    exit 0
fi
if [ ! -f "$archive" ]; then
    echo "downloading $url (162 MB)"
    tmp="$archive.part"
    if command -v curl >/dev/null; then curl -fL --retry 3 -o "$tmp" "$url"
    else wget -O "$tmp" "$url"; fi
    mv "$tmp" "$archive"
fi
echo "checking MD5"
got=$(md5sum "$archive" | cut -d' ' -f1)
if [ "$got" != "$md5" ]; then
    echo "error: $archive has MD5 $got, expected $md5 (corrupt download: delete it and retry)" >&2
    exit 1
fi
tar -xzf "$archive" -C "$dest"
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
    size=$(stat -c %s "$dest/cifar-10-batches-bin/$f.bin")
    [ "$size" -eq 30730000 ] || { echo "error: $f.bin has $size bytes, expected 30730000" >&2; exit 1; }
done
echo "CIFAR-10 ready in $dest/cifar-10-batches-bin"
