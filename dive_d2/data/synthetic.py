"""The two synthetic detection benchmarks, generated deterministically from a seed.

Both generators return images as HxWx3 uint8 RGB arrays and boxes in absolute pixels, XYXY, where a box
(x0, y0, x1, y1) covers the pixel columns x0 .. x1-1 and rows y0 .. y1-1 (Detectron2's convention for
continuous box coordinates). Image ``i`` of a split is drawn from its own generator seeded with
``(seed, i)``, so any prefix of a split can be regenerated on its own and equals the full split's prefix.

shapes: 64x64 images, 1-4 objects of classes circle, square, triangle (see ``ShapesSpec``).
digits: 64x64 images, 1-3 handwritten digits from scikit-learn's ``load_digits`` (see ``DigitsSpec``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class SyntheticImage:
    """One generated image with its objects.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        boxes: (K, 4) float64, absolute pixels, XYXY, tight around each object's painted pixels.
        classes: (K,) int64, contiguous class indices into the benchmark's class tuple.
        digit_indices: (K,) int64, the load_digits() index each digit was drawn from (empty for shapes).
    """

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    digit_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def tight_box(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box (absolute pixels, exclusive right/bottom edge) of the True pixels of an (H, W) mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("tight_box: the mask has no pixel set")
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapesSpec:
    """Parameters of the shapes benchmark (the values of the foundation issue)."""

    image_size: int = 64
    background_max: int = 90  # each background channel is uniform in [0, background_max]
    noise_sigma: float = 6.0  # per-pixel, per-channel Gaussian noise on the background
    min_objects: int = 1
    max_objects: int = 4
    min_size: int = 10  # side s of the s x s box a shape fills, pixels
    max_size: int = 28
    color_min: int = 120  # object channels are uniform in [color_min, 255] ...
    color_bright: int = 200  # ... with at least one channel >= color_bright
    max_pair_iou: float = 0.3


def shape_mask(class_name: str, x0: int, y0: int, size: int, image_size: int) -> np.ndarray:
    """(image_size, image_size) bool mask of a shape filling the box [x0, x0+size) x [y0, y0+size).

    A pixel belongs to the shape when its centre (column + 0.5, row + 0.5) lies inside the continuous
    shape: a disc inscribed in the box, the box itself, or an upright triangle with its apex at the top
    centre of the box and its base on the box's bottom edge.
    """
    cols = np.arange(image_size)[None, :] + 0.5 - x0
    rows = np.arange(image_size)[:, None] + 0.5 - y0
    inside_box = (cols >= 0) & (cols <= size) & (rows >= 0) & (rows <= size)
    if class_name == "square":
        return np.broadcast_to(inside_box, (image_size, image_size)).copy()
    if class_name == "circle":
        radius = size / 2.0
        return (cols - radius) ** 2 + (rows - radius) ** 2 <= radius**2
    if class_name == "triangle":
        # Half-width grows linearly from 0 at the apex (row 0) to size/2 at the base (row = size).
        half_width = rows * 0.5
        return inside_box & (np.abs(cols - size / 2.0) <= half_width)
    raise ValueError(f"unknown shape class {class_name!r}; expected one of {SHAPES_CLASSES}")


def _object_color(rng: np.random.Generator, spec: ShapesSpec) -> np.ndarray:
    while True:
        color = rng.integers(spec.color_min, 256, size=3)
        if color.max() >= spec.color_bright:
            return color.astype(np.uint8)


def generate_shapes_image(seed: int, index: int, spec: ShapesSpec = ShapesSpec()) -> SyntheticImage:
    """Image ``index`` of the shapes split drawn with ``seed``; deterministic in (seed, index, spec)."""
    rng = np.random.default_rng([seed, index])
    n = spec.image_size
    background = rng.integers(0, spec.background_max + 1, size=3).astype(np.float64)
    noisy = background[None, None, :] + rng.normal(0.0, spec.noise_sigma, size=(n, n, 3))
    image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    num_objects = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    placed: list[np.ndarray] = []  # the s x s boxes, for the overlap rule
    boxes, classes = [], []
    for _ in range(num_objects):
        class_index = int(rng.integers(len(SHAPES_CLASSES)))
        while True:
            size = int(rng.integers(spec.min_size, spec.max_size + 1))
            x0 = int(rng.integers(0, n - size + 1))
            y0 = int(rng.integers(0, n - size + 1))
            candidate = np.array([x0, y0, x0 + size, y0 + size], dtype=np.float64)
            if all(_box_iou(candidate, other) <= spec.max_pair_iou for other in placed):
                break
        placed.append(candidate)
        mask = shape_mask(SHAPES_CLASSES[class_index], x0, y0, size, n)
        image[mask] = _object_color(rng, spec)
        boxes.append(tight_box(mask))
        classes.append(class_index)
    return SyntheticImage(image, np.array(boxes).reshape(-1, 4), np.array(classes, dtype=np.int64))


# ----------------------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitsSpec:
    """Parameters of the digits benchmark (the values of the foundation issue)."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 3
    digit_size: int = 16  # each 8x8 digit is upscaled (nearest neighbour) to digit_size x digit_size
    train_indices: tuple[int, int] = (0, 1300)  # half-open ranges of load_digits() indices per split
    val_indices: tuple[int, int] = (1300, 1797)


_DIGITS_CACHE: dict[str, np.ndarray] = {}


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits: (1797, 8, 8) uint8 grey levels in [0, 255] and (1797,) labels.

    The original 17 grey levels (0..16) are mapped linearly to 0..255 and rounded.
    """
    if not _DIGITS_CACHE:
        from sklearn.datasets import load_digits

        digits = load_digits()
        _DIGITS_CACHE["images"] = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
        _DIGITS_CACHE["labels"] = digits.target.astype(np.int64)
    return _DIGITS_CACHE["images"], _DIGITS_CACHE["labels"]


def generate_digits_image(
    seed: int, index: int, split: str, spec: DigitsSpec = DigitsSpec()
) -> SyntheticImage:
    """Image ``index`` of the digits split ``split`` ("train" or "val") drawn with ``seed``.

    Train images only use digits with load_digits() index in ``spec.train_indices``, val images only
    those in ``spec.val_indices``, so no val handwriting is ever seen in training.
    """
    if split not in ("train", "val"):
        raise ValueError(f"digits split must be 'train' or 'val', got {split!r}")
    digit_images, digit_labels = load_sklearn_digits()
    low, high = spec.train_indices if split == "train" else spec.val_indices
    rng = np.random.default_rng([seed, index])
    n, d = spec.image_size, spec.digit_size
    scale = d // digit_images.shape[1]
    image = np.zeros((n, n, 3), dtype=np.uint8)

    num_objects = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    placed: list[np.ndarray] = []
    boxes, classes, sources = [], [], []
    for _ in range(num_objects):
        digit_index = int(rng.integers(low, high))
        while True:
            x0 = int(rng.integers(0, n - d + 1))
            y0 = int(rng.integers(0, n - d + 1))
            candidate = np.array([x0, y0, x0 + d, y0 + d], dtype=np.float64)
            if all(_box_iou(candidate, other) == 0.0 for other in placed):
                break
        placed.append(candidate)
        glyph = np.kron(digit_images[digit_index], np.ones((scale, scale), dtype=np.uint8))
        image[y0 : y0 + d, x0 : x0 + d, :] = glyph[:, :, None]
        mask = np.zeros((n, n), dtype=bool)
        mask[y0 : y0 + d, x0 : x0 + d] = glyph > 0
        boxes.append(tight_box(mask))
        classes.append(int(digit_labels[digit_index]))
        sources.append(digit_index)
    return SyntheticImage(image, np.array(boxes).reshape(-1, 4), np.array(classes, dtype=np.int64),
                          np.array(sources, dtype=np.int64))
