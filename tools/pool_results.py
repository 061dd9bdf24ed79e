#!/usr/bin/env python
"""Pool the finished detections of several evaluations of the same images, as DIVE's pooled passes do.

``MODEL.DIVE.INVERSION.POOLED_PASS_PRIOR_WEIGHTS`` runs the whole detector once more per weight and pools the
passes' finished detections per image (``DIVE.pool_passes``, dive_d2/inversion/pooling.py). Evaluations that
exist already (each pass run on its own, with its ``PRIOR_WEIGHT``) give the same result after the fact: this
reads each pass's ``coco_instances_results.json`` and ``*_coco_format.json`` (COCOEvaluator's files; several
folders of disjoint images per pass are merged in the order given, as tools/slice_ap.py does), pools each
image's detections with the same ``pool_detections``, writes the pooled files to ``--output-dir`` (readable by
tools/slice_ap.py and tools/objects_found.py) and prints COCO box AP / AP50 / AP75 of the pool and of each pass.

    .venv/bin/python tools/pool_results.py --pass output/default_0to249/refined output/default_250to499/refined \
      --pass output/prior01_0to249/cached output/prior01_250to499/cached --output-dir output/pooled
    # the first pass must be the main one: ties between passes go to the earlier pass (pooling.py)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
from detectron2.structures import BoxMode

from dive_d2.evaluation.coco_slices import instances_from_results, merge_runs, slice_ap
from dive_d2.evaluation.objects_found import read_run
from dive_d2.inversion import POOLED_SCORES, pool_detections


def pool_runs(passes: list[tuple[dict, list[dict]]], iou_threshold: float, score: str) -> tuple[dict, list[dict]]:
    """The ground truth and pooled COCO results (XYWH pixel boxes) of P evaluations ``(ground truth,
    detections)`` of the same images (same ids, in the same order; an image may have no detections). Each
    image's detections are pooled with ``pool_detections`` (first pass first); boxes stay in float64 so that a
    detection's box comes back as it was written."""
    truth = passes[0][0]
    image_ids = [image["id"] for image in truth["images"]]
    for index, (other, _) in enumerate(passes[1:], start=1):
        if [image["id"] for image in other["images"]] != image_ids:
            raise ValueError(f"pool_runs: pass {index} evaluates other images than pass 0 (or in another order): "
                             f"{len(other['images'])} images against {len(image_ids)}")
    per_pass_image: list[dict] = []
    for index, (_, detections) in enumerate(passes):
        by_image = defaultdict(list)
        for detection in detections:
            by_image[detection["image_id"]].append(detection)
        unknown = set(by_image) - set(image_ids)
        if unknown:
            raise ValueError(f"pool_runs: pass {index} has detections of images not in its ground truth "
                             f"(ids {sorted(unknown)[:5]})")
        per_pass_image.append(by_image)
    pooled_detections = []
    for image in truth["images"]:
        height, width = image["height"], image["width"]
        pooled = pool_detections([instances_from_results(by_image[image["id"]], height, width, torch.float64)
                                  for by_image in per_pass_image], iou_threshold, score)
        boxes = BoxMode.convert(pooled.pred_boxes.tensor, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
        for box, category, confidence in zip(boxes.tolist(), pooled.pred_classes.tolist(), pooled.scores.tolist(),
                                             strict=True):
            pooled_detections.append({"image_id": image["id"], "category_id": category, "bbox": box,
                                      "score": confidence})
    return truth, pooled_detections


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pass", dest="passes", type=Path, nargs="+", action="append", required=True,
                        metavar="FOLDER", help="one pass's evaluation folders (disjoint images, merged in order); "
                                               "give --pass once per pass, the main pass first")
    parser.add_argument("--iou", type=float, default=0.5, help="same-class boxes of two passes at IoU >= this are "
                                                              "one detection (MODEL.DIVE.INVERSION.POOLED_PASS_IOU)")
    parser.add_argument("--score", choices=POOLED_SCORES, default="mean",
                        help="a pooled detection's score (MODEL.DIVE.INVERSION.POOLED_PASS_SCORE)")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if len(args.passes) < 2:
        parser.error("give --pass at least twice: pooling one pass returns it")
    passes = [merge_runs([read_run(folder) for folder in folders]) for folders in args.passes]
    truth, pooled = pool_runs(passes, args.iou, args.score)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "pooled_coco_format.json").write_text(json.dumps(truth))
    (args.output_dir / "coco_instances_results.json").write_text(json.dumps(pooled))
    count = len(truth["images"])
    for index, (_, detections) in enumerate(passes):
        metrics = slice_ap(truth, detections, 0, count)
        print(f"pass {index} ({' + '.join(map(str, args.passes[index]))}): "
              + " / ".join(f"{name} {value:.2f}" for name, value in metrics.items()))
    metrics = slice_ap(truth, pooled, 0, count)
    print(f"pooled ({args.score}, IoU {args.iou}), {count} images, {len(pooled)} detections -> {args.output_dir}: "
          + " / ".join(f"{name} {value:.2f}" for name, value in metrics.items()))
    return metrics


if __name__ == "__main__":
    main()
