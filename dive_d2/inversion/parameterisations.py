"""What the inversion's gradient descent moves, and how that becomes a layout of real tokens.

Two parameterisations, chosen by MODEL.DIVE.INVERSION.PARAMETERISATION:

- ``EmbeddingSequence`` ("embedding", the paper's mode): a free continuous sequence v (L x width) per image.
  Straight-through snapping sends every position to its nearest allowed vocabulary row.
- ``BoxSlots`` ("box"): per slot, logits over the classes and ``none``, and a box held as sigmoid centre
  and size (so it is always legal before rounding). The class position's embedding is the softmax mixture
  of the class rows (straight-through: the argmax row); each corner's embedding is the layout encoder's
  smooth corner function at the continuous corner (straight-through: the row of the grid point it rounds
  to), mixed with the ``none`` row by the slot's probability of being empty. The models see exactly the
  same tokens as in the embedding mode; only the path of the gradient differs.

Both expose the same interface to the engine: ``parameters`` (each of shape (B, ...), one row per image),
``embeddings(vocabulary, index, snap)`` (the differentiable (b, L, width) sequence of the images in
``index``), ``tokens(vocabulary)`` ((B, L) snapped layout) and ``continuous(vocabulary)`` ((B, L, width)
before snapping, detached).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..layout import nearest_allowed_tokens

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE

PARAMETERISATIONS = ("embedding", "box")


class EmbeddingSequence:
    """A free (B, L, width) embedding sequence per image, snapped to the nearest allowed token."""

    def __init__(self, initial: torch.Tensor, allowed: torch.Tensor, metric: str = "l2"):
        """
        Args:
            initial: (B, L, width) starting embeddings.
            allowed: (L, V) bool, the vocabulary rows each position may snap to.
            metric: "l2" or "cosine" snapping.
        """
        self.allowed = allowed
        self.metric = metric
        self.values = initial.detach().clone().requires_grad_(True)

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.values]

    def _snap(self, values: torch.Tensor, vocabulary: torch.Tensor) -> torch.Tensor:
        return nearest_allowed_tokens(values, vocabulary, self.allowed, self.metric)

    def embeddings(self, vocabulary: torch.Tensor, index: torch.Tensor, snap: bool) -> torch.Tensor:
        current = self.values[index]
        if not snap:
            return current
        snapped = vocabulary[self._snap(current.detach(), vocabulary)]
        return current + (snapped - current).detach()

    def tokens(self, vocabulary: torch.Tensor) -> torch.Tensor:
        return self._snap(self.values.detach(), vocabulary)

    def continuous(self, vocabulary: torch.Tensor) -> torch.Tensor:
        return self.values.detach().clone()


def annealed_smoothing(step: int, start: float, end: float, anneal_steps: int) -> float:
    """The corner smoothing (normalised units) of optimisation step ``step`` (0-based) of a coarse-to-fine
    search: ``start`` at step 0, decaying geometrically to ``end`` at step ``anneal_steps``, ``end`` after.

    Geometric, because the Fourier terms of the corner function are octaves: each halving of the smoothing
    releases the next finer octave, so the octaves are released at an even pace.
    """
    if start <= 0 or end <= 0 or anneal_steps < 1:
        raise ValueError(f"an annealed smoothing needs start > 0, end > 0 and anneal_steps >= 1, got start={start}, "
                         f"end={end}, anneal_steps={anneal_steps}")
    progress = min(step / anneal_steps, 1.0)
    return start * (end / start) ** progress


def _logit(probability: torch.Tensor) -> torch.Tensor:
    probability = probability.clamp(0.01, 0.99)
    return torch.log(probability) - torch.log1p(-probability)


class BoxSlots:
    """Per slot: class logits over (classes, none) and a box as sigmoid centre and size."""

    def __init__(self, model: DIVE, classes: torch.Tensor, boxes: torch.Tensor, class_confidence: float = 1.0,
                 smoothing: float = 0.0):
        """
        Args:
            classes: (B, N) int64 starting class of each slot; ``num_classes`` means empty (``none``).
            boxes: (B, N, 4) starting boxes, XYXY normalised to [0, 1] (also for empty slots: where the
                slot's box starts if it becomes an object).
            class_confidence: the starting class's logit (the others start at 0).
            smoothing: std (normalised units) of the Gaussian the corner function is smoothed with on the
                continuous path (``LayoutEncoderModel.corner_embeddings``). With snapping the forward value
                stays the exact token row; only the gradient sees the smoothed function.
        """
        self.model = model
        self.smoothing = smoothing
        self.class_confidence = class_confidence
        self.class_logits = self._class_logits(classes).requires_grad_(True)
        self.box_logits = self._box_logits(boxes).detach().requires_grad_(True)

    def _class_logits(self, classes: torch.Tensor) -> torch.Tensor:
        one_hot = torch.nn.functional.one_hot(classes, self.model.tokenizer.num_classes + 1).float()
        return one_hot * self.class_confidence

    @staticmethod
    def _box_logits(boxes: torch.Tensor) -> torch.Tensor:
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        size = boxes[..., 2:] - boxes[..., :2]
        return torch.cat([_logit(centre), _logit(size)], dim=-1)

    @torch.no_grad()
    def reset_slots(self, rows: torch.Tensor, slots: torch.Tensor, classes: torch.Tensor, boxes: torch.Tensor) -> None:
        """Start slot ``slots[k]`` of image ``rows[k]`` afresh, as an object of class ``classes[k]`` with box
        ``boxes[k]`` (XYXY normalised), exactly as the constructor starts a slot.

        Args:
            rows, slots, classes: (K,) int64; boxes: (K, 4).
        """
        self.class_logits[rows, slots] = self._class_logits(classes).to(self.class_logits.device)
        self.box_logits[rows, slots] = self._box_logits(boxes).to(self.box_logits.device)

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.class_logits, self.box_logits]

    def _class_table(self, vocabulary: torch.Tensor) -> torch.Tensor:
        """(C + 1, width): the class rows, then ``none``."""
        tokenizer = self.model.tokenizer
        return torch.cat([vocabulary[: tokenizer.num_classes], vocabulary[tokenizer.none_token :]], dim=0)

    def corners(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """(b, N, 2, 2) continuous corners [[x0, y0], [x1, y1]], normalised to [0, 1]."""
        logits = self.box_logits if index is None else self.box_logits[index]
        centre, size = logits[..., :2].sigmoid(), logits[..., 2:].sigmoid()
        return torch.stack([centre - size / 2, centre + size / 2], dim=-2).clamp(0.0, 1.0)

    def _corner_tokens(self, corners: torch.Tensor) -> torch.Tensor:
        tokenizer = self.model.tokenizer
        cells = torch.round(corners.detach() * (tokenizer.grid_size - 1)).long()
        return tokenizer.num_classes + cells[..., 1] * tokenizer.grid_size + cells[..., 0]

    def embeddings(self, vocabulary: torch.Tensor, index: torch.Tensor, snap: bool) -> torch.Tensor:
        tokenizer = self.model.tokenizer
        class_table = self._class_table(vocabulary)
        probabilities = self.class_logits[index].softmax(dim=-1)  # (b, N, C + 1)
        empty = probabilities[..., -1:, None]  # (b, N, 1, 1)
        none_row = vocabulary[tokenizer.none_token]
        corners = self.corners(index)
        soft_class = probabilities @ class_table  # (b, N, width)
        soft_corners = ((1 - empty) * self.model.layout_encoder.corner_embeddings(corners, self.smoothing)
                        + empty * none_row)
        soft = torch.cat([soft_class[..., None, :], soft_corners], dim=-2).flatten(1, 2)  # (b, L, width)
        if not snap:
            return soft
        hard = vocabulary[self._tokens(probabilities, corners)]
        return soft + (hard - soft).detach()

    def _tokens(self, probabilities: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        tokenizer = self.model.tokenizer
        classes = probabilities.argmax(dim=-1)  # (b, N); num_classes = none
        is_empty = classes == tokenizer.num_classes
        classes = classes.masked_fill(is_empty, tokenizer.none_token)
        corner_tokens = self._corner_tokens(corners).masked_fill(is_empty[..., None], tokenizer.none_token)
        return torch.cat([classes[..., None], corner_tokens], dim=-1).flatten(1)

    def tokens(self, vocabulary: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._tokens(self.class_logits.softmax(dim=-1), self.corners())

    def continuous(self, vocabulary: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.embeddings(vocabulary, torch.arange(len(self.class_logits)), snap=False)


class TokenLogits:
    """Per position, logits over the rows it may take; its embedding is the softmax mixture of those rows
    (straight-through: the argmax row). Starting from equal logits puts every position at the mean of its
    allowed rows, and the gradient of a logit is the alignment of its row with the descent direction, so
    every candidate row is weighed at each step. Used by classification (``ClassInversion``'s "logits").
    """

    def __init__(self, initial_logits: torch.Tensor, allowed: torch.Tensor):
        """
        Args:
            initial_logits: (B, L, V) starting logits (entries of rows a position may not take are ignored).
            allowed: (L, V) bool, the vocabulary rows each position may take.
        """
        self.allowed = allowed
        self.logits = initial_logits.detach().clone().requires_grad_(True)

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.logits]

    def _probabilities(self, index: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.logits if index is None else self.logits[index]
        return logits.masked_fill(~self.allowed.to(logits.device)[None], float("-inf")).softmax(dim=-1)

    def embeddings(self, vocabulary: torch.Tensor, index: torch.Tensor, snap: bool) -> torch.Tensor:
        probabilities = self._probabilities(index)
        soft = probabilities @ vocabulary  # (b, L, width)
        if not snap:
            return soft
        hard = vocabulary[probabilities.argmax(dim=-1)]
        return soft + (hard - soft).detach()

    def tokens(self, vocabulary: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._probabilities().argmax(dim=-1)

    def continuous(self, vocabulary: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._probabilities() @ vocabulary
