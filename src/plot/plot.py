#!/usr/bin/python3
"""Plots of igpt runs: generative loss against linear-probe accuracy.

    ./igpt plot RUN_DIR [RUN_DIR ...] [--out DIR]      (or /usr/bin/python3 src/plot/plot.py ...)

Reads each run's log.jsonl, run.json and probe/probe-NNNNNNNN.json (written by
./igpt train and ./igpt probe --run) and draws, as PNG and SVG:

  loss_vs_accuracy   validation generative loss (bits/token, axis reversed as in
                     the iGPT paper) against the best layer's probe accuracy, one
                     line per run, each point a checkpoint
  accuracy_vs_layer  probe accuracy against layer depth, one line per checkpoint
                     (one panel per run)
  loss_vs_step       training and validation loss against optimizer steps

A run's probe/baseline-pixels.json (./igpt probe --baseline pixels --out
RUN_DIR/probe) adds the raw-pixel probe's accuracy as a dashed line.

--describe FILE also writes the series drawn, as JSON (for tests and scripts).
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import glob
import json
import math
import os
import sys

matplotlib = plt = None


def load_matplotlib():
    """Imported once the arguments are checked: it takes seconds, a bad argument should not."""
    global matplotlib, plt
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        fail(f"matplotlib is missing for {sys.executable}; install python3-matplotlib (scripts/setup.sh does)")


def fail(message):
    """One line, as ./igpt's own errors: 'igpt: error: ...', exit status 1."""
    sys.exit(f"igpt: error: {message}")


def load_run(run_dir):
    """Everything plotted about one run; missing pieces are empty."""
    name = os.path.basename(os.path.normpath(run_dir))
    try:
        with open(os.path.join(run_dir, "run.json")) as f:
            settings = json.load(f)
        name += f" ({settings.get('config', '?')})"
    except (OSError, ValueError):
        pass
    train, val = [], []
    log_path = os.path.join(run_dir, "log.jsonl")
    try:
        with open(log_path) as f:
            for number, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                except ValueError as e:
                    fail(f"{log_path} line {number} is not JSON ({e})")
                if "loss" in row:
                    train.append((row["step"], row["loss"]))
                elif "val_loss" in row and "checkpoint" not in row:
                    val.append((row["step"], row["val_loss"]))
    except OSError:
        pass
    probes = []
    for path in sorted(glob.glob(os.path.join(run_dir, "probe", "probe-*.json"))):
        try:
            with open(path) as f:
                p = json.load(f)
        except (OSError, ValueError) as e:
            fail(f"cannot read {path}: {e}")
        probes.append({"step": p["step"], "gen_loss": p["eval_gen_loss"],
                       "accuracy": [layer["accuracy"] for layer in p["layers"]], "best": p["best_accuracy"]})
    probes.sort(key=lambda p: p["step"])
    pixels = None
    try:
        with open(os.path.join(run_dir, "probe", "baseline-pixels.json")) as f:
            pixels = json.load(f)["best_accuracy"]
    except (OSError, ValueError, KeyError):
        pass
    return {"dir": run_dir, "name": name, "train": train, "val": val, "probes": probes, "pixels": pixels}


def draw_pixel_baseline(ax, run, series, multiple_runs):
    if run["pixels"] is None:
        return
    label = "raw pixels" + (f" ({run['name']})" if multiple_runs else "")
    ax.axhline(100 * run["pixels"], linestyle="--", color="grey", linewidth=1, label=label)
    series.append({"label": label, "baseline": 100 * run["pixels"]})


def save(fig, out_dir, stem):
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(out_dir, f"{stem}.{ext}"), dpi=130, bbox_inches="tight")
    plt.close(fig)


def plot_loss_vs_accuracy(runs, out_dir, described):
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    series = []
    for run in runs:
        points = [(p["gen_loss"] / math.log(2), 100 * p["best"], p["step"]) for p in run["probes"]
                  if p["gen_loss"] is not None]
        if not points:
            continue
        xs, ys, steps = zip(*points)
        ax.plot(xs, ys, "o-", label=run["name"])
        for x, y, s in points:
            ax.annotate(str(s), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        series.append({"label": run["name"], "x": list(xs), "y": list(ys), "steps": list(steps)})
        draw_pixel_baseline(ax, run, series, len(runs) > 1)
    ax.invert_xaxis()  # better compression to the right, as in the paper
    ax.set_xlabel("validation generative loss (bits per token, lower is better →)")
    ax.set_ylabel("best-layer linear probe accuracy (%)")
    ax.set_title("Next-pixel prediction vs. linear probe accuracy")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    save(fig, out_dir, "loss_vs_accuracy")
    described["loss_vs_accuracy"] = series


def plot_accuracy_vs_layer(runs, out_dir, described):
    fig, axes = plt.subplots(1, len(runs), figsize=(6.0 * len(runs), 4.4), squeeze=False)
    series = []
    for ax, run in zip(axes[0], runs):
        colors = plt.cm.viridis([i / max(1, len(run["probes"]) - 1) for i in range(len(run["probes"]))])
        for p, color in zip(run["probes"], colors):  # early checkpoints dark, late ones light
            label = "random init" if p["step"] == 0 else f"step {p['step']}"
            ys = [100 * a for a in p["accuracy"]]
            ax.plot(range(len(ys)), ys, "o-", label=label, markersize=3, color=color)
            series.append({"run": run["name"], "label": label, "x": list(range(len(ys))), "y": ys})
        draw_pixel_baseline(ax, run, series, False)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("layer (0 = first block's input; last = final norm)")
        ax.set_ylabel("linear probe accuracy (%)")
        ax.set_title(run["name"])
        ax.grid(alpha=0.3)
        if run["probes"]:
            ax.legend(fontsize=7)
    save(fig, out_dir, "accuracy_vs_layer")
    described["accuracy_vs_layer"] = series


def plot_loss_vs_step(runs, out_dir, described):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    series = []
    for run in runs:
        if run["train"]:
            xs, ys = zip(*run["train"])
            line, = ax.plot(xs, ys, alpha=0.5, linewidth=0.8, label=f"{run['name']} train")
            series.append({"label": f"{run['name']} train", "x": list(xs), "y": list(ys)})
            color = line.get_color()
        else:
            color = None
        if run["val"]:
            xs, ys = zip(*run["val"])
            ax.plot(xs, ys, "o-", color=color, label=f"{run['name']} validation")
            series.append({"label": f"{run['name']} validation", "x": list(xs), "y": list(ys)})
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("next-pixel loss (nats per token)")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    save(fig, out_dir, "loss_vs_step")
    described["loss_vs_step"] = series


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/plots of the first run)")
    parser.add_argument("--describe", help="write the plotted series as JSON to this file")
    args = parser.parse_args()
    for run_dir in args.runs:
        if not os.path.isdir(run_dir):
            fail(f"{run_dir}: no such run folder")
    runs = [load_run(d) for d in args.runs]
    if not any(r["train"] or r["probes"] for r in runs):
        fail("nothing to plot: no log.jsonl lines or probe results in " + ", ".join(args.runs))
    # Where the outputs go is checked before anything is drawn: a failed plot leaves nothing.
    if args.describe and not os.path.isdir(os.path.dirname(args.describe) or "."):
        fail(f"--describe {args.describe}: its folder does not exist")
    out_dir = args.out or os.path.join(args.runs[0], "plots")
    load_matplotlib()
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        fail(f"cannot create the output folder {out_dir}: {e.strerror}")
    described = {}
    plot_loss_vs_accuracy(runs, out_dir, described)
    plot_accuracy_vs_layer(runs, out_dir, described)
    plot_loss_vs_step(runs, out_dir, described)
    if args.describe:
        try:
            with open(args.describe, "w") as f:
                json.dump(described, f, indent=1)
        except OSError as e:
            fail(f"cannot write {args.describe}: {e.strerror}")
    print(f"plot: wrote loss_vs_accuracy, accuracy_vs_layer, loss_vs_step (.png, .svg) to {out_dir}")


if __name__ == "__main__":
    main()
