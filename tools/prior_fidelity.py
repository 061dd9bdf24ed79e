#!/usr/bin/env python
"""Compare layouts drawn from the prior p(y) with the training layouts.

    python tools/prior_fidelity.py --config-file configs/shapes/dive_prior.yaml \
        --weights weights/shapes/dive.pth --num-samples 1000 --plot docs/shapes_prior_fidelity.png \
        --samples-png docs/shapes_prior_samples.png

Features per object: width, height, centre x, centre y (in pixels of a 64x64 image) and class; per layout:
the number of objects. For each, prints the 1-D Wasserstein distance between prior samples and the
training layouts (encoded with the model's tokenizer, so both sides live on the same grid), and, as a
yardstick, the distance between two halves of the training layouts.
"""

import argparse
import json
import os

import cv2
import matplotlib.pyplot as plt  # headless machines fall back to the Agg backend
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from scipy.stats import wasserstein_distance

from dive_d2.data import ground_truth_layout
from dive_d2.loading import load_config, load_model
from dive_d2.sampling import sample_layouts
from dive_d2.visualization import draw_layout, image_grid

FEATURES = ("objects per layout", "class", "width", "height", "centre x", "centre y")
FRAME = 64  # layouts are compared in pixels of a FRAME x FRAME image


def layout_features(layouts):
    """Dict feature -> 1-D array over layouts (objects per layout) or over objects (the others)."""
    counts = np.array([len(b) for b, _ in layouts], dtype=float)
    boxes = np.concatenate([b.reshape(-1, 4) for b, _ in layouts]) if len(layouts) else np.zeros((0, 4))
    classes = np.concatenate([c.reshape(-1) for _, c in layouts]).astype(float)
    return {
        "objects per layout": counts, "class": classes,
        "width": boxes[:, 2] - boxes[:, 0], "height": boxes[:, 3] - boxes[:, 1],
        "centre x": (boxes[:, 0] + boxes[:, 2]) / 2, "centre y": (boxes[:, 1] + boxes[:, 3]) / 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100, help="DDIM steps of the prior")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clamp", action="store_true",
                        help="snap the prior's clean estimate to vocabulary rows at every step (Diffusion-LM)")
    parser.add_argument("--plot", default="", help="PNG of the histograms")
    parser.add_argument("--samples-png", default="", help="PNG of 24 prior samples drawn as boxes")
    parser.add_argument("--json", default="", help="also write the distances here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = load_config(args.config_file, args.opts)
    model = load_model(cfg, args.weights)
    tokenizer = model.tokenizer
    dataset = cfg.DATASETS.TRAIN[0]
    class_names = MetadataCatalog.get(dataset).thing_classes

    def decode(tokens):
        layout = tokenizer.decode(tokens, FRAME, FRAME)
        return layout.boxes.numpy(), layout.classes.numpy()

    training = []
    for d in DatasetCatalog.get(dataset):
        boxes, classes = ground_truth_layout(d)
        training.append(decode(tokenizer.encode(boxes, classes, d["height"], d["width"])))
    generator = torch.Generator().manual_seed(args.seed)
    samples = [decode(t) for t in sample_layouts(model, args.num_samples, generator, num_steps=args.steps,
                                                 clamp=args.clamp, progress="sampling the prior")]

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(training))
    half_a = [training[i] for i in order[: len(order) // 2]]
    half_b = [training[i] for i in order[len(order) // 2 :]]
    train_f, sample_f = layout_features(training), layout_features(samples)
    half_a_f, half_b_f = layout_features(half_a), layout_features(half_b)
    results = {}
    print(f"prior samples ({len(samples)}) vs {dataset} ({len(training)} layouts), 1-D Wasserstein distance:")
    print("| feature | prior vs train | train half vs half | train mean | prior mean |")
    print("|---|---|---|---|---|")
    for name in FEATURES:
        if len(sample_f[name]) == 0:
            print(f"| {name} | no objects sampled | | | |")
            continue
        distance = wasserstein_distance(sample_f[name], train_f[name])
        yardstick = wasserstein_distance(half_a_f[name], half_b_f[name])
        results[name] = {"prior_vs_train": distance, "half_vs_half": yardstick}
        print(f"| {name} | {distance:.3f} | {yardstick:.3f} | {train_f[name].mean():.2f} | "
              f"{sample_f[name].mean():.2f} |")

    if args.plot:
        figure, axes = plt.subplots(1, len(FEATURES), figsize=(4 * len(FEATURES), 3.2))
        for axis, name in zip(axes, FEATURES, strict=True):
            values = np.concatenate([train_f[name], sample_f[name]])
            bins = np.arange(values.min() - 0.5, values.max() + 1.5) if name in FEATURES[:2] else 24
            axis.hist(train_f[name], bins=bins, density=True, alpha=0.5, label=f"train ({dataset})")
            axis.hist(sample_f[name], bins=bins, density=True, alpha=0.5, label="prior samples")
            axis.set_title(name)
        axes[0].legend(fontsize=7)
        figure.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        figure.savefig(args.plot, dpi=80)
        print(f"wrote {args.plot}")
    if args.samples_png:
        canvas = np.zeros((FRAME, FRAME, 3), np.uint8)
        tiles = [draw_layout(canvas, b, c, class_names) for b, c in samples[:24]]
        os.makedirs(os.path.dirname(os.path.abspath(args.samples_png)), exist_ok=True)
        cv2.imwrite(args.samples_png, image_grid([tiles[i : i + 8] for i in range(0, len(tiles), 8)])[:, :, ::-1])
        print(f"wrote {args.samples_png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
