"""Detection by inversion: optimising a layout so that p(x|y) p(y) explains the image."""

from .box_classes import BoxClassDecision
from .box_refinement import ErrorMapBoxRefinement
from .class_alternatives import ClassAlternatives
from .engine import (
    InversionResult,
    LayoutInversion,
    MonitorCheck,
    best_restarts,
    hashed_seed,
    replay_checks,
    restart_seed,
)
from .error_map_candidates import ErrorMapCandidates, component_boxes
from .joint_layout_scores import JointLayoutScores
from .pooling import POOLED_SCORES, RESTART_SELECTIONS, pool_detections
from .precision import tf32_allowed
from .prior_scores import PriorScores
from .scoring import SCORES, leave_one_out_scores, margin_scores

__all__ = ["POOLED_SCORES", "RESTART_SELECTIONS", "SCORES", "BoxClassDecision", "ClassAlternatives",
           "ErrorMapBoxRefinement", "ErrorMapCandidates", "InversionResult", "JointLayoutScores", "LayoutInversion",
           "MonitorCheck", "PriorScores", "best_restarts", "component_boxes", "hashed_seed", "leave_one_out_scores",
           "margin_scores", "pool_detections", "replay_checks", "restart_seed", "tf32_allowed"]
