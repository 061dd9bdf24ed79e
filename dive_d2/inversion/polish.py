"""A discrete local search on the layout inversion returns: move one object at a time, keep what lowers the loss.

Gradient descent through the snapped tokens stops in local optima whose boxes are a few cells off, or whose
class or presence is wrong, while the true layout has a lower loss (docs/detection.md, the loss gaps).
Polishing tries, for each object slot in turn, every single-slot move and keeps the best if it
lowers the loss (coordinate descent; ties keep the current layout). The moves are those of
``dive_d2/layout/moves.py``: another class, removal, one edge or the whole box moved by +-d grid cells.

A sweep visits every slot once; polishing stops after ``sweeps`` sweeps or the first sweep that changes
nothing. The loss is whatever the caller measures (the engine: the posterior loss on the monitor's fixed
pairs), and each image is polished on its own, so the result does not depend on the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..layout import LayoutTokenizer, slot_moves


def polish_layout(tokens: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor], tokenizer: LayoutTokenizer,
                  sweeps: int, shifts: Sequence[int]) -> tuple[torch.Tensor, float]:
    """Coordinate descent from one layout (see the module docstring).

    Args:
        tokens: (L,) int64 starting layout.
        loss_of: (K, L) int64 layouts -> (K,) losses (lower is better); called with K = 1 for the start.
        sweeps: at most this many passes over the slots (0 returns the start).
        shifts: grid-cell distances of the box moves.

    Returns:
        the polished (L,) layout and its loss.
    """
    current = tokens.clone()
    current_loss = float(loss_of(current[None])[0])
    for _ in range(sweeps):
        changed = False
        for slot in range(tokenizer.num_slots):
            candidates = slot_moves(current, slot, tokenizer, shifts)
            if len(candidates) == 0:
                continue
            losses = loss_of(candidates)
            best = int(losses.argmin())
            if float(losses[best]) < current_loss:
                current, current_loss, changed = candidates[best].clone(), float(losses[best]), True
        if not changed:
            break
    return current, current_loss
