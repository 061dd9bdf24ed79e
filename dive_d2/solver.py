"""Optimizer choice by config: Detectron2's SGD, or AdamW (what diffusion models are trained with)."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.solver import build_optimizer as build_detectron2_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER "SGD": Detectron2's own builder. "ADAMW": AdamW with SOLVER.BASE_LR,
    SOLVER.WEIGHT_DECAY (and _NORM), SOLVER.ADAM_BETAS, and SOLVER.CLIP_GRADIENTS as Detectron2 applies them."""
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        return build_detectron2_optimizer(cfg, model)
    if name != "ADAMW":
        raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'ADAMW', got {cfg.SOLVER.OPTIMIZER!r}")
    params = get_default_optimizer_params(model, base_lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
                                          weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM)
    optimizer_class = maybe_add_gradient_clipping(cfg, torch.optim.AdamW)
    return optimizer_class(params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.ADAM_BETAS),
                           weight_decay=cfg.SOLVER.WEIGHT_DECAY)
