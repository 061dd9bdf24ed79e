"""Detection by inversion: optimising a layout so that p(x|y) p(y) explains the image."""

from .engine import InversionResult, LayoutInversion, MonitorCheck, replay_checks
from .scoring import SCORES, leave_one_out_scores, margin_scores

__all__ = ["SCORES", "InversionResult", "LayoutInversion", "MonitorCheck", "leave_one_out_scores", "margin_scores",
           "replay_checks"]
