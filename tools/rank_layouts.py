#!/usr/bin/env python
"""Denoising error as a classifier: how often does the true layout beat a corrupted one?

    python tools/rank_layouts.py --config-file configs/shapes/dive_prior.yaml \
        --weights weights/shapes/dive.pth --dataset dive_shapes_val --num-images 100

For each image (with at least one object), the mean denoising error of p(x|y) over ``--pairs`` fixed
(t, noise) pairs is computed with the true layout and with the first object moved 10 px, its class
changed, and dropped (see dive_d2/evaluation/layout_ranking.py). Prints, per corruption, the number of
images where the true layout has the lower error.
"""

import argparse
import json

import torch
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from tqdm import tqdm

from dive_d2.data import ground_truth_layout
from dive_d2.evaluation import CORRUPTIONS, corrupt_layout, fixed_pairs, layout_errors
from dive_d2.loading import load_config, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=48, help="fixed (t, noise) pairs per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="", help="also write the counts here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = load_config(args.config_file, args.opts)
    model = load_model(cfg, args.weights)
    tokenizer = model.tokenizer
    size = model.input_size // model.first_stage.downsample
    timesteps, noise = fixed_pairs(args.pairs, (model.first_stage.channels, size, size),
                                   model.scheduler.config.num_train_timesteps, args.seed)

    wins = dict.fromkeys(CORRUPTIONS, 0)
    images = 0
    for d in tqdm(DatasetCatalog.get(args.dataset)[: args.num_images], desc="ranking layouts"):
        if not d["annotations"]:
            continue
        image = utils.read_image(d["file_name"], format=cfg.INPUT.FORMAT)
        item = {"image": torch.as_tensor(image.transpose(2, 0, 1).copy())}
        latents = model.first_stage.encode(model.preprocess_images([item]))
        boxes, classes = ground_truth_layout(d)
        layouts = [(boxes, classes)] + [
            corrupt_layout(boxes, classes, kind, image.shape[1], tokenizer.num_classes) for kind in CORRUPTIONS]
        tokens = torch.stack([tokenizer.encode(b, c, *image.shape[:2]) for b, c in layouts]).to(model.device)
        errors = layout_errors(model, latents.expand(len(tokens), -1, -1, -1), tokens, timesteps, noise)
        images += 1
        for kind, error in zip(CORRUPTIONS, errors[1:], strict=True):
            wins[kind] += int(errors[0] < error)

    print(f"{args.dataset}: true layout has the lower denoising error in, of {images} images:")
    for kind in CORRUPTIONS:
        print(f"  {kind:>14}: {wins[kind]}/{images} ({100 * wins[kind] / max(images, 1):.0f}%)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": args.dataset, "images": images, "pairs": args.pairs, "wins": wins}, f, indent=2)


if __name__ == "__main__":
    main()
