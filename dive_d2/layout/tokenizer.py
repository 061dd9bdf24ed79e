"""The layout token format: the single source of truth for how a set of boxes becomes a token sequence.

Following the LDM layout-to-image format (dive-method notes), a layout is exactly ``num_slots`` objects of
three tokens each: (class, top-left corner, bottom-right corner). Sequence position ``3k`` holds a class
token, ``3k+1`` and ``3k+2`` corner tokens. Empty slots hold ``none`` three times.

Vocabulary (one table shared by all positions)::

    [0, num_classes)                            class tokens
    [num_classes, num_classes + grid_size**2)   corner tokens: num_classes + row * grid_size + column
    num_classes + grid_size**2                  none

Corners live on ``grid_size`` evenly spaced points per axis spanning the model's input frame, both edges
included: grid index ``k`` is the normalised coordinate ``k / (grid_size - 1)``. Boxes are given in pixels
of an image of any size and normalised by that image's width and height. This matches a model input made by
resizing the image to a square without keeping its aspect ratio. A corner is rounded to the nearest grid
point, so each coordinate is off by at most ``0.5 / (grid_size - 1)`` of the image side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def corner_grid_points(grid_size: int) -> torch.Tensor:
    """(grid_size**2, 2) float32 normalised (x, y) in [0, 1] of every corner token, in token order
    (row-major: x varies fastest)."""
    ticks = torch.linspace(0.0, 1.0, grid_size)
    rows, cols = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1)


@dataclass(frozen=True)
class DecodedLayout:
    """Objects read back from a token sequence.

    Attributes:
        boxes: (K, 4) float32, XYXY in pixels of the requested height and width.
        classes: (K,) int64 class indices.
        slots: (K,) int64, the slot each object came from (its class token is at position 3 * slot).
    """

    boxes: torch.Tensor
    classes: torch.Tensor
    slots: torch.Tensor


class LayoutTokenizer:
    """Encodes boxes to layout tokens and decodes them back (see the module docstring for the format)."""

    def __init__(self, num_classes: int, grid_size: int, num_slots: int):
        if num_classes < 1 or grid_size < 2 or num_slots < 1:
            raise ValueError(f"need num_classes >= 1, grid_size >= 2, num_slots >= 1; got "
                             f"{num_classes}, {grid_size}, {num_slots}")
        self.num_classes = num_classes
        self.grid_size = grid_size
        self.num_slots = num_slots

    # ---- vocabulary ----------------------------------------------------------------------------------------
    @property
    def num_coordinate_tokens(self) -> int:
        return self.grid_size**2

    @property
    def none_token(self) -> int:
        return self.num_classes + self.num_coordinate_tokens

    @property
    def vocab_size(self) -> int:
        return self.none_token + 1

    @property
    def sequence_length(self) -> int:
        return 3 * self.num_slots

    def class_positions(self) -> torch.Tensor:
        """(sequence_length,) bool, True at the class position of every slot."""
        return torch.arange(self.sequence_length) % 3 == 0

    def allowed_tokens(self) -> torch.Tensor:
        """(sequence_length, vocab_size) bool: class positions accept class tokens and ``none``, corner
        positions accept corner tokens and ``none``."""
        is_class_token = torch.zeros(self.vocab_size, dtype=torch.bool)
        is_class_token[: self.num_classes] = True
        is_corner_token = torch.zeros(self.vocab_size, dtype=torch.bool)
        is_corner_token[self.num_classes : self.none_token] = True
        allowed = torch.where(self.class_positions()[:, None], is_class_token[None], is_corner_token[None])
        allowed[:, self.none_token] = True
        return allowed

    def corner_grid_points(self) -> torch.Tensor:
        """(grid_size**2, 2) normalised (x, y) of every corner token, in token order."""
        return corner_grid_points(self.grid_size)

    def max_quantisation_error_px(self, height: float, width: float) -> tuple[float, float]:
        """Largest error, in pixels of an image of that size, the grid causes on an x and a y coordinate."""
        half_step = 0.5 / (self.grid_size - 1)
        return half_step * width, half_step * height

    # ---- encoding ------------------------------------------------------------------------------------------
    def encode(
        self,
        boxes: torch.Tensor,
        classes: torch.Tensor,
        height: float,
        width: float,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Token sequence of one image's objects.

        Args:
            boxes: (K, 4) XYXY in pixels of an image of ``height`` x ``width``; any K >= 0.
            classes: (K,) class indices in [0, num_classes).
            height, width: the image size in pixels the boxes refer to.
            generator: if given, the objects are put in a random slot order drawn from it (training treats
                a layout as a set); otherwise they keep their order.

        Returns:
            (sequence_length,) int64 tokens. With more than ``num_slots`` objects, the ``num_slots`` largest
            by box area are kept (ties: the earlier object). Objects fill the first slots, ``none`` fills the
            rest. Corners are clamped to the image before quantisation.
        """
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        classes = torch.as_tensor(classes, dtype=torch.int64).reshape(-1)
        if len(boxes) != len(classes):
            raise ValueError(f"encode: {len(boxes)} boxes but {len(classes)} classes")
        if len(classes) and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise ValueError(f"encode: class index out of [0, {self.num_classes}): {classes.tolist()}")
        if len(boxes) > self.num_slots:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            keep = torch.sort(torch.argsort(-areas, stable=True)[: self.num_slots]).values
            boxes, classes = boxes[keep], classes[keep]
        if generator is not None and len(boxes) > 1:
            order = torch.randperm(len(boxes), generator=generator)
            boxes, classes = boxes[order], classes[order]

        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        normalised = (boxes / scale).clamp(0.0, 1.0)
        grid = torch.round(normalised * (self.grid_size - 1)).long()
        top_left = self.num_classes + grid[:, 1] * self.grid_size + grid[:, 0]
        bottom_right = self.num_classes + grid[:, 3] * self.grid_size + grid[:, 2]

        tokens = torch.full((self.num_slots, 3), self.none_token, dtype=torch.int64)
        tokens[: len(classes)] = torch.stack([classes, top_left, bottom_right], dim=1)
        return tokens.reshape(-1)

    # ---- decoding ------------------------------------------------------------------------------------------
    def decode(self, tokens: torch.Tensor, height: float, width: float) -> DecodedLayout:
        """Objects of one token sequence, in pixels of an image of ``height`` x ``width``.

        Args:
            tokens: (sequence_length,) int64.

        Returns:
            A DecodedLayout. An object is dropped when its triple holds ``none``, when a token is of the
            wrong type for its position, or when its box is illegal (x1 <= x0 or y1 <= y0).
        """
        if tokens.shape != (self.sequence_length,):
            raise ValueError(f"decode: expected tokens of shape ({self.sequence_length},), got {tuple(tokens.shape)}")
        triples = tokens.reshape(self.num_slots, 3).cpu()
        classes, top_left, bottom_right = triples[:, 0], triples[:, 1], triples[:, 2]
        is_corner = lambda t: (t >= self.num_classes) & (t < self.none_token)  # noqa: E731
        valid = (classes < self.num_classes) & (classes >= 0) & is_corner(top_left) & is_corner(bottom_right)

        def corner_xy(token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            cell = (token - self.num_classes).clamp(min=0)
            return cell % self.grid_size, cell // self.grid_size

        x0, y0 = corner_xy(top_left)
        x1, y1 = corner_xy(bottom_right)
        valid &= (x1 > x0) & (y1 > y0)
        step = torch.tensor([width, height, width, height], dtype=torch.float32) / (self.grid_size - 1)
        boxes = torch.stack([x0, y0, x1, y1], dim=1).float() * step
        slots = torch.nonzero(valid).reshape(-1)
        return DecodedLayout(boxes[slots], classes[slots].long(), slots)
