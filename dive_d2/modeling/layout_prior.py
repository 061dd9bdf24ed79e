"""p(y): a diffusion model over layout embedding sequences.

A layout y becomes v(y), the (L, width) sequence of its tokens' rows in the *frozen* vocabulary table of
p(x|y), divided by that table's standard deviation so the signal has about unit scale against unit
Gaussian noise (see ``prior_input_scale``). ``LayoutPriorTransformer`` predicts the noise added to such
a sequence at timestep t (epsilon prediction): a transformer encoder over the sequence with a learned
position embedding, conditioned on a sinusoidal timestep embedding added to every position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn


def prior_input_scale(vocabulary: torch.Tensor) -> torch.Tensor:
    """The scalar the prior divides layout embeddings by: the standard deviation of the (frozen) table.

    Args:
        vocabulary: (V, width) the table of p(x|y)'s layout encoder.
    """
    return vocabulary.detach().std()


def rounding_loss(
    clean_estimate: torch.Tensor, vocabulary: torch.Tensor, allowed: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the true tokens given the prior's clean estimate (Diffusion-LM's rounding term,
    Li et al. 2022), with p(token k | x0) proportional to exp(-||x0 - e_k||^2 / 2) over the tokens allowed at
    each position.

    The epsilon loss weighs every embedding dimension alike, and neighbouring corner rows of the table lie
    about one unit apart in 64 dimensions, so a prior can fit it well while its clean estimates snap to the
    wrong corner; this term is large exactly when they do.

    Args:
        clean_estimate: (B, L, width) estimated clean sequence, in the prior's normalised units.
        vocabulary: (V, width) the table in the same units (divided by ``prior_input_scale``).
        allowed: (L, V) bool, ``LayoutTokenizer.allowed_tokens()``.
        tokens: (B, L) int64 true tokens.

    Returns:
        (B,) mean cross-entropy over each layout's positions, in nats.
    """
    # The squared distance written out: differentiable where an estimate sits exactly on a row.
    squared_distance = ((clean_estimate**2).sum(-1, keepdim=True) - 2 * clean_estimate @ vocabulary.T
                        + (vocabulary**2).sum(-1))
    logits = -0.5 * squared_distance
    logits = logits.masked_fill(~allowed.to(logits.device)[None], float("-inf"))
    return F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view(tokens.shape).mean(1)


class LayoutPriorTransformer(ModelMixin, ConfigMixin):
    """Noise predictor of the layout prior: (B, L, embedding_width) noisy sequence, (B,) timesteps ->
    (B, L, embedding_width) predicted noise."""

    @register_to_config
    def __init__(
        self,
        sequence_length: int = 12,
        embedding_width: int = 64,
        width: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
    ):
        super().__init__()
        self.input_projection = nn.Linear(embedding_width, width)
        self.position_embedding = nn.Parameter(torch.randn(sequence_length, width) * 0.02)
        self.time_features = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, width)
        layer = nn.TransformerEncoderLayer(width, num_heads, dim_feedforward=4 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.output = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embedding_width))

    def forward(self, noisy_embeddings: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        time = self.time_embedding(self.time_features(timesteps).to(noisy_embeddings.dtype))  # (B, width)
        hidden = self.input_projection(noisy_embeddings) + self.position_embedding + time[:, None, :]
        return self.output(self.transformer(hidden))
