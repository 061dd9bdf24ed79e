"""The layout token format: round trips, dropping rules, the grid's error bound, over-full layouts."""

import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dive_d2.layout import LayoutTokenizer

TOKENIZER = LayoutTokenizer(num_classes=3, grid_size=17, num_slots=4)


@st.composite
def layouts(draw, max_objects=8):
    """Random images and boxes: (height, width, boxes (K, 4) XYXY px, classes (K,))."""
    height = draw(st.integers(16, 300))
    width = draw(st.integers(16, 300))
    count = draw(st.integers(0, max_objects))
    boxes, classes = [], []
    for _ in range(count):
        x0 = draw(st.floats(0, width - 2))
        y0 = draw(st.floats(0, height - 2))
        x1 = draw(st.floats(x0 + 1, width))
        y1 = draw(st.floats(y0 + 1, height))
        boxes.append([x0, y0, x1, y1])
        classes.append(draw(st.integers(0, 2)))
    return height, width, torch.tensor(boxes).reshape(-1, 4), torch.tensor(classes, dtype=torch.int64)


def test_vocabulary_layout():
    assert TOKENIZER.vocab_size == 3 + 17 * 17 + 1
    assert TOKENIZER.none_token == TOKENIZER.vocab_size - 1
    allowed = TOKENIZER.allowed_tokens()
    assert allowed.shape == (12, TOKENIZER.vocab_size)
    assert allowed[0, :3].all() and not allowed[0, 3:-1].any() and allowed[0, -1]
    assert not allowed[1, :3].any() and allowed[1, 3:].all()
    points = TOKENIZER.corner_grid_points()
    assert torch.equal(points[0], torch.tensor([0.0, 0.0])) and torch.equal(points[-1], torch.tensor([1.0, 1.0]))
    assert torch.equal(points[1], torch.tensor([1 / 16, 0.0]))  # token order: row-major, x varies fastest


@settings(max_examples=200, deadline=None)
@given(layouts())
@example((16, 16, torch.tensor([[0.0, 1.5, 1.0, 2.5]]), torch.tensor([0])))  # one step, corners on ties
def test_round_trip_within_grid_error(layout):
    height, width, boxes, classes = layout
    tokens = TOKENIZER.encode(boxes, classes, height, width)
    assert tokens.shape == (12,) and tokens.dtype == torch.int64
    allowed = TOKENIZER.allowed_tokens()
    assert allowed[torch.arange(12), tokens].all(), "a token of the wrong type for its position"

    kept = min(len(boxes), 4)
    assert (tokens.reshape(4, 3)[kept:] == TOKENIZER.none_token).all()
    decoded = TOKENIZER.decode(tokens, height, width)
    err_x, err_y = TOKENIZER.max_quantisation_error_px(height, width)
    bound = torch.tensor([err_x, err_y, err_x, err_y]) + 1e-3
    if len(boxes) <= 4:
        # Every object comes back from its own slot, unless quantisation collapsed its box.
        for k in range(len(boxes)):
            if k in decoded.slots.tolist():
                i = decoded.slots.tolist().index(k)
                assert decoded.classes[i] == classes[k]
                assert ((decoded.boxes[i] - boxes[k]).abs() <= bound).all()
            else:
                width_cells = (boxes[k, 2] - boxes[k, 0]) / width * 16
                height_cells = (boxes[k, 3] - boxes[k, 1]) / height * 16
                # Rounding to the grid collapses a box only if it spans at most one step: a span of exactly
                # one step with both corners on half cells (1.5 -> 2, 2.5 -> 2, round half to even) may.
                assert min(width_cells, height_cells) <= 1.0, "a box more than one grid step wide was dropped"


@settings(max_examples=100, deadline=None)
@given(layouts(max_objects=12))
def test_over_full_layout_keeps_largest_objects(layout):
    height, width, boxes, classes = layout
    tokens = TOKENIZER.encode(boxes, classes, height, width)
    if len(boxes) > 4:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        kept = torch.sort(torch.argsort(-areas, stable=True)[:4]).values
        expected = TOKENIZER.encode(boxes[kept], classes[kept], height, width)
        assert torch.equal(tokens, expected)


def test_grid_points_round_trip_exactly_and_shuffling_keeps_the_set():
    # Boxes on grid points (multiples of 4 px on 64 px with a 17-point grid) come back exactly.
    boxes = torch.tensor([[0, 0, 64, 64], [4, 8, 12, 40], [60, 56, 64, 60]], dtype=torch.float32)
    classes = torch.tensor([2, 0, 1])
    decoded = TOKENIZER.decode(TOKENIZER.encode(boxes, classes, 64, 64), 64, 64)
    assert torch.equal(decoded.boxes, boxes) and torch.equal(decoded.classes, classes)

    generator = torch.Generator().manual_seed(0)
    orders = set()
    for _ in range(20):
        shuffled = TOKENIZER.decode(TOKENIZER.encode(boxes, classes, 64, 64, generator=generator), 64, 64)
        rows = sorted(zip(shuffled.classes.tolist(), map(tuple, shuffled.boxes.tolist()), strict=True))
        assert rows == sorted(zip(classes.tolist(), map(tuple, boxes.tolist()), strict=True))
        orders.add(tuple(shuffled.classes.tolist()))
    assert len(orders) > 1


def test_decoding_drops_none_and_illegal_boxes():
    c0 = TOKENIZER.num_classes
    corner = lambda col, row: c0 + row * 17 + col  # noqa: E731
    none = TOKENIZER.none_token
    tokens = torch.tensor([
        1, corner(2, 2), corner(6, 8),  # legal
        none, corner(2, 2), corner(6, 8),  # class is none
        0, corner(6, 2), corner(2, 8),  # x1 < x0
        2, corner(2, 5), corner(9, 5),  # y1 == y0
    ])
    decoded = TOKENIZER.decode(tokens, 32, 64)
    assert decoded.slots.tolist() == [0] and decoded.classes.tolist() == [1]
    assert decoded.boxes.tolist() == [[8.0, 4.0, 24.0, 16.0]]
    empty = TOKENIZER.decode(TOKENIZER.encode(torch.zeros(0, 4), torch.zeros(0), 64, 64), 64, 64)
    assert len(empty.boxes) == 0


def test_wrong_token_types_are_dropped_not_misread():
    c0 = TOKENIZER.num_classes
    corner = c0 + 2 * 17 + 2
    tokens = torch.full((12,), TOKENIZER.none_token)
    tokens[:3] = torch.tensor([corner, corner, corner + 20])  # a corner token in a class position
    tokens[3:6] = torch.tensor([1, 0, corner + 20])  # a class token in a corner position
    assert len(TOKENIZER.decode(tokens, 64, 64).boxes) == 0
