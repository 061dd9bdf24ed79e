"""Class alternatives: return each finished box once more with every other class, at a fraction of its score.

Not part of the paper's method; off unless ``MODEL.DIVE.INVERSION.CLASS_ALTERNATIVES_FACTOR`` > 0. The class
decision (``box_classes.py``) gives each box the one class whose single-object layout explains most of the box's
empty-layout error. When it is wrong the object is lost although its box was found: on ``dive_shapes_val``
(session 44) 33 of the 1238 objects have a box at IoU 0.5 only with another class. Detectron2's Faster R-CNN head
returns a box with every class that scores above ``SCORE_THRESH_TEST``, so a box may stand for several classes
at different confidences; this step does the same for DIVE's boxes. Each detection (box b, class d, score s) is
kept and, for every other class c, the detection (b, c) is added with score

    s * factor * explained_c / explained_d,

explained_x the error p(x|y)'s single-object layout (x, b) explains inside b (the empty-layout map minus the
layout's map, at least 0, summed over the cells in b; ``explained_inside_boxes``), so the ratio is in [0, 1]: how
close the runner-up came. With a small ``factor`` the alternatives rank below the decided classes, so they add
objects at the end of each class's ranking without moving the detections before them. Alternatives scored 0 are
not added. The maps are the class decision's (on the monitor's fixed pairs), so the step is deterministic and
costs no model evaluation when it runs in the detector right after the decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from detectron2.structures import Boxes, Instances

from .box_classes import BoxClassDecision, explained_inside_boxes
from .error_map import check_one_image_maps

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE


class ClassAlternatives:
    """Adds each detection's other classes at a fraction of its score; see the module docstring."""

    def __init__(self, factor: float = 0.01):
        """
        Args:
            factor: the alternatives' scores are the detection's score times this times how much of the decided
                class's explained error the alternative class explains; in (0, 1].
        """
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"ClassAlternatives: factor (MODEL.DIVE.INVERSION.CLASS_ALTERNATIVES_FACTOR) must be "
                             f"in (0, 1], got {factor}")
        self.factor = factor

    @torch.no_grad()
    def __call__(self, model: DIVE, latents: torch.Tensor, detections: Instances, timesteps: torch.Tensor,
                 noise: torch.Tensor, empty_map: torch.Tensor,
                 map_cache: dict[tuple[float, ...], torch.Tensor] | None = None) -> Instances:
        """The detections followed by their alternatives, sorted by score (descending; stable, so a detection
        comes before its alternatives at equal scores).

        Args:
            model: the DIVE model; latents: (1, C, h, w) of the image.
            detections: Instances with ``pred_boxes`` (XYXY, pixels of ``detections.image_size``), ``scores``,
                ``pred_classes``.
            timesteps: (K,) int64 and noise (K, C, h, w): the pairs the errors are measured on (the monitor's).
            empty_map: (h, w) the image's empty-layout error map on the same pairs.
            map_cache: each box's (classes, h, w) single-object error maps by its pixel XYXY tuple, as
                ``BoxClassDecision`` keeps them; missing boxes are evaluated and added.
        """
        check_one_image_maps("ClassAlternatives", latents, empty_map)
        count = len(detections)
        if count == 0:
            return detections
        height, width = detections.image_size
        boxes = detections.pred_boxes.tensor.detach().float().cpu()
        decided = detections.pred_classes.detach().cpu()
        class_maps = BoxClassDecision.class_error_maps(model, latents, boxes, detections.image_size, timesteps,
                                                       noise, map_cache)
        num_classes = class_maps.shape[1]
        normalised = boxes / torch.tensor([width, height, width, height], dtype=torch.float32)
        empty = empty_map.detach().float().cpu()
        explained = torch.stack([explained_inside_boxes(empty, class_maps[:, label].float(), normalised).sum((1, 2))
                                 for label in range(num_classes)], dim=1)  # (K, classes)
        own = explained.gather(1, decided[:, None])
        ratios = torch.where(own > 0, (explained / own.clamp(min=1e-12)).clamp(0.0, 1.0), torch.zeros(()))
        scores = detections.scores.detach().cpu().float()
        alternative_scores = scores[:, None] * self.factor * ratios  # (K, classes)
        labels = torch.arange(num_classes)[None].expand(count, -1)
        wanted = (labels != decided[:, None]) & (alternative_scores > 0)
        rows = torch.arange(count)[:, None].expand(-1, num_classes)[wanted]
        all_boxes = torch.cat([boxes, boxes[rows]])
        all_scores = torch.cat([scores, alternative_scores[wanted]])
        all_classes = torch.cat([decided, labels[wanted]])
        order = torch.argsort(all_scores, descending=True, stable=True)
        device = detections.scores.device
        result = Instances(detections.image_size)
        result.pred_boxes = Boxes(all_boxes[order].to(device, detections.pred_boxes.tensor.dtype))
        result.scores = all_scores[order].to(device, detections.scores.dtype)
        result.pred_classes = all_classes[order].to(device, detections.pred_classes.dtype)
        return result
