#!/usr/bin/env python
"""Export the diffusion parts of a trained DIVE checkpoint with diffusers' save_pretrained.

    python tools/export_diffusers.py --config-file configs/shapes/dive_prior.yaml \
        --weights weights/shapes/dive.pth --out exported/shapes_dive

Writes ``<out>/layout_encoder``, ``<out>/unet``, ``<out>/prior`` and ``<out>/scheduler`` (safetensors +
config.json). Load them back with ``MODEL.DIVE.PRETRAINED_DIR <out>``, or part by part with
``UNet2DConditionModel.from_pretrained("<out>/unet")`` and so on.
"""

import argparse

from dive_d2.loading import load_config, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="DetectionCheckpointer file of the whole DIVE model")
    parser.add_argument("--out", required=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = load_config(args.config_file, args.opts)
    model = load_model(cfg, args.weights)
    model.save_pretrained(args.out)
    print(f"wrote {args.out}/{{layout_encoder,unet,prior,scheduler}}")


if __name__ == "__main__":
    main()
