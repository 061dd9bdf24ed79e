"""Slot reseeding for the box parameterisation: a restart for one slot instead of the whole layout.

Restarts pay (docs/detection.md): one run settles in a local optimum, and runs from other starts find
other objects. But a restart also throws away the objects its run had found. Reseeding restarts only the
slots that explain nothing: every ``period`` steps it measures each slot's leave-one-out evidence on the
monitor's pairs (how much the posterior loss rises when the slot is replaced by ``none``, the delta of the
``leave_one_out`` score; exactly 0 for an empty slot). Each run's weakest slot, when its evidence is at most
``max_rise``, becomes a fresh random object (a class and box drawn as the random start draws them), seeded
by the run's seed and the step, so a run's result does not depend on its batch. Both of Adam's moments of
that slot are cleared. No slot is reseeded in the last ``period`` steps, so every new object gets at least
``period`` steps of descent. The monitor's best layout is kept as always, so a reseed that does not pay costs
steps, never the layout already found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from ..layout import leave_one_out_layouts
from .parameterisations import BoxSlots

logger = logging.getLogger(__name__)


def slot_evidence(tokens: torch.Tensor, runs: torch.Tensor,
                  layout_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], none_token: int,
                  num_slots: int) -> torch.Tensor:
    """(R, N) leave-one-out evidence of every slot of R layouts: loss without the slot minus loss of the
    layout (positive: the slot explains part of the image); exactly 0 for empty slots.

    Args:
        tokens: (R, L) int64 layouts, L = 3 * num_slots; runs: (R,) int64, the run each layout belongs to.
        layout_loss: (runs (K,) int64, (K, L) layouts) -> (K,) loss.
    """
    every_slot = torch.arange(num_slots)
    variants = torch.stack([leave_one_out_layouts(layout, every_slot, none_token) for layout in tokens])
    losses = layout_loss(runs.to(tokens.device).repeat_interleave(num_slots + 1),
                         variants.flatten(0, 1)).view(len(tokens), num_slots + 1)
    evidence = losses[:, 1:] - losses[:, :1]
    empty = tokens[:, 0::3] == none_token
    return evidence.masked_fill(empty.to(evidence.device), 0.0)


class SlotReseeding:
    """The ``after_step`` hook of ``optimise_tokens`` that reseeds weak slots (see the module docstring)."""

    def __init__(self, layout: BoxSlots, vocabulary: torch.Tensor,
                 layout_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 new_slot: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
                 period: int, max_steps: int, max_rise: float = 0.0, chunk: int = 8):
        """
        Args:
            layout: the BoxSlots of R runs being optimised.
            vocabulary: (V, width) the frozen table.
            layout_loss: (runs (K,) int64 run indices, (K, L) int64 layouts) -> (K,) monitor loss.
            new_slot: (run, steps done) -> (class () int64, box (4,) XYXY normalised) of a reseeded slot,
                drawn from that run's own seed.
            period: steps between reseeding checks (> 0).
            max_steps: the run's step budget (no reseeding within ``period`` steps of it).
            max_rise: a slot is reseeded when its evidence (loss rise without it) is at most this.
            chunk: runs per evidence evaluation (each costs N + 1 layouts on the monitor's pairs).
        """
        if period < 1:
            raise ValueError(f"slot reseeding needs a period of at least 1 step, got {period}")
        self.layout = layout
        self.vocabulary = vocabulary
        self.layout_loss = layout_loss
        self.new_slot = new_slot
        self.period = period
        self.max_steps = max_steps
        self.max_rise = max_rise
        self.chunk = chunk
        self.reseeded = torch.zeros(len(layout.class_logits), dtype=torch.int64)

    def __call__(self, steps_done: int, active: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if steps_done % self.period != 0 or steps_done + self.period > self.max_steps or not active.any():
            return
        tokenizer = self.layout.model.tokenizer
        runs = torch.nonzero(active).reshape(-1)
        tokens = self.layout.tokens(self.vocabulary)[runs.to(self.vocabulary.device)]
        with torch.no_grad():
            evidence = torch.cat([
                slot_evidence(part, part_runs, self.layout_loss, tokenizer.none_token, tokenizer.num_slots)
                for part, part_runs in zip(tokens.split(self.chunk), runs.split(self.chunk), strict=True)]).cpu()
        weakest_evidence, weakest = evidence.min(dim=1)  # ties: the first slot
        chosen = weakest_evidence <= self.max_rise
        rows, slots = runs[chosen], weakest[chosen]
        if len(rows) == 0:
            return
        drawn = [self.new_slot(int(row), steps_done) for row in rows]
        classes = torch.stack([cls for cls, _ in drawn])
        boxes = torch.stack([box for _, box in drawn])
        device = self.layout.class_logits.device
        rows_on, slots_on = rows.to(device), slots.to(device)
        self.layout.reset_slots(rows_on, slots_on, classes, boxes)
        for parameter in self.layout.parameters:
            for moment in ("exp_avg", "exp_avg_sq"):
                if moment in optimizer.state.get(parameter, {}):
                    optimizer.state[parameter][moment][rows_on, slots_on] = 0
        self.reseeded[rows] += 1
        logger.info("step %d: reseeded the weakest slot of %d of %d running inversions", steps_done, len(rows),
                    len(runs))
