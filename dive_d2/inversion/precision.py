"""Float precision of detection by inversion on CUDA.

PyTorch lets cuDNN run float32 convolutions in TF32 by default (``torch.backends.cudnn.allow_tf32``), which keeps
10 of float32's 23 mantissa bits. The inversion follows the gradient of small differences in denoising error and
snaps every step to the nearest token, so rounding changes which token wins and the search takes another path.
Measured on an H200 over the whole dive_shapes_val split (session 28, docs/detection.md "On a GPU"): TF32
gives AP / AP50 / AP75 7.7 / 14.7 / 7.4, float32 8.3 / 16.2 / 7.9, the CPU's records 8.4 / 16.4 / 8.0; float32
costs 27 s per batch of 100 images against 21 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def tf32_allowed(allowed: bool) -> Iterator[None]:
    """Within the block, cuDNN convolutions and CUDA matrix products may use TF32 only if ``allowed``; the
    global settings are restored on exit (also after an error). No effect on the CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
