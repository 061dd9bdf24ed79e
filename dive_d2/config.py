"""The project's config keys. ``add_dive_config(cfg)`` is the only place they are defined."""

from __future__ import annotations

from detectron2.config import CfgNode as CN


def add_dive_config(cfg: CN) -> CN:
    """Add the keys of dive_d2 to a Detectron2 config (in place) and return it."""
    # ---- user COCO-format data, see dive_d2/data/user_coco.py ----
    # The model's classes, in order; empty: the categories of DATASETS.COCO_TRAIN.JSON if given, else the
    # thing_classes of DATASETS.TRAIN[0]. COCO categories are matched to them by name.
    cfg.DATASETS.CLASS_NAMES = ()
    cfg.DATASETS.COCO_TRAIN = CN()
    cfg.DATASETS.COCO_TRAIN.JSON = ""  # COCO json to train on; replaces DATASETS.TRAIN when set
    cfg.DATASETS.COCO_TRAIN.IMAGES = ""  # folder that its images[*].file_name are relative to
    cfg.DATASETS.COCO_TEST = CN()
    cfg.DATASETS.COCO_TEST.JSON = ""  # COCO json to evaluate on; replaces DATASETS.TEST when set
    cfg.DATASETS.COCO_TEST.IMAGES = ""  # folder that its images[*].file_name are relative to
    # Evaluate on the first N images of each test dataset only (0: all). For quick runs; the subset is
    # the dataset's first N records, so it is the same on every machine.
    cfg.DATASETS.TEST_LIMIT = 0
    return cfg
