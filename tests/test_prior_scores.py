"""Prior scores: each detection's score is weighed by p(y)'s denoising error of its object alone, last of all."""

import math

import pytest
import torch

from dive_d2.inversion import PriorScores

from .test_class_alternatives import OBJECT, last_step_finished_twice, scores_by_box_and_class
from .test_inversion import detections_of, tiny_model

WIDE = (0, 0, 64, 16)  # not shaped like an object: the stand-in prior finds it atypical


def aspect_prior(model, seen):
    """p(y)'s stand-in: error 1 for the empty layout, 1 + |log(width / height)| of its first object otherwise."""
    vocabulary = model.layout_encoder.vocabulary()

    def errors(embeddings, timesteps, noise):
        assert len(embeddings) == len(timesteps) == len(noise)
        tokens = torch.cdist(embeddings, vocabulary[None]).argmin(-1)  # the rows are exact: back to the tokens
        out = []
        for layout in tokens:
            decoded = model.tokenizer.decode(layout, 64, 64)
            seen.append(len(decoded.boxes))
            if len(decoded.boxes) == 0:
                out.append(1.0)
                continue
            x0, y0, x1, y1 = decoded.boxes[0].tolist()
            out.append(1.0 + abs(math.log((x1 - x0) / (y1 - y0))))
        return torch.tensor(out)
    return errors


def with_prior_scores(monkeypatch, detections, weight=1.0, pairs=2):
    model = tiny_model()
    seen = []
    monkeypatch.setattr(model, "prior_denoising_error", aspect_prior(model, seen))
    return PriorScores(weight, num_pairs=pairs)(model, detections), seen


def test_each_score_is_weighed_by_the_prior_error_of_its_object_over_the_empty_layouts(monkeypatch):
    found = detections_of([list(WIDE), list(OBJECT)], [1, 0], [0.8, 0.5])
    result, seen = with_prior_scores(monkeypatch, found, weight=0.5)
    wide_error = 1.0 + math.log(4.0)
    # The wide box drops below the square one: 0.8 * exp(-0.5 * 2.39) = 0.24 < 0.5 * exp(-0.5).
    assert result.pred_boxes.tensor.tolist() == [list(OBJECT), list(WIDE)]
    assert result.pred_classes.tolist() == [0, 1]
    assert result.scores.tolist() == pytest.approx([0.5 * math.exp(-0.5), 0.8 * math.exp(-0.5 * wide_error)])
    # Two pairs for each object's layout and for the empty one, all in one call.
    assert sorted(seen) == [0, 0, 1, 1, 1, 1]
    assert len(with_prior_scores(monkeypatch, detections_of([], [], []))[0]) == 0
    with pytest.raises(ValueError, match=r"weight \(MODEL.DIVE.INVERSION.PRIOR_SCORE_WEIGHT\) must be > 0, got 0.0"):
        PriorScores(0.0)
    with pytest.raises(ValueError, match=r"PRIOR_SCORE_PAIRS must be >= 1, got 0"):
        PriorScores(1.0, num_pairs=0)


def test_the_detector_weighs_the_scores_last_and_finishing_cached_detections_gives_the_same():
    model = tiny_model("MODEL.DIVE.INVERSION.REFINE_BOXES", "True", "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "True",
                       "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", "explained_won_cells",
                       "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "True",
                       "MODEL.DIVE.INVERSION.CLASS_ALTERNATIVES_FACTOR", "0.1",
                       "MODEL.DIVE.INVERSION.PRIOR_SCORE_WEIGHT", "2.0")
    finished, _, plain, latents = last_step_finished_twice(model, "prior_scores")
    weighed = 0
    for ours, without in zip(finished, plain, strict=True):
        # The same detections, each score times a factor in (0, 1), sorted again.
        scores = ours["instances"].scores
        assert torch.equal(scores, scores.sort(descending=True).values)
        before_scores = scores_by_box_and_class(without["instances"])
        after_scores = scores_by_box_and_class(ours["instances"])
        assert after_scores.keys() == before_scores.keys()
        for key, score in after_scores.items():
            if before_scores[key] > 0:
                assert 0 < score < before_scores[key]
                weighed += 1
            else:
                assert score == 0
    assert weighed > 0, "no detections: nothing was checked"
    unscored = [{key: value for key, value in output.items() if key != "class_alternatives"} for output in finished]
    with pytest.raises(ValueError, match="carry their prior scores already"):
        model.finish_detections(latents, unscored)
