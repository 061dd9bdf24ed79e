"""Is a failed inversion the optimiser's fault or the model's? Compare the found layout with the truth.

On a fresh, held-out set of (t, noise) pairs (not the ones inversion optimised or monitored), the posterior
loss that inversion minimises is computed for the layout it returned and for the ground-truth layout. If
the found layout's loss is higher, the optimiser stopped short of a better answer the models would accept
(an optimisation gap). If it is lower or equal while the boxes are wrong, the models themselves prefer a
wrong layout, and no optimiser can fix that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..modeling.denoising import pairs_in_window

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE


@torch.no_grad()
def held_out_loss(model: DIVE, latents: torch.Tensor, tokens: torch.Tensor, num_pairs: int = 128,
                  seed: int = 12345) -> torch.Tensor:
    """(B,) posterior loss of B layouts (B, L) int64 for B latents (B, C, h, w) on ``num_pairs`` held-out
    pairs over the whole schedule, on the CPU. ``seed`` seeds the pairs; keep it away from the inversion's
    own pair seeds (SEED .. SEED + 3)."""
    timesteps, image_noise = pairs_in_window(num_pairs, tuple(latents.shape[1:]), model.scheduler, 0, 0, seed,
                                             latents.device)
    shape = (num_pairs, model.tokenizer.sequence_length, model.layout_encoder.config.width)
    prior_noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1)).to(latents.device)
    vocabulary = model.layout_encoder.vocabulary()
    return model.inversion.posterior_loss(model, latents, vocabulary[tokens], timesteps, image_noise,
                                          prior_noise).cpu()


def objective_gap(model: DIVE, latents: torch.Tensor, found_tokens: torch.Tensor, true_tokens: torch.Tensor,
                  num_pairs: int = 128, seed: int = 12345) -> tuple[torch.Tensor, torch.Tensor]:
    """``held_out_loss`` of the found and of the true layouts, on the same pairs.

    Args:
        model: a DIVE model; its inversion's ``posterior_loss`` (and prior weight) is the objective.
        latents: (B, C, h, w) first-stage latents.
        found_tokens, true_tokens: (B, L) int64 layouts.

    Returns:
        (found_loss (B,), true_loss (B,)) on the CPU.
    """
    return (held_out_loss(model, latents, found_tokens, num_pairs, seed),
            held_out_loss(model, latents, true_tokens, num_pairs, seed))
