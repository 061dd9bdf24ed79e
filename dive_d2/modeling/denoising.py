"""The denoising error: the training loss of both diffusion models and the objective DIVE inverts.

One function serves p(x|y) (noise predictor = UNet given a layout context) and p(y) (noise predictor = the
layout prior), in training and in inversion, so the ELBO surrogate is written exactly once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import SchedulerMixin


def denoising_error(
    predict_noise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    scheduler: SchedulerMixin,
) -> torch.Tensor:
    """Per-sample epsilon-prediction error ||eps - eps_model(x_t, t)||^2, averaged over elements.

    Args:
        predict_noise: maps (x_t, t) to predicted noise of x_t's shape.
        clean: (B, ...) clean samples x_0 (latents, or normalised layout embeddings).
        timesteps: (B,) int64 diffusion timesteps in [0, num_train_timesteps).
        noise: (B, ...) Gaussian noise, the same shape as ``clean``.
        scheduler: a diffusers scheduler; its ``add_noise`` makes x_t from (x_0, noise, t).

    Returns:
        (B,) float, the mean squared error of each sample.
    """
    noisy = scheduler.add_noise(clean, noise, timesteps)
    return noise_prediction_error(predict_noise(noisy, timesteps), noise)


def noise_prediction_error(predicted_noise: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared error of each sample's (B, ...) predicted noise against the true noise."""
    return ((predicted_noise - noise) ** 2).flatten(1).mean(dim=1)


def clean_estimate(noisy: torch.Tensor, predicted_noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The clean sample an epsilon prediction implies: x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t).

    Args:
        noisy: x_t, any shape; predicted_noise: eps of the same shape (zeros: x_t / sqrt(a_t) itself).
        alpha_bar: the schedule's cumulative alpha a_t at x_t's timestep: a scalar tensor, or one per sample
            shaped to broadcast against x_t (e.g. (B, 1, 1)).
    """
    return (noisy - (1 - alpha_bar).sqrt() * predicted_noise) / alpha_bar.sqrt()


def noise_for_clean(noisy: torch.Tensor, clean: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The epsilon that makes ``clean_estimate`` return ``clean`` for ``noisy`` (its inverse)."""
    return (noisy - alpha_bar.sqrt() * clean) / (1 - alpha_bar).sqrt()


def fixed_pairs(num_pairs: int, sample_shape: tuple[int, ...], num_train_timesteps: int, seed: int,
                first_timestep: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_pairs`` (timestep, noise) pairs: timesteps evenly spread over [first_timestep,
    num_train_timesteps), seeded noise.

    Returns:
        timesteps (P,) int64 (the centres of P equal bins of that range) and noise (P, *sample_shape)
        float32, both on the CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    spacing = (num_train_timesteps - first_timestep) / num_pairs
    timesteps = (first_timestep + torch.arange(num_pairs) * spacing + spacing / 2).long()
    return timesteps, torch.randn((num_pairs, *sample_shape), generator=generator)


def pairs_in_window(count: int, sample_shape: tuple[int, ...], scheduler: SchedulerMixin, min_timestep: int,
                    max_timestep: int, seed: int, device: torch.device | str = "cpu"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``fixed_pairs`` over the window [min_timestep, max_timestep or the whole schedule), on ``device``.

    Both DIVE's layout inversion and the classifiers draw their pairs here, so the window is validated once.
    """
    schedule = scheduler.config.num_train_timesteps
    end = max_timestep or schedule
    if not 0 <= min_timestep < end <= schedule:
        raise ValueError(f"timestep window [{min_timestep}, {max_timestep}) must satisfy 0 <= MIN_TIMESTEP < "
                         f"MAX_TIMESTEP (0 = {schedule}) <= the schedule's {schedule} steps")
    timesteps, noise = fixed_pairs(count, sample_shape, end, seed, first_timestep=min_timestep)
    return timesteps.to(device), noise.to(device)


def ranking_loss(true_errors: torch.Tensor, wrong_errors: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean smooth hinge asking each true layout's denoising error to be below a wrong layout's on the same
    (x_0, t, noise): tau_i * softplus((e_true - e_wrong) / tau_i) with tau_i = ``temperature`` * e_true
    (detached), so the margin is relative to the error's own size, which spans orders of magnitude over t.

    Args:
        true_errors, wrong_errors: (B,) per-sample denoising errors (``denoising_error``) of the true and
            the wrong layout of the same images, timesteps and noises.
        temperature: relative width of the hinge's soft region; the loss keeps pushing until the wrong
            error exceeds the true one by several ``temperature`` x e_true.

    Returns:
        scalar tensor, 0-dimensional (0 for an empty batch, still attached to the graph).
    """
    if len(true_errors) == 0:
        return true_errors.sum() + wrong_errors.sum()
    # The clamp keeps an exactly zero true error (a hinge of width 0) from dividing 0 by 0.
    scale = temperature * true_errors.detach().clamp_min(torch.finfo(true_errors.dtype).tiny)
    return (scale * torch.nn.functional.softplus((true_errors - wrong_errors) / scale)).mean()
