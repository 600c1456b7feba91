#!/usr/bin/python3
"""Plots of igpt runs: generative loss against linear-probe accuracy.

    ./igpt plot RUN_DIR [RUN_DIR ...] [--out DIR]      (or /usr/bin/python3 src/plot/plot.py ...)

Reads each run's log.jsonl, run.json and probe results (probe/probes.csv and
probe/probe-NNNNNNNN.json, written by ./igpt train and ./igpt probe --run) and
draws, as PNG and SVG:

  loss_vs_accuracy   the model's generative loss on the probe's evaluation images
                     against the best layer's probe accuracy, one line per run,
                     each point a checkpoint labelled with its step (loss axis
                     reversed, as in the iGPT paper). The random init's loss is
                     far above the trained ones: it gets its own narrow panel
                     (a broken axis) so that the trained points spread out.
  accuracy_vs_layer  probe accuracy against the layer probed (the input of each
                     block, then the final norm), one line per checkpoint coloured
                     by its step (one panel per run)
  loss_vs_step       training loss (raw, faint; a centred moving average, bold) and validation
                     loss against optimizer steps
  compression_vs_accuracy   only for runs with ./igpt compress results (RUN_DIR/compress/
                     compress-NNNNNNNN.json): the bits per pixel of each compressed
                     checkpoint against its best-layer probe accuracy, one line per run,
                     points labelled by step, the model's cross-entropy as a faint x; the
                     classical compressors on the same tokens (RUN_DIR/compress/baselines.json,
                     from scripts/compress_baselines.py; each at its better stream) as marks
                     on the x axis. Axis reversed: better compression to the right.

Every loss is in bits per token (a token is one pixel's palette color: the
paper's bits per dimension would divide by the 3 color channels). Every probe
accuracy carries its binomial standard error sqrt(a (1 - a) / n), n the number
of evaluation images, as error bars or bands. A run's probe/baseline-pixels.json
(./igpt probe --baseline pixels --out RUN_DIR/probe) adds the raw-pixel probe as
a dashed line with its band.

--describe FILE also writes what was drawn, as JSON (for tests and scripts).
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import csv
import glob
import json
import math
import os
import sys

matplotlib = plt = None

LN2 = math.log(2)
LOSS_UNIT = "bits per token"


def load_matplotlib():
    """Imported once the arguments are checked: it takes seconds, a bad argument should not."""
    global matplotlib, plt
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.colors
        import matplotlib.patches
        import matplotlib.pyplot as plt
        import matplotlib.ticker
        import matplotlib.transforms
    except ImportError:
        fail(f"matplotlib is missing for {sys.executable}; install python3-matplotlib (scripts/setup.sh does)")


def fail(message):
    """One line, as ./igpt's own errors: 'igpt: error: ...', exit status 1."""
    sys.exit(f"igpt: error: {message}")


def warn(message):
    print(f"plot: warning: {message}", file=sys.stderr)


def binomial_se(accuracy, n_eval):
    """The standard error of an accuracy measured on n_eval images (None when n_eval is unknown)."""
    if not n_eval:
        return None
    return math.sqrt(accuracy * (1 - accuracy) / n_eval)


# --- Reading a run ---------------------------------------------------------------------------


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")


def read_csv(path):
    """A probes.csv as dicts, or None when there is none. Columns are found by name: the
    newer ones (eval_images, best_accuracy_se) come at the end, and older files lack them."""
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return None
    except (OSError, csv.Error) as e:
        fail(f"cannot read {path}: {e}")


def number(row, key, path):
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError):
        fail(f"{path}: row of step {row.get('step', '?')} has no number in column {key}")
    return None if math.isnan(value) else value


def probe_from_json(p, path):
    try:
        return {"step": p["step"], "gen_loss": p["eval_gen_loss"], "best": p["best_accuracy"],
                "accuracy": [layer["accuracy"] for layer in p["layers"]], "n_eval": p.get("eval_images"),
                "n_train": p.get("train_images"), "split": p.get("eval_split")}
    except (KeyError, TypeError) as e:
        fail(f"{path}: not a probe result (no {e})")


def probe_from_csv_row(row, path, recorded):
    """A probes.csv row; what the table lacks (the split, in older tables the evaluation count)
    comes from the step's probe-NNNNNNNN.json beside it."""
    layers = sorted((k for k in row if k and k.startswith("acc_layer_") and row[k] not in (None, "")),
                    key=lambda k: int(k[len("acc_layer_"):]))
    step = int(number(row, "step", path))
    probe = {"step": step, "gen_loss": number(row, "eval_gen_loss", path), "best": number(row, "best_accuracy", path),
             "accuracy": [number(row, k, path) for k in layers], "n_eval": None, "n_train": None, "split": None}
    json_probe = recorded.get(step)
    if json_probe:
        for key in ("n_eval", "n_train", "split"):
            probe[key] = json_probe[key]
    if row.get("eval_images") not in (None, ""):
        probe["n_eval"] = int(number(row, "eval_images", path))
    if row.get("best_accuracy_se") not in (None, "") and probe["n_eval"]:
        # The table's own standard error must be the one drawn: a mismatch means the table and
        # the counts come from different probes.
        table_se, se = number(row, "best_accuracy_se", path), binomial_se(probe["best"], probe["n_eval"])
        if abs(table_se - se) > 1e-4 + 0.02 * se:
            warn(f"{path}: step {step}: best_accuracy_se {table_se:.6f}, but sqrt(a(1-a)/n) gives {se:.6f}")
    return probe


def load_probes(probe_dir):
    """The probed steps of a run, in order. probes.csv (./igpt probe --run) lists exactly the
    results made with the run's current settings; without it, every probe-NNNNNNNN.json."""
    recorded = {}
    for path in sorted(glob.glob(os.path.join(probe_dir, "probe-*.json"))):
        p = probe_from_json(read_json(path), path)
        recorded[p["step"]] = p
    table_path = os.path.join(probe_dir, "probes.csv")
    rows = read_csv(table_path)
    if rows is None:
        probes = list(recorded.values())
    else:
        probes = [probe_from_csv_row(row, table_path, recorded) for row in rows]
    for p in probes:  # the best layer is the one the probe reports (it may be chosen on held-out data)
        p["se"] = [binomial_se(a, p["n_eval"]) for a in p["accuracy"]]
        p["best_se"] = binomial_se(p["best"], p["n_eval"])
    return sorted((p for p in probes if p["accuracy"]), key=lambda p: p["step"])


def load_pixel_baseline(probe_dir):
    """The raw-pixel probe's accuracy and evaluation count, or None."""
    path = os.path.join(probe_dir, "baseline-pixels.json")
    if os.path.exists(path):
        p = read_json(path)
        if "best_accuracy" not in p:
            fail(f"{path}: no best_accuracy")
        return {"accuracy": p["best_accuracy"], "n_eval": p.get("eval_images"), "split": p.get("eval_split"),
                "se": binomial_se(p["best_accuracy"], p.get("eval_images"))}
    rows = read_csv(os.path.join(probe_dir, "baseline-pixels.csv"))
    if not rows:
        return None
    accuracy = max(number(r, "accuracy", "baseline-pixels.csv") for r in rows)
    n_eval = int(number(rows[0], "eval_images", "baseline-pixels.csv")) if rows[0].get("eval_images") else None
    return {"accuracy": accuracy, "n_eval": n_eval, "split": None, "se": binomial_se(accuracy, n_eval)}


def load_log(log_path):
    """Training losses, validation losses (in bits per token) and the validation image count."""
    train, val, val_images = [], [], None
    try:
        with open(log_path) as f:
            for line_number, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                except ValueError as e:
                    fail(f"{log_path} line {line_number} is not JSON ({e})")
                if "loss" in row:
                    train.append((row["step"], row["loss"] / LN2))
                elif "val_loss" in row and "checkpoint" not in row:
                    val.append((row["step"], row["val_loss"] / LN2))
                    val_images = row.get("eval_images", val_images)
    except OSError:
        pass
    return train, val, val_images


def load_compression(compress_dir):
    """./igpt compress's results (compress/compress-NNNNNNNN.json), one per checkpoint, by step."""
    results = []
    for path in sorted(glob.glob(os.path.join(compress_dir, "compress-*.json"))):
        c = read_json(path)
        try:
            results.append({"step": int(c["step"]), "bits_per_pixel": float(c["bits_per_pixel"]),
                            "cross_entropy": c.get("cross_entropy_bits_per_pixel"),
                            "overhead_percent": c.get("overhead_percent"), "images": c.get("images"),
                            "pixels": c.get("pixels"), "bytes": c.get("bytes"), "data": c.get("data")})
        except (KeyError, TypeError, ValueError) as e:
            fail(f"{path}: not a compression result (no number for {e})")
    return sorted(results, key=lambda c: c["step"])


def load_baselines(compress_dir):
    """The classical compressors on the same images (scripts/compress_baselines.py's JSON,
    saved as compress/baselines.json), or None."""
    path = os.path.join(compress_dir, "baselines.json")
    if not os.path.exists(path):
        return None
    b = read_json(path)
    try:
        compressors = [{"name": str(c["name"]), "how": c.get("how", ""), "bytes": c.get("bytes"),
                        "bits_per_pixel": float(c["bits_per_pixel"])} for c in b["compressors"]]
        return {"path": path, "images": b.get("images"), "pixels": b.get("pixels"), "data": b.get("data"),
                "colors": b.get("colors"), "compressors": compressors}
    except (KeyError, TypeError, ValueError) as e:
        fail(f"{path}: not a compress_baselines.py result (no {e})")


def load_run(run_dir):
    """Everything plotted about one run; missing pieces are empty."""
    name = os.path.basename(os.path.normpath(run_dir))
    try:
        with open(os.path.join(run_dir, "run.json")) as f:
            settings = json.load(f)
        # The width and depth when run.json has them: --d-model/--n-layer override the named config.
        model = settings.get("model", {})
        if "d_model" in model and "n_layer" in model:
            name += f" (d={model['d_model']}, {model['n_layer']} blocks)"
        else:
            name += f" ({settings.get('config', '?')})"
    except (OSError, ValueError):
        pass
    train, val, val_images = load_log(os.path.join(run_dir, "log.jsonl"))
    probe_dir = os.path.join(run_dir, "probe")
    compress_dir = os.path.join(run_dir, "compress")
    return {"dir": run_dir, "name": name, "train": train, "val": val, "val_images": val_images,
            "probes": load_probes(probe_dir), "pixels": load_pixel_baseline(probe_dir),
            "compression": load_compression(compress_dir), "baselines": load_baselines(compress_dir)}


# --- Shared pieces ---------------------------------------------------------------------------


def evaluation_words(runs):
    """'500 val images' (or '500-1,000 val images'): what the probe accuracies were measured on."""
    counts = sorted({p["n_eval"] for r in runs for p in r["probes"] if p["n_eval"]})
    splits = sorted({p["split"] for r in runs for p in r["probes"] if p["split"]})
    split = "/".join(splits) + " " if splits else ""
    if not counts:
        return f"{split}evaluation images (count unknown: no error bars)"
    if len(counts) == 1:
        return f"{counts[0]:,} {split}images"
    return f"{counts[0]:,}-{counts[-1]:,} {split}images"


def training_words(runs):
    """', fit on 2,000 train images': how many images the probes were trained on, when recorded."""
    counts = sorted({p["n_train"] for r in runs for p in r["probes"] if p["n_train"]})
    if not counts:
        return ""
    return f", fit on {counts[0]:,}" + (f"-{counts[-1]:,}" if len(counts) > 1 else "") + " train images"


def draw_pixel_baseline(axes, run, series, label):
    """The raw-pixel probe: a dashed line, its ±1 s.e. band, on every panel in `axes`."""
    pixels = run["pixels"]
    if pixels is None:
        return
    y = 100 * pixels["accuracy"]
    se = 100 * pixels["se"] if pixels["se"] is not None else None
    for i, ax in enumerate(axes):
        ax.axhline(y, linestyle="--", color="dimgrey", linewidth=1.2, label=label if i == 0 else None, zorder=1)
        if se is not None:
            ax.axhspan(y - se, y + se, color="grey", alpha=0.15, linewidth=0, zorder=0)
    series.append({"label": label, "baseline": y, "se": se, "n_eval": pixels["n_eval"]})


def legend_below(ax, columns=3, below=0.16):
    """The legend under the plot (`below` axes heights under its bottom edge), off the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -below), ncol=min(columns, len(handles)),
                  fontsize=8, frameon=False)


def save(fig, out_dir, stem):
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(out_dir, f"{stem}.{ext}"), dpi=130, bbox_inches="tight")
    plt.close(fig)


# --- Labels that do not overlap --------------------------------------------------------------

# Where a label may go, in points from its data point: right, left, above, below, then the
# diagonals, then twice and three times as far (with a leader line).
LABEL_OFFSETS = [(5, 3), (-5, 3), (0, 7), (0, -7), (5, -8), (-5, -8), (5, 8), (-5, 8)]


def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def free_place(point, size, inside, taken, pixels_per_point):
    """The first box (display pixels) for a label of `size` near `point`, inside the axes and
    clear of every box in `taken`, trying LABEL_OFFSETS at 1, 2, then 3 times their distance;
    with how far it went, or (None, 0)."""
    (px, py), (width, height) = point, size
    for distance in (1, 2, 3):
        for dx, dy in LABEL_OFFSETS:
            # The offset is to the label's nearest edge: its left edge when right of the point, etc.
            left = px + distance * dx * pixels_per_point - (width if dx < 0 else width / 2 if dx == 0 else 0)
            bottom = py + distance * dy * pixels_per_point - (height if dy < 0 else 0)
            box = (left, bottom, left + width, bottom + height)
            if (box[0] >= inside.x0 and box[2] <= inside.x1 and box[1] >= inside.y0 and box[3] <= inside.y1
                    and not any(overlaps(box, t) for t in taken)):
                return box, distance
    return None, 0


def place_labels(fig, targets, obstacles):
    """Annotates points without overlap, in their line's color. targets: (ax, x, y, text, color);
    obstacles: boxes in display pixels (markers, error bars) no label may cover. A label with no
    free place (free_place) is left out. Returns [{text, box, placed}], boxes in display pixels."""
    renderer = fig.canvas.get_renderer()
    taken = list(obstacles)
    placed = []
    for ax, x, y, text, color in targets:
        measure = ax.text(0, 0, text, fontsize=7)
        extent = measure.get_window_extent(renderer)
        measure.remove()
        box, distance = free_place(ax.transData.transform((x, y)), (extent.width, extent.height),
                                   ax.get_window_extent(renderer), taken, fig.dpi / 72)
        placed.append({"text": text, "box": [round(v, 2) for v in box] if box else None, "placed": box is not None})
        if box is None:
            continue
        taken.append(box)
        ax.annotate(text, (x, y), xytext=ax.transData.inverted().transform((box[0], box[1])), textcoords="data",
                    fontsize=7, ha="left", va="bottom", color=color,
                    arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.5} if distance > 1 else None)
    return placed


def point_obstacles(ax, xs, ys, yerrs):
    """Boxes (display pixels) of markers and their error bars, which labels must leave visible."""
    boxes = []
    for x, y, e in zip(xs, ys, yerrs):
        px, py = ax.transData.transform((x, y))
        boxes.append((px - 4, py - 4, px + 4, py + 4))
        if e:
            top = ax.transData.transform((x, y + e))[1]
            bottom = ax.transData.transform((x, y - e))[1]
            boxes.append((px - 2, min(top, bottom), px + 2, max(top, bottom)))
    return boxes


# --- loss_vs_accuracy ------------------------------------------------------------------------


def split_init_points(runs):
    """Whether the random-init points (step 0) get a panel of their own: when the gap between
    their loss and the trained points' is wider than the trained points' spread, one axis
    would squeeze every trained point into a corner."""
    init = [p["gen_loss"] / LN2 for r in runs for p in r["probes"] if p["step"] == 0 and p["gen_loss"] is not None]
    trained = [p["gen_loss"] / LN2 for r in runs for p in r["probes"] if p["step"] > 0 and p["gen_loss"] is not None]
    if not init or not trained:
        return False
    spread = max(max(trained) - min(trained), 0.05)
    return min(init) - max(trained) > spread


def padded(values, fraction, floor):
    low, high = min(values), max(values)
    pad = max((high - low) * fraction, floor)
    return [low - pad, high + pad]


def draw_axis_break(ax_init, ax_main):
    """The two diagonal strokes on each side of a broken x axis."""
    ax_init.spines["right"].set_visible(False)
    ax_main.spines["left"].set_visible(False)
    ax_main.tick_params(axis="y", left=False)
    stroke = {"marker": [(-1, -1.5), (1, 1.5)], "markersize": 8, "linestyle": "none", "color": "k", "mec": "k",
              "mew": 1, "clip_on": False}
    ax_init.plot([1, 1], [0, 1], transform=ax_init.transAxes, **stroke)
    ax_main.plot([0, 0], [0, 1], transform=ax_main.transAxes, **stroke)


def loss_accuracy_points(run):
    return [(p["gen_loss"] / LN2, 100 * p["best"], 100 * p["best_se"] if p["best_se"] is not None else None,
             p["step"], p["n_eval"]) for p in run["probes"] if p["gen_loss"] is not None]


def plot_loss_vs_accuracy(runs, out_dir, described):
    broken = split_init_points(runs)
    if broken:
        fig, (ax_init, ax) = plt.subplots(1, 2, sharey=True, figsize=(7.2, 4.8),
                                          gridspec_kw={"width_ratios": [1, 5], "wspace": 0.06})
    else:
        fig, ax = plt.subplots(figsize=(6.6, 4.8))
        ax_init = None
    fig.subplots_adjust(left=0.11, right=0.97, top=0.86, bottom=0.14)
    series, targets, obstacles, drawn = [], [], [], []
    for run in runs:
        points = loss_accuracy_points(run)
        if not points:
            continue
        xs, ys, ses, steps, counts = (list(v) for v in zip(*points))
        panels = ["init" if broken and s == 0 else "main" for s in steps]
        main = [i for i, panel in enumerate(panels) if panel == "main"]
        line = ax.errorbar([xs[i] for i in main], [ys[i] for i in main], yerr=[ses[i] or 0 for i in main], fmt="o-",
                           capsize=3, markersize=4, linewidth=1.4, label=run["name"])
        color = line[0].get_color()
        if broken:
            init = [i for i, panel in enumerate(panels) if panel == "init"]
            ax_init.errorbar([xs[i] for i in init], [ys[i] for i in init], yerr=[ses[i] or 0 for i in init], fmt="o",
                             capsize=3, markersize=4, color=color)
        series.append({"label": run["name"], "x": xs, "y": ys, "se": ses, "n_eval": counts, "steps": steps,
                       "panel": panels})
        drawn.append((xs, ys, ses, steps, panels, color))
    # One dashed line per distinct baseline: runs on the same prepared data share theirs.
    baselines = {}
    for run in runs:
        if run["pixels"] is not None:
            baselines.setdefault((run["pixels"]["accuracy"], run["pixels"]["n_eval"]), []).append(run)
    for shared in baselines.values():
        names = f" ({', '.join(r['name'] for r in shared)})" if len(baselines) > 1 else ""
        draw_pixel_baseline([ax] + ([ax_init] if broken else []), shared[0], series, "raw pixels ±1 s.e." + names)
    all_x = [x for xs, *_ in drawn for x in xs]
    if all_x:
        init_x = [x for xs, _, _, _, panels, _ in drawn for x, p in zip(xs, panels) if p == "init"]
        main_x = [x for xs, _, _, _, panels, _ in drawn for x, p in zip(xs, panels) if p == "main"]
        ax.set_xlim(*reversed(padded(main_x, 0.08, 0.02)))  # reversed: better compression to the right, as in the paper
        if broken:
            ax_init.set_xlim(*reversed(padded(init_x, 0.5, 0.15)))
    all_y = [y + s * e for _, ys, ses, *_ in drawn for y, e in zip(ys, ses) for s in (-1, 1) if e] + \
            [y for _, ys, *_ in drawn for y in ys] + [s["baseline"] for s in series if "baseline" in s]
    if all_y:
        ax.set_ylim(*padded(all_y, 0.08, 0.5))
    fig.canvas.draw()  # the limits are final: labels are placed in display pixels
    for xs, ys, ses, steps, panels, color in drawn:
        for x, y, e, step, panel in zip(xs, ys, ses, steps, panels):
            target_ax = ax_init if panel == "init" else ax
            targets.append((target_ax, x, y, "init" if step == 0 else str(step), color))
            obstacles += point_obstacles(target_ax, [x], [y], [e])
        if broken:  # the path from the random init to the first trained checkpoint crosses the break
            first_init = next((i for i, p in enumerate(panels) if p == "init"), None)
            first_main = next((i for i, p in enumerate(panels) if p == "main"), None)
            if first_init is not None and first_main is not None:
                fig.add_artist(matplotlib.patches.ConnectionPatch(
                    (xs[first_init], ys[first_init]), (xs[first_main], ys[first_main]), "data", "data", axesA=ax_init,
                    axesB=ax, color=color, linestyle=":", linewidth=1))
    labels = place_labels(fig, targets, obstacles)
    ax.set_xlabel(f"generative loss on the probe's evaluation images\n({LOSS_UNIT}; lower is better →)")
    (ax_init or ax).set_ylabel("best-layer linear probe accuracy (%)")
    if broken:
        draw_axis_break(ax_init, ax)
        ax_init.set_title("random init", fontsize=8)
        ax_init.set_xticks(sorted({round(x, 1) for x in init_x}))
        ax_init.grid(alpha=0.3)
    title = ("Next-pixel prediction vs. linear probe accuracy\n"
             f"probe accuracy on {evaluation_words(runs)}{training_words(runs)}; error bars ±1 s.e.; "
             "points labelled by step")
    fig.suptitle(title, fontsize=10)
    ax.grid(alpha=0.3)
    legend_below(ax, below=0.2)
    save(fig, out_dir, "loss_vs_accuracy")
    described["loss_vs_accuracy"] = {
        "unit": LOSS_UNIT, "title": title, "broken_axis": broken, "series": series, "labels": labels,
        "main_xlim": list(ax.get_xlim()), "init_xlim": list(ax_init.get_xlim()) if broken else None}


# --- compression_vs_accuracy -----------------------------------------------------------------

COMPRESSION_UNIT = "bits per pixel"


def compression_points(run):
    """(file bits/pixel, cross-entropy bits/pixel, accuracy %, s.e. %, step, n_eval) of each
    compressed checkpoint that was also probed, and the compressed steps that were not."""
    probes = {p["step"]: p for p in run["probes"]}
    points, unprobed = [], []
    for c in run["compression"]:
        p = probes.get(c["step"])
        if p is None:
            unprobed.append(c["step"])
            continue
        points.append((c["bits_per_pixel"], c["cross_entropy"], 100 * p["best"],
                       100 * p["best_se"] if p["best_se"] is not None else None, c["step"], p["n_eval"]))
    return points, unprobed


def image_mismatch(run):
    """Why a run's compression figures are not all on the same images, or None: the checkpoints
    and the classical compressors must measure the same pixels to share an axis."""
    counts = sorted({(c["images"], c["pixels"]) for c in run["compression"]}, key=str)
    if len(counts) > 1:
        return f"checkpoints compressed on different images: {', '.join(f'{i} images/{p} pixels' for i, p in counts)}"
    b = run["baselines"]
    if b is not None and counts and counts[0] != (b["images"], b["pixels"]):
        return (f"classical compressors on {b['images']} images/{b['pixels']} pixels, the model on "
                f"{counts[0][0]} images/{counts[0][1]} pixels ({b['path']})")
    datas = {c["data"] for c in run["compression"] if c["data"]} | ({b["data"]} if b is not None and b["data"] else set())
    if len(distinct_files(datas)) > 1:
        return f"compression figures from different data: {', '.join(sorted(datas))}"
    return None


def distinct_files(paths):
    """The files recorded paths name: the files themselves when all can be found from here (the
    paths may be relative to other folders), else the splits' names (val.bin vs test.bin)."""
    if all(os.path.exists(p) for p in paths):
        return {os.path.realpath(p) for p in paths}
    return {os.path.basename(p) for p in paths}


def best_of_each_compressor(baselines):
    """Each compressor once, at its better stream (u8 or u16): the mark a reader compares with."""
    best = {}
    for c in baselines["compressors"]:
        family = c["name"].split(" (")[0]
        if family not in best or c["bits_per_pixel"] < best[family]["bits_per_pixel"]:
            best[family] = c
    return sorted(best.values(), key=lambda c: c["bits_per_pixel"])


def compressor_marks(runs):
    """The marks on the x axis: runs on the same images share theirs (one set per distinct file)."""
    distinct = {}
    for run in runs:
        b = run["baselines"]
        if b is not None and run["compression"]:
            key = (b["pixels"], tuple((c["name"], c["bits_per_pixel"]) for c in b["compressors"]))
            distinct.setdefault(key, (b, []))[1].append(run["name"])
    marks = []
    for b, names in distinct.values():
        suffix = f" ({', '.join(names)})" if len(distinct) > 1 else ""
        marks += [{"name": c["name"] + suffix, "x": c["bits_per_pixel"], "bytes": c["bytes"], "how": c["how"],
                   "images": b["images"], "runs": names} for c in best_of_each_compressor(b)]
    return marks


def draw_compressor_marks(fig, ax, marks):
    """A triangle on the x axis at each compressor's bits per pixel, its name upright above it,
    names pushed apart (with a leader line) where they would touch. Returns their boxes."""
    renderer = fig.canvas.get_renderer()
    along = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
    gap = 11 * fig.dpi / 72
    boxes, last_right = [], -math.inf
    for mark in sorted(marks, key=lambda m: ax.transData.transform((m["x"], 0))[0]):
        ax.plot([mark["x"]], [0], "^", transform=along, color="dimgrey", markersize=7, clip_on=False, zorder=5)
        px = ax.transData.transform((mark["x"], 0))[0]
        text_x = max(px, last_right + gap)
        data_x = ax.transData.inverted().transform((text_x, 0))[0]
        label = ax.text(data_x, 0.04, mark["name"], transform=along, rotation=90, ha="center", va="bottom", fontsize=7,
                        color="dimgrey")
        if text_x != px:
            ax.plot([mark["x"], data_x], [0.01, 0.035], transform=along, color="grey", linewidth=0.5)
        extent = label.get_window_extent(renderer)
        boxes.append((extent.x0, extent.y0, extent.x1, extent.y1))
        mark["label_box"] = [round(v, 2) for v in boxes[-1]]
        last_right = text_x
    return boxes


def compression_words(runs):
    """'1,000 val images': what the checkpoints were compressed on."""
    counts = sorted({c["images"] for r in runs for c in r["compression"] if c["images"]})
    if not counts:
        return "images (count unknown)"
    return f"{counts[0]:,}" + (f"-{counts[-1]:,}" if len(counts) > 1 else "") + " images"


def plot_compression_vs_accuracy(runs, out_dir, described):
    fig, ax = plt.subplots(figsize=(6.6, 4.8))
    fig.subplots_adjust(left=0.11, right=0.97, top=0.86, bottom=0.14)
    series, drawn, notes = [], [], []
    for run in runs:
        if not run["compression"]:
            continue
        points, unprobed = compression_points(run)
        mismatch = image_mismatch(run)
        if mismatch:
            warn(f"{run['dir']}: {mismatch}")
            notes.append(f"{run['name']}: {mismatch}")
        if unprobed:
            notes.append(f"{run['name']}: step {', '.join(map(str, unprobed))} compressed but not probed (not drawn)")
        entry = {"label": run["name"], "steps": [], "x": [], "y": [], "se": [], "n_eval": [], "cross_entropy": [],
                 "unprobed_steps": unprobed, "same_images": mismatch is None}
        series.append(entry)
        if not points:
            continue
        xs, ces, ys, ses, steps, counts = (list(v) for v in zip(*points))
        entry.update({"steps": steps, "x": xs, "y": ys, "se": ses, "n_eval": counts, "cross_entropy": ces})
        line = ax.errorbar(xs, ys, yerr=[e or 0 for e in ses], fmt="o-", capsize=3, markersize=4, linewidth=1.4,
                           label=run["name"], zorder=3)
        color = line[0].get_color()
        known = [(ce, y) for ce, y in zip(ces, ys) if ce is not None]
        if known:  # the model's ideal size: the file is this plus the coder's overhead
            ax.plot(*zip(*known), "x", color=color, alpha=0.35, markersize=5, label=f"{run['name']}: cross-entropy")
        drawn.append((xs, ys, ses, steps, color))
    baselines = {}
    for run in runs:
        if run["pixels"] is not None and run["compression"]:
            baselines.setdefault((run["pixels"]["accuracy"], run["pixels"]["n_eval"]), []).append(run)
    for shared in baselines.values():
        names = f" ({', '.join(r['name'] for r in shared)})" if len(baselines) > 1 else ""
        draw_pixel_baseline([ax], shared[0], series, "raw-pixel probe ±1 s.e." + names)
    marks = compressor_marks(runs)
    all_x = [x for xs, *_ in drawn for x in xs] + [m["x"] for m in marks] + \
            [ce for s in series for ce in s.get("cross_entropy", []) if ce is not None]
    if all_x:
        ax.set_xlim(*reversed(padded(all_x, 0.06, 0.02)))  # reversed: better compression to the right
    all_y = [y + s * e for _, ys, ses, *_ in drawn for y, e in zip(ys, ses) for s in (-1, 1) if e] + \
            [y for _, ys, *_ in drawn for y in ys] + [s["baseline"] for s in series if "baseline" in s]
    if all_y:
        low, high = padded(all_y, 0.08, 0.5)
        # The bottom third is left to the compressors' names, standing on the axis.
        ax.set_ylim(low - (0.5 * (high - low) if marks else 0), high)
    fig.canvas.draw()  # the limits are final: labels are placed in display pixels
    obstacles = draw_compressor_marks(fig, ax, marks)
    targets = []
    for xs, ys, ses, steps, color in drawn:
        targets += [(ax, x, y, "init" if step == 0 else str(step), color) for x, y, step in zip(xs, ys, steps)]
        obstacles += point_obstacles(ax, xs, ys, ses)
    labels = place_labels(fig, targets, obstacles)
    ax.set_xlabel(f"size of the compressed images ({COMPRESSION_UNIT}, a pixel is one palette token;\n"
                  "lower is better →)   ▲ classical compressors on the same tokens")
    ax.set_ylabel("best-layer linear probe accuracy (%)")
    title = ("Lossless compression vs. linear probe accuracy\n"
             f"the model as a compressor on {compression_words(runs)}; probe accuracy on {evaluation_words(runs)}; "
             "±1 s.e.; points labelled by step")
    fig.suptitle(title, fontsize=10)
    if notes:  # under the legend, off the data
        ax.text(0, -0.4, "\n".join(notes), transform=ax.transAxes, fontsize=7, va="top", color="firebrick")
    ax.grid(alpha=0.3)
    legend_below(ax, columns=2, below=0.22)
    save(fig, out_dir, "compression_vs_accuracy")
    described["compression_vs_accuracy"] = {"unit": COMPRESSION_UNIT, "title": title, "series": series,
                                            "compressors": marks, "labels": labels, "notes": notes,
                                            "xlim": list(ax.get_xlim())}


# --- accuracy_vs_layer -----------------------------------------------------------------------


def layer_names(count):
    """Features of layer l < count-1 are the (normalised) input of block l; the last are the final norm's."""
    return [f"block {i} input" for i in range(count - 1)] + ["final norm"]


def layer_ticks(ax, count):
    """Numbered blocks, the last tick named: at most ~12 numbers, the final norm always shown."""
    every = max(1, math.ceil((count - 1) / 12))
    ticks = [i for i in range(count - 1) if i % every == 0] + [count - 1]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(i) for i in ticks[:-1]] + ["final\nnorm"])
    ax.set_xlabel("features probed: input of block i (normalised), then the final norm")


def step_colormap():
    """viridis without its last eighth: the pale yellow of the last checkpoint is hard to see on white."""
    return matplotlib.colors.ListedColormap(plt.cm.viridis([i / 255 * 0.88 for i in range(256)]))


def plot_accuracy_vs_layer(runs, out_dir, described):
    fig, axes = plt.subplots(1, len(runs), figsize=(6.6 * len(runs), 4.8), squeeze=False)
    fig.subplots_adjust(left=0.1, right=0.95, top=0.84, bottom=0.2, wspace=0.35)
    panels = []
    for ax, run in zip(axes[0], runs):
        series = []
        steps = [p["step"] for p in run["probes"]]
        norm = matplotlib.colors.Normalize(vmin=0, vmax=max(steps) if steps and max(steps) > 0 else 1)
        cmap = step_colormap()
        # Bands on every line while there are few; beyond 4 they merge into one smear, so only
        # the first and the last checkpoint keep theirs.
        banded = {p["step"] for p in run["probes"]} if len(steps) <= 4 else {min(steps), max(steps)}
        for p in run["probes"]:  # early checkpoints dark, late ones light
            ys = [100 * a for a in p["accuracy"]]
            ses = [100 * e if e is not None else None for e in p["se"]]
            xs = list(range(len(ys)))
            color = cmap(norm(p["step"]))
            label = "random init (step 0)" if p["step"] == 0 else None
            ax.plot(xs, ys, "o-" if p["step"] else "o--", color=color, markersize=3, linewidth=1.3, label=label)
            band = p["step"] in banded and all(e is not None for e in ses)
            if band:
                ax.fill_between(xs, [y - e for y, e in zip(ys, ses)], [y + e for y, e in zip(ys, ses)], color=color,
                                alpha=0.12, linewidth=0)
            series.append({"step": p["step"], "x": xs, "y": ys, "se": ses, "n_eval": p["n_eval"], "band": band,
                           "layers": layer_names(len(ys))})
        draw_pixel_baseline([ax], run, series, "raw pixels ±1 s.e.")
        count = max((len(p["accuracy"]) for p in run["probes"]), default=0)
        if count:
            layer_ticks(ax, count)
        if steps:
            colorbar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
            colorbar.set_label("checkpoint step" + (" (bands ±1 s.e.)" if len(banded) == len(steps) else
                                                    " (±1 s.e. bands: first, last)"))
        ax.set_ylabel("linear probe accuracy (%)")
        title = f"{run['name']}\nprobe accuracy on {evaluation_words([run])}{training_words([run])}"
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        legend_below(ax, columns=2, below=0.24)
        panels.append({"run": run["name"], "title": title, "xticklabels": [t.get_text() for t in ax.get_xticklabels()],
                       "series": series})
    save(fig, out_dir, "accuracy_vs_layer")
    described["accuracy_vs_layer"] = panels


# --- loss_vs_step ----------------------------------------------------------------------------


def smoothing_window(count):
    """Steps the training loss is averaged over: ~1/25 of the run, odd, 1 to 1001."""
    return min(1001, max(1, count // 25) | 1)


def smoothed(steps, values, window):
    """The centred moving average over `window` (odd) steps, where the whole window fits: a
    trailing average (or an EMA) of a falling loss lags above it, which reads as a worse loss
    than the model has. Returns (steps, averages); the raw curve shows the ends."""
    half = window // 2
    if len(values) <= 2 * half:
        return [], []
    prefix = [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
    return steps[half:len(values) - half], [(prefix[i + half + 1] - prefix[i - half]) / window
                                            for i in range(half, len(values) - half)]


def loss_ylim(runs, smooth):
    """The y range: everything after the first 5% of each run's steps. The first steps (the
    random init's ~log2(colors) bits) would otherwise squeeze the rest of the curve; they go
    off the top, which a note says. Returns (ylim, clipped_max) with clipped_max None if nothing is cut."""
    shown, early = [], []
    for run, (steps, raw, average_steps, average) in zip(runs, smooth):
        if not steps:
            shown += [v for _, v in run["val"]]
            continue
        cut = steps[0] + 0.05 * (steps[-1] - steps[0])
        shown += [e for s, e in zip(average_steps, average) if s >= cut] + [r for s, r in zip(steps, raw) if s >= cut]
        shown += [v for s, v in run["val"] if s >= cut]
        early += [r for s, r in zip(steps, raw) if s < cut] + [v for s, v in run["val"] if s < cut]
    if not shown:
        return None, None
    low, high = min(shown), max(shown)
    pad = max(0.05 * (high - low), 0.02)
    top = high + pad
    if early and max(early) > top + 2 * pad and max(early) - low > 1.5 * (high - low):
        return [low - pad, top], max(early)
    all_values = shown + early
    return [min(all_values) - pad, max(all_values) + pad], None


def plot_loss_vs_step(runs, out_dir, described):
    fig, ax = plt.subplots(figsize=(6.6, 4.6))
    fig.subplots_adjust(left=0.11, right=0.97, top=0.88, bottom=0.14)
    series, smooth = [], []
    for run in runs:
        steps, raw = (list(v) for v in zip(*run["train"])) if run["train"] else ([], [])
        window = smoothing_window(len(raw))
        average_steps, average = smoothed(steps, raw, window)
        smooth.append((steps, raw, average_steps, average))
        color = None
        if steps:
            line, = ax.plot(steps, raw, alpha=0.25, linewidth=0.6, label=f"{run['name']} train (per step)")
            color = line.get_color()
            ax.plot(average_steps, average, color=color, linewidth=1.8,
                    label=f"{run['name']} train (moving average, {window} steps)")
            series.append({"label": f"{run['name']} train", "x": steps, "y": raw})
            series.append({"label": f"{run['name']} train smoothed", "window": window, "x": average_steps,
                           "y": average})
        if run["val"]:
            xs, ys = (list(v) for v in zip(*run["val"]))
            count = f", {run['val_images']:,} images" if run["val_images"] else ""
            ax.plot(xs, ys, "o", color=color, markersize=5, markeredgecolor="black", markeredgewidth=0.6,
                    label=f"{run['name']} validation{count}")
            series.append({"label": f"{run['name']} validation", "x": xs, "y": ys})
    ylim, clipped = loss_ylim(runs, smooth)
    if ylim:
        ax.set_ylim(*ylim)
    if clipped is not None:
        ax.text(0.01, 0.98, f"↑ the first steps, up to {clipped:.2f} {LOSS_UNIT}, are above the axis",
                transform=ax.transAxes, fontsize=7, va="top", color="dimgrey")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"next-pixel loss ({LOSS_UNIT})")
    ax.set_title("Training and validation loss", fontsize=10)
    ax.grid(alpha=0.3)
    legend_below(ax, columns=2)
    save(fig, out_dir, "loss_vs_step")
    described["loss_vs_step"] = {"unit": LOSS_UNIT, "series": series, "ylim": ylim, "clipped_max": clipped}


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
    drawn = ["loss_vs_accuracy", "accuracy_vs_layer", "loss_vs_step"]
    if any(r["compression"] for r in runs):  # ./igpt compress's results: the thesis on one page
        plot_compression_vs_accuracy(runs, out_dir, described)
        drawn.append("compression_vs_accuracy")
    if args.describe:
        try:
            with open(args.describe, "w") as f:
                json.dump(described, f, indent=1)
        except OSError as e:
            fail(f"cannot write {args.describe}: {e.strerror}")
    print(f"plot: wrote {', '.join(drawn)} (.png, .svg) to {out_dir}")


if __name__ == "__main__":
    main()
