#!/usr/bin/env python
"""Denoising error as a classifier: how often does the true layout beat a corrupted one?

    python tools/rank_layouts.py --config-file configs/shapes/dive_prior.yaml \
        --weights weights/shapes/dive.pth --dataset dive_shapes_val --num-images 100

For each image (with at least one object), the mean denoising error of p(x|y) over ``--pairs`` fixed
(t, noise) pairs is computed with the true layout and with the first object moved 10 px, its class
changed, and dropped (see dive_d2/evaluation/layout_ranking.py). Prints, per corruption, the number of
images where the true layout has the lower error, then the same fraction within each timestep range
(which noise levels carry the signal).
"""

import argparse
import json

import torch
from detectron2.data import DatasetCatalog
from tqdm import tqdm

from dive_d2.evaluation import CORRUPTIONS, corruption_margins, fixed_pairs
from dive_d2.loading import load_config, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=48, help="fixed (t, noise) pairs per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timestep-bins", type=int, default=8, help="timestep ranges of the per-t breakdown")
    parser.add_argument("--json", default="", help="also write the counts here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = load_config(args.config_file, args.opts)
    model = load_model(cfg, args.weights)
    size = model.input_size // model.first_stage.downsample
    timesteps, noise = fixed_pairs(args.pairs, (model.first_stage.channels, size, size),
                                   model.scheduler.config.num_train_timesteps, args.seed)

    margins = []  # per image: (corruptions, pairs)
    for record in tqdm(DatasetCatalog.get(args.dataset)[: args.num_images], desc="ranking layouts"):
        if record["annotations"]:
            margins.append(corruption_margins(model, record, timesteps, noise, image_format=cfg.INPUT.FORMAT))
    margins = torch.stack(margins)  # (images, corruptions, pairs)
    images = len(margins)
    wins = {kind: int((margins[:, k].mean(dim=1) > 0).sum()) for k, kind in enumerate(CORRUPTIONS)}

    print(f"{args.dataset}: true layout has the lower denoising error in, of {images} images:")
    for kind in CORRUPTIONS:
        print(f"  {kind:>14}: {wins[kind]}/{images} ({100 * wins[kind] / max(images, 1):.0f}%)")
    bins = torch.arange(args.pairs).chunk(args.timestep_bins)
    print("per timestep range, fraction of images where the true layout wins on those pairs "
          "(mean error rise in brackets):")
    print(f"  {'t':>9}  " + "  ".join(f"{kind:>22}" for kind in CORRUPTIONS))
    per_timestep = []
    for members in bins:
        span = f"{int(timesteps[members[0]])}-{int(timesteps[members[-1]])}"
        rise = margins[:, :, members].mean(dim=2)  # (images, corruptions)
        fractions = {kind: float((rise[:, k] > 0).float().mean()) for k, kind in enumerate(CORRUPTIONS)}
        mean_rises = {f"{kind}_mean_rise": float(rise[:, k].mean()) for k, kind in enumerate(CORRUPTIONS)}
        row = {"timesteps": span, **fractions, **mean_rises}
        per_timestep.append(row)
        print(f"  {span:>9}  " + "  ".join(f"{row[kind]:>10.2f} ({row[kind + '_mean_rise']:+.1e})"
                                          for kind in CORRUPTIONS))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": args.dataset, "images": images, "pairs": args.pairs, "wins": wins,
                       "per_timestep": per_timestep}, f, indent=2)

if __name__ == "__main__":
    main()
