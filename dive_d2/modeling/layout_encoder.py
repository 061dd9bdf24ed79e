"""The condition side of p(x|y): the layout vocabulary table and the transformer that reads a layout.

``LayoutEncoderModel`` owns the one embedding table (vocab_size x width) shared by class, corner and
``none`` tokens (token ids as in ``dive_d2.layout.LayoutTokenizer``). Inversion snaps to this table.
Its corner rows are either free parameters, as in LDM (``coordinate_embedding="free"``), or a learned
linear map of sin/cos features of each grid point's normalised (x, y) (``"fourier"``). The latter makes
neighbouring cells similar by construction, which the project's probes found makes the denoising error a
much better guide to box positions.

The transformer reads token *embeddings*, not ids, so the same forward serves training (embeddings of
real tokens) and inversion (optimised, snapped embeddings).
"""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..layout.tokenizer import corner_grid_points


def fourier_features(points: torch.Tensor, num_frequencies: int, smoothing: float = 0.0) -> torch.Tensor:
    """sin/cos features of normalised 2-D points.

    Args:
        points: (P, 2) coordinates in [0, 1].
        num_frequencies: F; frequencies pi * 2**k for k < F (the finest has a period of 2 / 2**(F-1)).
        smoothing: sigma >= 0 (normalised units). The features are their expectation when the points are
            jittered by Gaussian noise of this std: the term of frequency w is damped by exp(-(w sigma)^2 / 2).
            0 gives the exact features.

    Returns:
        (P, 2 + 4F): the points themselves, then sin and cos of each coordinate at each frequency.
    """
    frequencies = math.pi * 2.0 ** torch.arange(num_frequencies, dtype=points.dtype, device=points.device)
    angles = points[:, :, None] * frequencies  # (P, 2, F)
    damping = torch.exp(-0.5 * (frequencies * smoothing) ** 2)
    return torch.cat([points, (angles.sin() * damping).flatten(1), (angles.cos() * damping).flatten(1)], dim=1)


def coarse_feature_columns(num_frequencies: int, keep: int) -> torch.Tensor:
    """Indices of the ``fourier_features(points, num_frequencies)`` columns that ``fourier_features(points,
    keep)`` also has, in its order: the points, then sin and cos of each coordinate at the ``keep``
    coarsest frequencies. Selecting these input columns of a linear layer turns a map of the fine features
    into a map of the coarse ones (exactly so where the dropped columns had zero weight).

    Returns:
        (2 + 4 * keep,) int64 column indices into the (2 + 4 * num_frequencies) features.
    """
    if not 0 <= keep <= num_frequencies:
        raise ValueError(f"keep must be in [0, {num_frequencies}], got {keep}")
    per_function = torch.arange(2 * num_frequencies).view(2, num_frequencies)[:, :keep].flatten()  # (x, y) x F
    return torch.cat([torch.arange(2), 2 + per_function, 2 + 2 * num_frequencies + per_function])


class LayoutEncoderModel(ModelMixin, ConfigMixin):
    """Vocabulary table + transformer encoder over a layout's token embeddings.

    Input of ``forward``: (B, L, width) token embeddings, L = 3 * num_slots. Output: (B, L, width), the
    cross-attention context of the image denoiser.
    """

    @register_to_config
    def __init__(
        self,
        num_classes: int = 3,
        grid_size: int = 65,
        num_slots: int = 4,
        width: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        coordinate_embedding: str = "fourier",
        num_frequencies: int = 6,
    ):
        super().__init__()
        if coordinate_embedding not in ("free", "fourier"):
            raise ValueError(f"coordinate_embedding must be 'free' or 'fourier', got {coordinate_embedding!r}")
        self.class_rows = nn.Parameter(torch.randn(num_classes, width) * 0.5)
        self.none_row = nn.Parameter(torch.randn(1, width) * 0.5)
        self.register_buffer("grid_points", corner_grid_points(grid_size), persistent=False)
        if coordinate_embedding == "free":
            self.coordinate_rows = nn.Parameter(torch.randn(grid_size**2, width) * 0.5)
        else:
            self.coordinate_projection = nn.Linear(2 + 4 * num_frequencies, width)
        self.position_embedding = nn.Parameter(torch.randn(3 * num_slots, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, num_heads, dim_feedforward=4 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(width)

    def vocabulary(self) -> torch.Tensor:
        """(vocab_size, width): class rows, then corner rows in token order, then the ``none`` row."""
        if self.config.coordinate_embedding == "free":
            coordinate_rows = self.coordinate_rows
        else:
            coordinate_rows = self.corner_embeddings(self.grid_points)
        return torch.cat([self.class_rows, coordinate_rows, self.none_row], dim=0)

    def corner_embeddings(self, points: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        """Embeddings of corners anywhere in the frame, a smooth function of their position.

        Args:
            points: (..., 2) normalised (x, y) in [0, 1].
            smoothing: "fourier" only: the expected embedding under Gaussian jitter of the points with this
                std (normalised units); 0 is exact. Inversion's box parameterisation follows its gradient,
                which is not dominated by the finest frequencies.

        Returns:
            (..., width). At a grid point this is exactly that corner token's row. "fourier": the learned
            map of the point's sin/cos features; "free": bilinear interpolation between the four nearest rows.
        """
        flat = points.reshape(-1, 2)
        if self.config.coordinate_embedding == "fourier":
            rows = self.coordinate_projection(fourier_features(flat, self.config.num_frequencies, smoothing))
        elif smoothing > 0:
            raise ValueError("corner smoothing needs the 'fourier' coordinate embedding "
                             "(MODEL.DIVE.LAYOUT_ENCODER.COORDINATE_EMBEDDING); set BOX_SMOOTHING 0 for 'free'")
        else:
            size = self.config.grid_size
            table = self.coordinate_rows.T.reshape(1, -1, size, size)  # (1, width, rows=y, columns=x)
            # align_corners=True puts -1 and 1 on the centres of the first and last grid points.
            rows = nn.functional.grid_sample(table, (flat * 2 - 1)[None, None], mode="bilinear",
                                             align_corners=True)[0, :, 0].T
        return rows.reshape(*points.shape[:-1], -1)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 token ids -> (B, L, width) rows of ``vocabulary()``."""
        return nn.functional.embedding(tokens, self.vocabulary())

    def forward(self, token_embeddings: torch.Tensor) -> torch.Tensor:
        """(B, L, width) token embeddings -> (B, L, width) context for cross-attention."""
        if token_embeddings.shape[1:] != self.position_embedding.shape:
            raise ValueError(f"expected token embeddings of shape (B, {self.position_embedding.shape[0]}, "
                             f"{self.position_embedding.shape[1]}), got {tuple(token_embeddings.shape)}")
        return self.final_norm(self.transformer(token_embeddings + self.position_embedding))
