"""Snapping respects token types and picks the nearest allowed row under both metrics."""

import pytest
import torch

from dive_d2.layout import LayoutTokenizer, nearest_allowed_tokens


def test_snapping_respects_token_types_and_finds_the_nearest_row():
    tokenizer = LayoutTokenizer(num_classes=3, grid_size=4, num_slots=2)
    generator = torch.Generator().manual_seed(0)
    vocabulary = torch.randn(tokenizer.vocab_size, 8, generator=generator)
    allowed = tokenizer.allowed_tokens()
    # Exact vocabulary rows come back as themselves when allowed at their position.
    tokens = torch.tensor([[1, 3, 18, tokenizer.none_token, 7, tokenizer.none_token]])
    for metric in ("l2", "cosine"):
        assert torch.equal(nearest_allowed_tokens(vocabulary[tokens], vocabulary, allowed, metric), tokens)
    # A class row placed at a corner position must snap to a corner token or none, never to a class.
    wrong_type = vocabulary[torch.tensor([[3, 0, 1, 3, 2, 0]])]  # corner at class slots, classes at corners
    snapped = nearest_allowed_tokens(wrong_type, vocabulary, allowed)
    assert allowed[torch.arange(6), snapped[0]].all()
    # Against brute force on random points.
    points = torch.randn(5, 6, 8, generator=generator)
    snapped = nearest_allowed_tokens(points, vocabulary, allowed)
    for b in range(5):
        for position in range(6):
            candidates = torch.nonzero(allowed[position]).reshape(-1)
            distances = (vocabulary[candidates] - points[b, position]).norm(dim=1)
            assert snapped[b, position] == candidates[distances.argmin()]
    with pytest.raises(ValueError, match="metric"):
        nearest_allowed_tokens(points, vocabulary, allowed, "manhattan")
