#!/usr/bin/env python
"""Generate one image per layout of a dataset with p(x|y), written as a COCO dataset (layout fidelity).

    python tools/generate_dataset.py --config-file configs/shapes/dive_prior.yaml \
        --weights weights/shapes/dive.pth --dataset dive_shapes_val --out exported/generated_shapes_val

Every image of ``--dataset`` contributes its ground-truth layout (encoded with the model's tokenizer, so
the conditioning is exactly what the model can express). p(x|y) draws an image for it (DDIM, seeded), the
image is resized back to the original size, and the *conditioning* boxes become its annotations.
Evaluating a detector on the result measures how well generated images follow their layouts (the
"YOLOScore" check of the layout-to-image literature):

    python tools/train_net.py --config-file configs/shapes/faster_rcnn_R18_FPN.yaml --eval-only \
        MODEL.WEIGHTS weights/shapes/faster_rcnn_R18_FPN.pth \
        DATASETS.COCO_TEST.JSON exported/generated_shapes_val/annotations.json \
        DATASETS.COCO_TEST.IMAGES exported/generated_shapes_val/images

``--grid-png`` also writes a picture: conditioning layout drawn as boxes | generated image, per row.
"""

import argparse
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from dive_d2.data import ground_truth_layout, write_coco_dataset
from dive_d2.loading import load_config, load_model
from dive_d2.sampling import generate_images
from dive_d2.visualization import draw_layout, image_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--num-images", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--grid-png", default="", help="also write a picture of the first 8 layouts and images")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = load_config(args.config_file, args.opts)
    model = load_model(cfg, args.weights)
    tokenizer = model.tokenizer
    class_names = MetadataCatalog.get(args.dataset).thing_classes

    dicts = DatasetCatalog.get(args.dataset)
    if args.num_images:
        dicts = dicts[: args.num_images]
    generator = torch.Generator().manual_seed(args.seed)
    records, grid_rows = [], []
    for start in tqdm(range(0, len(dicts), args.batch_size), desc="generating"):
        chunk = dicts[start : start + args.batch_size]
        tokens, layouts = [], []
        for d in chunk:
            boxes, classes = ground_truth_layout(d)
            tokens.append(tokenizer.encode(boxes, classes, d["height"], d["width"]))
            layouts.append(tokenizer.decode(tokens[-1], d["height"], d["width"]))
        images = generate_images(model, torch.stack(tokens), generator, num_steps=args.steps)
        for d, image, layout in zip(chunk, images, layouts, strict=True):
            full_size = F.interpolate(image[None].float(), size=(d["height"], d["width"]), mode="bilinear",
                                      align_corners=False)[0]
            rgb = full_size.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            records.append((rgb, layout.boxes.numpy(), layout.classes.numpy()))
            if len(grid_rows) < 8:
                canvas = np.zeros_like(rgb)
                grid_rows.append([draw_layout(canvas, layout.boxes.numpy(), layout.classes.numpy(), class_names),
                                  draw_layout(rgb, np.zeros((0, 4)), np.zeros(0, int), class_names)])
    count = write_coco_dataset(records, class_names, os.path.join(args.out, "images"),
                               os.path.join(args.out, "annotations.json"),
                               description=f"p(x|y) images for the layouts of {args.dataset}")
    print(f"wrote {count} generated images with their conditioning layouts to {args.out}")
    if args.grid_png:
        os.makedirs(os.path.dirname(os.path.abspath(args.grid_png)), exist_ok=True)
        cv2.imwrite(args.grid_png, image_grid(grid_rows, scale=3)[:, :, ::-1])
        print(f"wrote {args.grid_png}")


if __name__ == "__main__":
    main()
