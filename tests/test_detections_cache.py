"""Resumable DIVE evaluation: the detections cache returns what the model would, runs each image once, keys
its files by weights and settings, survives a cut last line, and resumes an evaluation through train_net."""

import json

import pytest
import torch

from dive_d2.evaluation.detections_cache import (
    CachedDetector,
    inference_settings,
    model_fingerprint,
    read_records,
    source_digest,
)

from .test_dive_training import make_input, mixed_batch, tiny_cfg
from .test_inversion import DETECTOR_PRIOR, TINY_INVERSION, tiny_model


class CountingModel(torch.nn.Module):
    """A detector that records the size of every batch it is asked to run."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.batch_sizes = []

    def forward(self, batched_inputs):
        self.batch_sizes.append(len(batched_inputs))
        return self.model(batched_inputs)


def assert_same_outputs(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a["instances"].image_size == b["instances"].image_size
        assert torch.equal(a["instances"].pred_boxes.tensor, b["instances"].pred_boxes.tensor)
        assert torch.equal(a["instances"].scores, b["instances"].scores)
        assert torch.equal(a["instances"].pred_classes, b["instances"].pred_classes)
        assert a["inversion_steps"] == b["inversion_steps"]


def test_cached_detections_equal_fresh_ones_and_each_image_runs_once(tmp_path):
    batch = mixed_batch()
    fresh = tiny_model()(batch)
    assert any(len(output["instances"]) for output in fresh), "an empty result would not test the round trip"

    counting = CountingModel(tiny_model()).eval()
    first = CachedDetector(counting, str(tmp_path), "f" * 64).eval()
    assert_same_outputs(first(batch[:2]), fresh[:2])
    # A new wrapper (a rerun) over the same file: only the third image is inverted, alone.
    second = CachedDetector(counting, str(tmp_path), "f" * 64).eval()
    resumed = second(batch)
    assert counting.batch_sizes == [2, 1]
    assert_same_outputs(resumed, fresh)
    assert [output.get("from_cache", False) for output in resumed] == [True, True, False]
    # Another fingerprint is another file: nothing is reused.
    CachedDetector(counting, str(tmp_path), "e" * 64).eval()(batch[:1])
    assert counting.batch_sizes == [2, 1, 1]


def test_fingerprint_follows_weights_and_settings_not_the_weights_path():
    model = tiny_model()
    cfg = tiny_cfg(*TINY_INVERSION)
    source = source_digest()

    def fingerprint(opts=()):
        changed = cfg.clone()
        changed.merge_from_list(list(opts))
        return model_fingerprint(model, inference_settings(changed), source)

    reference = fingerprint()
    assert fingerprint(["MODEL.WEIGHTS", "elsewhere/model.pth"]) == reference
    assert fingerprint(["MODEL.DIVE.INVERSION.SEED", "1"]) != reference
    assert fingerprint(["MODEL.DEVICE", "cuda"]) != reference
    assert model_fingerprint(model, inference_settings(cfg), "other code") != reference
    with torch.no_grad():
        next(model.unet.parameters()).view(-1)[0] += 1e-3
    assert fingerprint() != reference


def test_code_digest_ignores_comments_layout_and_docstrings_not_code(tmp_path):
    package = tmp_path / "package"
    (package / "sub").mkdir(parents=True)
    module = package / "sub" / "module.py"

    def digest_of(text):
        module.write_text(text)
        return source_digest(str(package))

    reference = digest_of('"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    documented = '"""Other words."""\n# a comment\ndef f(x):  # why\n    """Changed doc."""\n\n    return (x + 1)\n'
    assert digest_of(documented) == reference
    assert digest_of('def f(x):\n    return x + 2\n') != reference
    assert digest_of('def f(x):\n    "only a docstring differs"\n    return x + 1\n') == reference
    assert digest_of('def f(x):\n    return x + 1\n\nLIMIT = 3\n') != reference
    module.rename(package / "sub" / "renamed.py")
    assert source_digest(str(package)) != reference


def test_a_cut_last_line_is_skipped_and_a_broken_line_is_named(tmp_path):
    model = CountingModel(tiny_model()).eval()
    batch = [make_input(3, 64, 64, [], [], seed=seed) for seed in range(3)]
    cached = CachedDetector(model, str(tmp_path), "a" * 64).eval()
    cached(batch[:2])
    with open(cached.path, "a") as f:
        f.write('{"key": "cut')  # the process died while writing this record
    rerun = CachedDetector(model, str(tmp_path), "a" * 64).eval()
    assert len(rerun.records) == 2 and rerun.path != cached.path
    rerun(batch)
    assert model.batch_sizes == [2, 1]
    assert len(read_records(sorted(map(str, tmp_path.iterdir())))) == 3

    lines = open(cached.path).read().split("\n")
    lines[0] = "not json"
    with open(cached.path, "w") as f:
        f.write("\n".join(lines))
    with pytest.raises(ValueError, match=rf"{cached.path}, line 1"):
        CachedDetector(model, str(tmp_path), "a" * 64)


def evaluate_tiny_dive(weights, limit, output_dir, *opts):
    """train_net.py --eval-only of the tiny DIVE on the first ``limit`` shapes val images."""
    from .helpers import REPO_ROOT, TINY_DIVE_OPTS, load_tool

    train_net = load_tool("train_net")
    return train_net.main(train_net.default_argument_parser().parse_args([
        "--config-file", f"{REPO_ROOT}/configs/shapes/dive.yaml", "--eval-only",
        "MODEL.WEIGHTS", str(weights), "DATASETS.TEST_LIMIT", str(limit), *TINY_DIVE_OPTS,
        *TINY_INVERSION, "OUTPUT_DIR", str(output_dir), *opts]))


def saved_detections(output_dir, limit):
    return json.loads((output_dir / "inference" / f"dive_shapes_val_first{limit}" / "coco_instances_results.json")
                      .read_text())


def test_an_interrupted_evaluation_resumes_with_the_same_coco_numbers(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    DetectionCheckpointer(tiny_model(*DETECTOR_PRIOR), save_dir=str(tmp_path)).save("tiny")
    weights = tmp_path / "tiny.pth"

    uninterrupted = evaluate_tiny_dive(weights, 3, tmp_path / "uninterrupted")
    assert uninterrupted["inversion"]["images_from_cache"] == 0
    evaluate_tiny_dive(weights, 2, tmp_path / "resumed")  # stands for a run stopped after two images
    resumed = evaluate_tiny_dive(weights, 3, tmp_path / "resumed")
    assert resumed["inversion"]["images_from_cache"] == 2
    assert str(resumed["bbox"]) == str(uninterrupted["bbox"])  # as text: APm and APl are nan here
    assert resumed["inversion"]["mean_stop_step"] == uninterrupted["inversion"]["mean_stop_step"]
    assert saved_detections(tmp_path / "resumed", 3) == saved_detections(tmp_path / "uninterrupted", 3)
    assert saved_detections(tmp_path / "resumed", 3), "no detections: the comparison would be empty"
    files = sorted(map(str, (tmp_path / "resumed" / "detections_cache").iterdir()))
    assert len(files) == 2 and len(read_records(files)) == 3, "one file per run, each image once"


def test_test_batches_of_several_images_give_the_same_evaluation(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    from .helpers import REPO_ROOT, setup_cfg

    train_net, cfg = setup_cfg(f"{REPO_ROOT}/configs/shapes/dive.yaml", "DATASETS.TEST_LIMIT", "3",
                               "TEST.IMS_PER_BATCH", "2", output_dir=str(tmp_path))
    loader = train_net.Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])
    assert [len(batch) for batch in loader] == [2, 1]

    DetectionCheckpointer(tiny_model(*DETECTOR_PRIOR), save_dir=str(tmp_path)).save("tiny")
    weights = tmp_path / "tiny.pth"
    one = evaluate_tiny_dive(weights, 3, tmp_path / "one", "TEST.DETECTIONS_CACHE", "", "TEST.IMS_PER_BATCH", "1")
    batched = evaluate_tiny_dive(weights, 3, tmp_path / "batched", "TEST.DETECTIONS_CACHE", "",
                                 "TEST.IMS_PER_BATCH", "2")
    assert str(batched["bbox"]) == str(one["bbox"])
    assert saved_detections(tmp_path / "batched", 3) == saved_detections(tmp_path / "one", 3)
    assert saved_detections(tmp_path / "one", 3), "no detections: the comparison would be empty"
