"""Extra boxes from the empty layout's error map: the components, adding and suppressing, the config and the
detector path."""

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg

from dive_d2 import add_dive_config
from dive_d2.inversion import BoxClassDecision, ErrorMapCandidates, component_boxes
from dive_d2.inversion import box_classes as box_classes_module
from dive_d2.inversion.error_map import box_mask
from dive_d2.inversion.error_map_candidates import enclosed_boxes, grow_into, split_regions

from .test_box_refinement import blob_map
from .test_dive_training import detections_with_and_without, detector_inputs
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


def discs(*discs: tuple[float, float, float], size: int = 32) -> np.ndarray:
    """(size, size) bool: the union of discs given as (row, column, radius) in cells."""
    rows, columns = np.mgrid[0:size, 0:size]
    return np.any([(rows - r) ** 2 + (columns - c) ** 2 <= radius**2 for r, c, radius in discs], axis=0)


def test_a_part_made_of_two_touching_discs_is_cut_where_it_narrows_and_single_shapes_stay_whole():
    two = discs((10, 10, 6), (17, 19, 6))
    pieces = split_regions(two)
    assert pieces.max() == 2 and ((pieces > 0) == two).all()
    # Each piece holds one disc's centre and ends at that disc's outline (the cut follows the narrowing).
    assert pieces[10, 10] != pieces[17, 19]
    first = np.nonzero(pieces == pieces[10, 10])
    assert (first[0].min(), first[1].min()) == (4, 4)
    rows, columns = np.mgrid[0:32, 0:32]
    square = (rows >= 5) & (rows < 20) & (columns >= 4) & (columns < 19)
    triangle = (rows >= 5) & (rows < 20) & (np.abs(columns - 15) <= (rows - 5) * 0.5)
    for shape in (discs((15, 15, 7)), square, triangle):
        assert split_regions(shape).max() == 1
        assert ((split_regions(shape) == 1) == shape).all()


def test_growing_seeds_through_a_part_takes_the_nearest_seed_and_never_leaves_the_part():
    part = np.zeros((3, 7), dtype=bool)
    part[1, :] = True
    part[0, 6] = True
    seeds = np.zeros((3, 7), dtype=np.int32)
    seeds[1, 0], seeds[1, 5] = 1, 2
    seeds[2, 3] = 3  # outside the part: ignored
    grown = grow_into(seeds, part)
    assert grown[1].tolist() == [1, 1, 1, 2, 2, 2, 2]  # column 3 is 3 steps from seed 1 and 2 from seed 2
    assert grown[0, 6] == 2 and grown[2].tolist() == [0] * 7 and grown[0, :6].tolist() == [0] * 6


def test_split_candidates_follow_each_cut_part_with_its_pieces_boxes():
    error_map = torch.from_numpy(discs((10, 10, 6), (17, 19, 6)).astype(np.float32))
    whole = torch.tensor([[4, 4, 26, 24]]) / 32
    assert torch.allclose(component_boxes(error_map, threshold=0.5), whole)
    split = component_boxes(error_map, threshold=0.5, split=True)
    assert torch.allclose(split, torch.cat([whole, torch.tensor([[4, 4, 17, 17], [13, 11, 26, 24]]) / 32]))
    # A part that is not cut adds nothing, and the step itself leaves out a box it already has.
    single = torch.from_numpy(discs((15, 15, 7)).astype(np.float32))
    assert len(component_boxes(single, threshold=0.5, split=True)) == 1
    added = ErrorMapCandidates(thresholds=(0.5,), split=True).add(detections_of([], [], [], size=(32, 32)), error_map)
    assert added.pred_boxes.tensor.tolist() == (split * 32).tolist()


def test_each_level_adds_its_parts_so_a_higher_level_separates_what_a_low_one_joins():
    error_map = blob_map(blobs=((2, 6, 4, 10), (2, 6, 14, 20)))
    error_map[3:5, 10:14] = 0.3  # a faint bridge: one part at level 0.2, two parts at 0.5
    empty = detections_of([], [], [], size=(32, 32))
    low, both = ErrorMapCandidates(thresholds=(0.2,)), ErrorMapCandidates(thresholds=(0.2, 0.5))
    assert low.add(empty, error_map).pred_boxes.tensor.tolist() == [[4, 2, 20, 6]]
    assert both.add(empty, error_map).pred_boxes.tensor.tolist() == [[4, 2, 20, 6], [4, 2, 10, 6], [14, 2, 20, 6]]
    # A box two levels share is added once.
    assert len(ErrorMapCandidates(thresholds=(0.5, 0.6)).add(empty, error_map)) == 2


def outline_map(*squares: tuple[int, int, int, int], size: int = 32) -> torch.Tensor:
    """(size, size) error map: 1.0 on the one-cell outline of each square (row0, column0, row1, column1),
    cells row0..row1 and column0..column1 inclusive; small noise elsewhere."""
    error_map = torch.full((size, size), 0.01)
    for row0, column0, row1, column1 in squares:
        error_map[row0, column0 : column1 + 1] = error_map[row1, column0 : column1 + 1] = 1.0
        error_map[row0 : row1 + 1, column0] = error_map[row0 : row1 + 1, column1] = 1.0
    return error_map


def test_enclosed_regions_of_overlapping_outlines_each_give_a_box_grown_by_the_margin():
    # Two overlapping outlines make one part, whose box is their union, but they enclose three regions: the
    # first square's own interior, the overlap, the second's own.
    error_map = outline_map((4, 4, 14, 14), (10, 10, 20, 20))
    assert torch.allclose(component_boxes(error_map, 0.5), torch.tensor([[4, 4, 21, 21]]) / 32)
    interiors = enclosed_boxes(error_map, 0.5, margin=0) * 32
    assert sorted(interiors.tolist()) == sorted([[5, 5, 14, 14], [11, 11, 14, 14], [11, 11, 20, 20]])
    grown = enclosed_boxes(error_map, 0.5, margin=1) * 32
    assert [4, 4, 15, 15] in grown.tolist() and [10, 10, 21, 21] in grown.tolist()
    # Margins stop at the map's edges.
    assert (enclosed_boxes(error_map, 0.5, margin=40) * 32).tolist()[0] == [0, 0, 32, 32]


def test_a_one_cell_gap_does_not_open_an_outline_and_open_regions_are_not_enclosed():
    error_map = outline_map((4, 4, 14, 14))
    error_map[4, 9] = 0.01  # a gap in the top edge
    assert (enclosed_boxes(error_map, 0.5, margin=0) * 32).tolist() == [[5, 5, 14, 14]]
    error_map[4, 8:11] = 0.01  # three cells: the interior joins the outside
    assert enclosed_boxes(error_map, 0.5).shape == (0, 4)
    # An outline against the map's edge encloses nothing: the region inside touches the edge.
    assert enclosed_boxes(outline_map((0, 0, 10, 10))[1:, 1:], 0.5).shape == (0, 4)
    assert enclosed_boxes(torch.zeros(8, 8), 0.5).shape == (0, 4)


def test_holes_join_the_candidates_at_each_level():
    error_map = outline_map((4, 4, 14, 14), (10, 10, 20, 20))
    empty = detections_of([], [], [], size=(32, 32))
    without = ErrorMapCandidates(thresholds=(0.5,)).add(empty, error_map).pred_boxes.tensor.tolist()
    with_holes = ErrorMapCandidates(thresholds=(0.5,), holes=True, hole_margin=1).add(empty, error_map)
    assert without == [[4, 4, 21, 21]]
    assert with_holes.pred_boxes.tensor.tolist()[0] == [4, 4, 21, 21] and len(with_holes) == 4
    assert [4, 4, 15, 15] in with_holes.pred_boxes.tensor.tolist()
    with pytest.raises(ValueError, match="CANDIDATE_HOLE_MARGIN must be >= 0 cells, got -1"):
        ErrorMapCandidates(holes=True, hole_margin=-1)


def test_a_residual_map_outlines_the_neighbour_that_made_one_part_with_the_explained_object():
    # Two overlapping outlines, neither enclosing a region the other does not cross: without holes the map's
    # only box is their union. With the first square's object explained, the residual outlines the second.
    error_map = outline_map((4, 4, 14, 14), (10, 10, 20, 20))
    first_box = torch.tensor([[4, 4, 15, 15]]) / 32
    explained = (error_map * box_mask(first_box, 32, 32))[None]
    candidates = ErrorMapCandidates(thresholds=(0.5,), residuals=1)
    union = candidates.add(detections_of([], [], [], size=(32, 32)), error_map)
    assert union.pred_boxes.tensor.tolist() == [[4, 4, 21, 21]]
    widened = candidates.add_residuals(union, explained, error_map)
    assert widened.pred_boxes.tensor.tolist() == [[4, 4, 21, 21], [10, 10, 21, 21]]
    assert widened.scores.tolist() == [0.0, 0.0] and widened.pred_classes.tolist() == [0, 0]
    # Levels stay fractions of the empty map's maximum: a residual whose peak was explained is not rescaled.
    assert len(candidates.add_residuals(union, (error_map * 0.6)[None], error_map)) == 1
    assert len(candidates.add_residuals(union, torch.zeros(0, 32, 32), error_map)) == 1
    with pytest.raises(ValueError, match=r"explained_cells \(M, h, w\), got \(32, 32\) and \(1, 32, 16\)"):
        candidates.add_residuals(union, torch.zeros(1, 32, 16), error_map)
    with pytest.raises(ValueError, match="CANDIDATE_RESIDUALS must be >= 0 detections, got -1"):
        ErrorMapCandidates(residuals=-1)


def test_a_pair_residual_outlines_the_object_joined_to_two_explained_neighbours():
    # Three outlines on a diagonal, each touching the next at a corner: the map's one part is their union, and
    # explaining either end alone leaves the middle joined to the other end; only the two ends explained
    # together leave the middle's own box.
    error_map = outline_map((2, 2, 8, 8), (9, 9, 15, 15), (16, 16, 22, 22))
    ends = torch.tensor([[2, 2, 9, 9], [16, 16, 23, 23]]) / 32
    explained = torch.stack([error_map * box_mask(box[None], 32, 32) for box in ends])
    middle = [9.0, 9.0, 16.0, 16.0]
    empty = detections_of([], [], [], size=(32, 32))
    assert ErrorMapCandidates(thresholds=(0.5,)).add(empty, error_map).pred_boxes.tensor.tolist() == [[2, 2, 23, 23]]
    singles = ErrorMapCandidates(thresholds=(0.5,), residuals=2).add_residuals(empty, explained, error_map)
    assert singles.pred_boxes.tensor.tolist() == [[9.0, 9.0, 23.0, 23.0], [2.0, 2.0, 16.0, 16.0]]
    pairs = ErrorMapCandidates(thresholds=(0.5,), residual_pairs=2)
    assert pairs.residual_detections == 2
    assert pairs.add_residuals(empty, explained, error_map).pred_boxes.tensor.tolist() == [middle]
    # Only the first residual_pairs detections pair up: with one row given there is no pair.
    assert len(pairs.add_residuals(empty, explained[:1], error_map)) == 0
    with pytest.raises(ValueError, match="CANDIDATE_RESIDUAL_PAIRS must be 0 \\(off\\) or >= 2 detections, got 1"):
        ErrorMapCandidates(residual_pairs=1)


def test_the_class_decision_reuses_cached_maps_and_decides_as_without_them(monkeypatch):
    model = tiny_model()
    evaluated = []
    original = box_classes_module.layout_error_maps

    def counting(model, latents, layouts, *pairs):
        evaluated.append(len(layouts))
        return original(model, latents, layouts, *pairs)

    monkeypatch.setattr(box_classes_module, "layout_error_maps", counting)
    latents = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    pairs = (torch.tensor([100, 500]), torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    empty_map = torch.rand(16, 16, generator=torch.Generator().manual_seed(2)) + 0.5
    first = detections_of([[0, 0, 32, 32], [20, 20, 60, 60]], [0, 0], [0.0, 0.0])
    both = detections_of([[0, 0, 32, 32], [20, 20, 60, 60], [8, 40, 40, 64]], [0, 0, 0], [0.0, 0.0, 0.0])
    decision, cache = BoxClassDecision("explained_won_cells"), {}
    decision(model, latents, first, *pairs, empty_map, cache)
    cached = decision(model, latents, both, *pairs, empty_map, cache)
    classes = model.tokenizer.num_classes
    assert evaluated == [2 * classes, 1 * classes] and len(cache) == 3
    fresh = decision(model, latents, both, *pairs, empty_map)
    assert torch.equal(cached.pred_boxes.tensor, fresh.pred_boxes.tensor)
    assert torch.equal(cached.scores, fresh.scores) and torch.equal(cached.pred_classes, fresh.pred_classes)
    # Explained cells come from the cache: the empty map minus the decided class's map, inside the box only.
    cells = BoxClassDecision.explained_cells(cached, empty_map, cache)
    assert cells.shape == (len(cached), 16, 16)
    for box, label, explained in zip(cached.pred_boxes.tensor, cached.pred_classes, cells, strict=True):
        inside = box_mask(box[None] / 64, 16, 16)  # a 64 x 64 image on a 16 x 16 map
        expected = (empty_map - cache[tuple(box.tolist())][label]).clamp(min=0.0) * inside
        assert torch.equal(explained, expected) and inside.any() and not inside.all()
    with pytest.raises(KeyError, match="has no error maps in the cache"):
        BoxClassDecision.explained_cells(detections_of([[1, 1, 9, 9]], [0], [0.5]), empty_map, cache)


def test_added_boxes_are_in_pixels_skip_boxes_already_found_and_wait_for_a_class():
    candidates = ErrorMapCandidates(thresholds=(0.5,))
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
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_THRESHOLDS = (0.3, 0.1)
    step = ErrorMapCandidates.from_config(cfg)
    assert (step.thresholds, step.nms_iou, step.split) == ((0.3, 0.1), 0.5, False)
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_SPLIT = True
    assert ErrorMapCandidates.from_config(cfg).split
    assert not step.holes and step.hole_margin == 2
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_HOLES = True
    cfg.MODEL.DIVE.INVERSION.CANDIDATE_HOLE_MARGIN = 1
    step = ErrorMapCandidates.from_config(cfg)
    assert step.holes and step.hole_margin == 1
    for levels in ((1.0,), (), (0.2, 0.0)):
        with pytest.raises(ValueError, match="0 < CANDIDATE_THRESHOLDS < 1"):
            ErrorMapCandidates(thresholds=levels)


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


@pytest.mark.parametrize("residuals, residual_pairs", [(0, 0), (3, 0), (2, 3)])
def test_the_detector_adds_candidates_before_the_class_decision_and_a_cache_gets_the_same(residuals, residual_pairs):
    model = tiny_model("MODEL.DIVE.INVERSION.REFINE_BOXES", "True", "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES", "True",
                       "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", "explained_share",
                       "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "True",
                       "MODEL.DIVE.INVERSION.CANDIDATE_RESIDUALS", str(residuals),
                       "MODEL.DIVE.INVERSION.CANDIDATE_RESIDUAL_PAIRS", str(residual_pairs))
    assert (model.box_candidates.residuals, model.box_candidates.residual_pairs) == (residuals, residual_pairs)
    finished, refined_only, latents = detections_with_and_without(model, detector_inputs(), "box_candidates",
                                                                  "box_classes")
    with torch.no_grad():
        reclassified_only = [dict(output) for output in refined_only]
        assert model.finish_detections(latents, refined_only) == ["candidate_boxes", "reclassified_boxes"]
        candidates, model.box_candidates = model.box_candidates, None
        model.finish_detections(latents, reclassified_only)
        model.box_candidates = candidates
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
