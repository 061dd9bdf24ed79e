#!/usr/bin/env python
"""Plot DIVE's AP50, AP75 and (where recorded) the found-vs-true loss gap against the step budget, one line
per recorded run.

    python tools/plot_inversion_budget.py output/eval4/box_lr1_s03 output/eval4/emb_noprior \\
        --labels "box, smoothed" "embedding" --score leave_one_out --out docs/shapes_inversion_budget.png

Each input is an ``--output`` folder of tools/evaluate_inversion.py or a results.json it wrote (for example a
copy under docs/results/). Its "budget N" rows are the line; its "patience P (max M)" rows are drawn as
open markers of the same colour at their mean stopping step, which is what the stopping target compares
against the largest budget. Only unpolished rows of the "best" restart selection are used. A recording
with ``RESTARTS`` R has rows for each ``--restart-counts`` k; ``--restarts`` picks k per input (default: the
largest k in the file, what the recording's config returns).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from operator import itemgetter

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SETTING_PATTERN = re.compile(r"^(budget \d+|patience \d+ \(max \d+\))(?:, best of (\d+))?$")


def read_rows(results: str) -> tuple[str, list[dict]]:
    """(path read, rows) of an evaluate_inversion output folder or results.json file."""
    path = os.path.join(results, "results.json") if os.path.isdir(results) else results
    with open(path) as handle:
        return path, json.load(handle)["rows"]


def budget_and_patience_rows(results: str, score: str, restarts: int | None = None) -> tuple[list[dict], list[dict]]:
    """The "budget N" rows and the "patience P" rows of one recording, scored with ``score``, for the best of
    ``restarts`` runs per image (None: the largest restart count recorded), each list by increasing mean
    stopping step. Rows of another selection, polished rows and other scores are left out."""
    path, rows = read_rows(results)
    parsed = []
    for row in rows:
        match = SETTING_PATTERN.match(row["setting"])  # polished settings end in ", polished xN": no match
        if match is None or row.get("score") != score or row.get("selection", "best") != "best":
            continue
        parsed.append((match.group(1), int(match.group(2) or 1), row))
    if not parsed:
        raise ValueError(f"{path}: no unpolished 'budget N' or 'patience P' rows of the best run scored with {score!r}")
    counts = sorted({count for _, count, _ in parsed})
    if restarts is None:
        restarts = counts[-1]
    if restarts not in counts:
        raise ValueError(f"{path}: no rows for the best of {restarts} runs (recorded: {counts})")
    chosen = [(name, row) for name, count, row in parsed if count == restarts]
    budgets = [row for name, row in chosen if name.startswith("budget ")]
    patiences = [row for name, row in chosen if name.startswith("patience ")]
    if not budgets:
        raise ValueError(f"{path}: no 'budget N' rows for the best of {restarts} runs")
    by_step = itemgetter("mean_stop_step")
    return sorted(budgets, key=by_step), sorted(patiences, key=by_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="evaluate_inversion --output folders or results.json files")
    parser.add_argument("--labels", nargs="*", default=None)
    parser.add_argument("--restarts", type=int, nargs="*", default=None,
                        help="per input: plot the best of this many runs per image (default: the most recorded)")
    parser.add_argument("--score", default="leave_one_out")
    parser.add_argument("--log-steps", action="store_true", help="logarithmic step axis")
    parser.add_argument("--title", default=None, help="a second title line for the AP panels")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.results]
    restarts = args.restarts or [None] * len(args.results)
    if len(labels) != len(args.results) or len(restarts) != len(args.results):
        raise ValueError(f"{len(labels)} labels and {len(restarts)} restart counts for {len(args.results)} inputs")

    curves = []
    for results, label, count in zip(args.results, labels, restarts, strict=True):
        budgets, patiences = budget_and_patience_rows(results, args.score, count)
        curves.append((label, budgets, patiences, all("mean_relative_gap" in row for row in budgets)))
    with_gap = any(has_gap for *_, has_gap in curves)
    figure, axes = plt.subplots(1, 3 if with_gap else 2, figsize=(14 if with_gap else 10, 3.8))
    for label, budgets, patiences, has_gap in curves:
        steps = [row["mean_stop_step"] for row in budgets]
        color = None
        for axis, metric in zip(axes[:2], ("AP50", "AP75"), strict=True):
            line, = axis.plot(steps, [row[metric] for row in budgets], marker="o", label=label, color=color)
            color = line.get_color()
            for row in patiences:
                axis.plot(row["mean_stop_step"], row[metric], marker="D", markersize=8, linestyle="none",
                          markerfacecolor="none", color=color)
                axis.annotate(row["setting"].split(" (")[0], (row["mean_stop_step"], row[metric]), fontsize=7,
                              xytext=(5, 4), textcoords="offset points", color=color)
        if has_gap:
            axes[2].plot(steps, [100 * row["mean_relative_gap"] for row in budgets], marker="o", label=label,
                         color=color)
        for row in budgets + patiences:
            print(f"{label:<28} {row['setting']:<36} AP50 {row['AP50']:5.1f}  AP75 {row['AP75']:5.1f}  mean stop "
                  f"{row['mean_stop_step']:6.1f}  gap {100 * row.get('mean_relative_gap', float('nan')):+5.1f}%")
    for axis, metric in zip(axes[:2], ("AP50", "AP75"), strict=True):
        axis.set(xlabel="step budget (diamonds: early stopping, at the mean stop)", ylabel=f"{metric} (%)",
                 title=f"DIVE {metric} ({args.score} score)" + (f"\n{args.title}" if args.title else ""))
    axes[0].legend(fontsize=8)
    if with_gap:
        axes[2].axhline(0, color="grey", linewidth=0.8)
        axes[2].set(xlabel="step budget", ylabel="found / true loss - 1 (%)",
                    title="posterior loss gap to the ground truth")
        axes[2].legend(fontsize=8)
    if args.log_steps:
        for axis in axes:
            axis.set_xscale("log")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
