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
from pathlib import Path

from dive_d2.evaluation.coco_slices import merge_runs, slice_ap
from dive_d2.evaluation.objects_found import read_run


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
