"""Small drawing helpers for layouts and image grids (pictures in the README)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                     (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)])


def draw_layout(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, class_names: Sequence[str],
                scale: int = 3) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 RGB image, enlarged ``scale`` times, with XYXY pixel boxes drawn and
    labelled (colour per class)."""
    canvas = cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    for box, cls in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(classes).reshape(-1), strict=True):
        color = tuple(int(c) for c in _PALETTE[int(cls) % len(_PALETTE)])
        x0, y0, x1, y1 = (np.asarray(box) * scale).round().astype(int)
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), color, 1)
        cv2.putText(canvas, str(class_names[int(cls)])[:8], (x0 + 1, max(y0 - 2, 8)), cv2.FONT_HERSHEY_PLAIN,
                    0.7, color, 1, cv2.LINE_AA)
    return canvas


def image_grid(rows: Sequence[Sequence[np.ndarray]], scale: int = 1, pad: int = 2) -> np.ndarray:
    """Tile equally sized (H, W, 3) uint8 images, row by row, with ``pad`` grey pixels between them;
    ``scale`` > 1 enlarges tiles that are not enlarged yet (nearest neighbour)."""
    tiles = [[cv2.resize(t, (t.shape[1] * scale, t.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
              if scale > 1 and t.shape[0] < 100 else t for t in row] for row in rows]
    height = max(t.shape[0] for row in tiles for t in row)
    width = max(t.shape[1] for row in tiles for t in row)
    columns = max(len(row) for row in tiles)
    grid = np.full(((height + pad) * len(tiles) + pad, (width + pad) * columns + pad, 3), 128, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            y, x = pad + r * (height + pad), pad + c * (width + pad)
            grid[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return grid
