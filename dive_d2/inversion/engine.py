"""The inversion engine: find the layout y that explains an image under p(x|y) p(y).

For each image a continuous embedding sequence v (L x width) is optimised by gradient descent on

    loss(v) = E_{(t, eps) in a fixed pair set} [ ||eps - eps_theta(x_t, t, v')||^2 ]
              + prior_weight * E [ ||eps - eps_phi(v'_t / s, t)||^2 ],

where v' is v snapped to the nearest vocabulary token its position allows, with the straight-through
estimator v' = v + (snap(v) - v).detach(): the models only ever see real tokens, while the gradient moves
the continuous v (``snap=False`` optimises v itself and snaps once at the end, the paper's ablation).
The generator's and the prior's weights stay frozen.

Per image: its own v (initialised from the vocabulary's statistics, or from a prior sample), its own Adam
state (Adam is elementwise and the loss is a sum over images, so images in a batch do not interact), its
own monitor and its own stopping step. Every ``monitor_period`` steps the posterior loss of the snapped
layout is measured on a separate fixed set of pairs. The best layout is kept, and an image stops when its
monitor has not improved for ``patience`` checks, or at ``max_steps``. All randomness comes from
``seed`` and a per-image seed, so the result for an image does not depend on its batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from detectron2.config import configurable

from ..layout import nearest_allowed_tokens
from ..modeling.denoising import fixed_pairs
from ..sampling import sample_layout_embeddings

INITIALISATIONS = ("random", "prior")


@dataclass
class InversionResult:
    """What ``LayoutInversion`` found for a batch of B images.

    Attributes:
        tokens: (B, L) int64, the snapped layout with the best monitor loss.
        embeddings: (B, L, width), the continuous embeddings at that check (before snapping).
        monitor_loss: (B,) float, that best monitor loss (posterior, lower is better).
        stop_step: (B,) int64, the optimisation step at which each image stopped.
        history: per monitor check, (step, (B,) monitor losses, (B, L) snapped tokens); only when
            ``record_history`` is set (for trajectory pictures).
    """

    tokens: torch.Tensor
    embeddings: torch.Tensor
    monitor_loss: torch.Tensor
    stop_step: torch.Tensor
    history: list[tuple[int, torch.Tensor, torch.Tensor]] = field(default_factory=list)


class LayoutInversion:
    """Gradient-based inversion of a DIVE model's p(x|y) and p(y) (see the module docstring)."""

    @configurable
    def __init__(
        self,
        *,
        max_steps: int = 300,
        learning_rate: float = 0.05,
        num_pairs: int = 64,
        pairs_per_step: int = 16,
        monitor_pairs: int = 32,
        monitor_period: int = 10,
        patience: int = 5,
        prior_weight: float = 1.0,
        snap: bool = True,
        metric: str = "l2",
        initialisation: str = "random",
        prior_init_steps: int = 50,
        seed: int = 0,
        record_history: bool = False,
    ):
        if initialisation not in INITIALISATIONS:
            raise ValueError(f"inversion initialisation must be one of {INITIALISATIONS}, got {initialisation!r}")
        if pairs_per_step > num_pairs:
            raise ValueError(f"pairs_per_step ({pairs_per_step}) exceeds num_pairs ({num_pairs})")
        self.max_steps = max_steps
        self.learning_rate = learning_rate
        self.num_pairs = num_pairs
        self.pairs_per_step = pairs_per_step
        self.monitor_pairs = monitor_pairs
        self.monitor_period = monitor_period
        self.patience = patience
        self.prior_weight = prior_weight
        self.snap = snap
        self.metric = metric
        self.initialisation = initialisation
        self.prior_init_steps = prior_init_steps
        self.seed = seed
        self.record_history = record_history

    @classmethod
    def from_config(cls, cfg):
        inversion = cfg.MODEL.DIVE.INVERSION
        return {
            "max_steps": inversion.MAX_STEPS,
            "learning_rate": inversion.LEARNING_RATE,
            "num_pairs": inversion.NUM_PAIRS,
            "pairs_per_step": inversion.PAIRS_PER_STEP,
            "monitor_pairs": inversion.MONITOR_PAIRS,
            "monitor_period": inversion.MONITOR_PERIOD,
            "patience": inversion.PATIENCE,
            "prior_weight": inversion.PRIOR_WEIGHT,
            "snap": inversion.SNAP,
            "metric": inversion.METRIC,
            "initialisation": inversion.INIT,
            "prior_init_steps": inversion.PRIOR_INIT_STEPS,
            "seed": inversion.SEED,
        }

    # ---- pieces ----------------------------------------------------------------------------------------------
    def snapped_tokens(self, model, embeddings: torch.Tensor, vocabulary: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, width) -> (B, L) nearest allowed tokens. ``vocabulary``: the model's table, if already
        computed (it is a projection of every grid point in the Fourier mode)."""
        if vocabulary is None:
            vocabulary = model.layout_encoder.vocabulary().detach()
        return nearest_allowed_tokens(embeddings, vocabulary, model.tokenizer.allowed_tokens(), self.metric)

    def straight_through(self, model, embeddings: torch.Tensor, vocabulary: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """v' = v + (snap(v) - v).detach(): forward value on vocabulary rows, gradient to v."""
        if vocabulary is None:
            vocabulary = model.layout_encoder.vocabulary().detach()
        snapped = vocabulary[self.snapped_tokens(model, embeddings, vocabulary)]
        return embeddings + (snapped - embeddings).detach()

    def posterior_loss(self, model, latents, embeddings, timesteps, image_noise, prior_noise) -> torch.Tensor:
        """(B,) loss of B layouts (B, L, width) for B latents, averaged over K pairs.

        ``timesteps`` (K,), ``image_noise`` (K, C, h, w) and ``prior_noise`` (K, L, width) are shared by
        all images: every image is evaluated on all K pairs.
        """
        batch, count = len(latents), len(timesteps)

        def repeat(x):
            return x.repeat_interleave(count, dim=0)

        def tile(x):
            return x.repeat(batch, *([1] * (x.dim() - 1)))

        image_error = model.image_denoising_error(repeat(latents), repeat(embeddings), tile(timesteps),
                                                  tile(image_noise)).view(batch, count).mean(1)
        if self.prior_weight == 0:
            return image_error
        prior_error = model.prior_denoising_error(repeat(embeddings), tile(timesteps),
                                                  tile(prior_noise)).view(batch, count).mean(1)
        return image_error + self.prior_weight * prior_error

    def initial_embeddings(self, model, image_seeds: list[int]) -> torch.Tensor:
        """(B, L, width) starting points, one per image, drawn with that image's seed."""
        if self.initialisation == "prior":
            return torch.stack([
                sample_layout_embeddings(model, 1, torch.Generator().manual_seed(image_seed),
                                         num_steps=self.prior_init_steps)[0]
                for image_seed in image_seeds])
        # Per position: mean and spread of the rows it may snap to (classes + none, or corners + none).
        vocabulary = model.layout_encoder.vocabulary().detach()
        allowed = model.tokenizer.allowed_tokens().to(vocabulary.device)
        mean = torch.stack([vocabulary[allowed[p]].mean(0) for p in range(len(allowed))])
        std = torch.stack([vocabulary[allowed[p]].std(0) for p in range(len(allowed))])
        return torch.stack([
            mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(image_seed)).to(mean.device)
            for image_seed in image_seeds])

    def monitor_pairs_for(self, model, latents: torch.Tensor):
        """The monitor's fixed pairs for these latents: (timesteps (M,), image noise (M, C, h, w),
        prior noise (M, L, width)), on the latents' device."""
        num_timesteps = model.scheduler.config.num_train_timesteps
        timesteps, image_noise = fixed_pairs(self.monitor_pairs, tuple(latents.shape[1:]), num_timesteps,
                                             self.seed + 2)
        shape = (self.monitor_pairs, model.tokenizer.sequence_length, model.layout_encoder.config.width)
        prior_noise = torch.randn(shape, generator=torch.Generator().manual_seed(self.seed + 3))
        return timesteps.to(latents.device), image_noise.to(latents.device), prior_noise.to(latents.device)

    # ---- the loop --------------------------------------------------------------------------------------------
    def __call__(self, model, latents: torch.Tensor, image_seeds: list[int]) -> InversionResult:
        """Invert a batch.

        Args:
            model: a DIVE model (its parameters are not changed).
            latents: (B, C, h, w) first-stage latents of the images.
            image_seeds: B integers, one per image (e.g. from its image_id), for its initialisation.
        """
        device = latents.device
        batch = len(latents)
        width = model.layout_encoder.config.width
        length = model.tokenizer.sequence_length
        num_timesteps = model.scheduler.config.num_train_timesteps
        timesteps, image_noise = fixed_pairs(self.num_pairs, tuple(latents.shape[1:]), num_timesteps, self.seed)
        prior_noise = torch.randn((self.num_pairs, length, width),
                                  generator=torch.Generator().manual_seed(self.seed + 1))
        timesteps, image_noise, prior_noise = timesteps.to(device), image_noise.to(device), prior_noise.to(device)
        monitor = self.monitor_pairs_for(model, latents)
        order_generator = torch.Generator().manual_seed(self.seed + 4)

        embeddings = self.initial_embeddings(model, image_seeds).requires_grad_(True)
        optimizer = torch.optim.Adam([embeddings], lr=self.learning_rate)
        vocabulary = model.layout_encoder.vocabulary().detach()
        best_tokens = self.snapped_tokens(model, embeddings.detach(), vocabulary)
        best_embeddings = embeddings.detach().clone()
        best_loss = torch.full((batch,), float("inf"), device=device)
        stale_checks = torch.zeros(batch, dtype=torch.int64)
        stop_step = torch.full((batch,), self.max_steps, dtype=torch.int64)
        active = torch.ones(batch, dtype=torch.bool)
        history = []
        order, cursor = torch.randperm(self.num_pairs, generator=order_generator), 0

        def check(step: int) -> None:
            nonlocal best_tokens, best_embeddings
            with torch.no_grad():
                tokens = self.snapped_tokens(model, embeddings, vocabulary)
                loss = self.posterior_loss(model, latents, vocabulary[tokens], *monitor)
            improved = (loss < best_loss) & active.to(device)
            best_loss[improved] = loss[improved]
            best_tokens = torch.where(improved[:, None], tokens, best_tokens)
            best_embeddings = torch.where(improved[:, None, None], embeddings.detach(), best_embeddings)
            stale_checks[improved.cpu()] = 0
            stale_checks[~improved.cpu() & active] += 1
            if self.record_history:
                history.append((step, loss.cpu(), tokens.cpu()))

        for step in range(self.max_steps):
            if cursor + self.pairs_per_step > self.num_pairs:  # a new pass: reshuffle the pairs
                order, cursor = torch.randperm(self.num_pairs, generator=order_generator), 0
            chosen = order[cursor : cursor + self.pairs_per_step].to(device)
            cursor += self.pairs_per_step
            index = torch.nonzero(active).reshape(-1).to(device)
            frozen = embeddings.detach().clone()
            current = embeddings[index]
            if self.snap:
                current = self.straight_through(model, current, vocabulary)
            loss = self.posterior_loss(model, latents[index], current, timesteps[chosen], image_noise[chosen],
                                       prior_noise[chosen]).sum()
            optimizer.zero_grad()
            loss.backward(inputs=[embeddings])  # no gradient into the frozen models
            optimizer.step()
            with torch.no_grad():  # Adam's momentum would still move stopped images: put them back
                embeddings[~active.to(device)] = frozen[~active.to(device)]
            if (step + 1) % self.monitor_period == 0 or step + 1 == self.max_steps:
                check(step + 1)
                stopping = active & (stale_checks >= self.patience)
                stop_step[stopping] = step + 1
                active &= ~stopping
                if not active.any():
                    break
        return InversionResult(best_tokens, best_embeddings, best_loss.cpu(), stop_step, history)
