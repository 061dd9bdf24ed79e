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
import sys

import torch

from dive_d2.loading import read_checkpoint, write_model_state

CONV_IN = "unet.conv_in.weight"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a DetectionCheckpointer file of a DIVE model")
    parser.add_argument("output", help="where the widened checkpoint goes")
    parser.add_argument("--add", type=int, required=True, help="input channels to append")
    args = parser.parse_args(argv)

    try:
        state = read_checkpoint(args.checkpoint, CONV_IN)["model"]
    except ValueError as error:
        print(f"{error}; is it a DIVE checkpoint?", file=sys.stderr)
        return 1
    if args.add < 1:
        print(f"--add must be positive, got {args.add}", file=sys.stderr)
        return 1
    weight = state[CONV_IN]
    state[CONV_IN] = torch.cat([weight, weight.new_zeros(weight.shape[0], args.add, *weight.shape[2:])], dim=1)
    write_model_state(state, args.output)
    print(f"wrote {args.output}: {CONV_IN} {tuple(weight.shape)} -> {tuple(state[CONV_IN].shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
