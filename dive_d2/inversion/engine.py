"""The inversion engine: find the layout y that explains an image under p(x|y) p(y).

For each image a continuous embedding sequence v (L x width) is optimised by gradient descent on

    loss(v) = E_{(t, eps) in a fixed pair set} [ ||eps - eps_theta(x_t, t, v')||^2 ]
              + prior_weight * E [ ||eps - eps_phi(v'_t / s, t)||^2 ],

where v' is v snapped to the nearest vocabulary token its position allows, with the straight-through
estimator v' = v + (snap(v) - v).detach(): the models only ever see real tokens, while the gradient moves
the continuous v (``snap=False`` optimises v itself and snaps once at the end, the paper's ablation).
The generator's and the prior's weights stay frozen.

Per image: its own v (initialised from the vocabulary's statistics, or from a prior sample; box slots also
where the empty layout leaves denoising error, ``error_map.py``), its own Adam state (Adam is elementwise
and the loss is a sum over images, so images in a batch do not interact), its own monitor and its own
stopping step. Every ``monitor_period`` steps the posterior loss of the snapped
layout is measured on a separate fixed set of pairs. The best layout is kept, and an image stops when its
monitor has not improved for ``patience`` checks, or at ``max_steps``. All randomness comes from
``seed`` and a per-image seed, so the result for an image does not depend on its batch.

With ``restarts`` R > 1 each image is inverted R times from different starting points (restart 0 is the
plain run) and the run with the lowest monitor loss is returned: the layout the models prefer among the R
local optima. It costs R times the steps. Every run's best layout is returned too, so that the detector can
pool the objects of all runs instead (``pooling.py``).

With ``reseed_period`` > 0 (box parameterisation) each run's weakest slot is restarted as a random object
every ``reseed_period`` steps when it explains nothing (``reseeding.py``): a restart for one slot, keeping the
objects the run has found.

With ``polish_sweeps`` > 0 the returned layout is then improved by a discrete local search, one object at
a time, on the monitor's pairs (``polish.py``); the runs' own layouts are not polished.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from detectron2.config import CfgNode, configurable

from ..modeling.denoising import pairs_in_window
from ..sampling import sample_layout_embeddings
from .error_map import empty_layout_error_map, error_map_slots
from .parameterisations import PARAMETERISATIONS, BoxSlots, EmbeddingSequence, TokenLogits, annealed_smoothing
from .polish import polish_layout
from .reseeding import SlotReseeding

if TYPE_CHECKING:  # the meta-architecture runs the inversion: no import at run time
    from ..modeling.meta_arch import DIVE

logger = logging.getLogger(__name__)

INITIALISATIONS = ("random", "prior", "error_map")


@dataclass
class MonitorCheck:
    """The state of a batch at one monitor check: step, (B,) monitor losses, (B, L) snapped tokens and
    (B, L, width) continuous embeddings (on the CPU)."""

    step: int
    loss: torch.Tensor
    tokens: torch.Tensor
    embeddings: torch.Tensor


@dataclass
class InversionResult:
    """What ``LayoutInversion`` found for a batch of B images.

    Attributes:
        tokens: (B, L) int64, the snapped layout with the best monitor loss.
        embeddings: (B, L, width), the continuous embeddings at that check (before snapping).
        monitor_loss: (B,) float, that best monitor loss (posterior, lower is better).
        stop_step: (B,) int64, the optimisation step at which each image stopped.
        history: a MonitorCheck per check, only when ``record_history`` is set (trajectory pictures, step
            budgets). Its rows are runs, B * ``restarts`` of them, image-major (run b * R + r is restart r
            of image b).
        best_run: (B,) int64 history row of each image's returned run (None: row b is image b).
        run_tokens, run_embeddings: (B, R, L) and (B, R, L, width), the best layout of every restart of
            every image (for pooling the restarts' objects); None when not set.
    """

    tokens: torch.Tensor
    embeddings: torch.Tensor
    monitor_loss: torch.Tensor
    stop_step: torch.Tensor
    history: list[MonitorCheck] = field(default_factory=list)
    best_run: torch.Tensor | None = None
    run_tokens: torch.Tensor | None = None
    run_embeddings: torch.Tensor | None = None

    def history_row(self, image: int) -> int:
        """The history row of image ``image``'s returned run."""
        return image if self.best_run is None else int(self.best_run[image])


def hashed_seed(text: str) -> int:
    """A 60-bit seed from a string: stable across processes and platforms, unlike ``hash``."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


def restart_seed(image_seed: int, restart: int) -> int:
    """Seed of restart ``restart`` of an image: the image's own seed for restart 0, so that one restart is
    exactly the plain run; a hash of both otherwise."""
    return image_seed if restart == 0 else hashed_seed(f"{image_seed}:restart {restart}")


def best_restarts(losses: torch.Tensor, restarts: int, considered: int | None = None) -> torch.Tensor:
    """(B,) int64 index of each image's best run: losses (B * restarts,) of image-major runs; the lowest
    loss wins, ties go to the earlier restart.

    ``considered`` k < restarts picks among each image's first k runs only: since a restart's seed does not
    depend on how many restarts there are, that is exactly what ``restarts`` = k would have returned."""
    considered = restarts if considered is None else considered
    if not 1 <= considered <= restarts:
        raise ValueError(f"can pick among 1 to {restarts} restarts, got {considered}")
    grouped = losses.detach().cpu().view(-1, restarts)[:, :considered]
    return torch.arange(len(grouped)) * restarts + grouped.argmin(1)


def replay_checks(losses: torch.Tensor, steps: list[int], patience: int | None = None,
                  max_steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What a run with other stopping settings would have returned, from the monitor history of a longer run.

    Images are inverted independently and stopping only freezes an image, so a run with a smaller budget
    or a finite patience follows the same trajectory up to its stop. The rule is the engine's: a check
    improves when its loss is strictly below the best so far; an image stops at the check where it has
    gone ``patience`` checks without improving, or at the last check with step <= ``max_steps``.

    Args:
        losses: (T, B) monitor losses of T checks; steps: the T check steps, increasing.
        patience: checks without improvement before stopping; None never stops early.
        max_steps: the budget; None uses every check.

    Returns:
        best (B,) int64 index of the check whose layout is returned, and stop (B,) int64 stopping step.
    """
    last = len(steps) - 1 if max_steps is None else max(i for i, s in enumerate(steps) if s <= max_steps)
    count = losses.shape[1]
    best = torch.zeros(count, dtype=torch.int64)
    stop = torch.full((count,), steps[last], dtype=torch.int64)
    for image in range(count):
        best_loss, stale = float("inf"), 0
        for check in range(last + 1):
            if losses[check, image] < best_loss:
                best_loss, best[image], stale = float(losses[check, image]), check, 0
            else:
                stale += 1
            if patience is not None and stale >= patience:
                stop[image] = steps[check]
                break
    return best, stop


def seeded_starts(mean: torch.Tensor, std: torch.Tensor, image_seeds: list[int]) -> torch.Tensor:
    """(B, *mean.shape) starting points mean + std * noise, the noise of image b drawn with image_seeds[b]
    (so an image's start does not depend on its batch)."""
    return torch.stack([
        mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed)).to(mean.device)
        for seed in image_seeds])


def random_slots(generator: torch.Generator, count: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random objects for the box parameterisation's starts: classes (count,) int64 uniform over
    the classes, boxes (count, 4) XYXY normalised, centre uniform in [0.1, 0.9] and sides in [0.1, 0.4]."""
    centre = 0.1 + 0.8 * torch.rand(count, 2, generator=generator)
    size = 0.1 + 0.3 * torch.rand(count, 2, generator=generator)
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    return torch.randint(0, num_classes, (count,), generator=generator), boxes


@dataclass(frozen=True)
class SearchSettings:
    """How ``optimise_tokens`` runs: Adam with ``learning_rate`` for at most ``max_steps`` steps, each on
    ``pairs_per_step`` of ``num_pairs`` fixed (t, noise) pairs (reshuffled each pass, seeded by ``seed``);
    a monitor check every ``monitor_period`` steps; an image stops after ``patience`` checks without
    improvement (``patience`` 0: never early). ``snap`` False optimises the continuous embeddings
    (snapped only at the checks)."""

    max_steps: int
    learning_rate: float
    num_pairs: int
    pairs_per_step: int
    monitor_period: int
    patience: int
    snap: bool
    seed: int


def optimise_tokens(parameterisation: EmbeddingSequence | BoxSlots | TokenLogits, vocabulary: torch.Tensor,
                    step_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                    monitor_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], settings: SearchSettings,
                    record_history: bool = False,
                    before_step: Callable[[int], None] | None = None,
                    after_step: Callable[[int, torch.Tensor, torch.optim.Optimizer], None] | None = None,
                    ) -> InversionResult:
    """The inversion loop shared by detection (layouts) and classification (one class token per image).

    Args:
        parameterisation: what moves (an ``EmbeddingSequence`` or ``BoxSlots`` of B images).
        vocabulary: (V, width) the frozen embedding table the tokens index.
        step_loss: (index (b,) images still running, chosen (k,) pair indices, embeddings (b, L, width),
            straight-through snapped unless ``settings.snap`` is False) -> (b,) differentiable loss.
        monitor_loss: (index (b,) images still running, (b, L, width) embeddings of their snapped tokens) ->
            (b,) loss on the monitor's fixed pairs. Stopped images get an infinite loss in the history.
        settings: see ``SearchSettings``.
        record_history: keep a ``MonitorCheck`` per check.
        before_step: called with the 0-based step index before each step's loss (schedules, e.g. the
            annealed box smoothing).
        after_step: called after each step (and after that step's monitor check, so the check sees the
            layout the step made) with the number of steps done, the (B,) bool CPU mask of images still
            running and the optimiser; it may change the parameters in place (``SlotReseeding``).
    """
    layout = parameterisation
    device = vocabulary.device
    batch = len(layout.parameters[0])
    order_generator = torch.Generator().manual_seed(settings.seed + 4)
    optimizer = torch.optim.Adam(layout.parameters, lr=settings.learning_rate)
    best_tokens = layout.tokens(vocabulary)
    best_embeddings = layout.continuous(vocabulary)
    best_loss = torch.full((batch,), float("inf"), device=device)
    stale_checks = torch.zeros(batch, dtype=torch.int64)
    stop_step = torch.full((batch,), settings.max_steps, dtype=torch.int64)
    active = torch.ones(batch, dtype=torch.bool)
    history = []
    order, cursor = torch.randperm(settings.num_pairs, generator=order_generator), 0

    def check(step: int) -> None:
        nonlocal best_tokens, best_embeddings
        index = torch.nonzero(active).reshape(-1).to(device)
        with torch.no_grad():  # stopped images are not evaluated (they can no longer improve)
            tokens = layout.tokens(vocabulary)
            loss = torch.full((batch,), float("inf"), device=device)
            loss[index] = monitor_loss(index, vocabulary[tokens[index]])
        continuous = layout.continuous(vocabulary)
        improved = (loss < best_loss) & active.to(device)
        best_loss[improved] = loss[improved]
        best_tokens = torch.where(improved[:, None], tokens, best_tokens)
        best_embeddings = torch.where(improved[:, None, None], continuous, best_embeddings)
        stale_checks[improved.cpu()] = 0
        stale_checks[~improved.cpu() & active] += 1
        if record_history:
            history.append(MonitorCheck(step, loss.cpu(), tokens.cpu(), continuous.cpu()))

    for step in range(settings.max_steps):
        if before_step is not None:
            before_step(step)
        if cursor + settings.pairs_per_step > settings.num_pairs:  # a new pass: reshuffle the pairs
            order, cursor = torch.randperm(settings.num_pairs, generator=order_generator), 0
        chosen = order[cursor : cursor + settings.pairs_per_step].to(device)
        cursor += settings.pairs_per_step
        index = torch.nonzero(active).reshape(-1).to(device)
        frozen = [parameter.detach().clone() for parameter in layout.parameters]
        loss = step_loss(index, chosen, layout.embeddings(vocabulary, index, settings.snap)).sum()
        optimizer.zero_grad()
        loss.backward(inputs=layout.parameters)  # no gradient into the frozen models
        optimizer.step()
        with torch.no_grad():  # Adam's momentum would still move stopped images: put them back
            stopped = ~active.to(device)
            for parameter, before in zip(layout.parameters, frozen, strict=True):
                parameter[stopped] = before[stopped]
        if (step + 1) % settings.monitor_period == 0 or step + 1 == settings.max_steps:
            check(step + 1)
            stopping = active & (stale_checks >= settings.patience) if settings.patience > 0 else active & False
            stop_step[stopping] = step + 1
            active &= ~stopping
            if not active.any():
                break
        if after_step is not None:
            after_step(step + 1, active.clone(), optimizer)
    return InversionResult(best_tokens, best_embeddings, best_loss.cpu(), stop_step, history)


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
        error_map_power: float = 2.0,
        parameterisation: str = "embedding",
        box_smoothing: float = 0.0,
        box_smoothing_start: float = 0.0,
        box_smoothing_anneal_steps: int = 50,
        timestep_window: tuple[int, int] = (0, 0),
        restarts: int = 1,
        polish_sweeps: int = 0,
        polish_shifts: tuple[int, ...] = (4, 1),
        reseed_period: int = 0,
        reseed_max_rise: float = 0.0,
        seed: int = 0,
        record_history: bool = False,
    ):
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"inversion parameterisation must be one of {PARAMETERISATIONS}, "
                             f"got {parameterisation!r}")
        if initialisation not in INITIALISATIONS:
            raise ValueError(f"inversion initialisation must be one of {INITIALISATIONS}, got {initialisation!r}")
        if initialisation == "error_map" and (parameterisation != "box" or error_map_power <= 0):
            raise ValueError("MODEL.DIVE.INVERSION.INIT 'error_map' places box slots: it needs PARAMETERISATION "
                             f"'box' and ERROR_MAP_POWER > 0, got {parameterisation!r} and {error_map_power}")
        if restarts < 1:
            raise ValueError(f"inversion restarts must be at least 1, got {restarts}")
        if box_smoothing_start > 0 and (box_smoothing <= 0 or box_smoothing_anneal_steps < 1):
            raise ValueError("an annealed corner smoothing (MODEL.DIVE.INVERSION.BOX_SMOOTHING_START "
                             f"{box_smoothing_start}) needs BOX_SMOOTHING > 0 to end at and BOX_SMOOTHING_ANNEAL_STEPS "
                             f">= 1, got {box_smoothing} and {box_smoothing_anneal_steps}")
        if polish_sweeps < 0 or any(shift < 1 for shift in polish_shifts):
            raise ValueError(f"MODEL.DIVE.INVERSION.POLISH_SWEEPS must be >= 0 and POLISH_SHIFTS positive grid cells, "
                             f"got {polish_sweeps} and {tuple(polish_shifts)}")
        if reseed_period < 0 or (reseed_period > 0 and parameterisation != "box"):
            raise ValueError("MODEL.DIVE.INVERSION.RESEED_PERIOD must be >= 0, and > 0 needs PARAMETERISATION "
                             f"'box' (it reseeds box slots), got {reseed_period} with {parameterisation!r}")
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
        self.error_map_power = error_map_power
        self.parameterisation = parameterisation
        self.box_smoothing = box_smoothing
        self.box_smoothing_start = box_smoothing_start
        self.box_smoothing_anneal_steps = box_smoothing_anneal_steps
        self.timestep_window = tuple(timestep_window)
        self.restarts = restarts
        self.polish_sweeps = polish_sweeps
        self.polish_shifts = tuple(polish_shifts)
        self.reseed_period = reseed_period
        self.reseed_max_rise = reseed_max_rise
        self.seed = seed
        self.record_history = record_history

    @classmethod
    def from_config(cls, cfg: CfgNode):
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
            "error_map_power": inversion.ERROR_MAP_POWER,
            "parameterisation": inversion.PARAMETERISATION,
            "box_smoothing": inversion.BOX_SMOOTHING,
            "box_smoothing_start": inversion.BOX_SMOOTHING_START,
            "box_smoothing_anneal_steps": inversion.BOX_SMOOTHING_ANNEAL_STEPS,
            "timestep_window": (inversion.MIN_TIMESTEP, inversion.MAX_TIMESTEP),
            "restarts": inversion.RESTARTS,
            "polish_sweeps": inversion.POLISH_SWEEPS,
            "polish_shifts": tuple(inversion.POLISH_SHIFTS),
            "reseed_period": inversion.RESEED_PERIOD,
            "reseed_max_rise": inversion.RESEED_MAX_RISE,
            "seed": inversion.SEED,
        }

    def with_prior_weight(self, prior_weight: float) -> LayoutInversion:
        """A copy of this engine that differs only by its prior weight (lambda of the loss): the same pairs,
        seeds and schedule, so that it inverts an image as a config with ``PRIOR_WEIGHT`` = ``prior_weight``
        would."""
        if prior_weight < 0:
            raise ValueError(f"inversion prior weight must be >= 0, got {prior_weight}")
        variant = copy.copy(self)
        variant.prior_weight = float(prior_weight)
        return variant

    # ---- pieces ----------------------------------------------------------------------------------------------
    def posterior_loss(self, model: DIVE, latents: torch.Tensor, embeddings: torch.Tensor, timesteps: torch.Tensor,
                       image_noise: torch.Tensor, prior_noise: torch.Tensor) -> torch.Tensor:
        """(B,) loss of B layouts (B, L, width) for B latents, averaged over K pairs.

        ``timesteps`` (K,), ``image_noise`` (K, C, h, w) and ``prior_noise`` (K, L, width) are shared by
        all images: every image is evaluated on all K pairs.
        """
        batch, count = len(latents), len(timesteps)

        def repeat(x: torch.Tensor) -> torch.Tensor:
            return x.repeat_interleave(count, dim=0)

        def tile(x: torch.Tensor) -> torch.Tensor:
            return x.repeat(batch, *([1] * (x.dim() - 1)))

        image_error = model.image_denoising_error(repeat(latents), repeat(embeddings), tile(timesteps),
                                                  tile(image_noise)).view(batch, count).mean(1)
        if self.prior_weight == 0:
            return image_error
        prior_error = model.prior_denoising_error(repeat(embeddings), tile(timesteps),
                                                  tile(prior_noise)).view(batch, count).mean(1)
        return image_error + self.prior_weight * prior_error

    def prior_samples(self, model: DIVE, image_seeds: list[int]) -> torch.Tensor:
        """(B, L, width) continuous prior samples, one per image, drawn with that image's seed."""
        return torch.stack([
            sample_layout_embeddings(model, 1, torch.Generator().manual_seed(image_seed),
                                     num_steps=self.prior_init_steps)[0]
            for image_seed in image_seeds])

    def initial_embeddings(self, model: DIVE, image_seeds: list[int]) -> torch.Tensor:
        """(B, L, width) starting points, one per image, drawn with that image's seed."""
        if self.initialisation == "prior":
            return self.prior_samples(model, image_seeds)
        # Per position: mean and spread of the rows it may snap to (classes + none, or corners + none).
        vocabulary = model.layout_encoder.vocabulary().detach()
        allowed = model.tokenizer.allowed_tokens().to(vocabulary.device)
        mean = torch.stack([vocabulary[allowed[p]].mean(0) for p in range(len(allowed))])
        std = torch.stack([vocabulary[allowed[p]].std(0) for p in range(len(allowed))])
        return seeded_starts(mean, std, image_seeds)

    def initial_slots(self, model: DIVE, image_seeds: list[int], device: torch.device,
                      error_maps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Starting classes (B, N) (num_classes = empty) and boxes (B, N, 4) (XYXY, normalised) of the box
        parameterisation. "random": every slot an object of a random class with a random box (centre uniform
        in [0.1, 0.9], sides uniform in [0.1, 0.4]); "prior": the snapped prior sample's objects, empty slots
        keep a random box for when they turn into objects; "error_map": random objects whose centres follow
        ``error_maps`` (B, h, w), the empty layout's error map of each image (``error_map.py``)."""
        tokenizer = model.tokenizer
        slots = tokenizer.num_slots
        classes, boxes = [], []
        if self.initialisation == "error_map" and (error_maps is None or len(error_maps) != len(image_seeds)):
            raise ValueError(f"INIT error_map needs one error map per start: {len(image_seeds)} seeds, error_maps "
                             f"{None if error_maps is None else tuple(error_maps.shape)}")
        for row, image_seed in enumerate(image_seeds):
            generator = torch.Generator().manual_seed(image_seed)
            if self.initialisation == "error_map":
                image_classes, image_boxes = error_map_slots(generator, error_maps[row], slots, tokenizer.num_classes,
                                                             self.error_map_power)
            else:
                image_classes, image_boxes = random_slots(generator, slots, tokenizer.num_classes)
            classes.append(image_classes)
            boxes.append(image_boxes)
        classes, boxes = torch.stack(classes), torch.stack(boxes)
        if self.initialisation == "prior":
            samples = EmbeddingSequence(self.prior_samples(model, image_seeds), model.tokenizer.allowed_tokens(),
                                        self.metric)
            tokens = samples.tokens(model.layout_encoder.vocabulary().detach()).cpu()
            for row, layout in enumerate(tokens):
                decoded = tokenizer.decode(layout, 1.0, 1.0)
                classes[row] = tokenizer.num_classes
                classes[row, decoded.slots] = decoded.classes
                boxes[row, decoded.slots] = decoded.boxes
        return classes.to(device), boxes.to(device)

    def initial_layout(self, model: DIVE, image_seeds: list[int], device: torch.device,
                       error_maps: torch.Tensor | None = None) -> EmbeddingSequence | BoxSlots:
        """The parameterised starting layouts of a batch (an EmbeddingSequence or BoxSlots); ``error_maps``
        (B, h, w) only for ``INIT error_map``."""
        if self.parameterisation == "box":
            return BoxSlots(model, *self.initial_slots(model, image_seeds, device, error_maps),
                            smoothing=self.box_smoothing)
        return EmbeddingSequence(self.initial_embeddings(model, image_seeds).to(device),
                                 model.tokenizer.allowed_tokens(), self.metric)

    def monitor_pairs_for(self, model: DIVE, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The monitor's fixed pairs for these latents: (timesteps (M,), image noise (M, C, h, w),
        prior noise (M, L, width)), on the latents' device."""
        timesteps, image_noise = pairs_in_window(self.monitor_pairs, tuple(latents.shape[1:]), model.scheduler,
                                                 *self.timestep_window, self.seed + 2)
        shape = (self.monitor_pairs, model.tokenizer.sequence_length, model.layout_encoder.config.width)
        prior_noise = torch.randn(shape, generator=torch.Generator().manual_seed(self.seed + 3))
        return timesteps.to(latents.device), image_noise.to(latents.device), prior_noise.to(latents.device)

    # ---- the loop --------------------------------------------------------------------------------------------
    def __call__(self, model: DIVE, latents: torch.Tensor, image_seeds: list[int]) -> InversionResult:
        """Invert a batch: each image ``restarts`` times. Returns the run with the lowest monitor loss per
        image, and every run's best layout in ``run_tokens``/``run_embeddings``.

        Args:
            model: a DIVE model (its parameters are not changed).
            latents: (B, C, h, w) first-stage latents of the images.
            image_seeds: B integers, one per image (e.g. from its image_id), for its initialisation.
        """
        run_seeds = [restart_seed(seed, restart) for seed in image_seeds for restart in range(self.restarts)]
        error_maps = None
        if self.initialisation == "error_map":  # once per image, not once per restart
            timesteps, noise, _ = self.monitor_pairs_for(model, latents)
            error_maps = empty_layout_error_map(model, latents, timesteps, noise).repeat_interleave(self.restarts, 0)
        runs = self.invert_runs(model, latents.repeat_interleave(self.restarts, dim=0), run_seeds, error_maps)
        best = best_restarts(runs.monitor_loss, self.restarts)
        on_device = best.to(runs.tokens.device)
        batch = len(image_seeds)
        tokens, embeddings, monitor_loss = runs.tokens[on_device], runs.embeddings[on_device], runs.monitor_loss[best]
        if self.polish_sweeps > 0:
            polished, monitor_loss = self.polish(model, latents, tokens)
            changed = (polished != tokens).any(dim=1)
            vocabulary = model.layout_encoder.vocabulary().detach()
            embeddings = torch.where(changed[:, None, None], vocabulary[polished], embeddings)
            tokens = polished
        return InversionResult(tokens, embeddings, monitor_loss, runs.stop_step[best], runs.history, best,
                               runs.tokens.view(batch, self.restarts, *runs.tokens.shape[1:]),
                               runs.embeddings.view(batch, self.restarts, *runs.embeddings.shape[1:]))

    @torch.no_grad()
    def polish(self, model: DIVE, latents: torch.Tensor, tokens: torch.Tensor, sweeps: int | None = None,
               chunk: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """Sweeps of single-object moves (``polish.py``) on each image's layout, judged by the posterior loss
        on the monitor's fixed pairs.

        Args:
            latents: (B, C, h, w); tokens: (B, L) int64 layouts; sweeps: at most this many sweeps (None:
                ``polish_sweeps``); chunk: candidate layouts per model call (each times the monitor's pairs:
                small batches ran faster on CPU: one sweep of a 3-object layout, 1 thread with the CPU shared,
                took 35 s at 4 and 60 s at 32).

        Returns:
            the polished (B, L) layouts and their (B,) monitor losses (on the CPU).
        """
        monitor = self.monitor_pairs_for(model, latents)
        polished, losses = [], []
        for image in range(len(tokens)):
            loss_of = self.monitor_loss_of(model, latents[image : image + 1], chunk, monitor)
            started = time.perf_counter()
            layout, loss = polish_layout(tokens[image], loss_of, model.tokenizer,
                                         self.polish_sweeps if sweeps is None else sweeps, self.polish_shifts)
            polished.append(layout)
            losses.append(loss)
            # A sweep costs tens of seconds per image on CPU: say where it is.
            logger.info("polished image %d/%d in %.1f s: %d slot(s) changed, monitor loss %.6f",
                        image + 1, len(tokens), time.perf_counter() - started,
                        int((layout != tokens[image]).view(-1, 3).any(dim=1).sum()), loss)
        return torch.stack(polished), torch.tensor(losses)

    def monitor_loss_of(self, model: DIVE, latents: torch.Tensor, chunk: int = 4, monitor: tuple | None = None
                        ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The loss that discrete searches over one image's layouts judge by: a function from (K, L) int64
        layouts to their (K,) posterior losses on the monitor's fixed pairs (on the CPU), for ``latents``
        (1, C, h, w); ``chunk`` layouts per model call; ``monitor``: ``monitor_pairs_for``'s pairs if at hand."""
        monitor = self.monitor_pairs_for(model, latents) if monitor is None else monitor
        vocabulary = model.layout_encoder.vocabulary().detach()

        def loss_of(layouts: torch.Tensor) -> torch.Tensor:
            return torch.cat([
                self.posterior_loss(model, latents.expand(len(part), *latents.shape[1:]),
                                    vocabulary[part.to(vocabulary.device)], *monitor).cpu()
                for part in layouts.split(chunk)])

        return loss_of

    def invert_runs(self, model: DIVE, latents: torch.Tensor, run_seeds: list[int],
                    error_maps: torch.Tensor | None = None) -> InversionResult:
        """One inversion per row of ``latents`` (R, C, h, w), started from ``run_seeds`` (R integers) and, for
        ``INIT error_map``, from ``error_maps`` (R, h, w)."""
        device = latents.device
        width = model.layout_encoder.config.width
        length = model.tokenizer.sequence_length
        timesteps, image_noise = pairs_in_window(self.num_pairs, tuple(latents.shape[1:]), model.scheduler,
                                                 *self.timestep_window, self.seed)
        prior_noise = torch.randn((self.num_pairs, length, width),
                                  generator=torch.Generator().manual_seed(self.seed + 1))
        timesteps, image_noise, prior_noise = timesteps.to(device), image_noise.to(device), prior_noise.to(device)
        monitor = self.monitor_pairs_for(model, latents)

        def step_loss(index: torch.Tensor, chosen: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
            return self.posterior_loss(model, latents[index], embeddings, timesteps[chosen], image_noise[chosen],
                                       prior_noise[chosen])

        def monitor_loss(index: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
            return self.posterior_loss(model, latents[index], embeddings, *monitor)

        layout = self.initial_layout(model, run_seeds, device, error_maps)
        vocabulary = model.layout_encoder.vocabulary().detach()
        return optimise_tokens(layout, vocabulary, step_loss, monitor_loss, self.search_settings(),
                               self.record_history, self.smoothing_schedule(layout),
                               self.slot_reseeding(model, layout, vocabulary, monitor_loss, run_seeds))

    def slot_reseeding(self, model: DIVE, layout: EmbeddingSequence | BoxSlots, vocabulary: torch.Tensor,
                       monitor_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], run_seeds: list[int]
                       ) -> SlotReseeding | None:
        """The ``after_step`` hook that reseeds the weakest slot of each run (``reseeding.py``); None when
        ``reseed_period`` is 0."""
        if self.reseed_period == 0:
            return None

        def new_slot(run: int, steps_done: int) -> tuple[torch.Tensor, torch.Tensor]:
            generator = torch.Generator().manual_seed(hashed_seed(f"{run_seeds[run]}:reseed {steps_done}"))
            classes, boxes = random_slots(generator, 1, model.tokenizer.num_classes)
            return classes[0], boxes[0]

        return SlotReseeding(layout, vocabulary, lambda rows, layouts: monitor_loss(rows, vocabulary[layouts]),
                             new_slot, self.reseed_period, self.max_steps, self.reseed_max_rise)

    def smoothing_schedule(self, layout: EmbeddingSequence | BoxSlots) -> Callable[[int], None] | None:
        """The ``before_step`` hook that anneals a BoxSlots layout's corner smoothing from
        ``box_smoothing_start`` to ``box_smoothing``; None when the smoothing is constant."""
        if self.box_smoothing_start <= 0 or not isinstance(layout, BoxSlots):
            return None

        def set_smoothing(step: int) -> None:
            layout.smoothing = annealed_smoothing(step, self.box_smoothing_start, self.box_smoothing,
                                                  self.box_smoothing_anneal_steps)

        return set_smoothing

    def search_settings(self) -> SearchSettings:
        """The optimiser, pair and stopping settings of the shared loop ``optimise_tokens``."""
        return SearchSettings(self.max_steps, self.learning_rate, self.num_pairs, self.pairs_per_step,
                              self.monitor_period, self.patience, self.snap, self.seed)
