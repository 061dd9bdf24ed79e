"""Image-classification data for DIVE classification: two generated benchmarks and any image folder.

Every classification split is an *image folder*: ``root/<class name>/<file>.png``, the layout most
classification tools read. The benchmarks are generated into such folders under ``dataset_root()`` the
first time they are used (named with a hash of their parameters; written to a temporary folder renamed
into place when complete), and a user's folder is read the same way. Dataset dicts are Detectron2's
convention plus one key: ``{"file_name", "image_id", "height", "width", "label"}`` where ``label`` is the
index of the class in the dataset's ``thing_classes`` (-1 for an unlabelled image).

digits-cls: scikit-learn's 8x8 digits, upscaled (nearest neighbour) to 16x16 grey images; train =
load_digits() indices 0-1299, test = 1300-1796 (handwriting never seen in training).

patches: 32x32 RGB, a background drawn as in the shapes benchmark, one object centred with a uniform
integer offset of up to 3 px in x and y. 120 classes ``"{size}-{colour}-{shape}"`` nested in that order
(size outermost): sizes small 10 px, medium 16 px, large 22 px; 8 colours; 5 shapes. Image ``j`` of class
``c`` is drawn from its own generator seeded with ``(seed, c, j)``.
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

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from .benchmarks import dataset_root
from .synthetic import DIGITS_CLASSES, ShapesSpec, load_sklearn_digits

logger = logging.getLogger(__name__)

PATCH_SIZES: dict[str, int] = {"small": 10, "medium": 16, "large": 22}
PATCH_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 200, 40), "blue": (40, 80, 230), "yellow": (230, 220, 40),
    "magenta": (220, 40, 220), "cyan": (40, 220, 220), "orange": (240, 140, 20), "white": (235, 235, 235),
}
PATCH_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
PATCH_CLASSES: tuple[str, ...] = tuple(
    f"{size}-{colour}-{shape}" for size in PATCH_SIZES for colour in PATCH_COLOURS for shape in PATCH_SHAPES)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

# Bump when a generator's output changes for the same parameters: it renames every cache folder.
CLASSIFICATION_GENERATOR_VERSION = 1


def patch_mask(shape: str, size: int, offset: tuple[int, int], image_size: int = 32) -> np.ndarray:
    """(image_size, image_size) bool mask of a ``shape`` filling a size x size box centred in the image,
    shifted by ``offset`` = (dx, dy) pixels. Pixel (row, col) is inside when its centre is."""
    x0 = (image_size - size) // 2 + offset[0]
    y0 = (image_size - size) // 2 + offset[1]
    u = np.arange(image_size)[None, :] + 0.5 - x0 - size / 2.0  # offsets from the box centre
    v = np.arange(image_size)[:, None] + 0.5 - y0 - size / 2.0
    half = size / 2.0
    inside = (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == "square":
        mask = inside
    elif shape == "circle":
        mask = u**2 + v**2 <= half**2
    elif shape == "triangle":  # apex at the top, base at the bottom edge
        mask = inside & (np.abs(u) <= (v + half) / 2.0)
    elif shape == "diamond":
        mask = np.abs(u) + np.abs(v) <= half
    elif shape == "cross":  # a plus sign with arm width size/3
        mask = inside & ((np.abs(u) <= size / 6.0) | (np.abs(v) <= size / 6.0))
    else:
        raise ValueError(f"unknown patch shape {shape!r}; known: {PATCH_SHAPES}")
    return np.broadcast_to(mask, (image_size, image_size)).copy()


@dataclass(frozen=True)
class PatchesSpec:
    """Parameters of the patches benchmark (the values of the classification issue)."""

    image_size: int = 32
    max_offset: int = 3


def generate_patch(seed: int, class_index: int, index: int, spec: PatchesSpec = PatchesSpec()) -> np.ndarray:
    """Image ``index`` of class ``class_index`` (into PATCH_CLASSES) drawn with ``seed``: (32, 32, 3) uint8."""
    size_name, colour_name, shape_name = PATCH_CLASSES[class_index].split("-")
    shapes = ShapesSpec()
    rng = np.random.default_rng([seed, class_index, index])
    n = spec.image_size
    background = rng.integers(0, shapes.background_max + 1, size=3).astype(np.float64)
    image = np.clip(np.rint(background + rng.normal(0.0, shapes.noise_sigma, size=(n, n, 3))), 0, 255)
    image = image.astype(np.uint8)
    offset = tuple(int(o) for o in rng.integers(-spec.max_offset, spec.max_offset + 1, size=2))
    image[patch_mask(shape_name, PATCH_SIZES[size_name], offset, n)] = PATCH_COLOURS[colour_name]
    return image


def digit_patch(digit_index: int, size: int = 16) -> np.ndarray:
    """load_digits() image ``digit_index`` upscaled (nearest neighbour) to (size, size) uint8 grey."""
    images, _ = load_sklearn_digits()
    scale = size // images.shape[1]
    return np.kron(images[digit_index], np.ones((scale, scale), dtype=np.uint8))


@dataclass(frozen=True)
class ClassificationSplit:
    """One registered classification split: which benchmark, which part, how many images."""

    name: str
    benchmark: str  # "patches" or "digits_cls"
    seed: int = 0  # patches: the generator seed
    per_class: int = 0  # patches: images per class
    index_range: tuple[int, int] = (0, 0)  # digits_cls: half-open range of load_digits() indices

    @property
    def class_names(self) -> tuple[str, ...]:
        return PATCH_CLASSES if self.benchmark == "patches" else DIGITS_CLASSES

    def images(self) -> Iterator[tuple[np.ndarray, int]]:
        """(image (H, W, 3) RGB or (H, W) grey uint8, label) of every image of the split, in order."""
        if self.benchmark == "patches":
            for class_index in range(len(PATCH_CLASSES)):
                for index in range(self.per_class):
                    yield generate_patch(self.seed, class_index, index), class_index
        else:
            _, labels = load_sklearn_digits()
            for digit_index in range(*self.index_range):
                yield digit_patch(digit_index), int(labels[digit_index])

    def __len__(self) -> int:
        if self.benchmark == "patches":
            return len(PATCH_CLASSES) * self.per_class
        return self.index_range[1] - self.index_range[0]

    def cache_key(self) -> str:
        description = {"version": CLASSIFICATION_GENERATOR_VERSION, "split": asdict(self),
                       "spec": asdict(PatchesSpec())}
        return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:12]


CLASSIFICATION_SPLITS: dict[str, ClassificationSplit] = {
    s.name: s
    for s in (
        ClassificationSplit("dive_patches_train", "patches", seed=0, per_class=100),
        ClassificationSplit("dive_patches_val", "patches", seed=1, per_class=10),
        ClassificationSplit("dive_digits_cls_train", "digits_cls", index_range=(0, 1300)),
        ClassificationSplit("dive_digits_cls_test", "digits_cls", index_range=(1300, 1797)),
    )
}


def write_image_folder(split: ClassificationSplit, root: str) -> None:
    """Write a split as ``root/<class name>/<position in split, 6 digits>.png``."""
    for name in split.class_names:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for position, (image, label) in enumerate(tqdm(split.images(), total=len(split), desc=f"generating {split.name}",
                                                   leave=False)):
        path = os.path.join(root, split.class_names[label], f"{position:06d}.png")
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(path, image):
            raise OSError(f"could not write {path}")


def ensure_classification_split(name: str) -> str:
    """Generate split ``name`` into the cache if it is not there yet; return its image folder."""
    split = CLASSIFICATION_SPLITS[name]
    folder = os.path.join(dataset_root(), f"{name}-{split.cache_key()}")
    if os.path.isdir(folder):
        return folder
    os.makedirs(dataset_root(), exist_ok=True)
    logger.info("Generating %s (%d images) into %s", name, len(split), folder)
    staging = tempfile.mkdtemp(prefix=f".{name}-", dir=dataset_root())
    try:
        write_image_folder(split, staging)
        try:
            os.rename(staging, folder)
        except OSError:
            if not os.path.isdir(folder):  # another process finished the same split first otherwise
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_image_folder(root: str, class_names: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    """Dataset dicts of an image folder.

    ``root`` holds either one subfolder per class (named exactly as in ``class_names``; the label is the
    class's index) or only image files (unlabelled: label -1). Files are sorted by path, so ``image_id``
    (the position) is the same on every machine. Height and width are read from each file.

    Raises:
        FileNotFoundError: ``root`` is missing or holds no image.
        ValueError: a subfolder is not one of ``class_names``.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder not found: {root}")
    entries = sorted(os.listdir(root))
    subfolders = [e for e in entries if os.path.isdir(os.path.join(root, e))]
    if subfolders:
        unknown = [s for s in subfolders if s not in class_names]
        if unknown:
            raise ValueError(f"{root}: subfolders {unknown[:5]} are not classes of the model "
                             f"(known: {list(class_names)[:10]}{' ...' if len(class_names) > 10 else ''})")
        labelled = [(os.path.join(root, s, f), class_names.index(s)) for s in subfolders
                    for f in sorted(os.listdir(os.path.join(root, s)))]
    else:
        labelled = [(os.path.join(root, f), -1) for f in entries]
    labelled = [(path, label) for path, label in labelled if path.lower().endswith(IMAGE_EXTENSIONS)]
    if not labelled:
        raise FileNotFoundError(f"no image ({', '.join(IMAGE_EXTENSIONS)}) found in {root}")
    records = []
    for image_id, (path, label) in enumerate(labelled):
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise OSError(f"could not read image {path}")
        records.append({"file_name": path, "image_id": image_id, "height": image.shape[0],
                        "width": image.shape[1], "label": label})
    return records


def load_classification_split(name: str) -> list[dict[str, Any]]:
    """Dataset dicts of a registered classification benchmark split (generated on first use)."""
    return load_image_folder(ensure_classification_split(name), CLASSIFICATION_SPLITS[name].class_names)


def register_classification_benchmarks(
    loader: Callable[[str], list[dict[str, Any]]] = load_classification_split,
) -> None:
    """Register every split of CLASSIFICATION_SPLITS (idempotent)."""
    for name, split in CLASSIFICATION_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, partial(loader, name))
        MetadataCatalog.get(name).set(thing_classes=list(split.class_names), evaluator_type="classification")


def register_image_folder(name: str, root: str, class_names: list[str] | tuple[str, ...]) -> str:
    """Register a user's image folder (see ``load_image_folder``) under ``name``; returns ``name``."""
    load_image_folder(root, class_names)  # fail at start-up, not mid-run
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, partial(load_image_folder, root, tuple(class_names)))
        MetadataCatalog.get(name).set(thing_classes=list(class_names), evaluator_type="classification",
                                      image_root=root)
    return name
