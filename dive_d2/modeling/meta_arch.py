"""``DIVE``: the generative detector as a Detectron2 meta-architecture.

It holds the two frozen-at-inference diffusion models of the method:
- p(x|y): ``first_stage`` (pixel space or a diffusers autoencoder), a diffusers ``UNet2DConditionModel``
  whose cross-attention reads ``layout_encoder``'s output, and a DDPM noise ``scheduler``;
- p(y): ``prior``, a transformer denoiser over layout embedding sequences made with the frozen vocabulary
  table of ``layout_encoder``.

Training mode (Detectron2 contract): ``forward(batched_inputs)`` returns ``{"loss_image", "loss_prior"}``
(each only when that model is trained, see MODEL.DIVE.TRAIN_*; with MODEL.DIVE.RANKING.WEIGHT > 0 also
``loss_image_ranking``), so ``DefaultTrainer`` trains it.
Inference: ``forward`` inverts p(x|y) p(y) for each image (dive_d2/inversion/engine.py), decodes the best
layout (or pools the objects of all restarts, dive_d2/inversion/pooling.py) into boxes and returns
``[{"instances": Instances(pred_boxes, scores, pred_classes), "inversion_steps": int}]``, rescaled by
``detector_postprocess`` to each input's "height" and "width". With ``POOLED_PASS_PRIOR_WEIGHTS`` the whole
detector runs once more per weight (only the prior weight differs) and the passes' finished detections are pooled
(``pool_passes``; the output then also carries "pooled_pass_steps").
"""

from __future__ import annotations

import hashlib
import logging
import os

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import nn

from ..data.hard_negatives import HardNegativeImage, load_hard_negatives
from ..inversion import (
    POOLED_SCORES,
    RESTART_SELECTIONS,
    SCORES,
    BoxClassDecision,
    ClassAlternatives,
    ErrorMapBoxRefinement,
    ErrorMapCandidates,
    InversionResult,
    JointLayoutScores,
    LayoutInversion,
    PriorScores,
    hashed_seed,
    leave_one_out_scores,
    margin_scores,
    pool_detections,
    tf32_allowed,
)
from ..inversion.error_map import empty_layout_error_map
from ..inversion.pooling import merge_equal_detections
from ..layout import DecodedLayout, LayoutTokenizer, random_object_moves
from .denoising import clean_estimate, denoising_error, noise_prediction_error, ranking_loss
from .first_stage import FirstStage
from .layout_encoder import LayoutEncoderModel
from .layout_prior import LayoutPriorTransformer, noise_from_token_logits, prior_input_scale, rounding_loss
from .spatial_layout import SpatialLayoutMap, layout_occupancy

logger = logging.getLogger(__name__)

# Extra UNet input channels of MODEL.DIVE.UNET.COORDINATE_CHANNELS: x and y.
COORDINATE_CHANNELS = 2


def coordinate_planes(latents: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) planes holding each pixel centre's x and y, normalised to [-1, 1], for latents (B, C, h, w)."""
    batch, _, height, width = latents.shape
    ys = (torch.arange(height, device=latents.device, dtype=latents.dtype) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, device=latents.device, dtype=latents.dtype) + 0.5) / width * 2 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(batch, -1, -1, -1)


# Sub-folders of a save_pretrained export, one per diffusion part.
PART_FOLDERS = ("layout_encoder", "unet", "prior", "scheduler")
OPTIONAL_PART_FOLDERS = ("spatial_map",)


@META_ARCH_REGISTRY.register()
class DIVE(nn.Module):
    """Layout-to-image diffusion model + layout prior, trained by denoising, inverted to detect."""

    @configurable
    def __init__(
        self,
        *,
        tokenizer: LayoutTokenizer,
        first_stage: FirstStage,
        layout_encoder: LayoutEncoderModel,
        unet: UNet2DConditionModel,
        prior: LayoutPriorTransformer,
        scheduler: DDPMScheduler,
        input_size: int,
        input_format: str = "BGR",
        train_image_model: bool = True,
        train_prior: bool = True,
        shuffle_seed: int = 0,
        spatial_map: SpatialLayoutMap | None = None,
        inversion: LayoutInversion | None = None,
        score: str = "leave_one_out",
        score_temperature: float = 0.01,
        restart_selection: str = "best",
        pool_iou: float = 0.5,
        pooled_pass_prior_weights: tuple[float, ...] = (),
        pooled_pass_iou: float = 0.5,
        pooled_pass_score: str = "mean",
        box_refinement: ErrorMapBoxRefinement | None = None,
        box_classes: BoxClassDecision | None = None,
        box_candidates: ErrorMapCandidates | None = None,
        joint_layout_scores: JointLayoutScores | None = None,
        class_alternatives: ClassAlternatives | None = None,
        prior_scores: PriorScores | None = None,
        prior_rounding_weight: float = 0.0,
        prior_token_weight: float = 0.0,
        ranking_weight: float = 0.0,
        ranking_temperature: float = 0.05,
        ranking_shifts: tuple[int, ...] = (1, 2, 4, 8),
        ranking_timesteps: tuple[int, int] = (0, 0),
        hard_negatives: list[HardNegativeImage] | None = None,
        hard_negatives_per_step: int = 8,
        occupancy_loss_weight: float = 0.0,
        allow_tf32: bool = False,
    ):
        """
        Args:
            tokenizer: the layout token format (classes, grid, slots).
            first_stage, layout_encoder, unet, scheduler: p(x|y).
            prior: p(y), on embeddings from ``layout_encoder.vocabulary()``.
            input_size: side in pixels of the square model input; images are resized to it.
            input_format: channel order of ``batched_inputs[i]["image"]``: "BGR" (Detectron2's default) or "RGB".
            train_image_model / train_prior: which model's parameters train (the others are frozen).
            shuffle_seed: seed of the generator that shuffles object order in training layouts.
            spatial_map: optional part of p(x|y) whose output channels join the UNet's input.
            inversion: the engine used in eval mode (default settings when None).
            score, score_temperature: detection confidence, see dive_d2/inversion/scoring.py.
            restart_selection, pool_iou: with several restarts, return the best run ("best") or the union of
                all runs' objects ("pooled", merged at IoU >= pool_iou); see dive_d2/inversion/pooling.py.
            pooled_pass_prior_weights, pooled_pass_iou, pooled_pass_score: one more inversion pass per weight, the
                whole detector with ``inversion``'s prior weight replaced by it; every pass's finished detections
                are pooled (``pool_passes``; not in the paper). () = one pass.
            box_refinement: if given, the returned boxes are fitted to the image's empty-layout error map
                (dive_d2/inversion/box_refinement.py; not in the paper).
            box_classes: if given, each returned box's class is re-chosen by p(x|y)'s error inside the box,
                after any refinement (dive_d2/inversion/box_classes.py; not in the paper).
            box_candidates: if given (needs ``box_classes``), the error map's component boxes join the boxes
                the class decision sees, and overlapping boxes of a class are suppressed after it
                (dive_d2/inversion/error_map_candidates.py; not in the paper).
            joint_layout_scores: if given, the best detections are rescored last by what each explains next to a
                joint layout of the better ones (dive_d2/inversion/joint_layout_scores.py; not in the paper).
            class_alternatives: if given, every finished detection is returned once more with each other class
                at a fraction of its score, after everything else (dive_d2/inversion/class_alternatives.py; not in
                the paper).
            prior_scores: if given, last of all every detection's score is weighed by how typical p(y) finds its
                object alone (dive_d2/inversion/prior_scores.py; not in the paper).
            prior_rounding_weight: weight of ``loss_prior_rounding`` (``rounding_loss``, each sample weighted
                by its a_t) in training the prior; 0 trains on the epsilon loss alone.
            prior_token_weight: weight of ``loss_prior_tokens``, the cross-entropy of the true tokens under a
                ``token_posterior`` prior's logits (CDCD's loss), in training the prior; needs that
                parameterisation.
            ranking_weight, ranking_temperature, ranking_shifts: weight of ``loss_image_ranking`` (the true
                layout against one random single-object move of it, ``ranking_loss``; moves by
                ``ranking_shifts`` grid cells) in training p(x|y); 0 turns it off.
            ranking_timesteps: (start, end): only samples whose timestep lies in [start, end) are ranked
                (end 0 = the schedule's end); the denoising loss still uses every sample.
            hard_negatives: if given, the ranking term's wrong layouts are these mined ones instead of random
                moves: each step draws ``hard_negatives_per_step`` of these images (with replacement), one of
                each image's negatives, and timesteps uniformly in the ranking window
                (``hard_negative_ranking_loss``).
            occupancy_loss_weight: weight of ``loss_image_occupancy`` (``occupancy_loss``) in training p(x|y);
                0 turns it off, > 0 needs a spatial map with at least one channel per class.
            allow_tf32: let CUDA use TF32 in inference (the inversion, scores and refinement); see
                dive_d2/inversion/precision.py.
        """
        super().__init__()
        if not (train_image_model or train_prior):
            raise ValueError("DIVE: at least one of MODEL.DIVE.TRAIN_IMAGE_MODEL / TRAIN_PRIOR must be true")
        if input_format not in ("BGR", "RGB"):
            raise ValueError(f"DIVE: input_format must be 'BGR' or 'RGB', got {input_format!r}")
        map_channels = spatial_map.config.channels if spatial_map is not None else 0
        extra_channels = unet.config.in_channels - unet.config.out_channels - map_channels
        if extra_channels not in (0, COORDINATE_CHANNELS):
            raise ValueError(f"DIVE: the UNet's in_channels ({unet.config.in_channels}) must equal its "
                             f"out_channels ({unet.config.out_channels}) plus the spatial map's {map_channels}, or "
                             f"exceed that by {COORDINATE_CHANNELS} coordinate channels")
        if input_size % first_stage.downsample:
            raise ValueError(f"DIVE: input_size {input_size} is not a multiple of the first stage's "
                             f"downsampling {first_stage.downsample}")
        self.tokenizer = tokenizer
        self.first_stage = first_stage.requires_grad_(False)
        self.layout_encoder = layout_encoder.requires_grad_(train_image_model)
        self.unet = unet.requires_grad_(train_image_model)
        self.spatial_map = spatial_map.requires_grad_(train_image_model) if spatial_map is not None else None
        self.prior = prior.requires_grad_(train_prior)
        self.scheduler = scheduler
        self.input_size = input_size
        self.coordinate_channels = extra_channels == COORDINATE_CHANNELS
        self.input_format = input_format
        self.train_image_model = train_image_model
        self.train_prior = train_prior
        self.shuffle_generator = torch.Generator().manual_seed(shuffle_seed)
        if score not in SCORES:
            raise ValueError(f"DIVE: score must be one of {SCORES}, got {score!r}")
        self.inversion = inversion if inversion is not None else LayoutInversion()
        self.score = score
        self.score_temperature = score_temperature
        if restart_selection not in RESTART_SELECTIONS:
            raise ValueError(f"DIVE: MODEL.DIVE.INVERSION.RESTART_SELECTION must be one of {RESTART_SELECTIONS}, "
                             f"got {restart_selection!r}")
        if not 0.0 < pool_iou <= 1.0:
            raise ValueError(f"DIVE: MODEL.DIVE.INVERSION.POOL_IOU must lie in (0, 1], got {pool_iou}")
        self.restart_selection = restart_selection
        self.pool_iou = pool_iou
        if any(weight < 0 for weight in pooled_pass_prior_weights):
            raise ValueError("DIVE: MODEL.DIVE.INVERSION.POOLED_PASS_PRIOR_WEIGHTS must be >= 0, got "
                             f"{tuple(pooled_pass_prior_weights)}")
        if not 0.0 < pooled_pass_iou <= 1.0:
            raise ValueError(f"DIVE: MODEL.DIVE.INVERSION.POOLED_PASS_IOU must lie in (0, 1], got {pooled_pass_iou}")
        if pooled_pass_score not in POOLED_SCORES:
            raise ValueError(f"DIVE: MODEL.DIVE.INVERSION.POOLED_PASS_SCORE must be one of {POOLED_SCORES}, "
                             f"got {pooled_pass_score!r}")
        self.pooled_pass_prior_weights = tuple(float(weight) for weight in pooled_pass_prior_weights)
        self.pooled_pass_iou = pooled_pass_iou
        self.pooled_pass_score = pooled_pass_score
        self.box_refinement = box_refinement
        self.box_classes = box_classes
        if box_candidates is not None and (box_classes is None or box_classes.score == "layout"):
            raise ValueError("DIVE: box_candidates need box_classes with a score from the error maps "
                             "(MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES needs RECLASSIFY_BOXES and a RECLASSIFY_SCORE "
                             "other than \"layout\")")
        self.box_candidates = box_candidates
        self.joint_layout_scores = joint_layout_scores
        self.class_alternatives = class_alternatives
        self.prior_scores = prior_scores
        if prior_rounding_weight < 0:
            raise ValueError(f"DIVE: MODEL.DIVE.PRIOR.ROUNDING_WEIGHT must be >= 0, got {prior_rounding_weight}")
        self.prior_rounding_weight = prior_rounding_weight
        if prior_token_weight < 0 or (prior_token_weight > 0 and prior.config.parameterisation != "token_posterior"):
            raise ValueError("DIVE: MODEL.DIVE.PRIOR.TOKEN_LOSS_WEIGHT must be >= 0, and > 0 only with "
                             f"PRIOR.PARAMETERISATION 'token_posterior'; got {prior_token_weight} with "
                             f"{prior.config.parameterisation!r}")
        self.prior_token_weight = prior_token_weight
        if ranking_weight < 0 or ranking_temperature <= 0 or not ranking_shifts or min(ranking_shifts) < 1:
            raise ValueError("DIVE: MODEL.DIVE.RANKING needs WEIGHT >= 0, TEMPERATURE > 0 and SHIFTS of positive "
                             f"grid cells; got {ranking_weight}, {ranking_temperature}, {tuple(ranking_shifts)}")
        self.ranking_weight = ranking_weight
        self.ranking_temperature = ranking_temperature
        self.ranking_shifts = tuple(ranking_shifts)
        schedule = scheduler.config.num_train_timesteps
        start, end = ranking_timesteps[0], ranking_timesteps[1] or schedule
        if not 0 <= start < end <= schedule:
            raise ValueError(f"DIVE: MODEL.DIVE.RANKING window [MIN_TIMESTEP, MAX_TIMESTEP) = "
                             f"{tuple(ranking_timesteps)} must satisfy 0 <= MIN < MAX (0 = {schedule}) <= the "
                             f"schedule's {schedule} steps")
        self.ranking_timesteps = (start, end)
        if hard_negatives is not None and (not hard_negatives or hard_negatives_per_step < 1):
            raise ValueError("DIVE: MODEL.DIVE.RANKING.NEGATIVES needs at least one image with a negative and "
                             f"NEGATIVES_PER_STEP >= 1; got {len(hard_negatives)} images, {hard_negatives_per_step}")
        self.hard_negatives = hard_negatives
        self.hard_negatives_per_step = hard_negatives_per_step
        if occupancy_loss_weight < 0 or (occupancy_loss_weight > 0 and map_channels < tokenizer.num_classes):
            raise ValueError("DIVE: MODEL.DIVE.SPATIAL_MAP.OCCUPANCY_LOSS_WEIGHT must be >= 0, and > 0 only with "
                             f"SPATIAL_MAP.CHANNELS >= NUM_CLASSES; got {occupancy_loss_weight} with {map_channels} "
                             f"channels and {tokenizer.num_classes} classes")
        self.occupancy_loss_weight = occupancy_loss_weight
        self.allow_tf32 = allow_tf32
        # Its own stream, so that turning the ranking term on leaves the shuffles and the (t, noise) draws as they were.
        self.ranking_generator = torch.Generator().manual_seed(shuffle_seed + 1)
        # Images in [0, 255] map to [-1, 1]; the buffer also tells the model's device.
        self.register_buffer("pixel_mean", torch.tensor(127.5), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(127.5), persistent=False)

    @classmethod
    def from_config(cls, cfg: CfgNode):
        dive = cfg.MODEL.DIVE
        tokenizer = LayoutTokenizer(dive.NUM_CLASSES, dive.GRID_SIZE, dive.NUM_SLOTS)
        first_stage = FirstStage(dive.FIRST_STAGE.NAME, dive.FIRST_STAGE.PATH, dive.FIRST_STAGE.SCALING_FACTOR or None)
        if dive.PRETRAINED_DIR:
            parts = load_pretrained_parts(dive.PRETRAINED_DIR)
        else:
            parts = build_parts(cfg, tokenizer, first_stage)
        return {
            "tokenizer": tokenizer,
            "first_stage": first_stage,
            **parts,
            "input_size": dive.INPUT_SIZE,
            "input_format": cfg.INPUT.FORMAT,
            "train_image_model": dive.TRAIN_IMAGE_MODEL,
            "train_prior": dive.TRAIN_PRIOR,
            "shuffle_seed": max(cfg.SEED, 0),
            "inversion": LayoutInversion(cfg),
            "score": dive.INVERSION.SCORE,
            "score_temperature": dive.INVERSION.SCORE_TEMPERATURE,
            "restart_selection": dive.INVERSION.RESTART_SELECTION,
            "pool_iou": dive.INVERSION.POOL_IOU,
            "pooled_pass_prior_weights": tuple(dive.INVERSION.POOLED_PASS_PRIOR_WEIGHTS),
            "pooled_pass_iou": dive.INVERSION.POOLED_PASS_IOU,
            "pooled_pass_score": dive.INVERSION.POOLED_PASS_SCORE,
            "box_refinement": ErrorMapBoxRefinement.from_config(cfg),
            "box_classes": (BoxClassDecision(dive.INVERSION.RECLASSIFY_SCORE,
                                             duplicate_iou=dive.INVERSION.CANDIDATE_NMS_IOU)
                            if dive.INVERSION.RECLASSIFY_BOXES else None),
            "box_candidates": ErrorMapCandidates.from_config(cfg),
            "joint_layout_scores": (JointLayoutScores(dive.INVERSION.JOINT_LAYOUT_TOP_K,
                                                      dive.INVERSION.JOINT_LAYOUT_ACCEPT,
                                                      dive.INVERSION.JOINT_LAYOUT_EXPONENT,
                                                      dive.INVERSION.JOINT_LAYOUT_CONTEXT)
                                    if dive.INVERSION.JOINT_LAYOUT_TOP_K != 0 else None),
            "class_alternatives": (ClassAlternatives(dive.INVERSION.CLASS_ALTERNATIVES_FACTOR)
                                   if dive.INVERSION.CLASS_ALTERNATIVES_FACTOR != 0 else None),
            "prior_scores": (PriorScores(dive.INVERSION.PRIOR_SCORE_WEIGHT, dive.INVERSION.PRIOR_SCORE_PAIRS,
                                         dive.INVERSION.SEED + 4)
                             if dive.INVERSION.PRIOR_SCORE_WEIGHT != 0 else None),
            "prior_rounding_weight": dive.PRIOR.ROUNDING_WEIGHT,
            "prior_token_weight": dive.PRIOR.TOKEN_LOSS_WEIGHT,
            "ranking_weight": dive.RANKING.WEIGHT,
            "ranking_temperature": dive.RANKING.TEMPERATURE,
            "ranking_shifts": tuple(dive.RANKING.SHIFTS),
            "ranking_timesteps": (dive.RANKING.MIN_TIMESTEP, dive.RANKING.MAX_TIMESTEP),
            # Read only when the term trains, so that evaluating such a config needs neither file nor images.
            "hard_negatives": (load_hard_negatives(dive.RANKING.NEGATIVES, dive.NUM_CLASSES, cfg.INPUT.FORMAT)
                               if dive.RANKING.NEGATIVES and dive.RANKING.WEIGHT > 0 and dive.TRAIN_IMAGE_MODEL
                               else None),
            "hard_negatives_per_step": dive.RANKING.NEGATIVES_PER_STEP,
            "occupancy_loss_weight": dive.SPATIAL_MAP.OCCUPANCY_LOSS_WEIGHT,
            "allow_tf32": dive.INVERSION.ALLOW_TF32,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ---- inputs ----------------------------------------------------------------------------------------------
    def preprocess_images(self, batched_inputs: list[dict]) -> torch.Tensor:
        """Model input: (B, 3, S, S) RGB in [-1, 1], S = input_size.

        Each ``image`` is a (C, H, W) tensor in [0, 255] of any size; C = 1 (grey, replicated to RGB),
        3 (in ``input_format`` order) or 4 (alpha dropped). Resizing is bilinear with antialiasing.
        """
        images = []
        for index, item in enumerate(batched_inputs):
            image = item["image"].to(self.device, torch.float32)
            if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
                raise ValueError(f"DIVE: batched_inputs[{index}]['image'] must be (C, H, W) with C in 1, 3, 4; "
                                 f"got shape {tuple(image.shape)}")
            if image.shape[0] == 1:
                image = image.expand(3, -1, -1)
            image = image[:3]
            if self.input_format == "BGR":
                image = image.flip(0)
            image = F.interpolate(image[None], size=(self.input_size, self.input_size), mode="bilinear",
                                  antialias=True, align_corners=False)[0]
            images.append((image - self.pixel_mean) / self.pixel_std)
        return torch.stack(images)

    def layout_tokens(self, batched_inputs: list[dict], generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 3 * num_slots) tokens of each input's ground-truth ``instances``; boxes are in pixels of
        ``instances.image_size`` (the frame of the input's ``image``, when there is one)."""
        tokens = []
        for item in batched_inputs:
            instances = item["instances"]
            height, width = instances.image_size
            tokens.append(self.tokenizer.encode(instances.gt_boxes.tensor.cpu(), instances.gt_classes.cpu(),
                                                height, width, generator=generator))
        return torch.stack(tokens).to(self.device)

    # ---- the two models --------------------------------------------------------------------------------------
    def image_denoising_error(self, latents: torch.Tensor, token_embeddings: torch.Tensor, timesteps: torch.Tensor,
                              noise: torch.Tensor) -> torch.Tensor:
        """(B,) denoising error of p(x|y) for latents (B, C, h, w) given (B, L, width) layout embeddings."""
        context = self.layout_encoder(token_embeddings)
        return denoising_error(lambda noisy, t: self.predict_image_noise(noisy, t, context), latents, timesteps,
                               noise, self.scheduler)

    def predict_image_noise(self, noisy: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction (B, C, h, w) for noisy latents (B, C, h, w) at (B,) timesteps, given the
        layout encoder's (B, L, width) output; the coordinate planes and the spatial layout map join the
        UNet's input when the model has them."""
        inputs = [noisy]
        if self.coordinate_channels:
            inputs.append(coordinate_planes(noisy))
        if self.spatial_map is not None:
            inputs.append(self.spatial_map(context, *noisy.shape[-2:]))
        return self.unet(torch.cat(inputs, dim=1), timesteps, encoder_hidden_states=context).sample

    def prior_denoising_error(self, token_embeddings: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor
                              ) -> torch.Tensor:
        """(B,) denoising error of p(y) for (B, L, width) layout embeddings."""
        clean = token_embeddings / prior_input_scale(self.layout_encoder.vocabulary())
        return denoising_error(self.predict_prior_noise, clean, timesteps, noise, self.scheduler)

    def predict_prior_noise(self, noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """p(y)'s noise prediction (B, L, width) for a noisy normalised layout sequence (B, L, width) at (B,)
        timesteps; a ``token_posterior`` prior gets the normalised vocabulary table, the allowed tokens and a_t
        it needs. Every use of the prior (training, inversion, sampling, diagnostics) goes through here."""
        if self.prior.config.parameterisation == "epsilon":
            return self.prior(noisy, timesteps)
        alpha_bar = self.scheduler.alphas_cumprod.to(noisy.device)[timesteps]
        return self.prior(noisy, timesteps, vocabulary=self.prior_vocabulary(),
                          allowed=self.tokenizer.allowed_tokens(), alpha_bar=alpha_bar)

    def prior_vocabulary(self) -> torch.Tensor:
        """The (V, width) vocabulary table in p(y)'s normalised units (divided by ``prior_input_scale``), detached:
        the space the prior's noisy sequences live in."""
        vocabulary = self.layout_encoder.vocabulary().detach()
        return vocabulary / prior_input_scale(vocabulary)

    def _random_timesteps(self, batch_size: int) -> torch.Tensor:
        return torch.randint(0, self.scheduler.config.num_train_timesteps, (batch_size,), device=self.device)

    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]:
        if not self.training:
            return self.inference(batched_inputs)
        tokens = self.layout_tokens(batched_inputs, generator=self.shuffle_generator)
        losses = {}
        if self.train_image_model:
            latents = self.first_stage.encode(self.preprocess_images(batched_inputs))
            losses.update(self.image_training_losses(latents, tokens))
            if self.occupancy_loss_weight:
                losses["loss_image_occupancy"] = self.occupancy_loss_weight * self.occupancy_loss(
                    tokens, *latents.shape[-2:])
        if self.train_prior:
            losses.update(self.prior_training_losses(tokens))
        return losses

    def image_training_losses(self, latents: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss_image`` (the mean denoising error of p(x|y)) and, with a ranking weight,
        ``loss_image_ranking`` for (B, C, h, w) latents and their (B, L) true layout tokens. The wrong
        layouts are random moves of the batch's own layouts or, with ``hard_negatives``, mined ones
        (``hard_negative_ranking_loss``); either way they share the true ones' timesteps and noises, so
        their difference is the layout's alone."""
        timesteps = self._random_timesteps(len(tokens))
        noise = torch.randn_like(latents)
        if self.ranking_weight == 0 or self.hard_negatives is not None:
            losses = {"loss_image": self.image_denoising_error(
                latents, self.layout_encoder.embed_tokens(tokens), timesteps, noise).mean()}
            if self.ranking_weight:
                losses["loss_image_ranking"] = self.ranking_weight * self.hard_negative_ranking_loss()
            return losses
        wrong, has_move = random_object_moves(tokens, self.tokenizer, self.ranking_shifts, self.ranking_generator)
        start, end = self.ranking_timesteps
        ranked = (has_move.to(timesteps.device) & (timesteps >= start) & (timesteps < end)).nonzero().squeeze(1)
        # One pass over the B true layouts and the ranked samples' wrong ones.
        layouts = self.layout_encoder.embed_tokens(torch.cat([tokens, wrong[ranked]]))
        errors = self.image_denoising_error(torch.cat([latents, latents[ranked]]), layouts,
                                            torch.cat([timesteps, timesteps[ranked]]),
                                            torch.cat([noise, noise[ranked]]))
        true_errors, wrong_errors = errors[: len(tokens)], errors[len(tokens):]
        return {"loss_image": true_errors.mean(),
                "loss_image_ranking": self.ranking_weight * ranking_loss(
                    true_errors[ranked], wrong_errors, self.ranking_temperature)}

    def occupancy_loss(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Scalar: mean binary cross-entropy of the spatial map's first num_classes channels (logits) for (B, L)
        layout tokens on the latent's ``height`` x ``width`` grid, against ``layout_occupancy``."""
        context = self.layout_encoder(self.layout_encoder.embed_tokens(tokens))
        logits = self.spatial_map(context, height, width)[:, : self.tokenizer.num_classes]
        return F.binary_cross_entropy_with_logits(logits, layout_occupancy(self.tokenizer, tokens, height, width))

    def hard_negative_ranking_loss(self) -> torch.Tensor:
        """``ranking_loss`` (unweighted, scalar) of N = ``hard_negatives_per_step`` images drawn from
        ``hard_negatives``, each true layout against one of its mined wrong layouts on the same (t, noise);
        t uniform in the ranking window. All draws come from ``ranking_generator``."""
        generator = self.ranking_generator
        picks = torch.randint(len(self.hard_negatives), (self.hard_negatives_per_step,), generator=generator)
        entries = [self.hard_negatives[index] for index in picks.tolist()]
        true_tokens, wrong_tokens = [], []
        for entry in entries:
            choice = int(torch.randint(len(entry.negatives), (1,), generator=generator))
            wrong_boxes, wrong_classes = entry.negatives[choice]
            true_tokens.append(self.tokenizer.encode(entry.boxes, entry.classes, entry.height, entry.width,
                                                     generator=generator))
            wrong_tokens.append(self.tokenizer.encode(wrong_boxes, wrong_classes, entry.height, entry.width,
                                                      generator=generator))
        count = len(entries)
        latents = self.first_stage.encode(self.preprocess_images([{"image": entry.image} for entry in entries]))
        start, end = self.ranking_timesteps
        timesteps = torch.randint(start, end, (count,), generator=generator).to(self.device)
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        errors = self.image_denoising_error(
            latents.repeat(2, 1, 1, 1), self.layout_encoder.embed_tokens(torch.stack(true_tokens + wrong_tokens).to(
                self.device)), timesteps.repeat(2), noise.repeat(2, 1, 1, 1))
        return ranking_loss(errors[:count], errors[count:], self.ranking_temperature)

    def prior_training_losses(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss_prior`` (the epsilon loss, as ``prior_denoising_error``), with a token loss weight
        ``loss_prior_tokens`` (the token posterior's cross-entropy) and with a rounding weight
        ``loss_prior_rounding``, for (B, L) training layout tokens."""
        vocabulary = self.prior_vocabulary()
        clean = vocabulary[tokens]
        timesteps = self._random_timesteps(len(tokens))
        noise = torch.randn_like(clean)
        noisy = self.scheduler.add_noise(clean, noise, timesteps)
        alpha_bar = self.scheduler.alphas_cumprod.to(clean.device)[timesteps]
        logits = None
        if self.prior_token_weight > 0:
            # One forward pass serves both losses: the noise follows from the logits.
            logits = self.prior.token_logits(noisy, timesteps, vocabulary, self.tokenizer.allowed_tokens(), alpha_bar)
            predicted_noise = noise_from_token_logits(noisy, logits, vocabulary, alpha_bar)
        else:
            predicted_noise = self.predict_prior_noise(noisy, timesteps)
        losses = {"loss_prior": noise_prediction_error(predicted_noise, noise).mean()}
        if logits is not None:
            losses["loss_prior_tokens"] = self.prior_token_weight * F.cross_entropy(logits.flatten(0, 1),
                                                                                    tokens.flatten())
        if self.prior_rounding_weight > 0:
            # Weighted by a_t: at high noise no estimate can name the tokens, and the term would only add noise.
            estimate = clean_estimate(noisy, predicted_noise, alpha_bar[:, None, None])
            cross_entropy = rounding_loss(estimate, vocabulary, self.tokenizer.allowed_tokens(), tokens)
            losses["loss_prior_rounding"] = self.prior_rounding_weight * (alpha_bar * cross_entropy).mean()
        return losses

    # ---- detection by inversion -----------------------------------------------------------------------------
    def image_seed(self, item: dict) -> int:
        """Seed of one image's initialisation: from its "image_id" if present, else from its pixels; never
        from its position in the batch."""
        key = str(item["image_id"]) if "image_id" in item else hashlib.sha256(
            item["image"].cpu().numpy().tobytes()).hexdigest()
        return hashed_seed(f"{self.inversion.seed}:{key}")

    def object_scores(self, latents: torch.Tensor, tokens: torch.Tensor, embeddings: torch.Tensor,
                      slots: torch.Tensor) -> torch.Tensor:
        """(K,) confidences of the objects in ``slots`` of one inverted layout (tokens (L,), embeddings
        (L, width), latents (1, C, h, w))."""
        if self.score == "leave_one_out":
            return leave_one_out_scores(self, self.inversion, latents, tokens, slots, self.score_temperature)
        if self.score == "margin":
            return margin_scores(self, embeddings, slots, self.inversion.metric)
        return torch.ones(len(slots), device=self.device)

    def detections_from_layout(self, decoded: DecodedLayout, scores: torch.Tensor, height: int,
                               width: int) -> Instances:
        """Instances (pixels of a height x width image) of a decoded layout and its (K,) object scores.
        Objects with the same class and box are merged, keeping the highest score."""
        return merge_equal_detections(decoded.boxes.tolist(), decoded.classes.tolist(), scores.tolist(),
                                      (height, width), self.device)

    def inference(self, batched_inputs: list[dict]) -> list[dict]:
        """Detect by inversion; see the module docstring for the output."""
        with tf32_allowed(self.allow_tf32):
            latents = self.first_stage.encode(self.preprocess_images(batched_inputs))
            outputs = self.inversion_pass(batched_inputs, latents)
            if not self.pooled_pass_prior_weights:
                return outputs
            main_inversion = self.inversion
            passes = [outputs]
            try:
                # Every step after the inversion reads self.inversion (its pairs and loss), so a pass swaps it whole.
                for weight in self.pooled_pass_prior_weights:
                    self.inversion = main_inversion.with_prior_weight(weight)
                    passes.append(self.inversion_pass(batched_inputs, latents))
            finally:
                self.inversion = main_inversion
            return self.pool_passes(passes)

    def inversion_pass(self, batched_inputs: list[dict], latents: torch.Tensor) -> list[dict]:
        """One inversion of the batch with ``self.inversion``, decoded and finished (``finish_detections``).
        ``latents``: (B, C, h, w) of the B images of ``batched_inputs``. Returns the outputs of ``inference``."""
        with torch.enable_grad():  # Detectron2 runs inference under no_grad; the inversion needs gradients
            result = self.inversion(self, latents, [self.image_seed(item) for item in batched_inputs])
        outputs = [
            {"instances": self.image_detections(item, latents[index : index + 1], result, index),
             "inversion_steps": int(result.stop_step[index])}
            for index, item in enumerate(batched_inputs)]
        self.finish_detections(latents, outputs)
        logger.info("DIVE inverted %d image(s) (prior weight %g): stopping steps %s", len(outputs),
                    self.inversion.prior_weight, result.stop_step.tolist())
        return outputs

    def pool_passes(self, passes: list[list[dict]]) -> list[dict]:
        """One output per image from P passes' finished outputs (each a list over the same B images): the
        images' detections pooled across passes (``pool_detections`` at ``pooled_pass_iou`` with
        ``pooled_pass_score``), the first pass's marks and "inversion_steps", and "pooled_pass_steps", the
        stopping steps of the other passes summed (their cost)."""
        pooled = []
        for index, main in enumerate(passes[0]):
            output = dict(main)
            output["instances"] = pool_detections([outputs[index]["instances"] for outputs in passes],
                                                  self.pooled_pass_iou, self.pooled_pass_score)
            output["pooled_pass_steps"] = sum(int(outputs[index]["inversion_steps"]) for outputs in passes[1:])
            pooled.append(output)
        return pooled

    def finish_detections(self, latents: torch.Tensor, outputs: list[dict]) -> list[str]:
        """The configured steps after decoding, in place, each unless the outputs carry its mark already
        (detections read back from a cache): ``refine_boxes``, then ``reclassify_boxes`` (with
        ``box_candidates``, the error map's boxes added before it and overlaps suppressed after it), then
        ``joint_layout_scores``, then ``class_alternatives``, then ``prior_scores``. ``latents``: (B, C, h, w) of
        the B images of ``outputs``. Returns the names of the steps applied."""
        refine = self.box_refinement is not None and not any(output.get("refined_boxes") for output in outputs)
        reclassify = (self.box_classes is not None
                      and not any(output.get("reclassified_boxes") for output in outputs))
        candidates = self.box_candidates is not None and not any(output.get("candidate_boxes") for output in outputs)
        rescored = any(output.get("joint_layout_scores") for output in outputs)
        joint = self.joint_layout_scores is not None and not rescored
        alternated = any(output.get("class_alternatives") for output in outputs)
        alternatives = self.class_alternatives is not None and not alternated
        prior_scored = any(output.get("prior_scores") for output in outputs)
        prior_scores = self.prior_scores is not None and not prior_scored
        if candidates and not reclassify:
            raise ValueError("DIVE.finish_detections: these detections are reclassified already "
                             "(\"reclassified_boxes\"), so the error map's candidate boxes can no longer get classes; "
                             "finish the cached detections before the class decision")
        if (refine or candidates or reclassify) and rescored:
            raise ValueError("DIVE.finish_detections: these detections carry joint-layout scores already "
                             "(\"joint_layout_scores\"); finish cached detections before them")
        if (refine or candidates or reclassify or joint) and alternated:
            raise ValueError("DIVE.finish_detections: these detections carry their class alternatives already "
                             "(\"class_alternatives\"); finish cached detections before it")
        if (refine or candidates or reclassify or joint or alternatives) and prior_scored:
            raise ValueError("DIVE.finish_detections: these detections carry their prior scores already "
                             "(\"prior_scores\"), the last step; finish cached detections before it")
        empty_maps = None
        # One empty-layout map per image (on the monitor's pairs) serves every step that reads it.
        if refine or candidates or joint or alternatives or (reclassify and self.box_classes.score != "layout"):
            pairs = self.inversion.monitor_pairs_for(self, latents)[:2]
            empty_maps = empty_layout_error_map(self, latents, *pairs)
        if refine:
            self.refine_boxes(latents, outputs, empty_maps)
        if candidates:
            for output, error_map in zip(outputs, empty_maps, strict=True):
                output["instances"] = self.box_candidates.add(output["instances"], error_map)
        map_caches = [{} for _ in outputs]  # each box's class error maps, for the second decision
        first_boxes = [output["instances"] for output in outputs]
        if reclassify:
            self.reclassify_boxes(latents, outputs, empty_maps, map_caches)
        if candidates and self.box_candidates.residual_detections > 0:
            self.decide_with_residuals(latents, outputs, first_boxes, empty_maps, map_caches, pairs)
        if candidates:
            for output in outputs:
                output["instances"] = self.box_candidates.suppress_overlaps(output["instances"])
                output["candidate_boxes"] = 1
        if joint:
            for index, output in enumerate(outputs):
                output["instances"] = self.joint_layout_scores(self, latents[index : index + 1], output["instances"],
                                                               *pairs, empty_maps[index], map_caches[index])
                output["joint_layout_scores"] = 1
        if alternatives:
            for index, output in enumerate(outputs):
                output["instances"] = self.class_alternatives(self, latents[index : index + 1], output["instances"],
                                                              *pairs, empty_maps[index], map_caches[index])
                output["class_alternatives"] = 1
        if prior_scores:
            for output in outputs:
                output["instances"] = self.prior_scores(self, output["instances"])
                output["prior_scores"] = 1
        return [name for name, done in (("refined_boxes", refine), ("candidate_boxes", candidates),
                                        ("reclassified_boxes", reclassify), ("joint_layout_scores", joint),
                                        ("class_alternatives", alternatives), ("prior_scores", prior_scores))
                if done]

    def reclassify_boxes(self, latents: torch.Tensor, outputs: list[dict], empty_maps: torch.Tensor | None = None,
                         map_caches: list[dict] | None = None) -> None:
        """Replace each output's "instances" by ``box_classes``'s (classes re-chosen per box), in place, and
        mark it ``"reclassified_boxes": 1``. ``latents``: (B, C, h, w) of the B images of ``outputs``;
        ``empty_maps``: their (B, h, w) empty-layout error maps if already computed (the "explained" scores);
        ``map_caches``: one dict per image that keeps each box's class error maps (``BoxClassDecision``)."""
        if self.box_classes is None:
            raise ValueError("DIVE.reclassify_boxes: no class decision configured "
                             "(MODEL.DIVE.INVERSION.RECLASSIFY_BOXES)")
        if any(output.get("reclassified_boxes") for output in outputs):
            raise ValueError("DIVE.reclassify_boxes: these detections are reclassified already "
                             "(\"reclassified_boxes\")")
        timesteps, noise, _ = self.inversion.monitor_pairs_for(self, latents)
        if empty_maps is None and self.box_classes.score != "layout":
            empty_maps = empty_layout_error_map(self, latents, timesteps, noise)
        if empty_maps is None:
            empty_maps = [None] * len(outputs)
        for index, output in enumerate(outputs):
            output["instances"] = self.box_classes(self, latents[index : index + 1], output["instances"], timesteps,
                                                   noise, empty_maps[index],
                                                   None if map_caches is None else map_caches[index])
            output["reclassified_boxes"] = 1

    def decide_with_residuals(self, latents: torch.Tensor, outputs: list[dict], first_boxes: list[Instances],
                              empty_maps: torch.Tensor, map_caches: list[dict],
                              pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
        """After a first class decision, outline the residual maps of each image's best detections
        (``ErrorMapCandidates.add_residuals``: the empty map with one detection's object explained) and, where
        that gives new boxes, decide again over the first decision's boxes plus the new ones, in place.

        Args:
            latents: (B, C, h, w) of the B images of ``outputs``, whose "instances" the first decision made.
            first_boxes: per image, the Instances the first decision saw.
            empty_maps: (B, h, w) their empty-layout error maps.
            map_caches: per image, the first decision's class error maps by box (only new boxes are evaluated).
            pairs: the (timesteps (K,), noise (K, C, h, w)) the maps were measured on (the monitor's).
        """
        candidates = self.box_candidates
        for index, output in enumerate(outputs):
            best = candidates.suppress_overlaps(output["instances"])[: candidates.residual_detections]
            explained = self.box_classes.explained_cells(best, empty_maps[index], map_caches[index])
            widened = candidates.add_residuals(first_boxes[index], explained, empty_maps[index])
            if len(widened) > len(first_boxes[index]):  # the same boxes would give the same decision
                output["instances"] = self.box_classes(self, latents[index : index + 1], widened, *pairs,
                                                       empty_maps[index], map_caches[index])

    def refine_boxes(self, latents: torch.Tensor, outputs: list[dict], empty_maps: torch.Tensor | None = None
                     ) -> None:
        """Replace each output's "instances" by ``box_refinement``'s, in place, and mark it ``"refined_boxes":
        1`` (kept by detection caches, so that refined detections are never refined again). The error maps are
        the empty layout's on the monitor's pairs (``empty_maps`` (B, h, w) if already computed). ``latents``:
        (B, C, h, w) of the B images of ``outputs``."""
        if self.box_refinement is None:
            raise ValueError("DIVE.refine_boxes: no box refinement configured (MODEL.DIVE.INVERSION.REFINE_BOXES)")
        if any(output.get("refined_boxes") for output in outputs):
            raise ValueError("DIVE.refine_boxes: these detections are refined already (\"refined_boxes\")")
        if empty_maps is None:
            timesteps, noise, _ = self.inversion.monitor_pairs_for(self, latents)
            empty_maps = empty_layout_error_map(self, latents, timesteps, noise)
        for output, error_map in zip(outputs, empty_maps, strict=True):
            output["instances"] = self.box_refinement(output["instances"], error_map)
            output["refined_boxes"] = 1

    def image_detections(self, item: dict, latents: torch.Tensor, result: InversionResult, index: int
                         ) -> Instances:
        """Detections of image ``index`` of an inverted batch: its best run's, or (``restart_selection``
        "pooled") the pooled detections of all its runs. ``latents``: (1, C, h, w) of that image."""
        if self.restart_selection == "pooled":
            return pool_detections([self.detections(item, latents, tokens, embeddings) for tokens, embeddings
                                    in zip(result.run_tokens[index], result.run_embeddings[index], strict=True)],
                                   self.pool_iou)
        return self.detections(item, latents, result.tokens[index], result.embeddings[index])

    def detections(self, item: dict, latents: torch.Tensor, tokens: torch.Tensor, embeddings: torch.Tensor
                   ) -> Instances:
        """Scored detections of one inverted layout, in pixels of the input's "height" x "width".

        Args:
            item: the image's entry of ``batched_inputs``.
            latents: (1, C, h, w) its latents; tokens: (L,) its layout; embeddings: (L, width) the continuous
                embeddings the layout was snapped from (for the margin score).
        """
        height, width = item["image"].shape[-2:]
        decoded = self.tokenizer.decode(tokens, height, width)
        scores = self.object_scores(latents, tokens, embeddings, decoded.slots)
        detections = self.detections_from_layout(decoded, scores, height, width)
        return detector_postprocess(detections, item.get("height", height), item.get("width", width))

    # ---- diffusers export ------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str) -> None:
        """Write each diffusion part with diffusers' save_pretrained into ``directory/<part>/``."""
        for name in PART_FOLDERS + OPTIONAL_PART_FOLDERS:
            if getattr(self, name) is not None:
                getattr(self, name).save_pretrained(os.path.join(directory, name))


def build_parts(cfg: CfgNode, tokenizer: LayoutTokenizer, first_stage: FirstStage) -> dict[str, nn.Module]:
    """Freshly initialised layout encoder, spatial map (or None), UNet, prior and scheduler from MODEL.DIVE keys."""
    dive = cfg.MODEL.DIVE
    width = dive.LAYOUT_ENCODER.WIDTH
    spatial_map = None
    if dive.SPATIAL_MAP.CHANNELS > 0:
        spatial_map = SpatialLayoutMap(context_width=width, channels=dive.SPATIAL_MAP.CHANNELS,
                                       num_heads=dive.SPATIAL_MAP.NUM_HEADS, head_width=dive.SPATIAL_MAP.HEAD_WIDTH,
                                       num_frequencies=dive.SPATIAL_MAP.NUM_FREQUENCIES)
    extra_channels = (COORDINATE_CHANNELS if dive.UNET.COORDINATE_CHANNELS else 0) + dive.SPATIAL_MAP.CHANNELS
    layout_encoder = LayoutEncoderModel(
        num_classes=tokenizer.num_classes, grid_size=tokenizer.grid_size, num_slots=tokenizer.num_slots,
        width=width, num_layers=dive.LAYOUT_ENCODER.NUM_LAYERS, num_heads=dive.LAYOUT_ENCODER.NUM_HEADS,
        coordinate_embedding=dive.LAYOUT_ENCODER.COORDINATE_EMBEDDING,
        num_frequencies=dive.LAYOUT_ENCODER.NUM_FREQUENCIES)
    unet = UNet2DConditionModel(
        sample_size=dive.INPUT_SIZE // first_stage.downsample,
        in_channels=first_stage.channels + extra_channels,
        out_channels=first_stage.channels,
        down_block_types=tuple(dive.UNET.DOWN_BLOCK_TYPES),
        up_block_types=tuple(dive.UNET.UP_BLOCK_TYPES),
        block_out_channels=tuple(dive.UNET.BLOCK_OUT_CHANNELS),
        layers_per_block=dive.UNET.LAYERS_PER_BLOCK,
        cross_attention_dim=width,
        attention_head_dim=dive.UNET.ATTENTION_HEADS,
        norm_num_groups=dive.UNET.NORM_NUM_GROUPS,
    )
    prior = LayoutPriorTransformer(sequence_length=tokenizer.sequence_length, embedding_width=width,
                                   width=dive.PRIOR.WIDTH, num_layers=dive.PRIOR.NUM_LAYERS,
                                   num_heads=dive.PRIOR.NUM_HEADS, parameterisation=dive.PRIOR.PARAMETERISATION)
    return {"layout_encoder": layout_encoder, "spatial_map": spatial_map, "unet": unet, "prior": prior,
            "scheduler": build_scheduler(cfg)}


def build_scheduler(cfg: CfgNode) -> DDPMScheduler:
    """The diffusers DDPM noise schedule of MODEL.DIVE.SCHEDULER (epsilon prediction)."""
    schedule = cfg.MODEL.DIVE.SCHEDULER
    return DDPMScheduler(num_train_timesteps=schedule.NUM_TRAIN_TIMESTEPS, beta_schedule=schedule.BETA_SCHEDULE,
                         beta_start=schedule.BETA_START, beta_end=schedule.BETA_END, prediction_type="epsilon",
                         clip_sample=False)


def load_pretrained_parts(directory: str) -> dict[str, nn.Module]:
    """Parts written by ``DIVE.save_pretrained``, loaded with diffusers' from_pretrained (the spatial map
    only when its folder exists)."""
    missing = [name for name in PART_FOLDERS if not os.path.isdir(os.path.join(directory, name))]
    if missing:
        raise FileNotFoundError(f"{directory}: missing part folders {missing} (expected {list(PART_FOLDERS)})")
    return {
        "layout_encoder": LayoutEncoderModel.from_pretrained(os.path.join(directory, "layout_encoder")),
        "unet": UNet2DConditionModel.from_pretrained(os.path.join(directory, "unet")),
        "prior": LayoutPriorTransformer.from_pretrained(os.path.join(directory, "prior")),
        "scheduler": DDPMScheduler.from_pretrained(os.path.join(directory, "scheduler")),
        "spatial_map": SpatialLayoutMap.from_pretrained(os.path.join(directory, "spatial_map"))
        if os.path.isdir(os.path.join(directory, "spatial_map")) else None,
    }
