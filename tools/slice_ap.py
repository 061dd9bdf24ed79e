#!/usr/bin/env python
"""COCO box AP of a finished evaluation restricted to a slice of its images, without evaluating again.

A setting chosen on some images is checked on the others: this reads the dataset's ``*_coco_format.json`` and
``coco_instances_results.json`` that ``COCOEvaluator`` wrote to a folder (as tools/objects_found.py does) and
runs pycocotools' COCOeval with ``imgIds`` set to images ``START`` .. ``START + COUNT - 1`` in the order of the
ground truth's image list (the dataset's order, the one ``--images`` and ``DATASETS.TEST_LIMIT`` slice by).

    .venv/bin/python tools/slice_ap.py output/candidates_shapes_val_cuda/refined --images 100 400

Several folders that evaluated disjoint images of one split (say images 0-99 and 100-499, each a
``--images`` run of tools/refine_cached_detections.py) are merged first, images in the order the folders are
given, so that the whole split gets one table without evaluating again; without ``--images`` every image counts:

    .venv/bin/python tools/slice_ap.py output/holes_0to100/refined output/holes_100to500/refined
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dive_d2.evaluation.objects_found import read_run


def slice_ap(ground_truth: dict, detections: list[dict], start: int, count: int) -> dict[str, float]:
    """AP, AP50, AP75 (percent, COCO box metrics, -1 where COCOeval has nothing to count) of ``detections``
    (COCO results: xywh pixel boxes) against ``ground_truth`` (a COCO dict) on its images ``start`` ..
    ``start + count - 1``."""
    image_ids = [image["id"] for image in ground_truth["images"]][start : start + count]
    if start < 0 or count < 1 or len(image_ids) < count:
        raise ValueError(f"slice_ap: images {start}..{start + count - 1} asked, the ground truth holds "
                         f"{len(ground_truth['images'])}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = ground_truth
        truth.createIndex()
        results = truth.loadRes(detections) if detections else COCO()
        evaluation = COCOeval(truth, results, "bbox")
        evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) * (100 if value >= 0 else 1)
            for name, value in zip(("AP", "AP50", "AP75"), evaluation.stats[:3], strict=True)}


def merge_runs(runs: list[tuple[dict, list[dict]]]) -> tuple[dict, list[dict]]:
    """One COCO ground truth and detection list from several evaluations ``(ground truth, detections)`` of
    disjoint images with the same categories. Images keep their ids and the runs' order; annotations are
    numbered anew (each run numbers its own from 1). An image in two runs or differing categories is an error."""
    if not runs:
        raise ValueError("merge_runs: no runs given")
    categories = runs[0][0].get("categories", [])
    merged = {key: value for key, value in runs[0][0].items() if key not in ("images", "annotations")}
    merged["images"], merged["annotations"] = [], []
    detections: list[dict] = []
    seen: set = set()
    for index, (truth, run_detections) in enumerate(runs):
        if truth.get("categories", []) != categories:
            raise ValueError(f"merge_runs: run {index} has categories {truth.get('categories')}, run 0 "
                             f"{categories}")
        image_ids = {image["id"] for image in truth["images"]}
        if seen & image_ids:
            raise ValueError(f"merge_runs: run {index} evaluates images already in an earlier run "
                             f"(ids {sorted(seen & image_ids)[:5]}...)")
        seen |= image_ids
        merged["images"] += truth["images"]
        for annotation in truth["annotations"]:
            merged["annotations"].append({**annotation, "id": len(merged["annotations"]) + 1})
        detections += run_detections
    return merged, detections


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="folders written by evaluations of disjoint images")
    parser.add_argument("--images", nargs=2, type=int, metavar=("START", "COUNT"),
                        help="a slice of the (merged) image list; default: all images")
    args = parser.parse_args(argv)
    ground_truth, detections = merge_runs([read_run(run) for run in args.runs])
    start, count = args.images or (0, len(ground_truth["images"]))
    metrics = slice_ap(ground_truth, detections, start, count)
    # Positions in the merged list, not the split's image numbers: say so when nothing was sliced.
    where = f"images {start}-{start + count - 1} of the merged list" if args.images else f"all {count} images"
    print(f"{' + '.join(map(str, args.runs))}, {where}: "
          + " / ".join(f"{name} {value:.2f}" for name, value in metrics.items()))
    return metrics


if __name__ == "__main__":
    main()
