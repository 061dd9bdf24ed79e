"""Evaluation helpers beyond COCOEvaluator: checks of the generative models."""

from ..modeling.denoising import fixed_pairs
from .classification import ClassificationEvaluator
from .detections_cache import CachedDetector
from .inversion_stats import InversionStatsEvaluator
from .layout_ranking import (
    CORRUPTIONS,
    corrupt_layout,
    corruption_margins,
    encode_record_image,
    layout_errors,
    rank_record,
)
from .objective_gap import held_out_loss, objective_gap
from .prior_recovery import prior_token_recovery

__all__ = ["CORRUPTIONS", "CachedDetector", "ClassificationEvaluator", "InversionStatsEvaluator", "corrupt_layout",
           "corruption_margins", "encode_record_image", "fixed_pairs", "held_out_loss", "layout_errors",
           "objective_gap", "prior_token_recovery", "rank_record"]
