"""Detection by inversion: optimising a layout so that p(x|y) p(y) explains the image."""

from .engine import InversionResult, LayoutInversion
from .scoring import SCORES, leave_one_out_scores, margin_scores

__all__ = ["SCORES", "InversionResult", "LayoutInversion", "leave_one_out_scores", "margin_scores"]
