"""Hard negatives for p(x|y): wrong layouts that the inversion found for training images.

The ranking term of p(x|y) training (``MODEL.DIVE.RANKING``) asks each image's true layout to have a lower
denoising error than a wrong one. Random single-object moves (dive_d2/layout/moves.py) are mostly wrong
layouts the model already ranks; the layouts the inversion itself returns while holding fewer true objects
are the ones the loss actually prefers (docs/detection.md, "Starts from the empty layout's error map").
``tools/mine_negatives.py`` writes them to a JSON file; training reads it with ``load_hard_negatives``.

File format (``FORMAT``), boxes XYXY in pixels of the image's (height, width)::

    {"format": "dive_d2.hard_negatives/1", "source": {...},
     "images": [{"file_name": str, "height": int, "width": int,
                 "boxes": [[x0, y0, x1, y1], ...], "classes": [int, ...],
                 "negatives": [{"boxes": [...], "classes": [...]}, ...]}, ...]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from detectron2.data import detection_utils as utils

FORMAT = "dive_d2.hard_negatives/1"


@dataclass
class HardNegativeImage:
    """One training image with its true layout and the wrong layouts mined for it.

    ``image`` is (C, H, W) uint8 in the reader's channel order; boxes are (K, 4) float32 XYXY in pixels of
    the image; classes (K,) int64.
    """

    file_name: str
    image: torch.Tensor
    boxes: torch.Tensor
    classes: torch.Tensor
    negatives: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def height(self) -> int:
        return self.image.shape[-2]

    @property
    def width(self) -> int:
        return self.image.shape[-1]


def _layout_to_json(boxes: torch.Tensor, classes: torch.Tensor) -> dict[str, list]:
    return {"boxes": [[round(float(v), 3) for v in box] for box in boxes.reshape(-1, 4)],
            "classes": [int(c) for c in classes.reshape(-1)]}


def write_hard_negatives(path: str, images: list[dict[str, Any]], source: dict[str, Any]) -> None:
    """Write mined negatives. ``images``: dicts with file_name, height, width, boxes (K, 4) pixels XYXY,
    classes (K,), negatives [(boxes, classes), ...]; ``source`` records how they were mined."""
    entries = [{"file_name": item["file_name"], "height": int(item["height"]), "width": int(item["width"]),
                **_layout_to_json(item["boxes"], item["classes"]),
                "negatives": [_layout_to_json(boxes, classes) for boxes, classes in item["negatives"]]}
               for item in images]
    with open(path, "w") as handle:
        json.dump({"format": FORMAT, "source": source, "images": entries}, handle, indent=1)


def _layout_from_json(entry: Any, where: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(entry, dict) or "boxes" not in entry or "classes" not in entry:
        raise ValueError(f"{where}: needs keys 'boxes' and 'classes'")
    try:
        boxes = torch.tensor(entry["boxes"], dtype=torch.float32).reshape(-1, 4)
    except (TypeError, ValueError, RuntimeError):
        boxes = None
    if boxes is None or len(boxes) != len(entry["boxes"]):
        raise ValueError(f"{where}: 'boxes' must be a list of [x0, y0, x1, y1]")
    classes = torch.tensor(entry["classes"], dtype=torch.int64).reshape(-1)
    if len(classes) != len(boxes):
        raise ValueError(f"{where}: {len(boxes)} boxes but {len(classes)} classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"{where}: class index out of [0, {num_classes}): {classes.tolist()}")
    return boxes, classes


def load_hard_negatives(path: str, num_classes: int, image_format: str = "BGR") -> list[HardNegativeImage]:
    """Read a file of ``write_hard_negatives`` and the images it names (``detection_utils.read_image`` in
    ``image_format``). Images without negatives are dropped; an empty result is an error."""
    with open(path) as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: not a hard-negatives file (expected 'format': {FORMAT!r} and an 'images' list)")
    images = []
    for index, entry in enumerate(data["images"]):
        where = f"{path}: images[{index}]"
        missing = [key for key in ("file_name", "height", "width", "negatives") if key not in entry]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        boxes, classes = _layout_from_json(entry, where, num_classes)
        negatives = [_layout_from_json(negative, f"{where}.negatives[{n}]", num_classes)
                     for n, negative in enumerate(entry["negatives"])]
        if not negatives:
            continue
        pixels = utils.read_image(entry["file_name"], format=image_format)
        if pixels.shape[:2] != (entry["height"], entry["width"]):
            raise ValueError(f"{where}: {entry['file_name']} is {pixels.shape[1]}x{pixels.shape[0]} pixels, the "
                             f"file says {entry['width']}x{entry['height']}")
        image = torch.as_tensor(pixels.copy()).permute(2, 0, 1).contiguous()
        images.append(HardNegativeImage(entry["file_name"], image, boxes, classes, negatives))
    if not images:
        raise ValueError(f"{path}: no image has a negative layout")
    return images
