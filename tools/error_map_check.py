#!/usr/bin/env python
"""Does the empty layout's denoising error map point at the objects? (the signal behind ``INIT error_map``)

For each image of a slice: the per-position denoising error of p(x|y) given the empty layout, on the
inversion monitor's fixed (t, noise) pairs (``dive_d2.inversion.error_map.empty_layout_error_map``), and
the share of the map's mass (the map raised to each ``--powers``) that falls inside the ground-truth boxes,
against the share of the image those boxes cover. Boxes go to the square model input as the model resizes
images (each axis scaled on its own). With ``--out`` also a picture: per image, the image with its ground
truth and the map.

    .venv/bin/python tools/error_map_check.py --config-file configs/shapes/dive.yaml \
      --weights weights/shapes/dive.pth --num-images 24 --start-image 24 --out docs/shapes_error_map.png
"""

from __future__ import annotations

import argparse

import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

import dive_d2  # noqa: F401  (registers datasets and models)
from dive_d2.data import ground_truth_layout, prepare_datasets_from_config
from dive_d2.data.from_config import register_first_images
from dive_d2.inversion.error_map import box_mask, empty_layout_error_map
from dive_d2.loading import load_config, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--start-image", type=int, default=0)
    parser.add_argument("--num-images", type=int, required=True)
    parser.add_argument("--powers", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--out", help="a PNG of the first --show images and their maps")
    parser.add_argument("--show", type=int, default=6)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config options")
    args = parser.parse_args()
    setup_logger(name="dive_d2")

    cfg = load_config(args.config_file, args.opts)
    prepare_datasets_from_config(cfg)
    model = load_model(cfg, args.weights)
    dataset_dicts = DatasetCatalog.get(register_first_images(args.dataset, args.num_images, args.start_image))
    mapper = DatasetMapper(cfg, is_train=False)
    area, mass, shown = [], {power: [] for power in args.powers}, []
    for record in tqdm(dataset_dicts, desc="images", unit="image"):
        item = mapper(record)
        with torch.no_grad():
            latents = model.first_stage.encode(model.preprocess_images([item]))
            timesteps, noise, _ = model.inversion.monitor_pairs_for(model, latents)
            error_map = empty_layout_error_map(model, latents, timesteps, noise)[0].cpu()
        boxes, _ = ground_truth_layout(record)
        normalised = boxes / torch.tensor([record["width"], record["height"]] * 2)
        inside = box_mask(normalised, *error_map.shape)
        area.append(float(inside.float().mean()))
        for power in args.powers:
            density = error_map ** power
            mass[power].append(float(density[inside].sum() / density.sum()))
        if len(shown) < args.show:
            shown.append((item["image"], boxes, error_map))

    print(f"\n{len(dataset_dicts)} images ({args.dataset} {args.start_image}..{args.start_image + len(area) - 1}): "
          f"ground-truth boxes cover {sum(area) / len(area):.3f} of the image (mean over images)")
    for power in args.powers:
        values = mass[power]
        print(f"  error map ** {power:g}: {sum(values) / len(values):.3f} of its mass inside the boxes "
              f"(lowest image {min(values):.3f})")
    if args.out:
        draw(shown, args.out, cfg.INPUT.FORMAT)
        print(f"wrote {args.out}")


def draw(shown: list, path: str, input_format: str) -> None:
    """Rows of (image with its ground-truth boxes | empty-layout error map with the same boxes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(shown), 2, figsize=(4, 2 * len(shown)), squeeze=False)
    for row, (image, boxes, error_map) in enumerate(shown):
        picture = image.permute(1, 2, 0).numpy()
        if input_format == "BGR":
            picture = picture[..., ::-1]
        height, width = picture.shape[:2]
        map_height, map_width = error_map.shape
        axes[row, 0].imshow(picture.squeeze() if picture.shape[2] == 1 else picture, cmap="gray")
        axes[row, 1].imshow(error_map.numpy(), cmap="magma")
        for column, (scale_x, scale_y) in enumerate([(1.0, 1.0), (map_width / width, map_height / height)]):
            for x0, y0, x1, y1 in boxes.tolist():
                # imshow puts cell centres on integers: edges sit half a cell before.
                axes[row, column].add_patch(plt.Rectangle((x0 * scale_x - 0.5, y0 * scale_y - 0.5),
                                                          (x1 - x0) * scale_x, (y1 - y0) * scale_y,
                                                          fill=False, edgecolor="lime", linewidth=1))
            axes[row, column].set_axis_off()
    axes[0, 0].set_title("image, ground truth", fontsize=8)
    axes[0, 1].set_title("empty-layout error", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
