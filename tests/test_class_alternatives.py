"""Class alternatives: each box comes back with its other classes, ranked by how close each came, below the rest."""

import pytest
import torch

from dive_d2.inversion import ClassAlternatives
from dive_d2.inversion import box_classes as box_classes_module

from .test_dive_training import detections_with_and_without, detector_inputs
from .test_inversion import detections_of, tiny_model

# 64 x 64 image, 16 x 16 latent grid (4 px per cell); one object's error fills the top-left quadrant.
OBJECT = (0, 0, 32, 32)
EXPLAINED_BY_CLASS = (1.0, 0.5, 0.0)  # how much of the error inside its box each class's single object explains


def empty_map() -> torch.Tensor:
    error = torch.zeros(16, 16)
    error[: OBJECT[3] // 4, : OBJECT[2] // 4] = 1.0
    return error


def class_dependent_maps(tokenizer, seen):
    """p(x|y)'s stand-in: a single object explains EXPLAINED_BY_CLASS[its class] of the error inside its box."""
    def maps(model, latents, layouts, timesteps, noise):
        out = empty_map().repeat(len(layouts), 1, 1)
        for row, layout in enumerate(layouts):
            decoded = tokenizer.decode(layout, 64, 64)
            seen.append(len(decoded.boxes))
            for (x0, y0, x1, y1), label in zip(decoded.boxes.round().long().tolist(), decoded.classes.tolist(),
                                               strict=True):
                out[row, y0 // 4 : y1 // 4, x0 // 4 : x1 // 4] *= 1.0 - EXPLAINED_BY_CLASS[label]
        return out
    return maps


def scores_by_box_and_class(instances) -> dict:
    """{(box XYXY tuple, class): score} of Instances with ``pred_boxes``, ``pred_classes`` and ``scores``."""
    return {(tuple(box), label): score for box, label, score in zip(
        instances.pred_boxes.tensor.tolist(), instances.pred_classes.tolist(), instances.scores.tolist(), strict=True)}


def last_step_finished_twice(model, step: str) -> tuple[list, list, list, torch.Tensor]:
    """Runs the detector with its last step ``step`` (also its output mark) and again without it, then gives the
    second run's outputs that step through ``DIVE.finish_detections`` (the path cached detections take), checking
    that it applies exactly that step once and that both ways give the same boxes and scores. Returns the
    detector's outputs, the finished ones, copies of those from before the step, and the latents."""
    finished, before, latents = detections_with_and_without(model, detector_inputs(), step)
    plain = [dict(output) for output in before]  # the step replaces "instances", so these keep the detections
    with torch.no_grad():
        assert model.finish_detections(latents, before) == [step]
        assert model.finish_detections(latents, before) == []
    for ours, theirs in zip(finished, before, strict=True):
        assert ours[step] == theirs[step] == 1
        assert torch.equal(ours["instances"].pred_boxes.tensor, theirs["instances"].pred_boxes.tensor)
        assert torch.allclose(ours["instances"].scores, theirs["instances"].scores)
    return finished, before, plain, latents


def with_alternatives(monkeypatch, detections, factor=0.1, map_cache=None):
    model = tiny_model()
    assert model.tokenizer.num_classes == len(EXPLAINED_BY_CLASS)
    seen = []
    monkeypatch.setattr(box_classes_module, "layout_error_maps", class_dependent_maps(model.tokenizer, seen))
    pairs = (torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 16, 16))
    result = ClassAlternatives(factor)(model, torch.zeros(1, 3, 16, 16), detections, *pairs, empty_map(), map_cache)
    return result, seen


def test_each_box_comes_back_with_the_classes_that_explain_something_at_a_fraction_of_its_score(monkeypatch):
    found = detections_of([list(OBJECT), [32, 32, 64, 64]], [0, 1], [0.8, 0.6])
    result, seen = with_alternatives(monkeypatch, found)
    assert result.pred_boxes.tensor.tolist() == [list(OBJECT), [32, 32, 64, 64], list(OBJECT)]
    assert result.pred_classes.tolist() == [0, 1, 1]
    # Class 1 explains half of what the decided class 0 does; class 2 nothing, so it is not added. The second box
    # holds no error: nothing for any class to explain, so it gets no alternatives.
    assert result.scores.tolist() == pytest.approx([0.8, 0.6, 0.8 * 0.1 * 0.5])
    assert seen == [1] * 2 * 3  # one single-object layout per box and class
    # A box decided for the weaker class: the better one is capped at the detection's own score times the factor.
    result, _ = with_alternatives(monkeypatch, detections_of([list(OBJECT)], [1], [0.8]), factor=0.5)
    assert result.pred_classes.tolist() == [1, 0]
    assert result.scores.tolist() == pytest.approx([0.8, 0.8 * 0.5])


def test_maps_the_class_decision_kept_are_not_evaluated_again_and_bad_input_is_refused(monkeypatch):
    cached = {tuple(map(float, OBJECT)): torch.stack([empty_map() * (1.0 - share) for share in EXPLAINED_BY_CLASS])}
    result, seen = with_alternatives(monkeypatch, detections_of([list(OBJECT)], [0], [0.8]), map_cache=cached)
    assert seen == [] and result.scores.tolist() == pytest.approx([0.8, 0.8 * 0.1 * 0.5])
    assert len(with_alternatives(monkeypatch, detections_of([], [], []))[0]) == 0
    with pytest.raises(ValueError, match=r"factor .*CLASS_ALTERNATIVES_FACTOR\) must be in \(0, 1\], got 0.0"):
        ClassAlternatives(0.0)
    with pytest.raises(ValueError, match=r"empty_map must be \(h, w\) = \(16, 16\), got \(8, 8\)"):
        ClassAlternatives()(tiny_model(), torch.zeros(1, 3, 16, 16), detections_of([list(OBJECT)], [0], [0.8]),
                            torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 16, 16), torch.zeros(8, 8))


def test_the_detector_adds_the_alternatives_last_and_finishing_cached_detections_gives_the_same():
    model = tiny_model("MODEL.DIVE.INVERSION.REFINE_BOXES", "True", "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "True",
                       "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", "explained_won_cells",
                       "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "True",
                       "MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K", "4",
                       "MODEL.DIVE.INVERSION.CLASS_ALTERNATIVES_FACTOR", "0.1")
    finished, before, plain, latents = last_step_finished_twice(model, "class_alternatives")
    alternatives = 0
    for ours, theirs, without in zip(finished, before, plain, strict=True):
        assert torch.equal(ours["instances"].pred_classes, theirs["instances"].pred_classes)
        # Every detection is kept with its score; each other one is another class of a kept box, scored at most
        # the factor times that box's best score.
        kept = scores_by_box_and_class(without["instances"])
        returned = scores_by_box_and_class(ours["instances"])
        assert len(returned) == len(ours["instances"])
        assert all(returned[key] == pytest.approx(score) for key, score in kept.items())
        for (box, label), score in returned.items():
            if (box, label) not in kept:
                alternatives += 1
                assert score <= 0.1 * max(s for (b, _), s in kept.items() if b == box) + 1e-7
    assert alternatives > 0, "no alternatives: nothing was checked"
    # The alternatives are the last step: detections that carry them cannot get an earlier one afterwards.
    unscored = [{key: value for key, value in output.items() if key != "joint_layout_scores"} for output in finished]
    with pytest.raises(ValueError, match="carry their class alternatives already"):
        model.finish_detections(latents, unscored)
