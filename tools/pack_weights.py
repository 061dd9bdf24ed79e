#!/usr/bin/env python
"""Pack a Detectron2 training checkpoint into a small weights file for shipping.

    python tools/pack_weights.py output/shapes/faster_rcnn_R18_FPN/model_final.pth \
        weights/shapes/faster_rcnn_R18_FPN.pth

Keeps only the model's state dict (no optimizer, scheduler or iteration) and stores floating-point tensors
as float16, which halves the size; DetectionCheckpointer casts them back to the model's dtype on load.
Prints the largest absolute rounding error so the loss of precision is visible.

``--drop PREFIX`` leaves out every tensor whose name starts with PREFIX, e.g. to train a new prior on a shipped
p(x|y) without starting from the shipped prior's weights:

    python tools/pack_weights.py weights/shapes/dive.pth output/shapes/image_model_only.pth --drop prior.
"""

import argparse
import os
import sys

from dive_d2.loading import read_checkpoint, write_model_state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .pth written by DetectionCheckpointer during training")
    parser.add_argument("output", help="where the packed weights go")
    parser.add_argument("--drop", action="append", default=[], metavar="PREFIX",
                        help="leave out the tensors whose names start with PREFIX (repeatable)")
    args = parser.parse_args(argv)

    try:
        loaded = read_checkpoint(args.checkpoint)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    state = loaded["model"]
    for prefix in args.drop:
        if not any(name.startswith(prefix) for name in state):
            print(f"{args.checkpoint}: no tensor name starts with --drop {prefix!r}", file=sys.stderr)
            return 1
    state = {name: tensor for name, tensor in state.items() if not name.startswith(tuple(args.drop))}
    packed, max_error = {}, 0.0
    for name, tensor in state.items():
        if tensor.is_floating_point():
            half = tensor.half()
            max_error = max(max_error, (half.float() - tensor.float()).abs().max().item() if tensor.numel() else 0.0)
            packed[name] = half
        else:
            packed[name] = tensor
    write_model_state(packed, args.output, source_iteration=loaded.get("iteration"))
    size_mb = os.path.getsize(args.output) / 2**20
    print(f"wrote {args.output}: {len(packed)} tensors, {size_mb:.1f} MiB, largest fp16 rounding error {max_error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
