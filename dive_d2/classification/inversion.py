"""DIVE classification: invert p(x|c) for c with the detection engine's loop.

Per image one continuous class embedding v (1 x width), started from the class table's statistics (mean +
std * noise, seeded by the image), is moved by Adam on the denoising error of p(x|v'), where v' = v
snapped to the nearest class row with the straight-through estimator. Pairs, reshuffling, the monitor,
patience and the stopping step are ``dive_d2.inversion.optimise_tokens``, shared with detection: a class
is a layout of one token whose every row is allowed.

``parameterisation="logits"`` moves per-image logits over the candidate classes instead (``TokenLogits``:
softmax mixture of the rows, straight-through argmax), started equal, so the first step already weighs
every class; the models still only see real rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..inversion.engine import SearchSettings, optimise_tokens, seeded_starts
from ..inversion.parameterisations import EmbeddingSequence, TokenLogits
from .common import ClassPrediction, NetworkCost, candidate_classes, pair_set

if TYPE_CHECKING:
    from ..modeling.class_conditional import DiffusionClassifier

CLASS_PARAMETERISATIONS = ("embedding", "logits")


class ClassInversion:
    """Classification by inversion (see module docstring)."""

    def __init__(self, max_steps: int = 200, learning_rate: float = 1.0, num_pairs: int = 32,
                 pairs_per_step: int = 2, monitor_pairs: int = 8, monitor_period: int = 5, patience: int = 6,
                 snap: bool = True, metric: str = "l2", timestep_window: tuple[int, int] = (0, 0), seed: int = 0,
                 parameterisation: str = "embedding"):
        if parameterisation not in CLASS_PARAMETERISATIONS:
            raise ValueError(f"class inversion parameterisation must be one of {CLASS_PARAMETERISATIONS}, "
                             f"got {parameterisation!r}")
        if pairs_per_step > num_pairs:
            raise ValueError(f"pairs_per_step ({pairs_per_step}) exceeds num_pairs ({num_pairs})")
        self.settings = SearchSettings(max_steps, learning_rate, num_pairs, pairs_per_step, monitor_period,
                                       patience, snap, seed)
        self.monitor_pairs = monitor_pairs
        self.metric = metric
        self.timestep_window = tuple(timestep_window)
        self.parameterisation = parameterisation

    def initial_embeddings(self, table: torch.Tensor, image_seeds: list[int]) -> torch.Tensor:
        """(B, 1, width) starting points: the table's mean plus its per-dimension spread times seeded noise."""
        return seeded_starts(table.mean(0), table.std(0), image_seeds)[:, None]

    def __call__(self, model: DiffusionClassifier, images: torch.Tensor, image_seeds: list[int],
                 classes: torch.Tensor | None = None) -> ClassPrediction:
        """Classify (B, C, S, S) images in [-1, 1] among ``classes`` ((K,) indices; default all: the snap
        only reaches their rows and the start uses their statistics); ``image_seeds`` (B ints) seed each
        image's start."""
        cost = NetworkCost()
        seed = self.settings.seed
        window = self.timestep_window
        timesteps, noise = pair_set(self.settings.num_pairs, images, window, model.scheduler, seed)
        monitor_t, monitor_noise = pair_set(self.monitor_pairs, images, window, model.scheduler, seed + 2)

        def errors(index: torch.Tensor, embeddings: torch.Tensor, pair_t: torch.Tensor, pair_noise: torch.Tensor
                   ) -> torch.Tensor:
            count, pairs = len(index), len(pair_t)
            error = model.class_denoising_error(
                images[index].repeat_interleave(pairs, 0), embeddings[:, 0].repeat_interleave(pairs, 0),
                pair_t.repeat(count), pair_noise.repeat(count, 1, 1, 1))
            cost.forwards += count * pairs
            return error.view(count, pairs).mean(1)

        def step_loss(index: torch.Tensor, chosen: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
            cost.backwards += len(index) * len(chosen)  # optimise_tokens backpropagates every step's loss once
            return errors(index, embeddings, timesteps[chosen], noise[chosen])

        def monitor_loss(index: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
            return errors(index, embeddings, monitor_t, monitor_noise)

        table = model.class_table.vocabulary().detach()
        candidates = candidate_classes(model, classes, images)[0]
        allowed = torch.zeros(1, len(table), dtype=torch.bool, device=table.device)
        allowed[0, candidates] = True
        if self.parameterisation == "logits":
            start = TokenLogits(torch.zeros(len(images), 1, len(table), device=table.device), allowed)
        else:
            start = EmbeddingSequence(self.initial_embeddings(table[candidates], image_seeds), allowed, self.metric)
        with torch.enable_grad():
            result = optimise_tokens(start, table, step_loss, monitor_loss, self.settings)
        return ClassPrediction(result.tokens[:, 0].cpu(), result.stop_step, cost)
