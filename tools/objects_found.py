#!/usr/bin/env python
"""How many ground-truth objects a detection run found: a count that does not depend on scores.

On a slice of 24 images AP moves with the order of a few scores; this counts, per image, the ground-truth
objects that some detection of the same class overlaps at IoU >= a threshold (no score, no one-to-one
matching; ``dive_d2.evaluation.objects_found``), from the files ``tools/evaluate_inversion.py`` and
``COCOEvaluator`` write to an output folder: the dataset's ``*_coco_format.json`` and
``coco_instances_results.json`` (boxes xywh, pixels).

    .venv/bin/python tools/objects_found.py output/s14/shifts10x1000_images24_r4 output/s13/plain1000_images24_r4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from detectron2.structures import BoxMode

from dive_d2.evaluation.objects_found import found_objects


def xyxy_boxes(xywh: list[list[float]]) -> torch.Tensor:
    """(K, 4) XYXY pixel boxes of K COCO-style xywh boxes."""
    return BoxMode.convert(torch.tensor(xywh, dtype=torch.float32).reshape(-1, 4), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)


def objects_found(ground_truth: dict, detections: list[dict], iou_threshold: float) -> dict[int, tuple[int, int]]:
    """Per image id of the COCO ``ground_truth``: (objects some same-class detection overlaps at IoU >=
    ``iou_threshold``, objects)."""
    found = {}
    for image in ground_truth["images"]:
        objects = [a for a in ground_truth["annotations"] if a["image_id"] == image["id"]]
        guesses = [d for d in detections if d["image_id"] == image["id"]]
        hits = found_objects(xyxy_boxes([a["bbox"] for a in objects]),
                             torch.tensor([a["category_id"] for a in objects], dtype=torch.int64),
                             xyxy_boxes([d["bbox"] for d in guesses]),
                             torch.tensor([d["category_id"] for d in guesses], dtype=torch.int64), iou_threshold)
        found[image["id"]] = (int(hits.sum()), len(objects))
    return found


def read_run(folder: Path) -> tuple[dict, list[dict]]:
    """The COCO ground truth and the detections an evaluation wrote to ``folder``."""
    truth_files = sorted(folder.glob("*_coco_format.json"))
    results = folder / "coco_instances_results.json"
    if len(truth_files) != 1 or not results.is_file():
        raise FileNotFoundError(f"{folder}: expected one *_coco_format.json and coco_instances_results.json "
                                f"(found {[p.name for p in truth_files]}, results file present: {results.is_file()})")
    return json.loads(truth_files[0].read_text()), json.loads(results.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders written by an evaluation")
    parser.add_argument("--iou", nargs="+", type=float, default=[0.5, 0.75], help="IoU thresholds")
    args = parser.parse_args()
    for folder in args.runs:
        ground_truth, detections = read_run(folder)
        for threshold in args.iou:
            found = objects_found(ground_truth, detections, threshold)
            hits = sum(h for h, _ in found.values())
            total = sum(n for _, n in found.values())
            print(f"{folder}: IoU {threshold:g}: {hits} of {total} objects found, {len(detections)} detections "
                  f"on {len(found)} images")


if __name__ == "__main__":
    main()
