"""Joint-layout scores: rescale the best detections' scores by what each adds to a layout of the others.

Not part of the paper's method; off unless ``MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K`` > 0. The class decision
(``box_classes.py``) scores every box by its single-object layout (c, box): how much of the box's empty-layout
error that one object explains. A box that covers part of an object, or two objects at once, can explain as much
of its own cells as the object's true box, and on ``dive_shapes_val`` such parts and unions are the false
positives that cost most AP50 (session 34: removing them from the ranking would lift AP50 85.2 -> 87.3 and 86.8).
p(x|y) itself can tell them apart once the other objects are in the layout: next to the whole object's box, a
part's class token explains nothing more in its cells.

After the final non-maximum suppression, the ``top_k`` best-scored detections are visited in score order and a
joint layout S (at most the tokenizer's slots) is grown greedily. For detection k, ``ratio_k`` is the error
p(x|y) explains inside k's box when k joins S (the per-cell drop from the map of S to the map of S + k, at least
0) over the error k's single-object layout explains there alone, clamped to [0, 1]; the first visited detection
has ratio 1. k joins S when ``ratio_k >= accept``. Every visited detection's score is multiplied by
ratio_k ** exponent (session 35: 0.5; 0.3 since session 36); detections beyond the first ``top_k`` (or visited after
S is full) keep their scores. All maps are
measured on the monitor's fixed pairs, as the class decision's are, so the result is deterministic.

Measured (session 35, docs/detection.md, "Scores next to the other objects"; the settings were chosen on
``dive_shapes_val`` images 0-99, AP / AP50 / AP75 53.1 / 88.3 / 54.4 -> 53.9 / 89.8 / 55.1): on images 100-499
51.5 / 84.6 / 54.0 -> 51.6 / 85.5 / 53.7, the whole split 51.6 / 85.2 / 53.9 -> 51.9 / 86.3 / 53.7. The exponent
0.3 (session 36, chosen on images 0-99 from the same ratios: 0.25-0.35 tie there at AP50 90.1 against 89.8 for
0.5) gives 52.0 / 86.1 / 54.1 on images 100-499 and 52.2 / 86.8 / 54.1 on the whole split. Inside the
detector the single-object maps are the class decision's, so the step costs at most ``top_k - 1`` joint layouts
per image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from detectron2.structures import Instances

from .box_classes import BoxClassDecision, explained_inside_boxes
from .error_map import check_one_image_maps, layout_error_maps

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE

CONTEXTS = ("all", "overlapping")


def overlapping_members(boxes: torch.Tensor, index: int, members: list[int], limit: int) -> list[int]:
    """The ``members`` (indices into ``boxes`` (N, 4), XYXY in any one unit) whose boxes share some area with box
    ``index``, in their order; at most ``limit``, keeping those sharing the most area."""
    corners = boxes[members] if members else boxes.new_zeros((0, 4))
    width = (torch.minimum(corners[:, 2], boxes[index, 2]) - torch.maximum(corners[:, 0], boxes[index, 0]))
    height = (torch.minimum(corners[:, 3], boxes[index, 3]) - torch.maximum(corners[:, 1], boxes[index, 1]))
    shared = width.clamp(min=0.0) * height.clamp(min=0.0)
    overlapping = [position for position in range(len(members)) if shared[position] > 0]
    kept = sorted(sorted(overlapping, key=lambda position: -float(shared[position]))[:limit])
    return [members[position] for position in kept]


class JointLayoutScores:
    """Rescales the best detections' scores by what each explains beside the others; see the module docstring."""

    def __init__(self, top_k: int = 8, accept: float = 0.5, exponent: float = 0.3, context: str = "all"):
        """
        Args:
            top_k: how many of the best-scored detections are rescored, >= 1.
            accept: a detection whose ratio reaches this joins the joint layout the next ones are measured
                against; in (0, 1].
            exponent: each visited detection's score is multiplied by its ratio to this power; > 0 (smaller
                keeps more of a partly explained detection's score).
            context: which members of the joint layout a detection is measured next to, one of ``CONTEXTS``:
                "all" of them (visits stop once the layout fills the tokenizer's slots), or only those whose
                boxes overlap its box ("overlapping"; a detection overlapping none keeps its score, and the
                joint layout may grow past the slots).
        """
        if top_k < 1:
            raise ValueError(f"JointLayoutScores: top_k (MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K) must be >= 1, "
                             f"got {top_k}")
        if not 0.0 < accept <= 1.0:
            raise ValueError(f"JointLayoutScores: accept (MODEL.DIVE.INVERSION.JOINT_LAYOUT_ACCEPT) must be in "
                             f"(0, 1], got {accept}")
        if not exponent > 0.0:
            raise ValueError(f"JointLayoutScores: exponent (MODEL.DIVE.INVERSION.JOINT_LAYOUT_EXPONENT) must be > 0, "
                             f"got {exponent}")
        if context not in CONTEXTS:
            raise ValueError(f"JointLayoutScores: context (MODEL.DIVE.INVERSION.JOINT_LAYOUT_CONTEXT) must be one of "
                             f"{CONTEXTS}, got {context!r}")
        self.top_k = top_k
        self.accept = accept
        self.exponent = exponent
        self.context = context

    @torch.no_grad()
    def ratios(self, model: DIVE, latents: torch.Tensor, detections: Instances, timesteps: torch.Tensor,
               noise: torch.Tensor, empty_map: torch.Tensor,
               map_cache: dict[tuple[float, ...], torch.Tensor] | None = None) -> dict[int, float]:
        """{index: ratio in [0, 1]} for each visited detection (indices into ``detections``, visited in
        descending score order); arguments as in ``__call__``."""
        height, width = detections.image_size
        order = torch.argsort(detections.scores.detach().cpu(), descending=True, stable=True)
        visited = order[: self.top_k]
        boxes = detections.pred_boxes.tensor.detach().float().cpu()
        classes = detections.pred_classes.detach().cpu()
        class_maps = BoxClassDecision.class_error_maps(model, latents, boxes[visited], detections.image_size,
                                                       timesteps, noise, map_cache)
        single_maps = class_maps[torch.arange(len(visited)), classes[visited]].float()
        empty = empty_map.detach().float().cpu()
        normalised = boxes / torch.tensor([width, height, width, height], dtype=torch.float32)

        maps_by_members: dict[tuple[int, ...], torch.Tensor] = {(): empty}
        maps_by_members.update({(index,): single_maps[position] for position, index in enumerate(visited.tolist())})

        def joint_map(indices: list[int]) -> torch.Tensor:
            key = tuple(indices)
            if key not in maps_by_members:
                chosen = torch.tensor(indices, dtype=torch.int64)
                layout = model.tokenizer.encode(boxes[chosen], classes[chosen], height, width)[None]
                maps_by_members[key] = layout_error_maps(model, latents, layout.to(latents.device), timesteps,
                                                         noise)[0].float().cpu()
            return maps_by_members[key]

        accepted: list[int] = []
        ratios = {}
        for position, index in enumerate(visited.tolist()):
            if self.context == "all":
                if len(accepted) >= model.tokenizer.num_slots:
                    break
                members = accepted
            else:
                members = overlapping_members(boxes, index, accepted, model.tokenizer.num_slots - 1)
            box = normalised[index][None]
            alone = explained_inside_boxes(empty, single_maps[position][None], box).sum()
            gain = explained_inside_boxes(joint_map(members), joint_map(members + [index])[None], box).sum()
            ratio = float((gain / alone).clamp(0.0, 1.0)) if alone > 0 else 0.0
            ratios[index] = ratio
            if ratio >= self.accept:
                accepted.append(index)
        return ratios

    @torch.no_grad()
    def __call__(self, model: DIVE, latents: torch.Tensor, detections: Instances, timesteps: torch.Tensor,
                 noise: torch.Tensor, empty_map: torch.Tensor,
                 map_cache: dict[tuple[float, ...], torch.Tensor] | None = None) -> Instances:
        """The same detections with rescaled scores, sorted by score (descending).

        Args:
            model: the DIVE model; latents: (1, C, h, w) of the image.
            detections: Instances with ``pred_boxes`` (XYXY, pixels of ``detections.image_size``), ``scores``,
                ``pred_classes``.
            timesteps: (K,) int64 and noise (K, C, h, w): the pairs the errors are measured on (the monitor's).
            empty_map: (h, w) the image's empty-layout error map on the same pairs.
            map_cache: each box's (classes, h, w) single-object error maps by its pixel XYXY tuple, as
                ``BoxClassDecision`` keeps them; missing boxes are evaluated and added.
        """
        check_one_image_maps("JointLayoutScores", latents, empty_map)
        if len(detections) == 0:
            return detections
        ratios = self.ratios(model, latents, detections, timesteps, noise, empty_map, map_cache)
        factors = torch.ones(len(detections))
        for index, ratio in ratios.items():
            factors[index] = ratio**self.exponent
        scores = detections.scores * factors.to(detections.scores.device, detections.scores.dtype)
        order = torch.argsort(scores, descending=True, stable=True)
        rescored = detections[order]
        rescored.scores = scores[order]
        return rescored
