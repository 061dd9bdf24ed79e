#!/usr/bin/env python
"""Draw ground truth (and a model's detections) on dataset images with Detectron2's Visualizer.

    python tools/visualize.py --dataset dive_shapes_val --num-images 8 --out docs/shapes_val_frcnn.png \
        --config-file configs/shapes/faster_rcnn_R18_FPN.yaml --weights weights/shapes/faster_rcnn_R18_FPN.pth

Each row is one image: ground truth on the left, detections with score >= ``--score`` on the right (only
the ground truth without ``--config-file``).
"""

import argparse
import os

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import Visualizer

from dive_d2.loading import load_config
from dive_d2.visualization import image_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--scale", type=float, default=4.0, help="drawing scale (64 px images are small)")
    parser.add_argument("--config-file", default="")
    parser.add_argument("--weights", default="")
    parser.add_argument("--score", type=float, default=0.5)
    parser.add_argument("--columns", type=int, default=4, help="image pairs per row of the picture")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    metadata = MetadataCatalog.get(args.dataset)
    predictor = None
    if args.config_file:
        predictor = DefaultPredictor(load_config(args.config_file, ["MODEL.WEIGHTS", args.weights]))
    tiles = []
    for record in DatasetCatalog.get(args.dataset)[: args.num_images]:
        rgb = utils.read_image(record["file_name"], format="RGB")
        pair = [Visualizer(rgb, metadata, scale=args.scale).draw_dataset_dict(record).get_image()]
        if predictor is not None:
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
