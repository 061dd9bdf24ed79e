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

``layout_occupancy`` is an optional training target for the map (``MODEL.DIVE.SPATIAL_MAP.OCCUPANCY_LOSS_WEIGHT``;
not in the paper): which latent pixels each class's boxes cover. Trained from scratch in one hour without it, the
map did not make p(x|y) place objects where the layout says (docs/generative_pair.md, "One hour from scratch").
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..layout.tokenizer import LayoutTokenizer
from .layout_encoder import fourier_features


def layout_occupancy(tokenizer: LayoutTokenizer, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per class, the pixels of an ``height`` x ``width`` grid spanning the model's input frame that the layouts'
    boxes cover (a pixel counts when its centre lies inside a box, edges included).

    Args:
        tokenizer: the layouts' token format.
        tokens: (B, L) int64 layouts; objects ``tokenizer.decode`` drops cover nothing.
        height, width: the grid, e.g. the latent's h and w.

    Returns:
        (B, num_classes, height, width) float32 in {0, 1}, on ``tokens``' device.
    """
    occupancy = torch.zeros(len(tokens), tokenizer.num_classes, height, width)
    centres_y = torch.arange(height, dtype=torch.float32) + 0.5
    centres_x = torch.arange(width, dtype=torch.float32) + 0.5
    for index, layout in enumerate(tokens):
        decoded = tokenizer.decode(layout, height, width)  # boxes in pixels of this grid
        for (x0, y0, x1, y1), label in zip(decoded.boxes.tolist(), decoded.classes.tolist(), strict=True):
            rows = (centres_y >= y0) & (centres_y <= y1)
            columns = (centres_x >= x0) & (centres_x <= x1)
            occupancy[index, label] += (rows[:, None] & columns[None, :]).float()
    return occupancy.clamp(max=1.0).to(tokens.device)


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
