#!/usr/bin/env python
"""Real and generated images per class of a DiffusionClassifier: does p(x|c) know its classes?

    python tools/sample_classes.py --config-file configs/classification/patches.yaml \
        --weights weights/classification/patches.pth --dataset dive_patches_val --num-classes 8 \
        --samples 5 --out docs/patches_classes.png

One row per class (classes spread evenly over the model's): the first real image of that class in
``--dataset``, then ``--samples`` images drawn by DDIM (``--steps``) with seed ``--seed``. The class names
of the rows are printed in order.
"""

import argparse
import os

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from dive_d2.data import ClassificationMapper
from dive_d2.loading import load_config, load_model
from dive_d2.sampling import generate_class_images
from dive_d2.visualization import image_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--num-classes", type=int, default=8)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--out", required=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = load_config(args.config_file, args.opts)
    model = load_model(cfg, args.weights)
    names = MetadataCatalog.get(args.dataset).thing_classes
    classes = sorted({round(i * model.num_classes / args.num_classes) for i in range(args.num_classes)})
    records = DatasetCatalog.get(args.dataset)
    mapper = ClassificationMapper(cfg.INPUT.FORMAT)
    labels = torch.tensor(classes).repeat_interleave(args.samples)
    generated = generate_class_images(model, labels, torch.Generator().manual_seed(args.seed), args.steps,
                                      progress="sampling")

    def rgb(tensor: torch.Tensor) -> np.ndarray:
        image = tensor.permute(1, 2, 0).cpu().numpy()
        return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image

    rows = []
    for row, label in enumerate(classes):
        real = next(r for r in records if r["label"] == label)
        drawn = generated[row * args.samples : (row + 1) * args.samples]
        rows.append([rgb(mapper(real)["image"])] + [rgb(g) for g in drawn])
        print(f"row {row}: {names[label]}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(image_grid(rows, scale=args.scale), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
