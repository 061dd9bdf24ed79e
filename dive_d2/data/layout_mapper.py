"""Training-data mappers: Detectron2's DatasetMapper, or a layout-only mapper for training the prior.

Training p(y) alone (MODEL.DIVE.TRAIN_IMAGE_MODEL False) needs each image's boxes and size, not its
pixels; skipping image decoding makes a prior step several times cheaper on CPU.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from detectron2.config import CfgNode
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils

if TYPE_CHECKING:
    from .classification_mapper import ClassificationMapper


class LayoutOnlyMapper:
    """Dataset dict -> {"instances", "height", "width", "image_id"}, with no image read.

    ``instances.image_size`` is the record's (height, width) and boxes stay in its pixels, XYXY.
    """

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        record = copy.deepcopy(record)
        size = (record["height"], record["width"])
        annotations = [utils.transform_instance_annotations(a, [], size) for a in record.pop("annotations", [])
                       if a.get("iscrowd", 0) == 0]
        record["instances"] = utils.annotations_to_instances(annotations, size)
        return record


def build_train_mapper(cfg: CfgNode) -> LayoutOnlyMapper | ClassificationMapper | DatasetMapper:
    """LayoutOnlyMapper when a DIVE model trains only its prior, ClassificationMapper for the
    DiffusionClassifier, Detectron2's DatasetMapper otherwise."""
    if cfg.MODEL.META_ARCHITECTURE == "DIVE" and not cfg.MODEL.DIVE.TRAIN_IMAGE_MODEL:
        return LayoutOnlyMapper()
    if cfg.MODEL.META_ARCHITECTURE == "DiffusionClassifier":
        from .classification_mapper import ClassificationMapper

        return ClassificationMapper(cfg.INPUT.FORMAT)
    return DatasetMapper(cfg, is_train=True)
