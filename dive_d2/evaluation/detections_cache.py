"""Resumable evaluation: each image's detections are kept on disk as soon as they are made.

DIVE takes half a minute per image on 2 CPU cores (4-7 hours for a 500-image split), so an evaluation must
not lose its finished images to a late failure or the end of a session. ``CachedDetector`` wraps the model
that ``inference_on_dataset`` runs: images of a batch that the cache files already hold are not inverted
again; the others are inverted together and appended to this run's own file (one JSON line each, flushed
and synced) when their batch ends. Rerunning an interrupted evaluation with the same command resumes it,
and a rerun on a subset (``DATASETS.TEST_LIMIT``) reads the images it shares with the full run.

Cache files belong to one fingerprint (the first part of their names): the model's weights and buffers, the
``MODEL`` config (less the ``MODEL.WEIGHTS`` path) with ``INPUT.FORMAT``, and the code of the dive_d2
package (its syntax trees: comments and docstrings do not count). Changing any of them starts other files
instead of returning detections made by another model or code. An image is known by its "image_id" and
the hash of its input pixels and output size, so the files serve several datasets. DIVE's detections for
an image depend only on the image, its id and the seed (tested), which is what makes them safe to reuse.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Iterable

import torch
from detectron2.config import CfgNode
from detectron2.structures import Boxes, Instances
from torch import nn

logger = logging.getLogger(__name__)

_opened = itertools.count()  # CachedDetectors opened by this process

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The raw bytes of a tensor of any dtype and device."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def code_of(source: str | bytes, filename: str = "<source>") -> str:
    """A module's syntax tree without its docstrings, as text.

    Comments, layout and docstrings do not change it, so editing documentation keeps finished detections;
    any change to what the code does changes it.
    """
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            is_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if is_docstring and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def source_digest(package_dir: str = PACKAGE_DIR) -> str:
    """sha256 of the code (``code_of``) of every .py file of the package, with its path, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(package_dir, "**", "*.py"), recursive=True)):
        digest.update(os.path.relpath(path, package_dir).encode())
        with open(path, "rb") as f:
            digest.update(code_of(f.read(), path).encode())
    return digest.hexdigest()


def model_fingerprint(model: nn.Module, settings: str, source: str) -> str:
    """sha256 of the model's state dict (names, dtypes, shapes and values), ``settings`` and ``source``."""
    digest = hashlib.sha256(settings.encode())
    digest.update(source.encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def inference_settings(cfg: CfgNode) -> str:
    """The config keys that decide a detector's outputs for a given image: ``MODEL`` without the weights'
    path (the weights themselves are hashed) and ``INPUT.FORMAT``."""
    model_cfg = cfg.MODEL.clone()
    model_cfg.defrost()
    del model_cfg["WEIGHTS"]
    return model_cfg.dump() + f"INPUT.FORMAT: {cfg.INPUT.FORMAT}\n"


def image_key(item: dict) -> str:
    """Cache key of one ``batched_inputs`` entry: its "image_id" and a hash of its "image" tensor
    (C, H, W) and of the output size ("height", "width") its detections are rescaled to."""
    digest = hashlib.sha256(tensor_bytes(item["image"]))
    digest.update(f"{tuple(item['image'].shape)}:{item.get('height')}:{item.get('width')}".encode())
    return f"{item.get('image_id', '')}:{digest.hexdigest()[:32]}"


def output_record(output: dict) -> dict:
    """JSON-ready copy of one detector output: boxes (xyxy, pixels of the output size), scores, classes,
    the output size and any integer entries besides "instances" (DIVE's "inversion_steps")."""
    instances = output["instances"].to("cpu")
    return {"image_size": list(instances.image_size),
            "boxes": instances.pred_boxes.tensor.tolist(),
            "scores": instances.scores.tolist(),
            "classes": instances.pred_classes.tolist(),
            "extra": {key: value for key, value in output.items() if key != "instances" and isinstance(value, int)}}


def output_from_record(record: dict, device: torch.device) -> dict:
    """The detector output a record was made from (float32 values survive JSON exactly), flagged
    ``"from_cache": True``."""
    instances = Instances(tuple(record["image_size"]))
    instances.pred_boxes = Boxes(torch.tensor(record["boxes"], dtype=torch.float32, device=device).reshape(-1, 4))
    instances.scores = torch.tensor(record["scores"], dtype=torch.float32, device=device)
    instances.pred_classes = torch.tensor(record["classes"], dtype=torch.int64, device=device)
    return {"instances": instances, **record["extra"], "from_cache": True}


def read_records(paths: Iterable[str]) -> dict[str, dict]:
    """Records of the cache files ``paths`` by image key. A last line cut short (the process died while
    writing it) is skipped; any other line that is not a record is an error naming file and line."""
    records = {}
    for path in paths:
        with open(path) as f:
            lines = f.read().split("\n")
        # Every complete record ends with a newline, so the text after the last one is empty or a cut line.
        for number, line in enumerate(lines[:-1], start=1):
            try:
                entry = json.loads(line)
                records[entry["key"]] = entry["record"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"Detections cache {path}, line {number}: not a cache record ({error}); "
                                 "delete the file to recompute its images") from error
        if lines[-1]:
            logger.warning("Detections cache %s: skipping its incomplete last line (%d characters; the run "
                           "writing it stopped)", path, len(lines[-1]))
    return records


class CachedDetector(nn.Module):
    """Wraps an eval-mode detector so that each image is run once per fingerprint; see the module docstring.

    ``forward(batched_inputs)`` returns what ``model(batched_inputs)`` would, in the same order; outputs read
    from the cache carry ``"from_cache": True``.
    """

    def __init__(self, model: nn.Module, directory: str, fingerprint: str):
        """
        Args:
            model: the detector; its outputs must be ``{"instances": Instances, <int entries>...}``.
            directory: folder of the cache files (created if missing).
            fingerprint: identity of the model, settings and code (``model_fingerprint``).
        """
        super().__init__()
        self.model = model
        os.makedirs(directory, exist_ok=True)
        stem = os.path.join(directory, fingerprint[:24])
        self.records = read_records(sorted(glob.glob(f"{glob.escape(stem)}.*.jsonl")))
        # Each process appends to a file of its own, created with its first record, so that concurrent or
        # distributed runs never write to one file and a file cut short by a crash is never appended to.
        # (The counter separates two caches a process opens within one second.)
        self.path = f"{stem}.{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_opened)}.jsonl"
        logger.info("Detections cache %s.*: %d image(s) already done", stem, len(self.records))

    @classmethod
    def from_config(cls, cfg: CfgNode, model: nn.Module) -> CachedDetector:
        """The wrapper for ``model`` built from ``cfg``, its files in ``OUTPUT_DIR/TEST.DETECTIONS_CACHE``."""
        fingerprint = model_fingerprint(model, inference_settings(cfg), source_digest())
        return cls(model, os.path.join(cfg.OUTPUT_DIR, cfg.TEST.DETECTIONS_CACHE), fingerprint)

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        if self.training:
            raise RuntimeError("CachedDetector is for evaluation; call .eval() (inference_on_dataset does)")
        keys = [image_key(item) for item in batched_inputs]
        missing = [index for index, key in enumerate(keys) if key not in self.records]
        fresh = dict(zip(missing, self.model([batched_inputs[i] for i in missing]), strict=True)) if missing else {}
        if fresh:
            with open(self.path, "a") as f:
                for index, output in fresh.items():
                    record = output_record(output)
                    self.records[keys[index]] = record
                    f.write(json.dumps({"key": keys[index], "record": record}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        device = next(self.model.parameters()).device
        return [fresh[index] if index in fresh else output_from_record(self.records[key], device)
                for index, key in enumerate(keys)]
