#!/usr/bin/env python3
"""Independent check of ./igpt prepare, in plain Python (standard library only).

It writes small CIFAR-10 batch files, runs the real command, then re-derives
everything from the source bytes and docs/formats.md alone: header fields and
CRCs, planar-to-raster pixel order, nearest-color quantization with ties to
the lower id, the class-stratified validation quotas, the train/val
partition, and the PSNR in prepare.json. Prints "N passed, N failed".
"""
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ./igpt, or the igpt of the build folder make names (IGPT_BUILD=build/sanitize, ...).
BUILD = os.environ.get("IGPT_BUILD", "build")
IGPT = os.path.join(ROOT, "igpt") if BUILD == "build" else os.path.join(ROOT, BUILD, "igpt")
RECORD = 3073

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else ": " + detail))


def make_batches(folder, per_batch, test_records, rng):
    """Records with random labels and pixels; returns {split: [(label, rgb bytes)]}."""
    splits = {"train": [], "test": []}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for index, name in enumerate(names):
        count = per_batch if index < 5 else test_records
        blob = bytearray()
        for _ in range(count):
            label = rng.randrange(10)
            planes = bytes(rng.randrange(0, 256, 17) for _ in range(3072))  # 16 levels
            blob += bytes([label]) + planes
            rgb = bytearray(3072)
            for p in range(1024):  # planar R, G, B -> interleaved
                rgb[3 * p] = planes[p]
                rgb[3 * p + 1] = planes[1024 + p]
                rgb[3 * p + 2] = planes[2048 + p]
            splits["test" if index == 5 else "train"].append((label, bytes(rgb)))
        with open(os.path.join(folder, name), "wb") as f:
            f.write(blob)
    return splits


def read_split(path):
    raw = open(path, "rb").read()
    assert raw[:8] == b"IGPTDATA", "magic"
    version, header_bytes, n, h, w, k, c, payload_bytes, payload_crc, header_crc = struct.unpack_from(
        "<IIQIIIIQII", raw, 8)
    zeroed = bytearray(raw[:header_bytes])
    zeroed[52:56] = b"\0\0\0\0"
    names = [raw[64 + 64 * i: 64 + 64 * (i + 1)].split(b"\0")[0].decode() for i in range(c)]
    payload = raw[header_bytes:]
    pal = [tuple(payload[3 * i: 3 * i + 3]) for i in range(k)]
    labels = list(struct.unpack_from(f"<{n}H", payload, 3 * k))
    tokens = struct.unpack_from(f"<{n * h * w}H", payload, 3 * k + 2 * n)
    images = [tokens[i * h * w:(i + 1) * h * w] for i in range(n)]
    return {
        "version": version, "n": n, "h": h, "w": w, "k": k, "c": c, "names": names, "palette": pal,
        "labels": labels, "images": images,
        "payload_ok": payload_bytes == len(payload) and zlib.crc32(payload) == payload_crc,
        "header_ok": zlib.crc32(bytes(zeroed)) == header_crc and header_bytes == 64 + 64 * c,
    }


def quantize(rgb, palette):
    """Nearest palette color by squared distance, ties to the lower id; returns (tokens, squared error)."""
    tokens, err, cache = [], 0, {}
    for p in range(0, len(rgb), 3):
        px = rgb[p:p + 3]
        if px not in cache:
            best, best_d = 0, None
            for i, col in enumerate(palette):
                d = (px[0] - col[0]) ** 2 + (px[1] - col[1]) ** 2 + (px[2] - col[2]) ** 2
                if best_d is None or d < best_d:
                    best, best_d = i, d
            cache[px] = (best, best_d)
        tokens.append(cache[px][0])
        err += cache[px][1]
    return tuple(tokens), err


def expected_quotas(labels, val):
    """Class-stratified quotas as docs/formats.md states them."""
    n = len(labels)
    counts = [labels.count(c) for c in range(10)]
    quota = [min(val * counts[c] // n, max(counts[c] - 1, 0)) for c in range(10)]
    rem = [val * counts[c] / n - quota[c] for c in range(10)]
    while sum(quota) < val:
        best = None
        for c in range(10):
            if quota[c] < counts[c] - 1 and (best is None or rem[c] > rem[best]):
                best = c
        quota[best] += 1
        rem[best] -= 1
    return quota


def main():
    rng = random.Random(2024)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "cifar")
        os.makedirs(src)
        source = make_batches(src, 12, 7, rng)
        out = os.path.join(tmp, "out")
        run = subprocess.run([IGPT, "prepare", "--cifar10", src, "--out", out, "--colors", "16", "--val", "13",
                              "--seed", "3", "--quiet"], capture_output=True, text=True)
        check("prepare exits 0", run.returncode == 0, run.stderr)
        if run.returncode != 0:
            return
        train, val, test = (read_split(os.path.join(out, f"{s}.bin")) for s in ("train", "val", "test"))
        pal_raw = open(os.path.join(out, "palette.bin"), "rb").read()
        k = struct.unpack_from("<I", pal_raw, 12)[0]
        palette = [tuple(pal_raw[32 + 3 * i: 35 + 3 * i]) for i in range(k)]

        for name, split in (("train", train), ("val", val), ("test", test)):
            check(f"{name}: header fields", (split["version"], split["h"], split["w"], split["k"], split["c"])
                  == (1, 32, 32, 16, 10), str(split["version"]))
            check(f"{name}: header CRC", split["header_ok"])
            check(f"{name}: payload size and CRC", split["payload_ok"])
            check(f"{name}: carries palette.bin's colors", split["palette"] == palette)
            check(f"{name}: CIFAR-10 class names", split["names"][0] == "airplane" and split["names"][9] == "truck")
        check("palette.bin CRCs", zlib.crc32(pal_raw[32:]) == struct.unpack_from("<I", pal_raw, 16)[0]
              and zlib.crc32(pal_raw[:20]) == struct.unpack_from("<I", pal_raw, 20)[0])

        expected = [(label, *quantize(rgb, palette)) for label, rgb in source["train"]]
        # train and val are complementary subsequences of the source, in source order.
        ti = vi = train_err = 0
        partition_ok = True
        for label, tokens, err in expected:
            if ti < train["n"] and train["images"][ti] == tokens and train["labels"][ti] == label:
                ti += 1
                train_err += err
            elif vi < val["n"] and val["images"][vi] == tokens and val["labels"][vi] == label:
                vi += 1
            else:
                partition_ok = False
        check("train + val partition the source, tokens = nearest palette color",
              partition_ok and ti == train["n"] and vi == val["n"] == 13, f"{ti} {vi}")
        quota = expected_quotas([label for label, _ in source["train"]], 13)
        got = [val["labels"].count(c) for c in range(10)]
        check("validation quotas per class", got == quota, f"{got} vs {quota}")
        test_expected = [quantize(rgb, palette)[0] for _, rgb in source["test"]]
        check("test tokens = nearest palette color", test["images"] == test_expected)
        check("test labels", test["labels"] == [label for label, _ in source["test"]])

        summary = json.load(open(os.path.join(out, "prepare.json")))
        psnr = 10 * math.log10(255 ** 2 / (train_err / (train["n"] * 1024 * 3)))
        got_psnr = summary["splits"]["train"]["psnr_db"]
        check("train PSNR in prepare.json", abs(got_psnr - psnr) < 1e-3, f"{got_psnr} vs {psnr}")


if __name__ == "__main__":
    main()
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)
