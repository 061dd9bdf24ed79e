"""A discrete local search on the layout inversion returns: move one object at a time, keep what lowers the loss.

Gradient descent through the snapped tokens stops in local optima whose boxes are a few cells off, or whose
class or presence is wrong, while the true layout has a lower loss (docs/detection.md, the loss gaps).
Polishing tries, for each object slot in turn, every single-slot move below and keeps the best if it
lowers the loss (coordinate descent; ties keep the current layout):

- its class changed to each other class, or the object removed (the slot set to ``none``);
- one edge moved by +-d grid cells, or the whole box translated by +-d cells in x or in y, for each d in
  ``shifts`` (only moves that keep the box legal: inside the grid, x1 > x0, y1 > y0).

A sweep visits every slot once; polishing stops after ``sweeps`` sweeps or the first sweep that changes
nothing. The loss is whatever the caller measures (the engine: the posterior loss on the monitor's fixed
pairs), and each image is polished on its own, so the result does not depend on the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..layout import LayoutTokenizer


def slot_moves(tokens: torch.Tensor, slot: int, tokenizer: LayoutTokenizer, shifts: Sequence[int]) -> torch.Tensor:
    """(K, L) int64 layouts that differ from ``tokens`` (L,) only in slot ``slot``'s (class, corner, corner)
    triple, by one move of the module docstring; (0, L) when the slot holds no legal object."""
    grid, classes_count = tokenizer.grid_size, tokenizer.num_classes
    start = 3 * slot
    class_token, top_left, bottom_right = (int(t) for t in tokens[start : start + 3])
    corner_range = range(classes_count, tokenizer.none_token)
    if not (0 <= class_token < classes_count and top_left in corner_range and bottom_right in corner_range):
        return tokens.new_empty((0, len(tokens)))
    x0, y0 = (top_left - classes_count) % grid, (top_left - classes_count) // grid
    x1, y1 = (bottom_right - classes_count) % grid, (bottom_right - classes_count) // grid
    if x1 <= x0 or y1 <= y0:
        return tokens.new_empty((0, len(tokens)))

    triples = [(other, top_left, bottom_right) for other in range(classes_count) if other != class_token]
    triples.append((tokenizer.none_token,) * 3)
    boxes = []
    for d in shifts:
        for delta in (d, -d):
            boxes += [(x0 + delta, y0, x1, y1), (x0, y0 + delta, x1, y1), (x0, y0, x1 + delta, y1),
                      (x0, y0, x1, y1 + delta), (x0 + delta, y0, x1 + delta, y1), (x0, y0 + delta, x1, y1 + delta)]
    for bx0, by0, bx1, by1 in boxes:
        if 0 <= bx0 < bx1 < grid and 0 <= by0 < by1 < grid:
            triples.append((class_token, classes_count + by0 * grid + bx0, classes_count + by1 * grid + bx1))
    candidates = tokens.repeat(len(triples), 1)
    candidates[:, start : start + 3] = torch.tensor(triples, dtype=tokens.dtype, device=tokens.device)
    return candidates


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
