"""Registration of the synthetic benchmarks in Detectron2's DatasetCatalog / MetadataCatalog.

Registering costs nothing; a split is generated the first time its dataset dicts are requested and cached
as a COCO json plus PNG folder under ``dataset_root()`` (environment variable ``DIVE_D2_DATASETS``, default
``$XDG_CACHE_HOME/dive_d2/datasets`` or ``~/.cache/dive_d2/datasets``). The folder name carries a hash
of the generator version and the split's parameters, so a changed specification never reads a stale cache.
Generation writes into a temporary folder that is renamed into place when complete: an interrupted run
leaves no half-written split behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from .coco_io import load_coco_dataset_dicts, write_coco_dataset
from .synthetic import (
    DIGITS_CLASSES,
    SHAPES_CLASSES,
    DigitsSpec,
    ShapesSpec,
    SyntheticImage,
    generate_digits_image,
    generate_shapes_image,
)

logger = logging.getLogger(__name__)

# Bump when a generator's output changes for the same parameters: it renames every cache folder.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class BenchmarkSplit:
    """One registered split: its name, size, seed and how to draw image ``i``."""

    name: str
    benchmark: str  # "shapes" or "digits"
    split: str  # "train" or "val"
    num_images: int
    seed: int

    @property
    def class_names(self) -> tuple[str, ...]:
        return SHAPES_CLASSES if self.benchmark == "shapes" else DIGITS_CLASSES

    def spec(self) -> ShapesSpec | DigitsSpec:
        return ShapesSpec() if self.benchmark == "shapes" else DigitsSpec()

    def generate(self, index: int) -> SyntheticImage:
        """Image ``index`` (0-based) of this split."""
        if self.benchmark == "shapes":
            return generate_shapes_image(self.seed, index, self.spec())
        return generate_digits_image(self.seed, index, self.split, self.spec())

    def cache_key(self) -> str:
        description = {"version": GENERATOR_VERSION, "split": asdict(self), "spec": asdict(self.spec())}
        return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:12]


BENCHMARK_SPLITS: dict[str, BenchmarkSplit] = {
    s.name: s
    for s in (
        BenchmarkSplit("dive_shapes_train", "shapes", "train", 5000, seed=0),
        BenchmarkSplit("dive_shapes_val", "shapes", "val", 500, seed=1),
        BenchmarkSplit("dive_digits_train", "digits", "train", 3000, seed=0),
        BenchmarkSplit("dive_digits_val", "digits", "val", 500, seed=1),
    )
}


def dataset_root() -> str:
    """Folder that holds the generated benchmarks (``DIVE_D2_DATASETS`` or the user's cache folder)."""
    root = os.environ.get("DIVE_D2_DATASETS")
    if root:
        return os.path.expanduser(root)
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return os.path.join(cache, "dive_d2", "datasets")


def split_records(split: BenchmarkSplit, num_images: int | None = None) -> Iterator[SyntheticImage]:
    """The first ``num_images`` images of a split (all of them by default), generated on the fly."""
    for index in range(split.num_images if num_images is None else num_images):
        yield split.generate(index)


def write_split(split: BenchmarkSplit, image_dir: str, json_path: str, num_images: int | None = None) -> int:
    """Generate a split (or its first ``num_images`` images) as a COCO json plus PNG folder."""
    count = split.num_images if num_images is None else num_images
    records = (
        (r.image, r.boxes, r.classes)
        for r in tqdm(split_records(split, count), total=count, desc=f"generating {split.name}", leave=False)
    )
    return write_coco_dataset(records, split.class_names, image_dir, json_path,
                              description=f"{split.name} (dive_d2 generator v{GENERATOR_VERSION})")


def ensure_split_on_disk(name: str) -> tuple[str, str]:
    """Generate split ``name`` into the cache if it is not there yet.

    Returns:
        (json_path, image_dir) of the cached COCO export.
    """
    split = BENCHMARK_SPLITS[name]
    folder = os.path.join(dataset_root(), f"{name}-{split.cache_key()}")
    json_path, image_dir = os.path.join(folder, "annotations.json"), os.path.join(folder, "images")
    if os.path.exists(json_path):
        return json_path, image_dir
    os.makedirs(dataset_root(), exist_ok=True)
    logger.info("Generating %s (%d images) into %s", name, split.num_images, folder)
    staging = tempfile.mkdtemp(prefix=f".{name}-", dir=dataset_root())
    try:
        write_split(split, os.path.join(staging, "images"), os.path.join(staging, "annotations.json"))
        try:
            os.rename(staging, folder)
        except OSError:
            # Another process finished the same split first; its copy is identical.
            if not os.path.exists(json_path):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return json_path, image_dir


def load_benchmark_split(name: str) -> list[dict[str, Any]]:
    """Detectron2 dataset dicts of a registered benchmark split (generated on first use)."""
    json_path, image_dir = ensure_split_on_disk(name)
    return load_coco_dataset_dicts(json_path, image_dir, BENCHMARK_SPLITS[name].class_names)


def register_benchmarks(loader: Callable[[str], list[dict[str, Any]]] = load_benchmark_split) -> None:
    """Register every split of BENCHMARK_SPLITS (idempotent)."""
    for name, split in BENCHMARK_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, partial(loader, name))
        MetadataCatalog.get(name).set(thing_classes=list(split.class_names), evaluator_type="coco")
