"""Class decision by p(x|y)'s error inside each box: the rule on planted error maps, the detector path and the
cache tool's use of it."""

import pytest
import torch

from dive_d2.inversion import BoxClassDecision
from dive_d2.inversion import box_classes as box_classes_module
from dive_d2.inversion.box_classes import errors_inside_boxes, greedy_marginal_scores, won_cell_scores

from .test_dive_training import detections_with_and_without, detector_inputs
from .test_inversion import detections_of, tiny_model


def test_errors_inside_boxes_sum_each_boxs_cells_and_mark_boxes_without_a_cell():
    maps = torch.zeros(2, 3, 4, 4)
    maps[0, 1, 0:2, 0:2] = 1.0  # box 0's class-1 layout leaves error on the box's 4 cells
    maps[0, 2, 3, 3] = 5.0  # outside box 0: not counted
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.55, 0.55, 0.6, 0.6]])  # box 1 holds no cell centre
    errors = errors_inside_boxes(maps, boxes)
    assert errors[0].tolist() == [0.0, 4.0, 0.0]
    assert errors[1].isnan().all()


def test_each_box_takes_the_class_whose_layout_leaves_the_least_error_inside_it(monkeypatch):
    model = tiny_model()
    tokenizer = model.tokenizer
    # 64 x 64 image, 16 x 16 latent grid (4 px per cell); the planted error depends on each layout's class.
    found = detections_of([[0, 0, 32, 32], [32, 32, 64, 64], [32, 0, 64, 32], [0, 60, 1, 61]], [0, 0, 0, 2],
                          [0.9, 0.8, 0.7, 0.6])
    best_class = {0: 2, 1: 1, 2: 1}  # by box; the last box is too small to hold a cell centre
    seen = []

    def planted_maps(model, latents, layouts, timesteps, noise):
        seen.append(layouts.clone())
        maps = torch.ones(len(layouts), 16, 16)
        for row, layout in enumerate(layouts):
            box, candidate = divmod(row, tokenizer.num_classes)
            if box in best_class:  # on the tiny model's 8 px corner grid (the last box rounds to nothing)
                decoded = tokenizer.decode(layout, 64, 64)
                assert decoded.classes.tolist() == [candidate], "one object per candidate layout"
                assert decoded.boxes.tolist() == [found.pred_boxes.tensor[box].tolist()]
            if best_class.get(box) == candidate:
                maps[row] = 0.5
        return maps

    monkeypatch.setattr(box_classes_module, "layout_error_maps", planted_maps)
    latents = torch.zeros(1, 3, 16, 16)
    decided = BoxClassDecision()(model, latents, found, torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 16, 16))
    assert len(seen) == 1 and len(seen[0]) == 4 * tokenizer.num_classes
    assert decided.pred_classes.tolist() == [2, 1, 1, 2]
    assert decided.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert torch.equal(decided.pred_boxes.tensor, found.pred_boxes.tensor)
    with pytest.raises(ValueError, match=r"latents must be \(1, C, h, w\), got shape \(2, 3, 16, 16\)"):
        BoxClassDecision()(model, torch.zeros(2, 3, 16, 16), found, torch.zeros(2, dtype=torch.long),
                           torch.zeros(2, 3, 16, 16))


def test_boxes_that_end_equal_are_merged(monkeypatch):
    model = tiny_model()
    found = detections_of([[0, 0, 32, 32], [0, 0, 32, 32]], [0, 1], [0.5, 0.9])
    monkeypatch.setattr(box_classes_module, "layout_error_maps",
                        lambda model, latents, layouts, *pairs: torch.stack([torch.full((16, 16), float(c == 2))
                                                                             for c in [0, 1, 2] * (len(layouts) // 3)]))
    decided = BoxClassDecision()(model, torch.zeros(1, 3, 16, 16), found, torch.zeros(1, dtype=torch.long),
                                 torch.zeros(1, 3, 16, 16))
    assert decided.pred_classes.tolist() == [0] and decided.scores.tolist() == pytest.approx([0.9])


@pytest.mark.parametrize("score", ["layout", "explained", "explained_won_cells"])
def test_the_detector_reclassifies_what_it_would_return_and_finishes_only_missing_steps(score):
    model = tiny_model("MODEL.DIVE.INVERSION.REFINE_BOXES", "True", "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "True",
                       "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", score, "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES",
                       "False")
    assert model.box_classes.score == score
    finished, refined_only, latents = detections_with_and_without(model, detector_inputs(), "box_classes")
    with torch.no_grad():
        assert model.finish_detections(latents, refined_only) == ["reclassified_boxes"]
        assert model.finish_detections(latents, refined_only) == []
    assert any(len(output["instances"]) for output in finished), "no detections: nothing would be compared"
    for ours, theirs in zip(finished, refined_only, strict=True):
        assert ours["reclassified_boxes"] == theirs["reclassified_boxes"] == ours["refined_boxes"] == 1
        for mine, other in zip((ours["instances"].pred_boxes.tensor, ours["instances"].scores,
                                ours["instances"].pred_classes),
                               (theirs["instances"].pred_boxes.tensor, theirs["instances"].scores,
                                theirs["instances"].pred_classes), strict=True):
            assert torch.equal(mine, other)
    with pytest.raises(ValueError, match="reclassified already"):
        model.reclassify_boxes(latents, refined_only)


def test_the_explained_score_is_the_fraction_of_the_boxs_empty_layout_error_its_object_explains(monkeypatch):
    model = tiny_model()
    found = detections_of([[0, 0, 32, 32], [32, 32, 64, 64], [0, 60, 1, 61]], [0, 0, 2], [0.9, 0.8, 0.7])
    empty_map = torch.full((16, 16), 2.0)
    empty_map[8:, 8:] = 0.0  # the second box's cells: nothing to explain there
    # Every candidate of the first box leaves 0.5 per cell but class 1 leaves 0.25; others leave 1.0.
    def planted_maps(model, latents, layouts, timesteps, noise):
        maps = torch.ones(len(layouts), 16, 16)
        maps[0:3] = 0.5
        maps[1] = 0.25
        return maps

    monkeypatch.setattr(box_classes_module, "layout_error_maps", planted_maps)
    pairs = (torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 16, 16))
    decided = BoxClassDecision("explained")(model, torch.zeros(1, 3, 16, 16), found, *pairs, empty_map)
    # Box 0: (2 - 0.25) / 2 of its error explained; box 1 has none to explain; box 2 holds no cell.
    assert decided.pred_classes.tolist() == [1, 0, 2]
    assert decided.scores.tolist() == pytest.approx([0.875, 0.0, 0.0])
    kept = BoxClassDecision("layout")(model, torch.zeros(1, 3, 16, 16), found, *pairs)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    with pytest.raises(ValueError, match="needs the \\(h, w\\) empty-layout error map, got None"):
        BoxClassDecision("explained")(model, torch.zeros(1, 3, 16, 16), found, *pairs)
    with pytest.raises(ValueError, match="score must be one of"):
        BoxClassDecision("likelihood")


def test_marginal_scores_rank_greedily_and_give_nothing_to_a_box_whose_cells_are_explained_already():
    explained = torch.zeros(4, 4, 4)
    explained[0, 0:2, 0:2] = 1.0  # a whole object: 4 cells
    explained[1, 0:2, 0:1] = 1.0  # a part of it: 2 of those cells, explained no better
    explained[2, 3, 0:3] = 1.0  # another object: 3 cells
    explained[3, 0:2, 0:2] = 0.5  # the first object again, explained half as well...
    explained[3, 2, 3] = 1.0  # ...plus one cell nothing else explains
    fractions = torch.tensor([1.0, 1.0, 0.5, 1.0])
    scores = greedy_marginal_scores(fractions, explained, torch.tensor(10.0))
    # Ranked: 0 (sqrt .4), 3 (sqrt .1: only its own cell counts), 2 (.5 sqrt .3), 1 (0).
    assert scores.tolist() == pytest.approx([0.4**0.5, 0.0, 0.5 * 0.3**0.5, 0.1**0.5])
    assert greedy_marginal_scores(fractions, explained, torch.tensor(0.0)).tolist() == [0.0] * 4
    assert len(greedy_marginal_scores(torch.zeros(0), torch.zeros(0, 4, 4), torch.tensor(1.0))) == 0


def test_the_marginal_score_drops_a_part_box_that_the_share_score_ranks_high(monkeypatch):
    model = tiny_model()
    # 64 x 64 image, 16 x 16 cells: box 1 is the left half of box 0; box 2 elsewhere.
    found = detections_of([[0, 0, 32, 32], [0, 0, 16, 32], [40, 40, 64, 64]], [0, 0, 0], [0.9, 0.8, 0.7])
    empty_map = torch.zeros(16, 16)
    empty_map[0:8, 0:8] = 1.0
    empty_map[10:16, 10:16] = 1.0
    monkeypatch.setattr(box_classes_module, "layout_error_maps",
                        lambda model, latents, layouts, *pairs: torch.zeros(len(layouts), 16, 16))
    pairs = (torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 16, 16))
    share = BoxClassDecision("explained_share")(model, torch.zeros(1, 3, 16, 16), found, *pairs, empty_map)
    marginal = BoxClassDecision("explained_marginal")(model, torch.zeros(1, 3, 16, 16), found, *pairs, empty_map)
    total = 64.0 + 36.0

    def score_by_box(detections):
        return {tuple(box): score for box, score in zip(detections.pred_boxes.tensor.tolist(),
                                                        detections.scores.tolist(), strict=True)}

    assert score_by_box(share) == pytest.approx({(0, 0, 32, 32): (64 / total) ** 0.5,
                                                 (0, 0, 16, 32): (32 / total) ** 0.5,
                                                 (40, 40, 64, 64): (36 / total) ** 0.5})
    assert score_by_box(marginal) == pytest.approx({(0, 0, 32, 32): (64 / total) ** 0.5, (0, 0, 16, 32): 0.0,
                                                    (40, 40, 64, 64): (36 / total) ** 0.5})


def test_won_cells_go_to_the_box_that_explains_them_best_so_a_union_box_scores_nothing():
    explained = torch.zeros(4, 4, 6)
    explained[0, 0:2, 0:2] = 1.0  # object A, explained fully by its own box
    explained[1, 0:2, 3:5] = 1.0  # object B
    explained[2, 0:2, 0:2] = 0.7  # the box joining A and B: one object drawn there explains both less well
    explained[2, 0:2, 3:5] = 0.7  # (the gap between them holds no error to explain)
    explained[3, 0:2, 0:1] = 0.8  # a part of A, explained less well than by A's box
    fractions = torch.tensor([1.0, 1.0, 1.0, 0.8])
    everyone = torch.ones(4, 4, dtype=torch.bool)
    scores = won_cell_scores(fractions, explained, torch.tensor(20.0), everyone)
    assert scores.tolist() == pytest.approx([0.2**0.5, 0.2**0.5, 0.0, 0.0])
    # The greedy marginal score ranks the union box first: it holds the most error.
    greedy = greedy_marginal_scores(fractions, explained, torch.tensor(20.0))
    assert greedy[2] > greedy[0] > 0
    # The order of the boxes does not matter.
    order = torch.tensor([2, 3, 1, 0])
    assert won_cell_scores(fractions[order], explained[order], torch.tensor(20.0), everyone).tolist() == (
        pytest.approx(scores[order].tolist()))
    # A box that is no rival (a duplicate the suppression merges) does not take cells.
    not_rivals = everyone.clone()
    not_rivals[3, 0] = False
    assert won_cell_scores(fractions, explained, torch.tensor(20.0), not_rivals)[3] == pytest.approx(0.8 * 0.08**0.5)
    assert won_cell_scores(fractions, explained, torch.tensor(0.0), everyone).tolist() == [0.0] * 4
    assert len(won_cell_scores(torch.zeros(0), torch.zeros(0, 4, 4), torch.tensor(1.0), everyone[:0, :0])) == 0


def test_the_won_cell_score_lets_same_class_duplicates_share_cells_and_reads_its_iou_from_the_config(monkeypatch):
    model = tiny_model()
    # 64 x 64 image, 16 x 16 cells: two near-identical boxes on one object, a box joining it with a second one.
    found = detections_of([[0, 0, 32, 32], [0, 0, 32, 28], [0, 0, 64, 32], [40, 0, 64, 32]], [0, 0, 0, 0],
                          [0.9, 0.8, 0.7, 0.6])
    empty_map = torch.zeros(16, 16)
    empty_map[0:8, 0:8] = 1.0
    empty_map[0:8, 10:16] = 1.0

    def error_maps(model, latents, layouts, *pairs):
        # Every box's single-object layout explains the cells of the objects it holds, the wide box only half.
        maps = empty_map.expand(len(layouts), 16, 16).clone()
        classes = model.tokenizer.num_classes
        for index in range(len(layouts)):
            box = index // classes
            if box in (0, 1, 3):
                maps[index][empty_map > 0] = 0.0
            else:
                maps[index][empty_map > 0] = 0.5
        return maps

    monkeypatch.setattr(box_classes_module, "layout_error_maps", error_maps)
    pairs = (torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 16, 16))
    decided = BoxClassDecision("explained_won_cells", duplicate_iou=0.5)(model, torch.zeros(1, 3, 16, 16), found,
                                                                         *pairs, empty_map)
    total = 64.0 + 48.0
    by_box = {tuple(box): score for box, score in zip(decided.pred_boxes.tensor.tolist(), decided.scores.tolist(),
                                                      strict=True)}
    # Box 1 (IoU 0.875 with box 0, same class) shares box 0's cells; inside its 7 rows it explains 56 of them.
    assert by_box == pytest.approx({(0, 0, 32, 32): (64 / total) ** 0.5, (0, 0, 32, 28): (56 / total) ** 0.5,
                                    (0, 0, 64, 32): 0.0, (40, 0, 64, 32): (48 / total) ** 0.5})
    with pytest.raises(ValueError, match="duplicate_iou"):
        BoxClassDecision("explained_won_cells", duplicate_iou=0.0)
    configured = tiny_model("MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", True,
                            "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", "explained_won_cells",
                            "MODEL.DIVE.INVERSION.CANDIDATE_NMS_IOU", 0.3)
    assert (configured.box_classes.score, configured.box_classes.duplicate_iou) == ("explained_won_cells", 0.3)
