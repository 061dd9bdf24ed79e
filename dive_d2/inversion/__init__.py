"""Detection by inversion: optimising a layout so that p(x|y) p(y) explains the image."""

from .engine import InversionResult, LayoutInversion

__all__ = ["InversionResult", "LayoutInversion"]
