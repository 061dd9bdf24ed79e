"""What does the layout prior p(y) know? Token recovery from noised training layouts.

A layout's embedding sequence is noised to timestep t; the prior's clean estimate
x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t) is snapped to the nearest allowed tokens and compared with the
true tokens, separately at class and corner positions. The baseline snaps the rescaled noisy input
x_t / sqrt(a_t) itself: what a denoiser that knows only the vocabulary, nothing about layouts, recovers.
Where the prior is no better than that baseline, it has not learned how the tokens of a layout relate
(for example how a box's two corners do), and its samples decide those tokens by noise. A third estimate is
the exact posterior mean of a denoiser that knows the vocabulary and treats every position alone
(``independent_posterior_logits``); it also gives the epsilon error such a denoiser reaches, the bar below
which a prior's own epsilon error shows it has learned anything about layouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from detectron2.structures import Boxes, pairwise_iou

from ..layout import LayoutTokenizer, nearest_allowed_tokens
from ..modeling.denoising import clean_estimate, noise_for_clean, noise_prediction_error
from ..modeling.layout_prior import independent_posterior_logits, prior_input_scale

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE


def object_iou(tokenizer: LayoutTokenizer, recovered: torch.Tensor, true: torch.Tensor) -> float:
    """Mean IoU between each true object's box and the box its slot decodes to in ``recovered`` (0 where
    that slot no longer decodes to an object: ``none`` or an illegal box), over all true objects of
    (B, L) token sequences; boxes compared in normalised coordinates. Exact tokens are not needed: a
    corner one cell off still scores, so this tells a prior that puts boxes roughly right from one that
    does not."""
    ious = []
    for recovered_layout, true_layout in zip(recovered.cpu(), true.cpu(), strict=True):
        truth = tokenizer.decode(true_layout, 1.0, 1.0)
        found = tokenizer.decode(recovered_layout, 1.0, 1.0)
        found_box = dict(zip(found.slots.tolist(), found.boxes, strict=True))
        for slot, box in zip(truth.slots.tolist(), truth.boxes, strict=True):
            ious.append(float(pairwise_iou(Boxes(box[None]), Boxes(found_box[slot][None]))) if slot in found_box
                        else 0.0)
    return sum(ious) / max(len(ious), 1)


@torch.no_grad()
def prior_token_recovery(
    model: DIVE, tokens: torch.Tensor, timesteps: list[int], generator: torch.Generator
) -> list[dict[str, float]]:
    """Fraction of true tokens recovered from noised layouts, by the prior, by the per-position posterior and by
    snapping the noisy input.

    Args:
        model: a DIVE model with a trained prior.
        tokens: (B, L) true layout tokens (``model.tokenizer`` format).
        timesteps: diffusion timesteps in [0, num_train_timesteps) to measure at.
        generator: CPU generator of the noise (one draw per timestep).

    Returns:
        One dict per timestep: ``t``, ``prior_class``, ``prior_corner``, ``prior_object_corner``,
        ``prior_object_iou``, ``prior_epsilon_error``, and the same five with ``posterior_`` and ``snap_``:
        fractions in [0, 1] of the class positions, of the corner positions (``none`` included) and of the
        corner positions that hold a real corner (``none`` excluded) recovered exactly, the mean IoU of the true
        objects' boxes (``object_iou``), and the mean squared error of the noise each clean estimate implies.
    """
    vocabulary = model.layout_encoder.vocabulary()
    scale = prior_input_scale(vocabulary)
    tokens = tokens.to(vocabulary.device)
    clean_vocabulary = vocabulary / scale
    clean = clean_vocabulary[tokens]
    allowed = model.tokenizer.allowed_tokens()
    is_class_position = model.tokenizer.class_positions().to(tokens.device)[None].expand_as(tokens)
    is_object_corner = ~is_class_position & (tokens != model.tokenizer.none_token)
    alphas_cumprod = model.scheduler.alphas_cumprod.to(clean.device)
    rows = []
    for t in timesteps:
        alpha_bar = alphas_cumprod[t]
        timestep = torch.full((len(tokens),), t, device=tokens.device)
        noise = torch.randn(clean.shape, generator=generator).to(clean.device)
        noisy = model.scheduler.add_noise(clean, noise, timestep)
        posterior = independent_posterior_logits(noisy, clean_vocabulary, allowed, alpha_bar.expand(len(tokens)))
        estimates = {"prior": clean_estimate(noisy, model.predict_prior_noise(noisy, timestep), alpha_bar),
                     "posterior": posterior.softmax(-1) @ clean_vocabulary,
                     "snap": clean_estimate(noisy, torch.zeros_like(noisy), alpha_bar)}
        row = {"t": int(t)}
        for name, candidate in estimates.items():
            recovered = nearest_allowed_tokens(candidate * scale, vocabulary, allowed)
            correct = recovered == tokens
            row[f"{name}_object_iou"] = object_iou(model.tokenizer, recovered, tokens)
            row[f"{name}_class"] = float(correct[is_class_position].float().mean())
            row[f"{name}_corner"] = float(correct[~is_class_position].float().mean())
            row[f"{name}_object_corner"] = float(correct[is_object_corner].float().mean())
            row[f"{name}_epsilon_error"] = float(noise_prediction_error(noise_for_clean(noisy, candidate, alpha_bar),
                                                                        noise).mean())
        rows.append(row)
    return rows
