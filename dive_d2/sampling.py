"""Sampling loops of the two diffusion models (kept apart from the models, as in diffusers).

``generate_images``: images that p(x|y) draws for given layouts. ``generate_class_images``: images of the
classification model p(x|c) for given classes. ``sample_layouts``: layouts drawn from
p(y). Both run a DDIM (deterministic, eta 0) or DDPM scheduler made from the model's training scheduler
config, and take an explicit ``torch.Generator``: same seed, same samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from diffusers import DDIMScheduler, DDPMScheduler, SchedulerMixin
from tqdm import tqdm

from .layout import nearest_allowed_tokens
from .modeling.denoising import clean_estimate, noise_for_clean
from .modeling.layout_prior import prior_input_scale

if TYPE_CHECKING:  # the meta-architecture itself samples (inversion init): no import at run time
    from .modeling.class_conditional import DiffusionClassifier
    from .modeling.meta_arch import DIVE


def make_sampling_scheduler(model: DIVE | DiffusionClassifier, kind: str, num_steps: int,
                            clip_sample: bool) -> SchedulerMixin:
    """A DDIM or DDPM scheduler with the model's noise schedule, set to ``num_steps`` steps."""
    classes = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}
    if kind not in classes:
        raise ValueError(f"sampling scheduler must be one of {sorted(classes)}, got {kind!r}")
    scheduler = classes[kind].from_config(model.scheduler.config, clip_sample=clip_sample)
    scheduler.set_timesteps(num_steps, device=model.device)
    return scheduler


def _denoise(predict_noise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
             scheduler: SchedulerMixin, generator: torch.Generator, device: torch.device, progress: str,
             project_clean: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    sample = torch.randn(shape, generator=generator).to(device)
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    for t in tqdm(scheduler.timesteps, desc=progress, leave=False, disable=not progress):
        timesteps = torch.full((shape[0],), int(t), device=device, dtype=torch.int64)
        noise_prediction = predict_noise(sample, timesteps)
        if project_clean is not None:
            # Diffusion-LM's clamping (Li et al. 2022): replace the clean estimate by its projection and hand
            # the scheduler the noise that is consistent with it, so any epsilon scheduler can step.
            alpha_bar = alphas_cumprod[int(t)]
            clean = project_clean(clean_estimate(sample, noise_prediction, alpha_bar))
            noise_prediction = noise_for_clean(sample, clean, alpha_bar)
        # DDPM's step noise is drawn from the same (CPU) generator, then moved: device-independent results.
        sample = scheduler.step(noise_prediction, t, sample, generator=generator).prev_sample
    return sample


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (clipped) -> uint8 in [0, 255]."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def generate_images(
    model: DIVE,
    tokens: torch.Tensor,
    generator: torch.Generator,
    num_steps: int = 50,
    scheduler: str = "ddim",
    progress: str = "",
) -> torch.Tensor:
    """Images p(x|y) generates for layouts.

    Args:
        model: a DIVE model (its first stage, layout encoder, UNet and noise schedule are used).
        tokens: (B, L) layout tokens (``model.tokenizer`` format).
        generator: CPU generator of the initial noise (and of DDPM's step noise).
        num_steps: denoising steps.
        scheduler: "ddim" (eta 0) or "ddpm".
        progress: tqdm description; empty hides the bar.

    Returns:
        (B, 3, S, S) uint8 RGB, S = model.input_size.
    """
    context = model.layout_encoder(model.layout_encoder.embed_tokens(tokens.to(model.device)))
    sampler = make_sampling_scheduler(model, scheduler, num_steps, clip_sample=model.first_stage.kind == "pixel")
    size = model.input_size // model.first_stage.downsample
    shape = (len(tokens), model.first_stage.channels, size, size)
    latents = _denoise(lambda x, t: model.predict_image_noise(x, t, context), shape, sampler,
                       generator, model.device, progress)
    return _to_uint8(model.first_stage.decode(latents))


@torch.no_grad()
def sample_layout_embeddings(
    model: DIVE,
    num_samples: int,
    generator: torch.Generator,
    num_steps: int = 100,
    scheduler: str = "ddim",
    clamp: bool = False,
    metric: str = "l2",
    progress: str = "",
) -> torch.Tensor:
    """Continuous layout embeddings drawn from the prior p(y), before snapping.

    Args:
        clamp: at every step, snap the prior's estimate of the clean sequence to the nearest allowed
            vocabulary rows (by ``metric``) before stepping (Diffusion-LM's clamping trick); the sample then
            ends on vocabulary rows.

    Returns:
        (num_samples, L, width) in the units of ``model.layout_encoder.vocabulary()``.
    """
    vocabulary = model.layout_encoder.vocabulary()
    scale = prior_input_scale(vocabulary)
    sampler = make_sampling_scheduler(model, scheduler, num_steps, clip_sample=False)
    shape = (num_samples, model.tokenizer.sequence_length, vocabulary.shape[1])
    project_clean = None
    if clamp:
        allowed = model.tokenizer.allowed_tokens()
        normalised_vocabulary = vocabulary / scale

        def project_clean(clean: torch.Tensor) -> torch.Tensor:
            return normalised_vocabulary[nearest_allowed_tokens(clean, normalised_vocabulary, allowed, metric)]

    normalised = _denoise(model.predict_prior_noise, shape, sampler, generator, model.device, progress, project_clean)
    return normalised * scale


@torch.no_grad()
def sample_layouts(
    model: DIVE,
    num_samples: int,
    generator: torch.Generator,
    num_steps: int = 100,
    scheduler: str = "ddim",
    metric: str = "l2",
    clamp: bool = False,
    progress: str = "",
) -> torch.Tensor:
    """Layouts drawn from the prior p(y): denoise an embedding sequence, then snap every position to the
    nearest token its type allows (``clamp``: at every step, see ``sample_layout_embeddings``).

    Returns:
        (num_samples, L) int64 tokens; decode them with ``model.tokenizer.decode``.
    """
    embeddings = sample_layout_embeddings(model, num_samples, generator, num_steps, scheduler, clamp, metric,
                                          progress)
    vocabulary = model.layout_encoder.vocabulary()
    return nearest_allowed_tokens(embeddings, vocabulary, model.tokenizer.allowed_tokens(), metric)


@torch.no_grad()
def generate_class_images(
    model: DiffusionClassifier,
    labels: torch.Tensor,
    generator: torch.Generator,
    num_steps: int = 50,
    scheduler: str = "ddim",
    progress: str = "",
) -> torch.Tensor:
    """Images a DiffusionClassifier's p(x|c) generates for class indices ``labels`` (B,).

    Returns:
        (B, C, S, S) uint8, C = model.in_channels, S = model.input_size.
    """
    class_embeddings = model.class_table(labels.to(model.device))
    sampler = make_sampling_scheduler(model, scheduler, num_steps, clip_sample=True)
    shape = (len(labels), model.in_channels, model.input_size, model.input_size)
    return _to_uint8(_denoise(lambda x, t: model.unet(x, t, class_labels=class_embeddings).sample, shape, sampler,
                              generator, model.device, progress))
