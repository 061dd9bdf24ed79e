#!/usr/bin/env python
"""Plot DIVE's AP50 and the found-vs-true loss gap against the step budget, one line per recorded run.

    python tools/plot_inversion_budget.py output/eval4/box_lr1_s03 output/eval4/emb_noprior \\
        --labels "box, smoothed" "embedding" --score leave_one_out --out docs/shapes_inversion_budget.png

Each folder is an ``--output`` of tools/evaluate_inversion.py; its results.json rows named "budget N" are
plotted (the patience rows are not: they are points at their mean stopping step, printed instead).
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def budget_rows(folder: str, score: str) -> list[dict]:
    """The "budget N" rows of ``folder``/results.json scored with ``score``, by increasing N."""
    path = os.path.join(folder, "results.json")
    with open(path) as handle:
        rows = json.load(handle)["rows"]
    chosen = [row for row in rows if row["setting"].startswith("budget ") and row.get("score") == score]
    if not chosen:
        raise ValueError(f"{path}: no 'budget N' rows scored with {score!r}")
    return sorted(chosen, key=lambda row: row["mean_stop_step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--labels", nargs="*", default=None)
    parser.add_argument("--score", default="leave_one_out")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    labels = args.labels or [os.path.basename(os.path.normpath(f)) for f in args.folders]
    if len(labels) != len(args.folders):
        raise ValueError(f"{len(labels)} labels for {len(args.folders)} folders")

    figure, (ap_axis, gap_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for folder, label in zip(args.folders, labels, strict=True):
        rows = budget_rows(folder, args.score)
        steps = [row["mean_stop_step"] for row in rows]
        ap_axis.plot(steps, [row["AP50"] for row in rows], marker="o", label=label)
        if all("mean_relative_gap" in row for row in rows):
            gap_axis.plot(steps, [100 * row["mean_relative_gap"] for row in rows], marker="o", label=label)
        for row in rows:
            print(f"{label:<28} {row['setting']:<12} AP50 {row['AP50']:5.1f}  gap "
                  f"{100 * row.get('mean_relative_gap', float('nan')):+5.1f}%")
    ap_axis.set(xlabel="step budget", ylabel="AP50 (%)", title=f"DIVE AP50 ({args.score} score)")
    gap_axis.axhline(0, color="grey", linewidth=0.8)
    gap_axis.set(xlabel="step budget", ylabel="found / true loss - 1 (%)",
                 title="posterior loss gap to the ground truth")
    ap_axis.legend(fontsize=8)
    gap_axis.legend(fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
