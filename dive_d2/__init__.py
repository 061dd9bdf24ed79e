"""DIVE generative object detection as a Detectron2 plugin.

Importing the package registers everything it adds to Detectron2: the synthetic benchmarks
(``dive_shapes_*``, ``dive_digits_*``) and classification splits (``dive_patches_*``,
``dive_digits_cls_*``) in the DatasetCatalog, the meta-architectures ``DIVE`` and ``DiffusionClassifier``,
and the baseline backbone in BACKBONE_REGISTRY.
"""

from . import data, modeling  # noqa: F401  (registration happens on import)
from .config import add_dive_config

__all__ = ["add_dive_config"]
__version__ = "0.1.0"
