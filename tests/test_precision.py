"""TF32 on CUDA: the detector's inference runs with TF32 off unless MODEL.DIVE.INVERSION.ALLOW_TF32, and the
global settings come back afterwards."""

import pytest
import torch

from dive_d2.inversion import LayoutInversion, tf32_allowed

from .test_dive_training import make_input
from .test_inversion import tiny_model


def tf32_settings():
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def test_tf32_allowed_sets_both_settings_and_restores_them_after_an_error():
    saved = tf32_settings()
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
        with tf32_allowed(False):
            assert tf32_settings() == (False, False)
        assert tf32_settings() == (True, False)
        with pytest.raises(RuntimeError, match="inside"), tf32_allowed(True):
            assert tf32_settings() == (True, True)
            raise RuntimeError("inside")
        assert tf32_settings() == (True, False)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("allow", [False, True])
def test_the_inversion_runs_under_the_configured_precision(monkeypatch, allow):
    seen = []
    original = LayoutInversion.__call__

    def spying_call(self, *args, **kwargs):
        seen.append(tf32_settings())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LayoutInversion, "__call__", spying_call)
    model = tiny_model("MODEL.DIVE.INVERSION.ALLOW_TF32", str(allow))
    assert model.allow_tf32 is allow
    saved = tf32_settings()
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = (not allow), (not allow)
        model([make_input(3, 64, 64, [[4, 4, 20, 30]], [0])])
        assert seen == [(allow, allow)]
        assert tf32_settings() == (not allow, not allow)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
