"""Dataset dict of a classification split -> model input: the image as read, its label, its id."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from detectron2.data import detection_utils as utils


class ClassificationMapper:
    """{"file_name", "label", ...} -> {"image": (C, H, W) uint8 tensor, "label", "image_id", "file_name",
    "height", "width"}.

    The image is read in Detectron2's INPUT.FORMAT ("L": 1 channel, "RGB": 3) and never resized: the model
    rejects a wrong size with the file's name.
    """

    def __init__(self, image_format: str):
        self.image_format = image_format

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        image = utils.read_image(record["file_name"], format=self.image_format)
        utils.check_image_size(record, image)
        return {"image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "label": int(record.get("label", -1)), "image_id": record["image_id"],
                "file_name": record["file_name"], "height": image.shape[0], "width": image.shape[1]}
