"""Models: the DIVE meta-architecture and its parts, and the Faster R-CNN baseline's backbone."""

from .baseline_backbone import build_truncated_resnet_fpn_backbone

__all__ = ["build_truncated_resnet_fpn_backbone"]
