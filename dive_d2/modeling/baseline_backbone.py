"""Backbone of the Faster R-CNN baselines: a ResNet cut after the last stage that FPN uses.

Detectron2's ``build_resnet_fpn_backbone`` always pools ``p5`` for its extra top level, so it needs res5.
On 64x64 images res4 (stride 16) already covers the largest objects, and dropping res5 removes about 8 M of
ResNet-18's 11 M parameters. This builder pools the last FPN level instead, whichever it is.
"""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool


@BACKBONE_REGISTRY.register()
def build_truncated_resnet_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """ResNet (stages up to the last of MODEL.FPN.IN_FEATURES) + FPN + one max-pooled extra level.

    With IN_FEATURES res2..res4 the outputs are p2..p5 at strides 4, 8, 16, 32 pixels.
    """
    bottom_up = build_resnet_backbone(cfg, input_shape)
    in_features = cfg.MODEL.FPN.IN_FEATURES
    top_block = LastLevelMaxPool()
    last_level = int(in_features[-1].removeprefix("res"))
    top_block.in_feature = f"p{last_level}"
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
