"""Evaluator for DIVE classification: top-1 accuracy, the inversion's stopping steps, and wall time."""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm


class ClassificationEvaluator(DatasetEvaluator):
    """Compares ``outputs[i]["pred_class"]`` with ``inputs[i]["label"]`` (images labelled -1 are counted
    but not scored) and reports accuracy (percent), mean stopping step and seconds per image."""

    def reset(self) -> None:
        self._records: list[tuple[int, int, int]] = []
        self._start = time.perf_counter()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for item, output in zip(inputs, outputs, strict=True):
            self._records.append((int(item.get("label", -1)), int(output["pred_class"]),
                                  int(output.get("stop_step", 0))))

    def evaluate(self) -> dict[str, dict[str, float]]:
        records = list(itertools.chain(*comm.gather(self._records, dst=0)))
        if not comm.is_main_process() or not records:
            return {}
        labels, predictions, steps = (np.array(column) for column in zip(*records, strict=True))
        labelled = labels >= 0
        return OrderedDict(classification={
            "top1": float(100.0 * np.mean(predictions[labelled] == labels[labelled])) if labelled.any() else -1.0,
            "images": float(len(records)),
            "mean_stop_step": float(steps.mean()),
            "seconds_per_image": (time.perf_counter() - self._start) / len(records),
        })
