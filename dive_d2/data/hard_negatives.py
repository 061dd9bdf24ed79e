"""Hard negatives for p(x|y): wrong layouts that the inversion found for training images.

The ranking term of p(x|y) training (``MODEL.DIVE.RANKING``) asks each image's true layout to have a lower
denoising error than a wrong one. Random single-object moves (dive_d2/layout/moves.py) are mostly wrong
layouts the model already ranks; the layouts the inversion itself returns while holding fewer true objects
are the ones the loss actually prefers (docs/detection.md, "Starts from the empty layout's error map").
``tools/mine_negatives.py`` writes them to a JSON file; training reads it with ``load_hard_negatives``. A
later mining round (the model trained on these negatives, inverted again) adds its own wrong layouts to the
file's (``merge_hard_negatives``).

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


def read_hard_negative_entries(path: str, num_classes: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The checked entries of a file of ``write_hard_negatives``, without reading the images.

    Returns:
        the images as dicts (file_name, height, width, boxes (K, 4) float32 XYXY pixels, classes (K,) int64,
        negatives [(boxes, classes), ...]: the form ``write_hard_negatives`` takes) and the file's "source".
    """
    with open(path) as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: not a hard-negatives file (expected 'format': {FORMAT!r} and an 'images' list)")
    entries = []
    for index, entry in enumerate(data["images"]):
        where = f"{path}: images[{index}]"
        missing = [key for key in ("file_name", "height", "width", "negatives") if key not in entry]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        boxes, classes = _layout_from_json(entry, where, num_classes)
        negatives = [_layout_from_json(negative, f"{where}.negatives[{n}]", num_classes)
                     for n, negative in enumerate(entry["negatives"])]
        entries.append({"file_name": entry["file_name"], "height": entry["height"], "width": entry["width"],
                        "boxes": boxes, "classes": classes, "negatives": negatives})
    return entries, data.get("source", {})


def load_hard_negatives(path: str, num_classes: int, image_format: str = "BGR") -> list[HardNegativeImage]:
    """Read a file of ``write_hard_negatives`` and the images it names (``detection_utils.read_image`` in
    ``image_format``). Images without negatives are dropped; an empty result is an error."""
    images = []
    for index, entry in enumerate(read_hard_negative_entries(path, num_classes)[0]):
        if not entry["negatives"]:
            continue
        pixels = utils.read_image(entry["file_name"], format=image_format)
        if pixels.shape[:2] != (entry["height"], entry["width"]):
            raise ValueError(f"{path}: images[{index}]: {entry['file_name']} is {pixels.shape[1]}x{pixels.shape[0]} "
                             f"pixels, the file says {entry['width']}x{entry['height']}")
        image = torch.as_tensor(pixels.copy()).permute(2, 0, 1).contiguous()
        images.append(HardNegativeImage(entry["file_name"], image, entry["boxes"], entry["classes"],
                                        entry["negatives"]))
    if not images:
        raise ValueError(f"{path}: no image has a negative layout")
    return images


def _layout_key(boxes: torch.Tensor, classes: torch.Tensor) -> tuple:
    # At the file's precision (3 decimals), so that a layout read back equals the one written.
    return (tuple(round(float(v), 3) for v in boxes.reshape(-1)), tuple(int(c) for c in classes.reshape(-1)))


def merge_hard_negatives(earlier: list[dict[str, Any]], later: list[dict[str, Any]], where: str = "earlier file"
                         ) -> list[dict[str, Any]]:
    """The negatives of two mining rounds together, e.g. the wrong layouts of a model trained on the first
    round's negatives added to that round's (the entries of ``read_hard_negative_entries``).

    Images are matched by file_name; an image in only one round keeps its own negatives; a layout both
    rounds found is kept once. Earlier entries (and their negatives) come first. Raises ValueError when an
    image's true layout differs between the rounds (``where`` names the earlier source in the message).
    """
    merged = {entry["file_name"]: {**entry, "negatives": list(entry["negatives"])} for entry in earlier}
    for entry in later:
        name = entry["file_name"]
        if name not in merged:
            merged[name] = {**entry, "negatives": list(entry["negatives"])}
            continue
        known = merged[name]
        if _layout_key(known["boxes"], known["classes"]) != _layout_key(entry["boxes"], entry["classes"]):
            raise ValueError(f"{where}: the true layout of {name} differs from this round's: mined from "
                             "another annotation?")
        seen = {_layout_key(*negative) for negative in known["negatives"]}
        for negative in entry["negatives"]:
            key = _layout_key(*negative)
            if key not in seen:
                seen.add(key)
                known["negatives"].append(negative)
    return list(merged.values())
