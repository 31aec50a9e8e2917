#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Plots the key GRPO curves of one or more runs written by grpo's metrics logger (metrics.jsonl) into one figure:
reward, fraction of zero-variance groups, KL to the reference, clip fraction, completion length and held-out
accuracy, one line per run. Reads TRL's and verl's metric names (docs/metrics.md).

  python3 tools/plot_metrics.py RUN [RUN ...] -o FIGURE.png|.svg [--title TEXT]

RUN is a run directory (holding metrics.jsonl), a .jsonl file, or LABEL=either of those (the label defaults to
the directory's name). Needs matplotlib (Debian: python3-matplotlib; pip: matplotlib). The same runs give the same
figure, byte for byte, with one matplotlib version.
"""
import argparse
import json
import math
import os
import sys

# Panel title, then the names to look for, TRL's first.
PANELS = [
    ("reward (mean over completions)", ["reward", "critic/score/mean"]),
    ("zero-variance group fraction", ["frac_reward_zero_std"]),
    ("KL to the reference", ["kl", "actor/kl_loss"]),
    ("clip fraction", ["clip_ratio/region_mean", "actor/pg_clipfrac"]),
    ("completion length (tokens)", ["completions/mean_length", "response_length/mean"]),
    ("held-out accuracy", None),  # the run's evaluation metric: eval_accuracy, else the first eval_* / val-core/*
]


def load(path):
    """{step: {name: value}} of a JSONL run (records of one step merged; null -> NaN)."""
    steps = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                sys.exit("plot_metrics.py: %s:%d: not JSON (%s)" % (path, n, e))
            step = rec.pop("step", None)
            rec.pop("wall_time", None)
            if step is None:
                sys.exit("plot_metrics.py: %s:%d: no \"step\"" % (path, n))
            row = steps.setdefault(step, {})
            for k, v in rec.items():
                row[k] = math.nan if v is None else float(v)
    return steps


def eval_name(steps):
    names = {k for row in steps.values() for k in row}
    if "eval_accuracy" in names:
        return "eval_accuracy"
    cands = sorted(k for k in names if k.startswith("eval_") or k.startswith("val-core/"))
    return cands[0] if cands else None


def series(steps, names):
    for name in names or []:
        pts = [(s, row[name]) for s, row in sorted(steps.items()) if name in row]
        if pts:
            return name, [p[0] for p in pts], [p[1] for p in pts]
    return None, [], []


def parse_run(arg):
    label, _, path = arg.rpartition("=") if "=" in arg else ("", "", arg)
    if os.path.isdir(path):
        jsonl = os.path.join(path, "metrics.jsonl")
        label = label or os.path.basename(os.path.normpath(path))
    else:
        jsonl = path
        label = label or os.path.splitext(os.path.basename(path))[0]
    if not os.path.isfile(jsonl):
        sys.exit("plot_metrics.py: %s: no such file" % jsonl)
    return label, load(jsonl)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN")
    ap.add_argument("-o", "--output", required=True, help="the figure: .png or .svg")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    ext = os.path.splitext(args.output)[1].lower()
    if ext not in (".png", ".svg"):
        sys.exit("plot_metrics.py: the output must end in .png or .svg, not %r" % args.output)
    runs = [parse_run(r) for r in args.runs]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_metrics.py: matplotlib is not installed (apt install python3-matplotlib, or pip install "
                 "matplotlib)")
    plt.rcParams["svg.hashsalt"] = "grpo"  # stable element ids: the same runs give the same SVG

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    for ax, (title, names) in zip(axes.flat, PANELS):
        drawn = False
        for label, steps in runs:
            wanted = [eval_name(steps)] if names is None else names
            name, xs, ys = series(steps, [n for n in wanted if n])
            if not xs:
                continue
            sparse = len(xs) < 0.5 * len(steps)  # an evaluation every few steps: show the points
            ax.plot(xs, ys, marker="o" if sparse else None, markersize=3, linewidth=1.4, label=label)
            drawn = True
            if names is None:
                title = "held-out accuracy (%s)" % name
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
    if len(runs) > 1:
        axes.flat[0].legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title, fontsize=12)
    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    meta = {"Software": None} if ext == ".png" else {"Date": None, "Creator": None}
    fig.savefig(args.output, dpi=110, metadata=meta)
    print("plot_metrics.py: wrote %s (%d run%s)" % (args.output, len(runs), "" if len(runs) == 1 else "s"))


if __name__ == "__main__":
    main()
