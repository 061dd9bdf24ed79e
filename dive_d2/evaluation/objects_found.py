"""Which ground-truth objects a set of detections found: a count that does not depend on scores.

On a slice of 24 images AP moves with the order of a few scores; counting the ground-truth objects that
some detection of the same class overlaps at IoU >= a threshold (no score, no one-to-one matching) says
whether a change found more objects or only ranked them differently.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from detectron2.structures import Boxes, pairwise_iou


def found_objects(true_boxes: torch.Tensor, true_classes: torch.Tensor, boxes: torch.Tensor, classes: torch.Tensor,
                  iou_threshold: float) -> torch.Tensor:
    """(K,) bool: which of K ground-truth objects some detection of the same class overlaps at IoU >= the
    threshold.

    Args:
        true_boxes: (K, 4) and boxes: (D, 4), XYXY in the same units (pixels or normalised).
        true_classes: (K,) and classes: (D,) int64.
    """
    if len(true_boxes) == 0 or len(boxes) == 0:
        return torch.zeros(len(true_boxes), dtype=torch.bool)
    overlaps = pairwise_iou(Boxes(true_boxes.float().reshape(-1, 4)), Boxes(boxes.float().reshape(-1, 4)))
    same_class = true_classes.reshape(-1, 1) == classes.reshape(1, -1)
    return ((overlaps >= iou_threshold) & same_class).any(dim=1)


MISS_KINDS = ("union with a neighbour", "part of it", "holds it", "no overlap", "elsewhere")


def miss_kind(index: int, true_boxes: torch.Tensor, boxes: torch.Tensor, union_iou: float = 0.6,
              inside: float = 0.8, no_overlap_iou: float = 0.1) -> str:
    """Why ground-truth object ``index`` has no good box, judged by its best-overlapping detection (any class):
    "union with a neighbour" (that box matches the bounding box of the object and another true object at IoU
    >= ``union_iou``: touching objects boxed together), "no overlap" (IoU < ``no_overlap_iou``), "part of it"
    (>= ``inside`` of the box's area lies inside the object), "holds it" (>= ``inside`` of the object lies
    inside the box), else "elsewhere". Boxes: ``true_boxes`` (K, 4) and ``boxes`` (D, 4), XYXY in one unit."""
    if len(boxes) == 0:
        return "no overlap"
    overlaps = pairwise_iou(Boxes(true_boxes[index : index + 1].float()), Boxes(boxes.float()))[0]
    best = boxes[int(overlaps.argmax())].float()
    truth = true_boxes[index].float()
    others = torch.cat([true_boxes[:index], true_boxes[index + 1 :]]).float()
    if len(others):
        unions = torch.cat([torch.minimum(others[:, :2], truth[:2]), torch.maximum(others[:, 2:], truth[2:])], dim=1)
        if pairwise_iou(Boxes(unions), Boxes(best[None])).max() >= union_iou:
            return "union with a neighbour"
    if overlaps.max() < no_overlap_iou:
        return "no overlap"
    common = (torch.minimum(best[2:], truth[2:]) - torch.maximum(best[:2], truth[:2])).clamp(min=0).prod()
    if common >= inside * (best[2:] - best[:2]).prod():
        return "part of it"
    if common >= inside * (truth[2:] - truth[:2]).prod():
        return "holds it"
    return "elsewhere"


def is_wrong_layout(true_boxes: torch.Tensor, true_classes: torch.Tensor, boxes: torch.Tensor,
                    classes: torch.Tensor, iou_threshold: float = 0.5) -> bool:
    """Whether a layout is clearly not the truth: it misses a true object (no same-class box at IoU >=
    ``iou_threshold``) or holds a different number of objects. Boxes (K, 4) / (D, 4) XYXY in one unit."""
    if len(boxes) != len(true_boxes):
        return True
    return not bool(found_objects(true_boxes, true_classes, boxes, classes, iou_threshold).all())


def read_run(folder: Path) -> tuple[dict, list[dict]]:
    """The COCO ground truth and the detections an evaluation wrote to ``folder``."""
    truth_files = sorted(folder.glob("*_coco_format.json"))
    results = folder / "coco_instances_results.json"
    if len(truth_files) != 1 or not results.is_file():
        raise FileNotFoundError(f"{folder}: expected one *_coco_format.json and coco_instances_results.json "
                                f"(found {[p.name for p in truth_files]}, results file present: {results.is_file()})")
    return json.loads(truth_files[0].read_text()), json.loads(results.read_text())
