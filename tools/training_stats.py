#!/usr/bin/env python
"""Means of logged losses over iteration windows of Detectron2 training runs (their metrics.json).

For runs with the p(x|y) ranking term it also prints the term relative to its all-ties level: a pair whose
true and wrong errors are equal costs tau log 2 with tau = TEMPERATURE x e_true, so
``loss_image_ranking / (WEIGHT x TEMPERATURE x log 2 x loss_image)`` is 1 when every ranked pair is a tie
and 0 when every wrong layout is far worse. ``loss_image`` is the mean over all sampled timesteps, so for a
run that ranks only a timestep window the level is a proxy (the window's own e_true is not logged).
WEIGHT and TEMPERATURE come from the config.yaml next to each metrics.json.

    .venv/bin/python tools/training_stats.py output/s14/dive_image_window10 --windows 0-200 500-800 800-1000
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of ``run_dir``/metrics.json (one JSON object per line) that log a loss, each with a
    ``loss_image`` key: Detectron2 logs only ``total_loss`` when a model returns a single loss, which for a
    run training p(x|y) alone without the ranking term is ``loss_image``."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.json (is {run_dir} a Detectron2 OUTPUT_DIR?)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for row in rows:
        if "loss_image" not in row and "total_loss" in row and not any(key.startswith("loss_") for key in row):
            row = {**row, "loss_image": row["total_loss"]}
        if "loss_image" in row:
            kept.append(row)
    return kept


def ranking_settings(run_dir: Path) -> tuple[float, float]:
    """(WEIGHT, TEMPERATURE) of MODEL.DIVE.RANKING in ``run_dir``/config.yaml; WEIGHT 0 when absent."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.yaml next to metrics.json")
    ranking = yaml.safe_load(path.read_text())["MODEL"]["DIVE"].get("RANKING", {})
    return float(ranking.get("WEIGHT", 0.0)), float(ranking.get("TEMPERATURE", 0.05))


def window_stats(rows: list[dict], start: int, end: int, weight: float, temperature: float) -> dict[str, float]:
    """Means over the logged rows with start <= iteration < end: ``loss_image``, and with a ranking weight
    ``loss_image_ranking`` and its ratio to the all-ties level (module docstring)."""
    chosen = [row for row in rows if start <= row["iteration"] < end]
    if not chosen:
        raise ValueError(f"no logged iteration in [{start}, {end})")
    stats = {"loss_image": sum(row["loss_image"] for row in chosen) / len(chosen)}
    if weight > 0:
        stats["loss_image_ranking"] = sum(row["loss_image_ranking"] for row in chosen) / len(chosen)
        tie = weight * temperature * math.log(2)
        stats["ranking/ties"] = sum(row["loss_image_ranking"] / (tie * row["loss_image"]) for row in chosen) / len(
            chosen)
    return stats


def parse_window(text: str) -> tuple[int, int]:
    start, _, end = text.partition("-")
    if not (start.isdigit() and end.isdigit() and int(start) < int(end)):
        raise argparse.ArgumentTypeError(f"window {text!r} must read START-END with START < END (iterations)")
    return int(start), int(end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="Detectron2 OUTPUT_DIRs holding metrics.json")
    parser.add_argument("--windows", nargs="+", type=parse_window, default=[(0, 200), (500, 800), (800, 1000)],
                        help="iteration windows START-END (end excluded)")
    args = parser.parse_args()
    for run_dir in args.runs:
        rows = read_metrics(run_dir)
        weight, temperature = ranking_settings(run_dir)
        print(f"{run_dir} (ranking weight {weight:g}, temperature {temperature:g})")
        for start, end in args.windows:
            stats = window_stats(rows, start, end, weight, temperature)
            print(f"  iterations {start}-{end}: " + "  ".join(f"{key} {value:.5g}" for key, value in stats.items()))


if __name__ == "__main__":
    main()
