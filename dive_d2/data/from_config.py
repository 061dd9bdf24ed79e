"""Datasets chosen by config keys alone: a user's COCO json + image folder, and test subsets.

Keys (added by ``add_dive_config``):
    DATASETS.COCO_TRAIN.JSON / .IMAGES   a COCO json and its image folder to train on
    DATASETS.COCO_TEST.JSON  / .IMAGES   a COCO json and its image folder to evaluate on
    DATASETS.CLASS_NAMES                 the model's classes, in order (default: see below)
    DATASETS.TEST_LIMIT                  evaluate on the first N images of each test dataset
    DATASETS.TEST_START                  ... on N images from record S on instead (needs TEST_LIMIT)

``prepare_datasets_from_config(cfg)`` applies all of them.

``register_user_coco_datasets(cfg)`` registers the files it finds and points DATASETS.TRAIN / DATASETS.TEST
at them. The model's classes are DATASETS.CLASS_NAMES if given, else the categories of the training json
(by id) if one is given, else the ``thing_classes`` of DATASETS.TRAIN[0] (a shapes model evaluated on a
user's json knows circle, square, triangle). Test categories are matched by name to those classes.
"""

from __future__ import annotations

import hashlib
import os
from functools import partial
from operator import attrgetter

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco_io import load_coco_dataset_dicts, read_coco_categories


def _dataset_name(kind: str, json_path: str) -> str:
    # COCOEvaluator caches its ground truth under the dataset name: a name that changes with the file's
    # path, size and mtime never evaluates against a stale copy.
    stat = os.stat(json_path)
    key = f"{os.path.abspath(json_path)}:{stat.st_size}:{stat.st_mtime_ns}"
    stem = os.path.splitext(os.path.basename(json_path))[0]
    return f"coco_{kind}_{stem}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def register_coco_json(name: str, json_path: str, image_root: str, class_names: list[str]) -> str:
    """Register a COCO json under ``name`` with categories matched by name to ``class_names``.

    Returns ``name``. The json is read once here so that unknown categories fail at start-up, not
    after training.
    """
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"COCO json not found: {json_path}")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"image folder of {json_path} not found: {image_root}")
    load_coco_dataset_dicts(json_path, image_root, class_names)  # validates categories and boxes
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, partial(load_coco_dataset_dicts, json_path, image_root, class_names))
        MetadataCatalog.get(name).set(thing_classes=list(class_names), evaluator_type="coco",
                                      image_root=image_root, source_json=json_path)
    return name


def model_class_names(cfg: CfgNode) -> list[str]:
    """The model's classes, in order, as the module docstring describes."""
    if cfg.DATASETS.CLASS_NAMES:
        return list(cfg.DATASETS.CLASS_NAMES)
    if cfg.DATASETS.COCO_TRAIN.JSON:
        return read_coco_categories(cfg.DATASETS.COCO_TRAIN.JSON)
    if not cfg.DATASETS.TRAIN:
        raise ValueError("cannot tell the model's classes: set DATASETS.CLASS_NAMES or DATASETS.TRAIN")
    return list(MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).thing_classes)


# The key that fixes how many classes each detector of this project predicts; checked against the data.
CLASS_COUNT_KEYS = {"GeneralizedRCNN": "MODEL.ROI_HEADS.NUM_CLASSES", "DIVE": "MODEL.DIVE.NUM_CLASSES"}


def register_user_coco_datasets(cfg: CfgNode) -> CfgNode:
    """Register DATASETS.COCO_TRAIN / COCO_TEST (if set) and point DATASETS.TRAIN / TEST at them.

    ``cfg`` must not be frozen. Also checks that the number of classes matches the detector's head.
    Returns ``cfg``.
    """
    for kind in ("COCO_TRAIN", "COCO_TEST"):
        node = cfg.DATASETS[kind]
        if bool(node.JSON) != bool(node.IMAGES):
            raise ValueError(f"DATASETS.{kind}.JSON and DATASETS.{kind}.IMAGES must be given together")
    if not (cfg.DATASETS.COCO_TRAIN.JSON or cfg.DATASETS.COCO_TEST.JSON):
        return cfg
    class_names = model_class_names(cfg)
    if cfg.DATASETS.COCO_TRAIN.JSON:
        json_path = cfg.DATASETS.COCO_TRAIN.JSON
        name = register_coco_json(_dataset_name("train", json_path), json_path,
                                  cfg.DATASETS.COCO_TRAIN.IMAGES, class_names)
        cfg.DATASETS.TRAIN = (name,)
    if cfg.DATASETS.COCO_TEST.JSON:
        json_path = cfg.DATASETS.COCO_TEST.JSON
        name = register_coco_json(_dataset_name("test", json_path), json_path,
                                  cfg.DATASETS.COCO_TEST.IMAGES, class_names)
        cfg.DATASETS.TEST = (name,)
    key = CLASS_COUNT_KEYS.get(cfg.MODEL.META_ARCHITECTURE)
    if key is not None:
        num_classes = attrgetter(key)(cfg)
        if num_classes != len(class_names):
            raise ValueError(f"the model has {key}={num_classes} but its classes are {class_names} "
                             f"({len(class_names)}); set {key} {len(class_names)}")
    return cfg


def register_first_images(name: str, num_images: int, start: int = 0) -> str:
    """Register ``num_images`` records of dataset ``name``, from record ``start`` on, as a dataset of their own.

    Evaluating on a subset needs its own name: COCOEvaluator builds its ground truth from the whole
    registered dataset, so slicing only the data loader would count the rest as missed objects.
    Returns the new name, ``{name}_first{num_images}`` (or ``{name}_{start}to{start + num_images}``).
    """
    if start < 0 or num_images < 1:
        raise ValueError(f"register_first_images: need start >= 0 and num_images >= 1, got {start}, {num_images}")
    subset = f"{name}_first{num_images}" if start == 0 else f"{name}_{start}to{start + num_images}"
    if subset not in DatasetCatalog.list():
        DatasetCatalog.register(subset, lambda: DatasetCatalog.get(name)[start : start + num_images])
        metadata = MetadataCatalog.get(name).as_dict()
        metadata.pop("name", None)
        MetadataCatalog.get(subset).set(**metadata)
    return subset


def prepare_datasets_from_config(cfg: CfgNode) -> CfgNode:
    """Apply the data keys of the module docstring to ``cfg`` (not frozen); returns ``cfg``."""
    register_user_coco_datasets(cfg)
    limit, start = cfg.DATASETS.TEST_LIMIT, cfg.DATASETS.TEST_START
    if start < 0 or (start > 0 and limit <= 0):
        raise ValueError(f"DATASETS.TEST_START {start}: needs to be >= 0, and a DATASETS.TEST_LIMIT (images from "
                         f"record {start} on) to go with it, got TEST_LIMIT {limit}")
    if limit > 0:
        cfg.DATASETS.TEST = tuple(register_first_images(n, limit, start) for n in cfg.DATASETS.TEST)
    return cfg
