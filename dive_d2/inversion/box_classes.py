"""Class decision: re-choose each returned box's class by the denoising error p(x|y) explains inside the box.

Not part of the paper's method; off unless ``MODEL.DIVE.INVERSION.RECLASSIFY_BOXES``. After the inversion
(and the box refinement, ``box_refinement.py``) the boxes often sit on objects with the wrong class: on the
whole ``dive_shapes_val`` a third of the objects with a box at IoU 0.5 carry another class (docs/detection.md,
"Fitting the boxes to the error map"). The inverted layout's classes come from one joint search over all
slots, where a class token moves the total loss little. Asked one box at a time, the same frozen p(x|y)
separates the classes well: for each detection and each class c, the single-object layout (c, box) is
scored by p(x|y)'s denoising error summed over the latent cells whose centre lies inside the box (the
monitor's fixed pairs), and the class with the lowest error becomes the detection's class. This is a
diffusion classifier (Li et al., 2023) with the box given. Boxes and scores are kept; detections that end
with the same class and box are merged, keeping the highest score. A box too small to hold a cell centre
keeps its class.

With ``score="explained"`` each detection's score becomes the fraction of the box's empty-layout error (the
map ``empty_layout_error_map`` gives, summed over the same cells) that its single-object layout explains,
clamped to [0, 1]: how much of what p(x|y) cannot denoise without objects this object accounts for. A box
without a cell scores 0. ``"layout"`` keeps the inverted layout's score (``MODEL.DIVE.INVERSION.SCORE``).
``"explained_share"`` multiplies the "explained" fraction by the square root of the box's share of the whole
map's empty-layout error: a small box around a little noise can be explained almost entirely, and once the
error map's own parts join the boxes (``error_map_candidates.py``) such boxes are many; weighting by the share
ranks first the boxes that hold much of what the empty layout leaves unexplained.
``"explained_marginal"`` ranks the boxes greedily by the same product, with the share counting only the error
that no box ranked before explains better: each box explains, per cell inside it, the empty-layout error minus
its single-object layout's error (at least 0); a set of boxes explains per cell the most any of them does. A
box that is part of a better-explained object, or holds one already ranked, adds little and drops in the ranking
(a set-cover view of the layout; the scores are non-increasing in the greedy order).
``"explained_won_cells"`` credits each cell's error to the box that explains it best instead: the share counts
only the cells where a box explains at least as much as every rival box, rivals being all boxes but those of the
same class that overlap it at IoU above ``duplicate_iou`` (the non-maximum suppression after the decision keeps
one of those). A box that joins two objects loses their cells to the objects' own boxes, which explain them
better, whatever the order; a part loses its cells to the whole object's box.

Measured (session 28, nothing tuned; docs/detection.md, "Choosing each box's class"): on the whole
``dive_shapes_val`` AP / AP50 / AP75 8.3 / 16.2 / 7.9 -> 16.0 / 32.6 / 14.4, objects found with their class at
IoU 0.5 448 -> 644 of the 668 that have a box; on the first 100 ``dive_digits_val`` images AP50 2.4 -> 5.1.
Scored "explained" as well, the whole shapes split gives 24.7 / 43.6 / 24.9 (the same boxes and classes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from detectron2.structures import Boxes, Instances, pairwise_iou

from .error_map import box_mask, layout_error_maps
from .pooling import merge_equal_detections

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE


def errors_inside_boxes(error_maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(K, C) error summed over each box's cells, for error maps (K, C, h, w) (box k's C candidate layouts)
    and boxes (K, 4) XYXY normalised to [0, 1]. Returns NaN rows for boxes that hold no cell centre."""
    height, width = error_maps.shape[-2:]
    sums = []
    for maps, box in zip(error_maps, boxes, strict=True):
        inside = box_mask(box[None], height, width)
        sums.append((maps * inside).sum(dim=(1, 2)) if inside.any() else torch.full((len(maps),), float("nan")))
    return torch.stack(sums) if sums else error_maps.new_zeros((0, error_maps.shape[1]))


def explained_inside_boxes(empty_map: torch.Tensor, layout_maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(K, h, w) the error each of K single-object layouts explains per cell: ``empty_map`` (h, w) minus its map
    ``layout_maps`` (K, h, w), at least 0, and 0 outside its box ``boxes`` (K, 4) XYXY normalised to [0, 1]."""
    inside = torch.stack([box_mask(box[None], *empty_map.shape) for box in boxes]) if len(boxes) else \
        torch.zeros((0, *empty_map.shape), dtype=torch.bool)
    return (empty_map[None] - layout_maps).clamp(min=0.0) * inside


def greedy_marginal_scores(fractions: torch.Tensor, explained_cells: torch.Tensor, total_error: torch.Tensor
                           ) -> torch.Tensor:
    """(K,) scores fraction_k * sqrt(marginal share_k), the marginal share taken in greedy order.

    Args:
        fractions: (K,) in [0, 1], how much of its box's empty-layout error each detection's object explains.
        explained_cells: (K, h, w) >= 0, the error each detection explains per latent cell (0 outside its box).
        total_error: scalar, the whole empty-layout error map's sum (the share's denominator).

    At each step every unranked detection's marginal share is the error it explains beyond the per-cell
    maximum of the detections ranked so far, over ``total_error``; the best-scored is ranked next and keeps that
    score. Scores are therefore non-increasing in the ranking order; a detection whose cells are all explained
    at least as well already scores 0.
    """
    count = len(fractions)
    scores = torch.zeros(count, dtype=fractions.dtype)
    if count == 0 or not total_error > 0:
        return scores
    covered = torch.zeros_like(explained_cells[0])
    unranked = torch.ones(count, dtype=torch.bool)
    for _ in range(count):
        gains = (explained_cells - covered).clamp(min=0.0).sum(dim=(1, 2)) / total_error
        candidates = torch.where(unranked, fractions * gains.clamp(0.0, 1.0).sqrt(), torch.tensor(-1.0))
        best = int(candidates.argmax())
        scores[best] = candidates[best]
        unranked[best] = False
        covered = torch.maximum(covered, explained_cells[best])
    return scores


def won_cell_scores(fractions: torch.Tensor, explained_cells: torch.Tensor, total_error: torch.Tensor,
                    rivals: torch.Tensor) -> torch.Tensor:
    """(K,) scores fraction_k * sqrt(share_k), share_k the error of the cells detection k explains best.

    Args:
        fractions: (K,) in [0, 1], how much of its box's empty-layout error each detection's object explains.
        explained_cells: (K, h, w) >= 0, the error each detection explains per latent cell (0 outside its box).
        total_error: scalar, the whole empty-layout error map's sum (the share's denominator).
        rivals: (K, K) bool, ``rivals[k, j]``: detection j competes with k for cells (the diagonal is ignored).

    share_k sums ``explained_cells[k]`` over the cells where it is at least every rival's, over ``total_error``.
    Unlike ``greedy_marginal_scores`` the result does not depend on an order: a ranked box never takes cells from
    a box that explains them better.
    """
    count = len(fractions)
    if count == 0 or not total_error > 0:
        return torch.zeros(count, dtype=fractions.dtype)
    rivals = rivals & ~torch.eye(count, dtype=torch.bool)
    rival_cells = torch.where(rivals[:, :, None, None], explained_cells[None], torch.zeros(()))  # (K, K, h, w)
    best_rival = rival_cells.max(dim=1).values
    won = explained_cells * (explained_cells >= best_rival)
    return fractions * (won.sum(dim=(1, 2)) / total_error).clamp(0.0, 1.0).sqrt()


BOX_SCORES = ("layout", "explained", "explained_share", "explained_marginal", "explained_won_cells")


class BoxClassDecision:
    """Re-chooses each detection's class by p(x|y)'s error inside its box; see the module docstring."""

    def __init__(self, score: str = "layout", duplicate_iou: float = 0.5):
        """
        Args:
            score: "layout" keeps each detection's score; "explained" replaces it by the fraction of the box's
                empty-layout error that the chosen single-object layout explains; "explained_share" multiplies
                that by the square root of the box's share of the whole map's empty-layout error;
                "explained_marginal" counts in that share only what boxes ranked before do not explain
                (``greedy_marginal_scores``); "explained_won_cells" counts in it only the cells the box explains
                best of its rivals (``won_cell_scores``).
            duplicate_iou: for "explained_won_cells", boxes of the same class overlapping at IoU above this are one
                object and do not compete for cells (the benchmarks use CANDIDATE_NMS_IOU); in (0, 1].
        """
        if score not in BOX_SCORES:
            raise ValueError(f"BoxClassDecision: score must be one of {BOX_SCORES}, got {score!r}")
        if not 0.0 < duplicate_iou <= 1.0:
            raise ValueError(f"BoxClassDecision: duplicate_iou must be in (0, 1], got {duplicate_iou}")
        self.score = score
        self.duplicate_iou = duplicate_iou

    @staticmethod
    @torch.no_grad()
    def class_error_maps(model: DIVE, latents: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int],
                         timesteps: torch.Tensor, noise: torch.Tensor,
                         map_cache: dict[tuple[float, ...], torch.Tensor] | None = None) -> torch.Tensor:
        """(K, classes, h, w) CPU error maps of p(x|y) for the single-object layout (c, box) of each of the K
        ``boxes`` (K, 4) (XYXY, pixels of ``image_size`` (height, width)) and each class c; ``latents`` (1, C, h,
        w); pairs and ``map_cache`` as in ``__call__``."""
        cache = {} if map_cache is None else map_cache
        keys = [tuple(box) for box in boxes.tolist()]
        missing = list(dict.fromkeys(key for key in keys if key not in cache))
        if missing:
            tokenizer = model.tokenizer
            height, width = image_size
            candidates = torch.arange(tokenizer.num_classes)
            layouts = torch.stack([tokenizer.encode(torch.tensor([key]), candidate[None], height, width)
                                   for key in missing for candidate in candidates]).to(latents.device)
            maps = layout_error_maps(model, latents.expand(len(layouts), -1, -1, -1), layouts, timesteps, noise)
            for key, box_maps in zip(missing, maps.cpu().view(len(missing), len(candidates), *maps.shape[-2:]),
                                     strict=True):
                cache[key] = box_maps
        return torch.stack([cache[key] for key in keys])

    @staticmethod
    def explained_cells(detections: Instances, empty_map: torch.Tensor,
                        map_cache: dict[tuple[float, ...], torch.Tensor]) -> torch.Tensor:
        """(K, h, w) the error each detection's single-object layout (its box and class) explains per cell of
        the (h, w) ``empty_map``: the empty map minus the layout's map, at least 0, and 0 outside the box. Every
        detection's box must be in ``map_cache`` (a decision has seen it)."""
        boxes = detections.pred_boxes.tensor.detach().float().cpu()
        height, width = detections.image_size
        empty = empty_map.detach().float().cpu()
        layout_maps = []
        for box, label in zip(boxes.tolist(), detections.pred_classes.tolist(), strict=True):
            if tuple(box) not in map_cache:
                raise KeyError(f"BoxClassDecision.explained_cells: box {tuple(box)} has no error maps in the cache")
            layout_maps.append(map_cache[tuple(box)][label])
        layout_maps = torch.stack(layout_maps) if layout_maps else empty.new_zeros((0, *empty.shape))
        return explained_inside_boxes(empty, layout_maps, boxes / torch.tensor([width, height, width, height]))

    @torch.no_grad()
    def __call__(self, model: DIVE, latents: torch.Tensor, detections: Instances, timesteps: torch.Tensor,
                 noise: torch.Tensor, empty_map: torch.Tensor | None = None,
                 map_cache: dict[tuple[float, ...], torch.Tensor] | None = None) -> Instances:
        """Detections with re-chosen classes (same boxes; scores kept or, with the "explained" scores, replaced;
        same image size; possibly fewer after merging).

        Args:
            model: the DIVE model; latents: (1, C, h, w) of the image.
            detections: Instances with ``pred_boxes`` (XYXY, pixels of ``detections.image_size``), ``scores``,
                ``pred_classes``.
            timesteps: (K,) int64 and noise (K, C, h, w): the pairs the errors are measured on (the monitor's).
            empty_map: (h, w) the image's empty-layout error map on the same pairs; needed by the "explained"
                scores.
            map_cache: the error maps (classes, h, w) of each box (key: its pixel XYXY tuple) given each class,
                on these pairs and this image; boxes found in it are not evaluated again, new ones are added
                (a box's maps do not depend on the other boxes).
        """
        if latents.dim() != 4 or len(latents) != 1:
            raise ValueError(f"BoxClassDecision: latents must be (1, C, h, w), got shape {tuple(latents.shape)}")
        if self.score != "layout" and (empty_map is None or empty_map.shape != latents.shape[-2:]):
            raise ValueError(f"BoxClassDecision: score {self.score!r} needs the (h, w) empty-layout error map, got "
                             f"{None if empty_map is None else tuple(empty_map.shape)} for latents "
                             f"{tuple(latents.shape)}")
        height, width = detections.image_size
        boxes = detections.pred_boxes.tensor.detach().float().cpu()
        classes = detections.pred_classes.detach().cpu()
        if len(boxes) == 0:
            return detections
        class_maps = self.class_error_maps(model, latents, boxes, detections.image_size, timesteps, noise, map_cache)
        normalised = boxes / torch.tensor([width, height, width, height], dtype=torch.float32)
        errors = errors_inside_boxes(class_maps, normalised)
        without_cells = errors.isnan().any(dim=1)
        decided = torch.where(without_cells, classes, errors.nan_to_num(0.0).argmin(dim=1))
        scores = detections.scores.detach().cpu()
        if self.score != "layout":
            empty = empty_map.detach().cpu()
            unexplained = errors_inside_boxes(empty[None, None].expand(len(boxes), 1, -1, -1), normalised)[:, 0]
            chosen = errors.nan_to_num(0.0).gather(1, decided[:, None])[:, 0]
            fraction = ((unexplained - chosen) / unexplained).clamp(0.0, 1.0)
            scores = torch.where(without_cells | ~(unexplained > 0), torch.zeros_like(fraction), fraction)
            if self.score == "explained_share":
                scores = scores * (unexplained / empty.sum()).clamp(0.0, 1.0).sqrt()
            elif self.score in ("explained_marginal", "explained_won_cells"):
                explained_cells = explained_inside_boxes(empty, class_maps[torch.arange(len(boxes)), decided],
                                                         normalised)
                if self.score == "explained_marginal":
                    scores = greedy_marginal_scores(scores, explained_cells, empty.sum())
                else:
                    duplicates = ((pairwise_iou(Boxes(boxes), Boxes(boxes)) > self.duplicate_iou)
                                  & (decided[:, None] == decided[None]))
                    scores = won_cell_scores(scores, explained_cells, empty.sum(), ~duplicates)
        return merge_equal_detections(boxes.tolist(), decided.tolist(), scores.tolist(), detections.image_size,
                                      detections.scores.device)
