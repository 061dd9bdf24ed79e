#!/usr/bin/env python
"""Continue training a DIVE checkpoint after input channels were added to its UNet.

    python tools/widen_unet_input.py output/shapes/dive_image_coord/model_final.pth \
        output/shapes/dive_spatial_init.pth --add 8

The UNet's input is [latents, coordinate planes (MODEL.DIVE.UNET.COORDINATE_CHANNELS), spatial layout map
(MODEL.DIVE.SPATIAL_MAP.CHANNELS)]. This appends ``--add`` input channels with zero weights to the first
convolution, so the widened model predicts exactly what the original did and training learns to use the
new inputs; parts that did not exist (such as the spatial map) start from their fresh initialisation when
the output is loaded as MODEL.WEIGHTS. Channels are appended at the end: widen in the order above.
"""

import argparse
import os
import sys

import torch

CONV_IN = "unet.conv_in.weight"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a DetectionCheckpointer file of a DIVE model")
    parser.add_argument("output", help="where the widened checkpoint goes")
    parser.add_argument("--add", type=int, required=True, help="input channels to append")
    args = parser.parse_args(argv)

    loaded = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    state = loaded.get("model") if isinstance(loaded, dict) else None
    if state is None or CONV_IN not in state:
        print(f"{args.checkpoint}: no 'model'['{CONV_IN}']; is it a DIVE checkpoint?", file=sys.stderr)
        return 1
    if args.add < 1:
        print(f"--add must be positive, got {args.add}", file=sys.stderr)
        return 1
    weight = state[CONV_IN]
    state[CONV_IN] = torch.cat([weight, weight.new_zeros(weight.shape[0], args.add, *weight.shape[2:])], dim=1)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    torch.save({"model": state, "__author__": "dive_d2"}, args.output)
    print(f"wrote {args.output}: {CONV_IN} {tuple(weight.shape)} -> {tuple(state[CONV_IN].shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
