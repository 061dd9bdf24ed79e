"""Faster R-CNN baseline end to end on CPU: training steps, COCOEvaluator, user COCO data by config keys."""

import json
import os

import pytest
import torch
from detectron2.data import DatasetCatalog

from dive_d2.data import BENCHMARK_SPLITS
from dive_d2.data.benchmarks import write_split

from .helpers import REPO_ROOT, setup_cfg

SHAPES_CONFIG = os.path.join(REPO_ROOT, "configs", "shapes", "faster_rcnn_R18_FPN.yaml")
TINY_TRAINING = ("SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
                 "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu")
AP_KEYS = {"AP", "AP50", "AP75", "APs", "APm", "APl"}


def test_training_steps_then_coco_evaluation(tmp_path):
    train_net, cfg = setup_cfg(SHAPES_CONFIG, *TINY_TRAINING, "DATASETS.TEST_LIMIT", "4",
                               output_dir=str(tmp_path))
    assert cfg.DATASETS.TEST == ("dive_shapes_val_first4",)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "training changed no weight"
    assert os.path.isfile(os.path.join(str(tmp_path), "model_final.pth"))

    results = train_net.Trainer.test(cfg, trainer.model)
    assert AP_KEYS <= set(results["bbox"])


def test_eval_only_on_user_coco_json_with_categories_matched_by_name(tmp_path):
    data = tmp_path / "my_data"
    write_split(BENCHMARK_SPLITS["dive_shapes_val"], str(data / "images"), str(data / "ann.json"), num_images=3)
    # Reorder and renumber the categories: matching must go by name, not id.
    with open(data / "ann.json") as f:
        coco = json.load(f)
    new_id = {1: 30, 2: 10, 3: 20}
    coco["categories"] = [{"id": new_id[c["id"]], "name": c["name"]} for c in reversed(coco["categories"])]
    for ann in coco["annotations"]:
        ann["category_id"] = new_id[ann["category_id"]]
    with open(data / "ann.json", "w") as f:
        json.dump(coco, f)

    train_net, cfg = setup_cfg(
        SHAPES_CONFIG, "--eval-only", "MODEL.DEVICE", "cpu",
        "DATASETS.COCO_TEST.JSON", str(data / "ann.json"), "DATASETS.COCO_TEST.IMAGES", str(data / "images"),
        output_dir=str(tmp_path / "out"))
    (test_name,) = cfg.DATASETS.TEST
    dicts = DatasetCatalog.get(test_name)
    expected = BENCHMARK_SPLITS["dive_shapes_val"].generate(0).classes.tolist()
    assert [a["category_id"] for a in dicts[0]["annotations"]] == expected
    results = train_net.main(train_net.default_argument_parser().parse_args(
        ["--config-file", SHAPES_CONFIG, "--eval-only", "MODEL.DEVICE", "cpu",
         "DATASETS.COCO_TEST.JSON", str(data / "ann.json"), "DATASETS.COCO_TEST.IMAGES", str(data / "images"),
         "OUTPUT_DIR", str(tmp_path / "out")]))
    assert AP_KEYS <= set(results["bbox"])
    assert os.path.isfile(tmp_path / "out" / "eval_results.json")


def test_unknown_class_and_class_count_mismatch_are_clear_errors(tmp_path):
    data = tmp_path / "digits_data"
    write_split(BENCHMARK_SPLITS["dive_digits_val"], str(data / "images"), str(data / "ann.json"), num_images=2)
    coco_keys = ("DATASETS.COCO_TEST.JSON", str(data / "ann.json"), "DATASETS.COCO_TEST.IMAGES", str(data / "images"))
    with pytest.raises(ValueError, match=r"ann\.json.*not classes of the model"):
        setup_cfg(SHAPES_CONFIG, "MODEL.DEVICE", "cpu", *coco_keys, output_dir=str(tmp_path / "a"))
    with pytest.raises(ValueError, match="NUM_CLASSES 10"):
        setup_cfg(SHAPES_CONFIG, "MODEL.DEVICE", "cpu", *coco_keys, "DATASETS.CLASS_NAMES",
                  str(tuple("0123456789")), output_dir=str(tmp_path / "b"))
    dive_config = os.path.join(REPO_ROOT, "configs", "shapes", "dive.yaml")
    with pytest.raises(ValueError, match=r"MODEL\.DIVE\.NUM_CLASSES=3 .*set MODEL\.DIVE\.NUM_CLASSES 10"):
        setup_cfg(dive_config, "MODEL.DEVICE", "cpu", *coco_keys, "DATASETS.CLASS_NAMES",
                  str(tuple("0123456789")), output_dir=str(tmp_path / "d"))
    with pytest.raises(ValueError, match="must be given together"):
        setup_cfg(SHAPES_CONFIG, "DATASETS.COCO_TEST.JSON", str(data / "ann.json"), output_dir=str(tmp_path / "c"))
