"""Building a config and a trained model outside tools/train_net.py, and reading and writing checkpoint
state dicts (for the other tools)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model

from .config import add_dive_config


def load_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """Detectron2 config with the dive_d2 keys, ``config_file`` and ``opts`` (KEY VALUE ...) merged.

    MODEL.DEVICE becomes "cuda" when CUDA is available and "cpu" otherwise, unless ``opts`` set it.
    """
    cfg = get_cfg()
    add_dive_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.merge_from_list(list(opts))
    return cfg


class InferenceCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that refuses a file which does not fill the model.

    DetectionCheckpointer skips a tensor whose shape differs from the model's and leaves a missing one at its
    initial value, with a warning. Training from a partial file wants that (a prior trained on an image-only
    checkpoint); evaluation would give wrong detections without an error (weights trained with
    ``MODEL.DIVE.SPATIAL_MAP.CHANNELS 10`` under a config that builds 8). ``load`` raises ValueError naming the
    file and the first tensors that do not fit.
    """

    def load(self, path: str, *args, **kwargs) -> dict:
        self._path = path
        return super().load(path, *args, **kwargs)

    def _load_model(self, checkpoint: dict):
        incompatible = super()._load_model(checkpoint)
        problems = [f"{key} is {tuple(saved)} in the file but {tuple(built)} in the model"
                    for key, saved, built in incompatible.incorrect_shapes]
        reshaped = {key for key, _, _ in incompatible.incorrect_shapes}
        problems += [f"{key} is not in the file" for key in incompatible.missing_keys if key not in reshaped]
        if problems:
            shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
            raise ValueError(f"{self._path} does not fit the model the config builds: {shown}. Use the config and "
                             "overrides the weights were trained with.")
        return incompatible


def load_model(cfg: CfgNode, weights: str) -> torch.nn.Module:
    """The model of ``cfg`` with ``weights`` (a DetectionCheckpointer file) loaded, in eval mode.

    Raises ValueError naming ``weights`` when a tensor of the model is missing from it or has another shape.
    """
    model = build_model(cfg)
    InferenceCheckpointer(model).load(weights)
    return model.eval()


def read_checkpoint(path: str, required_key: str = "") -> dict:
    """A DetectionCheckpointer file loaded on the CPU: ``{"model": state dict, ...}``.

    Raises ValueError naming ``path`` when the file holds no ``"model"`` dict, or no ``required_key`` in it.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path}: not a torch checkpoint ({error})") from error
    state = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: no 'model' state dict; is it a Detectron2 checkpoint?")
    if required_key and required_key not in state:
        raise ValueError(f"{path}: no 'model'['{required_key}']")
    return loaded


def write_model_state(state: dict, path: str, **extra) -> None:
    """Save ``state`` as a DetectionCheckpointer-loadable file (``{"model": state, **extra}``), creating
    the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"model": state, "__author__": "dive_d2", **extra}, path)
