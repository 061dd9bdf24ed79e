"""Each run's returned layout from a recording of ``tools/evaluate_inversion.py`` with several restarts.

``tools/restart_headroom.py`` (which run holds the objects) and ``tools/mine_negatives.py`` (wrong layouts
for training p(x|y)) both start from every run's layout at its best monitor check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog

from ..data import prepare_datasets_from_config
from ..data.from_config import register_first_images
from ..inversion import replay_checks
from ..loading import load_config, load_model


@dataclass
class RecordedRuns:
    """``tokens``: (N, R, L) each run's layout at its best check; ``monitor``: (N, R) that check's monitor loss;
    N images (``dataset_dicts``), R restarts."""

    cfg: CfgNode
    model: torch.nn.Module
    dataset_dicts: list[dict[str, Any]]
    tokens: torch.Tensor
    monitor: torch.Tensor


def load_recorded_runs(recording: str, config_file: str, weights: str, dataset: str, start_image: int,
                       num_images: int, opts: list[str]) -> RecordedRuns:
    """Load ``recording``/history.pth with the model and image slice it was recorded on. ``opts`` must be the
    recording's KEY VALUE options; the history must hold RESTARTS >= 2 runs for each image."""
    recorded = torch.load(os.path.join(recording, "history.pth"), weights_only=False)
    if recorded["opts"] != opts:
        raise ValueError(f"{recording}/history.pth was recorded with options {recorded['opts']}, not {opts}")
    histories = recorded["histories"]
    steps = [step for step, *_ in histories[0]]
    cfg = load_config(config_file, [*opts, "MODEL.DIVE.INVERSION.MAX_STEPS", str(steps[-1])])
    prepare_datasets_from_config(cfg)
    model = load_model(cfg, weights)
    restarts = model.inversion.restarts
    dataset_dicts = DatasetCatalog.get(register_first_images(dataset, num_images, start_image))
    if restarts < 2 or len(histories) != len(dataset_dicts) * restarts:
        raise ValueError(f"{recording}/history.pth holds {len(histories)} runs: expected RESTARTS >= 2 runs "
                         f"for each of {len(dataset_dicts)} images (RESTARTS here: {restarts})")
    losses = torch.stack([torch.stack([loss for _, loss, _, _ in history]) for history in histories], dim=1)
    best_check, _ = replay_checks(losses, steps)
    tokens = torch.stack([histories[run][int(best_check[run])][2] for run in range(len(histories))])
    monitor = losses[best_check, torch.arange(len(histories))]
    return RecordedRuns(cfg, model, dataset_dicts, tokens.reshape(len(dataset_dicts), restarts, -1),
                        monitor.reshape(len(dataset_dicts), restarts))
