"""Diffusion Classifier (Li et al., 2023): score every class by its denoising error, predict the argmin.

``EnumerationClassifier``: every class on the same ``num_pairs`` fixed (t, noise) pairs.
``AdaptiveEnumerationClassifier``: round r scores the surviving classes on ``pairs_per_round[r]`` new pairs
(errors accumulate over rounds), then keeps the ``keep[r]`` classes with the lowest mean error; the
answer is the argmin after the last round. This is the paper's adaptive strategy; it spends most of the
evaluations on the few plausible classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .common import ClassPrediction, NetworkCost, candidate_classes, class_errors, pair_set

if TYPE_CHECKING:
    from ..modeling.class_conditional import DiffusionClassifier


class EnumerationClassifier:
    """Plain enumeration over all classes (see module docstring)."""

    def __init__(self, num_pairs: int = 16, timestep_window: tuple[int, int] = (0, 0), seed: int = 0,
                 batch_size: int = 512):
        self.num_pairs = num_pairs
        self.timestep_window = tuple(timestep_window)
        self.seed = seed
        self.batch_size = batch_size

    def __call__(self, model: DiffusionClassifier, images: torch.Tensor, image_seeds: list[int],
                 classes: torch.Tensor | None = None) -> ClassPrediction:
        """Classify (B, C, S, S) images in [-1, 1] among ``classes`` ((K,) indices; default all);
        ``image_seeds`` is unused (enumeration is deterministic)."""
        cost = NetworkCost()
        timesteps, noise = pair_set(self.num_pairs, images, self.timestep_window, model.scheduler, self.seed)
        candidates = candidate_classes(model, classes, images)
        errors = class_errors(model, images, candidates, timesteps, noise, self.batch_size, cost)
        labels = candidates.gather(1, errors.mean(dim=2).argmin(dim=1, keepdim=True))[:, 0].cpu()
        return ClassPrediction(labels, torch.zeros(len(images), dtype=torch.int64), cost)


class AdaptiveEnumerationClassifier:
    """Enumeration that prunes classes between rounds of pairs (see module docstring)."""

    def __init__(self, pairs_per_round: tuple[int, ...] = (2, 4, 10), keep: tuple[int, ...] = (10, 3),
                 timestep_window: tuple[int, int] = (0, 0), seed: int = 0, batch_size: int = 512):
        if len(keep) != len(pairs_per_round) - 1:
            raise ValueError(f"adaptive enumeration needs one 'keep' per round but the last: {len(pairs_per_round)} "
                             f"rounds of pairs {pairs_per_round}, keep {keep}")
        if list(keep) != sorted(keep, reverse=True):
            raise ValueError(f"adaptive enumeration's keep must not grow between rounds, got {keep}")
        self.pairs_per_round = tuple(pairs_per_round)
        self.keep = tuple(keep)
        self.timestep_window = tuple(timestep_window)
        self.seed = seed
        self.batch_size = batch_size

    def __call__(self, model: DiffusionClassifier, images: torch.Tensor, image_seeds: list[int],
                 classes: torch.Tensor | None = None) -> ClassPrediction:
        """Classify (B, C, S, S) images in [-1, 1] among ``classes`` (default all); ``image_seeds`` is unused."""
        cost = NetworkCost()
        candidates = candidate_classes(model, classes, images)
        error_sum = torch.zeros(candidates.shape, device=images.device)
        pairs_seen = 0
        for round_index, num_pairs in enumerate(self.pairs_per_round):
            # Each round's pairs are spread over the whole schedule: a prefix of one evenly spread set would
            # hold only low timesteps.
            timesteps, noise = pair_set(num_pairs, images, self.timestep_window, model.scheduler,
                                        self.seed + 100 * (round_index + 1))
            error_sum += class_errors(model, images, candidates, timesteps, noise, self.batch_size, cost).sum(2)
            pairs_seen += num_pairs
            if round_index < len(self.keep) and self.keep[round_index] < candidates.shape[1]:
                best = (error_sum / pairs_seen).topk(self.keep[round_index], dim=1, largest=False).indices
                candidates = candidates.gather(1, best)
                error_sum = error_sum.gather(1, best)
        winner = error_sum.argmin(dim=1, keepdim=True)
        labels = candidates.gather(1, winner)[:, 0].cpu()
        return ClassPrediction(labels, torch.zeros(len(images), dtype=torch.int64), cost)
