#!/usr/bin/env python
"""What has the layout prior learned? Token recovery from noised training layouts, per timestep.

    python tools/prior_recovery.py --config-file configs/shapes/dive.yaml --weights weights/shapes/dive.pth

The first ``--num-layouts`` training layouts are noised to each timestep; the prior's clean estimate is
snapped to the vocabulary and compared with the true tokens at class and corner positions. Next to it,
the same for snapping the noisy input itself, which needs no knowledge of layouts (where the two agree, the
prior adds nothing at that noise level), and for the exact posterior mean of each position alone, whose epsilon
error a prior that has learned anything about layouts beats (see ``dive_d2.evaluation.prior_recovery``).
"""

import argparse
import json

import torch
from detectron2.data import DatasetCatalog

import dive_d2  # noqa: F401  (registers datasets and models)
from dive_d2.data import ground_truth_layout, prepare_datasets_from_config
from dive_d2.evaluation import prior_token_recovery
from dive_d2.loading import load_config, load_model

ESTIMATES = ("prior", "posterior", "snap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--num-layouts", type=int, default=512)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[20, 50, 100, 200, 300, 400, 550, 700, 850])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="", help="also write the table here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()
    cfg = load_config(args.config_file, args.opts)
    prepare_datasets_from_config(cfg)
    model = load_model(cfg, args.weights)
    dataset = cfg.DATASETS.TRAIN[0]
    records = DatasetCatalog.get(dataset)[: args.num_layouts]
    tokens = torch.stack([model.tokenizer.encode(*ground_truth_layout(r), r["height"], r["width"]) for r in records])
    rows = prior_token_recovery(model, tokens, args.timesteps, torch.Generator().manual_seed(args.seed))
    print(f"tokens recovered from {len(records)} noised {dataset} layouts, by the prior, by the exact posterior of "
          "each position alone, and by snapping the noisy input (corner: all corner positions; object corner: those "
          "of real objects, none excluded; object IoU: of each true box with the box its slot decodes to, 0 if "
          "none; eps error: mean squared error of the noise the clean estimate implies):")
    kinds = ("class", "corner", "object_corner", "object_iou", "epsilon_error")
    print("| t | " + " | ".join(f"{who}: {kind.replace('_', ' ')}" for who in ESTIMATES for kind in kinds) + " |")
    print("|---" * (1 + len(ESTIMATES) * len(kinds)) + "|")
    for row in rows:
        print(f"| {row['t']} | " + " | ".join(f"{row[f'{who}_{kind}']:.4f}" if kind == "epsilon_error" else
                                           f"{row[f'{who}_{kind}']:.3f}" for who in ESTIMATES for kind in kinds) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
