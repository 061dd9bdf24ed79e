#!/usr/bin/env python
"""Mine hard negatives for p(x|y): the wrong layouts the inversion returns for training images.

Reads a recording of ``tools/evaluate_inversion.py`` with ``MODEL.DIVE.INVERSION.RESTARTS`` R > 1 on a
slice of a *training* set (give the same config, weights, dataset, slice and KEY VALUE options) and keeps
each run's returned layout when it is clearly wrong (``is_wrong_layout``: it misses a true object at IoU
>= ``--iou`` or holds a different number of objects). Writes them with the images' true layouts to a JSON
file (dive_d2/data/hard_negatives.py) for ``MODEL.DIVE.RANKING.NEGATIVES``.

    .venv/bin/python tools/evaluate_inversion.py --config-file configs/shapes/dive.yaml \
      --weights weights/shapes/dive.pth --dataset dive_shapes_train --num-images 96 --batch-size 8 \
      --patience --scores leave_one_out --budgets 50 --restart-counts 4 --gap-pairs 0 --polish-sweeps 0 \
      --output output/mine_r4 MODEL.DIVE.INVERSION.RESTARTS 4 MODEL.DIVE.INVERSION.INIT error_map \
      MODEL.DIVE.INVERSION.MAX_STEPS 50
    .venv/bin/python tools/mine_negatives.py --config-file configs/shapes/dive.yaml \
      --weights weights/shapes/dive.pth --dataset dive_shapes_train --num-images 96 \
      --recording output/mine_r4 --output output/shapes_negatives.json MODEL.DIVE.INVERSION.RESTARTS 4 \
      MODEL.DIVE.INVERSION.INIT error_map MODEL.DIVE.INVERSION.MAX_STEPS 50

A second round mines the wrong layouts of the model trained on the first round's negatives (record its
runs on the same images with ``--weights`` of that model) and, with ``--merge-with <first round's file>``,
writes both rounds' negatives together (``merge_hard_negatives``: matched by image, each layout once).
"""

from __future__ import annotations

import argparse

from detectron2.utils.logger import setup_logger

import dive_d2  # noqa: F401  (registers datasets and models)
from dive_d2.data import ground_truth_layout
from dive_d2.data.hard_negatives import merge_hard_negatives, read_hard_negative_entries, write_hard_negatives
from dive_d2.evaluation.objects_found import found_objects, is_wrong_layout
from dive_d2.evaluation.recordings import load_recorded_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="dive_shapes_train")
    parser.add_argument("--start-image", type=int, default=0)
    parser.add_argument("--num-images", type=int, required=True)
    parser.add_argument("--recording", required=True, help="an evaluate_inversion --output folder (history.pth)")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--output", required=True, help="the JSON file to write")
    parser.add_argument("--merge-with",
                        help="an earlier round's negatives file: write its negatives and these together")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="the recording's KEY VALUE options")
    args = parser.parse_args()
    setup_logger(name="dive_d2")

    recorded = load_recorded_runs(args.recording, args.config_file, args.weights, args.dataset, args.start_image,
                                  args.num_images, args.opts)
    tokenizer = recorded.model.tokenizer
    images, runs, objects, objects_in_negatives = [], 0, 0, 0
    for record, layouts in zip(recorded.dataset_dicts, recorded.tokens, strict=True):
        true_boxes, true_classes = ground_truth_layout(record)
        negatives = []
        for layout in layouts:
            decoded = tokenizer.decode(layout, record["height"], record["width"])
            runs += 1
            if is_wrong_layout(true_boxes, true_classes, decoded.boxes, decoded.classes, args.iou):
                negatives.append((decoded.boxes, decoded.classes))
                objects += len(true_classes)
                objects_in_negatives += int(found_objects(true_boxes, true_classes, decoded.boxes,
                                                          decoded.classes, args.iou).sum())
        images.append({"file_name": record["file_name"], "height": record["height"], "width": record["width"],
                       "boxes": true_boxes, "classes": true_classes, "negatives": negatives})
    negative_count = sum(len(item["negatives"]) for item in images)
    print(f"{negative_count} of {runs} runs' layouts are wrong (IoU {args.iou:g}), in "
          f"{sum(bool(item['negatives']) for item in images)} of {len(images)} images; they hold "
          f"{objects_in_negatives} of their images' {objects} true objects.")
    source = {"recording": args.recording, "weights": args.weights, "dataset": args.dataset,
              "start_image": args.start_image, "num_images": args.num_images, "opts": args.opts, "iou": args.iou}
    if args.merge_with:
        earlier, earlier_source = read_hard_negative_entries(args.merge_with, tokenizer.num_classes)
        images = merge_hard_negatives(earlier, images, args.merge_with)
        source["merged_with"] = {"path": args.merge_with, "source": earlier_source}
        print(f"With {args.merge_with}: {sum(len(item['negatives']) for item in images)} negatives in "
              f"{sum(bool(item['negatives']) for item in images)} of {len(images)} images.")
    write_hard_negatives(args.output, images, source)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
