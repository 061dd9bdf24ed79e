#!/usr/bin/env python
"""COCO box AP of a finished evaluation restricted to a slice of its images, without evaluating again.

A setting chosen on some images is checked on the others: this reads the dataset's ``*_coco_format.json`` and
``coco_instances_results.json`` that ``COCOEvaluator`` wrote to a folder (as tools/objects_found.py does) and
runs pycocotools' COCOeval with ``imgIds`` set to images ``START`` .. ``START + COUNT - 1`` in the order of the
ground truth's image list (the dataset's order, the one ``--images`` and ``DATASETS.TEST_LIMIT`` slice by).

    .venv/bin/python tools/slice_ap.py output/candidates_shapes_val_cuda/refined --images 100 400
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


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="folder written by an evaluation")
    parser.add_argument("--images", nargs=2, type=int, required=True, metavar=("START", "COUNT"))
    args = parser.parse_args(argv)
    ground_truth, detections = read_run(args.run)
    metrics = slice_ap(ground_truth, detections, *args.images)
    print(f"{args.run}, images {args.images[0]}-{sum(args.images) - 1}: "
          + " / ".join(f"{name} {value:.2f}" for name, value in metrics.items()))
    return metrics


if __name__ == "__main__":
    main()
