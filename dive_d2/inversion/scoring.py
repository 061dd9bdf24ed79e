"""Confidence scores for the objects of an inverted layout (COCO AP needs a ranking of detections).

The paper does not say how DIVE ranks its detections. Three scores, chosen by MODEL.DIVE.INVERSION.SCORE:

- ``leave_one_out``: the evidence for an object is how much the monitored posterior loss rises when its
  slot is replaced by ``none``: delta = loss(layout without it) - loss(layout). The score is
  sigmoid(delta / temperature), in (0, 1). AP only depends on the ranking, which the temperature does not
  change.
- ``margin``: how decisively the final continuous embeddings snap, averaged over the object's three
  positions: (d2 - d1) / (d2 + d1), with d1 and d2 the distances to the nearest and second-nearest allowed
  tokens. In [0, 1].
- ``constant``: 1.0 for every object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..layout import leave_one_out_layouts

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE
    from .engine import LayoutInversion

SCORES = ("leave_one_out", "margin", "constant")


def leave_one_out_scores(model: DIVE, inversion: LayoutInversion, latents: torch.Tensor, tokens: torch.Tensor,
                         slots: torch.Tensor, temperature: float) -> torch.Tensor:
    """(K,) scores of the objects in ``slots`` of one layout.

    Args:
        model: the DIVE model; inversion: its LayoutInversion (the monitor's pairs and loss are used).
        latents: (1, C, h, w) the image's latents; tokens: (L,) its layout; slots: (K,) object slots.
    """
    if len(slots) == 0:
        return torch.zeros(0, device=latents.device)
    variants = leave_one_out_layouts(tokens, slots, model.tokenizer.none_token)
    vocabulary = model.layout_encoder.vocabulary().detach()
    with torch.no_grad():
        losses = inversion.posterior_loss(model, latents.expand(len(variants), -1, -1, -1), vocabulary[variants],
                                          *inversion.monitor_pairs_for(model, latents))
    return torch.sigmoid((losses[1:] - losses[0]) / temperature)


def margin_scores(model: DIVE, embeddings: torch.Tensor, slots: torch.Tensor, metric: str) -> torch.Tensor:
    """(K,) snapping margins of the objects in ``slots``, from one layout's (L, width) embeddings."""
    if len(slots) == 0:
        return torch.zeros(0, device=embeddings.device)
    vocabulary = model.layout_encoder.vocabulary().detach()
    if metric == "cosine":
        unit = torch.nn.functional.normalize
        distance = 1 - unit(embeddings, dim=-1) @ unit(vocabulary, dim=-1).T
    else:
        distance = torch.cdist(embeddings, vocabulary)
    distance = distance.masked_fill(~model.tokenizer.allowed_tokens().to(distance.device), float("inf"))
    nearest = distance.topk(2, dim=-1, largest=False).values  # (L, 2)
    margin = (nearest[:, 1] - nearest[:, 0]) / (nearest[:, 1] + nearest[:, 0]).clamp(min=1e-12)
    positions = torch.stack([3 * slots, 3 * slots + 1, 3 * slots + 2], dim=1).to(margin.device)
    return margin[positions].mean(dim=1)
