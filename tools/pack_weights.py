#!/usr/bin/env python
"""Pack a Detectron2 training checkpoint into a small weights file for shipping.

    python tools/pack_weights.py output/shapes/faster_rcnn_R18_FPN/model_final.pth \
        weights/shapes/faster_rcnn_R18_FPN.pth

Keeps only the model's state dict (no optimizer, scheduler or iteration) and stores floating-point tensors
as float16, which halves the size; DetectionCheckpointer casts them back to the model's dtype on load.
Prints the largest absolute rounding error so the loss of precision is visible.
"""

import argparse
import os
import sys

from dive_d2.loading import read_checkpoint, write_model_state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .pth written by DetectionCheckpointer during training")
    parser.add_argument("output", help="where the packed weights go")
    args = parser.parse_args(argv)

    try:
        loaded = read_checkpoint(args.checkpoint)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    packed, max_error = {}, 0.0
    for name, tensor in loaded["model"].items():
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
