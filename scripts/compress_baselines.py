#!/usr/bin/python3
"""Bits per pixel of classical lossless compressors on a prepared split's tokens.

    /usr/bin/python3 scripts/compress_baselines.py --data DIR/val.bin [--images N] [--out FILE.json]

The yardstick for ./igpt compress: the same images (N of them, chosen as
./igpt does, image i*n/N for i < N; default all), the same token data (one
palette id per pixel), compressed by
  png        each image its own PNG file at maximum compression (Pillow, zlib
             level 9, optimize), the sizes summed. An indexed (palette) PNG when
             the palette has at most 256 colors; with more (the default is 512)
             a PNG cannot be indexed, so each image is the smaller of an RGB PNG
             of its palette colors and a 16-bit grayscale PNG of its color ids.
  gzip -9    (the gzip tool, -n: no name or time stamp)
  xz -9e     (the xz tool, one thread: its output does not depend on the machine)
  zstd -19   (the zstd tool, its default frame with a checksum)
on the token stream of all those images, concatenated: uint16 little-endian ids
as in the file ("u16"), and also one byte per id ("u8") when the palette has at
most 256 colors.

Writes JSON (default DIR/compress-baselines-SPLIT-N.json; copy or --out it to
RUN_DIR/compress/baselines.json for ./igpt plot and scripts/compression_table.py):
  {"data", "images", "pixels", "colors", "compressors": [{"name", "how", "bytes",
   "bits_per_pixel"}, ...]}
and prints the same as a table. Needs numpy and Pillow (Debian: python3-numpy,
python3-pil) and the xz and zstd tools (xz-utils, zstd): scripts/setup.sh installs them.
"""
import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

np = Image = None
TOOLS = {"gzip": "gzip", "xz": "xz-utils", "zstd": "zstd"}  # tool -> its Debian package


def fail(message):
    """One line, as ./igpt's own errors, exit status 1."""
    sys.exit(f"igpt: error: compress_baselines: {message}")


def load_libraries():
    global np, Image
    try:
        import numpy
        from PIL import Image as pil_image
    except ImportError as e:
        fail(f"{e.name} is missing for {sys.executable}; install python3-numpy and python3-pil "
             "(scripts/setup.sh does), or run it with /usr/bin/python3")
    np, Image = numpy, pil_image


def check_tools():
    """Every tool before any work: a missing one is said at once, not after minutes of PNGs."""
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            fail(f"the {tool} tool is missing (not on PATH); install the Debian package {package} "
                 "(scripts/setup.sh does)")


# --- The prepared split (docs/formats.md) ----------------------------------------------------


def read_split(path):
    """(palette K x 3 uint8, tokens N x H x W uint16), after the checks a result depends on:
    magic, version, sizes, and both CRCs, so that a damaged file is refused, not measured."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    if len(raw) < 64 or raw[:8] != b"IGPTDATA":
        fail(f"{path}: not a prepared split (no IGPTDATA header)")
    version, header_size = struct.unpack_from("<II", raw, 8)
    n, h, w, k, c, payload_size, payload_crc, header_crc = struct.unpack_from("<QIIIIQII", raw, 16)
    if version != 1:
        fail(f"{path}: format version {version}, this script reads version 1")
    if header_size != 64 + 64 * c or len(raw) != header_size + payload_size or \
            payload_size != 3 * k + 2 * n + 2 * n * h * w or n < 1 or not 2 <= k <= 4096:
        fail(f"{path}: sizes in the header do not match the file ({len(raw)} bytes): truncated or damaged")
    header = bytearray(raw[:header_size])
    header[52:56] = bytes(4)
    if zlib.crc32(header) != header_crc or zlib.crc32(raw[header_size:]) != payload_crc:
        fail(f"{path}: CRC mismatch: the file is damaged")
    palette = np.frombuffer(raw, np.uint8, 3 * k, header_size).reshape(k, 3)
    tokens = np.frombuffer(raw, "<u2", n * h * w, header_size + 3 * k + 2 * n).reshape(n, h, w)
    if tokens.max() >= k:
        fail(f"{path}: a color id is not below the color count {k}")
    return palette, tokens


def evenly_spaced(n, count):
    """The images ./igpt takes for --images count (evenly_spaced in src/data/dataset.c)."""
    return [i * n // count for i in range(count)]


# --- The compressors -------------------------------------------------------------------------


def png_bytes(image):
    """(file bytes, bytes outside the compressed pixels) of the image as a PNG at maximum compression.
    The second is the container: signature, chunk headers and CRCs, IHDR, PLTE, IEND."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True, compress_level=9)
    data = buffer.getvalue()
    pixels, offset = 0, 8
    while offset < len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        pixels += length if kind == b"IDAT" else 0
        offset += 12 + length
    return len(data), len(data) - pixels


def png_total(palette, tokens):
    """Bytes of one PNG per image, summed, and how they were made."""
    colors = len(palette)
    if colors <= 256:
        total = container = 0
        for ids in tokens:
            image = Image.fromarray(ids.astype(np.uint8), "P")
            image.putpalette(palette.tobytes())  # Pillow picks 1/2/4/8 bits per pixel from its length
            size, outside = png_bytes(image)
            total += size
            container += outside
        return total, (f"indexed PNG ({colors}-color palette), one file per image, Pillow zlib level 9 + optimize; "
                       f"{container:,} of the bytes are the files' chunks around the pixels (palette included)")
    rgb_total = gray_total = best_total = rgb_chosen = container = 0
    for ids in tokens:
        rgb = png_bytes(Image.fromarray(palette[ids], "RGB"))
        gray = png_bytes(Image.fromarray(ids.astype(np.uint16)))  # mode I;16: 16-bit grayscale
        rgb_total += rgb[0]
        gray_total += gray[0]
        best = min(rgb, gray)
        best_total += best[0]
        container += best[1]
        rgb_chosen += rgb[0] <= gray[0]
    how = (f"{colors} colors: a PNG cannot be indexed beyond 256, so each image is the smaller of an RGB PNG of its "
           f"colors and a 16-bit grayscale PNG of its color ids (RGB for {rgb_chosen} of {len(tokens)}; all RGB "
           f"{rgb_total:,} bytes, all grayscale {gray_total:,}); one file per image, Pillow zlib level 9 + optimize; "
           f"{container:,} of the bytes are the files' chunks around the pixels")
    return best_total, how


def tool_bytes(command, data):
    """Bytes the command writes to stdout with `data` on stdin."""
    with tempfile.TemporaryFile() as source:
        source.write(data)
        source.seek(0)
        result = subprocess.run(command, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if result.returncode != 0:
        fail(f"{' '.join(command)} failed (exit status {result.returncode}): "
             f"{result.stderr.decode(errors='replace').strip()}")
    return len(result.stdout)


STREAM_COMPRESSORS = [  # name, command line, what it is
    ("gzip -9", ["gzip", "-9", "-n", "-c"], "gzip -9 -n"),
    ("xz -9e", ["xz", "-9e", "-T1", "-c"], "xz -9e -T1 (.xz container, CRC64)"),
    ("zstd -19", ["zstd", "-19", "-q", "-c"], "zstd -19 (frame with checksum)"),
]


def measure(palette, tokens, progress):
    """Every compressor's entry: name, how, bytes, bits per pixel."""
    pixels = tokens.size
    entries = []

    def add(name, how, size):
        entries.append({"name": name, "how": how, "bytes": size, "bits_per_pixel": 8 * size / pixels})

    started = time.time()
    add("png", *reversed(png_total(palette, tokens)))
    progress(f"png: {time.time() - started:.1f} s")
    streams = [("u16", tokens.astype("<u2").tobytes(), "uint16 little-endian ids as in the file")]
    if len(palette) <= 256:
        streams.append(("u8", tokens.astype(np.uint8).tobytes(), "one byte per id"))
    for stream, data, words in streams:
        for name, command, how in STREAM_COMPRESSORS:
            started = time.time()
            add(f"{name} ({stream})", f"{how} on the concatenated token stream, {words}", tool_bytes(command, data))
            progress(f"{name} ({stream}): {time.time() - started:.1f} s")
    return entries


# --- Command line ----------------------------------------------------------------------------


def default_out(data_path, count):
    split = os.path.splitext(os.path.basename(data_path))[0]
    return os.path.join(os.path.dirname(data_path) or ".", f"compress-baselines-{split}-{count}.json")


def write_json(path, result):
    """Through a temporary file beside it: an interrupted run leaves the old file whole."""
    folder = os.path.dirname(path) or "."
    try:
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".compress-baselines-", delete=False) as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        os.replace(f.name, path)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror}")


def print_table(result):
    print(f"{result['images']:,} images of {result['data']}, {result['pixels']:,} pixels, "
          f"{result['colors']} colors")
    print(f"  {'compressor':<16} {'bytes':>12} {'bits/pixel':>10}")
    for entry in result["compressors"]:
        print(f"  {entry['name']:<16} {entry['bytes']:>12,} {entry['bits_per_pixel']:>10.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a prepared split, e.g. data/prepared/cifar10-16/val.bin")
    parser.add_argument("--images", type=int, help="how many images, evenly spaced as ./igpt takes them (default all)")
    parser.add_argument("--out", help="the JSON to write (default DIR/compress-baselines-SPLIT-N.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args()
    check_tools()
    load_libraries()
    if args.out and not os.path.isdir(os.path.dirname(args.out) or "."):
        fail(f"--out {args.out}: its folder does not exist")
    palette, tokens = read_split(args.data)
    n = len(tokens)
    count = n if args.images is None else args.images
    if not 1 <= count <= n:
        fail(f"--images {args.images}: {args.data} has {n:,} images (give 1 to {n:,})")
    chosen = tokens[evenly_spaced(n, count)]

    def progress(line):
        if not args.quiet:
            print(f"compress_baselines: {line}", file=sys.stderr, flush=True)

    result = {"data": args.data, "images": count, "pixels": int(chosen.size), "colors": len(palette),
              "compressors": measure(palette, chosen, progress)}
    out = args.out or default_out(args.data, count)
    write_json(out, result)
    print_table(result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
