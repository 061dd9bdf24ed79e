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

from detectron2.data import DatasetCatalog
from tqdm import tqdm

from dive_d2.evaluation import CORRUPTIONS, fixed_pairs, rank_record
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
    size = model.input_size // model.first_stage.downsample
    timesteps, noise = fixed_pairs(args.pairs, (model.first_stage.channels, size, size),
                                   model.scheduler.config.num_train_timesteps, args.seed)

    wins = dict.fromkeys(CORRUPTIONS, 0)
    images = 0
    for record in tqdm(DatasetCatalog.get(args.dataset)[: args.num_images], desc="ranking layouts"):
        if not record["annotations"]:
            continue
        images += 1
        for kind, won in rank_record(model, record, timesteps, noise, image_format=cfg.INPUT.FORMAT).items():
            wins[kind] += int(won)

    print(f"{args.dataset}: true layout has the lower denoising error in, of {images} images:")
    for kind in CORRUPTIONS:
        print(f"  {kind:>14}: {wins[kind]}/{images} ({100 * wins[kind] / max(images, 1):.0f}%)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": args.dataset, "images": images, "pairs": args.pairs, "wins": wins}, f, indent=2)


if __name__ == "__main__":
    main()
