"""Single-object moves of a layout: the neighbourhood of a layout in token space.

A move changes one object slot's (class, top-left, bottom-right) triple:

- its class changed to each other class, or the object removed (the slot set to ``none``);
- one edge moved by +-d grid cells, or the whole box translated by +-d cells in x or in y, for each d in
  ``shifts`` (only moves that keep the box legal: inside the grid, x1 > x0, y1 > y0).

Two users, one definition: the inversion's polish searches all moves of a layout
(dive_d2/inversion/polish.py), and p(x|y)'s ranking loss trains the true layout to beat one random move
of it (``random_object_moves``, dive_d2/modeling/meta_arch.py). The removals alone
(``leave_one_out_layouts``) give the leave-one-out evidence of scoring and of slot reseeding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .tokenizer import LayoutTokenizer


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


def leave_one_out_layouts(tokens: torch.Tensor, slots: torch.Tensor, none_token: int) -> torch.Tensor:
    """(K + 1, L) int64: the layout ``tokens`` (L,) itself, then one copy per slot in ``slots`` (K,) with
    that slot's triple set to ``none``."""
    layouts = tokens.repeat(len(slots) + 1, 1)
    for row, slot in enumerate(slots.tolist(), start=1):
        layouts[row, 3 * slot : 3 * slot + 3] = none_token
    return layouts


def random_object_moves(tokens: torch.Tensor, tokenizer: LayoutTokenizer, shifts: Sequence[int],
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random single-object move of each layout: a slot drawn uniformly among the layout's legal
    objects, then a move drawn uniformly among that slot's ``slot_moves``.

    Args:
        tokens: (B, L) int64 layouts (any device; the draw happens on the CPU with ``generator``).
        shifts: grid-cell distances of the box moves.

    Returns:
        (B, L) int64 moved layouts on ``tokens``' device (a layout without objects is returned unchanged)
        and (B,) bool, True where the layout was moved.
    """
    moved, has_move = tokens.clone(), torch.zeros(len(tokens), dtype=torch.bool, device=tokens.device)
    for index, layout in enumerate(tokens.cpu()):
        slot_candidates = [moves for slot in range(tokenizer.num_slots)
                           if len(moves := slot_moves(layout, slot, tokenizer, shifts))]
        if not slot_candidates:
            continue
        moves = slot_candidates[int(torch.randint(len(slot_candidates), (), generator=generator))]
        moved[index] = moves[int(torch.randint(len(moves), (), generator=generator))].to(tokens.device)
        has_move[index] = True
    return moved, has_move
