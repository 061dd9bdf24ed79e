"""Assembling one layout, object by object, from the objects of an image's restarts.

The R runs of an image together touch more true objects than the best run holds (docs/detection.md,
``tools/restart_headroom.py``: the union against the monitor's pick). Pooling all their objects
(``pooling.py``) adds every wrong object too. Assembly lets the posterior loss choose at the level of
objects instead of runs: starting from the empty layout, it adds, one slot at a time, the candidate object
whose addition lowers the loss most, and stops when no candidate lowers it or the slots are full (greedy
forward selection). Candidates are the distinct (class, corner, corner) triples of the runs' legal
objects. The loss is whatever the caller measures, e.g. the posterior loss on the monitor's fixed pairs.

Measured as a diagnostic (``tools/restart_headroom.py``) on six recordings: it finds fewer true objects than
the monitor's pick of a whole run (98 against 104 of 362), so it is not a ``RESTART_SELECTION`` (docs/detection.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..layout import LayoutTokenizer


def run_objects(run_tokens: torch.Tensor, tokenizer: LayoutTokenizer) -> list[tuple[int, int, int]]:
    """The distinct legal objects of R layouts (R, L) int64 as (class, top-left, bottom-right) token triples,
    in order of first appearance (run, then slot)."""
    objects: dict[tuple[int, int, int], None] = {}
    for layout in run_tokens.cpu():
        for slot in tokenizer.decode(layout, 1.0, 1.0).slots.tolist():
            objects.setdefault(tuple(int(t) for t in layout[3 * slot : 3 * slot + 3]), None)
    return list(objects)


def assemble_layout(run_tokens: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor],
                    tokenizer: LayoutTokenizer) -> tuple[torch.Tensor, float]:
    """Greedy forward selection of objects from the runs' layouts (see the module docstring).

    Args:
        run_tokens: (R, L) int64, the layouts of one image's R runs.
        loss_of: (K, L) int64 layouts -> (K,) losses, lower is better; called with K = 1 for the empty layout.

    Returns:
        the assembled (L,) int64 layout (objects in slots 0, 1, ... in the order they were added; the other
        slots ``none``) and its loss.
    """
    current = torch.full((tokenizer.sequence_length,), tokenizer.none_token, dtype=torch.int64)
    current_loss = float(loss_of(current[None])[0])
    candidates = run_objects(run_tokens, tokenizer)
    for slot in range(tokenizer.num_slots):
        if not candidates:
            break
        trials = current.repeat(len(candidates), 1)
        trials[:, 3 * slot : 3 * slot + 3] = torch.tensor(candidates, dtype=torch.int64)
        losses = loss_of(trials)
        best = int(losses.argmin())
        if float(losses[best]) >= current_loss:
            break
        current, current_loss = trials[best], float(losses[best])
        candidates.pop(best)
    return current, current_loss
