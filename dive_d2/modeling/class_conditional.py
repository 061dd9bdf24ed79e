"""The class-conditional diffusion model p(x|c) of DIVE classification, as a Detectron2 meta-architecture.

Parts (each a diffusers model with ``save_pretrained``/``from_pretrained``):
- ``class_table``: ``ClassEmbeddingTable``, one row per class. It is the vocabulary that inversion snaps to,
  the classification counterpart of the layout vocabulary of detection.
- ``unet``: a diffusers ``UNet2DModel`` with ``class_embed_type="identity"``: the class row is added to
  its timestep embedding, so a continuous (not yet snapped) embedding can be fed during inversion.
- ``scheduler``: the DDPM schedule shared with detection (MODEL.DIVE.SCHEDULER).

In training mode ``forward`` returns ``{"loss_image": ...}`` (DefaultTrainer trains it); in eval mode it
classifies each image with MODEL.DIFFUSION_CLASSIFIER.METHOD and returns ``[{"pred_class", "stop_step"}]``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .denoising import denoising_error
from .meta_arch import build_scheduler

if TYPE_CHECKING:  # the classification package uses this model: no import at run time
    from ..classification import Classifier

CLASSIFIER_PART_FOLDERS = ("class_table", "unet", "scheduler")


class ClassEmbeddingTable(ModelMixin, ConfigMixin):
    """(num_classes, width) learned class embeddings, width = the UNet's timestep-embedding width."""

    @register_to_config
    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.embedding = nn.Embedding(num_classes, width)
        nn.init.normal_(self.embedding.weight, std=1.0)

    def vocabulary(self) -> torch.Tensor:
        """(num_classes, width) the table itself."""
        return self.embedding.weight

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) int64 class indices -> (B, width)."""
        return self.embedding(labels)


def build_class_conditional_parts(cfg: CfgNode) -> dict[str, nn.Module]:
    """Freshly initialised class table, UNet and scheduler from MODEL.DIFFUSION_CLASSIFIER keys."""
    node = cfg.MODEL.DIFFUSION_CLASSIFIER
    channels = tuple(node.BLOCK_OUT_CHANNELS)
    unet = UNet2DModel(
        sample_size=node.INPUT_SIZE, in_channels=node.IN_CHANNELS, out_channels=node.IN_CHANNELS,
        down_block_types=("DownBlock2D",) * len(channels), up_block_types=("UpBlock2D",) * len(channels),
        block_out_channels=channels, layers_per_block=node.LAYERS_PER_BLOCK, norm_num_groups=node.NORM_NUM_GROUPS,
        class_embed_type="identity",
    )
    return {"class_table": ClassEmbeddingTable(node.NUM_CLASSES, 4 * channels[0]), "unet": unet,
            "scheduler": build_scheduler(cfg)}


@META_ARCH_REGISTRY.register()
class DiffusionClassifier(nn.Module):
    """A class-conditional diffusion model that classifies by inversion or by enumeration (see module doc)."""

    @configurable
    def __init__(self, *, class_table: ClassEmbeddingTable, unet: UNet2DModel, scheduler: DDPMScheduler,
                 input_size: int, in_channels: int, input_format: str,
                 classifier: Classifier | None = None):
        """
        Args:
            class_table, unet, scheduler: the model's parts.
            input_size, in_channels: the only image shape accepted, (in_channels, input_size, input_size).
            input_format: Detectron2 INPUT.FORMAT the images were read with ("L" or "RGB").
            classifier: what eval mode runs (``dive_d2.classification.build_classifier``); None: inversion
                with default settings.
        """
        super().__init__()
        self.class_table = class_table
        self.unet = unet
        self.scheduler = scheduler
        self.input_size = input_size
        self.in_channels = in_channels
        self.input_format = input_format
        if classifier is None:
            from ..classification import ClassInversion

            classifier = ClassInversion()
        self.classifier = classifier
        # Images in [0, 255] map to [-1, 1]; the buffer also tells the model's device.
        self.register_buffer("pixel_mean", torch.tensor(127.5), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(127.5), persistent=False)

    @classmethod
    def from_config(cls, cfg: CfgNode):
        from ..classification import build_classifier

        node = cfg.MODEL.DIFFUSION_CLASSIFIER
        expected = {"L": 1, "RGB": 3, "BGR": 3}.get(cfg.INPUT.FORMAT)
        if expected != node.IN_CHANNELS:
            raise ValueError(f"INPUT.FORMAT {cfg.INPUT.FORMAT!r} does not give MODEL.DIFFUSION_CLASSIFIER."
                             f"IN_CHANNELS={node.IN_CHANNELS} channels (use 'L' for 1, 'RGB' for 3)")
        return {**build_class_conditional_parts(cfg), "input_size": node.INPUT_SIZE,
                "in_channels": node.IN_CHANNELS, "input_format": cfg.INPUT.FORMAT,
                "classifier": build_classifier(cfg, node.METHOD)}

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.class_table.config.num_classes

    def preprocess_images(self, batched_inputs: list[dict]) -> torch.Tensor:
        """(B, C, S, S) images in [-1, 1] from each input's "image" ((C, S, S) uint8 tensor).

        Raises:
            ValueError: an image is not (in_channels, input_size, input_size); names its file.
        """
        expected = (self.in_channels, self.input_size, self.input_size)
        for item in batched_inputs:
            if tuple(item["image"].shape) != expected:
                raise ValueError(f"{item.get('file_name', 'image')}: shape {tuple(item['image'].shape)} (C, H, W), "
                                 f"the model takes {expected} (MODEL.DIFFUSION_CLASSIFIER.IN_CHANNELS, INPUT_SIZE)")
        images = torch.stack([item["image"] for item in batched_inputs]).to(self.device, torch.float32)
        return (images - self.pixel_mean) / self.pixel_std

    def class_denoising_error(self, images: torch.Tensor, class_embeddings: torch.Tensor, timesteps: torch.Tensor,
                              noise: torch.Tensor) -> torch.Tensor:
        """(B,) epsilon-MSE of B images (B, C, S, S) in [-1, 1] given B class embeddings (B, width) (table
        rows, or continuous points during inversion), at timesteps (B,) with noise (B, C, S, S)."""
        return denoising_error(lambda noisy, t: self.unet(noisy, t, class_labels=class_embeddings).sample,
                               images, timesteps, noise, self.scheduler)

    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]:
        images = self.preprocess_images(batched_inputs)
        if not self.training:
            return self.inference(images, [self.image_seed(item) for item in batched_inputs])
        labels = torch.tensor([item["label"] for item in batched_inputs], device=self.device)
        if (labels < 0).any() or (labels >= self.num_classes).any():
            raise ValueError(f"training labels must lie in [0, {self.num_classes}), got {labels.tolist()}")
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(images),), device=self.device)
        noise = torch.randn_like(images)
        loss = self.class_denoising_error(images, self.class_table(labels), timesteps, noise).mean()
        return {"loss_image": loss}

    @staticmethod
    def image_seed(item: dict) -> int:
        """Seed of one image's initialisation: its "image_id" (an int, or a string hashed stably)."""
        image_id = item.get("image_id", 0)
        if isinstance(image_id, int):
            return image_id
        return int.from_bytes(str(image_id).encode()[-8:].rjust(8, b"\0"), "little") % (2**31)

    def inference(self, images: torch.Tensor, image_seeds: list[int]) -> list[dict]:
        """Classify (B, C, S, S) images in [-1, 1] with ``self.classifier`` (which sets its own grad mode):
        [{"pred_class", "stop_step"}], stop_step 0 for enumeration."""
        prediction = self.classifier(self, images, image_seeds)
        return [{"pred_class": int(label), "stop_step": int(step)}
                for label, step in zip(prediction.labels, prediction.stop_step, strict=True)]

    def save_pretrained(self, directory: str) -> None:
        """Write each part with diffusers' save_pretrained into ``directory/<part>/``."""
        for name in CLASSIFIER_PART_FOLDERS:
            getattr(self, name).save_pretrained(os.path.join(directory, name))

    def load_pretrained(self, directory: str) -> None:
        """Replace the parts with those ``save_pretrained`` wrote into ``directory``."""
        self.class_table = ClassEmbeddingTable.from_pretrained(os.path.join(directory, "class_table"))
        self.unet = UNet2DModel.from_pretrained(os.path.join(directory, "unet"))
        self.scheduler = DDPMScheduler.from_pretrained(os.path.join(directory, "scheduler"))
        self.to(self.device)
