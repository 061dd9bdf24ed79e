"""COCO results files read back: box AP on a slice of a split's images, evaluations of disjoint images merged
into one, and one image's results as detections.

Used by tools/slice_ap.py (a setting chosen on some images, checked on the others), tools/pool_results.py and
tools/refine_cached_detections.py.
"""

from __future__ import annotations

import contextlib
import io

import torch
from detectron2.structures import Boxes, BoxMode, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


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


def instances_from_results(results: list[dict], height: int, width: int, dtype: torch.dtype = torch.float32,
                           device: torch.device | str = "cpu") -> Instances:
    """``Instances`` of one image's COCO results (XYWH pixel boxes) in the order given: ``pred_boxes`` XYXY in
    pixels, ``scores`` (both in ``dtype``) and ``pred_classes`` (the results' category ids)."""
    instances = Instances((height, width))
    # Corners computed in float64, then rounded once to dtype.
    boxes = torch.tensor([result["bbox"] for result in results], dtype=torch.float64).reshape(-1, 4)
    boxes = BoxMode.convert(boxes, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS).to(dtype=dtype, device=device)
    instances.pred_boxes = Boxes(boxes)
    instances.scores = torch.tensor([result["score"] for result in results], dtype=dtype, device=device)
    instances.pred_classes = torch.tensor([result["category_id"] for result in results], dtype=torch.int64,
                                          device=device)
    return instances
