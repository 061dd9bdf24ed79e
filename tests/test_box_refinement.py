"""Box refinement by the empty layout's error map: the fitting rule, the detector path and the cache tool
(which also applies the class decision, tests/test_box_classes.py)."""

import json
import logging

import numpy as np
import pytest
import torch

from dive_d2.inversion import ErrorMapBoxRefinement
from dive_d2.inversion.box_refinement import support_box

from .test_dive_training import detections_with_and_without, detector_inputs
from .test_inversion import DETECTOR_PRIOR, TINY_INVERSION, detections_of, tiny_model


def blob_map(height=32, width=32, blobs=((10, 16, 8, 14),), value=1.0):
    """(h, w) error map: ``value`` on each blob's rows y0:y1 and columns x0:x1, small noise elsewhere."""
    error_map = torch.full((height, width), 0.01)
    for y0, y1, x0, x1 in blobs:
        error_map[y0:y1, x0:x1] = value
    return error_map


class WarningsKept(logging.Handler):
    """Keeps the messages of the warnings logged to it (Detectron2's loggers do not propagate to caplog)."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def fields(instances):
    return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def test_support_box_is_the_bounding_box_of_the_parts_touching_the_box():
    mask = blob_map(blobs=((10, 16, 8, 14), (20, 24, 24, 30))).numpy() > 0.5
    # A box over the first blob's top-left corner only: grown to the whole blob, not to the second one.
    box = np.array([6, 8, 10, 12]) / 32
    assert support_box(box, mask, 0.25, 1.0) == pytest.approx(np.array([8, 10, 14, 16]) / 32)
    # A box over both blobs: both.
    assert support_box(np.array([12, 14, 26, 22]) / 32, mask, 0.1, 0.0) == pytest.approx(
        np.array([8, 10, 30, 24]) / 32)
    # Nothing under the box: no support.
    assert support_box(np.array([0, 0, 4, 4]) / 32, mask, 0.25, 1.0) is None


def test_the_window_limits_how_far_a_box_grows():
    mask = blob_map(blobs=((10, 12, 0, 32),)).numpy() > 0.5  # a bar across the whole map
    box = np.array([14, 9, 18, 13]) / 32  # 4 cells wide
    # Margin per side max(2 cells, 0.5 x 4 cells) = 2 cells: columns 12..19 of the bar.
    assert support_box(box, mask, 2 / 32, 0.5) == pytest.approx(np.array([12, 10, 20, 12]) / 32)
    assert support_box(box, mask, 0.0, 2.0) == pytest.approx(np.array([6, 10, 26, 12]) / 32)


def test_refined_detections_are_in_the_images_pixels_keep_classes_and_merge_equal_results():
    refine = ErrorMapBoxRefinement(threshold=0.5, min_margin=0.25, margin_ratio=1.0)
    # A 48 x 96 image (height x width) whose map is 32 x 32: each map cell is 3 x 1.5 pixels.
    found = detections_of([[18, 18, 30, 27], [30, 12, 45, 18], [27, 16.5, 36, 21], [0, 0, 6, 6]], [1, 1, 2, 0],
                       [0.6, 0.9, 0.7, 0.5], size=(48, 96))
    refined = refine(found, blob_map())
    blob = [8 * 3, 10 * 1.5, 14 * 3, 16 * 1.5]  # columns 8-13, rows 10-15 in pixels
    assert refined.image_size == (48, 96)
    # The two class-1 boxes end on the same blob: one detection with the higher score.
    assert refined.pred_classes.tolist() == [1, 2, 0]
    assert refined.scores.tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert torch.allclose(refined.pred_boxes.tensor, torch.tensor([blob, blob, [0, 0, 6, 6]]))


def test_a_map_without_any_error_and_bad_settings():
    found = detections_of([[4, 4, 20, 20]], [0], [0.5])
    assert ErrorMapBoxRefinement()(found, torch.zeros(8, 8)).pred_boxes.tensor.tolist() == [[4, 4, 20, 20]]
    with pytest.raises(ValueError, match=r"error_map must be \(h, w\), got shape \(1, 8, 8\)"):
        ErrorMapBoxRefinement()(found, torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="REFINE_THRESHOLD"):
        ErrorMapBoxRefinement(threshold=1.5)


def test_the_detector_refines_what_it_would_return_unrefined():
    model = tiny_model("MODEL.DIVE.INVERSION.REFINE_BOXES", "True", "MODEL.DIVE.INVERSION.REFINE_THRESHOLD", "0.5",
                       "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "False", "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES",
                       "False")
    refined, plain, latents = detections_with_and_without(model, detector_inputs(), "box_refinement")
    with torch.no_grad():
        model.refine_boxes(latents, plain)
    for ours, theirs in zip(refined, plain, strict=True):
        assert ours["refined_boxes"] == theirs["refined_boxes"] == 1
        for mine, other in zip(fields(ours["instances"]), fields(theirs["instances"]), strict=True):
            assert torch.equal(mine, other)
    with pytest.raises(ValueError, match="refined already"):
        model.refine_boxes(latents, plain)


def test_the_cache_tool_scores_the_cached_detections_and_finishes_them_as_the_detector_does(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    from .helpers import REPO_ROOT, TINY_DIVE_OPTS, load_tool

    model = tiny_model(*DETECTOR_PRIOR)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("tiny")
    config = f"{REPO_ROOT}/configs/shapes/dive.yaml"
    opts = [*TINY_DIVE_OPTS, *TINY_INVERSION, "DATASETS.TEST_LIMIT", "2"]
    steps_off = ["MODEL.DIVE.INVERSION.REFINE_BOXES", "False", "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "False",
                 "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "False"]
    steps_on = ["MODEL.DIVE.INVERSION.REFINE_BOXES", "True", "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "True",
                "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "True", "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE",
                "explained_share"]
    train_net = load_tool("train_net")

    def evaluate(*more):
        return train_net.main(train_net.default_argument_parser().parse_args(
            ["--config-file", config, "--eval-only", "MODEL.WEIGHTS", str(tmp_path / "tiny.pth"), *opts, *more]))

    cache = tmp_path / "cache"  # the inverted detections alone
    inverted = evaluate(*steps_off, "OUTPUT_DIR", str(tmp_path / "eval"), "TEST.DETECTIONS_CACHE", str(cache))
    finished = evaluate(*steps_on, "OUTPUT_DIR", str(tmp_path / "eval_on"), "TEST.DETECTIONS_CACHE", "")
    tool = load_tool("refine_cached_detections")
    common = ["--config-file", config, "--weights", str(tmp_path / "tiny.pth"), "--cache", str(cache)]
    results = tool.main([*common, *opts, *steps_on, "OUTPUT_DIR", str(tmp_path / "refined")])
    (dataset,) = results
    assert results[dataset]["cached"]["bbox"] == pytest.approx(inverted["bbox"], nan_ok=True)
    assert results[dataset]["refined"]["bbox"] == pytest.approx(finished["bbox"], nan_ok=True)
    for name in ("cached", "refined"):  # what tools/objects_found.py reads
        assert (tmp_path / "refined" / name / "coco_instances_results.json").exists()
        assert len(list((tmp_path / "refined" / name).glob("*_coco_format.json"))) == 1
    # The joint-layout scores applied to the finished detections the tool wrote: as the detector applies them.
    joint = ["MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K", "3"]
    from_results = ["--config-file", config, "--weights", str(tmp_path / "tiny.pth"), "--finished-results",
                    str(tmp_path / "refined" / "refined" / "coco_instances_results.json")]
    warnings = WarningsKept()  # images the files do not cover are evaluated as empty, and the tool says so
    logging.getLogger("refine_cached_detections").addHandler(warnings)
    try:
        rescored = tool.main([*from_results, *opts, *steps_on, *joint, "OUTPUT_DIR", str(tmp_path / "joint")])
        assert warnings.messages == []
        tool.main([*from_results, *opts[:-1], "3", *steps_on, *joint, "OUTPUT_DIR", str(tmp_path / "joint3")])
    finally:
        logging.getLogger("refine_cached_detections").removeHandler(warnings)
    assert len(warnings.messages) == 1 and "1 of 3 image(s) have no detections" in warnings.messages[0]
    assert rescored[dataset]["cached"]["bbox"] == pytest.approx(results[dataset]["refined"]["bbox"], nan_ok=True)
    detector = evaluate(*steps_on, *joint, "OUTPUT_DIR", str(tmp_path / "eval_joint"), "TEST.DETECTIONS_CACHE", "")
    assert rescored[dataset]["refined"]["bbox"] == pytest.approx(detector["bbox"], nan_ok=True)
    with pytest.raises(ValueError, match="JOINT_LAYOUT_TOP_K > 0"):
        tool.main([*from_results, *opts, *steps_on, "OUTPUT_DIR", str(tmp_path / "no_joint")])
    # The class alternatives on the rescored detections the tool wrote: as the detector adds them.
    alternatives = ["MODEL.DIVE.INVERSION.CLASS_ALTERNATIVES_FACTOR", "0.1"]
    from_rescored = ["--config-file", config, "--weights", str(tmp_path / "tiny.pth"), "--finished-rescored",
                     "--finished-results", str(tmp_path / "joint" / "refined" / "coco_instances_results.json")]
    alternated = tool.main([*from_rescored, *opts, *steps_on, *joint, *alternatives, "OUTPUT_DIR",
                            str(tmp_path / "alternatives")])
    assert alternated[dataset]["cached"]["bbox"] == pytest.approx(rescored[dataset]["refined"]["bbox"], nan_ok=True)
    detector = evaluate(*steps_on, *joint, *alternatives, "OUTPUT_DIR", str(tmp_path / "eval_alternatives"),
                        "TEST.DETECTIONS_CACHE", "")
    assert alternated[dataset]["refined"]["bbox"] == pytest.approx(detector["bbox"], nan_ok=True)
    with pytest.raises(ValueError, match="CLASS_ALTERNATIVES_FACTOR > 0"):
        tool.main([*from_rescored, *opts, *steps_on, *joint, "OUTPUT_DIR", str(tmp_path / "no_alternatives")])
    # The prior scores on the detections with their alternatives the tool wrote: as the detector weighs them.
    prior = ["MODEL.DIVE.INVERSION.PRIOR_SCORE_WEIGHT", "2.0"]
    from_alternated = ["--config-file", config, "--weights", str(tmp_path / "tiny.pth"), "--finished-alternated",
                       "--finished-results", str(tmp_path / "alternatives" / "refined" / "coco_instances_results.json")]
    weighed = tool.main([*from_alternated, *opts, *steps_on, *joint, *alternatives, *prior, "OUTPUT_DIR",
                         str(tmp_path / "prior")])
    assert weighed[dataset]["cached"]["bbox"] == pytest.approx(alternated[dataset]["refined"]["bbox"], nan_ok=True)
    detector = evaluate(*steps_on, *joint, *alternatives, *prior, "OUTPUT_DIR", str(tmp_path / "eval_prior"),
                        "TEST.DETECTIONS_CACHE", "")
    assert weighed[dataset]["refined"]["bbox"] == pytest.approx(detector["bbox"], nan_ok=True)
    with pytest.raises(ValueError, match="PRIOR_SCORE_WEIGHT > 0"):
        tool.main([*from_alternated, *opts, *steps_on, *joint, *alternatives, "OUTPUT_DIR", str(tmp_path / "no_prior")])
    with pytest.raises(SystemExit):
        tool.main([*from_alternated, "--finished-rescored", *opts, *steps_on, *prior, "OUTPUT_DIR",
                   str(tmp_path / "both_marks")])
    with pytest.raises(KeyError, match=r"no cached detections for image_id \[3\]"):
        tool.main([*common, *opts[:-1], "3", *steps_on, "OUTPUT_DIR", str(tmp_path / "more")])
    with pytest.raises(ValueError, match="nothing is left to apply"):
        tool.main([*common, *opts, *steps_off, "OUTPUT_DIR", str(tmp_path / "nothing")])

    # The class decision given the ground-truth boxes: exactly those boxes come back, each with a class.
    oracle = ["--config-file", config, "--weights", str(tmp_path / "tiny.pth"), "--ground-truth-boxes"]
    results = tool.main([*oracle, *opts, *steps_on, "OUTPUT_DIR", str(tmp_path / "oracle")])
    assert list(results[dataset]) == ["ground_truth_boxes"]
    folder = tmp_path / "oracle" / "ground_truth_boxes"
    (truth_file,) = folder.glob("*_coco_format.json")
    def boxes(items):
        return sorted((item["image_id"], *(round(value, 3) for value in item["bbox"])) for item in items)

    truth = boxes(json.loads(truth_file.read_text())["annotations"])
    assert truth and boxes(json.loads((folder / "coco_instances_results.json").read_text())) == truth
    with pytest.raises(ValueError, match="--ground-truth-boxes measures the class decision"):
        tool.main([*oracle, *opts, *steps_off, "OUTPUT_DIR", str(tmp_path / "no_decision")])
    with pytest.raises(SystemExit):
        tool.main([*oracle, "--cache", str(cache), *opts, *steps_on, "OUTPUT_DIR", str(tmp_path / "both")])


def test_the_cache_tool_scores_finished_records_as_they_are_and_refuses_to_finish_them_again(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    from .helpers import REPO_ROOT, TINY_DIVE_OPTS, load_tool

    DetectionCheckpointer(tiny_model(*DETECTOR_PRIOR), save_dir=str(tmp_path)).save("tiny")
    config = f"{REPO_ROOT}/configs/shapes/dive.yaml"
    opts = [*TINY_DIVE_OPTS, *TINY_INVERSION, "MODEL.DIVE.INVERSION.REFINE_BOXES", "True",
            "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "True", "DATASETS.TEST_LIMIT", "2"]
    cache = tmp_path / "cache"
    train_net = load_tool("train_net")
    evaluated = train_net.main(train_net.default_argument_parser().parse_args(
        ["--config-file", config, "--eval-only", "MODEL.WEIGHTS", str(tmp_path / "tiny.pth"), *opts,
         "OUTPUT_DIR", str(tmp_path / "eval"), "TEST.DETECTIONS_CACHE", str(cache)]))
    tool = load_tool("refine_cached_detections")
    common = ["--config-file", config, "--weights", str(tmp_path / "tiny.pth"), "--cache", str(cache)]
    with pytest.raises(ValueError, match="nothing is left to apply; add --score-only"):
        tool.main([*common, *opts, "OUTPUT_DIR", str(tmp_path / "refused")])
    results = tool.main([*common, "--score-only", *opts, "OUTPUT_DIR", str(tmp_path / "scored")])
    (dataset,) = results
    assert list(results[dataset]) == ["cached"]
    assert results[dataset]["cached"]["bbox"] == pytest.approx(evaluated["bbox"], nan_ok=True)
