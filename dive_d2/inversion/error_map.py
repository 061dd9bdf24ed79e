"""Starting boxes where p(x|y) cannot explain the image without a layout (``INIT error_map``).

Given the empty layout (every slot ``none``), p(x|y) denoises the background well and the objects badly: on
the first 48 ``dive_shapes_val`` images the squared per-pixel denoising error of the empty layout (the
monitor's 16 pairs) puts 99% of its mass inside the ground-truth boxes, which cover 21-27% of the image
(``tools/error_map_check.py``; docs/detection.md, "Starts from the empty layout's error map"). The error
map is the model's own signal, not a second detector: it only decides where each run's slots start, and
gradient descent on the posterior loss does the rest. Measured: the runs touch more objects and end
closer to the truth's loss, but the returned boxes are not better on every slice; off by default. The same
map fits the returned boxes when ``REFINE_BOXES`` is on (``box_refinement.py``).

Each slot's centre is drawn from the map raised to a power (a density over the latent grid), then the map
is cleared inside that slot's starting box, so a run's slots start on different parts of the image. Box
sizes and classes are drawn as the random start draws them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE


@torch.no_grad()
def layout_error_maps(model: DIVE, latents: torch.Tensor, layouts: torch.Tensor, timesteps: torch.Tensor,
                      noise: torch.Tensor) -> torch.Tensor:
    """(N, h, w) per-position denoising error of p(x|y) for each latent given its layout, averaged over the K
    pairs and the latent channels.

    Args:
        model: a DIVE model; latents: (N, C, h, w); layouts: (N, L) int64 token sequences; timesteps: (K,)
            int64; noise: (K, C, h, w), shared by all rows (the monitor's pairs).
    """
    if len(latents) != len(layouts):
        raise ValueError(f"layout_error_maps: {len(latents)} latents but {len(layouts)} layouts")
    count = len(timesteps)
    vocabulary = model.layout_encoder.vocabulary()
    maps = []
    for latent, layout in zip(latents, layouts, strict=True):  # one (latent, layout) per call: K samples each
        context = model.layout_encoder(vocabulary[layout][None].expand(count, -1, -1))
        noisy = model.scheduler.add_noise(latent[None].expand(count, -1, -1, -1), noise, timesteps)
        predicted = model.predict_image_noise(noisy, timesteps, context)
        maps.append(((predicted - noise) ** 2).mean(dim=(0, 1)))
    return torch.stack(maps)


def empty_layout_error_map(model: DIVE, latents: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor
                           ) -> torch.Tensor:
    """(B, h, w) per-position denoising error of p(x|y) given the empty layout (every slot ``none``) for
    latents (B, C, h, w); see ``layout_error_maps``."""
    tokenizer = model.tokenizer
    empty = torch.full((len(latents), tokenizer.sequence_length), tokenizer.none_token, dtype=torch.long,
                       device=latents.device)
    return layout_error_maps(model, latents, empty, timesteps, noise)


def check_one_image_maps(owner: str, latents: torch.Tensor, empty_map: torch.Tensor) -> None:
    """Raise a ValueError naming ``owner`` unless ``latents`` is (1, C, h, w) and ``empty_map`` (h, w): the inputs
    of the steps that score one image's detections by its error maps."""
    if latents.dim() != 4 or len(latents) != 1:
        raise ValueError(f"{owner}: latents must be (1, C, h, w), got shape {tuple(latents.shape)}")
    if empty_map.shape != latents.shape[-2:]:
        raise ValueError(f"{owner}: empty_map must be (h, w) = {tuple(latents.shape[-2:])}, got "
                         f"{tuple(empty_map.shape)}")


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(height, width) bool: the grid cells whose centre lies in any of ``boxes`` (K, 4), XYXY normalised to
    [0, 1] (edges included)."""
    cell_x = (torch.arange(width, device=boxes.device) + 0.5) / width
    cell_y = (torch.arange(height, device=boxes.device) + 0.5) / height
    inside_x = (cell_x >= boxes[:, 0, None]) & (cell_x <= boxes[:, 2, None])  # (K, width)
    inside_y = (cell_y >= boxes[:, 1, None]) & (cell_y <= boxes[:, 3, None])  # (K, height)
    return (inside_y[:, :, None] & inside_x[:, None, :]).any(dim=0)


def error_map_slots(generator: torch.Generator, error_map: torch.Tensor, count: int, num_classes: int,
                    power: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` starting objects whose centres follow ``error_map``: classes (count,) int64 uniform over the
    classes, boxes (count, 4) XYXY normalised to [0, 1], sides uniform in [0.1, 0.4] (as ``random_slots``).

    Args:
        generator: a CPU generator (the run's seed); error_map: (h, w) non-negative, any device.
        power: the density is ``error_map ** power`` (higher: closer to the map's peaks).

    Slot k's centre is a grid cell drawn from the density (uniform within the cell); the density is then set
    to 0 inside slot k's box. When nothing is left, centres are uniform in [0.1, 0.9] as in the random start.
    """
    density = error_map.detach().float().cpu().clamp(min=0) ** power
    height, width = density.shape
    size = 0.1 + 0.3 * torch.rand(count, 2, generator=generator)
    classes = torch.randint(0, num_classes, (count,), generator=generator)
    cell_size = torch.tensor([1.0 / width, 1.0 / height])
    centres = []
    for slot in range(count):
        jitter = torch.rand(2, generator=generator)
        if density.sum() > 0:
            cell = int(torch.multinomial(density.flatten(), 1, generator=generator))
            centre = (torch.tensor([cell % width, cell // width]) + jitter) * cell_size
        else:
            centre = 0.1 + 0.8 * jitter
        centres.append(centre)
        density[box_mask(torch.cat([centre - size[slot] / 2, centre + size[slot] / 2])[None], height, width)] = 0
    centres = torch.stack(centres)
    return classes, torch.cat([centres - size / 2, centres + size / 2], dim=1)
