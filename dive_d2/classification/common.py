"""What every classifier returns, how cost is counted, and the one batched error evaluation they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from diffusers import SchedulerMixin

from ..modeling.denoising import pairs_in_window

if TYPE_CHECKING:
    from ..modeling.class_conditional import DiffusionClassifier


@dataclass
class NetworkCost:
    """Network evaluations, counted in samples: one image with one (t, noise) pair and one class through
    the UNet is one forward; backpropagating that sample's error is one backward."""

    forwards: int = 0
    backwards: int = 0

    def __iadd__(self, other: NetworkCost) -> NetworkCost:
        self.forwards += other.forwards
        self.backwards += other.backwards
        return self


@dataclass
class ClassPrediction:
    """A classifier's answer for B images: labels (B,) int64, stop_step (B,) int64 (inversion's stopping
    step; 0 for enumeration) and the cost of the whole batch."""

    labels: torch.Tensor
    stop_step: torch.Tensor
    cost: NetworkCost = field(default_factory=NetworkCost)


def pair_set(count: int, images: torch.Tensor, timestep_window: tuple[int, int], scheduler: SchedulerMixin,
             seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` fixed (t, noise) pairs for images (B, C, S, S): timesteps evenly spread over the window
    [min, max or the schedule), seeded noise; on the images' device (``pairs_in_window``)."""
    return pairs_in_window(count, tuple(images.shape[1:]), scheduler, *timestep_window, seed, images.device)


def class_errors(model: DiffusionClassifier, images: torch.Tensor, candidates: torch.Tensor, timesteps: torch.Tensor,
                 noise: torch.Tensor, batch_size: int, cost: NetworkCost) -> torch.Tensor:
    """Denoising errors of every image under each of its candidate classes on every pair, without grad.

    Args:
        model: a DiffusionClassifier.
        images: (B, C, S, S) in [-1, 1].
        candidates: (B, K) int64 class indices per image.
        timesteps: (P,), noise: (P, C, S, S) the pairs.
        batch_size: samples per UNet call.
        cost: incremented by B * K * P forwards.

    Returns:
        (B, K, P) float errors.
    """
    count, num_candidates = candidates.shape
    num_pairs = len(timesteps)
    image_index = torch.arange(count, device=images.device)[:, None, None].expand(count, num_candidates, num_pairs)
    pair_index = torch.arange(num_pairs, device=images.device)[None, None, :].expand_as(image_index)
    class_index = candidates[:, :, None].expand_as(image_index)
    image_index, pair_index, class_index = image_index.reshape(-1), pair_index.reshape(-1), class_index.reshape(-1)
    table = model.class_table.vocabulary()
    errors = []
    with torch.no_grad():
        for start in range(0, len(image_index), batch_size):
            chunk = slice(start, start + batch_size)
            errors.append(model.class_denoising_error(images[image_index[chunk]], table[class_index[chunk]],
                                                      timesteps[pair_index[chunk]], noise[pair_index[chunk]]))
    cost.forwards += len(image_index)
    return torch.cat(errors).view(count, num_candidates, num_pairs)


def candidate_classes(model: DiffusionClassifier, classes: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor:
    """(B, K) candidate class indices for B images: ``classes`` (K,) for every image, or all classes.

    Raises:
        ValueError: ``classes`` is empty, repeats a class or names one the model does not have.
    """
    if classes is None:
        classes = torch.arange(model.num_classes)
    classes = torch.as_tensor(classes, dtype=torch.int64)
    if classes.numel() == 0 or len(classes.unique()) != len(classes):
        raise ValueError(f"candidate classes must be distinct and not empty, got {classes.tolist()}")
    if classes.min() < 0 or classes.max() >= model.num_classes:
        raise ValueError(f"candidate classes must lie in [0, {model.num_classes}), got {classes.tolist()}")
    return classes.to(images.device).expand(len(images), -1)
