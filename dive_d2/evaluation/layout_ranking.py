"""Is the denoising error of p(x|y) a usable likelihood? Rank the true layout against corrupted ones.

For an image, the mean denoising error over a fixed set of (t, noise) pairs is computed with its true
layout and with three corruptions of the first object: moved ``shift_px`` pixels right (left if it would
leave the image), class changed, dropped. The fraction of images where the true layout has the lower
error is the signal that inversion follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from detectron2.data import detection_utils as utils

from ..data import ground_truth_layout

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE

CORRUPTIONS = ("moved", "class_changed", "dropped")


def corrupt_layout(
    boxes: torch.Tensor, classes: torch.Tensor, kind: str, width: float, num_classes: int, shift_px: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A corrupted copy of one layout (boxes (K, 4) XYXY pixels, classes (K,)); K >= 1 is required.

    "moved": the first box shifts ``shift_px`` right, or left when it would cross the right edge;
    "class_changed": the first class becomes the next class (cyclically); "dropped": the first object goes.
    """
    if len(boxes) == 0:
        raise ValueError("corrupt_layout needs at least one object")
    boxes, classes = boxes.clone(), classes.clone()
    if kind == "moved":
        shift = shift_px if boxes[0, 2] + shift_px <= width else -shift_px
        boxes[0, [0, 2]] += shift
    elif kind == "class_changed":
        classes[0] = (classes[0] + 1) % num_classes
    elif kind == "dropped":
        boxes, classes = boxes[1:], classes[1:]
    else:
        raise ValueError(f"unknown corruption {kind!r}; expected one of {CORRUPTIONS}")
    return boxes, classes


@torch.no_grad()
def layout_errors(model: DIVE, latents: torch.Tensor, tokens: torch.Tensor, timesteps: torch.Tensor,
                  noise: torch.Tensor) -> torch.Tensor:
    """Denoising error of p(x|y) on every (t, noise) pair, per image.

    Args:
        model: a DIVE model.
        latents: (B, C, h, w) first-stage latents of the images.
        tokens: (B, L) one layout per image.
        timesteps, noise: (P,) and (P, C, h, w), the fixed pairs, shared by all images.

    Returns:
        (B, P) float errors; their mean over P is the image's denoising error.
    """
    embeddings = model.layout_encoder.embed_tokens(tokens)
    errors = []
    for latent, embedding in zip(latents, embeddings, strict=True):
        count = len(timesteps)
        errors.append(model.image_denoising_error(
            latent.expand(count, -1, -1, -1), embedding.expand(count, -1, -1),
            timesteps.to(latents.device), noise.to(latents.device)))
    return torch.stack(errors)


def encode_record_image(model: DIVE, record: dict, image_format: str = "BGR") -> tuple[torch.Tensor, int, int]:
    """A Detectron2 dataset dict's image as the model sees it: ((1, C, h, w) first-stage latents, the
    image's height and width in pixels)."""
    image = utils.read_image(record["file_name"], format=image_format)
    item = {"image": torch.as_tensor(image.transpose(2, 0, 1).copy())}
    return model.first_stage.encode(model.preprocess_images([item])), image.shape[0], image.shape[1]


def corruption_margins(model: DIVE, record: dict, timesteps: torch.Tensor, noise: torch.Tensor,
                       corruptions: tuple[str, ...] = CORRUPTIONS, image_format: str = "BGR") -> torch.Tensor:
    """For one Detectron2 dataset dict with at least one object: (len(corruptions), P) rises of the
    denoising error, corrupted minus true layout, on each (t, noise) pair (positive: the true layout wins)."""
    latents, height, width = encode_record_image(model, record, image_format)
    boxes, classes = ground_truth_layout(record)
    layouts = [(boxes, classes)] + [corrupt_layout(boxes, classes, kind, width, model.tokenizer.num_classes)
                                    for kind in corruptions]
    tokens = torch.stack([model.tokenizer.encode(b, c, height, width) for b, c in layouts]).to(model.device)
    errors = layout_errors(model, latents.expand(len(tokens), -1, -1, -1), tokens, timesteps, noise)
    return (errors[1:] - errors[:1]).cpu()


def rank_record(model: DIVE, record: dict, timesteps: torch.Tensor, noise: torch.Tensor,
                corruptions: tuple[str, ...] = CORRUPTIONS, image_format: str = "BGR") -> dict[str, bool]:
    """Does the true layout have a lower mean denoising error than each corruption? Returns
    {corruption: True if the true layout wins} (see ``corruption_margins``)."""
    margins = corruption_margins(model, record, timesteps, noise, corruptions, image_format).mean(dim=1)
    return {kind: bool(margin > 0) for kind, margin in zip(corruptions, margins, strict=True)}
