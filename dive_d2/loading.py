"""Building a config and a trained model outside tools/train_net.py (for the other tools)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model

from .config import add_dive_config


def load_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """Detectron2 config with the dive_d2 keys, ``config_file`` and ``opts`` (KEY VALUE ...) merged.

    MODEL.DEVICE becomes "cuda" when CUDA is available and "cpu" otherwise, unless ``opts`` set it.
    """
    cfg = get_cfg()
    add_dive_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.merge_from_list(list(opts))
    return cfg


def load_model(cfg: CfgNode, weights: str) -> torch.nn.Module:
    """The model of ``cfg`` with ``weights`` (a DetectionCheckpointer file) loaded, in eval mode."""
    model = build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    return model.eval()
