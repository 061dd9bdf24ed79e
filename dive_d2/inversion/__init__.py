"""Detection by inversion: optimising a layout so that p(x|y) p(y) explains the image."""

from .engine import (
    InversionResult,
    LayoutInversion,
    MonitorCheck,
    best_restarts,
    hashed_seed,
    replay_checks,
    restart_seed,
)
from .scoring import SCORES, leave_one_out_scores, margin_scores

__all__ = ["SCORES", "InversionResult", "LayoutInversion", "MonitorCheck", "best_restarts", "hashed_seed",
           "leave_one_out_scores", "margin_scores", "replay_checks", "restart_seed"]
