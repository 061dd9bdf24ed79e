"""A full-resolution view of the layout for the UNet: every pixel attends to the layout tokens by position.

The UNet's own cross-attention sees the layout only at its lower resolutions, through queries it must
first learn to make position-aware. Trained that way on 2 CPU cores for 6000 iterations, p(x|y) learned
which objects a layout holds but not where: moving a box changed its denoising error at chance level at
every timestep (docs/generative_pair.md, "Denoising error as a classifier"). ``SpatialLayoutMap`` gives
position a direct path: at every pixel of the latent grid, a query made from sin/cos features of the
pixel's (x, y) — the same features the layout encoder's corner table is built from — attends over the
encoded layout tokens;
the attended values form a few extra input channels of the UNet. A bilinear form between two sin/cos
feature vectors can express a kernel of the offset between pixel and corner, so "this pixel is near that
corner" is a linear function of what the module sees. Gradients still reach the layout embeddings, so the
inversion is unchanged.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .layout_encoder import fourier_features


class SpatialLayoutMap(ModelMixin, ConfigMixin):
    """Layout context (B, L, context_width) -> (B, channels, h, w) feature map on the latent grid."""

    @register_to_config
    def __init__(self, context_width: int = 64, channels: int = 8, num_heads: int = 4, head_width: int = 16,
                 num_frequencies: int = 6):
        super().__init__()
        inner = num_heads * head_width
        self.query = nn.Linear(2 + 4 * num_frequencies, inner)
        self.key = nn.Linear(context_width, inner)
        self.value = nn.Linear(context_width, inner)
        self.output = nn.Linear(inner, channels)

    def forward(self, context: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch = len(context)
        heads, head_width = self.config.num_heads, self.config.head_width
        ys = (torch.arange(height, device=context.device, dtype=context.dtype) + 0.5) / height
        xs = (torch.arange(width, device=context.device, dtype=context.dtype) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        pixels = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)  # (h*w, 2) in [0, 1]
        query = self.query(fourier_features(pixels, self.config.num_frequencies))  # (h*w, inner)
        query = query.view(1, -1, heads, head_width).transpose(1, 2).expand(batch, -1, -1, -1)
        key = self.key(context).view(batch, -1, heads, head_width).transpose(1, 2)
        value = self.value(context).view(batch, -1, heads, head_width).transpose(1, 2)
        attended = nn.functional.scaled_dot_product_attention(query, key, value)  # (B, heads, h*w, head_width)
        mapped = self.output(attended.transpose(1, 2).reshape(batch, height * width, -1))
        return mapped.transpose(1, 2).reshape(batch, -1, height, width)
