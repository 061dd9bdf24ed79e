"""Evaluator that reports how long the inversion ran: the stopping step of each image."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm


class InversionStatsEvaluator(DatasetEvaluator):
    """Collects ``outputs[i]["inversion_steps"]`` (DIVE eval mode) and reports their mean, median and max."""

    def reset(self) -> None:
        self._steps: list[int] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        self._steps.extend(int(output["inversion_steps"]) for output in outputs if "inversion_steps" in output)

    def evaluate(self) -> dict[str, dict[str, float]]:
        steps = list(itertools.chain(*comm.gather(self._steps, dst=0)))
        if not comm.is_main_process() or not steps:
            return {}
        return OrderedDict(inversion={"mean_stop_step": float(np.mean(steps)),
                                      "median_stop_step": float(np.median(steps)),
                                      "max_stop_step": float(np.max(steps)), "images": float(len(steps))})
