"""DIVE classification: inverting a class-conditional diffusion model, and Diffusion Classifier's
enumeration on the same model for comparison."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from detectron2.config import CfgNode
from tqdm import tqdm

from .common import ClassPrediction, NetworkCost
from .enumeration import AdaptiveEnumerationClassifier, EnumerationClassifier
from .inversion import ClassInversion

if TYPE_CHECKING:
    from ..modeling.class_conditional import DiffusionClassifier

CLASSIFICATION_METHODS = ("inversion", "enumeration", "adaptive")
Classifier = ClassInversion | EnumerationClassifier | AdaptiveEnumerationClassifier  # what build_classifier returns


def build_classifier(cfg: CfgNode, method: str) -> Classifier:
    """The classifier ``method`` (one of CLASSIFICATION_METHODS) with MODEL.DIFFUSION_CLASSIFIER settings."""
    node = cfg.MODEL.DIFFUSION_CLASSIFIER
    window = (node.MIN_TIMESTEP, node.MAX_TIMESTEP)
    if method == "inversion":
        inv = node.INVERSION
        return ClassInversion(max_steps=inv.MAX_STEPS, learning_rate=inv.LEARNING_RATE, num_pairs=inv.NUM_PAIRS,
                              pairs_per_step=inv.PAIRS_PER_STEP, monitor_pairs=inv.MONITOR_PAIRS,
                              monitor_period=inv.MONITOR_PERIOD, patience=inv.PATIENCE, snap=inv.SNAP,
                              metric=inv.METRIC, timestep_window=window, seed=node.SEED,
                              parameterisation=inv.PARAMETERISATION)
    enum = node.ENUMERATION
    if method == "enumeration":
        return EnumerationClassifier(enum.NUM_PAIRS, window, node.SEED, enum.BATCH_SIZE)
    if method == "adaptive":
        return AdaptiveEnumerationClassifier(tuple(enum.ADAPTIVE_PAIRS), tuple(enum.ADAPTIVE_KEEP), window, node.SEED,
                                             enum.BATCH_SIZE)
    raise ValueError(f"MODEL.DIFFUSION_CLASSIFIER.METHOD must be one of {CLASSIFICATION_METHODS}, got {method!r}")


def classify(model: DiffusionClassifier, images: torch.Tensor, classifier: Classifier,
             image_seeds: list[int] | None = None, classes: torch.Tensor | None = None
             ) -> tuple[ClassPrediction, float]:
    """Classify a batch with a DiffusionClassifier model and a classifier from ``build_classifier``.

    Args:
        images: (B, C, S, S) uint8 or float in [0, 255], on any device (moved to the model's).
        image_seeds: one int per image for inversion's start; default 0..B-1.
        classes: (K,) candidate class indices; default all.

    Returns:
        the prediction (labels (B,) class indices) and the wall time in seconds.
    """
    batch = model.preprocess_images([{"image": image} for image in images])
    seeds = list(range(len(images))) if image_seeds is None else list(image_seeds)
    if len(seeds) != len(images):
        raise ValueError(f"{len(seeds)} image seeds for {len(images)} images")
    start = time.perf_counter()
    prediction = classifier(model, batch, seeds, classes)
    return prediction, time.perf_counter() - start


@dataclass
class DatasetReport:
    """Result of ``classify_dataset``: per image labels (-1: unlabelled), predictions and stopping steps;
    total wall time (seconds, classification only, not image reading) and network cost."""

    labels: list[int]
    predictions: list[int]
    stop_steps: list[int]
    seconds: float = 0.0
    cost: NetworkCost = field(default_factory=NetworkCost)

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy in percent over the labelled images (nan if none)."""
        scored = [p == y for p, y in zip(self.predictions, self.labels, strict=True) if y >= 0]
        return 100.0 * sum(scored) / len(scored) if scored else float("nan")


def classify_dataset(model: DiffusionClassifier, records: list[dict], classifier: Classifier, batch_size: int = 16,
                     classes: torch.Tensor | None = None, progress: bool = True) -> DatasetReport:
    """Classify dataset dicts (``load_image_folder`` / a registered classification split) in batches.

    Each image's inversion seed is its ``image_id``, so its answer does not depend on the batch it is in.
    """
    from ..data import ClassificationMapper

    mapper = ClassificationMapper(model.input_format)
    report = DatasetReport([], [], [])
    batches = range(0, len(records), batch_size)
    for start in tqdm(batches, desc=type(classifier).__name__, disable=not progress):
        items = [mapper(record) for record in records[start : start + batch_size]]
        images = torch.stack([item["image"] for item in items])
        seeds = [model.image_seed(item) for item in items]
        prediction, seconds = classify(model, images, classifier, seeds, classes)
        report.labels += [item["label"] for item in items]
        report.predictions += prediction.labels.tolist()
        report.stop_steps += prediction.stop_step.tolist()
        report.seconds += seconds
        report.cost += prediction.cost
    return report


__all__ = ["CLASSIFICATION_METHODS", "AdaptiveEnumerationClassifier", "ClassInversion", "ClassPrediction",
           "DatasetReport", "EnumerationClassifier", "NetworkCost", "build_classifier", "classify", "classify_dataset"]
