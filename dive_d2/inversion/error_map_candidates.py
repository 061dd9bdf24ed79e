"""More boxes: the outlines of the empty layout's error map as extra candidates for the class decision.

Not part of the paper's method; off unless ``MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES`` (which needs
``RECLASSIFY_BOXES`` and a ``RECLASSIFY_SCORE`` from the error maps; on in configs/Base-DIVE.yaml since
session 29). After the inversion and the box refinement (``box_refinement.py``) a third of the
objects of ``dive_shapes_val`` still have no box at IoU 0.5 (docs/detection.md, "Extra boxes from the error
map"), while the class decision (``box_classes.py``) is nearly perfect once a box is right: given the
ground-truth boxes, its classes and scores reach AP 97.0 on images 0-199
(``tools/refine_cached_detections.py --ground-truth-boxes``). So the step widens the
set of boxes the decision sees: every 8-connected part of the empty layout's error map above ``threshold``
times its maximum (the mask ``box_refinement.py`` fits boxes to) whose bounding box is not already a
detection joins the detections. The class decision then gives each box its class and score from p(x|y),
and ``suppress_overlaps`` keeps, per class, the best-scored of boxes that overlap at IoU above ``nms_iou``
(the inverted and the component box of one object are usually near-duplicates).

The map is p(x|y)'s own signal, as in the refinement; no second detector is involved.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.structures import Boxes, Instances
from torchvision.ops import batched_nms

from .box_refinement import error_mask


def component_boxes(error_map: torch.Tensor, threshold: float, min_cells: int = 2) -> torch.Tensor:
    """(K, 4) float32 bounding boxes, XYXY normalised to [0, 1] on cell edges, of the 8-connected parts of
    ``error_map`` (h, w) above ``threshold`` times its maximum that hold at least ``min_cells`` cells (a lone
    cell is noise), in the order OpenCV labels them (row-major by first cell). (0, 4) for a map without a
    positive value."""
    mask = error_mask(error_map, threshold)
    height, width = mask.shape
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    parts = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= min_cells]  # label 0 is the background
    left, top = parts[:, cv2.CC_STAT_LEFT], parts[:, cv2.CC_STAT_TOP]
    boxes = np.stack([left, top, left + parts[:, cv2.CC_STAT_WIDTH], top + parts[:, cv2.CC_STAT_HEIGHT]], axis=1)
    return torch.from_numpy(boxes / np.array([width, height, width, height])).float().reshape(-1, 4)


class ErrorMapCandidates:
    """Adds the error map's component boxes to the detections and, after the class decision, suppresses
    overlapping boxes of a class; see the module docstring."""

    def __init__(self, threshold: float = 0.15, nms_iou: float = 0.5):
        """
        Args:
            threshold: a cell belongs to the mask when its error exceeds threshold x the map's maximum; in (0, 1).
            nms_iou: of two boxes of the same class with IoU above this, the lower-scored is dropped; in (0, 1].
        """
        if not 0.0 < threshold < 1.0 or not 0.0 < nms_iou <= 1.0:
            raise ValueError("ErrorMapCandidates: need 0 < CANDIDATE_THRESHOLD < 1 and 0 < CANDIDATE_NMS_IOU <= 1; "
                             f"got {threshold}, {nms_iou}")
        self.threshold = threshold
        self.nms_iou = nms_iou

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
                             "('explained_share' or 'explained'): with 'layout' its boxes, which no layout holds, "
                             "would all score 0")
        return cls(inversion.CANDIDATE_THRESHOLD, inversion.CANDIDATE_NMS_IOU)

    def add(self, detections: Instances, error_map: torch.Tensor) -> Instances:
        """The detections followed by the map's component boxes that are not already among them (class 0 and
        score 0 until the class decision sets both).

        Args:
            detections: Instances with ``pred_boxes`` (XYXY, pixels of ``detections.image_size``), ``scores``,
                ``pred_classes``.
            error_map: (h, w) the image's empty-layout error map, covering the whole image.
        """
        if error_map.dim() != 2:
            raise ValueError(f"ErrorMapCandidates: error_map must be (h, w), got shape {tuple(error_map.shape)}")
        height, width = detections.image_size
        device = detections.scores.device
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        found = component_boxes(error_map, self.threshold) * scale
        present = {tuple(box) for box in detections.pred_boxes.tensor.detach().cpu().tolist()}
        extra = torch.tensor([box for box in found.tolist() if tuple(box) not in present],
                             dtype=torch.float32).reshape(-1, 4)
        candidates = Instances(detections.image_size)
        candidates.pred_boxes = Boxes(extra.to(device))
        candidates.scores = torch.zeros(len(extra), device=device)
        candidates.pred_classes = torch.zeros(len(extra), dtype=torch.int64, device=device)
        return Instances.cat([detections, candidates])

    def suppress_overlaps(self, detections: Instances) -> Instances:
        """Per class, greedy non-maximum suppression at ``nms_iou``; the kept detections sorted by score."""
        keep = batched_nms(detections.pred_boxes.tensor.float(), detections.scores.float(), detections.pred_classes,
                           self.nms_iou)
        return detections[keep]
