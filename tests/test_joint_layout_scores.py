"""Joint-layout scores: a part or a union of found objects adds nothing next to them and drops in the ranking."""

import pytest
import torch

from dive_d2.inversion import JointLayoutScores
from dive_d2.inversion import box_classes as box_classes_module
from dive_d2.inversion import joint_layout_scores as joint_module

from .test_dive_training import detections_with_and_without, detector_inputs
from .test_inversion import detections_of, tiny_model

# 64 x 64 image, 16 x 16 latent grid (4 px per cell); two objects leave error where they are.
OBJECTS = ((0, 0, 32, 32), (32, 32, 64, 64))


def empty_map(objects=OBJECTS) -> torch.Tensor:
    error = torch.zeros(16, 16)
    for x0, y0, x1, y1 in objects:
        error[y0 // 4 : y1 // 4, x0 // 4 : x1 // 4] = 1.0
    return error


def planted_maps(tokenizer, seen, objects):
    """p(x|y)'s stand-in: every box of a layout explains the object error on the cells inside it."""
    def maps(model, latents, layouts, timesteps, noise):
        out = empty_map(objects).repeat(len(layouts), 1, 1)
        for row, layout in enumerate(layouts):
            decoded = tokenizer.decode(layout, 64, 64)
            seen.append(len(decoded.boxes))
            for x0, y0, x1, y1 in decoded.boxes.round().long().tolist():
                out[row, y0 // 4 : y1 // 4, x0 // 4 : x1 // 4] = 0.0
        return out
    return maps


def crowded_maps(tokenizer, seen, objects):
    """Like ``planted_maps``, but a layout of several objects explains only half of the error inside each box."""
    single = planted_maps(tokenizer, seen, objects)

    def maps(model, latents, layouts, timesteps, noise):
        out = single(model, latents, layouts, timesteps, noise)
        for row in range(len(layouts)):
            if seen[len(seen) - len(layouts) + row] > 1:
                out[row] = (out[row] + empty_map(objects)) / 2
        return out
    return maps


def rescore(monkeypatch, detections, top_k=8, accept=0.5, objects=OBJECTS, exponent=0.3, context="all",
            maps=planted_maps):
    model = tiny_model()
    seen = []
    monkeypatch.setattr(box_classes_module, "layout_error_maps", maps(model.tokenizer, seen, objects))
    monkeypatch.setattr(joint_module, "layout_error_maps", maps(model.tokenizer, seen, objects))
    pairs = (torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 16, 16))
    rescored = JointLayoutScores(top_k, accept, exponent, context)(model, torch.zeros(1, 3, 16, 16), detections,
                                                                   *pairs, empty_map(objects))
    return rescored, seen


def test_a_part_and_a_union_of_found_objects_score_nothing_and_a_second_object_keeps_its_score(monkeypatch):
    whole, part, other, union = [0, 0, 32, 32], [0, 0, 16, 32], [32, 32, 64, 64], [0, 0, 64, 64]
    found = detections_of([part, whole, union, other], [1, 1, 0, 2], [0.8, 0.9, 0.6, 0.7])
    rescored, seen = rescore(monkeypatch, found)
    # Visited by score: whole (ratio 1, joins), part (nothing more inside it), other (all of its own), union.
    assert rescored.pred_boxes.tensor.tolist() == [whole, other, part, union]
    assert rescored.pred_classes.tolist() == [1, 2, 1, 0]
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.7, 0.0, 0.0])
    # Single-object maps per class for the four boxes, then one joint layout per visit after the first.
    assert seen.count(1) == 4 * 3 and sorted(count for count in seen if count > 1) == [2, 2, 3]


def test_only_the_top_k_are_rescored_and_a_part_measured_alone_keeps_its_score(monkeypatch):
    whole, part, other = [0, 0, 32, 32], [0, 0, 16, 32], [32, 32, 64, 64]
    found = detections_of([whole, part, other], [1, 1, 2], [0.9, 0.8, 0.7])
    rescored, _ = rescore(monkeypatch, found, top_k=1)
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    rescored, _ = rescore(monkeypatch, found, top_k=2)
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.7, 0.0])
    half = [16, 0, 48, 32]  # its only error lies on the whole object, explained already
    rescored, _ = rescore(monkeypatch, detections_of([whole, half], [1, 0], [0.9, 0.8]))
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.0])
    # A quarter of each object: next to the whole box it explains half of its own error, so its score * (1/2)^0.3.
    straddling = [16, 16, 48, 48]
    rescored, _ = rescore(monkeypatch, detections_of([whole, straddling], [1, 0], [0.9, 0.8]))
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.8 * 0.5**0.3])
    rescored, _ = rescore(monkeypatch, detections_of([whole, straddling], [1, 0], [0.9, 0.8]), exponent=1.0)
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.8 * 0.5])


def test_a_detection_visited_once_the_joint_layout_fills_the_slots_keeps_its_score(monkeypatch):
    quadrants = ((0, 0, 32, 32), (32, 0, 64, 32), (0, 32, 32, 64), (32, 32, 64, 64))
    assert tiny_model().tokenizer.num_slots == len(quadrants)
    part = [0, 0, 16, 32]  # a layout of five would drop it (the largest objects are kept), so it is not measured
    found = detections_of([*map(list, quadrants), part], [0, 1, 2, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.5])
    rescored, _ = rescore(monkeypatch, found, objects=quadrants)
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])


def test_with_overlapping_context_objects_elsewhere_do_not_lower_a_ratio_but_overlapping_ones_do(monkeypatch):
    whole, part, other = [0, 0, 32, 32], [0, 0, 16, 32], [32, 32, 64, 64]
    found = detections_of([whole, part, other], [1, 1, 2], [0.9, 0.8, 0.7])
    # A p(x|y) that explains less in a crowded layout: next to every member the far object gets half its due.
    rescored, seen = rescore(monkeypatch, found, maps=crowded_maps)
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.7 * 0.5**0.3, 0.0])
    rescored, seen = rescore(monkeypatch, found, maps=crowded_maps, context="overlapping")
    assert rescored.pred_boxes.tensor.tolist() == [whole, other, part]
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.7, 0.0])
    # Single-object maps per class for the three boxes, then one joint layout: the part next to the whole box.
    assert seen.count(1) == 3 * 3 and sorted(count for count in seen if count > 1) == [2]


def test_with_overlapping_context_the_joint_layout_grows_past_the_slots(monkeypatch):
    quadrants = ((0, 0, 32, 32), (32, 0, 64, 32), (0, 32, 32, 64), (32, 32, 64, 64))
    part = [0, 0, 16, 32]  # measured next to the first quadrant only, so it is visited although S holds four
    found = detections_of([*map(list, quadrants), part], [0, 1, 2, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.5])
    rescored, _ = rescore(monkeypatch, found, objects=quadrants, context="overlapping")
    assert rescored.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.0])


def test_overlapping_members_keeps_those_sharing_the_most_area_in_their_order():
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 20, 20], [10, 0, 20, 10], [0, 0, 4, 4], [2, 2, 8, 8]],
                         dtype=torch.float32)
    assert joint_module.overlapping_members(boxes, 4, [0, 1, 2, 3], 3) == [0, 1, 3]  # box 2 only touches it
    assert joint_module.overlapping_members(boxes, 4, [3, 1, 0], 2) == [1, 0]
    assert joint_module.overlapping_members(boxes, 4, [], 3) == []


def test_bad_settings_and_shapes_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="top_k .* must be >= 1, got 0"):
        JointLayoutScores(0)
    with pytest.raises(ValueError, match=r"accept .* must be in \(0, 1\], got 1.5"):
        JointLayoutScores(4, 1.5)
    with pytest.raises(ValueError, match=r"exponent .* must be > 0, got 0.0"):
        JointLayoutScores(4, 0.5, 0.0)
    with pytest.raises(ValueError, match=r"JOINT_LAYOUT_CONTEXT\) must be one of \('all', 'overlapping'\), got 'near'"):
        JointLayoutScores(4, 0.5, 0.3, "near")
    with pytest.raises(ValueError, match="JOINT_LAYOUT_TOP_K"):
        tiny_model("MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K", "-1")
    model = tiny_model()
    found = detections_of([[0, 0, 32, 32]], [0], [0.9])
    pairs = (torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"empty_map must be \(h, w\) = \(16, 16\), got \(8, 8\)"):
        JointLayoutScores()(model, torch.zeros(1, 3, 16, 16), found, *pairs, torch.zeros(8, 8))
    assert len(JointLayoutScores()(model, torch.zeros(1, 3, 16, 16), found[:0], *pairs, empty_map())) == 0


def test_the_detector_rescores_last_and_finishing_cached_detections_gives_the_same():
    model = tiny_model("MODEL.DIVE.INVERSION.REFINE_BOXES", "True", "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "True",
                       "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", "explained_won_cells",
                       "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "True",
                       "MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K", "4")
    assert model.joint_layout_scores.top_k == 4
    finished, before, latents = detections_with_and_without(model, detector_inputs(), "joint_layout_scores")
    with torch.no_grad():
        assert model.finish_detections(latents, before) == ["joint_layout_scores"]
        assert model.finish_detections(latents, before) == []
    assert any(len(output["instances"]) for output in finished), "no detections: nothing would be compared"
    for ours, theirs in zip(finished, before, strict=True):
        assert ours["joint_layout_scores"] == theirs["joint_layout_scores"] == 1
        assert torch.equal(ours["instances"].pred_boxes.tensor, theirs["instances"].pred_boxes.tensor)
        assert torch.allclose(ours["instances"].scores, theirs["instances"].scores)
        assert torch.equal(ours["instances"].pred_classes, theirs["instances"].pred_classes)
        scores = ours["instances"].scores
        assert torch.equal(scores, scores.sort(descending=True).values)
    # The joint-layout scores are the last step: detections that carry them cannot get an earlier one afterwards.
    unclassified = [{key: value for key, value in output.items() if key != "reclassified_boxes"}
                    for output in finished]
    with pytest.raises(ValueError, match="carry joint-layout scores already"):
        model.finish_detections(latents, unclassified)
