"""Evaluator that reports how long the inversion ran: the stopping step of each image."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm


class InversionStatsEvaluator(DatasetEvaluator):
    """Collects ``outputs[i]["inversion_steps"]`` (DIVE eval mode) and reports their mean, median and max,
    and how many of the images were read back from a detections cache ("from_cache") rather than inverted
    in this run: Detectron2's timing figures cover only the others."""

    def reset(self) -> None:
        self._steps: list[tuple[int, bool]] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        self._steps.extend((int(output["inversion_steps"]), bool(output.get("from_cache", False)))
                           for output in outputs if "inversion_steps" in output)

    def evaluate(self) -> dict[str, dict[str, float]]:
        records = list(itertools.chain(*comm.gather(self._steps, dst=0)))
        if not comm.is_main_process() or not records:
            return {}
        steps = [step for step, _ in records]
        return OrderedDict(inversion={"mean_stop_step": float(np.mean(steps)),
                                      "median_stop_step": float(np.median(steps)),
                                      "max_stop_step": float(np.max(steps)), "images": float(len(steps)),
                                      "images_from_cache": float(sum(cached for _, cached in records))})
