"""Pooling the detections of an image's restarts (MODEL.DIVE.INVERSION.RESTART_SELECTION "pooled").

With R restarts the engine keeps every run's best layout. "best" returns the run with the lowest monitor
loss; "pooled" returns the union of all R runs' objects, de-duplicated: an object that several runs found
independently is one detection, and the number of runs that found it is evidence for it.

Clustering is greedy in order of score (ties: earlier run, then earlier detection): the highest-scoring
unassigned detection starts a cluster and takes, from every *other* run, that run's highest-scoring
unassigned detection of the same class whose IoU with it is at least ``iou_threshold``. A cluster holds at
most one detection per run. It keeps its first member's box and class, and its score is the sum of its
members' scores divided by R: the mean score over the R runs, counting 0 for a run that does not have the
object. With the "constant" score that is the fraction of runs that found the object. ``score="max"`` keeps
instead the highest of its members' scores, so that pooling never lowers a detection below what one run gave it;
a single run pooled with "max" is that run, re-sorted.

The same clustering pools the finished detections of whole inversion passes
(MODEL.DIVE.INVERSION.POOLED_PASS_PRIOR_WEIGHTS, DIVE.pool_passes, and tools/pool_results.py after the fact).
"""

from __future__ import annotations

import torch
from detectron2.structures import Boxes, Instances, pairwise_iou

RESTART_SELECTIONS = ("best", "pooled")
POOLED_SCORES = ("mean", "max")


def merge_equal_detections(boxes: list, classes: list[int], scores: list[float], image_size: tuple[int, int],
                           device: torch.device | str = "cpu") -> Instances:
    """``Instances`` of the given detections with exact duplicates (same class and box) merged into one that
    keeps the highest score, sorted by score (descending; ties keep the input order).

    Args:
        boxes: K boxes (4 numbers each, XYXY in pixels of ``image_size`` = (height, width)); classes,
            scores: K each.
    """
    best: dict[tuple, float] = {}
    for box, cls, score in zip(boxes, classes, scores, strict=True):
        key = (int(cls), *(float(value) for value in box))
        best[key] = max(best.get(key, float("-inf")), float(score))
    keys = sorted(best, key=lambda key: -best[key])
    instances = Instances(tuple(image_size))
    instances.pred_boxes = Boxes(torch.tensor([key[1:] for key in keys], dtype=torch.float32,
                                              device=device).reshape(-1, 4))
    instances.scores = torch.tensor([best[key] for key in keys], dtype=torch.float32, device=device)
    instances.pred_classes = torch.tensor([key[0] for key in keys], dtype=torch.int64, device=device)
    return instances


def pool_detections(per_run: list[Instances], iou_threshold: float = 0.5, score: str = "mean") -> Instances:
    """Union of the detections of R runs on one image, de-duplicated across runs (see the module docstring).

    Args:
        per_run: R ``Instances`` of the same image (same image size), each with ``pred_boxes`` (XYXY, pixels),
            ``scores`` and ``pred_classes``.
        iou_threshold: two detections of the same class from different runs are the same object when their
            IoU is at least this.
        score: a cluster's score: "mean" (the sum of its members' scores over R) or "max" (its best member's).

    Returns:
        ``Instances`` with one detection per cluster, sorted by pooled score (descending).
    """
    if not per_run:
        raise ValueError("pool_detections needs the detections of at least one run")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"pooling IoU threshold must lie in (0, 1], got {iou_threshold}")
    if score not in POOLED_SCORES:
        raise ValueError(f"pooled score must be one of {POOLED_SCORES}, got {score!r}")
    everything = Instances.cat(per_run)
    run_of = torch.cat([torch.full((len(run),), index, dtype=torch.int64) for index, run in enumerate(per_run)])
    scores = everything.scores.detach().cpu()
    classes = everything.pred_classes.cpu()
    overlap = pairwise_iou(everything.pred_boxes, everything.pred_boxes).cpu()
    # Stable sort on -score keeps ties in (run, detection) order.
    order = sorted(range(len(everything)), key=lambda index: -float(scores[index]))
    assigned = torch.zeros(len(everything), dtype=torch.bool)
    leaders, pooled_scores = [], []
    for leader in order:
        if assigned[leader]:
            continue
        assigned[leader] = True
        members_runs, member_scores = {int(run_of[leader])}, [float(scores[leader])]
        for candidate in order:
            run = int(run_of[candidate])
            if (assigned[candidate] or run in members_runs or classes[candidate] != classes[leader]
                    or overlap[leader, candidate] < iou_threshold):
                continue
            assigned[candidate] = True
            members_runs.add(run)
            member_scores.append(float(scores[candidate]))
        leaders.append(leader)
        pooled_scores.append(sum(member_scores) / len(per_run) if score == "mean" else max(member_scores))
    pooled = everything[torch.tensor(leaders, dtype=torch.int64, device=everything.scores.device)]
    pooled.scores = torch.tensor(pooled_scores, dtype=everything.scores.dtype, device=everything.scores.device)
    ranking = torch.argsort(pooled.scores, descending=True, stable=True)
    return pooled[ranking]
