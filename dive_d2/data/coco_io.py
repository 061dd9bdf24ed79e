"""COCO json + image folder: writing datasets out and reading them back as Detectron2 dataset dicts.

Reading maps every COCO category *by name* to the index of that name in a given class list (the model's
classes), so a json whose category ids or order differ from the model's still evaluates correctly, and a
category the model does not know is an error that names it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from detectron2.structures import BoxMode
from PIL import Image


def write_coco_dataset(
    records: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    image_dir: str,
    json_path: str,
    description: str = "",
) -> int:
    """Write images as PNG files and their boxes as a COCO json.

    Args:
        records: iterable of (image (H, W, 3) uint8 RGB, boxes (K, 4) absolute pixels XYXY,
            classes (K,) contiguous indices into ``class_names``).
        class_names: category names; category ``i`` gets COCO id ``i + 1``.
        image_dir: folder for the PNGs (``{image_id:06d}.png``), created if missing.
        json_path: where the COCO json goes; ``file_name`` entries are relative to ``image_dir``.
        description: free text stored under ``info.description``.

    Returns:
        The number of images written. Image and annotation ids start at 1. Boxes are stored as COCO
        XYWH in absolute pixels; ``area`` is the box area.
    """
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for image_id, (image, boxes, classes) in enumerate(records, start=1):
        file_name = f"{image_id:06d}.png"
        Image.fromarray(image).save(os.path.join(image_dir, file_name), optimize=False, compress_level=6)
        images.append({"id": image_id, "file_name": file_name, "height": int(image.shape[0]),
                       "width": int(image.shape[1])})
        for box, class_index in zip(boxes.tolist(), classes.tolist(), strict=True):
            x0, y0, x1, y1 = box
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(class_index) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            })
    coco = {
        "info": {"description": description},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(class_names)],
    }
    with open(json_path, "w") as f:
        json.dump(coco, f)
    return len(images)


def read_coco_categories(json_path: str) -> list[str]:
    """Category names of a COCO json, ordered by category id."""
    with open(json_path) as f:
        coco = json.load(f)
    return [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]


def load_coco_dataset_dicts(
    json_path: str, image_root: str, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Detectron2 dataset dicts for a COCO json, with categories matched by name to ``class_names``.

    Args:
        json_path: COCO json with ``images``, ``annotations`` (``bbox`` as XYWH absolute pixels) and
            ``categories``.
        image_root: folder that ``images[*].file_name`` is relative to.
        class_names: the model's classes; ``category_id`` in the output is the index into this list.

    Returns:
        One dict per image with ``file_name``, ``image_id``, ``height``, ``width`` and ``annotations``
        (``bbox`` XYWH_ABS, ``bbox_mode``, ``category_id``, ``iscrowd``). Images without annotations are
        kept: a detector must also be evaluated on them.

    Raises:
        ValueError: a category name not in ``class_names``, an annotation whose category id is not
            declared, or a malformed box; the message names the json file.
    """
    with open(json_path) as f:
        coco = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise ValueError(f"{json_path}: missing top-level key {key!r} of a COCO detection json")
    class_index = {name: i for i, name in enumerate(class_names)}
    unknown = [c["name"] for c in coco["categories"] if c["name"] not in class_index]
    if unknown:
        raise ValueError(
            f"{json_path}: categories {unknown} are not classes of the model; "
            f"the model knows {list(class_names)} (categories are matched by name)"
        )
    contiguous_id = {c["id"]: class_index[c["name"]] for c in coco["categories"]}

    annotations_by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        if ann["category_id"] not in contiguous_id:
            raise ValueError(
                f"{json_path}: annotation {ann.get('id')} has category_id {ann['category_id']}, "
                "which is not declared under 'categories'"
            )
        bbox = ann["bbox"]
        if len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0:
            raise ValueError(f"{json_path}: annotation {ann.get('id')} has a malformed XYWH bbox {bbox}")
        annotations_by_image.setdefault(ann["image_id"], []).append({
            "bbox": [float(v) for v in bbox],
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": contiguous_id[ann["category_id"]],
            "iscrowd": int(ann.get("iscrowd", 0)),
        })

    return [
        {
            "file_name": os.path.join(image_root, img["file_name"]),
            "image_id": img["id"],
            "height": int(img["height"]),
            "width": int(img["width"]),
            "annotations": annotations_by_image.get(img["id"], []),
        }
        for img in coco["images"]
    ]


def ground_truth_layout(record: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes and classes of one Detectron2 dataset dict.

    Returns:
        boxes (K, 4) float32 XYXY in pixels of the record's image, and classes (K,) int64.
    """
    annotations = record["annotations"]
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            torch.tensor([a["category_id"] for a in annotations], dtype=torch.int64))
