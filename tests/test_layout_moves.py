"""Single-object moves of a layout: the polish's neighbourhood and the ranking loss's wrong layouts."""

import torch

from dive_d2.layout import LayoutTokenizer, random_object_moves, slot_moves


def test_slot_moves_change_one_object_and_keep_its_box_legal():
    tokenizer = LayoutTokenizer(num_classes=3, grid_size=9, num_slots=2)  # 8 px image: grid cell = pixel
    tokens = tokenizer.encode(torch.tensor([[0.0, 2.0, 3.0, 6.0]]), torch.tensor([1]), 8, 8)
    moves = slot_moves(tokens, 0, tokenizer, shifts=(2, 1))
    assert len(slot_moves(tokens, 1, tokenizer, shifts=(2, 1))) == 0, "an empty slot has no object to move"
    assert torch.equal(moves[:, 3:], tokens[3:].expand(len(moves), 3)), "only slot 0 may change"
    layouts = [tokenizer.decode(move, 8, 8) for move in moves]
    assert sum(len(layout.slots) == 0 for layout in layouts) == 1, "exactly one move removes the object"
    found = {(int(layout.classes[0]), *[int(v) for v in layout.boxes[0]]) for layout in layouts if len(layout.slots)}
    assert {(0, 0, 2, 3, 6), (2, 0, 2, 3, 6)} <= found, "class changes keep the box"
    assert {(1, 2, 2, 3, 6), (1, 1, 2, 4, 6), (1, 0, 0, 3, 4), (1, 0, 2, 1, 6)} <= found, "edge and shift moves"
    assert all(0 <= x0 < x1 <= 8 and 0 <= y0 < y1 <= 8 for _, x0, y0, x1, y1 in found)
    assert len(found) == len(moves) - 1, "no move repeats another or the start"
    assert (1, 0, 2, 3, 6) not in found


def test_random_object_moves_are_seeded_single_slot_moves_and_skip_empty_layouts():
    tokenizer = LayoutTokenizer(num_classes=3, grid_size=17, num_slots=3)
    layouts = torch.stack([
        tokenizer.encode(torch.tensor([[1.0, 2.0, 6.0, 9.0], [8.0, 8.0, 15.0, 12.0]]), torch.tensor([0, 2]), 16, 16),
        tokenizer.encode(torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), 16, 16),
        tokenizer.encode(torch.tensor([[3.0, 3.0, 10.0, 10.0]]), torch.tensor([1]), 16, 16),
    ])
    shifts = (1, 4)
    moved, has_move = random_object_moves(layouts, tokenizer, shifts, torch.Generator().manual_seed(5))
    assert has_move.tolist() == [True, False, True]
    assert torch.equal(moved[1], layouts[1]), "a layout without objects stays as it is"
    for layout, wrong in zip(layouts[has_move], moved[has_move], strict=True):
        changed_slots = {i // 3 for i in torch.nonzero(layout != wrong).flatten().tolist()}
        assert len(changed_slots) == 1, "exactly one slot changes"
        (slot,) = changed_slots
        assert any(torch.equal(wrong, move) for move in slot_moves(layout, slot, tokenizer, shifts))
    again, _ = random_object_moves(layouts, tokenizer, shifts, torch.Generator().manual_seed(5))
    assert torch.equal(moved, again), "same generator seed, same moves"
    draws = torch.stack([random_object_moves(layouts[:1], tokenizer, shifts, generator)[0][0]
                         for generator in [torch.Generator().manual_seed(s) for s in range(40)]])
    assert len({tuple(d.tolist()) for d in draws}) > 10, "moves must vary with the generator"
    assert {i // 3 for d in draws for i in torch.nonzero(d != layouts[0]).flatten().tolist()} == {0, 1}, \
        "both objects get moved"
