#!/usr/bin/env python
"""How many ground-truth objects a detection run found: a count that does not depend on scores.

On a slice of 24 images AP moves with the order of a few scores; this counts, per image, the ground-truth
objects that some detection of the same class overlaps at IoU >= a threshold (no score, no one-to-one
matching; ``dive_d2.evaluation.objects_found``), from the files ``tools/evaluate_inversion.py`` and
``COCOEvaluator`` write to an output folder: the dataset's ``*_coco_format.json`` and
``coco_instances_results.json`` (boxes xywh, pixels).

    .venv/bin/python tools/objects_found.py output/s14/shifts10x1000_images24_r4 output/s13/plain1000_images24_r4
    .venv/bin/python tools/objects_found.py output/shapes_val_full/inference/dive_shapes_val \
        --iou 0.1 0.3 0.5 0.75 --class-agnostic --size-edges 15 22
    # why the objects without a box at IoU 0.5 (any class) are missed, by their best box
    .venv/bin/python tools/objects_found.py output/candidates_shapes_val_cuda/refined --iou 0.5 --why-missed
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import torch
from detectron2.structures import BoxMode

from dive_d2.evaluation.objects_found import MISS_KINDS, found_objects, miss_kind, read_run


def xyxy_boxes(xywh: list[list[float]]) -> torch.Tensor:
    """(K, 4) XYXY pixel boxes of K COCO-style xywh boxes."""
    return BoxMode.convert(torch.tensor(xywh, dtype=torch.float32).reshape(-1, 4), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)


def per_image(ground_truth: dict, detections: list[dict]) -> Iterator[tuple[list[dict], list[dict]]]:
    """(annotations, detections) of each image of the COCO ``ground_truth``, in its image order."""
    objects, guesses = defaultdict(list), defaultdict(list)
    for annotation in ground_truth["annotations"]:
        objects[annotation["image_id"]].append(annotation)
    for detection in detections:
        guesses[detection["image_id"]].append(detection)
    for image in ground_truth["images"]:
        yield objects[image["id"]], guesses[image["id"]]


def hits_per_object(ground_truth: dict, detections: list[dict], iou_threshold: float,
                    class_agnostic: bool = False) -> list[tuple[dict, bool]]:
    """Each annotation of the COCO ``ground_truth`` with whether some detection on its image overlaps it at
    IoU >= ``iou_threshold``: of the same class, or of any class with ``class_agnostic`` (which separates
    boxes in the wrong place from right boxes with the wrong class)."""
    def classes(items: list[dict]) -> torch.Tensor:
        return torch.tensor([0 if class_agnostic else item["category_id"] for item in items], dtype=torch.int64)

    hits = []
    for objects, guesses in per_image(ground_truth, detections):
        found = found_objects(xyxy_boxes([a["bbox"] for a in objects]), classes(objects),
                              xyxy_boxes([d["bbox"] for d in guesses]), classes(guesses), iou_threshold)
        hits.extend(zip(objects, found.tolist(), strict=True))
    return hits


def objects_found(ground_truth: dict, detections: list[dict], iou_threshold: float,
                  class_agnostic: bool = False) -> dict[int, tuple[int, int]]:
    """Per image id of the COCO ``ground_truth``: (objects some same-class detection, or any detection with
    ``class_agnostic``, overlaps at IoU >= ``iou_threshold``, objects)."""
    found = {image["id"]: (0, 0) for image in ground_truth["images"]}
    for annotation, hit in hits_per_object(ground_truth, detections, iou_threshold, class_agnostic):
        hits, total = found[annotation["image_id"]]
        found[annotation["image_id"]] = (hits + hit, total + 1)
    return found


def object_side(annotation: dict) -> float:
    """sqrt(area) in pixels of a COCO annotation's xywh box."""
    return (annotation["bbox"][2] * annotation["bbox"][3]) ** 0.5


def found_by_size(hits: list[tuple[dict, bool]], edges: list[float]) -> list[tuple[float, float, int, int]]:
    """(low, high, found, objects) per range of object size, sqrt(box area) in pixels, cut at ``edges``."""
    bounds = [0.0, *edges, float("inf")]
    rows = []
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        inside = [hit for annotation, hit in hits if low <= object_side(annotation) < high]
        rows.append((low, high, sum(inside), len(inside)))
    return rows


def why_missed(ground_truth: dict, detections: list[dict], iou_threshold: float) -> dict[str, int]:
    """For the objects no detection of any class overlaps at IoU >= ``iou_threshold``: how many of each
    ``MISS_KINDS`` (dive_d2.evaluation.objects_found.miss_kind)."""
    counts = dict.fromkeys(MISS_KINDS, 0)
    for objects, guessed in per_image(ground_truth, detections):
        guesses = xyxy_boxes([d["bbox"] for d in guessed])
        truth = xyxy_boxes([a["bbox"] for a in objects])
        found = found_objects(truth, torch.zeros(len(truth), dtype=torch.int64), guesses,
                              torch.zeros(len(guesses), dtype=torch.int64), iou_threshold)
        for index in torch.nonzero(~found).flatten().tolist():
            counts[miss_kind(index, truth, guesses)] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders written by an evaluation")
    parser.add_argument("--iou", nargs="+", type=float, default=[0.5, 0.75], help="IoU thresholds")
    parser.add_argument("--class-agnostic", action="store_true",
                        help="also count objects that a detection of any class overlaps")
    parser.add_argument("--size-edges", nargs="*", type=float, default=[],
                        help="also count per object size range, cut at these sqrt(area) values in pixels")
    parser.add_argument("--why-missed", action="store_true",
                        help="sort the objects no box of any class finds by what their best box is instead")
    args = parser.parse_args()
    for folder in args.runs:
        ground_truth, detections = read_run(folder)
        for threshold in args.iou:
            if args.why_missed:
                counts = why_missed(ground_truth, detections, threshold)
                print(f"{folder}: IoU {threshold:g}, {sum(counts.values())} objects without a box (any class); "
                      "their best box: " + ", ".join(f"{kind} {count}" for kind, count in counts.items()))
                continue
            for class_agnostic in (False, True) if args.class_agnostic else (False,):
                hits = hits_per_object(ground_truth, detections, threshold, class_agnostic)
                which = "any class" if class_agnostic else "same class"
                print(f"{folder}: IoU {threshold:g} ({which}): {sum(h for _, h in hits)} of {len(hits)} objects "
                      f"found, {len(detections)} detections on {len(ground_truth['images'])} images")
                for low, high, found, total in found_by_size(hits, args.size_edges) if args.size_edges else []:
                    print(f"    size {low:g}-{high:g} px: {found} of {total}")


if __name__ == "__main__":
    main()
