"""Models: the DIVE meta-architecture and its parts, and the Faster R-CNN baseline's backbone."""

from .baseline_backbone import build_truncated_resnet_fpn_backbone
from .class_conditional import ClassEmbeddingTable, DiffusionClassifier
from .denoising import denoising_error
from .first_stage import FirstStage
from .layout_encoder import LayoutEncoderModel
from .layout_prior import LayoutPriorTransformer
from .meta_arch import DIVE

__all__ = [
    "DIVE",
    "ClassEmbeddingTable",
    "DiffusionClassifier",
    "FirstStage",
    "LayoutEncoderModel",
    "LayoutPriorTransformer",
    "build_truncated_resnet_fpn_backbone",
    "denoising_error",
]
