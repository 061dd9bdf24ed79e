"""Hard negatives: telling wrong layouts, the JSON file, recordings of restarts, the mined ranking term."""

import json
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from dive_d2.data.hard_negatives import (
    FORMAT,
    load_hard_negatives,
    merge_hard_negatives,
    read_hard_negative_entries,
    write_hard_negatives,
)
from dive_d2.evaluation.objects_found import is_wrong_layout

from .helpers import REPO_ROOT, load_tool
from .test_dive_training import tiny_cfg

TRUE_BOXES = torch.tensor([[4.0, 4.0, 20.0, 20.0], [30.0, 30.0, 60.0, 50.0]])
TRUE_CLASSES = torch.tensor([0, 2])


def test_wrong_layouts_miss_an_object_or_have_another_count():
    assert not is_wrong_layout(TRUE_BOXES, TRUE_CLASSES, TRUE_BOXES.flip(0), TRUE_CLASSES.flip(0))
    assert not is_wrong_layout(TRUE_BOXES, TRUE_CLASSES, TRUE_BOXES + 1.0, TRUE_CLASSES), "IoU 0.8 is found"
    assert is_wrong_layout(TRUE_BOXES, TRUE_CLASSES, TRUE_BOXES[:1], TRUE_CLASSES[:1]), "a missed object"
    extra = torch.cat([TRUE_BOXES, torch.tensor([[40.0, 2.0, 60.0, 20.0]])])
    assert is_wrong_layout(TRUE_BOXES, TRUE_CLASSES, extra, torch.tensor([0, 2, 1])), "an extra object"
    assert is_wrong_layout(TRUE_BOXES, TRUE_CLASSES, TRUE_BOXES, torch.tensor([0, 1])), "a changed class"
    assert is_wrong_layout(TRUE_BOXES, TRUE_CLASSES, TRUE_BOXES + torch.tensor([12.0, 0, 12, 0]), TRUE_CLASSES)


def write_image(folder, name, height=64, width=64, seed=0):
    path = os.path.join(folder, name)
    rng = np.random.default_rng(seed)
    cv2.imwrite(path, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return path


def negatives_file(folder, negatives):
    """One 64x64 image with TRUE_BOXES / TRUE_CLASSES and the given [(boxes, classes)], plus one without."""
    images = [{"file_name": write_image(folder, "a.png"), "height": 64, "width": 64, "boxes": TRUE_BOXES,
               "classes": TRUE_CLASSES, "negatives": negatives},
              {"file_name": write_image(folder, "b.png", seed=1), "height": 64, "width": 64, "boxes": TRUE_BOXES,
               "classes": TRUE_CLASSES, "negatives": []}]
    path = os.path.join(folder, "negatives.json")
    write_hard_negatives(path, images, {"test": True})
    return path


def test_negatives_file_round_trip_and_clear_errors(tmp_path):
    moved = TRUE_BOXES + torch.tensor([[10.0, 0, 10, 0], [0, 0, 0, 0]])
    path = negatives_file(str(tmp_path), [(moved, TRUE_CLASSES), (TRUE_BOXES[:1], TRUE_CLASSES[:1])])
    images = load_hard_negatives(path, num_classes=3)
    assert len(images) == 1, "an image without negatives is dropped"
    entry = images[0]
    assert entry.image.shape == (3, 64, 64) and entry.image.dtype == torch.uint8
    assert torch.equal(entry.boxes, TRUE_BOXES) and torch.equal(entry.classes, TRUE_CLASSES)
    assert [len(c) for _, c in entry.negatives] == [2, 1] and torch.equal(entry.negatives[0][0], moved)
    rgb = load_hard_negatives(path, num_classes=3, image_format="RGB")[0].image
    assert torch.equal(rgb, entry.image.flip(0)), "the images are read in the requested channel order"

    data = json.load(open(path))

    def broken(change, message):
        bad = json.loads(json.dumps(data))
        change(bad)
        bad_path = os.path.join(str(tmp_path), "bad.json")
        json.dump(bad, open(bad_path, "w"))
        with pytest.raises(ValueError, match=message):
            load_hard_negatives(bad_path, num_classes=3)

    broken(lambda d: d.update(format="other"), "not a hard-negatives file")
    broken(lambda d: d["images"][0].pop("negatives"), r"images\[0\]: missing keys \['negatives'\]")
    broken(lambda d: d["images"][0]["negatives"][0].update(classes=[0, 5]), r"negatives\[0\]: class index out")
    broken(lambda d: d["images"][0]["negatives"][1].update(boxes=[[1, 2, 3]]), r"negatives\[1\]: 'boxes' must")
    broken(lambda d: d["images"][0].update(classes=[0]), r"images\[0\]: 2 boxes but 1 classes")
    broken(lambda d: d["images"][0].update(height=32), "is 64x64 pixels, the file says 64x32")
    broken(lambda d: d["images"][0].update(negatives=[]), "no image has a negative layout")


def test_a_second_round_adds_its_new_negatives_per_image(tmp_path):
    moved = TRUE_BOXES + torch.tensor([[10.0, 0, 10, 0], [0, 0, 0, 0]])
    shrunk = TRUE_BOXES * torch.tensor([1.0, 1.0, 0.9, 0.9])
    first, source = read_hard_negative_entries(negatives_file(str(tmp_path), [(moved, TRUE_CLASSES)]), 3)
    assert source == {"test": True} and [len(entry["negatives"]) for entry in first] == [1, 0]
    a_name, b_name = first[0]["file_name"], first[1]["file_name"]
    # Round 2 finds the same moved layout again (read back at the file's precision) and a shrunk one in
    # image a, one negative in image b, and one in an image round 1 did not mine.
    second = [{**first[0], "negatives": [(moved + 1e-4, TRUE_CLASSES), (shrunk, TRUE_CLASSES)]},
              {**first[1], "negatives": [(TRUE_BOXES[:1], TRUE_CLASSES[:1])]},
              {**first[1], "file_name": "c.png", "negatives": [(shrunk, TRUE_CLASSES)]}]
    merged = merge_hard_negatives(first, second)
    assert [entry["file_name"] for entry in merged] == [a_name, b_name, "c.png"]
    assert [len(entry["negatives"]) for entry in merged] == [2, 1, 1], "the repeated layout is kept once"
    assert torch.equal(merged[0]["negatives"][0][0], moved) and torch.equal(merged[0]["negatives"][1][0], shrunk)
    assert len(first[0]["negatives"]) == 1, "the earlier round's entries are not changed"
    relabelled = [{**first[0], "classes": TRUE_CLASSES.flip(0), "negatives": []}]
    with pytest.raises(ValueError, match=f"round 1: the true layout of {a_name} differs"):
        merge_hard_negatives(first, relabelled, "round 1")


def ranking_model(path, *opts):
    return build_model(tiny_cfg("MODEL.DIVE.TRAIN_PRIOR", "False", "MODEL.DIVE.RANKING.WEIGHT", "1.0",
                                "MODEL.DIVE.RANKING.NEGATIVES", path, "MODEL.DIVE.RANKING.NEGATIVES_PER_STEP", "4",
                                *opts))


def test_mined_ranking_term_leaves_the_denoising_loss_and_trains_the_margin(tmp_path):
    from .test_dive_training import mixed_batch

    moved = TRUE_BOXES + torch.tensor([[24.0, 24, 24, 24], [0, 0, 0, 0]])
    path = negatives_file(str(tmp_path), [(moved, TRUE_CLASSES)])
    torch.manual_seed(0)
    plain = build_model(tiny_cfg("MODEL.DIVE.TRAIN_PRIOR", "False"))
    plain.train()
    plain_losses = plain(mixed_batch())
    torch.manual_seed(0)
    model = ranking_model(path)
    model.train()
    losses = model(mixed_batch())
    assert set(losses) == {"loss_image", "loss_image_ranking"} and losses["loss_image_ranking"] > 0
    assert torch.allclose(losses["loss_image"], plain_losses["loss_image"], rtol=1e-5), \
        "the mined ranking term must not change the training batch's denoising loss"
    assert build_model(tiny_cfg("MODEL.DIVE.RANKING.NEGATIVES", "missing.json")).hard_negatives is None, \
        "with WEIGHT 0 the file is not read"

    entry = model.hard_negatives[0]
    latents = model.first_stage.encode(model.preprocess_images([{"image": entry.image}])).repeat(8, 1, 1, 1)
    timesteps = torch.tensor([100, 300, 500, 700]).repeat_interleave(2)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))
    layouts = [model.tokenizer.encode(boxes, TRUE_CLASSES, 64, 64).repeat(8, 1) for boxes in (TRUE_BOXES, moved)]

    def margin():
        with torch.no_grad():
            errors = [model.image_denoising_error(latents, model.layout_encoder.embed_tokens(tokens), timesteps, noise)
                      for tokens in layouts]
        return float((errors[1] - errors[0]).mean())

    before = margin()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(30):
        loss = model.hard_negative_ranking_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert margin() > before + 1e-4, "training on the mined negative must raise its error above the truth's"


def test_a_negative_equal_to_the_truth_is_a_tie_with_no_gradient(tmp_path):
    def gradient_norm(negative_boxes):
        images = [{"file_name": write_image(str(tmp_path), "a.png"), "height": 64, "width": 64,
                   "boxes": TRUE_BOXES[:1], "classes": TRUE_CLASSES[:1],
                   "negatives": [(negative_boxes, TRUE_CLASSES[:1])]}]
        path = os.path.join(str(tmp_path), "single.json")
        write_hard_negatives(path, images, {})
        torch.manual_seed(0)
        model = ranking_model(path)
        model.train()
        loss = model.hard_negative_ranking_loss()
        loss.backward()
        norm = sum(float(p.grad.square().sum()) for p in model.parameters() if p.grad is not None) ** 0.5
        return float(loss), norm

    tie_loss, tie_norm = gradient_norm(TRUE_BOXES[:1])
    moved_loss, moved_norm = gradient_norm(TRUE_BOXES[:1] + 24.0)
    assert tie_loss > 0, "a tie costs tau log 2"
    assert moved_norm > 0 and tie_norm < 1e-4 * moved_norm, \
        "true and wrong layouts must share image, timestep and noise, so a tie has no gradient"


def fake_recording(folder, model, records, layouts_per_image, opts):
    """A history.pth as tools/evaluate_inversion.py writes it: per run, checks at steps 10 and 20; the second
    check's loss is lower only for even runs, so odd runs return their first check's layout."""
    histories = []
    for layouts in layouts_per_image:
        for run, (boxes, classes) in enumerate(layouts):
            returned = model.tokenizer.encode(boxes, classes, 64, 64)
            other = model.tokenizer.encode(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 64, 64)
            first, second = (other, returned) if run % 2 == 0 else (returned, other)
            losses = (torch.tensor(2.0), torch.tensor(1.0 if run % 2 == 0 else 3.0))
            histories.append([(10, losses[0], first, None), (20, losses[1], second, None)])
    os.makedirs(folder, exist_ok=True)
    torch.save({"histories": histories, "seconds": 0.0, "opts": opts}, os.path.join(folder, "history.pth"))


def test_mining_keeps_each_runs_returned_layout_when_it_is_wrong(tmp_path, monkeypatch):
    from detectron2.data import DatasetCatalog

    from dive_d2.data import ground_truth_layout
    from dive_d2.data.from_config import register_first_images
    from dive_d2.evaluation.recordings import load_recorded_runs
    from dive_d2.loading import load_config, load_model

    config = os.path.join(REPO_ROOT, "configs", "shapes", "dive.yaml")
    weights = os.path.join(REPO_ROOT, "weights", "shapes", "dive.pth")
    opts = ["MODEL.DEVICE", "cpu", "MODEL.DIVE.INVERSION.RESTARTS", "2"]
    model = load_model(load_config(config, opts), weights)
    records = DatasetCatalog.get(register_first_images("dive_shapes_val", 2, 3))
    truths = [ground_truth_layout(record) for record in records]
    empty = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    # Image 0: run 0 returns the truth, run 1 nothing; image 1: run 0 nothing, run 1 the truth.
    recording = os.path.join(str(tmp_path), "recording")
    fake_recording(recording, model, records, [[truths[0], empty], [empty, truths[1]]], opts)

    runs = load_recorded_runs(recording, config, weights, "dive_shapes_val", 3, 2, opts)
    assert runs.tokens.shape == (2, 2, model.tokenizer.sequence_length)
    assert torch.equal(runs.monitor, torch.tensor([[1.0, 2.0], [1.0, 2.0]])), "each run's best check"
    for image, run in ((0, 0), (1, 1)):
        decoded = model.tokenizer.decode(runs.tokens[image, run], 64, 64)
        assert not is_wrong_layout(*truths[image], decoded.boxes, decoded.classes)
    with pytest.raises(ValueError, match="recorded with options"):
        load_recorded_runs(recording, config, weights, "dive_shapes_val", 3, 2, opts[:2])
    with pytest.raises(ValueError, match="holds 4 runs"):
        load_recorded_runs(recording, config, weights, "dive_shapes_val", 3, 1, opts)

    output = os.path.join(str(tmp_path), "negatives.json")
    arguments = ["mine_negatives", "--config-file", config, "--weights", weights, "--dataset", "dive_shapes_val",
                 "--start-image", "3", "--num-images", "2", "--recording", recording]
    monkeypatch.setattr("sys.argv", [*arguments, "--output", output, *opts])
    load_tool("mine_negatives").main()
    data = json.load(open(output))
    assert data["format"] == FORMAT and len(data["images"]) == 2
    assert [len(item["negatives"]) for item in data["images"]] == [1, 1], "only the empty layouts are wrong"
    assert all(item["negatives"][0]["classes"] == [] for item in data["images"])
    assert data["images"][1]["classes"] == truths[1][1].tolist()

    merged = os.path.join(str(tmp_path), "merged.json")
    monkeypatch.setattr("sys.argv", [*arguments, "--output", merged, "--merge-with", output, *opts])
    load_tool("mine_negatives").main()
    data = json.load(open(merged))
    assert [len(item["negatives"]) for item in data["images"]] == [1, 1], "the same runs add no new negative"
    assert data["source"]["merged_with"]["path"] == output
