"""More boxes: the outlines of the empty layout's error map as extra candidates for the class decision.

Not part of the paper's method; off unless ``MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES`` (which needs
``RECLASSIFY_BOXES`` and a ``RECLASSIFY_SCORE`` from the error maps; on in configs/Base-DIVE.yaml since
session 29). After the inversion and the box refinement (``box_refinement.py``) a third of the
objects of ``dive_shapes_val`` still have no box at IoU 0.5 (docs/detection.md, "Extra boxes from the error
map"), while the class decision (``box_classes.py``) is nearly perfect once a box is right: given the
ground-truth boxes, its classes and scores reach AP 97.0 on images 0-199
(``tools/refine_cached_detections.py --ground-truth-boxes``). So the step widens the
set of boxes the decision sees: every 8-connected part of the empty layout's error map above a level times its
maximum (the mask ``box_refinement.py`` fits boxes to), at each of the configured levels, whose bounding box
is not already a detection joins the detections. The class decision then gives each box its class and score from p(x|y),
and ``suppress_overlaps`` keeps, per class, the best-scored of boxes that overlap at IoU above ``nms_iou``
(the inverted and the component box of one object are usually near-duplicates).

Objects that touch or overlap make one part of the map, whose box is their union: on ``dive_shapes_val``
(session 29's default) 225 of the 436 objects left without a box at IoU 0.5 have as their best box the union
box of themselves and a neighbour. Two remedies, both keep the union box as a candidate and let the class
decision's scores choose: several levels (a higher one separates objects whose faint border a low one joins),
and ``split``: each part is also cut where it narrows (``split_regions``: the cores left after shrinking it
until it falls apart, grown back over it breadth first) and every piece's box joins as well.

``holes`` (session 31): the map marks outlines (p(x|y) without a layout cannot denoise an object's edges; a
flat interior it can), so two overlapping objects make one part whose cut does not narrow, but each still
encloses low-error regions of its own. ``enclosed_boxes`` adds the box of every region the mask encloses (after
closing one-cell gaps in the outlines), grown by the outline's width: on ``dive_shapes_val`` images 0-99 these
boxes (0.6 per image) give 15 of the 38 objects left without any box at IoU 0.5 one.

``residuals`` (session 33): what is left after a first class decision. Objects that overlap without either
enclosing a region of its own still give only their union box. Once the decision has found one of them, the
residual map (the empty map minus what that object's single-object layout explains, cell by cell) still outlines
the other, so ``add_residuals`` adds the outline boxes of the residual maps of the best-scored detections and the
decision runs again over all boxes (only the new boxes cost model evaluations: ``BoxClassDecision`` keeps each
box's maps). On ``dive_shapes_val`` images 0-99 the objects without any box at IoU 0.5 fall from 20 to 9.

The map is p(x|y)'s own signal, as in the refinement; no second detector is involved.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.structures import Boxes, Instances
from torchvision.ops import batched_nms

from .box_classes import BOX_SCORES
from .box_refinement import error_mask


def _normalised(boxes: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(K, 4) float32 boxes XYXY in [0, 1] from cell-edge boxes (K, 4) of an (height, width) map."""
    return torch.from_numpy(boxes / np.array([width, height, width, height])).float().reshape(-1, 4)


def _label_boxes(labels: np.ndarray, min_cells: int) -> np.ndarray:
    """(K, 4) XYXY cell-edge boxes of the labels >= 1 of ``labels`` (h, w) with at least ``min_cells`` cells,
    in label order."""
    boxes = []
    for label in range(1, int(labels.max(initial=0)) + 1):
        rows, columns = np.nonzero(labels == label)
        if len(rows) >= min_cells:
            boxes.append([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1])
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def grow_into(seeds: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``seeds`` (h, w) int32 labels (0: none) grown over ``part`` (h, w) bool, breadth first through
    8-neighbours: each cell of the part takes the label of the seed it is fewest steps from (ties: the seed
    reached first in row-major order). Cells outside the part, or not reachable in it, stay 0."""
    labels = np.where(part, seeds, 0).astype(np.int32)
    height, width = labels.shape
    queue = deque(zip(*np.nonzero(labels), strict=True))
    while queue:
        row, column = queue.popleft()
        for d_row in (-1, 0, 1):
            for d_column in (-1, 0, 1):
                r, c = row + d_row, column + d_column
                if 0 <= r < height and 0 <= c < width and part[r, c] and labels[r, c] == 0:
                    labels[r, c] = labels[row, column]
                    queue.append((r, c))
    return labels


def split_regions(part: np.ndarray) -> np.ndarray:
    """(h, w) int32 labels 1..R of the pieces of one 8-connected part ``part`` (h, w) bool, 0 outside it.

    The part is shrunk, one cell of distance to its edge (L2) at a time, until its core falls apart into
    several pieces; each core then grows back over the part (``grow_into``), so the cut runs where the part
    narrows. A part that never falls apart is one piece (label 1)."""
    cells = part.astype(np.uint8)
    distance = cv2.distanceTransform(np.pad(cells, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    for radius in range(1, int(distance.max())):
        count, cores = cv2.connectedComponents((distance > radius).astype(np.uint8), connectivity=8)
        if count > 2:  # label 0 is everything outside the cores
            break
    else:
        return cells.astype(np.int32)
    return grow_into(cores.astype(np.int32), part)


def component_boxes(error_map: torch.Tensor, threshold: float, min_cells: int = 2, split: bool = False,
                    reference: float | None = None) -> torch.Tensor:
    """(K, 4) float32 bounding boxes, XYXY normalised to [0, 1] on cell edges, of the 8-connected parts of
    ``error_map`` (h, w) above ``threshold`` times ``reference`` (default: its maximum) that hold at least
    ``min_cells`` cells (a lone cell is noise), in the order OpenCV labels them (row-major by first cell). With
    ``split``, each part that ``split_regions`` cuts is followed by its pieces' boxes (pieces of at least
    ``min_cells`` cells). (0, 4) for a map without a positive value."""
    mask = error_mask(error_map, threshold, reference)
    height, width = mask.shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for label in range(1, count):  # label 0 is the background
        left, top, box_width, box_height, area = stats[label]
        if area < min_cells:
            continue
        boxes.append(np.array([[left, top, left + box_width, top + box_height]], dtype=np.float64))
        if split:
            pieces = split_regions(labels == label)
            if pieces.max() > 1:
                boxes.append(_label_boxes(pieces, min_cells))
    return _normalised(np.concatenate(boxes) if boxes else np.zeros((0, 4)), height, width)


def enclosed_boxes(error_map: torch.Tensor, threshold: float, margin: int = 2, min_cells: int = 2,
                   reference: float | None = None) -> torch.Tensor:
    """(K, 4) float32 boxes, XYXY normalised to [0, 1] on cell edges, of the regions that the mask of
    ``error_map`` (h, w) above ``threshold`` times ``reference`` (default: its maximum) encloses, in OpenCV's
    label order.

    The mask is first closed with a 3x3 kernel (a one-cell gap does not open an outline); a region is a
    4-connected part of the cells outside the closed mask that touches no edge of the map and holds at least
    ``min_cells`` cells. Each region's box grows by ``margin`` cells on every side (the outline around it),
    clipped to the map. (0, 4) for a map without a positive value."""
    mask = error_mask(error_map, threshold, reference).astype(np.uint8)
    height, width = mask.shape
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(1 - closed, connectivity=4)
    boxes = []
    for label in range(1, count):
        left, top, box_width, box_height, area = stats[label]
        touches_edge = left == 0 or top == 0 or left + box_width == width or top + box_height == height
        if area < min_cells or touches_edge:
            continue
        boxes.append([max(0, left - margin), max(0, top - margin), min(width, left + box_width + margin),
                      min(height, top + box_height + margin)])
    return _normalised(np.array(boxes, dtype=np.float64).reshape(-1, 4), height, width)


def _append_new_boxes(detections: Instances, boxes: torch.Tensor) -> Instances:
    """``detections`` followed by the boxes of ``boxes`` (K, 4) XYXY normalised to [0, 1] that are not among
    them yet (first occurrence kept), in pixels of ``detections.image_size``, with class 0 and score 0."""
    height, width = detections.image_size
    device = detections.scores.device
    pixels = boxes.float() * torch.tensor([width, height, width, height], dtype=torch.float32)
    present = {tuple(box) for box in detections.pred_boxes.tensor.detach().float().cpu().tolist()}
    extra = []
    for box in pixels.tolist():  # a cut, or another level, can repeat a box
        if tuple(box) not in present:
            present.add(tuple(box))
            extra.append(box)
    extra = torch.tensor(extra, dtype=torch.float32).reshape(-1, 4)
    candidates = Instances(detections.image_size)
    candidates.pred_boxes = Boxes(extra.to(device))
    candidates.scores = torch.zeros(len(extra), device=device)
    candidates.pred_classes = torch.zeros(len(extra), dtype=torch.int64, device=device)
    return Instances.cat([detections, candidates])


class ErrorMapCandidates:
    """Adds the error map's component boxes to the detections and, after the class decision, suppresses
    overlapping boxes of a class; see the module docstring."""

    def __init__(self, thresholds: Sequence[float] = (0.15,), nms_iou: float = 0.5, split: bool = False,
                 holes: bool = False, hole_margin: int = 2, residuals: int = 0, residual_pairs: int = 0):
        """
        Args:
            thresholds: the mask's levels; at level t a cell belongs to the mask when its error exceeds t x the
                map's maximum; each in (0, 1). Every level's parts join (a low level outlines whole objects, a
                higher one separates objects that a low level joins).
            nms_iou: of two boxes of the same class with IoU above this, the lower-scored is dropped; in (0, 1].
            split: also add the boxes of the pieces of each part cut where it narrows (``split_regions``).
            holes: also add, at each level, the boxes of the regions the mask encloses (``enclosed_boxes``),
                grown by ``hole_margin`` cells (>= 0) on every side.
            residuals: how many of the best-scored detections after a first class decision get their residual
                maps outlined (``add_residuals``); 0: none (>= 0).
            residual_pairs: of how many of the best-scored detections every pair gets the residual map of the
                two explained together outlined as well (``add_residuals``); 0: none, else >= 2.
        """
        thresholds = tuple(float(level) for level in thresholds)
        if not thresholds or not all(0.0 < level < 1.0 for level in thresholds) or not 0.0 < nms_iou <= 1.0:
            raise ValueError("ErrorMapCandidates: need one or more levels 0 < CANDIDATE_THRESHOLDS < 1 and "
                             f"0 < CANDIDATE_NMS_IOU <= 1; got {thresholds}, {nms_iou}")
        if hole_margin < 0:
            raise ValueError(f"ErrorMapCandidates: CANDIDATE_HOLE_MARGIN must be >= 0 cells, got {hole_margin}")
        if residuals < 0:
            raise ValueError(f"ErrorMapCandidates: CANDIDATE_RESIDUALS must be >= 0 detections, got {residuals}")
        if residual_pairs < 0 or residual_pairs == 1:
            raise ValueError("ErrorMapCandidates: CANDIDATE_RESIDUAL_PAIRS must be 0 (off) or >= 2 detections, got "
                             f"{residual_pairs}")
        self.thresholds = thresholds
        self.nms_iou = nms_iou
        self.split = split
        self.holes = holes
        self.hole_margin = int(hole_margin)
        self.residuals = int(residuals)
        self.residual_pairs = int(residual_pairs)

    @property
    def residual_detections(self) -> int:
        """How many of the best-scored detections ``add_residuals`` reads (0: the residual step is off)."""
        return max(self.residuals, self.residual_pairs)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ErrorMapCandidates | None:
        """The step of ``MODEL.DIVE.INVERSION.CANDIDATE_*``, or None when ``ERROR_MAP_CANDIDATES`` is off."""
        inversion = cfg.MODEL.DIVE.INVERSION
        if not inversion.ERROR_MAP_CANDIDATES:
            return None
        if not inversion.RECLASSIFY_BOXES:
            raise ValueError("MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES needs RECLASSIFY_BOXES: the candidate boxes "
                             "get their classes and scores from the class decision")
        if inversion.RECLASSIFY_SCORE == "layout":
            raise ValueError("MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES needs a RECLASSIFY_SCORE from the error maps "
                             f"(one of {[score for score in BOX_SCORES if score != 'layout']}): with 'layout' its "
                             "boxes, which no layout holds, would all score 0")
        return cls(inversion.CANDIDATE_THRESHOLDS, inversion.CANDIDATE_NMS_IOU, inversion.CANDIDATE_SPLIT,
                   inversion.CANDIDATE_HOLES, inversion.CANDIDATE_HOLE_MARGIN, inversion.CANDIDATE_RESIDUALS,
                   inversion.CANDIDATE_RESIDUAL_PAIRS)

    def outline_boxes(self, error_map: torch.Tensor, reference: float | None = None) -> torch.Tensor:
        """(K, 4) float32 boxes XYXY normalised to [0, 1]: the component boxes of ``error_map`` (h, w) (and, with
        ``holes``, its enclosed regions' boxes) at each level, level by level; a level is a fraction of
        ``reference`` (default: the map's maximum). Boxes may repeat."""
        found = []
        for level in self.thresholds:
            found.append(component_boxes(error_map, level, split=self.split, reference=reference))
            if self.holes:
                found.append(enclosed_boxes(error_map, level, self.hole_margin, reference=reference))
        return torch.cat(found)

    def add(self, detections: Instances, error_map: torch.Tensor) -> Instances:
        """The detections followed by the map's component boxes (and, with ``holes``, its enclosed regions'
        boxes) at each level, level by level, that are not already among them (class 0 and score 0 until the
        class decision sets both).

        Args:
            detections: Instances with ``pred_boxes`` (XYXY, pixels of ``detections.image_size``), ``scores``,
                ``pred_classes``.
            error_map: (h, w) the image's empty-layout error map, covering the whole image.
        """
        if error_map.dim() != 2:
            raise ValueError(f"ErrorMapCandidates: error_map must be (h, w), got shape {tuple(error_map.shape)}")
        return _append_new_boxes(detections, self.outline_boxes(error_map))

    def add_residuals(self, detections: Instances, explained_cells: torch.Tensor, error_map: torch.Tensor
                      ) -> Instances:
        """The detections followed by the outline boxes (``outline_boxes``) of each residual map that are not
        already among them (class 0 and score 0 until a class decision sets both).

        Two objects that touch or overlap make one part of the empty-layout map, and when neither encloses a
        region of its own no cut of that part gives either box. Once a first class decision has found one of
        them, the map with that object explained (the residual) still outlines the other, so its box becomes a
        candidate: the residual of detection m is ``error_map - explained_cells[m]``, outlined at the same levels
        of the empty map's maximum, for the first ``residuals`` detections. An object between two found ones
        (or overlapped by both) stays joined to whichever is not explained, so with ``residual_pairs`` the map
        with two detections explained together (``error_map - max(explained_cells[m], explained_cells[n])``) is
        outlined as well, for every pair of the first ``residual_pairs`` detections.

        Args:
            detections: Instances with ``pred_boxes`` (XYXY, pixels of ``detections.image_size``), ``scores``,
                ``pred_classes``: every box the first decision saw.
            explained_cells: (M, h, w) >= 0, the error each of M detections (the best-scored ones, best first)
                explains per cell given its single-object layout (0 outside its box).
            error_map: (h, w) the image's empty-layout error map.
        """
        if error_map.dim() != 2 or explained_cells.dim() != 3 or explained_cells.shape[1:] != error_map.shape:
            raise ValueError(f"ErrorMapCandidates.add_residuals: need error_map (h, w) and explained_cells (M, h, w),"
                             f" got {tuple(error_map.shape)} and {tuple(explained_cells.shape)}")
        reference = float(error_map.max())
        explained = list(explained_cells[: self.residuals])
        explained += [torch.maximum(first, second)
                      for first, second in itertools.combinations(explained_cells[: self.residual_pairs], 2)]
        found = [self.outline_boxes((error_map - cells).clamp(min=0.0), reference) for cells in explained]
        return _append_new_boxes(detections, torch.cat(found) if found else torch.zeros(0, 4))

    def suppress_overlaps(self, detections: Instances) -> Instances:
        """Per class, greedy non-maximum suppression at ``nms_iou``; the kept detections sorted by score."""
        keep = batched_nms(detections.pred_boxes.tensor.float(), detections.scores.float(), detections.pred_classes,
                           self.nms_iou)
        return detections[keep]
