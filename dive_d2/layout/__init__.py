"""The layout token format shared by the layout-to-image model, the prior and the inversion."""

from .tokenizer import DecodedLayout, LayoutTokenizer

__all__ = ["DecodedLayout", "LayoutTokenizer"]
