#!/usr/bin/env python
"""Export a synthetic benchmark split as a COCO json plus PNG folder.

    python tools/export_coco.py dive_shapes_val --out exported/shapes_val
    # a fresh draw from the same specification, e.g. an independent test set:
    python tools/export_coco.py dive_shapes_val --seed 1234 --num-images 200 --out exported/shapes_s1234

Writes ``<out>/annotations.json`` and ``<out>/images/*.png``; evaluate a model on it with
``tools/train_net.py ... DATASETS.COCO_TEST.JSON <out>/annotations.json DATASETS.COCO_TEST.IMAGES <out>/images``.
"""

import argparse
import dataclasses
import os
import sys

from dive_d2.data.benchmarks import BENCHMARK_SPLITS, write_split


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split", choices=sorted(BENCHMARK_SPLITS), help="registered benchmark split")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--seed", type=int, default=None, help="draw with this seed instead of the split's")
    parser.add_argument("--num-images", type=int, default=None, help="number of images (default: the split's)")
    args = parser.parse_args(argv)

    split = BENCHMARK_SPLITS[args.split]
    if args.seed is not None:
        split = dataclasses.replace(split, seed=args.seed)
    json_path = os.path.join(args.out, "annotations.json")
    if os.path.exists(json_path):
        print(f"refusing to overwrite {json_path}", file=sys.stderr)
        return 1
    count = write_split(split, os.path.join(args.out, "images"), json_path, args.num_images)
    print(f"wrote {count} images of {split.name} (seed {split.seed}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
