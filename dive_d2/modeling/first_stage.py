"""The first stage of the latent diffusion model: where images live while they are noised.

``pixel`` keeps images as they are (the default for the small benchmarks). ``autoencoder_kl`` and ``vq``
wrap a frozen diffusers ``AutoencoderKL`` or ``VQModel`` loaded with ``from_pretrained`` from a local
folder, for 256x256 data on a GPU. Images enter as (B, 3, H, W) RGB in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn


class FirstStage(nn.Module):
    """A frozen image <-> latent map. ``channels`` and ``downsample`` describe the latent grid."""

    def __init__(self, kind: str = "pixel", path: str = "", scaling_factor: float | None = None):
        super().__init__()
        if kind not in ("pixel", "autoencoder_kl", "vq"):
            raise ValueError(f"first stage must be 'pixel', 'autoencoder_kl' or 'vq', got {kind!r}")
        self.kind = kind
        self.autoencoder = None
        if kind == "pixel":
            self.channels, self.downsample, self.scaling_factor = 3, 1, 1.0
            return
        if not path:
            raise ValueError(f"first stage {kind!r} needs MODEL.DIVE.FIRST_STAGE.PATH: a local folder written by "
                             "save_pretrained (weights are never downloaded)")
        from diffusers import AutoencoderKL, VQModel

        autoencoder = (AutoencoderKL if kind == "autoencoder_kl" else VQModel).from_pretrained(path)
        autoencoder.requires_grad_(False).eval()
        self.autoencoder = autoencoder
        config = autoencoder.config
        self.channels = config.latent_channels
        self.downsample = 2 ** (len(config.block_out_channels) - 1)
        self.scaling_factor = scaling_factor if scaling_factor is not None else config.scaling_factor

    def train(self, mode: bool = True) -> FirstStage:
        # The autoencoder is frozen: it stays in eval mode when the detector trains.
        super().train(mode)
        if self.autoencoder is not None:
            self.autoencoder.eval()
        return self

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, channels, H / downsample, W / downsample) latents."""
        if self.kind == "pixel":
            return images
        if self.kind == "autoencoder_kl":
            return self.autoencoder.encode(images).latent_dist.mode() * self.scaling_factor
        return self.autoencoder.encode(images).latents * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of ``encode``: latents -> (B, 3, H, W) images in about [-1, 1]."""
        if self.kind == "pixel":
            return latents
        return self.autoencoder.decode(latents / self.scaling_factor).sample
