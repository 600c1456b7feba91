#!/usr/bin/env python3
"""The probe table of a run, as scripts/demo.sh and scripts/reproduce_cpu.sh print it.

    python3 scripts/probe_table.py RUN_DIR [--markdown]

One row per probed step (RUN_DIR/probe/probes.csv): the model's generative
loss on the evaluation images (bits per token), its best layer and that
layer's accuracy with its binomial standard error; then the raw pixels'
probe (RUN_DIR/probe/baseline-pixels.csv) and the best layer's margin over
them. The heading says which split, how many images and how L2 was chosen
(from the probe-NNNNNNNN.json files).
"""
import argparse
import csv
import glob
import json
import math
import os
import sys


def binomial_se(accuracy, n):
    return math.sqrt(accuracy * (1 - accuracy) / n)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (docs/results.md)")
    args = parser.parse_args()
    probe_dir = os.path.join(args.run, "probe")
    table = os.path.join(probe_dir, "probes.csv")
    if not os.path.exists(table):
        sys.exit(f"probe_table: {table}: no such file (run ./igpt probe --run {args.run} first)")
    with open(table) as f:
        rows = list(csv.DictReader(f))
    records = sorted(glob.glob(os.path.join(probe_dir, "probe-*.json")))
    record = json.load(open(records[-1])) if records else {}
    split = record.get("eval_split", "val")
    select = record.get("select", "")
    settings = record.get("settings", {})
    how = {"kfold": f"L2 by {settings.get('folds', 5)}-fold cross-validation on the training images",
           "holdout": "L2 on a 10% hold-out of the training images",
           "val": "L2 chosen on the validation split"}.get(select, "")
    n_eval = int(float(rows[0]["eval_images"])) if rows and rows[0].get("eval_images") else record.get("eval_images")
    n_train = record.get("train_images")
    print(f"probe accuracy on {n_eval:,} {split} images; probes fit on {n_train:,} training images"
          + (f"; {how}" if how else ""))
    print("(± one binomial standard error, sqrt(a(1-a)/n); loss in bits per token on the same images)")
    if args.markdown:
        print("\n| step | generative loss (bits/token) | best layer | accuracy |\n|---:|---:|---:|---:|")
    else:
        print("    step   loss (bits/token)   best layer   accuracy")
    best = None
    for row in rows:
        step, acc, layer = int(row["step"]), float(row["best_accuracy"]), int(row["best_layer"])
        loss_bits = float(row["eval_gen_loss"]) / math.log(2)
        se = binomial_se(acc, n_eval)
        text = f"{100 * acc:.2f}% ± {100 * se:.2f}"
        if args.markdown:
            print(f"| {step:,}{' (random init)' if step == 0 else ''} | {loss_bits:.3f} | {layer} | {text} |")
        else:
            print(f"  {step:6d}   {loss_bits:17.3f}   {layer:10d}   {text}")
        if best is None or acc > best[0]:
            best = (acc, se, step)
    pixels_path = os.path.join(probe_dir, "baseline-pixels.csv")
    if os.path.exists(pixels_path):
        with open(pixels_path) as f:
            pixels = float(next(csv.DictReader(f))["accuracy"])
        se = binomial_se(pixels, n_eval)
        if args.markdown:
            print(f"| raw pixels (same probe) | | | {100 * pixels:.2f}% ± {100 * se:.2f} |")
        else:
            print(f"  raw pixels (same probe)                   {100 * pixels:.2f}% ± {100 * se:.2f}")
        if best:
            margin, margin_se = best[0] - pixels, math.hypot(best[1], se)
            print(f"\nbest layer (step {best[2]:,}) - raw pixels: {100 * margin:+.2f} points "
                  f"(± {100 * margin_se:.2f}, the two errors combined as if independent)")


if __name__ == "__main__":
    main()
