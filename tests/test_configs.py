"""Every YAML under configs/ parses with add_dive_config and builds its model on CPU."""

import glob
import os

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from dive_d2 import add_dive_config

from .helpers import REPO_ROOT

CONFIG_FILES = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True))


def test_configs_exist():
    assert len(CONFIG_FILES) >= 3


@pytest.mark.parametrize("config_file", CONFIG_FILES, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_config_parses_and_builds_on_cpu(config_file):
    cfg = get_cfg()
    add_dive_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    for dataset in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        assert dataset in DatasetCatalog.list(), f"{config_file}: dataset {dataset} is not registered"
