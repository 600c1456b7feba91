#!/usr/bin/env python3
"""The compression table of a run, in Markdown (for the README and the demo).

    python3 scripts/compression_table.py RUN_DIR

One row per checkpoint compressed by ./igpt compress (RUN_DIR/compress/
compress-NNNNNNNN.json): the compressed file's bits per pixel, the model's
cross-entropy on the same pixels (the size an ideal coder would reach), the
coder's overhead, and that step's best-layer probe accuracy with its binomial
standard error (RUN_DIR/probe, as ./igpt plot reads it; "-" when the step was
not probed). Then one row per classical compressor on the same tokens
(RUN_DIR/compress/baselines.json, written by scripts/compress_baselines.py).
A pixel is one palette token. The heading says on which images; a note says so
when the checkpoints and the classical compressors were measured on different ones.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "plot"))
import plot  # noqa: E402  (the run readers ./igpt plot uses: one reading of the files, not two)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN_DIR")
    args = parser.parse_args()
    if not os.path.isdir(args.run):
        plot.fail(f"{args.run}: no such run folder")
    run = plot.load_run(args.run)
    if not run["compression"]:
        plot.fail(f"{os.path.join(args.run, 'compress')}: no compress-NNNNNNNN.json (run ./igpt compress first)")
    probes = {p["step"]: p for p in run["probes"]}
    first = run["compression"][0]
    data = f" of {first['data']}" if first["data"] else ""
    print(f"Lossless compression of {first['images']:,} images{data} ({first['pixels']:,} pixels, one palette "
          "token each), in bits per pixel; probe accuracy ± one binomial standard error.")
    mismatch = plot.image_mismatch(run)
    if mismatch:
        print(f"\n**Note: {mismatch}.**")
    print("\n| compressor | bits/pixel (file) | cross-entropy (bits/pixel) | overhead | best-layer accuracy |")
    print("|---|---:|---:|---:|---:|")
    for c in run["compression"]:
        p = probes.get(c["step"])
        accuracy = "-" if p is None else f"{100 * p['best']:.2f}%" + (
            f" ± {100 * p['best_se']:.2f}" if p["best_se"] is not None else "")
        cross_entropy = "-" if c["cross_entropy"] is None else f"{c['cross_entropy']:.3f}"
        overhead = "-" if c["overhead_percent"] is None else f"{c['overhead_percent']:.2f}%"
        print(f"| model, step {c['step']:,} | {c['bits_per_pixel']:.3f} | {cross_entropy} | {overhead} | {accuracy} |")
    baselines = run["baselines"]
    for b in baselines["compressors"] if baselines else []:
        print(f"| {b['name']} | {b['bits_per_pixel']:.3f} | | | |")
    if baselines is None:
        print("\n(no classical compressors: run scripts/compress_baselines.py --data DATA/val.bin --images N "
              f"--out {os.path.join(args.run, 'compress', 'baselines.json')})")


if __name__ == "__main__":
    main()
