"""Box refinement: fit each inverted box to where p(x|y) cannot denoise the image without objects.

Not part of the paper's method; off unless ``MODEL.DIVE.INVERSION.REFINE_BOXES``. The inversion finds boxes
near the objects but seldom on them (on the whole ``dive_shapes_val``, some box overlaps 87% of the objects at
IoU 0.1 and 34% at IoU 0.5), while the empty layout's per-position denoising error
(``error_map.empty_layout_error_map``) outlines the objects sharply: 99% of its squared mass lies inside the
ground-truth boxes (docs/detection.md, "Starts from the empty layout's error map"). Both signals come from
the same frozen p(x|y); no second detector is involved.

The rule, per image: the map's cells above ``threshold`` times its maximum form a mask. For each detection,
a window around its box (each side widened by ``max(min_margin, margin_ratio * box side)``, normalised
units) limits the mask; the 8-connected parts of the limited mask that have a cell inside the box are the
object's support, and the refined box is the support's bounding box (on the map's cell edges). A box whose
window holds no such part keeps its box. Classes and scores stay those of the inverted layout: the score
is the evidence for the object, the refinement only adjusts its extent. Detections that end with the same
class and box are merged, keeping the highest score.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.structures import Instances

from .pooling import merge_equal_detections


def error_mask(error_map: torch.Tensor, threshold: float, reference: float | None = None) -> np.ndarray:
    """(h, w) bool: the cells of ``error_map`` (h, w) above ``threshold`` times ``reference`` (default: the map's
    maximum; none for a reference that is not positive); the mask the refinement fits boxes to and the
    candidates outline."""
    values = error_map.detach().float().cpu().numpy()
    reference = float(values.max()) if reference is None else float(reference)
    if not reference > 0:
        return np.zeros(values.shape, dtype=bool)
    return values > threshold * reference


def support_box(box: np.ndarray, mask: np.ndarray, min_margin: float, margin_ratio: float) -> np.ndarray | None:
    """Bounding box of the mask's parts that touch ``box``, within a window around it (see module docstring).

    Args:
        box: (4,) XYXY normalised to [0, 1].
        mask: (h, w) bool, cells of the map above the threshold.
        min_margin, margin_ratio: the window's margin per side is ``max(min_margin, margin_ratio * side)``.

    Returns:
        (4,) XYXY normalised, on cell edges; None when no part of the mask touches the box.
    """
    height, width = mask.shape
    sides = np.array([box[2] - box[0], box[3] - box[1]])
    margin = np.maximum(min_margin, margin_ratio * sides)
    scale = np.array([width, height, width, height], dtype=np.float64)
    window = np.clip(np.concatenate([box[:2] - margin, box[2:] + margin]), 0.0, 1.0) * scale
    inner = np.clip(box, 0.0, 1.0) * scale
    # A cell belongs to a region when the region covers any part of it.
    wx0, wy0, ix0, iy0 = np.floor([window[0], window[1], inner[0], inner[1]]).astype(int)
    wx1, wy1, ix1, iy1 = np.ceil([window[2], window[3], inner[2], inner[3]]).astype(int)
    limited = np.zeros((height, width), dtype=np.uint8)
    limited[wy0:wy1, wx0:wx1] = mask[wy0:wy1, wx0:wx1]
    _, labels = cv2.connectedComponents(limited, connectivity=8)
    touching = np.unique(labels[iy0:iy1, ix0:ix1])
    touching = touching[touching > 0]
    if len(touching) == 0:
        return None
    rows, columns = np.nonzero(np.isin(labels, touching))
    return np.array([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1], dtype=np.float64) / scale


class ErrorMapBoxRefinement:
    """Refines detections with an image's empty-layout error map; see the module docstring."""

    def __init__(self, threshold: float = 0.15, min_margin: float = 0.1875, margin_ratio: float = 1.5):
        """
        Args:
            threshold: mask = map > threshold * map maximum; in (0, 1).
            min_margin: smallest window margin per side, normalised units (0.1875 = 12 px of a 64 px image).
            margin_ratio: window margin per side as a multiple of the box's side.
        """
        if not 0.0 < threshold < 1.0 or min_margin < 0 or margin_ratio < 0:
            raise ValueError("ErrorMapBoxRefinement: need 0 < REFINE_THRESHOLD < 1, REFINE_MIN_MARGIN >= 0 and "
                             f"REFINE_MARGIN_RATIO >= 0; got {threshold}, {min_margin}, {margin_ratio}")
        self.threshold = threshold
        self.min_margin = min_margin
        self.margin_ratio = margin_ratio

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ErrorMapBoxRefinement | None:
        """The refinement of ``MODEL.DIVE.INVERSION.REFINE_*``, or None when ``REFINE_BOXES`` is off."""
        inversion = cfg.MODEL.DIVE.INVERSION
        if not inversion.REFINE_BOXES:
            return None
        return cls(inversion.REFINE_THRESHOLD, inversion.REFINE_MIN_MARGIN, inversion.REFINE_MARGIN_RATIO)

    def __call__(self, detections: Instances, error_map: torch.Tensor) -> Instances:
        """Refined detections (same fields, same image size, possibly fewer after merging).

        Args:
            detections: Instances with ``pred_boxes`` (XYXY, pixels of ``detections.image_size``), ``scores``,
                ``pred_classes``.
            error_map: (h, w) the image's empty-layout error map; the map covers the whole image (the model
                input is the image resized, each axis on its own), so normalised coordinates are shared.
        """
        if error_map.dim() != 2:
            raise ValueError(f"ErrorMapBoxRefinement: error_map must be (h, w), got shape {tuple(error_map.shape)}")
        height, width = detections.image_size
        mask = error_mask(error_map, self.threshold)
        scale = np.array([width, height, width, height], dtype=np.float64)
        boxes = detections.pred_boxes.tensor.detach().cpu().double().numpy()
        refined = []
        for box in boxes:
            fitted = support_box(box / scale, mask, self.min_margin, self.margin_ratio)
            refined.append(box if fitted is None else fitted * scale)
        return merge_equal_detections([box.tolist() for box in refined], detections.pred_classes.tolist(),
                                      detections.scores.tolist(), detections.image_size, detections.scores.device)
