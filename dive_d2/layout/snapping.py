"""Snapping continuous layout embeddings to real vocabulary tokens, respecting each position's token type.

Used when sampling the prior and, with the straight-through estimator, by the inversion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nearest_allowed_tokens(
    embeddings: torch.Tensor, vocabulary: torch.Tensor, allowed: torch.Tensor, metric: str = "l2"
) -> torch.Tensor:
    """The allowed vocabulary token nearest to each embedding.

    Args:
        embeddings: (B, L, D) continuous embeddings.
        vocabulary: (V, D) the embedding table.
        allowed: (L, V) bool, which tokens each position may take (``LayoutTokenizer.allowed_tokens()``).
        metric: "l2" (Euclidean distance) or "cosine" (largest cosine similarity).

    Returns:
        (B, L) int64 token ids.
    """
    if metric == "l2":
        distance = torch.cdist(embeddings, vocabulary[None].expand(len(embeddings), -1, -1))
    elif metric == "cosine":
        distance = -F.normalize(embeddings, dim=-1) @ F.normalize(vocabulary, dim=-1).T
    else:
        raise ValueError(f"snapping metric must be 'l2' or 'cosine', got {metric!r}")
    distance = distance.masked_fill(~allowed.to(distance.device)[None], float("inf"))
    return distance.argmin(dim=-1)
