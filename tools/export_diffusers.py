#!/usr/bin/env python
"""Export the diffusion parts of a trained DIVE checkpoint with diffusers' save_pretrained.

    python tools/export_diffusers.py --config-file configs/shapes/dive_prior.yaml \
        --weights weights/shapes/dive.pth --out exported/shapes_dive

Writes ``<out>/layout_encoder``, ``<out>/unet``, ``<out>/prior`` and ``<out>/scheduler`` (safetensors +
config.json). Load them back with ``MODEL.DIVE.PRETRAINED_DIR <out>``, or part by part with
``UNet2DConditionModel.from_pretrained("<out>/unet")`` and so on.
"""

import argparse

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from dive_d2 import add_dive_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="DetectionCheckpointer file of the whole DIVE model")
    parser.add_argument("--out", required=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = get_cfg()
    add_dive_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *args.opts])
    model = build_model(cfg)
    DetectionCheckpointer(model).load(args.weights)
    model.save_pretrained(args.out)
    print(f"wrote {args.out}/{{layout_encoder,unet,prior,scheduler}}")


if __name__ == "__main__":
    main()
