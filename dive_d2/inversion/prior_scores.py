"""Prior scores: weigh each finished detection by how typical the layout prior p(y) finds its object.

Not part of the paper's method; off unless ``MODEL.DIVE.INVERSION.PRIOR_SCORE_WEIGHT`` > 0. DIVE's objective is
p(x|y) p(y), but every score after the inversion (``box_classes.py``, ``joint_layout_scores.py``) reads p(x|y)
alone, and the shapes default inverts with the prior off (``PRIOR_WEIGHT 0``). Parts and unions of objects are
then the false positives that cost most AP50 (docs/detection.md, "Post-hoc rescorings"): p(x|y) explains their
cells nearly as well as an object's own box, but their boxes are not shaped like the training set's objects,
which p(y) has learned. On the shipped shapes pair (session 49, 20220 detections of the whole val split) the
prior's denoising error of a detection's single-object layout has median 0.0032 for true positives against 0.0041
for parts and 0.0044 for unions.

Each detection (box b, class c, score s) gets the score

    s * exp(-weight * e(c, b) / e(empty)),

e(c, b) the prior's denoising error of the layout holding the one object (c, b) and ``none`` in every other slot,
e(empty) that of the all-``none`` layout (a constant of the model and the pairs, so the weight is unitless and an
image's scores do not depend on the other images of its batch), both averaged over the same ``num_pairs`` fixed
(t, noise) pairs: timesteps evenly spread over the schedule, noise seeded (``fixed_pairs``). The order within an
image changes, so the detections are sorted again. The monitor's 16 pairs are too few: the same weighting on them
gave AP50 88.2 on the whole shapes split against 88.8 with 64 (session 49).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from detectron2.structures import Instances

from ..modeling.denoising import fixed_pairs

if TYPE_CHECKING:
    from ..modeling.meta_arch import DIVE


class PriorScores:
    """Multiplies each detection's score by its object's prior evidence; see the module docstring."""

    def __init__(self, weight: float = 1.0, num_pairs: int = 64, seed: int = 0):
        """
        Args:
            weight: how strongly the prior's error ratio lowers a score; > 0.
            num_pairs: (t, noise) pairs the errors are averaged over; seed: their noise's seed.
        """
        if weight <= 0.0:
            raise ValueError(f"PriorScores: weight (MODEL.DIVE.INVERSION.PRIOR_SCORE_WEIGHT) must be > 0, got {weight}")
        if num_pairs < 1:
            raise ValueError(f"PriorScores: MODEL.DIVE.INVERSION.PRIOR_SCORE_PAIRS must be >= 1, got {num_pairs}")
        self.weight = weight
        self.num_pairs = num_pairs
        self.seed = seed

    def pairs(self, model: DIVE, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed pairs: timesteps (K,) int64 and noise (K, L, width), on ``device``."""
        shape = (model.tokenizer.sequence_length, model.layout_encoder.config.width)
        timesteps, noise = fixed_pairs(self.num_pairs, shape, model.scheduler.config.num_train_timesteps, self.seed)
        return timesteps.to(device), noise.to(device)

    @staticmethod
    @torch.no_grad()
    def single_object_errors(model: DIVE, boxes: torch.Tensor, classes: torch.Tensor, image_size: tuple[int, int],
                             timesteps: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's mean denoising error over the K pairs of each single-object layout and of the empty layout.

        Args:
            model: the DIVE model (its tokenizer, layout encoder and prior).
            boxes: (N, 4) XYXY in pixels of an image of ``image_size`` (height, width); classes: (N,) int64.
            timesteps: (K,) int64 and noise (K, L, width): the pairs (``pairs``).

        Returns:
            (N,) errors of the objects' layouts and a 0-dim error of the empty layout, float32 on the CPU.
        """
        height, width = image_size
        tokens = [model.tokenizer.encode(box[None], label[None], height, width)
                  for box, label in zip(boxes.float().cpu(), classes.cpu(), strict=True)]
        tokens.append(model.tokenizer.encode(torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64), height, width))
        embeddings = model.layout_encoder.embed_tokens(torch.stack(tokens).to(noise.device))  # (N + 1, L, width)
        count, pairs = len(tokens), len(timesteps)
        errors = model.prior_denoising_error(embeddings.repeat_interleave(pairs, dim=0), timesteps.repeat(count),
                                             noise.repeat(count, 1, 1)).view(count, pairs).mean(dim=1)
        errors = errors.float().cpu()
        return errors[:-1], errors[-1]

    def __call__(self, model: DIVE, detections: Instances) -> Instances:
        """The detections with their scores weighed by the prior, sorted by score (descending, stable).

        Args:
            model: the DIVE model.
            detections: Instances with ``pred_boxes`` (XYXY, pixels of ``detections.image_size``), ``scores``,
                ``pred_classes``.
        """
        if len(detections) == 0:
            return detections
        timesteps, noise = self.pairs(model, model.device)
        errors, empty_error = self.single_object_errors(model, detections.pred_boxes.tensor, detections.pred_classes,
                                                        detections.image_size, timesteps, noise)
        factors = torch.exp(-self.weight * errors / empty_error)
        scores = detections.scores * factors.to(detections.scores.device, detections.scores.dtype)
        order = torch.argsort(scores, descending=True, stable=True)
        result = detections[order]
        result.scores = scores[order]
        return result
