"""Extra boxes from the empty layout's error map: the components, adding and suppressing, the config and the
detector path."""

import pytest
import torch
from detectron2.config import get_cfg

from dive_d2 import add_dive_config
from dive_d2.inversion import BoxClassDecision, ErrorMapCandidates, component_boxes
from dive_d2.inversion import box_classes as box_classes_module

from .test_box_refinement import blob_map
from .test_dive_training import make_input
from .test_inversion import detections_of, tiny_model


def test_component_boxes_outline_each_part_above_the_threshold_and_drop_lone_cells():
    error_map = blob_map(blobs=((2, 6, 4, 10), (20, 30, 16, 20)))
    error_map[12, 28] = 1.0  # one cell alone: noise
    error_map[19, 20] = 0.9  # diagonal neighbour of the second blob's corner (row 20, column 19): joins it
    boxes = component_boxes(error_map, threshold=0.5)
    assert torch.allclose(boxes, torch.tensor([[4, 2, 10, 6], [16, 19, 21, 30]]) / 32)
    assert len(component_boxes(error_map, threshold=0.5, min_cells=1)) == 3
    # Lowering the threshold under the background's level turns the whole map into one part.
    assert torch.allclose(component_boxes(error_map, threshold=0.005), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    assert component_boxes(torch.zeros(8, 8), threshold=0.5).shape == (0, 4)


def test_added_boxes_are_in_pixels_skip_boxes_already_found_and_wait_for_a_class():
    candidates = ErrorMapCandidates(threshold=0.5)
    # 64 x 128 (height x width) image, 32 x 32 map: a cell is 2 x 4 pixels.
    already = [4 * 4, 2 * 2, 10 * 4, 6 * 2]  # the first blob's box
    found = detections_of([already], [2], [0.7], size=(64, 128))
    added = candidates.add(found, blob_map(blobs=((2, 6, 4, 10), (20, 30, 16, 20))))
    assert added.image_size == (64, 128)
    assert torch.equal(added.pred_boxes.tensor, torch.tensor([already, [16 * 4, 20 * 2, 20 * 4, 30 * 2]],
                                                             dtype=torch.float32))
    assert added.pred_classes.tolist() == [2, 0] and added.scores.tolist() == pytest.approx([0.7, 0.0])
    with pytest.raises(ValueError, match=r"error_map must be \(h, w\), got shape \(1, 32, 32\)"):
        candidates.add(found, blob_map()[None])


def test_overlapping_boxes_of_one_class_keep_the_best_scored_and_other_classes_stay():
    found = detections_of([[0, 0, 20, 20], [1, 0, 21, 20], [1, 0, 21, 20], [40, 40, 50, 50]], [1, 1, 0, 1],
                          [0.4, 0.8, 0.3, 0.5])
    kept = ErrorMapCandidates(nms_iou=0.5).suppress_overlaps(found)
    assert kept.pred_classes.tolist() == [1, 1, 0] and kept.scores.tolist() == pytest.approx([0.8, 0.5, 0.3])
    assert len(ErrorMapCandidates(nms_iou=1.0).suppress_overlaps(found)) == 4


def test_config_turns_the_step_on_only_with_the_class_decision():
    cfg = get_cfg()
    add_dive_config(cfg)
    assert ErrorMapCandidates.from_config(cfg) is None
    cfg.MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES = True
    cfg.MODEL.DIVE.INVERSION.RECLASSIFY_BOXES = False
    with pytest.raises(ValueError, match="ERROR_MAP_CANDIDATES needs RECLASSIFY_BOXES"):
        ErrorMapCandidates.from_config(cfg)
    cfg.MODEL.DIVE.INVERSION.RECLASSIFY_BOXES = True
    cfg.MODEL.DIVE.INVERSION.RECLASSIFY_SCORE = "layout"
    with pytest.raises(ValueError, match="needs a RECLASSIFY_SCORE from the error maps"):
        ErrorMapCandidates.from_config(cfg)
    cfg.MODEL.DIVE.INVERSION.RECLASSIFY_SCORE = "explained_share"
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_THRESHOLD = 0.3
    step = ErrorMapCandidates.from_config(cfg)
    assert (step.threshold, step.nms_iou) == (0.3, 0.5)
    with pytest.raises(ValueError, match="0 < CANDIDATE_THRESHOLD < 1"):
        ErrorMapCandidates(threshold=1.0)


def test_the_share_score_weighs_the_explained_fraction_by_the_boxs_share_of_the_map(monkeypatch):
    model = tiny_model()
    # Box 0 covers 1/4 of a uniform map, box 1 1/16 of it; every layout leaves half of each cell's error.
    found = detections_of([[0, 0, 32, 32], [48, 48, 64, 64]], [0, 0], [0.9, 0.8])
    monkeypatch.setattr(box_classes_module, "layout_error_maps",
                        lambda model, latents, layouts, *pairs: torch.ones(len(layouts), 16, 16))
    pairs = (torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 16, 16))
    decided = BoxClassDecision("explained_share")(model, torch.zeros(1, 3, 16, 16), found, *pairs,
                                                  torch.full((16, 16), 2.0))
    assert decided.scores.tolist() == pytest.approx([0.5 * 0.5, 0.5 * 0.25])


def test_the_detector_adds_candidates_before_the_class_decision_and_a_cache_gets_the_same(monkeypatch):
    model = tiny_model("MODEL.DIVE.INVERSION.REFINE_BOXES", "True", "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "True",
                       "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", "explained_share",
                       "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "True")
    inputs = [make_input(3, 64, 64, [], [], seed=0) | {"image_id": 0},
              make_input(1, 40, 72, [], [], seed=5) | {"image_id": 5, "height": 80, "width": 144}]
    with torch.no_grad():
        finished = model(inputs)
        steps = model.box_candidates, model.box_classes
        model.box_candidates = model.box_classes = None
        refined_only = model(inputs)
        model.box_candidates, model.box_classes = steps
        latents = model.first_stage.encode(model.preprocess_images(inputs))
        reclassified_only = [dict(output) for output in refined_only]
        assert model.finish_detections(latents, refined_only) == ["candidate_boxes", "reclassified_boxes"]
        model.box_candidates = None
        model.finish_detections(latents, reclassified_only)
        model.box_candidates = steps[0]
    for ours, theirs in zip(finished, refined_only, strict=True):
        assert ours["candidate_boxes"] == theirs["candidate_boxes"] == 1
        assert torch.equal(ours["instances"].pred_boxes.tensor, theirs["instances"].pred_boxes.tensor)
        assert torch.equal(ours["instances"].scores, theirs["instances"].scores)
        assert torch.equal(ours["instances"].pred_classes, theirs["instances"].pred_classes)
    # The tiny model's maps do hold parts the inversion did not box: the step changed what is returned.
    boxes = [{tuple(box) for box in output["instances"].pred_boxes.tensor.tolist()}
             for output in (*finished, *reclassified_only)]
    assert boxes[:2] != boxes[2:], boxes
    with pytest.raises(ValueError, match="reclassified already"):
        model.finish_detections(latents, reclassified_only)
