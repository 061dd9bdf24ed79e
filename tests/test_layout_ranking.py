"""The corruptions and fixed (t, noise) pairs used to rank layouts by denoising error."""

import pytest
import torch

from dive_d2.evaluation import corrupt_layout, fixed_pairs

BOXES = torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 5.0, 60.0, 20.0]])
CLASSES = torch.tensor([2, 0])


def test_corruptions_change_only_the_first_object():
    moved, classes = corrupt_layout(BOXES, CLASSES, "moved", width=64, num_classes=3)
    assert moved[0].tolist() == [20.0, 10.0, 40.0, 30.0] and torch.equal(moved[1], BOXES[1])
    assert torch.equal(classes, CLASSES)
    # A box that would cross the right edge moves left instead.
    edge, _ = corrupt_layout(BOXES[[1]], CLASSES[[1]], "moved", width=64, num_classes=3)
    assert edge[0].tolist() == [30.0, 5.0, 50.0, 20.0]
    boxes, changed = corrupt_layout(BOXES, CLASSES, "class_changed", width=64, num_classes=3)
    assert changed.tolist() == [0, 0] and torch.equal(boxes, BOXES)
    boxes, classes = corrupt_layout(BOXES, CLASSES, "dropped", width=64, num_classes=3)
    assert torch.equal(boxes, BOXES[1:]) and classes.tolist() == [0]
    assert torch.equal(BOXES[0], torch.tensor([10.0, 10.0, 30.0, 30.0])), "the input was modified"
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_layout(BOXES, CLASSES, "rotated", width=64, num_classes=3)
    with pytest.raises(ValueError, match="at least one object"):
        corrupt_layout(BOXES[:0], CLASSES[:0], "dropped", width=64, num_classes=3)


def test_fixed_pairs_spread_over_the_schedule_and_are_seeded():
    timesteps, noise = fixed_pairs(8, (3, 4, 4), 1000, seed=0)
    assert timesteps.tolist() == [62, 187, 312, 437, 562, 687, 812, 937]
    assert noise.shape == (8, 3, 4, 4)
    assert torch.equal(noise, fixed_pairs(8, (3, 4, 4), 1000, seed=0)[1])
    assert not torch.equal(noise, fixed_pairs(8, (3, 4, 4), 1000, seed=1)[1])


def test_pairs_in_window_stay_inside_it_and_bad_windows_are_named():
    from diffusers import DDPMScheduler

    from dive_d2.modeling.denoising import pairs_in_window

    scheduler = DDPMScheduler(num_train_timesteps=1000)
    timesteps, noise = pairs_in_window(4, (1, 2, 2), scheduler, 300, 700, seed=0)
    assert timesteps.tolist() == [350, 450, 550, 650] and noise.shape == (4, 1, 2, 2)
    # (0, 0) is the whole schedule, the same pairs as fixed_pairs.
    assert torch.equal(pairs_in_window(8, (3, 4, 4), scheduler, 0, 0, seed=0)[0], fixed_pairs(8, (3, 4, 4), 1000, 0)[0])
    for window in [(700, 300), (0, 1001), (-1, 0)]:
        with pytest.raises(ValueError, match="MIN_TIMESTEP"):
            pairs_in_window(4, (1, 2, 2), scheduler, *window, seed=0)
