"""The layout token format shared by the layout-to-image model, the prior and the inversion."""

from .moves import leave_one_out_layouts, random_object_moves, slot_moves
from .snapping import nearest_allowed_tokens
from .tokenizer import DecodedLayout, LayoutTokenizer

__all__ = ["DecodedLayout", "LayoutTokenizer", "leave_one_out_layouts", "nearest_allowed_tokens", "random_object_moves",
           "slot_moves"]
