#!/usr/bin/env python
"""Draw ground truth (and a model's detections) on dataset images with Detectron2's Visualizer.

    python tools/visualize.py --dataset dive_shapes_val --num-images 8 --out docs/shapes_val_frcnn.png \
        --config-file configs/shapes/faster_rcnn_R18_FPN.yaml --weights weights/shapes/faster_rcnn_R18_FPN.pth
    python tools/visualize.py --dataset dive_shapes_val --num-images 8 --out docs/shapes_val_dive.png \
        --predictions output/main/inference/coco_instances_results.json --score 0

Each tile is one image: ground truth on the left, detections with score >= ``--score`` on the right: run
by the model of ``--config-file``, or read from the COCO results json that COCOEvaluator wrote during an
``--eval-only`` run (``--predictions``; how DIVE's slow inversions are drawn without running them again).
Only the ground truth without either.
"""

import argparse
import json
import os
from collections import defaultdict

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.engine import DefaultPredictor
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.visualizer import Visualizer

from dive_d2.loading import load_config
from dive_d2.visualization import image_grid


def instances_from_coco_results(path: str, dataset: str) -> dict[int, Instances]:
    """Per image_id, Instances (pixels, XYXY) of a COCOEvaluator ``coco_instances_results.json`` (XYWH boxes,
    COCO category ids mapped back to contiguous class indices through the dataset's metadata)."""
    with open(path) as handle:
        results = json.load(handle)
    metadata = MetadataCatalog.get(dataset)
    to_contiguous = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    per_image = defaultdict(list)
    for result in results:
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in result:
                raise KeyError(f"{path}: a result has no {key!r}; is this a COCOEvaluator results file?")
        per_image[result["image_id"]].append(result)
    instances = {}
    for image_id, rows in per_image.items():
        boxes = BoxMode.convert(np.array([r["bbox"] for r in rows], dtype=np.float32).reshape(-1, 4),
                                BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
        classes = [to_contiguous[r["category_id"]] if to_contiguous else r["category_id"] for r in rows]
        found = Instances((0, 0))  # image_size is not used for drawing
        found.pred_boxes = Boxes(torch.as_tensor(boxes))
        found.scores = torch.tensor([r["score"] for r in rows], dtype=torch.float32)
        found.pred_classes = torch.tensor(classes, dtype=torch.int64)
        instances[image_id] = found
    return instances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--scale", type=float, default=4.0, help="drawing scale (64 px images are small)")
    parser.add_argument("--config-file", default="")
    parser.add_argument("--weights", default="")
    parser.add_argument("--predictions", default="", help="a COCOEvaluator coco_instances_results.json instead")
    parser.add_argument("--score", type=float, default=0.5)
    parser.add_argument("--columns", type=int, default=4, help="image pairs per row of the picture")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    metadata = MetadataCatalog.get(args.dataset)
    records = DatasetCatalog.get(args.dataset)  # loading also records the category id mapping in the metadata
    predictor, saved = None, None
    if args.predictions:
        saved = instances_from_coco_results(args.predictions, args.dataset)
    elif args.config_file:
        predictor = DefaultPredictor(load_config(args.config_file, ["MODEL.WEIGHTS", args.weights]))
    tiles = []
    for record in records[: args.num_images]:
        rgb = utils.read_image(record["file_name"], format="RGB")
        pair = [Visualizer(rgb, metadata, scale=args.scale).draw_dataset_dict(record).get_image()]
        if predictor is not None or saved is not None:
            if saved is not None:
                instances = saved.get(record["image_id"], Instances(
                    (0, 0), pred_boxes=Boxes(torch.zeros(0, 4)), scores=torch.zeros(0),
                    pred_classes=torch.zeros(0, dtype=torch.int64)))
            else:
                instances = predictor(rgb[:, :, ::-1].copy())["instances"].to("cpu")
            instances = instances[instances.scores >= args.score]
            pair.append(Visualizer(rgb, metadata, scale=args.scale).draw_instance_predictions(instances).get_image())
        tiles.append(np.concatenate(pair, axis=1))
    rows = [tiles[i : i + args.columns] for i in range(0, len(tiles), args.columns)]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, image_grid(rows, pad=6)[:, :, ::-1])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
