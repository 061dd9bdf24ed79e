"""Datasets: the synthetic benchmarks, COCO json input/output, and user COCO data from config keys."""

from .benchmarks import BENCHMARK_SPLITS, dataset_root, ensure_split_on_disk, register_benchmarks
from .classification import (
    CLASSIFICATION_SPLITS,
    PATCH_CLASSES,
    load_image_folder,
    register_classification_benchmarks,
    register_image_folder,
)
from .classification_mapper import ClassificationMapper
from .coco_io import ground_truth_layout, load_coco_dataset_dicts, write_coco_dataset
from .from_config import (
    model_class_names,
    prepare_datasets_from_config,
    register_coco_json,
    register_first_images,
    register_user_coco_datasets,
)
from .layout_mapper import LayoutOnlyMapper, build_train_mapper
from .synthetic import DIGITS_CLASSES, SHAPES_CLASSES

register_benchmarks()
register_classification_benchmarks()

__all__ = [
    "BENCHMARK_SPLITS",
    "CLASSIFICATION_SPLITS",
    "ClassificationMapper",
    "PATCH_CLASSES",
    "DIGITS_CLASSES",
    "LayoutOnlyMapper",
    "SHAPES_CLASSES",
    "build_train_mapper",
    "dataset_root",
    "ensure_split_on_disk",
    "ground_truth_layout",
    "load_coco_dataset_dicts",
    "load_image_folder",
    "model_class_names",
    "prepare_datasets_from_config",
    "register_benchmarks",
    "register_classification_benchmarks",
    "register_coco_json",
    "register_first_images",
    "register_image_folder",
    "register_user_coco_datasets",
    "write_coco_dataset",
]
