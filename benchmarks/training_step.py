#!/usr/bin/env python
"""Time one training step (forward + backward + AdamW update) of a DIVE config's trained parts.

    python benchmarks/training_step.py --config-file configs/shapes/dive_image.yaml --batch-sizes 8 32

Random 64x64 images with two boxes each; prints the median over ``--repeats`` steps (after one warm-up
step), the parameter counts, and the torch thread count. Run it on an otherwise idle machine.
"""

import argparse
import time

import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from dive_d2.loading import load_config


def random_batch(batch_size: int, generator: torch.Generator) -> list[dict]:
    batch = []
    for _ in range(batch_size):
        instances = Instances((64, 64))
        instances.gt_boxes = Boxes(torch.tensor([[4.0, 6.0, 24.0, 30.0], [30.0, 28.0, 58.0, 60.0]]))
        instances.gt_classes = torch.tensor([0, 1])
        image = torch.randint(0, 256, (3, 64, 64), generator=generator, dtype=torch.uint8)
        batch.append({"image": image, "instances": instances})
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()

    cfg = load_config(args.config_file, args.opts)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for part in ("layout_encoder", "unet", "prior"):
        count = sum(p.numel() for p in getattr(model, part).parameters())
        print(f"{part}: {count / 1e6:.2f} M parameters")
    print(f"device {cfg.MODEL.DEVICE}, torch threads {torch.get_num_threads()}")
    generator = torch.Generator().manual_seed(0)
    for batch_size in args.batch_sizes:
        batch = random_batch(batch_size, generator)
        times = []
        for _ in range(args.repeats + 1):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            loss = sum(model(batch).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        median = sorted(times[1:])[len(times[1:]) // 2]
        print(f"batch {batch_size:3d}: {median:.3f} s per training step (median of {args.repeats})")


if __name__ == "__main__":
    main()
